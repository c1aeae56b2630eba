// Alerts, worst first and grouped by incident; silenced and inhibited ones say so.
import { html, useState } from "../lib.js";
import { api } from "../api.js";
import { t, assetLabel } from "../i18n.js";
import { Page, Loading, Problem, Severity, Status, Muted, Time, useApp, useData } from "../ui.js";
import { incidents } from "../alerts-model.js";

export function AlertRow({ alert, onAck }) {
  const app = useApp();
  return html`<li class="alert-row sev-edge-${alert.severity}" data-alert-id=${alert.id} data-severity=${alert.severity} data-status=${alert.status}>
    <div class="badges"><${Severity} value=${alert.severity} /> <${Status} value=${alert.status} /> <${Muted} by=${alert.muted_by} /></div>
    <div class="what">
      <a class="summary" href="#/alert/${encodeURIComponent(alert.id)}">${alert.summary || alert.rule_id}</a>
      <span class="where">${alert.district} · ${assetLabel(alert.asset_type)} ·
        ${alert.source === "_area" ? t("alerts.area") : html`<a href="#/device/${encodeURIComponent(alert.source)}">${alert.source}</a>`}</span>
    </div>
    <div class="since"><${Time} ms=${alert.started_ms} /></div>
    <div class="actions">
      ${app.can.acknowledge && alert.status === "firing" && onAck
        ? html`<button type="button" class="ack" onClick=${() => onAck(alert)}>${t("alert.ack")}</button>`
        : null}
    </div>
  </li>`;
}

function Incident({ group, onAck }) {
  const [open, setOpen] = useState(false);
  const listId = `incident-${group.id.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  return html`<li class="incident" data-incident=${group.id} data-severity=${group.head.severity}>
    <ul class="alert-list head"><${AlertRow} alert=${group.head} onAck=${onAck} /></ul>
    ${group.rest.length
      ? html`<button type="button" class="fold" aria-expanded=${open ? "true" : "false"} aria-controls=${listId} onClick=${() => setOpen(!open)}>
            ${open ? t("alerts.hide") : t("alerts.show")}: ${t("alerts.folded", { count: group.rest.length })}
          </button>
          <ul class="alert-list members" id=${listId} hidden=${!open}>
            ${group.rest.map((a) => html`<${AlertRow} alert=${a} onAck=${onAck} />`)}
          </ul>`
      : null}
  </li>`;
}

export default function Alerts({ route }) {
  const state = route.query.get("state") === "resolved" ? "resolved" : "active";
  const severity = route.query.get("severity");
  const [message, setMessage] = useState("");
  const { data, error } = useData(() => api(`/alerts?state=${state}&limit=${state === "active" ? 1000 : 200}`), [state]);
  const onAck = async (alert) => {
    try {
      await api(`/alerts/${encodeURIComponent(alert.id)}/ack`, { method: "POST", body: { comment: "" } });
      setMessage(t("alert.done"));
    } catch (e) {
      setMessage(e.message);
    }
  };
  const shown = data ? data.filter((a) => !severity || a.severity === severity) : [];
  const groups = incidents(shown);
  return html`<${Page} title=${t("alerts.title")}>
    <nav class="tabs" aria-label=${t("alerts.title")}>
      <a href="#/alerts" aria-current=${state === "active" ? "page" : undefined}>${t("alerts.open")}</a>
      <a href="#/alerts?state=resolved" aria-current=${state === "resolved" ? "page" : undefined}>${t("alerts.recent_resolved")}</a>
    </nav>
    <p class="quiet" role="status">${message}</p>
    ${error ? html`<${Problem} error=${error} />` : null}
    ${data
      ? groups.length
        ? html`<ol id="incidents" class="incidents">${groups.map((g) => html`<${Incident} key=${g.id} group=${g} onAck=${onAck} />`)}</ol>`
        : html`<p class="quiet" id="no-alerts">${t("alerts.none")}</p>`
      : !error && html`<${Loading} />`}
  <//>`;
}
