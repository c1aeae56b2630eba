// Silences and maintenance: list, expire early, and create one (from an alert, its
// matchers prefilled) while seeing which open alerts it would mute.
import { html, useState, useEffect } from "../lib.js";
import { api } from "../api.js";
import { t } from "../i18n.js";
import { Page, Loading, Problem, Time, useApp, useData } from "../ui.js";
import { AlertRow } from "./alerts.js";

const DURATIONS = [
  ["1h", 3600],
  ["4h", 4 * 3600],
  ["8h", 8 * 3600],
  ["1d", 86400],
  ["3d", 3 * 86400],
  ["7d", 7 * 86400],
];

function matchersFrom(query) {
  const rows = [];
  for (const [k, v] of query.entries()) if (k.startsWith("m.")) rows.push({ name: k.slice(2), value: v });
  return rows.length ? rows : [{ name: "district", value: "" }];
}

function NewSilence({ query, onCreated }) {
  const [rows, setRows] = useState(matchersFrom(query));
  const [duration, setDuration] = useState(3600);
  const [comment, setComment] = useState("");
  const [preview, setPreview] = useState(null);
  const [message, setMessage] = useState("");
  const matchers = Object.fromEntries(rows.filter((r) => r.name && r.value).map((r) => [r.name.trim(), r.value.trim()]));
  const key = JSON.stringify(matchers);

  // What it would mute, as the matchers change (the hub matches, as it will for real).
  useEffect(() => {
    if (!Object.keys(matchers).length) {
      setPreview(null);
      return undefined;
    }
    const timer = setTimeout(() => {
      api("/console/silences/preview", { method: "POST", body: { matchers } }).then(setPreview, (e) => setMessage(e.message));
    }, 250);
    return () => clearTimeout(timer);
  }, [key]);

  const update = (i, field, value) => setRows(rows.map((r, j) => (j === i ? { ...r, [field]: value } : r)));
  const save = async (event) => {
    event.preventDefault();
    try {
      await api("/silences", { method: "POST", body: { matchers, duration_s: duration, comment } });
      onCreated(query.get("from"));
    } catch (error) {
      setMessage(error.message);
    }
  };
  return html`<form id="silence-form" class="silence-form" onSubmit=${save}>
    <h2>${t("silences.new")}</h2>
    <fieldset>
      <legend>${t("silences.matchers")}</legend>
      ${rows.map(
        (r, i) => html`<div class="matcher">
          <label>${t("silences.matcher_name")} <input name="name" value=${r.name} pattern="[a-z][a-z0-9_]{0,63}" required onInput=${(e) => update(i, "name", e.target.value)} /></label>
          <label>${t("silences.matcher_value")} <input name="value" value=${r.value} required maxlength="256" onInput=${(e) => update(i, "value", e.target.value)} /></label>
          <button type="button" aria-label=${t("silences.remove_matcher", { name: r.name })} onClick=${() => setRows(rows.filter((_, j) => j !== i))}>×</button>
        </div>`,
      )}
      <button type="button" onClick=${() => setRows([...rows, { name: "", value: "" }])}>${t("silences.add_matcher")}</button>
    </fieldset>
    <label>${t("silences.duration")}
      <select id="duration" value=${duration} onChange=${(e) => setDuration(Number(e.target.value))}>
        ${DURATIONS.map(([name, s]) => html`<option value=${s}>${t(`dur.${name}`)}</option>`)}
      </select>
    </label>
    <label for="silence-comment">${t("silences.comment")}</label>
    <textarea id="silence-comment" rows="2" required maxlength="2000" value=${comment} onInput=${(e) => setComment(e.target.value)}></textarea>
    <section aria-labelledby="preview-title" id="silence-preview" aria-live="polite">
      <h3 id="preview-title">${t("silences.preview")}${preview ? `: ${t("silences.preview", { count: preview.length })}` : ""}</h3>
      ${preview && !preview.length ? html`<p class="quiet">${t("silences.preview_none")}</p>` : null}
      ${preview && preview.length ? html`<ul class="alert-list">${preview.map((a) => html`<${AlertRow} alert=${a} />`)}</ul>` : null}
    </section>
    <button type="submit" id="save-silence">${t("silences.save")}</button>
    <p class="error" role="alert">${message}</p>
  </form>`;
}

function silenceState(s, now) {
  if (s.active) return "active";
  return s.starts_ms > now ? "pending" : "expired";
}

export default function Silences({ route }) {
  const app = useApp();
  const expired = route.query.get("expired") === "1";
  const creating = route.query.get("new") === "1" && app.can.silence;
  const { data, error } = useData(() => api(`/silences?include_expired=${expired}`), [expired]);
  const expire = async (id) => {
    await api(`/silences/${encodeURIComponent(id)}/expire`, { method: "POST" });
    location.hash = `#/silences${expired ? "?expired=1" : ""}`;
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  };
  const onCreated = (alertId) => {
    location.hash = alertId ? `#/alert/${encodeURIComponent(alertId)}` : "#/silences";
  };
  return html`<${Page} title=${t("silences.title")}
      actions=${app.can.silence && !creating ? html`<a class="button" href="#/silences?new=1">${t("silences.new")}</a>` : null}>
    ${creating ? html`<${NewSilence} query=${route.query} onCreated=${onCreated} />` : null}
    <p><label><input type="checkbox" id="include-expired" checked=${expired}
      onChange=${(e) => { location.hash = e.target.checked ? "#/silences?expired=1" : "#/silences"; }} /> ${t("silences.include_expired")}</label></p>
    ${error ? html`<${Problem} error=${error} />` : null}
    ${!data
      ? !error && html`<${Loading} />`
      : data.length
        ? html`<div class="scroll"><table id="silences" class="list">
            <thead><tr>
              <th scope="col">${t("silences.col.state")}</th><th scope="col">${t("silences.col.matchers")}</th>
              <th scope="col">${t("silences.col.ends")}</th><th scope="col">${t("silences.col.by")}</th>
              <th scope="col">${t("silences.col.comment")}</th>${app.can.silence ? html`<th scope="col">${t("alerts.col.actions")}</th>` : null}
            </tr></thead>
            <tbody>${data.map((s) => {
              const state = silenceState(s, app.now);
              return html`<tr data-silence-id=${s.id} data-state=${state}>
                <td>${t(`silences.${state}`)}</td>
                <td>${Object.entries(s.matchers).map(([k, v]) => html`<code class="label">${k}=${v}</code> `)}</td>
                <td><${Time} ms=${s.ends_ms} /></td><td>${s.created_by}</td><td>${s.comment}</td>
                ${app.can.silence ? html`<td>${state !== "expired" ? html`<button type="button" class="expire" onClick=${() => expire(s.id)}>${t("silences.expire")}</button>` : null}</td>` : null}
              </tr>`;
            })}</tbody>
          </table></div>`
        : html`<p class="quiet">${t("silences.none")}</p>`}
  <//>`;
}
