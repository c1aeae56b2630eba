// Every text of the console goes through t(): catalogs in /static/i18n/<lang>.json.
// Adding a language is one file there plus its name in LANGUAGES (docs/console.md).
export const LANGUAGES = { en: "English", "zh-CN": "简体中文" };
const LANG_STORAGE = "hub.language";

let lang = "en";
let messages = {};
let english = {};
let catalog = {};
let plural = new Intl.PluralRules("en");

export function language() {
  return lang;
}

// The browser's languages decide, unless the operator chose one with the switch.
export function pickLanguage(fallback) {
  const chosen = localStorage.getItem(LANG_STORAGE);
  if (chosen && LANGUAGES[chosen]) return chosen;
  for (const wanted of navigator.languages || [navigator.language]) {
    const lower = (wanted || "").toLowerCase();
    if (lower.startsWith("zh")) return "zh-CN";
    if (lower.startsWith("en")) return "en";
  }
  return LANGUAGES[fallback] ? fallback : "en";
}

async function load(code) {
  const response = await fetch(`/static/i18n/${code}.json`);
  return response.ok ? response.json() : {};
}

export async function setLanguage(code, { remember = false } = {}) {
  if (!english["app.title"]) english = await load("en");
  messages = code === "en" ? english : await load(code);
  lang = code;
  plural = new Intl.PluralRules(code);
  document.documentElement.lang = code;
  document.title = t("app.title");
  if (remember) localStorage.setItem(LANG_STORAGE, code);
}

export function setCatalog(value) {
  catalog = value || {};
}

function lookup(key) {
  return messages[key] ?? english[key];
}

export function has(key) {
  return lookup(key) !== undefined;
}

export function t(key, params = {}) {
  let text;
  if (typeof params.count === "number") text = lookup(`${key}.${plural.select(params.count)}`) ?? lookup(`${key}.other`);
  if (text === undefined) text = lookup(key);
  if (text === undefined) return key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (params[name] === undefined ? `{${name}}` : String(params[name])));
}

// Catalog names with their translated labels; the catalog's own text where no translation exists.
export function metricLabel(metric) {
  return has(`metric.${metric}`) ? t(`metric.${metric}`) : metric;
}

export function metricUnit(assetType, metric) {
  const unit = catalog[assetType]?.metrics?.[metric]?.unit || "";
  return unitLabel(unit);
}

export function unitLabel(unit) {
  if (!unit) return "";
  return has(`unit.${unit}`) ? t(`unit.${unit}`) : unit;
}

export function assetLabel(assetType) {
  return has(`asset.${assetType}`) ? t(`asset.${assetType}`) : assetType;
}

export function metricDescription(assetType, metric) {
  return catalog[assetType]?.metrics?.[metric]?.description || "";
}

export function catalogOf(assetType) {
  return catalog[assetType];
}

export function timeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

export function formatNumber(value, digits = 3) {
  if (value === null || value === undefined) return t("common.none");
  if (typeof value === "boolean") return value ? t("common.yes") : t("common.no");
  return new Intl.NumberFormat(lang, { maximumSignificantDigits: Math.max(digits, 1) + 1 }).format(value);
}

export function formatValue(assetType, metric, value) {
  const unit = metricUnit(assetType, metric);
  return unit && typeof value === "number" ? `${formatNumber(value)} ${unit}` : formatNumber(value);
}

export function absoluteTime(ms, { seconds = true } = {}) {
  return new Intl.DateTimeFormat(lang, {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: seconds ? "2-digit" : undefined,
    timeZoneName: "short",
  }).format(new Date(ms));
}

export function clockTime(ms) {
  return new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" }).format(new Date(ms));
}

const UNITS = [
  ["year", 365 * 86400e3],
  ["month", 30 * 86400e3],
  ["day", 86400e3],
  ["hour", 3600e3],
  ["minute", 60e3],
  ["second", 1e3],
];

export function relativeTime(ms, now = Date.now()) {
  // Clocks of devices and browsers differ by seconds: a moment ahead is "now", not "in 3 s".
  const diff = ms - now > 0 && ms - now < 60e3 ? 0 : ms - now;
  const format = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
  for (const [unit, size] of UNITS) {
    if (Math.abs(diff) >= size || unit === "second") return format.format(Math.round(diff / size), unit);
  }
  return "";
}
