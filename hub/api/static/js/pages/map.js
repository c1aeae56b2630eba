// Districts and devices on a Leaflet map, coloured by state, clustered so a city of
// 10,000 devices stays fluid; tiles only when the hub names a tile source.
import { html, useEffect, useRef, useState } from "../lib.js";
import { api } from "../api.js";
import { t, assetLabel } from "../i18n.js";
import { Page, Problem, useApp } from "../ui.js";

export const MAP_STATES = ["emergency", "critical", "warning", "info", "offline", "stale", "never", "ok"];
// From this zoom on (a street block) every device is drawn on its own.
const UNCLUSTERED_ZOOM = 17;
const RANK = Object.fromEntries(MAP_STATES.map((s, i) => [s, MAP_STATES.length - i]));

export function stateLabel(state) {
  return RANK[state] > RANK.offline ? t(`sev.${state}`) : t(`state.${state}`);
}

function clusterIcon(cluster) {
  let worst = "ok";
  for (const marker of cluster.getAllChildMarkers()) {
    if (RANK[marker.options.state] > RANK[worst]) worst = marker.options.state;
  }
  const count = cluster.getChildCount();
  const size = count < 100 ? 34 : count < 1000 ? 42 : 50;
  // Leaflet makes the cluster a keyboard button; its title is its accessible name.
  cluster.options.title = t("map.cluster", { count, state: stateLabel(worst) });
  return L.divIcon({
    html: `<span>${count}</span>`,
    className: `cluster state-${worst}`,
    iconSize: L.point(size, size),
  });
}

function Legend({ counts, plotted, unplaced }) {
  return html`<section class="legend" aria-labelledby="legend-title">
    <h2 id="legend-title">${t("map.legend")}</h2>
    <ul>${MAP_STATES.map(
      (s) => html`<li data-state=${s}><span class="swatch state-${s}" aria-hidden="true"></span>
        ${stateLabel(s)}:
        <span class="count">${counts[s] || 0}</span></li>`,
    )}</ul>
    <p id="map-plotted" data-count=${plotted}>${t("map.plotted", { count: plotted })}</p>
    ${unplaced ? html`<p class="quiet">${t("map.unplaced", { count: unplaced })}</p>` : null}
  </section>`;
}

export default function MapPage() {
  const app = useApp();
  const holder = useRef(null);
  const map = useRef(null);
  const layers = useRef({ devices: null, outlines: null, markers: new Map() });
  const [summary, setSummary] = useState({ counts: {}, plotted: 0, unplaced: 0 });
  const [error, setError] = useState(null);
  const [message, setMessage] = useState("");
  const settings = app.config.map;

  useEffect(() => {
    const m = L.map(holder.current, { maxZoom: Math.max(settings.tile_max_zoom, UNCLUSTERED_ZOOM), minZoom: 2, zoomControl: true, keyboard: true });
    m.setView([0, 0], 2);
    if (settings.tile_url) {
      L.tileLayer(settings.tile_url, { maxZoom: settings.tile_max_zoom, attribution: settings.tile_attribution }).addTo(m);
    }
    map.current = m;
    holder.current.dataset.ready = "map";
    return () => {
      m.remove();
      map.current = null;
    };
  }, []);

  useEffect(() => {
    let cancelled = false;
    const started = performance.now();
    Promise.all([api("/console/map"), settings.districts ? api("/console/districts.geojson") : Promise.resolve(null)]).then(
      ([data, outlines]) => {
        if (cancelled || !map.current) return;
        const m = map.current;
        const first = !layers.current.devices;
        layers.current.outlines?.remove();
        if (outlines) {
          layers.current.outlines = L.geoJSON(outlines, {
            style: (f) => ({ className: `district state-${data.districts[f.properties.district] || "ok"}`, weight: 2, fillOpacity: 0.08 }),
            onEachFeature: (f, layer) => layer.bindTooltip(String(f.properties.name || f.properties.district), { sticky: true }),
          }).addTo(m);
        }
        const counts = {};
        const markers = [];
        let unplaced = 0;
        layers.current.markers = new Map();
        for (const [id, district, assetType, lat, lon, state] of data.devices) {
          counts[state] = (counts[state] || 0) + 1;
          if (lat === null || lon === null) {
            unplaced += 1;
            continue;
          }
          const marker = L.circleMarker([lat, lon], { radius: 7, className: `device state-${state}`, state, weight: 2, fillOpacity: 0.9 });
          marker.bindTooltip(`${id} · ${assetLabel(assetType)} · ${district}`);
          marker.on("add", () => marker.getElement()?.setAttribute("data-device-id", id));
          marker.on("click", () => {
            location.hash = `#/device/${encodeURIComponent(id)}`;
          });
          layers.current.markers.set(id, marker);
          markers.push(marker);
        }
        layers.current.devices?.remove();
        // Every device is drawn (clustered) once the last chunk is in: bench/console.py reads the mark.
        const drawn = () => {
          if (!performance.getEntriesByName("console:map").length) performance.mark("console:map");
        };
        const cluster = L.markerClusterGroup({ chunkProgress: (done, total) => done === total && drawn(), chunkedLoading: true, iconCreateFunction: clusterIcon, showCoverageOnHover: false, maxClusterRadius: 50, disableClusteringAtZoom: UNCLUSTERED_ZOOM });
        cluster.addLayers(markers);
        if (cluster.getLayers().length === markers.length) drawn();
        cluster.addTo(m);
        layers.current.devices = cluster;
        if (first) {
          const bounds = outlines ? layers.current.outlines.getBounds() : cluster.getBounds();
          if (bounds.isValid()) m.fitBounds(bounds, { padding: [20, 20] });
        }
        setSummary({ counts, plotted: markers.length, unplaced });
        holder.current.dataset.drawnMs = String(Math.round(performance.now() - started));
        holder.current.dataset.devices = String(markers.length);
      },
      (e) => !cancelled && setError(e),
    );
    return () => {
      cancelled = true;
    };
  }, [app.revision]);

  const locate = (event) => {
    event.preventDefault();
    const wanted = String(new FormData(event.target).get("device") || "").trim();
    const marker = layers.current.markers.get(wanted);
    if (!marker) {
      setMessage(t("map.not_found", { id: wanted }));
      return;
    }
    setMessage("");
    // Close enough that no cluster hides it; no animation, so it is there at once.
    const m = map.current;
    m.once("moveend", () => setTimeout(() => marker.openTooltip(), 0));
    m.setView(marker.getLatLng(), Math.max(UNCLUSTERED_ZOOM, m.getZoom()), { animate: false });
  };

  return html`<${Page} title=${t("map.title")}>
    ${error ? html`<${Problem} error=${error} />` : null}
    ${settings.tile_url ? null : html`<p class="quiet">${t("map.no_tiles")}</p>`}
    <form class="find" onSubmit=${locate}>
      <label for="find-device">${t("map.find")}</label>
      <input id="find-device" name="device" />
      <button type="submit">${t("map.find_button")}</button>
      <span role="status" class="quiet">${message}</span>
    </form>
    <div class="map-layout">
      <div id="map" class="map" ref=${holder} role="region" aria-label=${t("map.label")}></div>
      <${Legend} ...${summary} />
    </div>
  <//>`;
}
