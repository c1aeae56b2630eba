// The console's pages. Adding one is a module in this folder plus an entry here:
// `id` is the first part of its address (#/id/...), `nav` the i18n key of its menu
// entry (none: not in the menu), `allowed(can)` hides it from keys whose role
// cannot use it (can: GET /api/v1/console/config).
import { html } from "../lib.js";
import { t } from "../i18n.js";
import { Page } from "../ui.js";
import Board from "./board.js";
import Alerts from "./alerts.js";
import Alert from "./alert.js";
import Silences from "./silences.js";
import MapPage from "./map.js";
import Devices from "./devices.js";
import Device from "./device.js";
import Rules from "./rules.js";
import Indicators from "./indicators.js";
import Reports, { Report } from "./reports.js";
import OpenData from "./open-data.js";

export const PAGES = [
  { id: "board", nav: "nav.board", component: Board },
  { id: "alerts", nav: "nav.alerts", component: Alerts },
  { id: "alert", component: Alert },
  { id: "map", nav: "nav.map", component: MapPage },
  { id: "silences", nav: "nav.silences", component: Silences },
  { id: "indicators", nav: "nav.indicators", component: Indicators },
  { id: "reports", nav: "nav.reports", component: Reports },
  { id: "report", component: Report },
  { id: "devices", component: Devices },
  { id: "device", component: Device },
  { id: "rules", nav: "nav.rules", component: Rules, allowed: (can) => can.rules },
  { id: "open-data", nav: "nav.open_data", component: OpenData, allowed: (can) => can.open_data },
];

export const NOT_FOUND = {
  id: "not-found",
  component: () => html`<${Page} title="404"><p><a href="#/board">${t("nav.board")}</a></p><//>`,
};
