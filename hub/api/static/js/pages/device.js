// One device: facts, latest values with units, its alerts, seq gaps, dead letters, and
// a chart of any metric over a chosen range with rule thresholds and alert markers.
import { html, useState, useMemo } from "../lib.js";
import { api } from "../api.js";
import { t, assetLabel, metricLabel, formatValue, formatNumber, catalogOf } from "../i18n.js";
import { Page, Loading, Problem, State, Time, useApp, useData } from "../ui.js";
import { Chart, RangePicker } from "../chart.js";
import { AlertRow } from "./alerts.js";
import { deviceState } from "./devices.js";
import { Hints } from "./reports.js";

function Facts({ device }) {
  const rows = [
    [t("alert.district"), html`<a href="#/devices/${encodeURIComponent(device.district)}">${device.district}</a>`],
    [t("alert.asset_type"), assetLabel(device.asset_type)],
    [t("device.status"), html`<${State} value=${deviceState(device)} />`],
    [t("device.last_seen"), html`<${Time} ms=${device.last_seen_ms} />`],
    [t("device.location"), device.latitude === null ? t("common.none") : `${formatNumber(device.latitude, 6)}, ${formatNumber(device.longitude, 6)}`],
    [t("device.seq_gaps"), html`<span id="seq-gaps">${device.seq_gaps}</span>`],
    [t("device.seq_duplicates"), html`<span id="seq-duplicates">${device.seq_duplicates}</span>`],
    ...Object.entries(device.metadata || {}).map(([k, v]) => [`${t("device.metadata")}: ${k}`, String(v)]),
  ];
  return html`<dl class="facts" id="device-facts">${rows.map(([k, v]) => html`<div><dt>${k}</dt><dd>${v}</dd></div>`)}</dl>`;
}

function Latest({ device, metric, onPick }) {
  const metrics = Object.keys(device.latest).sort();
  if (!metrics.length) return html`<p class="quiet">${t("device.no_readings")}</p>`;
  return html`<table id="latest" class="list">
    <caption>${t("device.latest")}${device.latest_ts_ms ? html` · <${Time} ms=${device.latest_ts_ms} />` : null}</caption>
    <tbody>${metrics.map(
      (m) => html`<tr data-metric=${m}>
        <th scope="row"><button type="button" class="link" aria-pressed=${m === metric ? "true" : "false"} onClick=${() => onPick(m)}>${metricLabel(m)}</button></th>
        <td>${formatValue(device.asset_type, m, device.latest[m])}</td>
      </tr>`,
    )}</tbody>
  </table>`;
}

function DeadLetters({ deviceId }) {
  const { data, error } = useData(() => api(`/dead-letters?device_id=${encodeURIComponent(deviceId)}&limit=50`), [deviceId]);
  return html`<section aria-labelledby="dl-title">
    <h2 id="dl-title">${t("device.dead_letters")}</h2>
    ${error ? html`<${Problem} error=${error} />` : null}
    ${data && !data.items.length ? html`<p class="quiet">${t("device.no_dead_letters")}</p>` : null}
    ${data && data.items.length
      ? html`<table id="dead-letters" class="list"><thead><tr>
          <th scope="col">${t("device.col.received")}</th><th scope="col">${t("device.col.reason")}</th><th scope="col">${t("device.col.detail")}</th>
        </tr></thead><tbody>${data.items.map(
          (d) => html`<tr><td><${Time} ms=${d.received_ms} /></td><td><code>${d.reason}</code></td><td>${d.detail}</td></tr>`,
        )}</tbody></table>`
      : null}
  </section>`;
}

export default function Device({ route }) {
  const app = useApp();
  const id = route.parts[1];
  const [metric, setMetric] = useState(route.query.get("metric"));
  // A preset range is anchored when chosen; the chart then follows now by itself.
  const [range, setRange] = useState(() => ({ custom: false, span: 3600e3, start: Date.now() - 3600e3 }));
  const pickRange = (r) => setRange(r.custom ? r : { ...r, start: Date.now() - r.span });
  const { data, error } = useData(
    () =>
      Promise.all([
        api(`/devices/${encodeURIComponent(id)}`),
        api(`/console/devices/${encodeURIComponent(id)}/thresholds`),
      ]).then(async ([device, thresholds]) => {
        const alerts = await api(`/alerts?district=${encodeURIComponent(device.district)}&asset_type=${encodeURIComponent(device.asset_type)}&limit=500`);
        return { device, thresholds, alerts: alerts.filter((a) => a.source === device.device_id) };
      }),
    [id],
  );
  const markers = useMemo(() => (data ? data.alerts.map((a) => ({ ts: a.started_ms, severity: a.severity })) : []), [data]);
  const thresholds = useMemo(() => (data ? data.thresholds : []), [data]);
  const title = t("device.title", { id });
  if (!data) return html`<${Page} title=${title}>${error ? html`<${Problem} error=${error} />` : html`<${Loading} />`}<//>`;
  const { device, alerts } = data;
  const readable = Object.keys(device.latest).sort();
  const catalogMetrics = Object.entries(catalogOf(device.asset_type)?.metrics || {})
    .filter(([, m]) => m.readable && m.type === "number")
    .map(([name]) => name);
  // Catalog order first (its first metric is the asset's main one), then anything else sent.
  const choices = [...new Set([...catalogMetrics, ...readable.filter((m) => typeof device.latest[m] !== "boolean")])];
  const shown = metric && choices.includes(metric) ? metric : choices[0];
  const start = range.start;
  const end = range.custom ? range.end : null;
  return html`<${Page} title=${title}>
    <${Hints} hints=${device.report_hints} />
    <div class="two-col">
      <div><${Facts} device=${device} /></div>
      <div>
        <${Latest} device=${device} metric=${shown} onPick=${setMetric} />
        ${device.withheld_metrics.length ? html`<p class="quiet">${t("device.withheld", { metrics: device.withheld_metrics.map(metricLabel).join(", ") })}</p>` : null}
      </div>
    </div>
    <section aria-labelledby="chart-title" class="chart-section">
      <h2 id="chart-title">${t("device.chart")}</h2>
      ${choices.length
        ? html`<div class="chart-controls">
              <label>${t("device.metric")} <select id="metric" value=${shown} onChange=${(e) => setMetric(e.target.value)}>
                ${choices.map((m) => html`<option value=${m}>${metricLabel(m)}</option>`)}
              </select></label>
              <${RangePicker} value=${range} onChange=${pickRange} />
            </div>
            <${Chart} key=${`${shown}:${start}:${end}`} deviceId=${device.device_id} assetType=${device.asset_type}
              metric=${shown} start=${start} end=${end} thresholds=${thresholds} markers=${markers} live=${!range.custom} />`
        : html`<p class="quiet">${t("device.no_readings")}</p>`}
    </section>
    <section aria-labelledby="device-alerts-title">
      <h2 id="device-alerts-title">${t("device.alerts")}</h2>
      ${alerts.length ? html`<ul class="alert-list">${alerts.map((a) => html`<${AlertRow} alert=${a} />`)}</ul>` : html`<p class="quiet">${t("alerts.none")}</p>`}
    </section>
    ${app.can.dead_letters ? html`<${DeadLetters} deviceId=${device.device_id} />` : null}
  <//>`;
}
