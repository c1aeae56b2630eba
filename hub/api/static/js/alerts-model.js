// Alerts worst first, grouped by incident: the area alert (or the worst) heads its
// incident and the device alerts fold under it.
import { SEVERITY_RANK } from "./ui.js";

function worse(a, b) {
  return (
    SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] ||
    (b.source === "_area") - (a.source === "_area") ||
    (a.status === "firing" ? 0 : 1) - (b.status === "firing" ? 0 : 1) ||
    b.started_ms - a.started_ms
  );
}

export function incidents(alerts) {
  const groups = new Map();
  for (const alert of alerts) {
    const id = alert.incident_id || `alert:${alert.id}`;
    if (!groups.has(id)) groups.set(id, []);
    groups.get(id).push(alert);
  }
  const out = [...groups.entries()].map(([id, members]) => {
    members.sort(worse);
    return { id, head: members[0], rest: members.slice(1) };
  });
  out.sort((a, b) => worse(a.head, b.head));
  return out;
}
