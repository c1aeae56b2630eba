"""The Hub: owns every task and wires the stages in the order data flows.

Read top to bottom, ``Hub.__aenter__`` is DESIGN.md's flow::

    broker -> ingest (MQTT session) -> decode -> journal (group commit) -> ack
           -> consumer "store": store sink (InfluxDB or embedded; the embedded store's by
                                default in the store writer process, hub.store.writer)
           -> consumer "live":  registry, dead letters, rule engine -> alert manager -> notifiers
    citizen reports (Open311 API) -> rule engine (citizen_reports rules) -> alert manager
    API + console read the registry, store, alerts, rules and reports.

Two journal consumers, not one per stage: the store may stall for minutes during
an InfluxDB outage, and that must not hold back alerts; the live stages are all
in-memory and fast, so they share one consumer, one decode per record, and one
checkpoint (taken right after rule state and registry are saved, so a restart
replays exactly what they had not yet persisted).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import sqlite3
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import uvicorn

from hub import metrics, records
from hub.api import audit
from hub.api.app import create_app
from hub.api.context import ApiContext
from hub.broker import EmbeddedBroker
from hub.catalog import Catalog, load_catalog
from hub.clock import Clock, SystemClock
from hub.datadir import make_private
from hub.events import EventBus
from hub.indicators.live import Indicators
from hub.ingest.dead_letters import DeadLetterStore
from hub.ingest.decode import Decoder
from hub.ingest.mqtt_source import MqttSource
from hub.ingest.topics import subscriptions
from hub.journal import Journal
from hub.listen import api_listener
from hub.logging import get_logger
from hub.messages import AlertEvent, RawMessage, Reading, Rejection, StatusUpdate
from hub.opendata.service import OpenData
from hub.opendata.state import SqliteOpenDataState
from hub.ports import HealthReport
from hub.redact import redact_url
from hub.registry.registry import Registry
from hub.reports import ReportService, open_reports
from hub.responders import build_alert_manager
from hub.retry import Backoff
from hub.rules.service import RuleService
from hub.settings import Settings
from hub.sqlite import STATE_DB, connect
from hub.store.base import TelemetryStore
from hub.store.factory import make_store
from hub.store.sink import StoreHealth, StoreSink, open_store, refusal
from hub.store.writer import StoreWriter, StoreWriterDied

log = get_logger(__name__)

#: Batches whose journal append is under way before ingest waits (back-pressure).
INGEST_PIPELINE_DEPTH = 8
#: Live-consumer checkpoint cadence: rule state and registry are saved this often.
#: A snapshot of 100k series costs ~1.4 s of CPU, so not much more often than this;
#: a crash replays at most this much journal through the (idempotent) live stages.
LIVE_CHECKPOINT_S = 15.0
#: A live checkpoint is built while evaluation goes on, so it is spread thin: steps
#: of this many rule series (or registry devices, registry.FLUSH_CHUNK) with this
#: pause after each, about 3 s for 10,000 devices. Taken all at once, its ~150 ms
#: of CPU queued up the alerts arriving meanwhile; spread, it stays within the
#: loop's idle time even in an alert storm. A stopping hub skips the pauses.
CHECKPOINT_CHUNK = 500
CHECKPOINT_PAUSE_S = 0.04
#: Timer cadence for `no_data`, `for:` completion, escalation and stale devices.
TICK_S = 1.0
#: The live stage is "behind" with this many journal bytes unread (~1,000 readings);
#: then the store consumer holds its write back for up to STORE_YIELD_S, filling a
#: bigger batch: its writes compete with the alert path for the one core, and a
#: bigger batch costs less per point. The journal keeps the readings meanwhile.
LIVE_BEHIND_BYTES = 256 * 1024
STORE_YIELD_S = 2.0
#: A store writer process that died is restarted after about half a second, doubling
#: up to 30 s (hub.retry); back to the start once one has run WRITER_STABLE_S (a crash
#: loop stays slow).
WRITER_RESTART = Backoff(first_s=0.5, max_s=30.0)
WRITER_STABLE_S = 60.0
#: Cadence of the event-loop lag probe (hub_event_loop_lag_seconds).
LOOP_LAG_PROBE_S = 0.1
#: How long a stopping API waits for the requests in progress before cancelling them.
API_STOP_S = 2
#: How often audit entries older than HUB_AUDIT__RETENTION_DAYS are deleted (ms).
AUDIT_PRUNE_EVERY_MS = 3_600_000
#: Cold start: how long the live stage waits for the store before it starts with
#: empty rule windows (alerts must not wait for an InfluxDB outage).
PRIME_STORE_WAIT_S = 10.0


class Hub:
    """The running hub: ``async with Hub(settings) as hub: await hub.serve_forever()``."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.events = EventBus()
        self.catalog: Catalog = load_catalog()
        self.mqtt_url = settings.mqtt.url
        self.api_url = ""
        self._stack = AsyncExitStack()
        self._broker_protocol: dict[str, str] = {}
        self._tasks: _TaskGroupOwner | None = None
        self._store_opened = asyncio.Event()
        self._stopping = asyncio.Event()  # set as the live stage stops: checkpoints hurry
        self._audit_key = b""  # set once the API (and the audit table) is up
        self._audit_pruned_ms = 0
        self._reports: ReportService | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Hub:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        s = self.settings
        data_dir = s.data_dir
        make_private(data_dir)
        # The API's address first: if it is taken, nothing else has been started.
        api_socket = api_listener(s.api.host, s.api.port)
        self._stack.callback(api_socket.close)

        # The broker: an external one, or the embedded default.
        if s.mqtt.embedded:
            broker = await self._stack.enter_async_context(EmbeddedBroker(s.mqtt, data_dir))
            self.mqtt_url = broker.url
            self._broker_protocol = {"protocol": broker.mqtt_protocol}

        # State: one SQLite file, one connection per component (sqlite3
        # connections must not be shared between threads or transactions).
        self.state_conn = self._connection(data_dir / STATE_DB)
        self.dead_letters = DeadLetterStore(
            self._connection(data_dir / STATE_DB), s.ingest.dead_letter_capacity
        )
        self.registry = Registry(
            self._connection(data_dir / STATE_DB),
            clock=self.clock,
            expected_interval_s=self.catalog.expected_interval_s,
            on_status_change=self.events.publish,
            flush_conn=self._connection(data_dir / STATE_DB),
        )
        self.rules = RuleService(
            s.rules,
            data_dir,
            clock=self.clock,
            expected_interval_s=self.catalog.expected_interval_s,
            device_labels=self.registry.labels,
            labels_version=lambda: self.registry.generation,
            catalog=self.catalog,
            fleet=self.registry,
        )
        self.alerts = build_alert_manager(
            s,
            self._connection(data_dir / STATE_DB),
            clock=self.clock,
            on_event=self._alert_event,
            locate=self.registry.location,
            mqtt_url=self.mqtt_url,
        )
        self._stack.push_async_callback(self.alerts.close)
        # An alert resolved by hand re-arms its rule series (the two stages meet here).
        self.alerts.rearm = self.rules.rearm
        self.indicators = Indicators(
            s.indicators,
            self.catalog,
            data_dir / STATE_DB,
            clock=self.clock,
            responses=self.alerts,
            registry=self.registry,
            record_change=self.rules.record_change,
        )
        self._stack.callback(self.indicators.close)
        # Citizen reports: kept in the state database, linked to the alerts, counted by
        # citizen_reports rules (their queue is drained by hub.reports.rules).
        self.reports = self._reports = open_reports(
            s.reports,
            self._connection(data_dir / STATE_DB),
            asset_types=self.catalog.asset_types(),
            clock=self.clock,
            alerts=self.alerts,
            devices=self.registry,
            devices_version=lambda: self.registry.generation,
        )

        # The journal sits between ingest and everything downstream.
        self.journal = Journal(data_dir / "journal", s.journal, clock=self.clock)
        await self._stack.enter_async_context(self.journal)
        # Consumers register before ingest starts, so none can miss a record.
        self._store_reader = self.journal.reader("store")
        self._live_reader = self.journal.reader("live")

        self.store: TelemetryStore = make_store(s, self.clock)
        self._stack.push_async_callback(self.store.close)
        # What health reports of the store: not writable until the store has answered
        # (the inline sink, or the store writer processes one after another, say so).
        self.store_health = StoreHealth()
        self.sink = StoreSink(self.store, s.influx, clock=self.clock, health=self.store_health)

        self.decoder = Decoder(s.ingest, s.mqtt.topic_prefix)
        self.source = MqttSource(
            s.mqtt.model_copy(update={"url": self.mqtt_url, **self._broker_protocol}),
            clock=self.clock,
            subscriptions=subscriptions(s.mqtt.topic_prefix),
        )
        await self._stack.enter_async_context(self.source)

        # Every long-running stage is a named task of one TaskGroup; if one dies,
        # the group cancels the others and the process stops (it is not healthy).
        self._tasks = await self._stack.enter_async_context(_TaskGroupOwner())
        tg = self._tasks
        self._ingest_queue: asyncio.Queue[tuple[asyncio.Task[int] | None, list[RawMessage]]] = (
            asyncio.Queue(INGEST_PIPELINE_DEPTH)
        )
        tg.create_task(self._ingest(), name="hub.ingest")
        tg.create_task(self._ack(), name="hub.ingest.ack")
        tg.create_task(self._store_consumer(), name="hub.store.sink")
        tg.create_task(self._live_consumer(), name="hub.live")
        tg.create_task(self._timers(), name="hub.timers")
        tg.create_task(self._report_consumer(), name="hub.reports.rules")
        tg.create_task(_watch_loop_lag(), name="hub.loop_lag")
        tg.create_task(self.alerts.run(), name="hub.alerts.outbox")
        if s.rules.watch:
            tg.create_task(self.rules.watch(), name="hub.rules.watch")
        await self._start_api(tg, api_socket)
        self._audit_start()
        log.info("hub started", mqtt=self.mqtt_url, api=self.api_url, data_dir=str(data_dir))

    def _connection(self, path: Path) -> sqlite3.Connection:
        conn = connect(path)
        self._stack.callback(conn.close)
        return conn

    async def _start_api(self, tg: _TaskGroupOwner, sock: socket.socket) -> None:
        opendata = None
        if self.settings.open_data.enabled:
            # The public tier: its publisher turns stored readings into released aggregates.
            opendata = OpenData(
                self.settings.open_data,
                self.catalog,
                self.registry,
                self.store,
                SqliteOpenDataState(self._connection(self.settings.data_dir / STATE_DB)),
                self.clock,
            )
            tg.create_task(opendata.publisher.run(), name="hub.opendata.publish")
        ctx = ApiContext(
            settings=self.settings,
            clock=self.clock,
            conn=self._connection(self.settings.data_dir / STATE_DB),
            registry=self.registry,
            store=self.store,
            alerts=self.alerts,
            rules=self.rules,
            dead_letters=self.dead_letters,
            health=self,
            events=self.events,
            catalog=self.catalog,
            reports=self.reports,
            indicators=self.indicators.service,
            opendata=opendata,
        )
        config = uvicorn.Config(
            create_app(ctx),
            host=self.settings.api.host,
            port=self.settings.api.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            # The API reads X-Forwarded-For itself, from HUB_API__TRUSTED_PROXIES only.
            proxy_headers=False,
            timeout_graceful_shutdown=API_STOP_S,
        )
        server = _Server(config)
        self._api_server = server
        serving = tg.create_task(server.serve(sockets=[sock]), name="hub.api")
        while not server.started:
            if self._tasks is not None and self._tasks.failed:
                raise RuntimeError(f"API could not start on {config.host}:{config.port}")
            await asyncio.sleep(0.01)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        self.api_url = f"http://{host}:{port}"

        async def stop_api() -> None:
            # Live streams (a console) end first; then the server stops with no
            # response left to wait for or to cancel, as fast as with nobody connected.
            self.events.close()
            server.should_exit = True
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(serving), API_STOP_S + 1)

        self._stack.push_async_callback(stop_api)

    async def serve_forever(self) -> None:
        """Run until cancelled, or until a stage dies (then raise its error)."""
        assert self._tasks is not None
        await self._tasks.wait_failed()

    # ------------------------------------------------------------------ ingest

    async def _ingest(self) -> None:
        """MQTT batches -> decode -> registry check -> journal append (group commit)
        -> queued for ack.

        The registry check runs here, before the journal, so that a refused message
        reaches no stage at all (store, registry, rules, alerts): only the dead letters.
        """
        unknown_reject = self.settings.ingest.unknown_devices == "reject"
        is_provisioned = self.registry.is_provisioned
        claim = self.registry.claim
        while True:
            batch = await self.source.next_batch()
            encoded: list[bytes] = []
            accepted = 0
            statuses = 0
            for raw in batch:
                decoded = self.decoder.decode(raw)
                for reading in decoded.readings:
                    device_id = reading.device_id
                    if unknown_reject and not is_provisioned(device_id):
                        encoded.append(records.encode(_unknown(raw, reading)))
                        continue
                    placed = claim(device_id, reading.district, reading.asset_type)
                    if placed is not None:
                        encoded.append(records.encode(_mismatch(raw, reading, placed)))
                        continue
                    encoded.append(records.encode(self.catalog.flag(reading)))
                    accepted += 1
                for st in decoded.statuses:
                    if unknown_reject and not is_provisioned(st.device_id):
                        encoded.append(records.encode(_unknown(raw, st)))
                        continue
                    placed = claim(st.device_id, st.district, st.asset_type)
                    if placed is not None:
                        encoded.append(records.encode(_mismatch(raw, st, placed)))
                        continue
                    encoded.append(records.encode(st))
                    statuses += 1
                encoded.extend(records.encode(rj) for rj in decoded.rejections)
            metrics.READINGS_ACCEPTED.inc(accepted)
            if statuses:
                metrics.STATUS_RECEIVED.inc(statuses)
            append = asyncio.create_task(self.journal.append(encoded)) if encoded else None
            await self._ingest_queue.put((append, batch))

    async def _ack(self) -> None:
        """Acknowledge batches to the broker in arrival order, once durable."""
        while True:
            append, batch = await self._ingest_queue.get()
            if append is not None:
                await append
            self.source.ack(batch)

    # ------------------------------------------------------------------ consumers

    async def _store_consumer(self) -> None:
        """Journal -> store, batched; waits (journal keeps the data) while the store is down."""
        await self._open_store()
        if self.settings.store.writer_in_process:
            await self._store_through_writer_process()
            return
        reader = self._store_reader
        async for blobs, end_offset in self._store_batches(reader):
            readings = [m for m in records.decode_all(blobs) if isinstance(m, Reading)]
            if readings:
                refused = await self.sink.write(readings)
                if refused:
                    now_ms = self.clock.now_ms()
                    self.dead_letters.add([refusal(r, why, now_ms) for r, why in refused])
            reader.commit(end_offset)

    async def _store_through_writer_process(self) -> None:
        """The same, with the writes in the store writer process (hub.store.writer),
        on another core; restarted, from the last batch it landed, if it dies."""
        restarts = 0  # in a row, without a child that ran WRITER_STABLE_S
        while True:
            # From the committed offset: what the last writer did not land goes again.
            reader = self._store_reader = self.journal.reader("store")

            def landed(end_offset: int, rejections: list[Rejection], r: Any = reader) -> None:
                if rejections:
                    self.dead_letters.add(rejections)
                r.commit(end_offset)

            writer = StoreWriter(
                self.settings, on_done=landed, health=self.store_health, clock=self.clock
            )
            started = self.clock.monotonic()
            try:
                async with writer:
                    await writer.feed(self._store_batches(reader))
            except (StoreWriterDied, OSError) as exc:  # died, or could not be started
                self.store_health.unavailable(str(exc), self.clock.now_ms())
                if self.clock.monotonic() - started > WRITER_STABLE_S:
                    restarts = 0
                delay = WRITER_RESTART.delay(restarts)
                restarts += 1
                # The exit code is the news; a traceback of ours would say nothing more.
                log.error(  # noqa: TRY400
                    "store writer process died; restarting it", error=str(exc), in_s=round(delay, 2)
                )
                await asyncio.sleep(delay)

    async def _store_batches(self, reader: Any) -> AsyncIterator[tuple[list[bytes], int]]:
        """The store consumer's records in batches, filled by size and age."""
        max_records = self.settings.influx.batch_size
        timeout = self.settings.influx.flush_interval_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            batch = await reader.read(max_records, timeout)
            if not batch.records:
                continue
            # Batched by size and age: a write per journal group commit (every few
            # ms) cost more CPU at 5,000 readings/s than everything else the hub
            # does with them; the store is read by people and dashboards, for whom
            # flush_interval_ms of delay is nothing. While the live stage is behind
            # (a storm beyond what the hub takes), up to STORE_YIELD_S.
            blobs, end_offset = list(batch.records), batch.end_offset
            live_unread = self.journal.head_offset - self._live_reader.position
            deadline = loop.time() + store_batch_age(timeout, live_unread)
            while len(blobs) < max_records and (left := deadline - loop.time()) > 0:
                more = await reader.read(max_records - len(blobs), left)
                if not more.records:  # the age limit, or the journal is closing
                    break
                blobs.extend(more.records)
                end_offset = more.end_offset
            yield blobs, end_offset

    async def _open_store(self) -> None:
        """Open the hub's store (for the API's queries; and its writes, inline), retrying
        while it is unavailable. With the store writer process, the store is writable
        once the child has opened its own, so this only reports the outage."""
        if not self.settings.store.writer_in_process:
            await self.sink.open()
        else:

            def unavailable(error: str) -> None:
                if self.store_health.unavailable(error, self.clock.now_ms()):
                    log.warning("store unavailable; readings wait in the journal", error=error)

            await open_store(self.store, unavailable)
        self._store_opened.set()

    async def _live_consumer(self) -> None:
        """Journal -> registry, dead letters, rules -> alerts; checkpointed with rule state."""
        reader = self._live_reader
        restored = self.rules.load_state()
        if restored is not None:
            log.info("rule state restored", journal_offset=restored)
            await self._rearm_resolved_by_hand()
        else:
            # No saved state: rebuild rule windows from the store first (bounded; the
            # journal holds what arrives meanwhile). See docs/rules.md, "Cold start".
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._store_opened.wait(), PRIME_STORE_WAIT_S)
            if self._store_opened.is_set():
                await self.rules.cold_start(self.store.history)
            else:
                log.warning("store not open; rule windows start empty")
        self._prime_reports()
        last_checkpoint = self.clock.monotonic()
        processed: int | None = None  # offset just past the last batch processed
        pending = False  # processed beyond the last checkpoint started
        persisting: asyncio.Task[None] | None = None
        try:
            while True:
                batch = await reader.read(5000, 0.5)
                if batch.records:
                    messages = records.decode_all(batch.records, self.clock.now_ms())
                    await self._live_batch(messages)
                    processed, pending = batch.end_offset, True
                if persisting is not None and persisting.done():
                    done, persisting = persisting, None
                    done.result()  # a failed checkpoint stops the stage (and the hub)
                if (
                    processed is not None
                    and pending
                    and persisting is None
                    and self.clock.monotonic() - last_checkpoint >= LIVE_CHECKPOINT_S
                ):
                    # Registry and rule state are captured here, at this offset;
                    # building, writing and fsyncing them run while readings go on
                    # being evaluated (both copy what changes before it is written),
                    # so a checkpoint does not delay the alerts that arrive during it.
                    self.registry.begin_flush()
                    snapshot = self.rules.begin_snapshot(CHECKPOINT_CHUNK)
                    persisting = asyncio.create_task(
                        self._persist_live(reader, snapshot, processed),
                        name="hub.live.checkpoint",
                    )
                    pending = False
                    last_checkpoint = self.clock.monotonic()
        finally:
            if persisting is not None:
                # Its older snapshot must not land after the one written below; it
                # finishes without its pauses now.
                self._stopping.set()
                try:
                    await asyncio.shield(persisting)
                except Exception as exc:  # the one below supersedes it: said, not raised
                    log.error(  # noqa: TRY400 (the error says it; the stop goes on)
                        "live checkpoint failed while stopping", error=_described(exc)
                    )
            # A clean stop saves what was processed, so the next start replays nothing.
            if processed is not None and (pending or persisting is not None):
                try:
                    self._checkpoint_live_now(reader, processed)
                except Exception as exc:  # the stop goes on; a restart replays (idempotent)
                    log.error(  # noqa: TRY400
                        "live checkpoint failed; the next start replays the journal since"
                        " the last one",
                        error=_described(exc),
                    )

    def _prime_reports(self) -> None:
        """Count the stored reports of the citizen_reports windows into the rules: reports
        do not pass through the journal, so the saved rule state may lack the newest."""
        window = self.rules.report_window_ms()
        if window > 0:
            self.rules.prime_reports(self.reports.since(self.clock.now_ms() - window))

    async def _report_consumer(self) -> None:
        """Citizen reports -> citizen_reports rules -> alert manager (a report is counted
        once it is stored and linked; the POST waits while this queue is full)."""
        queue = self.reports.to_rules
        while True:
            report = await queue.get()
            events = self.rules.observe_report(report)
            if events:
                await self.alerts.handle(events)

    def _alert_event(self, event: AlertEvent) -> None:
        """An alert changed: to the live stream, and reports link against fresh alerts."""
        self.events.publish(event)
        if self._reports is not None:
            self._reports.alerts_changed()

    async def _rearm_resolved_by_hand(self) -> None:
        """Re-arm the restored firing series whose newest alert was resolved by hand:
        resolved after this state was saved (a crash within a checkpoint's interval),
        so the saved series does not know it (docs/alerts.md, resolving by hand)."""
        for n, (rule_id, district, source) in enumerate(self.rules.firing(), start=1):
            if self.alerts.resolved_by_hand(rule_id, district, source):
                self.rules.rearm(rule_id, district, source)
            if n % CHECKPOINT_CHUNK == 0:
                await asyncio.sleep(0)  # two indexed lookups each: ingest goes on meanwhile

    async def _live_batch(self, messages: Sequence[object]) -> None:
        readings: list[Reading] = []
        statuses: list[StatusUpdate] = []
        rejections: list[Rejection] = []
        for m in messages:
            if isinstance(m, Reading):
                readings.append(m)
            elif isinstance(m, StatusUpdate):
                statuses.append(m)
            elif isinstance(m, Rejection):
                rejections.append(m)
        if statuses:
            self.registry.apply_statuses(statuses)
        if readings:
            self.registry.apply_readings(readings)
        if rejections:
            self.dead_letters.add(rejections)
        self.indicators.observe(readings, statuses, rejections)
        events = self.rules.evaluate_many(readings) if readings else []
        metrics.READINGS_EVALUATED.inc(len(readings))
        if events:
            await self.alerts.handle(events)

    async def _checkpoint_pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CHECKPOINT_PAUSE_S):
                await self._stopping.wait()

    async def _persist_live(
        self, reader: Any, snapshot: Generator[None, None, bytes], offset: int
    ) -> None:
        """Build the captured rule snapshot, make it and the registry durable, then
        commit the offset."""
        raw = await self.rules.snapshot(snapshot, pause=self._checkpoint_pause)
        await self.registry.flush_async(pause=self._checkpoint_pause)
        await self.indicators.flush()
        await self.rules.write_snapshot(raw, offset)
        reader.commit(offset)

    def _checkpoint_live_now(self, reader: Any, offset: int) -> None:
        """The same, blocking: for the clean stop, where the loop has nothing else to run."""
        self.registry.flush()
        self.indicators.flush_now()
        self.rules.save_state(offset)
        reader.commit(offset)

    async def _timers(self) -> None:
        """Timer-driven work: no_data and `for:` completion, escalation, stale devices."""
        while True:
            await asyncio.sleep(TICK_S)
            now = self.clock.now_ms()
            events = self.rules.tick(now)
            if events:
                await self.alerts.handle(events)
            await self.alerts.tick()
            self.registry.tick(now)
            self.indicators.tick(now)
            self._audit_housekeeping(now)

    def _audit_start(self) -> None:
        """The audit chain's key, and the retention setting in the log if it changed."""
        secret = self.settings.audit.chain_key
        self._audit_key = audit.chain_key(
            secret.get_secret_value() if secret is not None else None, self.settings.data_dir
        )
        audit.note_retention(
            self.state_conn,
            self._audit_key,
            self.clock.now_ms(),
            self.settings.audit.retention_days,
        )

    def _audit_housekeeping(self, now: int) -> None:
        """Delete audit entries past their retention (the deletion is audited), hourly."""
        if not self._audit_key or now - self._audit_pruned_ms < AUDIT_PRUNE_EVERY_MS:
            return
        self._audit_pruned_ms = now
        try:
            removed = audit.prune(
                self.state_conn, self._audit_key, now, self.settings.audit.retention_days
            )
        except sqlite3.Error:
            log.exception("old audit entries could not be deleted; will retry")
            return
        if removed:
            log.info("old audit entries deleted", entries=removed)
            self.reports.tick()

    # ------------------------------------------------------------------ health

    async def health(self) -> HealthReport:
        """Health for GET /api/v1/health: broker, store, journal, dead letters, rules."""
        store_ok = self.store_health.writable
        lags = self.journal.lags()
        problems = self.rules.problems()
        tasks_ok = self._tasks is not None and not self._tasks.failed
        checks: dict[str, Any] = {
            "broker": {"connected": self.source.connected, "url": redact_url(self.mqtt_url)},
            "store": {"backend": self.store.name, **self.store_health.report()},
            "journal": {
                "bytes": self.journal.bytes_on_disk,
                "full": self.journal.is_full,
                "lag_bytes": self.journal.unread(),
                "uncommitted_bytes": lags,
            },
            "dead_letters": self.dead_letters.counts_by_reason(),
            "rules": {"problems": [str(p) for p in problems]},
            "indicators": self.indicators.health(),
            "tasks": {"running": tasks_ok},
        }
        ready = tasks_ok and self.source.connected and not self.journal.is_full
        ok = ready and store_ok
        return HealthReport(ok=ok, ready=ready, checks=checks)


