// Time-series charts on uPlot: raw points for short ranges, mean with a min-max band
// for long ones, threshold lines of the rules, alert markers, live readings appended.
import { html, useState, useEffect, useRef } from "./lib.js";
import uPlot from "../vendor/uplot/uPlot.esm.js";
import { api, sse } from "./api.js";
import { t, metricLabel, metricUnit, formatNumber, absoluteTime } from "./i18n.js";

// Ranges up to this are drawn as raw readings; longer ones as bucket aggregates.
export const RAW_MAX_MS = 6 * 3600e3;
// Buckets per aggregated chart (a chart is ~1000 px wide).
const BUCKETS = 400;
const NICE_BUCKETS_S = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

export const RANGES = [
  ["15m", 15 * 60e3],
  ["1h", 3600e3],
  ["6h", 6 * 3600e3],
  ["24h", 24 * 3600e3],
  ["7d", 7 * 86400e3],
  ["30d", 30 * 86400e3],
];

const SEVERITY_COLOURS = { info: "#1d4ed8", warning: "#b45309", critical: "#b91c1c", emergency: "#7e22ce" };

function bucketSeconds(rangeMs) {
  const want = rangeMs / 1000 / BUCKETS;
  return NICE_BUCKETS_S.find((s) => s >= want) || NICE_BUCKETS_S[NICE_BUCKETS_S.length - 1];
}

function every(seconds) {
  return seconds % 86400 === 0 ? `${seconds / 86400}d` : seconds % 3600 === 0 ? `${seconds / 3600}h` : `${seconds / 60}m`;
}

async function load(deviceId, metric, start, end) {
  const base = `/devices/${encodeURIComponent(deviceId)}/telemetry?metric=${encodeURIComponent(metric)}&start=${start}&end=${end}`;
  if (end - start <= RAW_MAX_MS) {
    try {
      const raw = await api(base);
      return { mode: "raw", points: raw.points };
    } catch (error) {
      if (error.status !== 400) throw error; // too many raw points: aggregate instead
    }
  }
  const seconds = bucketSeconds(end - start);
  const [mean, min, max] = await Promise.all(
    ["mean", "min", "max"].map((agg) => api(`${base}&every=${every(seconds)}&agg=${agg}`)),
  );
  return { mode: "agg", every: every(seconds), points: mean.points, min: min.points, max: max.points };
}

function columns(result) {
  const xs = result.points.filter((p) => p.value !== null).map((p) => p.ts_ms);
  const ys = result.points.filter((p) => p.value !== null).map((p) => p.value);
  if (result.mode === "raw") return [xs, ys];
  const byTs = (points) => new Map(points.map((p) => [p.ts_ms, p.value]));
  const lo = byTs(result.min);
  const hi = byTs(result.max);
  return [xs, ys, xs.map((x) => lo.get(x) ?? null), xs.map((x) => hi.get(x) ?? null)];
}

// Lines across the plot at each threshold, and a vertical line at each alert marker.
function overlays(thresholds, markers) {
  return {
    hooks: {
      draw: [
        (u) => {
          const { ctx } = u;
          const { left, top, width, height } = u.bbox;
          ctx.save();
          ctx.lineWidth = 2 * devicePixelRatio;
          ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
          for (const line of thresholds) {
            const y = u.valToPos(line.value, "y", true);
            if (y < top || y > top + height) continue;
            ctx.strokeStyle = SEVERITY_COLOURS[line.severity] || "#444";
            ctx.setLineDash([8 * devicePixelRatio, 5 * devicePixelRatio]);
            ctx.beginPath();
            ctx.moveTo(left, y);
            ctx.lineTo(left + width, y);
            ctx.stroke();
            ctx.fillStyle = ctx.strokeStyle;
            ctx.textAlign = "right";
            ctx.fillText(line.label, left + width - 6 * devicePixelRatio, y - 4 * devicePixelRatio);
            ctx.textAlign = "left";
          }
          ctx.setLineDash([]);
          for (const mark of markers) {
            const x = u.valToPos(mark.ts, "x", true);
            if (x < left || x > left + width) continue;
            ctx.strokeStyle = SEVERITY_COLOURS[mark.severity] || "#444";
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
            ctx.fillStyle = ctx.strokeStyle;
            ctx.fillText(mark.label, x + 4 * devicePixelRatio, top + 14 * devicePixelRatio);
          }
          ctx.restore();
        },
      ],
    },
  };
}

function options(width, mode, unit, thresholds, markers, start, end, label) {
  const series = [{}, { label, stroke: "#1d4ed8", width: 2, points: { show: mode === "raw", size: 6, fill: "#1d4ed8" }, value: (u, v) => (v === null ? "–" : formatNumber(v)) }];
  const opts = {
    width,
    height: 280,
    ms: 1,
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: { time: true, min: start, max: end },
      y: {
        range: (u, min, max) => {
          const values = [min, max, ...thresholds.map((l) => l.value)].filter((v) => v !== null && Number.isFinite(v));
          let lo = Math.min(...values);
          let hi = Math.max(...values);
          if (lo === hi) {
            lo -= 1;
            hi += 1;
          }
          const pad = (hi - lo) * 0.08;
          return [lo - pad, hi + pad];
        },
      },
    },
    axes: [{ stroke: "#1b1b1b", grid: { stroke: "#e5e7eb" } }, { stroke: "#1b1b1b", grid: { stroke: "#e5e7eb" }, label: unit, size: 60 }],
    series,
    plugins: [overlays(thresholds, markers)],
  };
  if (mode === "agg") {
    series.push({ label: t("chart.min"), stroke: "#93c5fd", width: 1 }, { label: t("chart.max"), stroke: "#93c5fd", width: 1 });
    opts.bands = [{ series: [3, 2], fill: "rgba(147, 197, 253, 0.35)" }];
  }
  return opts;
}

