"""Load rule files with ruamel.yaml so every problem names ``file:line`` and the key path.

Loading never raises on bad input: each problem becomes a
:class:`hub.ports.RuleProblem` (``rules[2].value: ...``) and the file's other
rules are still reported. A file with any problem is "broken": the service keeps
that file's previous rules running (see :mod:`hub.rules.service`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from hub.ports import RuleInvalid, RuleProblem
from hub.rules.model import (
    KINDS,
    RULE_ADAPTER,
    SENSOR_FAULT_ID,
    CompositeRule,
    RuleModel,
)
from hub.yamlfile import (
    YamlMap,
    YamlSeq,
    YamlSyntaxError,
    item_column,
    item_line,
    key_line,
    locate_errors,
    parse_yaml,
    plain,
)

if TYPE_CHECKING:
    from hub.catalog import Catalog

#: The alert routing file lives among the rule files but is not a rule file.
ROUTES_FILE = "routes.yaml"
#: Nor is the file of services citizens may report (hub.reports.services).
SERVICES_FILE = "services.yaml"
#: Files among the rule files that are not rule files.
NOT_RULE_FILES = frozenset({ROUTES_FILE, SERVICES_FILE})
#: Nor are indicator definitions, in a folder of this name (``rules/indicators/``).
INDICATORS_DIR = "indicators"
RULE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class RuleSource:
    """Where a rule was defined: file, 1-based line, index in ``rules`` and its text."""

    file: str
    line: int
    index: int
    source_yaml: str


@dataclass(slots=True)
class FileResult:
    """What one file yielded: its valid rules and its problems (empty when it is valid)."""

    path: Path
    rules: list[RuleModel] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    sources: dict[str, RuleSource] = field(default_factory=dict)
    # Ids of rules that failed validation: references to them are not reported twice.
    broken_ids: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        """True when the file has no problem."""
        return not self.problems


@dataclass(slots=True)
class LoadResult:
    """Every valid rule (first definition of an id wins), every problem, and per-file results."""

    rules: list[RuleModel]
    problems: list[RuleProblem]
    files: list[FileResult]
    sources: dict[str, RuleSource]


def expand_paths(paths: Sequence[Path]) -> tuple[list[Path], list[RuleProblem]]:
    """Rule files named by ``paths``: files as given, folders searched for *.yaml/*.yml.

    Files called ``routes.yaml`` (the alert routing file, see :func:`routes_files`) or
    ``services.yaml`` (citizen report services, docs/reports.md), and files in an
    ``indicators`` folder (indicator definitions, see :func:`indicator_paths`) are
    never rule files; hidden files (editor leftovers) are skipped inside folders. A
    path that does not exist is a problem.
    """
    files: list[Path] = []
    problems: list[RuleProblem] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            files.append(p)

    for path in paths:
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                rel = p.relative_to(path).parts
                if (
                    p.is_file()
                    and p.suffix in RULE_SUFFIXES
                    and p.name not in NOT_RULE_FILES
                    and not any(part.startswith(".") for part in rel)
                    and INDICATORS_DIR not in rel[:-1]
                ):
                    add(p)
        elif path.is_file():
            if path.name not in NOT_RULE_FILES and not is_indicator_file(path):
                add(path)
        else:
            problems.append(RuleProblem(str(path), 1, "no such file or directory"))
    return files, problems


def routes_files(paths: Sequence[Path]) -> list[Path]:
    """The ``routes.yaml`` files among ``paths``: named directly, or inside named folders."""
    found: dict[Path, Path] = {}
    for path in paths:
        if path.is_dir():
            for p in sorted(path.rglob(ROUTES_FILE)):
                if p.is_file() and not any(
                    part.startswith(".") for part in p.relative_to(path).parts
                ):
                    found.setdefault(p.resolve(), p)
        elif path.is_file() and path.name == ROUTES_FILE:
            found.setdefault(path.resolve(), path)
    return list(found.values())


def is_indicator_file(path: Path) -> bool:
    """True for a file inside an ``indicators`` folder (an indicator definition file)."""
    return INDICATORS_DIR in path.parent.parts


def indicator_paths(paths: Sequence[Path]) -> list[Path]:
    """The indicator files and folders among ``paths``: named directly (a file in an
    ``indicators`` folder, or that folder), or ``indicators`` folders inside named ones."""
    found: dict[Path, Path] = {}
    for path in paths:
        if path.is_dir() and path.name == INDICATORS_DIR:
            found.setdefault(path.resolve(), path)
        elif path.is_dir():
            for p in sorted(path.rglob(INDICATORS_DIR)):
                if p.is_dir() and not any(
                    part.startswith(".") for part in p.relative_to(path).parts
                ):
                    found.setdefault(p.resolve(), p)
        elif path.is_file() and is_indicator_file(path):
            found.setdefault(path.resolve(), path)
    return list(found.values())


def load_rules(paths: Sequence[Path]) -> LoadResult:
    """Load every rule file under ``paths``; cross-file checks (duplicate ids, references)."""
    files, problems = expand_paths(paths)
    results = [load_file(p) for p in files]
    return combine(results, problems)


def combine(results: list[FileResult], extra: Sequence[RuleProblem] = ()) -> LoadResult:
    """Cross-check per-file results: duplicate ids and area references become problems."""
    first: dict[str, RuleSource] = {}
    for res in results:
        kept: list[RuleModel] = []
        for rule in res.rules:
            src = res.sources[rule.id]
            prev = first.get(rule.id)
            if prev is not None:
                res.problems.append(
                    RuleProblem(
                        src.file,
                        src.line,
                        f"rules[{src.index}].id: duplicate rule id {rule.id!r}"
                        f" (first defined at {prev.file}:{prev.line})",
                    )
                )
                continue
            first[rule.id] = src
            kept.append(rule)
        res.rules = kept
    kinds = {r.id: r for res in results for r in res.rules}
    broken = {rid for res in results for rid in res.broken_ids}
    for res in results:
        for rule in res.rules:
            if isinstance(rule, CompositeRule) and rule.area is not None:
                target = rule.area.rule
                src = res.sources[rule.id]
                where = f"rules[{src.index}].area.rule"
                ref = kinds.get(target)
                if ref is None and target != SENSOR_FAULT_ID and target not in broken:
                    res.problems.append(
                        RuleProblem(src.file, src.line, f"{where}: no rule with id {target!r}")
                    )
                elif isinstance(ref, CompositeRule) and ref.area is not None:
                    res.problems.append(
                        RuleProblem(
                            src.file, src.line, f"{where}: {target!r} is itself an area rule"
                        )
                    )
    problems = list(extra) + [p for res in results for p in res.problems]
    problems.sort(key=lambda p: (p.file, p.line))
    rules = [r for res in results for r in res.rules]
    sources = dict(first)
    return LoadResult(rules, problems, results, sources)


def load_file(path: Path) -> FileResult:
    """Load one rule file; unreadable or non-UTF-8 files are a problem, not an exception."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return FileResult(path, problems=[RuleProblem(str(path), 1, f"cannot read: {exc}")])
    res = load_text(text, str(path))
    res.path = path
    return res


def _parse_yaml(text: str, file: str) -> tuple[Any, list[RuleProblem]]:
    try:
        return parse_yaml(text), []
    except YamlSyntaxError as exc:
        return None, [RuleProblem(file, exc.line, str(exc))]


def load_text(text: str, file: str) -> FileResult:
    """Validate the text of one rule file (``file`` names it in problems); never raises."""
    res = FileResult(Path(file))
    try:
        _load_into(res, text, file)
    except Exception as exc:  # last resort: an author must see a line, never a traceback
        res.problems.append(RuleProblem(file, 1, f"cannot load: {type(exc).__name__}: {exc}"))
    return res


def _load_into(res: FileResult, text: str, file: str) -> None:
    doc, problems = _parse_yaml(text, file)
    if problems:
        res.problems.extend(problems)
        return
    if doc is None:
        return  # an empty file defines no rules
    if not isinstance(doc, YamlMap):
        res.problems.append(RuleProblem(file, 1, "the file must be a mapping with a `rules:` list"))
        return
    for key in doc:
        if key != "rules":
            res.problems.append(
                RuleProblem(file, key_line(doc, key), f"{key}: unknown top-level key (only rules)")
            )
    items = doc.get("rules")
    if items is None:
        if "rules" in doc:
            return  # `rules:` with nothing under it
        res.problems.append(RuleProblem(file, 1, "rules: missing; the file needs a `rules:` list"))
        return
    if not isinstance(items, YamlSeq):
        res.problems.append(
            RuleProblem(file, key_line(doc, "rules"), "rules: must be a list of rules")
        )
        return
    lines = text.splitlines()
    for i, node in enumerate(items):
        line0 = item_line(items, i) - 1
        prefix = f"rules[{i}]"
        if not isinstance(node, YamlMap):
            res.problems.append(RuleProblem(file, line0 + 1, f"{prefix}: a rule is a mapping"))
            continue
        rule, problems = _validate(node, file, prefix, line0)
        if rule is None:
            res.problems.extend(problems)
            if isinstance(node.get("id"), str):
                res.broken_ids.add(node["id"])
            continue
        end = item_line(items, i + 1) - 1 if i + 1 < len(items) else len(lines)
        col = item_column(items, i)
        res.rules.append(rule)
        if rule.id not in res.sources:
            res.sources[rule.id] = RuleSource(
                file, line0 + 1, i, _slice(lines, line0, max(end, line0 + 1), col)
            )
        else:
            first = res.sources[rule.id]
            res.rules.pop()
            res.problems.append(
                RuleProblem(
                    file,
                    line0 + 1,
                    f"{prefix}.id: duplicate rule id {rule.id!r} (first defined at line"
                    f" {first.line})",
                )
            )


#: The rule loader's wording for some of pydantic's errors (see :func:`_validate`).
_OVERRIDES = {
    "extra_forbidden": (
        "unknown field (check the spelling; see docs/rules.md for each kind's fields)"
    ),
    "union_tag_not_found": f"kind: missing; expected one of {', '.join(KINDS)}",
}


def _validate(
    node: YamlMap, file: str, prefix: str, line0: int
) -> tuple[RuleModel | None, list[RuleProblem]]:
    """Validate one rule mapping; map pydantic errors to lines and key paths."""
    try:
        return RULE_ADAPTER.validate_python(plain(node)), []
    except ValidationError as exc:
        kind = node.get("kind")
        overrides = {
            **_OVERRIDES,
            "union_tag_invalid": f"kind: unknown kind {kind!r}; expected one of {', '.join(KINDS)}",
        }
        problems = []
        for found in locate_errors(node, exc, overrides=overrides, default_line=line0 + 1):
            path = prefix if found.path == "(file)" else f"{prefix}.{found.path}"
            problems.append(
                RuleProblem(file, found.line, f"{path.replace('.[', '[')}: {found.message}")
            )
        return None, problems


def _slice(lines: list[str], start: int, end: int, col: int) -> str:
    chunk = lines[start:end]
    if not chunk:
        return ""
    out = [chunk[0][col:]]
    for ln in chunk[1:]:
        out.append(ln[col:] if ln[:col].strip() == "" else ln.lstrip())
    while out and (not out[-1].strip() or out[-1].lstrip().startswith("#")):
        out.pop()
    return "\n".join(out) + "\n"


def parse_rule_text(text: str, file: str = "<request>") -> RuleModel:
    """Validate one rule given as a YAML mapping (the API's body); raises RuleInvalid only."""
    try:
        rule, problems = _parse_one(text, file)
    except Exception as exc:  # never a traceback for a bad request body
        raise RuleInvalid([RuleProblem(file, 1, f"cannot load: {exc}")]) from None
    if rule is None:
        raise RuleInvalid(problems)
    return rule


def _parse_one(text: str, file: str) -> tuple[RuleModel | None, list[RuleProblem]]:
    doc, problems = _parse_yaml(text, file)
    if problems:
        return None, problems
    if not isinstance(doc, YamlMap):
        return None, [RuleProblem(file, 1, "a rule is a YAML mapping of fields")]
    if "rules" in doc:
        line = key_line(doc, "rules")
        return None, [RuleProblem(file, line, "rules: send one rule mapping, not a rules list")]
    rule, problems = _validate(doc, file, "rule", 0)
    # Paths read `value: ...` rather than `rule.value: ...` for a single rule.
    return rule, [
        RuleProblem(p.file, p.line, p.message.removeprefix("rule.").removeprefix("rule: "))
        for p in problems
    ]


def check_command(
    paths: Sequence[Path],
    *,
    routes: Sequence[Path] = (),
    check_routes: Callable[[Path], list[RuleProblem]] | None = None,
    catalog: Catalog | None = None,
    indicators: Sequence[Path] = (),
    check_indicators: Callable[[Sequence[Path]], tuple[list[RuleProblem], int, int]] | None = None,
) -> int:
    """`hub rules check`: print ``file:line: message`` per problem (exit 1) or one OK line.

    Besides each file's own validity, every rule is checked against the device
    ``catalog`` (default: the package's): asset types, metrics, district and device
    names that can never match (:mod:`hub.rules.coverage`). ``routes`` are alert
    routing files, validated by ``check_routes`` (the CLI passes
    ``hub.responders.check_routes``; this package cannot import it); ``indicators``
    are indicator definition files and folders, validated by ``check_indicators``
    (which returns the problems, and how many definitions and files it read).
    """
    from hub.catalog import load_catalog
    from hub.rules.coverage import catalog_problems
    from hub.yamlfile import FileProblem

    result = load_rules(paths)
    problems = [str(p) for p in result.problems]
    if catalog is None:
        try:
            catalog = load_catalog()
        except FileProblem as exc:
            problems.extend(exc.messages)
    if catalog is not None:
        problems.extend(str(p) for p in catalog_problems(result.rules, result.sources, catalog))
    if check_routes is not None:
        for route_file in routes:
            problems.extend(str(p) for p in check_routes(route_file))
    indicator_note = ""
    if check_indicators is not None and indicators:
        found, count, files = check_indicators(indicators)
        problems.extend(str(p) for p in found)
        indicator_note = f"; indicators: {count} in {files} file(s)"
    if problems:
        for p in problems:
            print(p)
        print(
            f"{len(problems)} problem(s); fix them before deploying these rules",
            file=sys.stderr,
        )
        return 1
    checked = f"; routing: {', '.join(map(str, routes))}" if routes and check_routes else ""
    print(f"OK: {len(result.rules)} rules in {len(result.files)} file(s){checked}{indicator_note}")
    return 0
