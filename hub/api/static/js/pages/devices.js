// The devices of one district (and asset type), with their state.
import { html } from "../lib.js";
import { api } from "../api.js";
import { t, assetLabel } from "../i18n.js";
import { Page, Loading, Problem, State, Time, useData } from "../ui.js";

export function deviceState(d) {
  if (d.status === "offline") return "offline";
  if (d.stale) return "stale";
  if (d.last_seen_ms === null) return "never";
  return "ok";
}

export default function Devices({ route }) {
  const [, district, assetType] = route.parts;
  const query = new URLSearchParams({ district, limit: "1000" });
  if (assetType) query.set("asset_type", assetType);
  const { data, error } = useData(() => api(`/devices?${query}`), [district, assetType]);
  const title = t("devices.title", { district, asset_type: assetType ? assetLabel(assetType) : t("devices.all_types") });
  return html`<${Page} title=${title}>
    ${error ? html`<${Problem} error=${error} />` : null}
    ${data
      ? html`<div class="scroll"><table id="devices" class="list">
          <thead><tr><th scope="col">${t("devices.col.device")}</th><th scope="col">${t("devices.col.state")}</th><th scope="col">${t("devices.col.last_seen")}</th></tr></thead>
          <tbody>${data.map(
            (d) => html`<tr data-device-id=${d.device_id}>
              <td><a href="#/device/${encodeURIComponent(d.device_id)}">${d.device_id}</a></td>
              <td><${State} value=${deviceState(d)} /></td><td><${Time} ms=${d.last_seen_ms} /></td>
            </tr>`,
          )}</tbody>
        </table></div>`
      : !error && html`<${Loading} />`}
  <//>`;
}
