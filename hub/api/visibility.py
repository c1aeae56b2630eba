"""What a key may read of metric values: one policy, by role, for every route that carries them.

The catalog classifies every metric ``public``, ``internal`` or ``restricted``
(unknown metrics are ``internal``); :data:`hub.api.auth.CLASSIFICATION_ROLE` names
the least role that reads each class. A value of a metric the key may not read
never leaves the API, and the answer says what was withheld instead of silently
leaving it out:

- a device's latest values and telemetry points: left out, the metrics named in
  ``withheld_metrics`` (asking for such a metric by name is a 403);
- an alert about such a metric (lists, detail, the answers of ack/resolve/comment,
  the live stream, the CAP document and feed): still shown, since its existence,
  severity, place and rule are what a control room acts on, but every text the rule
  wrote from readings (summary, explanation, the rule's own timeline entries and CAP
  notes) is replaced by one sentence saying which metrics' values are withheld, and
  ``withheld_metrics`` names them. The rule's description and labels are the rule's
  own text and stay.

Which metrics an alert is about is read from what the alert record carries: the
metric names in its explanation (its observed values) and in the sentences the
rule wrote, since every rule kind names the metric its values belong to
(``h2s_ppm on mh-07 is 14: > 10``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hub.api.auth import CLASSIFICATION_ROLE, Principal, reader_role
from hub.api.keys import ROLE_RANK
from hub.catalog import Catalog
from hub.messages import AlertEvent
from hub.ports import AlertRecord, Transition

#: Words that may be metric names (hub.messages.METRIC_RE, found inside a sentence).
_WORD = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: The actor of timeline entries the rule engine wrote (their comments carry readings).
RULE_ACTOR = "rule"
#: Explanation entries that are not readings: kept when the rest is withheld.
_EXPLANATION_KEPT = ("rule_version", "ts_ms")


@dataclass(frozen=True, slots=True)
class Visibility:
    """The metric-value policy for one caller."""

    catalog: Catalog
    who: Principal

    @property
    def reads_everything(self) -> bool:
        """True when the caller's role reads every classification (nothing to withhold)."""
        return all(self.who.has_role(role) for role in CLASSIFICATION_ROLE.values())

    def may_read(self, asset_type: str, metric: str) -> bool:
        """True when the caller may read values of ``metric`` of ``asset_type``."""
        return self.who.may_read(self.catalog.classification(asset_type, metric))

    def split(self, asset_type: str, metrics: Iterable[str]) -> tuple[list[str], list[str]]:
        """``metrics`` as (readable, withheld), each sorted and without repeats."""
        readable: set[str] = set()
        withheld: set[str] = set()
        for metric in metrics:
            (readable if self.may_read(asset_type, metric) else withheld).add(metric)
        return sorted(readable), sorted(withheld)

    def latest(
        self, asset_type: str, values: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        """A device's latest values the caller may read, and the metrics withheld."""
        readable, withheld = self.split(asset_type, values)
        return {m: values[m] for m in readable}, withheld

    def _named(self, asset_type: str, texts: Iterable[str], names: Iterable[str] = ()) -> list[str]:
        """Metrics the caller may not read among ``names`` and the words of ``texts``."""
        if self.reads_everything:
            return []
        found = {word for text in texts for word in _WORD.findall(text)}
        found.update(names)
        return sorted(m for m in found if not self.may_read(asset_type, m))

    def withheld_of_alert(self, alert: AlertRecord) -> list[str]:
        """Metrics whose values ``alert`` carries and the caller may not read."""
        if self.reads_everything:
            return []
        explanation = alert.explanation
        observed = explanation.get("observed")
        texts = [alert.summary, str(explanation.get("summary", ""))]
        names = [str(k) for k in observed] if isinstance(observed, Mapping) else []
        return self._named(alert.asset_type, texts, names)

    def alert(self, alert: AlertRecord) -> tuple[AlertRecord, list[str]]:
        """``alert`` as the caller may see it, and the metrics whose values were withheld."""
        withheld = self.withheld_of_alert(alert)
        if not withheld:
            return alert, []
        sentence = withheld_sentence(withheld, self.catalog, alert.asset_type)
        explanation: dict[str, Any] = {
            k: alert.explanation[k] for k in _EXPLANATION_KEPT if k in alert.explanation
        }
        explanation.update(summary=sentence, withheld_metrics=withheld)
        summary = f"{alert.rule_id} on {alert.source}: {sentence}"
        return replace(alert, summary=summary, explanation=explanation), withheld

    def timeline(self, alert: AlertRecord, transitions: Sequence[Transition]) -> list[Transition]:
        """``transitions`` of ``alert`` with the rule's comments withheld where its values are."""
        withheld = self.withheld_of_alert(alert)
        if not withheld:
            return list(transitions)
        sentence = withheld_sentence(withheld, self.catalog, alert.asset_type)
        return [
            replace(t, comment=sentence) if t.actor == RULE_ACTOR and t.comment else t
            for t in transitions
        ]

    def alert_view(
        self, alert: AlertRecord, transitions: Sequence[Transition]
    ) -> tuple[AlertRecord, list[Transition]]:
        """Record and timeline as the caller may see them (the CAP renderer's hook)."""
        return self.alert(alert)[0], self.timeline(alert, transitions)

    def event(self, event: AlertEvent) -> tuple[AlertEvent, list[str]]:
        """A live alert event as the caller may see it, and the metrics withheld."""
        texts = [event.summary]
        if event.actor == RULE_ACTOR:
            texts.append(event.comment)
        withheld = self._named(event.asset_type, texts)
        if not withheld:
            return event, []
        sentence = withheld_sentence(withheld, self.catalog, event.asset_type)
        return (
            replace(
                event,
                summary=f"{event.rule_id} on {event.source}: {sentence}",
                comment=sentence if event.actor == RULE_ACTOR and event.comment else event.comment,
            ),
            withheld,
        )


def withheld_sentence(metrics: Sequence[str], catalog: Catalog, asset_type: str) -> str:
    """What a caller reads where values were withheld: which metrics, and who may read them."""
    roles = {reader_role(catalog.classification(asset_type, m)) for m in metrics}
    role = max(roles, key=ROLE_RANK.__getitem__)
    return f"values withheld: {', '.join(metrics)} need the {role} role or above"
