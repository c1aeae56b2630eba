"""The alert manager: rule state changes in, alerts and notifications out.

The pipeline, in the order a rule event meets it (Alertmanager's stages, made durable)::

    RuleEvent -> lifecycle (one active alert per rule and source; flapping hold)
              -> grouping (incident) -> routing (routes.yaml tree) -> schedule
              -> [tick / at once] due steps -> silences, maintenance, inhibition
              -> outbox (SQLite, same transaction) -> delivery worker -> notifier
              -> notification log (dedup)

Every change runs in one SQLite transaction, and ``on_event`` sees each transition
only after it is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from hub import metrics
from hub.alerts import escalation, lifecycle, notify_log
from hub.alerts.cap import cap_messages, render_cap, render_feed
from hub.alerts.db import checkpoint, database_file, migrate_alerts, transaction
from hub.alerts.escalation import DueStep
from hub.alerts.facts import RULE_ACTOR, AlertFacts, scope_clause
from hub.alerts.figures import response_figures
from hub.alerts.grouping import assign_incident, incident_summary, release_alert
from hub.alerts.inhibition import Inhibitor
from hub.alerts.lifecycle import ACTIVE, alert_dict, match_labels, series_key, to_record
from hub.alerts.notify_log import OutboxItem, Sender
from hub.alerts.routing import RoutePlanner, RoutesFile, matchers_match
from hub.alerts.silences import SilenceBook
from hub.clock import Clock
from hub.logging import get_logger
from hub.messages import AlertEvent, AlertStatus, Notification, RuleEvent, RuleState, Severity
from hub.ports import (
    DEFAULT_RESOLUTION,
    RESOLUTION_REASONS,
    AlertFilter,
    AlertRecord,
    AlertView,
    Conflict,
    DeliveryError,
    MaintenancePeriod,
    NotFound,
    ResponseFact,
    Scope,
    Silence,
    Transition,
)

log = get_logger(__name__)

#: How long a delivery worker sleeps when idle before looking at its queue again
#: (it is woken at once by new notifications; this only bounds a missed wake-up).
IDLE_POLL_S = 1.0
#: Notifications per digest at most (a bigger incident sends several at once).
DIGEST_MAX = 100
#: A digest worker looks at its queue at most this often (seconds).
DIGEST_SCAN_S = 0.2
#: Incidents whose last digest time a digest worker remembers.
DIGEST_MEMORY = 10_000
#: How often the alert database's write-ahead log is copied into it (off the loop).
CHECKPOINT_S = 1.0
#: Delivery results are logged in one transaction per this many, or this late at most
#: (a crash in between re-sends them after the restart: at least once, as before).
SETTLE_BATCH = 64
SETTLE_DELAY_S = 0.02
#: How long a stopping delivery worker waits for sends already in flight to finish.
STOP_GRACE_S = 2.0
#: Rule events applied per transaction; before each chunk the delivery workers get
#: the event loop, so an alert storm does not hold back the first notifications.
HANDLE_CHUNK = 50
#: How long a chunk of rule events waits at most for the delivery workers to hand
#: over what is queued (see ``_let_delivery_catch_up``).
CATCH_UP_S = 0.1
#: Due steps per transaction in a tick (~0.3 ms each), and chunks per tick at most
#: (the rest waits for the next tick).
TICK_CHUNK = 20
MAX_TICK_CHUNKS = 1000
#: A silenced or inhibited step is looked at again this often (sooner when its
#: silence ends, is expired, or the inhibiting alert resolves).
MUTED_RECHECK_MS = 30_000
#: Entries of the notification log are kept this long (dedup only needs the window
#: in which a crash could re-queue a notification; the rest is audit history).
NOTIFY_LOG_RETENTION_MS = 90 * 24 * 3_600_000
PRUNE_EVERY_MS = 3_600_000
#: Resolved alerts stay in the Atom feed (as CAP Cancel messages) this long.
FEED_RESOLVED_MS = 24 * 3_600_000

Locate = Callable[[str], tuple[float, float] | None]
#: (rule id, district, source) -> whether the condition still held: tells the rule
#: engine that an operator resolved the series' alert (hub.rules RuleService.rearm).
Rearm = Callable[[str, str, str], bool]
#: An alert event for ``on_event`` and the transition it reports (the metric's label:
#: firing, updated, escalated, acknowledged, commented, resolved).
Emitted = tuple[AlertEvent, str]


class AlertManager:
    """Implements hub.ports.AlertServicePort, plus handle/tick/run/close for the runtime."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        routes: RoutesFile,
        notifiers: Mapping[str, Sender],
        *,
        clock: Clock,
        on_event: Callable[[AlertEvent], None],
        locate: Locate,
        sender: str = "hub@city.example",
    ) -> None:
        self._conn = conn
        self._routes = routes
        self._notifiers = dict(notifiers)
        self._clock = clock
        self._on_event = on_event
        self._locate = locate
        self._sender = sender
        migrate_alerts(conn)
        self._planner = RoutePlanner(routes.route)
        self._silences = SilenceBook(conn, routes.maintenance)
        self._facts = AlertFacts(conn, routes, clock, self._silences)
        self._inhibitor = Inhibitor(routes.inhibit)
        for row in conn.execute("SELECT * FROM alerts WHERE status IN ('firing', 'acknowledged')"):
            self._inhibitor.activate(row["id"], match_labels(row))
        self._wake: dict[str, asyncio.Event] = {name: asyncio.Event() for name in notifiers}
        #: Per running (non-digest) delivery worker: set while it has handed over all
        #: it can (its queue is empty, not due yet, or halted after a failure).
        self._caught_up: dict[str, asyncio.Event] = {}
        self._pruned_ms = 0
        #: Per digest receiver: when each incident's last digest went out.
        self._digest_sent: dict[str, dict[str, int]] = {}
        self.bad_events = 0
        #: Set by the runtime: told of every alert resolved by hand, so that a
        #: condition that still holds brings the alert back (docs/alerts.md).
        self.rearm: Rearm | None = None

    # ------------------------------------------------------------------ pipeline in

    async def handle(self, events: Sequence[RuleEvent]) -> None:
        """Apply rule state changes; notifications due now are queued at once."""
        for start in range(0, len(events), HANDLE_CHUNK):
            await self._let_delivery_catch_up()
            self._handle_chunk(events[start : start + HANDLE_CHUNK])

    async def _let_delivery_catch_up(self) -> None:
        """Before opening more alerts, let the delivery workers hand over what is queued.

        In a storm bigger than the hub can take, opening alerts and delivering them
        compete for the one event loop. With only one turn of the loop between
        chunks, delivery fell further and further behind (a notification needs
        several turns: issue, publish, PUBACK; its window filled up), and an alert
        waited seconds in the outbox while later ones were opened. Now, after that
        turn, the opening waits while a worker still has due notifications it could
        not hand over: delivery stays within a chunk or two of the opening, and the
        backlog of a storm stays in the journal, unread, in arrival order. A worker
        whose receiver is failing (halted, backing off) has nothing to hand over, so
        a broken receiver never holds back the others' alerts; a slow but alive one
        holds each chunk back for CATCH_UP_S at most.
        """
        await asyncio.sleep(0)  # the workers hand over what the last chunk queued
        waiting = [e for e in self._caught_up.values() if not e.is_set()]
        if not waiting:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CATCH_UP_S):
                for event in waiting:
                    await event.wait()

    def _wake_workers(self) -> None:
        """New notifications may be due: every delivery worker looks at its queue."""
        for event in self._caught_up.values():
            event.clear()
        for wake in self._wake.values():
            wake.set()

    def _handle_chunk(self, events: Sequence[RuleEvent]) -> None:
        now = self._clock.now_ms()
        emitted: list[Emitted] = []
        touched: list[str] = []
        with transaction(self._conn):
            for ev in events:
                self._conn.execute("SAVEPOINT ev")
                try:
                    alert_id = self._apply(ev, now, emitted)
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    # Bad input never raises into the loop: count it, say so, go on.
                    self._conn.execute("ROLLBACK TO ev")
                    self.bad_events += 1
                    log.error(  # noqa: TRY400  (expected bad input: no traceback)
                        "bad rule event dropped", rule_id=ev.rule_id, error=repr(exc)
                    )
                else:
                    if alert_id is not None:
                        touched.append(alert_id)
                self._conn.execute("RELEASE ev")
            self._process_due(now, emitted, touched)
        self._publish(emitted)

    async def tick(self) -> None:
        """Timer work: held resolutions, group wait, repeats, escalation steps."""
        now = self._clock.now_ms()
        emitted: list[Emitted] = []
        with transaction(self._conn):
            hold_since = now - self._routes.flapping.hold
            rows = self._conn.execute(
                "SELECT * FROM alerts WHERE resolve_pending_ms IS NOT NULL"
                " AND resolve_pending_ms <= ?",
                (hold_since,),
            ).fetchall()
            for row in rows:
                self._resolve(
                    row, now, RULE_ACTOR, "cleared and stayed clear (flapping hold)", emitted
                )
            if now - self._pruned_ms >= PRUNE_EVERY_MS:
                self._conn.execute(
                    "DELETE FROM notify_log WHERE done_ms < ?", (now - NOTIFY_LOG_RETENTION_MS,)
                )
                self._pruned_ms = now
        self._publish(emitted)
        # Due steps in chunks, yielding between them: a storm's group_wait makes
        # thousands due in the same second, and one transaction for all of them
        # held the event loop (and every other alert) for ~0.1 s each second.
        for _ in range(MAX_TICK_CHUNKS):
            emitted = []
            with transaction(self._conn):
                processed = self._process_due(now, emitted, limit=TICK_CHUNK)
            self._publish(emitted)
            if processed < TICK_CHUNK:
                break
            await asyncio.sleep(0)
        self._wake_workers()

    def _publish(self, emitted: Sequence[Emitted]) -> None:
        for event, kind in emitted:
            metrics.ALERTS.labels(kind, event.severity.label).inc()
            try:
                self._on_event(event)
            except Exception:  # a broken listener must not break the alert pipeline
                log.exception("alert event listener failed", alert_id=event.alert_id)
        if emitted:
            self._wake_workers()

    # ------------------------------------------------------------------ lifecycle

    def _apply(self, ev: RuleEvent, now: int, emitted: list[Emitted]) -> str | None:
        """Apply one event; returns the id of an alert that may now have due steps."""
        if ev.state not in (RuleState.FIRING, RuleState.RESOLVED):
            return None  # pending/inactive are for the rules view, not for responders
        key = series_key(ev.rule_id, ev.district, ev.source)
        row = self._conn.execute("SELECT * FROM alerts WHERE active_key = ?", (key,)).fetchone()
        if ev.state is RuleState.FIRING:
            if row is None:
                return self._open(ev, key, now, emitted)
            self._update(row, ev, now, emitted)
            return str(row["id"])
        if row is None or row["resolve_pending_ms"] is not None:
            return None
        if self._flapping(row, now):
            self._conn.execute(
                "UPDATE alerts SET resolve_pending_ms = ?, updated_ms = ? WHERE id = ?",
                (now, now, row["id"]),
            )
            lifecycle.add_transition(
                self._conn,
                row["id"],
                now,
                "updated",
                "rule",
                "rule cleared; resolution held back because the alert is flapping",
                {"hold_ms": self._routes.flapping.hold},
            )
            return None
        # Steps due by now go out before the resolution: an alert opened and cleared
        # in one batch (a one-reading spike) still reaches every route whose
        # group_wait has passed or is 0, as firing and then resolved, in that order.
        self._process_due(now, emitted, (row["id"],))
        self._resolve(row, now, RULE_ACTOR, ev.explanation.summary or "rule cleared", emitted)
        return None

    def _flapping(self, row: sqlite3.Row, now: int) -> bool:
        f = self._routes.flapping
        (opened,) = self._conn.execute(
            "SELECT COUNT(*) FROM alerts WHERE rule_id = ? AND district = ? AND source = ?"
            " AND started_ms >= ?",
            (row["rule_id"], row["district"], row["source"], now - f.window),
        ).fetchone()
        return int(opened) >= f.threshold

    def _open(self, ev: RuleEvent, key: str, now: int, emitted: list[Emitted]) -> str:
        previous = self._conn.execute(
            "SELECT id FROM alerts WHERE rule_id = ? AND district = ? AND source = ?"
            " ORDER BY started_ms DESC LIMIT 1",
            (ev.rule_id, ev.district, ev.source),
        ).fetchone()
        reopened_from = previous["id"] if previous is not None else None
        alert_id = _time_ordered_id(now)
        labels = {str(k): str(v) for k, v in ev.labels.items()}
        identity = {
            **labels,
            "district": ev.district,
            "asset_type": ev.asset_type,
            "severity": ev.severity.label,
            "rule_id": ev.rule_id,
            "source": ev.source,
        }
        g = self._routes.grouping
        incident_id, group_start = assign_incident(self._conn, g.by, g.window, identity, now)
        summary = ev.explanation.summary or ev.description or ev.rule_id
        labels_json = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()
        self._conn.execute(
            "INSERT INTO alerts (id, rule_id, rule_version, status, severity, district,"
            " asset_type, source, summary, description, labels, explanation, started_ms,"
            " updated_ms, incident_id, reopened_from, active_key, reading_received_ms)"
            " VALUES (?, ?, ?, 'firing', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                alert_id,
                ev.rule_id,
                ev.rule_version,
                int(ev.severity),
                ev.district,
                ev.asset_type,
                ev.source,
                summary,
                ev.description,
                labels_json,
                _explanation_json(ev),
                now,
                now,
                incident_id,
                reopened_from,
                key,
                ev.reading_received_ms,
            ),
        )
        lifecycle.add_transition(
            self._conn,
            alert_id,
            now,
            "firing",
            "rule",
            summary,
            {
                "rule_version": ev.rule_version,
                "severity": ev.severity.label,
                "incident_id": incident_id,
                "reopened_from": reopened_from,
            },
        )
        plans = self._planner.plan(identity, ev.severity)
        escalation.schedule(self._conn, alert_id, plans, now, now, group_start)
        # The event from what was just inserted, rather than reading the row back.
        opened = {
            "id": alert_id,
            "rule_id": ev.rule_id,
            "severity": int(ev.severity),
            "district": ev.district,
            "asset_type": ev.asset_type,
            "source": ev.source,
            "summary": summary,
            "labels": labels_json,
            "reopened_from": reopened_from,
        }
        emitted.append((_event(opened, AlertStatus.FIRING, now, "rule", summary), "firing"))
        # Last, once nothing above can fail: a failed event's savepoint rolls back
        # the database, and the inhibitor must not keep an alert that is not there.
        self._inhibitor.activate(alert_id, identity)
        return alert_id

    def _update(self, row: sqlite3.Row, ev: RuleEvent, now: int, emitted: list[Emitted]) -> None:
        old = Severity(row["severity"])
        summary = ev.explanation.summary or ev.description or ev.rule_id
        self._conn.execute(
            "UPDATE alerts SET severity = ?, summary = ?, explanation = ?, rule_version = ?,"
            " updated_ms = ?, resolve_pending_ms = NULL, reading_received_ms = ? WHERE id = ?",
            (
                int(ev.severity),
                summary,
                _explanation_json(ev),
                ev.rule_version,
                now,
                ev.reading_received_ms,
                row["id"],
            ),
        )
        detail: dict[str, Any] = {"severity": ev.severity.label}
        if old != ev.severity:
            detail["previous_severity"] = old.label
        if row["resolve_pending_ms"] is not None:
            detail["flapping"] = "fired again during the hold; the alert stays open"
        lifecycle.add_transition(self._conn, row["id"], now, "updated", "rule", summary, detail)
        fresh = lifecycle.get_row(self._conn, row["id"])
        assert fresh is not None
        if ev.severity > old and fresh["status"] == "firing":
            # A worse severity may match routes the old one did not (e.g. escalation
            # for emergencies); routes already scheduled keep their repeat timing.
            plans = self._planner.plan(match_labels(fresh), ev.severity)
            escalation.schedule(self._conn, row["id"], plans, row["started_ms"], now)
        emitted.append(
            (_event(fresh, AlertStatus(fresh["status"]), now, "rule", "updated"), "updated")
        )

    def _resolve(
        self,
        row: sqlite3.Row,
        now: int,
        actor: str,
        comment: str,
        emitted: list[Emitted],
        detail: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> sqlite3.Row:
        self._conn.execute(
            "UPDATE alerts SET status = 'resolved', resolved_ms = ?, updated_ms = ?,"
            " active_key = NULL, resolve_pending_ms = NULL, resolution = ?, resolved_by = ?"
            " WHERE id = ?",
            (now, now, reason, actor, row["id"]),
        )
        if reason is not None:
            detail = {**(detail or {}), "reason": reason}
        tid = lifecycle.add_transition(
            self._conn, row["id"], now, "resolved", actor, comment, detail
        )
        escalation.stop(self._conn, row["id"])
        release_alert(self._conn, row["incident_id"], now)
        inhibiting = self._inhibitor.is_active(row["id"])
        if inhibiting:
            escalation.wake_muted(self._conn, now)
        fresh = lifecycle.get_row(self._conn, row["id"])
        assert fresh is not None
        self._follow_up(fresh, "resolved", tid, now, actor, comment)
        emitted.append((_event(fresh, AlertStatus.RESOLVED, now, actor, comment), "resolved"))
        if inhibiting:  # last, as in _open: only once nothing above can fail
            self._inhibitor.deactivate(row["id"])
        return fresh

    # ------------------------------------------------------------------ notifications

    def _muted_by(self, row: sqlite3.Row, now: int) -> str | None:
        """Why an open alert is not notified now (``silence:<id>``…), None when it is."""
        if row["status"] == "resolved":
            return None
        muting = self._muted(row, now)
        return muting[0] if muting is not None else None

    def _muted(self, row: sqlite3.Row, now: int) -> tuple[str, int | None] | None:
        """Why the alert is not notified now (and until when, if known), or None."""
        labels = match_labels(row)
        muting = self._silences.muting(labels, now)
        if muting is not None:
            return muting
        source = self._inhibitor.inhibited_by(row["id"], labels)
        return (f"inhibited:{source}", None) if source is not None else None

    def _payload(
        self,
        row: sqlite3.Row,
        kind: str,
        now: int,
        *,
        actor: str = "hub",
        comment: str = "",
        step: int = 0,
    ) -> dict[str, Any]:
        return {
            "kind": kind,
            "ts_ms": now,
            "actor": actor,
            "comment": comment,
            "escalation_step": step,
            "alert": alert_dict(row),
            "incident": incident_summary(self._conn, row["incident_id"]),
            "source_state": lifecycle.source_state(self._conn, row["district"], row["source"], now),
            "reading_received_ms": row["reading_received_ms"],
        }

    def _process_due(
        self,
        now: int,
        emitted: list[Emitted],
        alert_ids: Sequence[str] | None = None,
        limit: int = -1,
    ) -> int:
        """Notify (or mute, or drop) the due steps; returns how many there were."""
        steps = escalation.due(self._conn, now, alert_ids, limit)
        for step in steps:
            row = lifecycle.get_row(self._conn, step.alert_id)
            if row is None or row["status"] != "firing":
                escalation.cancel(self._conn, step)
                continue
            muted = self._muted(row, now)
            if muted is not None:
                _, until = muted
                recheck = now + MUTED_RECHECK_MS
                escalation.mute(self._conn, step, recheck if until is None else until)
                continue
            self._notify_step(row, step, now, emitted)
        return len(steps)

    def _notify_step(
        self, row: sqlite3.Row, step: DueStep, now: int, emitted: list[Emitted]
    ) -> None:
        kind = "escalation" if step.stage > 0 else "firing" if step.fired == 0 else "repeat"
        payload = self._payload(row, kind, now, step=step.stage)
        for receiver in step.receivers:
            notify_log.enqueue(
                self._conn,
                f"{row['id']}:{receiver}:{step.route}:{step.stage}:{step.fired}",
                receiver,
                row["id"],
                kind,
                payload,
                now,
                group_key=row["incident_id"] or "",
                group_ms=step.group_interval_ms,
            )
            self._conn.execute(
                "INSERT OR IGNORE INTO alert_receivers (alert_id, receiver, send_resolved,"
                " group_interval_ms) VALUES (?, ?, ?, ?)",
                (row["id"], receiver, int(step.send_resolved), step.group_interval_ms),
            )
        escalation.fired(self._conn, step, now)
        detail: dict[str, Any] = {
            "receivers": list(step.receivers),
            "kind": kind,
            "route": step.route,
        }
        if kind == "escalation" and step.fired == 0:
            detail["step"] = step.stage
            comment = f"not acknowledged: escalated to {', '.join(step.receivers)}"
            lifecycle.add_transition(
                self._conn, row["id"], now, "escalated", "hub", comment, detail
            )
            emitted.append((_event(row, AlertStatus.FIRING, now, "hub", comment), "escalated"))
        else:
            lifecycle.add_transition(self._conn, row["id"], now, "notified", "hub", "", detail)

    def _follow_up(
        self, row: sqlite3.Row, kind: str, transition_id: int, now: int, actor: str, comment: str
    ) -> None:
        """Tell the receivers already notified of this alert that it was acked / resolved."""
        receivers = self._conn.execute(
            "SELECT receiver, send_resolved, group_interval_ms FROM alert_receivers"
            " WHERE alert_id = ?",
            (row["id"],),
        ).fetchall()
        wanted = [r for r in receivers if kind != "resolved" or r["send_resolved"]]
        if not wanted:
            return
        payload = self._payload(row, kind, now, actor=actor, comment=comment)
        for r in wanted:
            notify_log.enqueue(
                self._conn,
                f"{row['id']}:{r['receiver']}:{kind}:{transition_id}",
                r["receiver"],
                row["id"],
                kind,
                payload,
                now,
                group_key=row["incident_id"] or "",
                group_ms=r["group_interval_ms"],
            )

    # ------------------------------------------------------------------ delivery

    async def run(self) -> None:
        """Deliver the outbox until cancelled: one worker per receiver, in order."""
        orphans = {
            r: n
            for r, n in notify_log.pending_by_receiver(self._conn).items()
            if r not in self._notifiers
        }
        for receiver, count in orphans.items():
            log.error(
                "notifications queued for a receiver that is no longer configured",
                receiver=receiver,
                pending=count,
            )
        async with asyncio.TaskGroup() as tg:
            for name, notifier in self._notifiers.items():
                worker = self._digests if getattr(notifier, "digest", False) else self._deliver
                tg.create_task(worker(name, notifier), name=f"hub.alerts.outbox.{name}")
            tg.create_task(self._checkpoints(), name="hub.alerts.checkpoint")

    async def _checkpoints(self) -> None:
        """Checkpoint the WAL from a thread instead of on commit, on the event loop.

        SQLite's automatic checkpoint runs inside whichever commit crosses 1000 WAL
        pages and fsyncs the database file there: about a third of an alert's cost
        in a storm, and a stall for everything else on the loop. Commits stay
        durable as before (WAL, synchronous=NORMAL); only the copy moves.
        """
        path = database_file(self._conn)
        if path is None:
            return
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        try:
            while True:
                await asyncio.sleep(CHECKPOINT_S)
                try:
                    await asyncio.to_thread(checkpoint, path)
                except sqlite3.Error as exc:  # busy or full disk: the next round retries
                    log.warning("alert database checkpoint failed", error=str(exc))
        finally:
            self._conn.execute("PRAGMA wal_autocheckpoint=1000")

    async def _deliver(self, name: str, notifier: Sender) -> None:
        """One receiver's queue, in order, with up to ``notifier.concurrency`` in flight.

        A sliding window, not stop-and-wait: a queued notification goes out as soon as
        a slot is free, and what has finished is settled together, one transaction
        per wake-up. After a retryable failure nothing new goes out until the window
        has drained; then the queue restarts from its head (the failed item, after
        its backoff), so a receiver never sees a resolution before its firing.
        """
        wake = self._wake[name]
        caught_up = self._caught_up[name] = asyncio.Event()
        window = max(1, int(getattr(notifier, "concurrency", 1)))
        inflight: dict[asyncio.Task[DeliveryError | None], OutboxItem] = {}
        finished: list[tuple[OutboxItem, DeliveryError | None]] = []
        issued = 0  # seq of the last item handed to the notifier
        halted = False
        loop = asyncio.get_running_loop()
        unsettled_since: float | None = None  # loop time of the oldest unsettled result

        def landed(task: asyncio.Task[DeliveryError | None]) -> None:
            item = inflight.pop(task)
            if not task.cancelled():  # cancelled (stopping): it stays queued
                finished.append((item, task.result()))
                wake.set()

        try:
            while True:
                wake.clear()
                settle_in: float | None = None
                if finished:
                    # Results are logged in batches (one commit for many), at most
                    # SETTLE_DELAY_S late; at once when the window is empty or one failed.
                    unsettled_since = unsettled_since or loop.time()
                    settle_in = unsettled_since + SETTLE_DELAY_S - loop.time()
                    if (
                        not inflight
                        or settle_in <= 0
                        or len(finished) >= SETTLE_BATCH
                        or any(error is not None for _, error in finished)
                    ):
                        halted |= self._settle_finished(name, finished)
                        unsettled_since = settle_in = None
                if halted and not inflight:
                    halted, issued = False, 0
                now = self._clock.now_ms()
                next_ms: int | None = None
                drained = halted  # nothing more can be handed over until it is woken
                if not halted and len(inflight) < window:
                    free = window - len(inflight)
                    items, next_ms = notify_log.due(self._conn, name, now, free, issued)
                    for item in items:
                        task = asyncio.create_task(self._send(notifier, item))
                        inflight[task] = item
                        task.add_done_callback(landed)
                        issued = item.seq
                    drained = len(items) < free
                if drained:
                    caught_up.set()
                timeout = IDLE_POLL_S
                if next_ms is not None:
                    timeout = min(IDLE_POLL_S, max(0.0, (next_ms - now) / 1000))
                if settle_in is not None:
                    timeout = min(timeout, max(0.0, settle_in))
                # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a
                # cancellation that lands just as the event is set (stop would hang).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await wake.wait()
        finally:
            del self._caught_up[name]
            caught_up.set()
            if inflight:
                # Stopping: sends already on the wire get a moment to be confirmed,
                # so they are logged now rather than sent again after the restart.
                await asyncio.wait(list(inflight), timeout=STOP_GRACE_S)
                for task in list(inflight):
                    task.cancel()
            if finished:
                self._settle_finished(name, finished)

    async def _digests(self, name: str, notifier: Sender) -> None:
        """A digest receiver's queue (people: webhook, Apprise, log): per incident, what
        is queued goes out as one notification, at most once per group_interval.

        Each notification in a digest is logged by its own id, so dedup across
        restarts works as for single notifications. The last digest time per
        incident is kept in memory: after a restart the next digest may come early.
        """
        wake = self._wake[name]
        last_sent = self._digest_sent.setdefault(name, {})
        while True:
            wake.clear()
            now = self._clock.now_ms()
            groups, next_ms = notify_log.digest_groups(self._conn, name, now, last_sent)
            for key, items in groups:
                error: DeliveryError | None = None
                for start in range(0, len(items), DIGEST_MAX):
                    chunk = items[start : start + DIGEST_MAX]
                    error = await self._send_one(notifier, _digest(name, chunk, now))
                    self._settle_finished(name, [(item, error) for item in chunk])
                    if error is not None:
                        break
                if error is None:  # a failed one waits for its backoff instead
                    last_sent[key] = self._clock.now_ms()
                await asyncio.sleep(0)  # a log or quick receiver never yields by itself
            if len(last_sent) > DIGEST_MEMORY:
                oldest = sorted(last_sent, key=last_sent.__getitem__)
                for key in oldest[: len(last_sent) - DIGEST_MEMORY]:
                    del last_sent[key]
            timeout = IDLE_POLL_S
            if next_ms is not None:
                timeout = min(IDLE_POLL_S, max(0.0, (next_ms - now) / 1000))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await wake.wait()
            # A storm wakes this worker for every chunk of rule events; batching
            # is the point here, so look at the queue at most this often.
            await asyncio.sleep(DIGEST_SCAN_S)

    async def _send(self, notifier: Sender, item: OutboxItem) -> DeliveryError | None:
        return await self._send_one(notifier, item.notification)

    async def _send_one(self, notifier: Sender, notification: Notification) -> DeliveryError | None:
        try:
            await notifier.send(notification)
        except DeliveryError as exc:
            return exc
        except (OSError, TimeoutError) as exc:
            return DeliveryError(repr(exc), retryable=True)
        except Exception as exc:  # a notifier bug: drop loudly rather than loop forever
            log.exception("notifier failed unexpectedly", receiver=notification.receiver)
            return DeliveryError(repr(exc), retryable=False)
        return None

    def _settle_finished(
        self, name: str, finished: list[tuple[OutboxItem, DeliveryError | None]]
    ) -> bool:
        """Log what finished in one transaction (and empty ``finished``); True when a
        retryable failure was among them."""
        now = self._clock.now_ms()
        done = list(finished)
        finished.clear()
        sent = [item for item, error in done if error is None]
        with transaction(self._conn):
            if sent:
                notify_log.done_many(self._conn, sent, now, "sent")
            for item, error in done:
                if error is not None:
                    self._settle_failure(name, item, error, now)
        if sent:
            metrics.NOTIFICATIONS.labels(name, "sent").inc(len(sent))
        return any(error is not None and error.retryable for _, error in done)

    def _settle_failure(self, name: str, item: OutboxItem, error: DeliveryError, now: int) -> None:
        n = item.notification
        if error.retryable:
            due = notify_log.retry_later(self._conn, item, now, str(error))
            metrics.NOTIFICATIONS.labels(name, "retry").inc()
            log.warning(
                "notification failed; will retry",
                receiver=name,
                notification_id=n.notification_id,
                attempt=n.attempt + 1,
                retry_in_s=(due - now) / 1000,
                error=str(error),
            )
        else:
            notify_log.done(self._conn, item, now, "failed", str(error))
            lifecycle.add_transition(
                self._conn,
                n.alert_id,
                now,
                "notified",
                "hub",
                f"delivery to {name} failed for good: {error}",
                {"receiver": name, "outcome": "failed", "notification_id": n.notification_id},
            )
            metrics.NOTIFICATIONS.labels(name, "failed").inc()
            log.error(
                "notification dropped: the receiver refused it and retrying will not help",
                receiver=name,
                notification_id=n.notification_id,
                alert_id=n.alert_id,
                error=str(error),
            )

    async def close(self) -> None:
        """Close every notifier (queued notifications stay in the outbox)."""
        for notifier in self._notifiers.values():
            try:
                await notifier.close()
            except Exception:  # closing is best effort; the process is stopping
                log.exception("closing a notifier failed")

    def pending_notifications(self) -> dict[str, int]:
        """Queued notifications per receiver (for health and tests)."""
        return notify_log.pending_by_receiver(self._conn)

    # ------------------------------------------------------------------ operator actions

    def _require(self, alert_id: str) -> sqlite3.Row:
        row = lifecycle.get_row(self._conn, alert_id)
        if row is None:
            raise NotFound(f"no alert {alert_id}")
        return row

    async def acknowledge(self, alert_id: str, actor: str, comment: str) -> AlertRecord:
        """Acknowledge a firing alert: stops its repeats and escalation."""
        now = self._clock.now_ms()
        emitted: list[Emitted] = []
        with transaction(self._conn):
            row = self._require(alert_id)
            if row["status"] != "firing":
                raise Conflict(
                    f"alert {alert_id} is {row['status']}; only firing alerts can be acknowledged"
                )
            self._conn.execute(
                "UPDATE alerts SET status = 'acknowledged', acknowledged_ms = ?, updated_ms = ?"
                " WHERE id = ?",
                (now, now, alert_id),
            )
            tid = lifecycle.add_transition(
                self._conn, alert_id, now, "acknowledged", actor, comment
            )
            escalation.stop(self._conn, alert_id)
            fresh = self._require(alert_id)
            self._follow_up(fresh, "acknowledged", tid, now, actor, comment)
            emitted.append(
                (_event(fresh, AlertStatus.ACKNOWLEDGED, now, actor, comment), "acknowledged")
            )
        self._publish(emitted)
        return to_record(fresh, muted_by=self._muted_by(fresh, now))

    async def resolve(
        self, alert_id: str, actor: str, comment: str, reason: str = DEFAULT_RESOLUTION
    ) -> AlertRecord:
        """Resolve an open alert by hand, saying why (RESOLUTION_REASONS).

        The rule engine is told (``rearm``): if the rule's condition still holds, the
        next evaluation that finds it so opens a new alert (``reopened_from`` this
        one), as ThingsBoard re-raises a cleared alarm; a resolution never silences
        a live condition. The timeline records whether it held.
        """
        if reason not in RESOLUTION_REASONS:
            raise ValueError(f"reason must be one of {', '.join(RESOLUTION_REASONS)}")
        now = self._clock.now_ms()
        emitted: list[Emitted] = []
        with transaction(self._conn):
            row = self._require(alert_id)
            if row["status"] == "resolved":
                raise Conflict(f"alert {alert_id} is already resolved")
            detail: dict[str, Any] = {"by_hand": True}
            rearm = self.rearm
            if rearm is not None and rearm(row["rule_id"], row["district"], row["source"]):
                detail["condition_holds"] = True
                detail["note"] = (
                    "the rule's condition still held: the alert comes back if it holds"
                    " at the next evaluation"
                )
            fresh = self._resolve(row, now, actor, comment, emitted, detail, reason)
        self._publish(emitted)
        return to_record(fresh)

    def resolved_by_hand(self, rule_id: str, district: str, source: str) -> bool:
        """True when the newest alert of this series was resolved by hand (not by its
        rule): after a restart, rule state saved before that resolution is re-armed."""
        row = self._conn.execute(
            "SELECT id, status FROM alerts WHERE rule_id = ? AND district = ? AND source = ?"
            " ORDER BY started_ms DESC LIMIT 1",
            (rule_id, district, source),
        ).fetchone()
        if row is None or row["status"] != "resolved":
            return False
        by = self._conn.execute(
            "SELECT detail FROM alert_transitions WHERE alert_id = ? AND status = 'resolved'"
            " ORDER BY id DESC LIMIT 1",
            (row["id"],),
        ).fetchone()
        return by is not None and bool(orjson.loads(by["detail"] or "{}").get("by_hand"))

    async def comment(self, alert_id: str, actor: str, comment: str) -> AlertRecord:
        """Add a comment to an alert's timeline."""
        now = self._clock.now_ms()
        with transaction(self._conn):
            row = self._require(alert_id)
            lifecycle.add_transition(self._conn, alert_id, now, "commented", actor, comment)
        self._publish([(_event(row, AlertStatus(row["status"]), now, actor, comment), "commented")])
        return to_record(row, muted_by=self._muted_by(row, now))

    # ------------------------------------------------------------------ reads

    def list_alerts(self, flt: AlertFilter, scope: Scope) -> list[AlertRecord]:
        """Alerts matching ``flt`` inside ``scope``, newest first."""
        where, args = _where(flt, scope)
        rows = self._conn.execute(
            f"SELECT * FROM alerts{where} ORDER BY started_ms DESC, id LIMIT ? OFFSET ?",  # noqa: S608  (placeholders only)
            (*args, max(0, flt.limit), max(0, flt.offset)),
        ).fetchall()
        now = self._clock.now_ms()
        return [to_record(r, muted_by=self._muted_by(r, now)) for r in rows]

    def get_alert(self, alert_id: str) -> AlertRecord | None:
        """One alert, or None."""
        row = lifecycle.get_row(self._conn, alert_id)
        if row is None:
            return None
        return to_record(row, muted_by=self._muted_by(row, self._clock.now_ms()))

    def silence_preview(self, matchers: Mapping[str, str], scope: Scope) -> list[AlertRecord]:
        """Open alerts inside ``scope`` that a silence with ``matchers`` would mute now
        (the same matching as :meth:`SilenceBook.muting`), worst and newest first."""
        where, args = _where(AlertFilter(state="active"), scope)
        rows = self._conn.execute(
            f"SELECT * FROM alerts{where} ORDER BY severity DESC, started_ms DESC, id",  # noqa: S608  (placeholders only)
            args,
        ).fetchall()
        now = self._clock.now_ms()
        return [
            to_record(r, muted_by=self._muted_by(r, now))
            for r in rows
            if matchers_match(matchers, match_labels(r))
        ]

    def timeline(self, alert_id: str) -> list[Transition]:
        """Transitions of one alert, oldest first."""
        return lifecycle.timeline(self._conn, alert_id)

    def list_silences(self, include_expired: bool) -> list[Silence]:
        """Silences, newest first."""
        return self._silences.list(self._clock.now_ms(), include_expired=include_expired)

    def create_silence(
        self, matchers: Mapping[str, str], starts_ms: int, ends_ms: int, actor: str, comment: str
    ) -> Silence:
        """Create a silence / maintenance window (raises ValueError on a bad one)."""
        silence = self._silences.create(
            matchers, starts_ms, ends_ms, actor, comment, self._clock.now_ms()
        )
        log.info("silence created", silence_id=silence.id, matchers=dict(matchers), actor=actor)
        return silence

    def expire_silence(self, silence_id: str, actor: str) -> Silence:
        """End a silence now; raises NotFound."""
        now = self._clock.now_ms()
        silence = self._silences.expire(silence_id, now)
        escalation.wake_muted(self._conn, now)
        log.info("silence expired", silence_id=silence_id, actor=actor)
        return silence

    def cap_xml(
        self, alert_id: str, message_index: int = -1, *, view: AlertView | None = None
    ) -> str:
        """The alert's latest (or ``message_index``-th) CAP 1.2 message, built from ``view``
        of the alert and its timeline when given; raises NotFound."""
        row = self._require(alert_id)
        record = to_record(row)
        timeline: Sequence[Transition] = self.timeline(alert_id)
        if view is not None:
            record, timeline = view(record, timeline)
        return render_cap(
            record,
            timeline,
            sender=self._sender,
            locate=self._locate,
            message_index=message_index,
        )

    def cap_feed(self, scope: Scope, base_url: str, *, view: AlertView | None = None) -> str:
        """Atom feed of current CAP messages: open alerts and those resolved in the last day."""
        now = self._clock.now_ms()
        where, args = _where(AlertFilter(), scope)
        joiner = " AND " if where else " WHERE "
        rows = self._conn.execute(
            f"SELECT * FROM alerts{where}{joiner}"  # noqa: S608  (placeholders only)
            "(status IN ('firing', 'acknowledged') OR resolved_ms >= ?)"
            " ORDER BY updated_ms DESC LIMIT 500",
            (*args, now - FEED_RESOLVED_MS),
        ).fetchall()
        entries = []
        for row in rows:
            record = to_record(row)
            timeline: Sequence[Transition] = self.timeline(row["id"])
            if view is not None:
                record, timeline = view(record, timeline)
            messages = cap_messages(record, timeline)
            if messages:
                entries.append((record, messages[-1]))
        return render_feed(entries, base_url=base_url, now_ms=now, sender=self._sender)

    def response_figures(self, flt: AlertFilter, scope: Scope) -> dict[str, Any]:
        """Time to acknowledge / resolve: count, median, p90; overall and per dimension."""
        where, args = _where(flt, scope)
        rows = self._conn.execute(f"SELECT * FROM alerts{where}", args).fetchall()  # noqa: S608
        return response_figures(to_record(r) for r in rows)

    def response_facts(self, start_ms: int, end_ms: int, scope: Scope) -> list[ResponseFact]:
        """The lifecycle of every alert inside ``scope`` opened in ``[start_ms, end_ms)``."""
        return self._facts.response_facts(start_ms, end_ms, scope)

    def maintenance_periods(self, start_ms: int, end_ms: int) -> list[MaintenancePeriod]:
        """Silences and maintenance window occurrences overlapping ``[start_ms, end_ms)``."""
        return self._facts.maintenance_periods(start_ms, end_ms)


# ---------------------------------------------------------------------- helpers


def _time_ordered_id(now_ms: int) -> str:
    """32 hex digits like a UUID's, but starting with the time: the indexes keyed by
    alert id (schedule, receivers, transitions, log) then grow at their end instead
    of dirtying a random page each per alert, which matters as the tables grow."""
    return f"{now_ms:012x}{secrets.token_hex(10)}"


def _digest(receiver: str, items: Sequence[OutboxItem], now: int) -> Notification:
    """One notification carrying ``items`` (one incident's): the item itself when alone."""
    if len(items) == 1:
        return items[0].notification
    ids = [item.notification.notification_id for item in items]
    last = items[-1].notification.payload
    return Notification(
        notification_id="digest-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32],
        receiver=receiver,
        alert_id=items[0].notification.alert_id,
        payload={
            "kind": "digest",
            "ts_ms": now,
            "incident": last.get("incident", {}),
            "count": len(items),
            "notifications": [
                {"notification_id": item.notification.notification_id, **item.notification.payload}
                for item in items
            ],
        },
        created_ms=min(item.notification.created_ms for item in items),
        attempt=max(item.notification.attempt for item in items),
    )


def _explanation_json(ev: RuleEvent) -> str:
    e = ev.explanation
    doc: dict[str, Any] = {
        "summary": e.summary,
        "threshold": e.threshold,
        "observed": dict(e.observed),
        "readings": [list(r) for r in e.readings],
        "rule_version": ev.rule_version,
        "ts_ms": ev.ts_ms,
    }
    if e.reports:  # citizen_reports rules: the request ids of the reports that decided it
        doc["reports"] = list(e.reports)
    return orjson.dumps(
        doc,
        default=str,
        option=orjson.OPT_NON_STR_KEYS,
    ).decode()


def _event(
    row: sqlite3.Row | Mapping[str, Any], status: AlertStatus, now: int, actor: str, comment: str
) -> AlertEvent:
    return AlertEvent(
        alert_id=row["id"],
        rule_id=row["rule_id"],
        status=status,
        severity=Severity(row["severity"]),
        district=row["district"],
        asset_type=row["asset_type"],
        source=row["source"],
        ts_ms=now,
        summary=row["summary"],
        labels=orjson.loads(row["labels"]),
        actor=actor,
        comment=comment,
        reopened_from=row["reopened_from"],
    )


def _where(flt: AlertFilter, scope: Scope) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if flt.state == "active":
        clauses.append(f"status IN ({', '.join('?' for _ in ACTIVE)})")
        args.extend(ACTIVE)
    elif flt.state:
        clauses.append("status = ?")
        args.append(flt.state)
    for column, value in (
        ("district", flt.district),
        ("asset_type", flt.asset_type),
        ("rule_id", flt.rule_id),
    ):
        if value:
            clauses.append(f"{column} = ?")
            args.append(value)
    if flt.severity:
        clauses.append("severity = ?")
        args.append(int(Severity.parse(flt.severity)))
    scope_clauses, scope_args = scope_clause(scope)
    clauses.extend(scope_clauses)
    args.extend(scope_args)
    return ((" WHERE " + " AND ".join(clauses)) if clauses else ""), args
