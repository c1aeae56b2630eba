// Citizen reports (Open311): the list with filters and the hints where reports keep
// arriving while the sensors read normal; one report with its links to alerts, its
// history, and for operators status with a public note, merge, and the reporter's
// contact (each read is audited).
import { html, useState } from "../lib.js";
import { api } from "../api.js";
import { t, assetLabel, formatNumber } from "../i18n.js";
import { Page, Loading, Problem, Time, useApp, useData } from "../ui.js";

export const REPORT_STATUSES = ["open", "acknowledged", "in_progress", "closed"];

export function ReportStatus({ value }) {
  return html`<span class="badge status report-${value}" data-report-status=${value}>${t(`report.status.${value}`)}</span>`;
}

export function ReportRow({ report }) {
  return html`<tr data-report-id=${report.id}>
    <td><a href="#/report/${report.id}">#${report.id}</a></td>
    <td>${report.service_name}</td>
    <td><${ReportStatus} value=${report.status} />${report.merged_into ? html` <span class="quiet">${t("report.merged_into", { id: report.merged_into })}</span>` : null}</td>
    <td>${report.district}</td>
    <td><${Time} ms=${report.requested_ms} /></td>
    <td>${report.links.length
      ? report.links.map((l) => html`<a href="#/alert/${encodeURIComponent(l.alert_id)}" title=${l.reason}>${l.rule_id}</a> `)
      : html`<span class="quiet">${t("common.none")}</span>`}</td>
    <td class="description">${report.description || report.address || ""}</td>
  </tr>`;
}

export function ReportTable({ reports, id = "reports" }) {
  return html`<div class="scroll"><table id=${id} class="list">
    <thead><tr>
      <th scope="col">${t("reports.col.id")}</th><th scope="col">${t("reports.col.service")}</th>
      <th scope="col">${t("reports.col.status")}</th><th scope="col">${t("reports.col.district")}</th>
      <th scope="col">${t("reports.col.received")}</th><th scope="col">${t("reports.col.links")}</th>
      <th scope="col">${t("reports.col.description")}</th>
    </tr></thead>
    <tbody>${reports.map((r) => html`<${ReportRow} key=${r.id} report=${r} />`)}</tbody>
  </table></div>`;
}

export function Hints({ hints }) {
  if (!hints || !hints.length) return null;
  return html`<section aria-labelledby="hints-title" class="hints" id="report-hints">
    <h2 id="hints-title">${t("reports.hints")}</h2>
    <ul>${hints.map(
      (h) => html`<li data-hint=${h.kind} data-device-id=${h.device_id || ""}>
        ${h.device_id ? html`<a href="#/device/${encodeURIComponent(h.device_id)}">${h.device_id}</a>: ` : html`${h.district} · ${assetLabel(h.asset_type)}: `}
        ${h.summary} <span class="quiet">(${h.reports.map((id) => html`<a href="#/report/${id}">#${id}</a> `)})</span>
      </li>`,
    )}</ul>
  </section>`;
}

function Filters({ route, services }) {
  const q = route.query;
  const go = (change) => {
    const next = new URLSearchParams(q);
    for (const [k, v] of Object.entries(change)) (v ? next.set(k, v) : next.delete(k));
    location.hash = `#/reports?${next}`;
  };
  return html`<form class="filters" id="report-filters" onSubmit=${(e) => e.preventDefault()}>
    <label>${t("reports.filter.status")} <select id="filter-status" value=${q.get("status") || ""} onChange=${(e) => go({ status: e.target.value })}>
      <option value="">${t("reports.filter.any")}</option>
      ${REPORT_STATUSES.map((s) => html`<option value=${s}>${t(`report.status.${s}`)}</option>`)}
    </select></label>
    <label>${t("reports.filter.service")} <select id="filter-service" value=${q.get("service_code") || ""} onChange=${(e) => go({ service_code: e.target.value })}>
      <option value="">${t("reports.filter.any")}</option>
      ${(services || []).map((s) => html`<option value=${s.service_code}>${s.service_name}</option>`)}
    </select></label>
    <label>${t("reports.filter.district")} <input id="filter-district" size="8" value=${q.get("district") || ""}
      onChange=${(e) => go({ district: e.target.value.trim() })} /></label>
  </form>`;
}

export default function Reports({ route }) {
  const q = route.query;
  const query = new URLSearchParams({ limit: "200" });
  for (const name of ["status", "service_code", "district"]) if (q.get(name)) query.set(name, q.get(name));
  const { data, error } = useData(
    () => Promise.all([api(`/reports?${query}`), api("/reports/services"), api("/reports/hints")]),
    [query.toString()],
  );
  return html`<${Page} title=${t("reports.title")}>
    <p class="quiet">${t("reports.help")}</p>
    ${error ? html`<${Problem} error=${error} />` : null}
    ${data
      ? html`<${Hints} hints=${data[2]} />
          <${Filters} route=${route} services=${data[1]} />
          ${data[0].length ? html`<${ReportTable} reports=${data[0]} />` : html`<p class="quiet" id="no-reports">${t("reports.none")}</p>`}`
      : !error && html`<${Loading} />`}
  <//>`;
}

