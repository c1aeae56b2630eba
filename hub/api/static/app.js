// City hub operations dashboard: plain JS, no build step, no third-party code.
// Pages (hash routes): #/board, #/alerts, #/devices/<district>/<asset_type>, #/device/<id>, #/rules.
// Live updates: GET /api/v1/stream read with fetch() so the Authorization header can be sent
// (EventSource cannot send headers).
"use strict";

const API = "/api/v1";
const KEY_STORAGE = "hub.apiKey";
const ROLES = ["viewer", "operator", "rule_author", "admin"];

let me = null; // {id, name, role, scopes}
let streamAbort = null;
let refreshTimer = null;

// ------------------------------------------------------------------ helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function key() {
  return sessionStorage.getItem(KEY_STORAGE);
}

function atLeast(role) {
  return me !== null && ROLES.indexOf(me.role) >= ROLES.indexOf(role);
}

function when(ms) {
  if (ms === null || ms === undefined) return "–";
  return new Date(ms).toLocaleString();
}

class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${key()}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 401) {
    forgetKey("The key was refused (revoked or mistyped). Enter it again.");
    throw new ApiError(401, "unauthorised");
  }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, body ? body.detail : response.statusText);
  return body;
}

function showMessage(text) {
  document.getElementById("message").textContent = text || "";
}

// ------------------------------------------------------------------ key handling

async function login(event) {
  event.preventDefault();
  const input = document.getElementById("key");
  sessionStorage.setItem(KEY_STORAGE, input.value.trim());
  input.value = "";
  document.getElementById("login-error").textContent = "";
  await start();
}

function forgetKey(reason) {
  sessionStorage.removeItem(KEY_STORAGE);
  me = null;
  if (streamAbort) streamAbort.abort();
  streamAbort = null;
  document.getElementById("login").hidden = false;
  document.getElementById("page").hidden = true;
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("live").hidden = true;
  document.getElementById("who").textContent = "";
  document.getElementById("login-error").textContent = reason || "";
}

async function start() {
  if (!key()) {
    forgetKey("");
    return;
  }
  try {
    me = await api("/whoami");
  } catch (error) {
    if (error.status !== 401) document.getElementById("login-error").textContent = error.message;
    return;
  }
  const scope = Object.entries(me.scopes).map(([k, v]) => `${k}=${v.join(",")}`).join(" ");
  document.getElementById("who").textContent = `${me.name} (${me.role}${scope ? ", " + scope : ""})`;
  document.getElementById("login").hidden = true;
  document.getElementById("page").hidden = false;
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  openStream();
  await route();
}

// ------------------------------------------------------------------ live stream

function setLive(on) {
  const badge = document.getElementById("live");
  badge.hidden = false;
  badge.className = on ? "live on" : "live off";
  badge.textContent = on ? "live" : "reconnecting…";
  badge.dataset.state = on ? "live" : "off";
}

async function openStream() {
  if (streamAbort) streamAbort.abort();
  const controller = new AbortController();
  streamAbort = controller;
  while (!controller.signal.aborted && key()) {
    try {
      const response = await fetch(`${API}/stream`, {
        headers: { Authorization: `Bearer ${key()}` },
        signal: controller.signal,
      });
      if (!response.ok) throw new Error(`stream answered ${response.status}`);
      setLive(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handleStreamBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}

function handleStreamBlock(block) {
  let kind = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) kind = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return;
  scheduleRefresh();
}

function scheduleRefresh() {
  // Many events arrive together in an incident: redraw once for the burst.
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    const page = location.hash.split("/")[1] || "board";
    if (page === "board" || page === "alerts" || page === "devices") route();
  }, 250);
}

// ------------------------------------------------------------------ pages

async function route() {
  if (!me) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const page = parts[0] || "board";
  const target = document.getElementById("page");
  showMessage("");
  let content;
  try {
    if (page === "alerts") content = await alertsPage();
    else if (page === "rules") content = await rulesPage();
    else if (page === "device" && parts[1]) content = await devicePage(parts[1], parts[2]);
    else if (page === "devices" && parts[1]) content = await devicesPage(parts[1], parts[2]);
    else content = await boardPage();
  } catch (error) {
    if (error.status === 401) return;
    content = el("p", { class: "error" }, error.message);
  }
  target.replaceChildren(content);
}

function condition(cell) {
  return cell ? cell.worst : "none";
}