# ---------------------------------------------------------------------- helpers


class _TaskGroupOwner:
    """Owns the stage tasks: cancels them all when the hub stops; a dying stage fails the hub.

    Not a bare ``asyncio.TaskGroup`` because the group must outlive ``__aenter__``
    (the hub is itself an async context manager) and expose its failure to health.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failed = asyncio.Event()
        self.error: BaseException | None = None

    async def __aenter__(self) -> _TaskGroupOwner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def create_task(self, coro: Any, *, name: str) -> asyncio.Task[Any]:
        """Start a named stage task; its failure fails the hub."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("stage died", task=task.get_name(), error=_described(exc), exc_info=exc)
            self.error = exc
            self._failed.set()
        elif not self._failed.is_set() and task.get_name() != "hub.api":
            self.error = RuntimeError(f"stage {task.get_name()} stopped")
            self._failed.set()

    @property
    def failed(self) -> bool:
        """True once any stage has died."""
        return self._failed.is_set()

    async def wait_failed(self) -> None:
        """Return never, unless a stage dies: then raise its error."""
        await self._failed.wait()
        assert self.error is not None
        raise self.error


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the hub owns the process's signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:
        return


async def _watch_loop_lag() -> None:
    """Observe how late a short timer fires: every stage shares this one loop, so its
    lag is added to every reading's and every alert's latency (and shows stalls)."""
    loop = asyncio.get_running_loop()
    while True:
        began = loop.time()
        await asyncio.sleep(LOOP_LAG_PROBE_S)
        metrics.EVENT_LOOP_LAG_SECONDS.observe(max(0.0, loop.time() - began - LOOP_LAG_PROBE_S))