// A chart of one metric of one device over [start, end) (end: null follows now, live).
export function Chart({ deviceId, assetType, metric, start, end, thresholds = [], markers = [], live = false, id = "chart" }) {
  const holder = useRef(null);
  const plot = useRef(null);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const follow = end === null;

  useEffect(() => {
    let cancelled = false;
    setError(null);
    const until = follow ? Date.now() : end;
    load(deviceId, metric, start, until).then(
      (r) => !cancelled && setResult({ ...r, start, end: until }),
      (e) => !cancelled && setError(e),
    );
    return () => {
      cancelled = true;
    };
  }, [deviceId, metric, start, end]);

  // Draw (again) when the data or the overlays change.
  useEffect(() => {
    if (!result || !holder.current) return undefined;
    const unit = metricUnit(assetType, metric);
    const label = metricLabel(metric);
    const lines = thresholds
      .filter((l) => l.metric === metric)
      .map((l) => ({ ...l, label: t("chart.threshold", { rule: l.rule_id, op: l.op, value: formatNumber(l.value) }) }));
    const marks = markers.map((m) => ({ ...m, label: m.label || t("chart.alert_marker", { severity: t(`sev.${m.severity}`) }) }));
    const width = Math.max(320, holder.current.clientWidth || 800);
    plot.current?.destroy();
    plot.current = new uPlot(options(width, result.mode, unit, lines, marks, result.start, result.end, label), columns(result), holder.current);
    const resize = new ResizeObserver(() => {
      if (plot.current && holder.current) plot.current.setSize({ width: Math.max(320, holder.current.clientWidth), height: 280 });
    });
    resize.observe(holder.current);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [result, thresholds, markers]);

  // Live: readings as they arrive, the window sliding with now.
  useEffect(() => {
    if (!live || !follow || !result) return undefined;
    const controller = new AbortController();
    sse(`/console/devices/${encodeURIComponent(deviceId)}/live`, {
      signal: controller.signal,
      onState: () => {},
      onEvent: (kind, data) => {
        if (kind !== "reading" || data.metrics[metric] === undefined || typeof data.metrics[metric] === "boolean") return;
        setResult((old) => {
          if (!old || old.mode !== "raw" || old.points.some((p) => p.ts_ms === data.ts_ms)) return old;
          const span = old.end - old.start;
          const endMs = Math.max(Date.now(), data.ts_ms + 1);
          const points = [...old.points, { ts_ms: data.ts_ms, metric, value: data.metrics[metric] }].filter((p) => p.ts_ms >= endMs - span);
          return { ...old, points, start: endMs - span, end: endMs };
        });
      },
    });
    return () => controller.abort();
  }, [live, follow, deviceId, metric, result === null]);

  if (error) return html`<p class="error" role="alert">${t("common.error", { message: error.message })}</p>`;
  const values = result ? result.points.filter((p) => p.value !== null) : [];
  const latest = values.length ? values[values.length - 1] : null;
  const unit = metricUnit(assetType, metric);
  const summary = result
    ? values.length
      ? t("chart.summary", {
          metric: metricLabel(metric),
          unit: unit || "–",
          points: t("chart.points", { count: values.length }),
          latest: `${formatNumber(latest.value)} ${unit} · ${absoluteTime(latest.ts_ms)}`,
        })
      : t("chart.empty")
    : t("common.loading");
  const mode = result ? (result.mode === "raw" ? t("chart.raw") : t("chart.aggregated", { every: result.every })) : "";
  return html`<figure class="chart" id=${id} data-mode=${result?.mode || "loading"} data-points=${values.length}>
    <div class="chart-canvas" ref=${holder} role="img" aria-label=${summary}></div>
    <figcaption><span class="chart-summary" aria-live="polite">${summary}</span> <span class="quiet">${mode}</span></figcaption>
  </figure>`;
}

// Picks a range: presets from 15 minutes to 30 days, or custom start and end.
export function RangePicker({ value, onChange }) {
  const [custom, setCustom] = useState(value.custom ? value : null);
  const toLocal = (ms) => {
    const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60e3);
    return d.toISOString().slice(0, 16);
  };
  const apply = (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const start = new Date(form.get("from")).getTime();
    const end = new Date(form.get("to")).getTime();
    if (Number.isFinite(start) && Number.isFinite(end) && end > start) onChange({ custom: true, start, end });
  };
  return html`<div class="range" role="group" aria-label=${t("chart.range")}>
    ${RANGES.map(
      ([name, ms]) => html`<button type="button" class="range-button" aria-pressed=${!value.custom && value.span === ms ? "true" : "false"}
        data-range=${name} onClick=${() => { setCustom(null); onChange({ custom: false, span: ms }); }}>${name}</button>`,
    )}
    <button type="button" class="range-button" aria-pressed=${value.custom || custom ? "true" : "false"}
      onClick=${() => setCustom({ start: Date.now() - 86400e3, end: Date.now() })}>${t("chart.custom")}</button>
    ${custom
      ? html`<form class="custom-range" onSubmit=${apply}>
          <label>${t("chart.from")} <input type="datetime-local" name="from" value=${toLocal(custom.start)} required /></label>
          <label>${t("chart.to")} <input type="datetime-local" name="to" value=${toLocal(custom.end)} required /></label>
          <button type="submit">${t("chart.apply")}</button>
        </form>`
      : null}
  </div>`;
}
