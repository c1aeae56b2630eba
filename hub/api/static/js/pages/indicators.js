// Indicators: the trend of one indicator per district, the districts ranked on its
// latest period, and the devices that pull a district down (docs/indicators.md).
// Address: #/indicators?id=<indicator>&period=day|week|month&district=<district>.
import { html, useEffect, useRef } from "../lib.js";
import uPlot from "../../vendor/uplot/uPlot.esm.js";
import { api } from "../api.js";
import { t, has, formatNumber, language } from "../i18n.js";
import { Page, Loading, Problem, useData } from "../ui.js";

// How far back each period's trend reaches (the API takes whole local periods).
const SPAN = { day: "-30d", week: "-84d", month: "-366d" };
const PERIODS = ["day", "week", "month"];
// Distinct colours for the districts' lines (repeated beyond twelve districts).
const COLOURS = ["#1d4ed8", "#b91c1c", "#15803d", "#b45309", "#7e22ce", "#0e7490", "#be185d", "#4d7c0f", "#9a3412", "#334155", "#a16207", "#0369a1"];

function go(params) {
  const query = new URLSearchParams(params);
  for (const [k, v] of [...query]) if (v === "" || v === null || v === undefined) query.delete(k);
  location.hash = `#/indicators?${query}`;
}

// The definition's own title (its file is the reference), translated where the
// console has a translation of a shipped indicator.
function title(definition) {
  const k = `ind.${definition.id}`;
  return language() !== "en" && has(k) ? t(k) : definition.title;
}

function value(definition, v) {
  if (v === null || v === undefined) return t("common.none");
  const unit = definition.unit === "%" ? "%" : ` ${definition.unit}`;
  return `${formatNumber(v)}${unit}`;
}

// A period as people name it: a day, the week starting on a day, a month.
function periodLabel(period, ms) {
  const day = { year: "numeric", month: "2-digit", day: "2-digit" };
  const format = (opts) => new Intl.DateTimeFormat(language(), opts).format(new Date(ms));
  if (period === "month") return format({ year: "numeric", month: "long" });
  if (period === "week") return t("ind.week_of", { day: format(day) });
  return format(day);
}

function meets(definition, v) {
  if (definition.target === null || v === null) return null;
  return definition.direction === "higher_is_better" ? v >= definition.target : v <= definition.target;
}

// Worst first: the order a ranking reads in a control room.
function worstFirst(definition) {
  const sign = definition.direction === "higher_is_better" ? 1 : -1;
  return (a, b) => (a.value === null) - (b.value === null) || sign * (a.value - b.value) || a.district.localeCompare(b.district);
}

