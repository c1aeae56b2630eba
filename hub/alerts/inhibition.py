"""Inhibition: an active alert matching a rule's ``source`` mutes the alerts matching
its ``target`` that share its ``equal`` labels (an area alert mutes the device
alerts it covers). Inhibited alerts are recorded, not notified.

The active inhibiting alerts are kept in memory (they are few: area alerts), so the
check costs nothing per alert in an alert storm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hub.alerts.routing import InhibitRule, matchers_match


class Inhibitor:
    """Active source alerts of the inhibit rules, and the check against them."""

    def __init__(self, rules: Sequence[InhibitRule]) -> None:
        self._rules = list(rules)
        self._sources: dict[str, Mapping[str, str]] = {}

    def is_source(self, labels: Mapping[str, str]) -> bool:
        """True when an alert with ``labels`` can inhibit others."""
        return any(matchers_match(r.source, labels) for r in self._rules)

    def activate(self, alert_id: str, labels: Mapping[str, str]) -> None:
        """An alert became active; remember it when it can inhibit."""
        if self.is_source(labels):
            self._sources[alert_id] = dict(labels)

    def is_active(self, alert_id: str) -> bool:
        """True when the alert is one of the active inhibiting alerts."""
        return alert_id in self._sources

    def deactivate(self, alert_id: str) -> None:
        """An alert resolved: it inhibits nothing any more."""
        self._sources.pop(alert_id, None)

    def inhibited_by(self, alert_id: str, labels: Mapping[str, str]) -> str | None:
        """The id of an active alert that inhibits this one, or None."""
        if not self._sources:
            return None
        for rule in self._rules:
            if not matchers_match(rule.target, labels):
                continue
            for source_id, source_labels in self._sources.items():
                if source_id == alert_id or not matchers_match(rule.source, source_labels):
                    continue
                if matchers_match(rule.source, labels):
                    continue  # an area alert is never muted by another area alert
                if all(source_labels.get(k) == labels.get(k) for k in rule.equal):
                    return source_id
        return None
