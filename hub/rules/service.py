"""The rule service: owns the engine, reloads rule files, writes API-managed rules,
records every change, and saves/restores engine state with its journal offset.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import metrics
from hub.clock import Clock
from hub.logging import get_logger
from hub.messages import CitizenReport, Reading, RuleEvent
from hub.ports import (
    Conflict,
    NotFound,
    RuleInvalid,
    RuleProblem,
    RuleSummary,
    ThresholdLine,
)
from hub.rules.coverage import Fleet, rule_text_problems, unmatched_rules
from hub.rules.engine import RuleEngine, compress_snapshot
from hub.rules.engine import step as snapshot_step
from hub.rules.loader import (
    RULE_SUFFIXES,
    FileResult,
    RuleSource,
    combine,
    expand_paths,
    load_file,
    load_text,
    parse_rule_text,
)
from hub.rules.model import (
    DEFAULT_SENSOR_FAULT,
    CitizenReportsRule,
    CompositeRule,
    RuleModel,
    ThresholdRule,
    rule_version,
)
from hub.settings import RulesSettings
from hub.sqlite import STATE_DB, connect, migrate

if TYPE_CHECKING:
    from hub.catalog import Catalog

log = get_logger(__name__)

MIGRATIONS = [
    """
    CREATE TABLE rule_changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        action TEXT NOT NULL,
        file TEXT NOT NULL,
        diff TEXT NOT NULL
    );
    CREATE INDEX rule_changes_rule ON rule_changes (rule_id, id);
    """
]
STATE_FILE = "state.bin"
BUILTIN_FILE = "<built-in>"
#: Debounce of the file watcher: editors write a file in several steps.
WATCH_DEBOUNCE_MS = 200
#: Cold-start priming bounds: at most this many stored readings, for at most this
#: long. Only the live stage (rules, alerts) waits for it; ingest keeps acknowledging
#: into the journal, and the live stage catches up from there afterwards.
PRIME_MAX_READINGS = 1_000_000
PRIME_MAX_S = 30.0
#: Priming hands the event loop back this often (readings), so ingest keeps running.
PRIME_YIELD_EVERY = 1000

#: ``store.history``: (start_ms, end_ms, asset_types or None) -> readings in time order.
HistorySource = Callable[[int, int, Sequence[str] | None], AsyncIterator[Reading]]


class RuleService:
    """Rules for the runtime (evaluate, tick, state) and for the API (RuleServicePort)."""

    def __init__(
        self,
        settings: RulesSettings,
        data_dir: Path,
        *,
        clock: Clock,
        expected_interval_s: Callable[[str], float | None],
        device_labels: Callable[[str], Mapping[str, str]] | None = None,
        labels_version: Callable[[], int] | None = None,
        catalog: Catalog | None = None,
        fleet: Fleet | None = None,
    ) -> None:
        self._settings = settings
        # With a catalog, API rule writes are checked against it; with a fleet too,
        # every (re)load logs the rules that match no series the hub knows.
        self._catalog = catalog
        self._fleet = fleet
        self._unmatched: list[str] = []
        self._clock = clock
        self._paths = [Path(p) for p in settings.paths]
        self._managed = Path(settings.managed_dir)
        self._managed.mkdir(parents=True, exist_ok=True)
        self._state_dir = data_dir / "rules"
        self._db = connect(data_dir / STATE_DB)
        migrate(self._db, "rule_changes", MIGRATIONS)
        self._good: dict[Path, FileResult] = {}
        self._rules: list[RuleModel] = []
        self._sources: dict[str, RuleSource] = {}
        self._problems: list[RuleProblem] = []
        self._outbox: list[RuleEvent] = []
        self._engine = RuleEngine(
            [],
            late_tolerance_s=settings.late_tolerance_s,
            expected_interval_s=expected_interval_s,
            device_labels=device_labels,
            labels_version=labels_version,
        )
        # Last text seen of each rule file, so edits made to files (not through the
        # API) are recorded in the change log too.
        self._texts: dict[Path, str] = {}
        self._texts_seen = False
        self._evaluations = 0
        #: How many times the rule files were (re)loaded; lets tests and health see reloads.
        self.reloads = 0
        self.reload()

    @property
    def engine(self) -> RuleEngine:
        """The engine (for tests and the benchmark)."""
        return self._engine

    # ------------------------------------------------------------------ loading

    def _all_paths(self) -> list[Path]:
        return [*self._paths, self._managed]

    def reload(self) -> list[RuleProblem]:
        """Re-read every rule file; broken files keep their previous rules. Returns problems."""
        self.reloads += 1
        files, missing = expand_paths(self._all_paths())
        if not files:
            # Easy to miss: the default path is relative to the working directory.
            log.warning(
                "no rule files; only the built-in sensor-fault rule runs",
                paths=[str(p.resolve()) for p in self._paths],
            )
        results = [load_file(p) for p in files]
        combined = combine(results, missing)
        good: dict[Path, FileResult] = {}
        for res in results:
            key = res.path.resolve()
            if res.ok:
                good[key] = res
            elif key in self._good:
                good[key] = self._good[key]
                log.warning(
                    "rule file broken; its previous rules keep running",
                    file=str(res.path),
                    problems=[str(p) for p in res.problems],
                )
            else:
                log.warning(
                    "rule file broken", file=str(res.path), problems=[str(p) for p in res.problems]
                )
        rules: list[RuleModel] = []
        sources: dict[str, RuleSource] = {}
        for res in good.values():
            for rule in res.rules:
                if rule.id not in sources:
                    sources[rule.id] = res.sources[rule.id]
                    rules.append(rule)
        self._good = good
        self._rules = rules
        self._sources = sources
        self._problems = combined.problems
        metrics.RULE_LOAD_ERRORS.set(len({p.file for p in self._problems}))
        self._outbox.extend(self._engine.set_rules(rules))
        self._record_file_edits(files)
        log.info("rules loaded", rules=len(rules), problems=len(self._problems))
        self._log_unmatched(rules)
        return list(self._problems)

    def _log_unmatched(self, rules: list[RuleModel]) -> None:
        """Warn about loaded rules that no series the hub knows can match (they cannot fire)."""
        if self._catalog is None or self._fleet is None:
            return
        try:
            ids = unmatched_rules(rules, self._catalog, self._fleet)
        except Exception:  # a diagnostic must never stop rules from loading
            log.exception("could not check rules against the known devices")
            return
        self._unmatched = ids or []
        if ids is None:
            log.info("no devices known yet; rules are not checked against the fleet")
        elif ids:
            where = {rid: self._sources[rid] for rid in ids if rid in self._sources}
            log.warning(
                "rules match no known series: no device the hub knows has what they need,"
                " so they cannot fire (check match and metric, or provision the devices)",
                rules=[f"{rid} ({where[rid].file}:{where[rid].line})" for rid in where],
            )

    def _record_file_edits(self, files: list[Path]) -> None:
        """Record a diff for every rule file whose text changed since the last reload."""
        first = not self._texts_seen
        self._texts_seen = True
        texts: dict[Path, str] = {}
        for path in files:
            try:
                texts[path.resolve()] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
        if not first:
            for key in sorted(set(texts) | set(self._texts)):
                before, after = self._texts.get(key, ""), texts.get(key, "")
                if before != after:
                    ids = _changed_ids(before, after, str(key))
                    self._record("file", ",".join(ids), "file-edit", key, before, after)
        self._texts = texts

    def problems(self) -> list[RuleProblem]:
        """Current load errors (broken files keep their previous rules)."""
        return list(self._problems)

    def unmatched(self) -> list[str]:
        """Ids of loaded rules that matched no known series at the last (re)load."""
        return list(self._unmatched)

    async def watch(self) -> None:
        """Reload whenever a rule file changes; runs until cancelled."""
        from watchfiles import awatch

        # Folders are watched as such; a single file through its folder, because
        # editors save by replacing the file, which ends a watch on the file itself.
        roots = sorted({p if p.is_dir() else p.parent for p in self._all_paths() if p.exists()})
        if not roots:
            log.warning("no rule path exists; nothing to watch")
            return

        def is_rule_file(_change: object, path: str) -> bool:
            return path.endswith(RULE_SUFFIXES)

        async for _changes in awatch(
            *roots, watch_filter=is_rule_file, debounce=WATCH_DEBOUNCE_MS, step=50
        ):
            try:
                self.reload()
            except Exception:  # a reload bug must not stop watching
                log.exception("rule reload failed")

    # ------------------------------------------------------------------ engine

    def evaluate(self, reading: Reading) -> list[RuleEvent]:
        """Evaluate one reading (plus events left by a reload)."""
        events = self._engine.evaluate(reading)
        if self._outbox:
            events = [*self._outbox, *events]
            self._outbox.clear()
        self._count(events)
        return events

    def evaluate_many(self, readings: Sequence[Reading]) -> list[RuleEvent]:
        """:meth:`evaluate` for a batch, in order (the metrics are updated once)."""
        evaluate = self._engine.evaluate
        events: list[RuleEvent] = []
        if self._outbox:
            events.extend(self._outbox)
            self._outbox.clear()
        for reading in readings:
            found = evaluate(reading)
            if found:
                events.extend(found)
        self._count(events)
        return events

    def tick(self, now_ms: int) -> list[RuleEvent]:
        """Timer-driven changes (plus events left by a reload)."""
        events = self._engine.tick(now_ms)
        if self._outbox:
            events = [*self._outbox, *events]
            self._outbox.clear()
        self._count(events)
        return events

    def observe_report(self, report: CitizenReport) -> list[RuleEvent]:
        """A citizen's report: ``citizen_reports`` rules count it (plus events left by a
        reload)."""
        events = self._engine.observe_report(report)
        if self._outbox:
            events = [*self._outbox, *events]
            self._outbox.clear()
        self._count(events)
        return events

    def prime_reports(self, reports: Sequence[CitizenReport]) -> None:
        """Count stored reports into ``citizen_reports`` windows, without events (a start:
        reports are not in the journal, so the saved rule state may lack the newest)."""
        for report in reports:
            self._engine.prime_report(report)

    def report_window_ms(self) -> int:
        """How far back :meth:`prime_reports` needs reports for the current rules."""
        return max(
            (r.window_ms for r in self._engine.rules if isinstance(r, CitizenReportsRule)),
            default=0,
        )

    def rearm(self, rule_id: str, district: str, source: str) -> bool:
        """An alert of this series was resolved by hand: see :meth:`RuleEngine.rearm`
        (True when the condition held at its last evaluation)."""
        return self._engine.rearm(rule_id, district, source)

    def firing(self) -> list[tuple[str, str, str]]:
        """(rule id, district, source) of every firing series."""
        return self._engine.firing()

    def _count(self, events: list[RuleEvent]) -> None:
        n = self._engine.evaluations
        if n != self._evaluations:
            metrics.RULE_EVALUATIONS.inc(n - self._evaluations)
            self._evaluations = n
        for ev in events:
            metrics.RULE_EVENTS.labels(ev.state.value).inc()

    # ------------------------------------------------------------------ restart safety

    async def cold_start(self, history: HistorySource) -> int:
        """After :meth:`load_state` returned None: rebuild rule windows from the store.

        Reads ``[now - engine.history_window_ms(), now)`` of the asset types that
        window rules match, bounded by :data:`PRIME_MAX_READINGS` and
        :data:`PRIME_MAX_S`. Never raises: a store that cannot answer means
        windows start empty (logged), not a dead live stage. Returns readings used.
        """
        window = self._engine.history_window_ms()
        if window <= 0:
            return 0
        now = self._clock.now_ms()
        try:
            return await self.prime(
                history(now - window, now, self._engine.prime_asset_types()),
                max_readings=PRIME_MAX_READINGS,
                max_s=PRIME_MAX_S,
            )
        except Exception as exc:  # any store failure: start cold, keep evaluating
            log.warning("rule windows not rebuilt; they start empty", error=repr(exc))
            return 0

    async def prime(
        self,
        history: AsyncIterator[Reading],
        *,
        max_readings: int | None = None,
        max_s: float | None = None,
    ) -> int:
        """Rebuild rule windows from stored history (cold start); returns readings used.

        Call with ``store.history(now - engine.history_window_ms(), now)`` when
        :meth:`load_state` returned None (:meth:`cold_start` does); no events are
        emitted. Stops early after ``max_readings`` or ``max_s`` seconds.
        """
        n = 0
        started = self._clock.monotonic()
        truncated = False
        try:
            async for reading in history:
                if max_readings is not None and n >= max_readings:
                    truncated = True
                    break
                self._engine.prime(reading)
                n += 1
                if n % PRIME_YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                    if max_s is not None and self._clock.monotonic() - started > max_s:
                        truncated = True
                        break
        finally:
            # Stopping early must close the store's cursor now, not at garbage collection.
            aclose = getattr(history, "aclose", None)
            if aclose is not None:
                await aclose()
        took = round(self._clock.monotonic() - started, 3)
        if truncated:
            log.warning(
                "rule windows rebuilt from part of the history (bound reached)",
                readings=n,
                seconds=took,
                max_readings=max_readings,
                max_s=max_s,
            )
        else:
            log.info("rule windows rebuilt from history", readings=n, seconds=took)
        return n

    def save_state(self, journal_offset: int) -> None:
        """Atomically write the engine snapshot with the journal offset it reflects."""
        self._write_state(self._engine.snapshot(), journal_offset)

    def begin_snapshot(self, chunk: int = 0) -> Generator[None, None, bytes]:
        """Capture the engine's state now; :meth:`snapshot` builds it in steps of
        ``chunk`` series later, while readings go on being evaluated (the engine
        copies a series on write)."""
        return self._engine.snapshot_steps(chunk)

    async def snapshot(
        self,
        steps: Generator[None, None, bytes] | None = None,
        *,
        pause: Callable[[], Awaitable[None]] | None = None,
    ) -> bytes:
        """Build a snapshot (``steps`` from :meth:`begin_snapshot`, or one taken now)
        in steps, running ``pause()`` (default: one turn of the loop) in between."""
        steps = steps if steps is not None else self._engine.snapshot_steps()
        try:
            while (raw := snapshot_step(steps)) is None:
                await (pause() if pause is not None else asyncio.sleep(0))
            return raw
        finally:
            steps.close()
            self._engine.discard_snapshot()

    async def write_snapshot(self, raw: bytes, journal_offset: int) -> None:
        """Compress, write and fsync a :meth:`snapshot` in a worker thread; evaluation
        may go on meanwhile."""
        await asyncio.to_thread(self._write_state, raw, journal_offset, compress=True)

    def _write_state(self, snapshot: bytes, journal_offset: int, *, compress: bool = False) -> None:
        if compress:
            snapshot = compress_snapshot(snapshot)
        self._state_dir.mkdir(parents=True, exist_ok=True)
        header = json.dumps(
            {"format": 1, "journal_offset": journal_offset, "saved_ms": self._clock.now_ms()}
        ).encode()
        path = self._state_dir / STATE_FILE
        # A name per thread: a checkpoint cancelled at stop may still be writing
        # while the stop writes its own; each replace is atomic, either is whole.
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        with tmp.open("wb") as fh:
            fh.write(header + b"\n" + snapshot)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        dir_fd = os.open(self._state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def load_state(self) -> int | None:
        """Restore the saved snapshot; return its journal offset (None: nothing usable)."""
        path = self._state_dir / STATE_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            header, _, body = raw.partition(b"\n")
            meta = json.loads(header)
            self._engine.restore(body)
            return int(meta["journal_offset"])
        except Exception as exc:  # a damaged state file means a cold start, not a crash
            log.warning("rule state unreadable; starting cold", file=str(path), error=str(exc))
            return None

    # ------------------------------------------------------------------ API (RuleServicePort)

    def _summary(self, rule: RuleModel, counts: dict[str, tuple[int, int]]) -> RuleSummary:
        src = self._sources.get(rule.id)
        firing, pending = counts.get(rule.id, (0, 0))
        return RuleSummary(
            id=rule.id,
            kind=rule.kind,
            version=rule_version(rule),
            file=src.file if src else BUILTIN_FILE,
            managed=src is not None and self._is_managed(Path(src.file)),
            enabled=rule.enabled,
            severity=rule.severity,
            description=rule.description,
            source_yaml=src.source_yaml if src else "",
            firing=firing,
            pending=pending,
            labels=dict(rule.labels),
        )

    def _is_managed(self, path: Path) -> bool:
        return path.resolve().parent == self._managed.resolve()

    def _listed(self) -> list[RuleModel]:
        rules = list(self._rules)
        if all(r.id != DEFAULT_SENSOR_FAULT.id for r in rules):
            rules.append(DEFAULT_SENSOR_FAULT)
        return rules

    def list_rules(self) -> list[RuleSummary]:
        """Every loaded rule with its current firing/pending counts."""
        counts = self._engine.counts()
        return [self._summary(r, counts) for r in self._listed()]

    def thresholds(self, district: str, asset_type: str, device_id: str) -> list[ThresholdLine]:
        """Fixed levels of the enabled rules matching the device: threshold rules and
        composite conditions on a value (the console draws them on the device's charts)."""
        lines: list[ThresholdLine] = []
        for rule in self._engine.matching_rules(district, asset_type, device_id):
            if isinstance(rule, ThresholdRule):
                lines.append(
                    ThresholdLine(
                        rule.id, rule.metric, rule.op, rule.value, rule.clear, rule.severity
                    )
                )
            elif isinstance(rule, CompositeRule):
                lines.extend(
                    ThresholdLine(rule.id, c.metric, c.op, c.value, None, rule.severity)
                    for c in rule.conditions
                    if c.of == "value"
                )
        return lines

    def get_rule(self, rule_id: str) -> RuleSummary | None:
        """One rule, or None."""
        for r in self._listed():
            if r.id == rule_id:
                return self._summary(r, self._engine.counts())
        return None

    def create_rule(self, source_yaml: str, actor: str) -> RuleSummary:
        """Add one rule as a managed file; RuleInvalid / Conflict (duplicate id)."""
        rule = parse_rule_text(source_yaml)
        self._check_catalog(rule, source_yaml)
        if any(r.id == rule.id for r in self._listed()):
            raise Conflict(f"a rule with id {rule.id!r} already exists")
        path = self._managed / f"{rule.id}.yaml"
        text = _managed_text(source_yaml)
        self._check_with(path, text)
        self._write(path, text)
        self._record(actor, rule.id, "create", path, "", text)
        self._texts[path.resolve()] = text
        self.reload()
        return self._require(rule.id)

    def update_rule(self, rule_id: str, source_yaml: str, actor: str) -> RuleSummary:
        """Replace a managed rule; NotFound / RuleInvalid / Conflict (not managed)."""
        path = self._managed_path(rule_id)
        rule = parse_rule_text(source_yaml)
        if rule.id != rule_id:
            raise RuleInvalid(
                [RuleProblem("<request>", 1, f"id: must stay {rule_id!r} (got {rule.id!r})")]
            )
        self._check_catalog(rule, source_yaml)
        text = _managed_text(source_yaml)
        self._check_with(path, text)
        before = path.read_text(encoding="utf-8") if path.exists() else ""
        self._write(path, text)
        self._record(actor, rule_id, "update", path, before, text)
        self._texts[path.resolve()] = text
        self.reload()
        return self._require(rule_id)

    def delete_rule(self, rule_id: str, actor: str) -> None:
        """Remove a managed rule; NotFound / Conflict (not managed, or counted by an area rule)."""
        path = self._managed_path(rule_id)
        users = [
            r.id
            for r in self._rules
            if isinstance(r, CompositeRule) and r.area is not None and r.area.rule == rule_id
        ]
        if users:
            raise Conflict(f"area rule(s) {', '.join(users)} count rule {rule_id!r}")
        before = path.read_text(encoding="utf-8") if path.exists() else ""
        path.unlink(missing_ok=True)
        self._record(actor, rule_id, "delete", path, before, "")
        self._texts.pop(path.resolve(), None)
        self.reload()

    def record_change(
        self, actor: str, subject_id: str, action: str, path: Path, before: str, after: str
    ) -> None:
        """Record a change of another file kept with the rules (indicator definitions)
        in the same change log, with its diff."""
        self._record(actor, subject_id, action, path, before, after)

    def changes(self, limit: int) -> list[dict[str, Any]]:
        """Recorded rule changes, newest first: author, time, rule id, action, diff."""
        rows = self._db.execute(
            "SELECT id, ts_ms, actor, rule_id, action, file, diff FROM rule_changes"
            " ORDER BY id DESC LIMIT ?",
            (max(0, limit),),
        ).fetchall()
        return [dict(row) for row in rows]

    # ------------------------------------------------------------------ helpers

    def _require(self, rule_id: str) -> RuleSummary:
        summary = self.get_rule(rule_id)
        if summary is None:  # written but not loaded: report the file's problems
            mine = [p for p in self._problems if Path(p.file).stem == rule_id]
            raise RuleInvalid(mine or [RuleProblem(rule_id, 1, "rule did not load")])
        return summary

    def _managed_path(self, rule_id: str) -> Path:
        src = self._sources.get(rule_id)
        if src is None:
            raise NotFound(f"no rule with id {rule_id!r}")
        path = Path(src.file)
        if not self._is_managed(path):
            raise Conflict(
                f"rule {rule_id!r} is defined in {src.file}:{src.line}; change it in that file"
            )
        return path

    def _check_catalog(self, rule: RuleModel, source_yaml: str) -> None:
        """Refuse a rule whose names the device catalog says can never match, as the check does."""
        if self._catalog is None:
            return
        problems = rule_text_problems(rule, source_yaml, "<request>", self._catalog)
        if problems:
            raise RuleInvalid(problems)

    def _check_with(self, path: Path, text: str) -> None:
        """Validate ``text`` as file ``path`` together with every other rule file."""
        res = load_text(text, str(path))
        res.path = path
        if not res.ok:
            raise RuleInvalid(res.problems)
        files, _missing = expand_paths(self._all_paths())
        key = path.resolve()
        others = [load_file(p) for p in files if p.resolve() != key]
        combine([*others, res])
        if res.problems:
            raise RuleInvalid(res.problems)

    def _write(self, path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)

    def _record(self, actor: str, rule_id: str, action: str, path: Path, a: str, b: str) -> None:
        diff = "".join(
            difflib.unified_diff(
                a.splitlines(keepends=True),
                b.splitlines(keepends=True),
                fromfile=f"a/{path.name}",
                tofile=f"b/{path.name}",
            )
        )
        try:
            self._db.execute(
                "INSERT INTO rule_changes (ts_ms, actor, rule_id, action, file, diff)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (self._clock.now_ms(), actor, rule_id, action, str(path), diff),
            )
        except sqlite3.Error:
            log.exception("could not record rule change", rule_id=rule_id)

    def close(self) -> None:
        """Close the state database connection."""
        self._db.close()


def _changed_ids(before: str, after: str, file: str) -> list[str]:
    """Ids of the rules added, removed or changed between two texts of one file."""

    def versions(text: str) -> dict[str, str]:
        return {r.id: rule_version(r) for r in load_text(text, file).rules} if text else {}

    a, b = versions(before), versions(after)
    return sorted(rid for rid in set(a) | set(b) if a.get(rid) != b.get(rid))


def _managed_text(source_yaml: str) -> str:
    """A single-rule body as a rule file: ``rules:`` with the mapping as its only item."""
    lines = source_yaml.strip("\n").splitlines()
    body = ["  - " + lines[0], *(("    " + ln) if ln.strip() else "" for ln in lines[1:])]
    return "# Managed through the API; every change is recorded with its author.\nrules:\n" + (
        "\n".join(body) + "\n"
    )
