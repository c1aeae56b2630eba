"""What a rule can match: its names checked against the device catalog and the known fleet.

A rule whose ``match`` or ``metric`` names nothing real loads, runs and never fires:
the worst rule a control room can have, because it looks like protection. Three
checks catch it, from strict to informative:

* :func:`catalog_problems` (``hub rules check``, and rule writes through the API):
  an asset type, metric, district or device id that no device of the catalog can
  ever have is an error at its ``file:line``, with a "did you mean" from the
  catalog (``difflib``), e.g. ``rules[0].metric: 'pm25_ug_m3' is not a metric of
  air_quality in the device catalog; did you mean 'pm2_5_ug_m3'?``. Every metric a
  rule names must be a catalog metric of an asset type it matches: no rule kind
  derives metrics of its own (composite conditions and ``no_data`` name readings'
  metrics too), and a metric devices send that the catalog lacks is declared in
  the catalog first (which also gives it a classification, docs/catalog.md);
* :func:`unmatched_rules` (the hub, at load and every reload): rules that match no
  series the hub knows, i.e. no (district, asset type) with devices in the registry
  whose catalog metrics include the rule's, and for a literal ``device_id``, no
  such device. Logged, not refused: a rule may be written before its devices exist;
* :meth:`hub.rules.engine.RuleEngine.unmatched_rules` (``hub rules backtest``): rules
  that matched no series of the replayed history.

Labels (``match.labels``) and device-id globs are not checked against the fleet:
that needs every device's metadata, and these checks must stay cheap on reload.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Protocol

from hub.messages import DEVICE_ID_RE, DISTRICT_RE
from hub.ports import UNRESTRICTED, DeviceCounts, DeviceInfo, RuleProblem, Scope
from hub.rules.model import (
    AnomalyRule,
    CitizenReportsRule,
    CompositeRule,
    FlatlineRule,
    NoDataRule,
    RateOfChangeRule,
    RuleModel,
    ThresholdRule,
)
from hub.yamlfile import YamlSyntaxError, key_path, line_of, parse_yaml

if TYPE_CHECKING:
    from hub.catalog import Catalog
    from hub.rules.loader import RuleSource

#: CONTRACT §1: ``alerts`` is not a district (as ``hub.ingest.topics`` enforces; stage
#: packages do not import each other).
RESERVED_DISTRICTS = frozenset({"alerts"})
_GLOB_SYNTAX = re.compile(r"\[[^\]]*\]|[*?]")
_DISTRICT_CHARS = re.compile(r"[a-z0-9_-]*")
_DEVICE_CHARS = re.compile(r"[A-Za-z0-9_.-]*")

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Finding:
    """A name in a rule that can never match: where in the rule, and why."""

    loc: Loc
    message: str


class Fleet(Protocol):
    """What the hub knows of its devices (the registry implements it)."""

    def device_counts(
        self, scope: Scope, district: str | None = None
    ) -> Mapping[tuple[str, str], DeviceCounts]:
        """Device counts per (district, asset type)."""
        ...

    def get_device(self, device_id: str) -> DeviceInfo | None:
        """One device, or None."""
        ...


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _listed(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def rule_metrics(rule: RuleModel) -> list[tuple[Loc, str]]:
    """Every metric a rule names, with its key path inside the rule."""
    if isinstance(rule, ThresholdRule | RateOfChangeRule | FlatlineRule | AnomalyRule):
        return [(("metric",), rule.metric)]
    if isinstance(rule, NoDataRule):
        return [(("metric",), rule.metric)] if rule.metric is not None else []
    if isinstance(rule, CompositeRule):
        key = "all" if rule.all_ is not None else "any"
        return [((key, i, "metric"), c.metric) for i, c in enumerate(rule.conditions)]
    return []


def matched_asset_types(rule: RuleModel, catalog: Catalog) -> list[str]:
    """The catalog's asset types the rule's ``match.asset_type`` selects (all when absent)."""
    pattern = rule.match.asset_type
    known = catalog.asset_types()
    return known if pattern is None else [a for a in known if fnmatchcase(a, pattern)]


def _metrics_of(catalog: Catalog, asset_type: str) -> Sequence[str]:
    spec = catalog.spec(asset_type)
    return list(spec.metrics) if spec is not None else []


def _name_finding(
    loc: Loc, pattern: str, what: str, full: re.Pattern[str], chars: re.Pattern[str]
) -> Finding | None:
    # Glob syntax aside, a pattern's characters must all be allowed in a name.
    """A district or device-id pattern that no valid name can match."""
    if _is_glob(pattern):
        ok = chars.fullmatch(_GLOB_SYNTAX.sub("", pattern)) is not None
    else:
        ok = full.fullmatch(pattern) is not None
    if ok:
        return None
    return Finding(loc, f"{pattern!r} can never match a {what}: {what} names match {full.pattern}")


def catalog_findings(rule: RuleModel, catalog: Catalog) -> list[Finding]:
    """Every name in ``rule`` that no device of the catalog can ever match."""
    out: list[Finding] = []
    m = rule.match
    if m.district is not None:
        if m.district in RESERVED_DISTRICTS:
            out.append(
                Finding(("match", "district"), f"{m.district!r} is reserved: it is not a district")
            )
        elif f := _name_finding(
            ("match", "district"), m.district, "district", DISTRICT_RE, _DISTRICT_CHARS
        ):
            out.append(f)
    if m.device_id is not None and (
        f := _name_finding(
            ("match", "device_id"), m.device_id, "device id", DEVICE_ID_RE, _DEVICE_CHARS
        )
    ):
        out.append(f)
    known = catalog.asset_types()
    types = matched_asset_types(rule, catalog)
    if m.asset_type is not None and not types:
        if _is_glob(m.asset_type):
            why = f"matches no asset type of the device catalog ({_listed(known)})"
        else:
            why = "is not an asset type of the device catalog" + _suggest(m.asset_type, known)
        out.append(Finding(("match", "asset_type"), f"{m.asset_type!r} {why}"))
        return out  # the metrics cannot be judged against a type that does not exist
    named = rule_metrics(rule)
    for loc, metric in named:
        if any(metric in _metrics_of(catalog, a) for a in types):
            continue
        where = "any asset type" if types == known else _listed(types)
        candidates = [x for a in types for x in _metrics_of(catalog, a)]
        message = f"{metric!r} is not a metric of {where} in the device catalog" + _suggest(
            metric, candidates
        )
        elsewhere = [a for a in known if a not in types and metric in _metrics_of(catalog, a)]
        if elsewhere:
            message += f" (it is a metric of {_listed(elsewhere)})"
        out.append(Finding(loc, message))
    if (
        not out
        and isinstance(rule, CompositeRule)
        and rule.all_ is not None
        and len({metric for _, metric in named}) > 1
    ):
        needed = {metric for _, metric in named}
        if not any(needed <= set(_metrics_of(catalog, a)) for a in types):
            out.append(
                Finding(
                    ("all",),
                    f"no asset type of the device catalog has all of {', '.join(sorted(needed))},"
                    " so these conditions can never hold together on one device",
                )
            )
    return out


def _area_findings(
    rule: RuleModel, rules: Mapping[str, RuleModel], catalog: Catalog
) -> Finding | None:
    """An area rule whose devices and whose counted rule's devices can never overlap."""
    if not isinstance(rule, CompositeRule) or rule.area is None:
        return None
    target = rules.get(rule.area.rule)
    if target is None:
        return None
    mine = matched_asset_types(rule, catalog)
    theirs = matched_asset_types(target, catalog)
    if not mine or not theirs or set(mine) & set(theirs):
        return None
    return Finding(
        ("area", "rule"),
        f"{target.id!r} applies to {_listed(theirs)}, this area rule to {_listed(mine)}:"
        " no device can be counted",
    )