function Trend({ definition, points, districts }) {
  const holder = useRef(null);
  useEffect(() => {
    if (!holder.current || !points.length) return undefined;
    const xs = [...new Set(points.map((p) => p.period_start_ms))].sort((a, b) => a - b);
    const data = [xs, ...districts.map((d) => {
      const byStart = new Map(points.filter((p) => p.district === d).map((p) => [p.period_start_ms, p.value]));
      return xs.map((x) => byStart.get(x) ?? null);
    })];
    const series = [{}, ...districts.map((d, i) => ({ label: d, stroke: COLOURS[i % COLOURS.length], width: 2, points: { size: 5 }, value: (u, v) => (v === null ? "–" : formatNumber(v)) }))];
    const target = definition.target;
    const opts = {
      width: Math.max(320, holder.current.clientWidth || 800),
      height: 300,
      ms: 1,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      // One period alone: a day either side, so its points sit in the middle.
      scales: { x: { time: true, min: xs[0] - (xs.length > 1 ? 0 : 86400e3), max: xs[xs.length - 1] + (xs.length > 1 ? 0 : 86400e3) } },
      axes: [{ stroke: "#1b1b1b", grid: { stroke: "#e5e7eb" } }, { stroke: "#1b1b1b", grid: { stroke: "#e5e7eb" }, label: definition.unit, size: 60 }],
      series,
      plugins: target === null ? [] : [{
        hooks: {
          draw: [(u) => {
            const y = u.valToPos(target, "y", true);
            const { left, top, width, height } = u.bbox;
            if (y < top || y > top + height) return;
            const { ctx } = u;
            ctx.save();
            ctx.strokeStyle = "#444";
            ctx.lineWidth = 2 * devicePixelRatio;
            ctx.setLineDash([8 * devicePixelRatio, 5 * devicePixelRatio]);
            ctx.beginPath();
            ctx.moveTo(left, y);
            ctx.lineTo(left + width, y);
            ctx.stroke();
            ctx.fillStyle = "#444";
            ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
            ctx.textAlign = "right";
            ctx.fillText(t("ind.target", { value: value(definition, target) }), left + width - 6 * devicePixelRatio, y - 4 * devicePixelRatio);
            ctx.restore();
          }],
        },
      }],
    };
    const plot = new uPlot(opts, data, holder.current);
    const resize = new ResizeObserver(() => holder.current && plot.setSize({ width: Math.max(320, holder.current.clientWidth), height: 300 }));
    resize.observe(holder.current);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [definition, points, districts]);
  const summary = t("ind.trend_summary", { indicator: title(definition), districts: districts.length, periods: new Set(points.map((p) => p.period_start_ms)).size });
  return html`<figure class="chart" id="indicator-chart" data-points=${points.length}>
    <div class="chart-canvas" ref=${holder} role="img" aria-label=${summary}></div>
    <figcaption><span class="chart-summary">${summary}</span></figcaption>
  </figure>`;
}

function Ranking({ definition, latest, period, selected, id }) {
  const rows = [...latest].sort(worstFirst(definition));
  return html`<section aria-labelledby="ranking-title">
    <h2 id="ranking-title">${t("ind.ranking", { period: periodLabel(period, rows[0].period_start_ms) })}</h2>
    <div class="scroll"><table id="ranking" class="list">
      <thead><tr>${["rank", "district", "value", "ratio", "target"].map((c) => html`<th scope="col">${t(`ind.col.${c}`)}</th>`)}</tr></thead>
      <tbody>${rows.map((p, i) => {
        const met = meets(definition, p.value);
        return html`<tr data-district=${p.district} aria-selected=${p.district === selected ? "true" : "false"}>
          <td>${i + 1}</td>
          <td>${definition.per_device
            ? html`<a href=${`#/indicators?${new URLSearchParams({ id, period, district: p.district })}`}>${p.district}</a>`
            : p.district}</td>
          <td class=${met === false ? "miss" : met ? "meet" : ""}>${value(definition, p.value)}</td>
          <td>${p.numerator === null ? "" : `${formatNumber(p.numerator)} ÷ ${formatNumber(p.denominator)}`}</td>
          <td>${met === null ? "" : met ? t("ind.met") : t("ind.missed")}</td>
        </tr>`;
      })}</tbody>
    </table></div>
  </section>`;
}

function DrillDown({ definition, district, period, start }) {
  const { data, error } = useData(
    () => api(`/indicators/${definition.id}/devices?${new URLSearchParams({ district, period, start: String(start), limit: "20" })}`),
    [definition.id, district, period, start],
  );
  return html`<section aria-labelledby="drill-title">
    <h2 id="drill-title">${t("ind.drill", { district, period: periodLabel(period, start) })}</h2>
    ${error ? html`<${Problem} error=${error} />` : !data ? html`<${Loading} />` : html`<div class="scroll"><table id="drill-down" class="list">
      <thead><tr>${["device", "asset_type", "value", "ratio"].map((c) => html`<th scope="col">${t(`ind.col.${c}`)}</th>`)}</tr></thead>
      <tbody>${data.devices.map((d) => html`<tr data-device-id=${d.device_id}>
        <td><a href=${`#/device/${encodeURIComponent(d.device_id)}`}>${d.device_id}</a></td>
        <td>${d.asset_type}</td>
        <td>${value(definition, d.value)}</td>
        <td>${d.numerator === null ? "" : `${formatNumber(d.numerator)} ÷ ${formatNumber(d.denominator)}`}</td>
      </tr>`)}</tbody>
    </table></div>`}
  </section>`;
}

export default function Indicators({ route }) {
  const params = route.query;
  const period = PERIODS.includes(params.get("period")) ? params.get("period") : "day";
  const defs = useData(() => api("/indicators"), [], { live: false });
  const id = params.get("id") || "data_completeness_pct";
  const definition = defs.data?.find((d) => d.id === id) || defs.data?.[0];
  const series = useData(
    () => (definition ? api(`/indicators/${definition.id}?${new URLSearchParams({ period, start: SPAN[period] })}`) : Promise.resolve(null)),
    [definition?.id, period],
  );
  const heading = t("ind.title");
  if (defs.error) return html`<${Page} title=${heading}><${Problem} error=${defs.error} /><//>`;
  if (!definition) return html`<${Page} title=${heading}><${Loading} /><//>`;
  const points = series.data?.points || [];
  const districts = [...new Set(points.map((p) => p.district))].sort();
  const lastStart = points.length ? Math.max(...points.map((p) => p.period_start_ms)) : null;
  const latest = points.filter((p) => p.period_start_ms === lastStart);
  const district = params.get("district");
  const controls = html`<form class="indicator-pick" onSubmit=${(e) => e.preventDefault()}>
    <label>${t("ind.pick")} <select id="indicator" value=${definition.id} onChange=${(e) => go({ id: e.target.value, period })}>
      ${defs.data.map((d) => html`<option value=${d.id}>${title(d)}</option>`)}
    </select></label>
    <div class="range" role="group" aria-label=${t("ind.period")}>
      ${PERIODS.map((p) => html`<button type="button" class="range-button" data-period=${p} aria-pressed=${p === period ? "true" : "false"}
        onClick=${() => go({ id: definition.id, period: p, district })}>${t(`ind.period.${p}`)}</button>`)}
    </div>
  </form>`;
  return html`<${Page} title=${heading}>
    ${controls}
    <section class="indicator-about" aria-labelledby="about-title">
      <h2 id="about-title">${title(definition)}</h2>
      <p>${definition.description}</p>
      <p class="quiet">${[
        html`<span>${t("ind.formula")}</span> <code>${definition.formula}</code>`,
        definition.target !== null ? t("ind.target", { value: value(definition, definition.target) }) : null,
        t(`ind.${definition.direction}`),
      ].filter(Boolean).map((part, i) => (i ? html`<span> · </span>${part}` : part))}</p>
    </section>
    ${series.error ? html`<${Problem} error=${series.error} />` : !series.data ? html`<${Loading} />` : !points.length
      ? html`<p class="quiet" id="no-points">${t("ind.empty")}</p>`
      : html`<${Trend} definition=${definition} points=${points} districts=${districts} />
        <${Ranking} definition=${definition} latest=${latest} period=${period} selected=${district} id=${definition.id} />
        ${district && definition.per_device ? html`<${DrillDown} definition=${definition} district=${district} period=${period} start=${lastStart} />` : null}`}
  <//>`;
}
