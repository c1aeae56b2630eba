// The operations console: a hash-routed single page over the hub's API.
// Pages are modules listed in pages/index.js; this file is the shell around them:
// sign-in, navigation, language, the live stream and the connection banner.
import { html, render, useState, useEffect, useMemo, useCallback } from "./lib.js";
import { api, sse, key, saveKey, forgetKey, whenUnauthorised, link, onLink, setLink } from "./api.js";
import { t, LANGUAGES, language, pickLanguage, setLanguage, setCatalog, timeZone, clockTime } from "./i18n.js";
import { AppContext } from "./ui.js";
import { PAGES, NOT_FOUND } from "./pages/index.js";

// Seconds between health checks; the board shows what they say.
const HEALTH_EVERY_MS = 10_000;
// Stream events arriving together (an incident) cause one refresh.
const REFRESH_DEBOUNCE_MS = 400;

function parseRoute() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(query) };
}

function findPage(route, config) {
  const name = route.parts[0] || "board";
  const page = PAGES.find((p) => p.id === name || (p.aliases || []).includes(name));
  if (!page || (page.allowed && !page.allowed(config.can))) return NOT_FOUND;
  return page;
}

function Login({ onKey, refused }) {
  const [value, setValue] = useState("");
  const submit = (event) => {
    event.preventDefault();
    onKey(value.trim());
  };
  return html`<main id="main" class="login" tabindex="-1">
    <h1>${t("login.title")}</h1>
    <p>${t("login.help")}</p>
    <form id="login-form" onSubmit=${submit}>
      <label for="key">${t("login.key")}</label>
      <input id="key" name="key" type="password" autocomplete="off" required value=${value} onInput=${(e) => setValue(e.target.value)} />
      <button type="submit">${t("login.submit")}</button>
    </form>
    <p id="login-error" class="error" role="alert">${refused ? t("login.refused") : ""}</p>
  </main>`;
}

function LanguageSwitch({ onChange }) {
  return html`<label class="lang">
    <span>${t("lang.label")}</span>
    <select id="language" value=${language()} onChange=${(e) => onChange(e.target.value)}>
      ${Object.entries(LANGUAGES).map(([code, name]) => html`<option value=${code} lang=${code}>${name}</option>`)}
    </select>
  </label>`;
}

function Banner({ state }) {
  const asOf = clockTime(state.asOf);
  if (!state.up) {
    return html`<div id="connection" class="banner down" role="alert" data-state="down">${t("link.down", { time: asOf })}</div>`;
  }
  if (state.stream === "down") {
    return html`<div id="connection" class="banner down" role="alert" data-state="stream-down">${t("link.stream_down", { time: asOf })}</div>`;
  }
  const problems = healthProblems(state.health);
  if (problems.length) {
    return html`<div id="connection" class="banner degraded" role="alert" data-state="degraded">${t("link.degraded", { problems: problems.join(", ") })}</div>`;
  }
  return html`<div id="connection" class="banner" role="status" data-state=${state.stream}>
    <span class="dot"></span>${state.stream === "live" ? t("link.live") : t("link.connecting")}
  </div>`;
}

export function healthProblems(health) {
  if (!health) return [];
  const checks = health.checks || {};
  const out = [];
  if (checks.broker && checks.broker.connected === false) out.push(`${t("health.broker")}: ${t("health.disconnected")}`);
  if (checks.store && checks.store.writable === false) out.push(`${t("health.store")}: ${t("health.failing")}`);
  if (checks.journal && checks.journal.full) out.push(`${t("health.journal")}: ${t("health.full")}`);
  if (checks.tasks && checks.tasks.running === false) out.push(t("health.failing"));
  if (!out.length && health.ready === false) out.push(t("health.failing"));
  return out;
}

