// One alert: what fired and why (rule, version, readings on a chart with the threshold),
// its timeline, and acknowledge / resolve / comment for roles that may.
import { html, useState, useMemo, useRef } from "../lib.js";
import { api } from "../api.js";
import { t, assetLabel, metricLabel, formatValue, formatNumber } from "../i18n.js";
import { Page, Loading, Problem, Severity, Status, Muted, Time, useApp, useData } from "../ui.js";
import { Chart } from "../chart.js";
import { AlertRow } from "./alerts.js";
import { ReportTable } from "./reports.js";

// Readings shown before the alert started (and after it ended).
const CONTEXT_MS = 30 * 60e3;

function Facts({ alert }) {
  const rows = [
    [t("alert.rule"), html`<code>${alert.rule_id}</code> <span class="quiet">${t("alert.version", { version: alert.rule_version })}</span>`],
    [t("alert.district"), alert.district],
    [t("alert.asset_type"), assetLabel(alert.asset_type)],
    [t("alert.source"), alert.source === "_area" ? t("alerts.area") : html`<a href="#/device/${encodeURIComponent(alert.source)}">${alert.source}</a>`],
    [t("alert.started"), html`<${Time} ms=${alert.started_ms} />`],
    [t("alert.updated"), html`<${Time} ms=${alert.updated_ms} />`],
    [t("alert.incident"), alert.incident_id || t("common.none")],
    [t("alert.labels"), Object.entries(alert.labels).map(([k, v]) => html`<code class="label">${k}=${v}</code> `)],
  ];
  return html`<dl class="facts">${rows.map(([k, v]) => html`<div><dt>${k}</dt><dd>${v}</dd></div>`)}</dl>`;
}

function Explanation({ alert }) {
  const e = alert.explanation || {};
  const observed = Object.entries(e.observed || {});
  return html`<section aria-labelledby="why-title" id="explanation">
    <h2 id="why-title">${t("alert.explanation")}</h2>
    ${e.summary ? html`<p class="explanation-summary">${e.summary}</p>` : null}
    <dl class="facts">
      ${observed.map(
        ([metric, value]) => html`<div data-observed=${metric}><dt>${t("alert.observed")}: ${metricLabel(metric)}</dt>
          <dd class="observed-value">${formatValue(alert.asset_type, metric, value)}</dd></div>`,
      )}
      ${e.threshold !== null && e.threshold !== undefined
        ? html`<div data-threshold=${e.threshold}><dt>${t("alert.threshold")}</dt><dd class="threshold-value">${formatValue(alert.asset_type, observed[0]?.[0], e.threshold)}</dd></div>`
        : null}
    </dl>
  </section>`;
}

function ReadingsChart({ alert }) {
  const e = alert.explanation || {};
  const metric = Object.keys(e.observed || {})[0];
  const start = alert.started_ms - CONTEXT_MS;
  const end = alert.resolved_ms ? alert.resolved_ms + CONTEXT_MS : null;
  const thresholds = useMemo(
    () => (e.threshold === null || e.threshold === undefined ? [] : [{ rule_id: alert.rule_id, metric, op: "", value: e.threshold, severity: alert.severity }]),
    [alert.id, e.threshold],
  );
  const markers = useMemo(
    () => [
      { ts: alert.started_ms, severity: alert.severity },
      ...(e.readings || []).map(([ts]) => ({ ts, severity: alert.severity, label: "●" })),
    ],
    [alert.id, alert.started_ms],
  );
  if (alert.source === "_area" || !metric) return html`<p class="quiet">${t("alert.no_device_chart")}</p>`;
  return html`<section aria-labelledby="chart-title">
    <h2 id="chart-title">${t("alert.readings_chart")}: ${metricLabel(metric)}</h2>
    <${Chart} deviceId=${alert.source} assetType=${alert.asset_type} metric=${metric} start=${start} end=${end}
      thresholds=${thresholds} markers=${markers} live=${!alert.resolved_ms} id="alert-chart" />
  </section>`;
}

function Timeline({ steps }) {
  return html`<section aria-labelledby="timeline-title">
    <h2 id="timeline-title">${t("alert.timeline")}</h2>
    <ol id="timeline" class="timeline">
      ${steps.map(
        (s) => html`<li data-status=${s.status}>
          <${Status} value=${s.status} /> <${Time} ms=${s.ts_ms} /> <span class="actor">${t("alert.actor", { actor: s.actor })}</span>
          ${s.detail && s.detail.receiver ? html` <span class="quiet">→ ${s.detail.receiver}${s.detail.outcome ? ` (${s.detail.outcome})` : ""}</span>` : null}
          ${s.comment ? html`<blockquote class="comment">${s.comment}</blockquote>` : null}
        </li>`,
      )}
    </ol>
  </section>`;
}

