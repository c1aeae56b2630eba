// Small shared pieces: times, badges, loading and error states, the data hook.
import { html, useState, useEffect, useRef, useContext, createContext } from "./lib.js";
import { t, absoluteTime, relativeTime } from "./i18n.js";

export const AppContext = createContext(null);

export function useApp() {
  return useContext(AppContext);
}

export const SEVERITIES = ["emergency", "critical", "warning", "info"];
export const SEVERITY_RANK = { info: 1, warning: 2, critical: 3, emergency: 4 };

// Relative time with the absolute one (and its time zone) beside it for screen readers.
export function Time({ ms }) {
  const app = useApp();
  if (ms === null || ms === undefined) return html`<span>${t("common.none")}</span>`;
  const absolute = absoluteTime(ms);
  return html`<time datetime=${new Date(ms).toISOString()} title=${absolute}>${t("time.ago", {
    relative: relativeTime(ms, app ? app.now : Date.now()),
    absolute,
  })}</time>`;
}

export function Severity({ value }) {
  return html`<span class="badge sev sev-${value}" data-severity=${value}>${t(`sev.${value}`)}</span>`;
}

export function Status({ value }) {
  return html`<span class="badge status status-${value}" data-status=${value}>${t(`status.${value}`)}</span>`;
}

export function Muted({ by }) {
  if (!by) return null;
  const [kind, id] = by.split(/:(.*)/s);
  const label = kind === "inhibited" ? t("muted.inhibited") : t(`muted.${kind}`);
  const title = kind === "inhibited" ? t("muted.inhibited_by", { id }) : by;
  return html`<span class="badge muted muted-${kind}" data-muted=${kind} title=${title}>${label}</span>`;
}

export function State({ value }) {
  return html`<span class="badge state state-${value}" data-state=${value}>${t(`state.${value}`)}</span>`;
}

export function Loading() {
  return html`<p class="quiet" role="status">${t("common.loading")}</p>`;
}

export function Problem({ error }) {
  return html`<p class="error" role="alert">${t("common.error", { message: error.message })}</p>`;
}

// Fetch data for a page; fetch again (keeping what is shown) when the live stream says
// something changed, so a page never blanks while it refreshes.
export function useData(fetcher, deps, { live = true } = {}) {
  const app = useApp();
  const [state, setState] = useState({ data: null, error: null });
  const generation = useRef(0);
  const revision = live ? app.revision : 0;
  useEffect(() => {
    const mine = ++generation.current;
    fetcher().then(
      (data) => mine === generation.current && setState({ data, error: null }),
      (error) => mine === generation.current && error.status !== 401 && setState((old) => ({ data: old.data, error })),
    );
  }, [...deps, revision]);
  return state;
}

export function Page({ title, children, actions }) {
  const heading = useRef(null);
  useEffect(() => {
    if (heading.current && document.activeElement === document.body) heading.current.focus({ preventScroll: true });
  }, [title]);
  return html`<section class="page">
    <div class="page-head">
      <h1 tabindex="-1" ref=${heading}>${title}</h1>
      ${actions ? html`<div class="page-actions">${actions}</div>` : null}
    </div>
    ${children}
  </section>`;
}