function cellText(cell) {
  if (!cell) return "–";
  const alerts = Object.values(cell.active_alerts).reduce((a, b) => a + b, 0);
  return `${cell.online}/${cell.devices} online` + (alerts ? ` · ${alerts} alert${alerts > 1 ? "s" : ""}` : "");
}

async function boardPage() {
  const [districts, alerts] = await Promise.all([
    api("/districts"),
    api("/alerts?state=active&limit=200"),
  ]);
  const assetTypes = [...new Set(districts.flatMap((d) => d.asset_types.map((c) => c.asset_type)))].sort();
  const head = el("tr", {}, el("th", {}, "District"), assetTypes.map((t) => el("th", {}, t)));
  const rows = districts.map((d) => {
    const cells = new Map(d.asset_types.map((c) => [c.asset_type, c]));
    return el(
      "tr",
      { "data-district": d.district },
      el("th", { class: `cond-${d.worst}`, "data-worst": d.worst, "data-role": "district" }, d.district),
      assetTypes.map((t) =>
        el(
          "td",
          { class: `cell cond-${condition(cells.get(t))}`, "data-asset-type": t, "data-worst": condition(cells.get(t)) },
          cells.get(t)
            ? el("a", { href: `#/devices/${encodeURIComponent(d.district)}/${encodeURIComponent(t)}` }, cellText(cells.get(t)))
            : "–",
        ),
      ),
    );
  });
  return el(
    "div",
    {},
    el("h2", {}, "Status board"),
    districts.length ? el("table", { id: "board" }, el("thead", {}, head), el("tbody", {}, rows)) : el("p", { class: "muted" }, "No districts in this key's scope yet."),
    el("h2", {}, "Active alerts"),
    alertTable(alerts),
  );
}

async function alertsPage() {
  const alerts = await api("/alerts?limit=200");
  return el("div", {}, el("h2", {}, "Alerts"), alertTable(alerts));
}

function alertTable(alerts) {
  if (!alerts.length) return el("p", { class: "muted", id: "no-alerts" }, "No alerts.");
  const canAct = atLeast("operator");
  const rows = alerts.map((a) =>
    el(
      "tr",
      { "data-alert-id": a.id },
      el("td", { class: `sev-${a.severity}` }, a.severity),
      el("td", { class: "status" }, a.status),
      el("td", {}, a.district),
      el("td", {}, a.asset_type),
      el("td", {}, a.source === "_area" ? "area" : el("a", { href: `#/device/${encodeURIComponent(a.source)}` }, a.source)),
      el("td", {}, a.summary || a.rule_id),
      el("td", {}, when(a.started_ms)),
      el(
        "td",
        {},
        canAct && a.status === "firing" ? el("button", { type: "button", class: "ack", onclick: () => act(a.id, "ack") }, "Acknowledge") : null,
        canAct && a.status !== "resolved" ? el("button", { type: "button", class: "resolve", onclick: () => act(a.id, "resolve") }, "Resolve") : null,
      ),
    ),
  );
  const head = el("tr", {}, ["Severity", "Status", "District", "Asset type", "Source", "Summary", "Since", ""].map((h) => el("th", {}, h)));
  return el("table", { id: "alerts" }, el("thead", {}, head), el("tbody", {}, rows));
}

async function act(alertId, action) {
  try {
    await api(`/alerts/${encodeURIComponent(alertId)}/${action}`, { method: "POST", body: { comment: "" } });
    await route();
  } catch (error) {
    showMessage(`Could not ${action} alert: ${error.message}`);
  }
}

async function devicesPage(district, assetType) {
  const query = new URLSearchParams({ district, limit: "1000" });
  if (assetType) query.set("asset_type", assetType);
  const devices = await api(`/devices?${query}`);
  const rows = devices.map((d) =>
    el(
      "tr",
      {},
      el("td", {}, el("a", { href: `#/device/${encodeURIComponent(d.device_id)}` }, d.device_id)),
      el("td", {}, d.status + (d.stale ? " (stale)" : "")),
      el("td", {}, when(d.last_seen_ms)),
    ),
  );
  return el(
    "div",
    {},
    el("h2", {}, `${district} · ${assetType || "all asset types"}`),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Device"), el("th", {}, "Status"), el("th", {}, "Last seen"))), el("tbody", {}, rows)),
  );
}