function Handling({ report, onDone }) {
  const app = useApp();
  const [status, setStatus] = useState(report.status);
  const [note, setNote] = useState(report.status_notes || "");
  const [into, setInto] = useState("");
  const [contact, setContact] = useState(null);
  const [message, setMessage] = useState("");
  if (!app.can.reports) return null;
  const run = async (work) => {
    try {
      await work();
      setMessage(t("alert.done"));
      onDone();
    } catch (error) {
      setMessage(error.message);
    }
  };
  const save = () => run(() => api(`/reports/${report.id}/status`, { method: "POST", body: { status, note } }));
  const merge = () => run(() => api(`/reports/${report.id}/merge`, { method: "POST", body: { into: Number(into) } }));
  const showContact = async () => {
    try {
      setContact(await api(`/reports/${report.id}/contact`));
    } catch (error) {
      setMessage(error.message);
    }
  };
  const merged = report.merged_into !== null;
  return html`<section aria-labelledby="handling-title" class="actions-box" id="report-handling">
    <h2 id="handling-title">${t("report.handling")}</h2>
    ${merged
      ? html`<p>${t("report.merged_into", { id: report.merged_into })}</p>`
      : html`<label for="report-status">${t("reports.col.status")}</label>
          <select id="report-status" value=${status} onChange=${(e) => setStatus(e.target.value)}>
            ${REPORT_STATUSES.map((s) => html`<option value=${s}>${t(`report.status.${s}`)}</option>`)}
          </select>
          <label for="report-note">${t("report.note")}</label>
          <textarea id="report-note" rows="3" maxlength="2000" aria-describedby="note-help" value=${note} onInput=${(e) => setNote(e.target.value)}></textarea>
          <p id="note-help" class="quiet">${t("report.note_help")}</p>
          <div class="buttons"><button type="button" id="save-status" onClick=${save}>${t("report.save")}</button></div>
          <label for="merge-into">${t("report.merge_into")}</label>
          <input id="merge-into" inputmode="numeric" pattern="[0-9]*" size="8" value=${into} onInput=${(e) => setInto(e.target.value)} />
          <div class="buttons"><button type="button" id="merge" disabled=${!/^[0-9]+$/.test(into)} onClick=${merge}>${t("report.merge")}</button></div>`}
    ${report.has_contact
      ? html`<div class="contact">
          ${contact
            ? html`<dl class="facts" id="report-contact">${["email", "first_name", "last_name", "phone"].map(
                (k) => html`<div><dt>${t(`report.contact.${k}`)}</dt><dd>${contact[k] || t("common.none")}</dd></div>`,
              )}</dl>`
            : html`<button type="button" id="show-contact" onClick=${showContact}>${t("report.show_contact")}</button>`}
          <p class="quiet">${t("report.contact_audited")}</p>
        </div>`
      : html`<p class="quiet">${t("report.no_contact")}</p>`}
    <p class="quiet" role="status" id="report-message">${message}</p>
  </section>`;
}

export function Report({ route }) {
  const id = route.parts[1];
  const [bump, setBump] = useState(0);
  const { data: report, error } = useData(() => api(`/reports/${encodeURIComponent(id)}`), [id, bump]);
  const title = t("report.title", { id });
  if (!report) return html`<${Page} title=${title}>${error ? html`<${Problem} error=${error} />` : html`<${Loading} />`}<//>`;
  const facts = [
    [t("reports.col.service"), report.service_name],
    [t("reports.col.status"), html`<${ReportStatus} value=${report.status} /> <span class="quiet">${t("report.public", { status: t(`report.status.${report.public_status}`) })}</span>`],
    [t("report.public_note"), report.status_notes || t("common.none")],
    [t("reports.col.district"), report.district],
    [t("alert.asset_type"), report.asset_type ? assetLabel(report.asset_type) : t("common.none")],
    [t("reports.col.received"), html`<${Time} ms=${report.requested_ms} />`],
    [t("device.location"), report.lat === null ? report.address || t("common.none") : `${formatNumber(report.lat, 6)}, ${formatNumber(report.lon, 6)}`],
    [t("reports.col.description"), report.description || t("common.none")],
    ...Object.entries(report.attributes).map(([k, v]) => [`${t("report.attribute")}: ${k}`, v.join(", ")]),
    [t("report.media"), report.media_url ? html`<a href=${report.media_url} rel="noopener noreferrer nofollow" target="_blank">${report.media_url}</a>` : t("common.none")],
  ];
  return html`<${Page} title=${title}>
    <p><a href="#/reports" class="back">${t("report.back")}</a></p>
    <div class="two-col">
      <div>
        <dl class="facts" id="report-facts">${facts.map(([k, v]) => html`<div><dt>${k}</dt><dd>${v}</dd></div>`)}</dl>
        <section aria-labelledby="links-title">
          <h2 id="links-title">${t("report.links")}</h2>
          ${report.links.length
            ? html`<ul id="report-links">${report.links.map(
                (l) => html`<li data-alert-id=${l.alert_id}><a href="#/alert/${encodeURIComponent(l.alert_id)}">${l.rule_id}</a>
                  · ${t("alert.incident")}: ${l.incident_id || t("common.none")} · ${l.reason}</li>`,
              )}</ul>`
            : html`<p class="quiet">${t("report.no_links")}</p>`}
        </section>
      </div>
      <div>
        <${Handling} report=${report} onDone=${() => setBump((b) => b + 1)} />
        <section aria-labelledby="history-title">
          <h2 id="history-title">${t("report.history")}</h2>
          <ol class="timeline" id="report-history">${report.history.map(
            (n) => html`<li><${ReportStatus} value=${n.status} /> <${Time} ms=${n.ts_ms} /> <span class="actor">${t("alert.actor", { actor: n.actor })}</span>
              ${n.note ? html`<blockquote class="comment">${n.note}</blockquote>` : null}</li>`,
          )}</ol>
        </section>
      </div>
    </div>
  <//>`;
}