function Shell({ config, onSignOut, onLanguage }) {
  const [route, setRoute] = useState(parseRoute());
  const [revision, setRevision] = useState(0);
  const [now, setNow] = useState(Date.now());
  const [linkState, setLinkState] = useState({ ...link });

  useEffect(() => {
    const onHash = () => setRoute(parseRoute());
    window.addEventListener("hashchange", onHash);
    const clock = setInterval(() => setNow(Date.now()), 15_000);
    const unsubscribe = onLink(setLinkState);
    return () => {
      window.removeEventListener("hashchange", onHash);
      clearInterval(clock);
      unsubscribe();
    };
  }, []);

  // One live stream for the whole console: any event refreshes the page shown.
  useEffect(() => {
    const controller = new AbortController();
    let timer = null;
    const bump = () => {
      clearTimeout(timer);
      timer = setTimeout(() => setRevision((r) => r + 1), REFRESH_DEBOUNCE_MS);
    };
    sse("/stream", {
      signal: controller.signal,
      onEvent: (kind) => {
        if (kind !== "comment") bump();
        setLink({ asOf: Date.now() });
      },
      onState: (state) => {
        const wasDown = link.stream === "down" || !link.up;
        setLink({ stream: state, ...(state === "live" ? { up: true, asOf: Date.now() } : {}) });
        if (state === "live" && wasDown) bump(); // catch up on what was missed
      },
    });
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, []);

  // Health: public, polled; a failure to reach it is the hub being down.
  useEffect(() => {
    let stopped = false;
    const check = async () => {
      try {
        const response = await fetch("/api/v1/health");
        const body = await response.json();
        if (!stopped) setLink({ up: true, health: body });
      } catch (error) {
        if (!stopped) setLink({ up: false });
      }
    };
    check();
    const timer = setInterval(check, HEALTH_EVERY_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, []);

  const page = findPage(route, config);
  const app = useMemo(
    () => ({ config, can: config.can, route, revision, now, link: linkState }),
    [config, route, revision, now, linkState],
  );
  const disconnected = !linkState.up || linkState.stream === "down";
  const role = t(`who.role.${config.key.role}`);
  const Current = page.component;
  return html`<${AppContext.Provider} value=${app}>
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>${t("app.skip")}</a>
    <header class="top">
      <a class="brand" href="#/board"><img src="/static/favicon.svg" alt="" width="24" height="24" /><span>${t("app.title")}</span></a>
      <nav aria-label=${t("nav.label")}>
        <ul>
          ${PAGES.filter((p) => p.nav && (!p.allowed || p.allowed(config.can))).map(
            (p) => html`<li><a href="#/${p.id}" aria-current=${page === p ? "page" : undefined} data-page=${p.id}>${t(p.nav)}</a></li>`,
          )}
        </ul>
      </nav>
      <div class="top-right">
        <${Banner} state=${linkState} />
        <span class="tz">${t("tz.label", { tz: timeZone() })}</span>
        <span id="who" data-role=${config.key.role}>${t("who.label", { name: config.key.name, role })}</span>
        <${LanguageSwitch} onChange=${onLanguage} />
        <button type="button" id="logout" onClick=${onSignOut}>${t("login.forget")}</button>
      </div>
    </header>
    <main id="main" tabindex="-1" class=${disconnected ? "disconnected" : ""} aria-busy=${disconnected ? "true" : "false"}>
      <${Current} key=${route.parts.join("/")} route=${route} />
    </main>
  <//>`;
}

function Root() {
  const [config, setConfig] = useState(null);
  const [refused, setRefused] = useState(false);
  const [, setLang] = useState(language());

  const start = useCallback(async () => {
    if (!key()) {
      setConfig(null);
      return;
    }
    try {
      const loaded = await api("/console/config");
      setCatalog(loaded.catalog);
      const wanted = pickLanguage(loaded.default_language);
      if (wanted !== language()) await setLanguage(wanted);
      setRefused(false);
      setConfig(loaded);
    } catch (error) {
      if (error.status !== 401) setConfig(null);
    }
  }, []);

  useEffect(() => {
    whenUnauthorised(() => {
      forgetKey();
      setRefused(true);
      setConfig(null);
    });
    start();
  }, []);

  const onKey = async (value) => {
    saveKey(value);
    await start();
  };
  const onSignOut = () => {
    forgetKey();
    setRefused(false);
    setConfig(null);
  };
  const onLanguage = async (code) => {
    await setLanguage(code, { remember: true });
    setLang(code);
  };
  if (!config) return html`<${Login} onKey=${onKey} refused=${refused} />`;
  return html`<${Shell} config=${config} onSignOut=${onSignOut} onLanguage=${onLanguage} />`;
}

async function boot() {
  // The default language is the hub's setting; it is known only after sign-in, so the
  // browser's choice (or the operator's) goes first and English is the last resort.
  await setLanguage(pickLanguage("en"));
  const root = document.getElementById("app");
  root.textContent = "";
  render(html`<${Root} />`, root);
}

boot();