def store_batch_age(flush_interval_s: float, live_unread_bytes: int) -> float:
    """How long the store consumer fills a batch before writing it: the configured
    flush interval, or STORE_YIELD_S while the live stage (rules, alerts) has more
    than LIVE_BEHIND_BYTES of the journal left to read."""
    if live_unread_bytes > LIVE_BEHIND_BYTES:
        return max(flush_interval_s, STORE_YIELD_S)
    return flush_interval_s


def _unknown(raw: RawMessage, message: Reading | StatusUpdate) -> Rejection:
    return Rejection(
        topic=raw.topic,
        reason="unknown_device",
        detail=(
            f"device {message.device_id!r} is not provisioned (HUB_INGEST__UNKNOWN_DEVICES=reject)"
        ),
        payload=raw.payload[:1024],
        received_ms=raw.received_ms,
        device_id=message.device_id,
        district=message.district,
    )


def _mismatch(
    raw: RawMessage, message: Reading | StatusUpdate, placed: tuple[str, str]
) -> Rejection:
    """The dead letter of a message whose topic puts its device somewhere the registry
    does not. It is kept under the district the device is registered in: the topic's
    district is the one the message claimed, not one entitled to see the device."""
    district, asset_type = placed
    return Rejection(
        topic=raw.topic,
        reason="device_mismatch",
        detail=(
            f"device {message.device_id!r} is registered as {district}/{asset_type}, not"
            f" {message.district}/{message.asset_type} as its topic says (re-provision it"
            " to move it: docs/devices.md)"
        ),
        payload=raw.payload[:1024],
        received_ms=raw.received_ms,
        device_id=message.device_id,
        district=district,
    )


