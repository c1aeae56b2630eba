"""``hub indicators report`` and ``hub indicators rebuild`` (CONTRACT §4), on the state
database under ``HUB_DATA_DIR``, with or without a running hub."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hub.clock import Clock, SystemClock
from hub.durations import parse_instant_ms
from hub.indicators.periods import LATEST_MS
from hub.settings import Settings

if TYPE_CHECKING:
    from hub.alerts.facts import AlertFacts
    from hub.catalog import Catalog
    from hub.indicators.definitions import IndicatorDefinition
    from hub.indicators.service import IndicatorService
    from hub.indicators.sqlite_store import SqliteIndicatorStore


@dataclass
class Offline:
    """The indicators of a hub's data dir, outside the hub."""

    service: IndicatorService
    store: SqliteIndicatorStore
    facts: AlertFacts
    catalog: Catalog
    definitions: list[IndicatorDefinition]
    conn: sqlite3.Connection


@contextlib.contextmanager
def open_offline(settings: Settings, clock: Clock, *, create: bool = False) -> Iterator[Offline]:
    """The indicator service over the data dir's state database (made when ``create``),
    with the alert facts read from its alert tables and the routing file's targets and
    maintenance windows."""
    from hub.alerts.db import migrate_alerts
    from hub.alerts.facts import AlertFacts
    from hub.alerts.routing import DEFAULT_ROUTES, RoutesInvalid, load_routes
    from hub.alerts.silences import SilenceBook
    from hub.catalog import load_catalog
    from hub.indicators.definitions import load_definitions
    from hub.indicators.fleet import interval_ms_of
    from hub.indicators.live import definition_paths
    from hub.indicators.periods import CityCalendar
    from hub.indicators.service import IndicatorService
    from hub.indicators.sqlite_store import SqliteIndicatorStore
    from hub.sqlite import STATE_DB, connect

    db = settings.data_dir / STATE_DB
    if not db.exists() and not create:
        raise LookupError(f"no hub data at {db} (HUB_DATA_DIR)")
    catalog = load_catalog()
    loaded = load_definitions(definition_paths(settings.indicators.paths), catalog)
    if loaded.problems:
        raise ValueError("\n".join(str(p) for p in loaded.problems))
    routes_path = Path(settings.alerts.routes_path)
    try:
        routes = load_routes(routes_path) if routes_path.exists() else DEFAULT_ROUTES
    except RoutesInvalid as exc:
        raise ValueError("\n".join(str(p) for p in exc.problems)) from exc
    conn = connect(db)
    store = SqliteIndicatorStore(db)
    try:
        migrate_alerts(conn)
        facts = AlertFacts(conn, routes, clock, SilenceBook(conn, routes.maintenance))
        defs = list(loaded.definitions.values())
        service = IndicatorService(
            store,
            CityCalendar(settings.indicators.timezone),
            defs,
            intervals=interval_ms_of(catalog.expected_interval_s),
            clock=clock,
            responses=facts,
            devices=store.devices,
        )
        yield Offline(service, store, facts, catalog, defs, conn)
    finally:
        store.close()
        conn.close()


def indicators_command(settings: Settings, args: argparse.Namespace) -> int:
    """Dispatch ``hub indicators …``."""
    clock = SystemClock()
    now = clock.now_ms()
    try:
        start_ms = parse_instant_ms(args.start, now)
        end_ms = parse_instant_ms(args.end, now) if args.end is not None else now
    except ValueError as exc:
        print(f"hub indicators {args.indicators_command}: {exc}", file=sys.stderr)
        return 2
    if end_ms <= start_ms:
        print(
            f"hub indicators {args.indicators_command}: --end must be after --start",
            file=sys.stderr,
        )
        return 2
    if start_ms < 0 or end_ms > LATEST_MS:
        print(
            f"hub indicators {args.indicators_command}: --start and --end must be between"
            " 1970 and 2200",
            file=sys.stderr,
        )
        return 2
    try:
        if args.indicators_command == "report":
            return _report(settings, args, clock, start_ms, end_ms)
        return asyncio.run(_rebuild(settings, clock, start_ms, end_ms))
    except (LookupError, ValueError) as exc:
        print(f"hub indicators {args.indicators_command}: {exc}", file=sys.stderr)
        return 1


def _report(
    settings: Settings, args: argparse.Namespace, clock: Clock, start_ms: int, end_ms: int
) -> int:
    from hub.indicators.report import build_report, write_csv, write_html

    out: Path = args.out
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".html", ".htm"):
        print("hub indicators report: --out must end in .csv or .html", file=sys.stderr)
        return 2
    with open_offline(settings, clock) as offline:
        report = build_report(
            offline.service,
            args.period,
            start_ms,
            end_ms,
            district=args.district,
            now_ms=clock.now_ms(),
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as f:
        if suffix == ".csv":
            write_csv(report, f)
        else:
            write_html(report, f)
    areas = len([a for a in report.areas if a.district])
    print(
        f"{out}: {len(report.definitions)} indicators, {len(report.periods)} {args.period}(s),"
        f" {areas} district(s)"
    )
    return 0


async def _rebuild(settings: Settings, clock: Clock, start_ms: int, end_ms: int) -> int:
    from hub.indicators.fleet import interval_ms_of
    from hub.indicators.periods import CityCalendar
    from hub.indicators.rebuild import rebuild, rebuild_end
    from hub.indicators.updater import DomainPlan
    from hub.store.base import StoreUnavailable
    from hub.store.factory import make_store

    with open_offline(settings, clock, create=True) as offline:
        store = offline.store
        calendar = CityCalendar(settings.indicators.timezone)
        now = clock.now_ms()
        end, clamped = rebuild_end(store, calendar, end_ms, now)
        if clamped:
            print(
                "note: the hub is running; the hours it keeps in memory are left to it"
                f" (rebuilding up to {end} ms)",
                file=sys.stderr,
            )
        if end <= start_ms:
            print("hub indicators rebuild: nothing to rebuild in that range", file=sys.stderr)
            return 1
        telemetry = make_store(settings, clock)
        try:
            await telemetry.open()
        except StoreUnavailable as exc:
            print(f"hub indicators rebuild: store unavailable: {exc}", file=sys.stderr)
            return 1
        try:
            done = await rebuild(
                store,
                telemetry.history(start_ms, end),
                calendar,
                intervals=interval_ms_of(offline.catalog.expected_interval_s),
                plan=DomainPlan.of(offline.definitions),
                maintenance=offline.facts.maintenance_periods(start_ms - 86_400_000, end),
                start_ms=start_ms,
                end_ms=end,
                now_ms=now,
            )
        finally:
            await telemetry.close()
    print(
        f"rebuilt {done.hours} device-hours of {done.devices} devices from {done.readings}"
        f" stored readings, {done.start_ms} to {done.end_ms} ms"
    )
    return 0
