// Open data: the policy in effect (what each metric's tier publishes) and the release log
// (what was published, when, under which policy version). Operators and up.
import { html, useState } from "../lib.js";
import { api } from "../api.js";
import { t, assetLabel, metricLabel, formatNumber } from "../i18n.js";
import { Page, Loading, Problem, Time, useData } from "../ui.js";

// Releases per request; "Older releases" asks for the next page.
const PAGE = 50;

function duration(seconds) {
  if (!seconds) return t("open.no_delay");
  if (seconds % 3600 === 0) return t("open.hours", { n: seconds / 3600 });
  return t("open.minutes", { n: Math.round(seconds / 60) });
}

function Policy({ policy }) {
  const rows = Object.entries(policy.asset_types).flatMap(([type, spec]) =>
    Object.entries(spec.metrics).map(([metric, m]) => ({ type, spec, metric, m })),
  );
  return html`<section aria-labelledby="open-policy-title">
    <h2 id="open-policy-title">${t("open.policy")}</h2>
    <p>${t("open.policy_help")}</p>
    <div class="scroll"><table id="open-policy" class="list">
      <thead><tr>${["asset_type", "metric", "tier", "k", "bucket", "delay", "decimals"].map((c) => html`<th scope="col">${t(`open.col.${c}`)}</th>`)}</tr></thead>
      <tbody>${rows.map(
        ({ type, spec, metric, m }) => html`<tr data-metric=${`${type}:${metric}`} data-tier=${m.tier}>
          <td>${assetLabel(type)}</td><td>${metricLabel(metric)} <code>${metric}</code></td>
          <td><span class="badge tier tier-${m.tier}">${t(`open.tier.${m.tier}`)}</span></td>
          <td>${m.k ?? t("common.none")}</td><td>${m.bucket_s ? duration(m.bucket_s) : t("common.none")}</td>
          <td>${m.tier === "public_aggregate" ? duration(m.delay_s) : t("common.none")}</td><td>${spec.location_decimals}</td>
        </tr>`,
      )}</tbody>
    </table></div>
  </section>`;
}

function period(r) {
  if (r.period_start_ms === null) return t("common.none");
  return html`<${Time} ms=${r.period_start_ms} /> – <${Time} ms=${r.period_end_ms} />`;
}

function Releases({ first }) {
  const [older, setOlder] = useState([]);
  const [done, setDone] = useState(first.length < PAGE);
  const [error, setError] = useState(null);
  const releases = [...first, ...older];
  const more = async () => {
    try {
      const next = await api(`/open-data/releases?limit=${PAGE}&before_id=${releases[releases.length - 1].id}`);
      setOlder([...older, ...next]);
      setDone(next.length < PAGE);
    } catch (e) {
      setError(e);
    }
  };
  return html`<section aria-labelledby="open-releases-title">
    <h2 id="open-releases-title">${t("open.releases")}</h2>
    <p>${t("open.releases_help")}</p>
    ${releases.length
      ? html`<div class="scroll"><table id="open-releases" class="list">
          <thead><tr>${["when", "kind", "dataset", "period", "rows", "suppressed", "version", "sha256"].map((c) => html`<th scope="col">${t(`open.col.${c}`)}</th>`)}</tr></thead>
          <tbody>${releases.map(
            (r) => html`<tr data-release-id=${r.id} data-kind=${r.kind}>
              <td><${Time} ms=${r.ts_ms} /></td><td>${t(`open.kind.${r.kind}`)}</td><td><code>${r.dataset}</code></td>
              <td>${period(r)}</td><td>${formatNumber(r.rows, 0)}</td><td>${formatNumber(r.suppressed, 0)}</td>
              <td><code>${r.policy_version}</code></td><td><code title=${r.sha256}>${r.sha256.slice(0, 12)}</code></td>
            </tr>`,
          )}</tbody>
        </table></div>`
      : html`<p class="quiet" id="open-releases-none">${t("open.none")}</p>`}
    ${error ? html`<${Problem} error=${error} />` : null}
    ${done ? null : html`<button type="button" id="open-more" onClick=${more}>${t("open.more")}</button>`}
  </section>`;
}

export default function OpenData() {
  const { data, error } = useData(
    () => Promise.all([api("/open-data/policy"), api(`/open-data/releases?limit=${PAGE}`)]),
    [],
    { live: false },
  );
  if (!data) return html`<${Page} title=${t("open.title")}>${error ? html`<${Problem} error=${error} />` : html`<${Loading} />`}<//>`;
  const [policy, releases] = data;
  return html`<${Page} title=${t("open.title")}>
    <p id="open-version">${t("open.version", { version: policy.version })}
      ${" "}<a href="/open/v1/catalog.json">${t("open.catalog")}</a> · <a href="/sta/v1.1">${t("open.sta")}</a></p>
    <${Policy} policy=${policy} />
    <${Releases} first=${releases} />
  <//>`;
}