def _described(exc: BaseException) -> str:
    """An error for the log: its type and its message (an OSError's message names its
    files, which its repr leaves out)."""
    return f"{type(exc).__name__}: {exc}"


def _tune_gc() -> None:
    """Fewer, shorter garbage collections once started (found with bench/alerts.py).

    At thousands of readings/s the default gen-0 threshold (700) promotes batches
    that live a few milliseconds into the old generation, which then triggers a
    full collection every 1-2 s taking 100-200 ms: the worst stalls of alert
    latency. What start-up built lives as long as the process, so it is frozen
    out of the collector's scans.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 10)


async def run_forever(settings: Settings) -> int:
    """`hub run`: run until SIGINT/SIGTERM; exit 0 on a clean stop, 1 if a stage died."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Hub(settings) as hub:
            _tune_gc()
            print(
                f"hub: API and console at {hub.api_url}/  broker {redact_url(hub.mqtt_url)}",
                flush=True,
            )
            serving = asyncio.create_task(hub.serve_forever())
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (serving, stopping):
                task.cancel()
            if serving in done and serving.exception() is not None:
                died = serving.exception()
                assert died is not None
                log.error("hub stopped because a stage died", error=_described(died))
                return 1
    except OSError as exc:
        # A start-up problem (port in use...) is the operator's to fix: no traceback.
        log.error("hub could not start", error=str(exc))  # noqa: TRY400
        print(f"hub: {exc}", flush=True)
        return 1
    log.info("hub stopped cleanly")
    return 0