function silenceLink(alert) {
  const matchers = { district: alert.district, asset_type: alert.asset_type, rule_id: alert.rule_id };
  if (alert.source !== "_area") matchers.source = alert.source;
  const query = new URLSearchParams({ new: "1", from: alert.id, ...Object.fromEntries(Object.entries(matchers).map(([k, v]) => [`m.${k}`, v])) });
  return `#/silences?${query}`;
}

function Actions({ alert, onDone }) {
  const app = useApp();
  const [comment, setComment] = useState("");
  const [confirming, setConfirming] = useState(false);
  const [message, setMessage] = useState("");
  const dialog = useRef(null);
  if (!app.can.comment && !app.can.acknowledge && !app.can.silence) return null;
  const act = async (action) => {
    try {
      await api(`/alerts/${encodeURIComponent(alert.id)}/${action}`, { method: "POST", body: { comment } });
      setComment("");
      setMessage(t("alert.done"));
      setConfirming(false);
      onDone();
    } catch (error) {
      setMessage(error.message);
    }
  };
  const open = alert.status !== "resolved";
  return html`<section aria-labelledby="actions-title" class="actions-box">
    <h2 id="actions-title" class="sr-only">${t("alerts.col.actions")}</h2>
    ${app.can.comment
      ? html`<label for="comment">${t("alert.comment")}</label>
          <textarea id="comment" rows="3" maxlength="2000" aria-describedby="comment-help" value=${comment} onInput=${(e) => setComment(e.target.value)}></textarea>
          <p id="comment-help" class="quiet">${t("alert.comment_help")}</p>`
      : null}
    <div class="buttons">
      ${app.can.acknowledge && alert.status === "firing" ? html`<button type="button" id="ack" onClick=${() => act("ack")}>${t("alert.ack")}</button>` : null}
      ${app.can.resolve && open ? html`<button type="button" id="resolve" onClick=${() => setConfirming(true)}>${t("alert.resolve")}</button>` : null}
      ${app.can.comment ? html`<button type="button" id="add-comment" disabled=${!comment.trim()} onClick=${() => act("comment")}>${t("alert.add_comment")}</button>` : null}
      ${app.can.silence && open ? html`<a class="button" id="silence" href=${silenceLink(alert)}>${t("alert.silence")}</a>` : null}
    </div>
    ${confirming
      ? html`<div class="confirm" role="alertdialog" aria-modal="false" aria-labelledby="confirm-title" aria-describedby="confirm-text" ref=${dialog}>
          <h3 id="confirm-title">${t("alert.confirm_title")}</h3>
          <p id="confirm-text">${t("alert.confirm_text")}</p>
          <button type="button" id="confirm-resolve" onClick=${() => act("resolve")}>${t("alert.confirm")}</button>
          <button type="button" id="cancel-resolve" onClick=${() => setConfirming(false)}>${t("alert.cancel")}</button>
        </div>`
      : null}
    <p class="quiet" role="status" id="action-message">${message}</p>
  </section>`;
}

function Members({ alert }) {
  const { data } = useData(() => api(`/alerts?district=${encodeURIComponent(alert.district)}&asset_type=${encodeURIComponent(alert.asset_type)}&limit=200`), [alert.id]);
  if (!data || !alert.incident_id) return null;
  const members = data.filter((a) => a.incident_id === alert.incident_id && a.id !== alert.id);
  if (!members.length) return null;
  return html`<section aria-labelledby="members-title">
    <h2 id="members-title">${t("alert.members")}</h2>
    <ul class="alert-list">${members.map((a) => html`<${AlertRow} alert=${a} />`)}</ul>
  </section>`;
}

export default function Alert({ route }) {
  const id = route.parts[1];
  const [bump, setBump] = useState(0);
  const { data: alert, error } = useData(() => api(`/alerts/${encodeURIComponent(id)}`), [id, bump]);
  const title = t("alert.title", { id });
  if (error && !alert) return html`<${Page} title=${title}><${Problem} error=${error} /><//>`;
  if (!alert) return html`<${Page} title=${title}><${Loading} /><//>`;
  return html`<${Page} title=${alert.summary || title}>
    <p class="alert-badges" id="alert-state"><${Severity} value=${alert.severity} /> <${Status} value=${alert.status} /> <${Muted} by=${alert.muted_by} />
      <a href="#/alerts" class="back">${t("alert.back")}</a></p>
    <div class="two-col">
      <div>
        <${Facts} alert=${alert} />
        <${Explanation} alert=${alert} />
      </div>
      <div>
        <${Actions} alert=${alert} onDone=${() => setBump((b) => b + 1)} />
        <${Timeline} steps=${alert.timeline} />
      </div>
    </div>
    <${ReadingsChart} alert=${alert} />
    <${Members} alert=${alert} />
    <section aria-labelledby="alert-reports-title">
      <h2 id="alert-reports-title">${t("alert.reports")}</h2>
      ${alert.reports && alert.reports.length
        ? html`<${ReportTable} reports=${alert.reports} id="alert-reports" />`
        : html`<p class="quiet">${t("alert.no_reports")}</p>`}
    </section>
  <//>`;
}