async function devicePage(deviceId, chosenMetric) {
  const device = await api(`/devices/${encodeURIComponent(deviceId)}`);
  const metrics = Object.keys(device.latest).sort();
  const metric = chosenMetric && metrics.includes(chosenMetric) ? chosenMetric : metrics[0];
  const facts = [
    ["District", device.district],
    ["Asset type", device.asset_type],
    ["Status", device.status + (device.stale ? " (stale)" : "")],
    ["Last seen", when(device.last_seen_ms)],
    ["Sequence gaps", device.seq_gaps],
    ["Location", device.latitude === null ? "–" : `${device.latitude}, ${device.longitude}`],
  ];
  const latest = metrics.map((m) => el("tr", {}, el("td", {}, m), el("td", {}, String(device.latest[m]))));
  let chart = el("p", { class: "muted" }, "No readings yet.");
  if (metric) {
    const query = new URLSearchParams({ metric, start: "-6h", every: "5m", agg: "mean" });
    const series = await api(`/devices/${encodeURIComponent(deviceId)}/telemetry?${query}`);
    chart = drawChart(series.points.filter((p) => p.value !== null), metric);
  }
  return el(
    "div",
    {},
    el("h2", {}, `Device ${device.device_id}`),
    el("table", {}, el("tbody", {}, facts.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, String(v)))))),
    el("h3", {}, "Latest values"),
    el("table", { id: "latest" }, el("tbody", {}, latest)),
    device.withheld_metrics.length ? el("p", { class: "muted" }, `Withheld for this key: ${device.withheld_metrics.join(", ")}`) : null,
    el("h3", {}, "Last 6 hours (5-minute means)"),
    el("div", { class: "metrics" }, metrics.map((m) => el("a", { href: `#/device/${encodeURIComponent(deviceId)}/${m}` }, el("button", { type: "button", class: m === metric ? "selected" : "" }, m)))),
    chart,
  );
}

function drawChart(points, metric) {
  // A hand-drawn SVG line chart: enough for "what did this sensor do lately".
  const width = 720;
  const height = 240;
  const pad = { left: 56, right: 12, top: 12, bottom: 28 };
  if (!points.length) return el("p", { class: "muted", id: "chart-empty" }, "No readings in the last 6 hours.");
  const xs = points.map((p) => p.ts_ms);
  const ys = points.map((p) => p.value);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const sx = (x) => pad.left + ((x - x0) / Math.max(1, x1 - x0)) * (width - pad.left - pad.right);
  const sy = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
  const path = points.map((p, i) => `${i ? "L" : "M"}${sx(p.ts_ms).toFixed(1)},${sy(p.value).toFixed(1)}`).join(" ");
  const label = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));
  return svg(
    "svg",
    { class: "chart", id: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${metric} over the last 6 hours` },
    svg("line", { class: "axis", x1: pad.left, y1: height - pad.bottom, x2: width - pad.right, y2: height - pad.bottom }),
    svg("line", { class: "axis", x1: pad.left, y1: pad.top, x2: pad.left, y2: height - pad.bottom }),
    svg("text", { x: 4, y: pad.top + 10 }, label(y1)),
    svg("text", { x: 4, y: height - pad.bottom }, label(y0)),
    svg("text", { x: pad.left, y: height - 8 }, new Date(x0).toLocaleTimeString()),
    svg("text", { x: width - pad.right - 70, y: height - 8 }, new Date(x1).toLocaleTimeString()),
    svg("path", { class: "line", d: path }),
  );
}

async function rulesPage() {
  if (!atLeast("rule_author")) {
    return el("p", { class: "muted" }, "Rules are visible to keys with the rule_author role or above.");
  }
  const rules = await api("/rules");
  rules.sort((a, b) => b.firing - a.firing || a.id.localeCompare(b.id));
  const rows = rules.map((r) =>
    el(
      "tr",
      { "data-rule-id": r.id },
      el("td", {}, r.id),
      el("td", {}, r.kind),
      el("td", { class: `sev-${r.severity}` }, r.severity),
      el("td", { class: "firing" }, String(r.firing)),
      el("td", {}, String(r.pending)),
      el("td", {}, r.enabled ? "yes" : "no"),
      el("td", {}, r.file),
      el("td", {}, r.description),
    ),
  );
  const head = el("tr", {}, ["Rule", "Kind", "Severity", "Firing", "Pending", "Enabled", "File", "Description"].map((h) => el("th", {}, h)));
  return el("div", {}, el("h2", {}, "Rules"), el("table", { id: "rules" }, el("thead", {}, head), el("tbody", {}, rows)));
}

// ------------------------------------------------------------------ boot

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login-form").addEventListener("submit", login);
  document.getElementById("logout").addEventListener("click", () => forgetKey(""));
  window.addEventListener("hashchange", route);
  start();
});
