// Rules with their firing and pending counts, and the problems of rule files.
import { html } from "../lib.js";
import { api } from "../api.js";
import { t } from "../i18n.js";
import { Page, Loading, Problem, Severity, useData } from "../ui.js";

export default function Rules() {
  const { data, error } = useData(() => Promise.all([api("/rules"), api("/rules/problems")]), []);
  if (!data) return html`<${Page} title=${t("rules.title")}>${error ? html`<${Problem} error=${error} />` : html`<${Loading} />`}<//>`;
  const [rules, problems] = data;
  rules.sort((a, b) => b.firing - a.firing || a.id.localeCompare(b.id));
  return html`<${Page} title=${t("rules.title")}>
    ${problems.length
      ? html`<section class="problems" aria-labelledby="problems-title"><h2 id="problems-title">${t("rules.problems")}</h2>
          <ul>${problems.map((p) => html`<li><code>${p.file}:${p.line}</code> ${p.message}</li>`)}</ul></section>`
      : null}
    <div class="scroll"><table id="rules" class="list">
      <thead><tr>${["rule", "kind", "severity", "firing", "pending", "file", "description"].map((c) => html`<th scope="col">${t(`rules.col.${c}`)}</th>`)}</tr></thead>
      <tbody>${rules.map(
        (r) => html`<tr data-rule-id=${r.id}>
          <td><code>${r.id}</code></td><td>${r.kind}</td><td><${Severity} value=${r.severity} /></td>
          <td class="firing">${r.firing}</td><td>${r.pending}</td><td>${r.file}</td><td>${r.description}</td>
        </tr>`,
      )}</tbody>
    </table></div>
  <//>`;
}