def _placed(findings: list[Finding], text: str, first_line: int) -> list[tuple[int, str, str]]:
    """(line, key path, message) of each finding in a rule's own YAML ``text``."""
    try:
        doc = parse_yaml(text)
    except YamlSyntaxError:
        doc = None  # the rule loaded, so this does not happen; fall back to its first line
    return [
        (first_line + line_of(doc, f.loc) - 1, key_path(f.loc, doc), f.message) for f in findings
    ]


def catalog_problems(
    rules: Sequence[RuleModel], sources: Mapping[str, RuleSource], catalog: Catalog
) -> list[RuleProblem]:
    """``file:line`` problems for each rule of a loaded set that the catalog says cannot fire."""
    by_id = {r.id: r for r in rules}
    problems: list[RuleProblem] = []
    for rule in rules:
        src = sources.get(rule.id)
        if src is None:
            continue
        findings = catalog_findings(rule, catalog)
        area = _area_findings(rule, by_id, catalog)
        if area is not None:
            findings.append(area)
        for line, path, message in _placed(findings, src.source_yaml, src.line):
            problems.append(RuleProblem(src.file, line, f"rules[{src.index}].{path}: {message}"))
    problems.sort(key=lambda p: (p.file, p.line))
    return problems


def rule_text_problems(
    rule: RuleModel, text: str, file: str, catalog: Catalog
) -> list[RuleProblem]:
    """The same check for one rule sent as a YAML mapping (the API's body)."""
    return [
        RuleProblem(file, line, f"{path}: {message}")
        for line, path, message in _placed(catalog_findings(rule, catalog), text, 1)
    ]


def unmatched_rules(rules: Iterable[RuleModel], catalog: Catalog, fleet: Fleet) -> list[str] | None:
    """Ids of the enabled rules that match no series the hub knows (None: no devices yet)."""
    cells = list(fleet.device_counts(UNRESTRICTED))
    if not cells:
        return None
    metrics = {a: set(_metrics_of(catalog, a)) for _, a in cells}
    by_id = {r.id: r for r in rules}
    out: list[str] = []
    for rule in by_id.values():
        if not rule.enabled or isinstance(rule, CitizenReportsRule):
            continue  # citizen reports need no device: they come from the city's people
        m = rule.match
        places = cells
        if m.device_id is not None and not _is_glob(m.device_id):
            device = fleet.get_device(m.device_id)
            places = [] if device is None else [(device.district, device.asset_type)]
        places = [
            (d, a)
            for d, a in places
            if (m.asset_type is None or fnmatchcase(a, m.asset_type))
            and (m.district is None or fnmatchcase(d, m.district))
        ]
        if isinstance(rule, CompositeRule) and rule.area is not None:
            target = by_id.get(rule.area.rule)
            if target is not None:
                tm = target.match
                places = [
                    (d, a)
                    for d, a in places
                    if (tm.asset_type is None or fnmatchcase(a, tm.asset_type))
                    and (tm.district is None or fnmatchcase(d, tm.district))
                ]
        needed = [metric for _, metric in rule_metrics(rule)]
        if isinstance(rule, CompositeRule) and rule.any_ is not None:
            ok = any(any(x in metrics.get(a, ()) for x in needed) for _, a in places)
        else:
            ok = any(all(x in metrics.get(a, ()) for x in needed) for _, a in places)
        if not ok:
            out.append(rule.id)
    return out
