// The status board: hub health, open alerts by severity, districts x asset types with
// online / offline / stale / never-heard counts, and the worst open alerts.
import { html, useEffect } from "../lib.js";
import { api } from "../api.js";
import { t, assetLabel, formatNumber } from "../i18n.js";
import { Page, Loading, Problem, Severity, Status, Muted, Time, useApp, useData, SEVERITIES, SEVERITY_RANK } from "../ui.js";

function sum(values) {
  return values.reduce((a, b) => a + b, 0);
}

// The journal reports unread bytes per consumer (store, live): the board shows the largest.
function lag(value) {
  if (typeof value === "number") return value;
  return value && typeof value === "object" ? Math.max(0, ...Object.values(value)) : undefined;
}

function bytes(n) {
  if (n === undefined || n === null) return t("health.unknown");
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${formatNumber(n, 2)} ${units[i]}`;
}

function Health() {
  const app = useApp();
  const health = app.link.health;
  const checks = health?.checks || {};
  const deadLetters = checks.dead_letters ? sum(Object.values(checks.dead_letters)) : null;
  const problems = checks.rules?.problems?.length;
  const items = [
    ["broker", checks.broker ? (checks.broker.connected === false ? t("health.disconnected") : t("health.connected")) : t("health.unknown"), checks.broker?.connected === false],
    ["store", checks.store ? (checks.store.writable === false ? t("health.failing") : t("health.writable")) : t("health.unknown"), checks.store?.writable === false],
    ["journal", checks.journal ? bytes(lag(checks.journal.lag_bytes)) : t("health.unknown"), Boolean(checks.journal?.full)],
    ["rules", problems === undefined ? t("health.unknown") : problems ? String(problems) : t("health.none"), Boolean(problems)],
    ["dead_letters", deadLetters === null ? t("health.unknown") : String(deadLetters), false],
    ["stream", app.link.stream === "live" ? t("health.connected") : t("health.disconnected"), app.link.stream !== "live"],
  ];
  return html`<section class="health" aria-labelledby="health-title">
    <h2 id="health-title">${t("health.title")}</h2>
    <dl class="health-grid">
      ${items.map(
        ([name, value, bad]) => html`<div class=${bad ? "bad" : "good"} data-check=${name}>
          <dt>${t(`health.${name}`)}</dt><dd>${value}</dd>
        </div>`,
      )}
    </dl>
  </section>`;
}

function SeverityCounts({ districts }) {
  const counts = Object.fromEntries(SEVERITIES.map((s) => [s, sum(districts.map((d) => d.active_alerts[s] || 0))]));
  return html`<section aria-labelledby="sev-title">
    <h2 id="sev-title">${t("board.severity_counts")}</h2>
    <ul class="sev-counts">
      ${SEVERITIES.map(
        (s) => html`<li class="sev-count sev-${s} ${counts[s] ? "" : "zero"}" data-severity=${s}>
          <a href="#/alerts?severity=${s}"><span class="n">${counts[s]}</span> <span>${t(`sev.${s}`)}</span></a>
        </li>`,
      )}
    </ul>
  </section>`;
}

function Cell({ district, cell }) {
  if (!cell) return html`<td class="cell cond-none">${t("common.none")}</td>`;
  const alerts = sum(Object.values(cell.active_alerts));
  const notes = [
    cell.offline ? t("board.offline", { count: cell.offline }) : null,
    cell.stale ? t("board.stale", { count: cell.stale }) : null,
    cell.unknown ? t("board.never", { count: cell.unknown }) : null,
    alerts ? t("board.alerts", { count: alerts }) : null,
  ].filter(Boolean);
  const href = `#/devices/${encodeURIComponent(district)}/${encodeURIComponent(cell.asset_type)}`;
  return html`<td class="cell cond-${cell.worst}" data-asset-type=${cell.asset_type} data-worst=${cell.worst}
      data-offline=${cell.offline} data-stale=${cell.stale} data-never=${cell.unknown}>
    <a href=${href}>
      <span class="main">${t("board.cell", { online: cell.online, devices: cell.devices })}</span>
      ${notes.map((n) => html`<span class="note">${n}</span>`)}
    </a>
  </td>`;
}

function Grid({ districts }) {
  if (!districts.length) return html`<p class="quiet">${t("board.empty")}</p>`;
  const types = [...new Set(districts.flatMap((d) => d.asset_types.map((c) => c.asset_type)))].sort();
  return html`<div class="scroll"><table id="board" class="board">
    <caption class="sr-only">${t("board.title")}</caption>
    <thead><tr>
      <th scope="col">${t("board.district")}</th>
      ${types.map((type) => html`<th scope="col">${assetLabel(type)}</th>`)}
      <th scope="col">${t("board.all")}</th>
    </tr></thead>
    <tbody>
      ${districts.map((d) => {
        const cells = new Map(d.asset_types.map((c) => [c.asset_type, c]));
        return html`<tr data-district=${d.district}>
          <th scope="row" class="cond-${d.worst}" data-worst=${d.worst}>${d.district}</th>
          ${types.map((type) => html`<${Cell} district=${d.district} cell=${cells.get(type)} />`)}
          <${Cell} district=${d.district} cell=${{ ...d, asset_type: "" }} />
        </tr>`;
      })}
    </tbody>
  </table></div>`;
}

function Worst({ alerts }) {
  const open = alerts
    .filter((a) => a.status !== "resolved")
    .sort((a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || b.started_ms - a.started_ms)
    .slice(0, 8);
  return html`<section aria-labelledby="worst-title">
    <h2 id="worst-title">${t("board.worst")}</h2>
    ${open.length
      ? html`<ul class="worst">${open.map(
          (a) => html`<li data-alert-id=${a.id}>
            <${Severity} value=${a.severity} /> <${Status} value=${a.status} /> <${Muted} by=${a.muted_by} />
            <a href="#/alert/${encodeURIComponent(a.id)}">${a.summary || a.rule_id}</a>
            <span class="quiet">${a.district} · <${Time} ms=${a.started_ms} /></span>
          </li>`,
        )}</ul>`
      : html`<p class="quiet">${t("board.none")}</p>`}
  </section>`;
}

export default function Board() {
  const { data, error } = useData(
    () => Promise.all([api("/districts"), api("/alerts?state=active&limit=1000")]),
    [],
  );
  useEffect(() => {
    // The first board with data is "usable": bench/console.py reads this mark.
    if (data && !performance.getEntriesByName("console:board").length) performance.mark("console:board");
  }, [data]);
  return html`<${Page} title=${t("board.title")}>
    <${Health} />
    ${error ? html`<${Problem} error=${error} />` : null}
    ${data
      ? html`<${SeverityCounts} districts=${data[0]} />
          <${Grid} districts=${data[0]} />
          <${Worst} alerts=${data[1]} />`
      : !error && html`<${Loading} />`}
  <//>`;
}
