"""The indicators of a running hub: definitions, store, live updater, queries, gauges.

The runtime hands each live batch to :meth:`Indicators.observe`, flushes at its
checkpoints and calls :meth:`Indicators.tick` with its timers; the API reads through
:attr:`Indicators.service` (``hub.ports.IndicatorPort``). Definition files are read
again when they change (the previous definitions stay while a file is broken), and
every change is recorded in the rule change log with its diff.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import metrics
from hub.clock import Clock
from hub.indicators.definitions import DefinitionSet, indicator_files, load_definitions
from hub.indicators.fleet import interval_ms_of
from hub.indicators.periods import DAY_MS, CityCalendar
from hub.indicators.service import IndicatorService, ResponseSource
from hub.indicators.sqlite_store import SqliteIndicatorStore
from hub.indicators.updater import IndicatorUpdater, Retention
from hub.logging import get_logger
from hub.messages import Reading, Rejection, StatusUpdate
from hub.packaged import rule_packs_dir
from hub.ports import UNRESTRICTED, DeviceFilter, DeviceRegistryPort
from hub.rules.loader import INDICATORS_DIR
from hub.settings import IndicatorsSettings

if TYPE_CHECKING:
    from hub.catalog import Catalog

log = get_logger(__name__)

#: How often the definition files are looked at for changes, the registry's
#: provisioned devices synced, and the headline gauges refreshed (at a flush) (ms).
RELOAD_EVERY_MS = 10_000
SYNC_EVERY_MS = 300_000
GAUGES_EVERY_MS = 10_000
#: Registry devices read per page when syncing.
SYNC_PAGE = 5000

#: Records a change of a definition file: (actor, ids, action, path, before, after).
RecordChange = Callable[[str, str, str, Path, str, str], None]


def definition_paths(configured: Sequence[str]) -> list[Path]:
    """The configured definition paths, or the shipped definitions (hub.packaged) when
    none exists."""
    paths = [Path(p) for p in configured]
    if any(p.exists() for p in paths):
        return [p for p in paths if p.exists()]
    packs = rule_packs_dir()
    shipped = packs / INDICATORS_DIR if packs is not None else None
    if shipped is not None and shipped.is_dir():
        log.warning(
            "no indicator definitions at the configured paths; using the shipped ones",
            configured=[str(p) for p in paths],
            shipped=str(shipped),
        )
        return [shipped]
    return paths


def _snapshot(files: Iterable[Path]) -> dict[Path, str]:
    out: dict[Path, str] = {}
    for f in files:
        try:
            out[f.resolve()] = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return out


class Indicators:
    """Indicators for the runtime and the API."""

    def __init__(
        self,
        settings: IndicatorsSettings,
        catalog: Catalog,
        state_db: Path,
        *,
        clock: Clock,
        responses: ResponseSource | None,
        registry: DeviceRegistryPort | None = None,
        record_change: RecordChange | None = None,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._clock = clock
        self._registry = registry
        self._record_change = record_change
        self._paths = definition_paths(settings.paths)
        loaded = load_definitions(self._paths, catalog)
        self.problems = list(loaded.problems)
        if loaded.problems:
            log.error(
                "indicator definitions with problems are not loaded",
                problems=[str(p) for p in loaded.problems],
            )
        self._texts = _snapshot(loaded.files)
        self.calendar = CityCalendar(settings.timezone)
        self.store = SqliteIndicatorStore(state_db)
        intervals = interval_ms_of(catalog.expected_interval_s)
        defs = list(loaded.definitions.values())
        self.updater = IndicatorUpdater(
            self.store,
            self.calendar,
            intervals=intervals,
            clock=clock,
            definitions=defs,
            maintenance=responses.maintenance_periods if responses is not None else None,
            retention=Retention(
                hours_ms=settings.hour_retention_days * DAY_MS,
                device_days_ms=settings.device_day_retention_days * DAY_MS,
            ),
            save_interval_ms=settings.save_interval_s * 1000,
        )
        self.service = IndicatorService(
            self.store,
            CityCalendar(settings.timezone),
            defs,
            intervals=intervals,
            clock=clock,
            responses=responses,
            devices=lambda: list(self.updater.devices.values()),
        )
        self._reload_ms = self._sync_ms = self._gauges_ms = 0
        log.info(
            "indicators loaded",
            definitions=len(defs),
            files=len(loaded.files),
            timezone=settings.timezone,
        )

    # ------------------------------------------------------------------ runtime hooks

    def observe(
        self,
        readings: Sequence[Reading],
        statuses: Sequence[StatusUpdate] = (),
        rejections: Sequence[Rejection] = (),
    ) -> None:
        """Count one live batch (memory only)."""
        self.updater.observe(readings, statuses, rejections)

    async def flush(self) -> None:
        """Write the roll-ups changed since the last flush (in a worker thread), then
        refresh the headline gauges."""
        await self.updater.flush()
        now = self._clock.now_ms()
        if now - self._gauges_ms >= GAUGES_EVERY_MS:
            self._gauges_ms = now
            self.update_gauges()

    def flush_now(self) -> None:
        """Write everything now, blocking (the hub is stopping)."""
        self.updater.flush_now(stopping=True)

    def tick(self, now_ms: int) -> None:
        """Timer work: definition files changed, registry devices."""
        if now_ms - self._reload_ms >= RELOAD_EVERY_MS:
            self._reload_ms = now_ms
            self.reload_if_changed()
        if self._registry is not None and now_ms - self._sync_ms >= SYNC_EVERY_MS:
            self._sync_ms = now_ms
            self.sync_registry()

    def sync_registry(self) -> None:
        """Provisioned devices count from their provisioning; deleted ones are retired."""
        if self._registry is None:
            return
        known: list[tuple[str, str, str, int | None]] = []
        offset = 0
        while True:
            page = self._registry.list_devices(
                DeviceFilter(limit=SYNC_PAGE, offset=offset), UNRESTRICTED
            )
            known.extend(
                (d.device_id, d.district, d.asset_type, d.created_ms if d.provisioned else None)
                for d in page
            )
            if len(page) < SYNC_PAGE:
                break
            offset += SYNC_PAGE
        self.updater.sync_devices(known)

    def update_gauges(self) -> None:
        """``hub_indicator{indicator, district}``: today's headline values so far."""
        try:
            values = self.service.headline(UNRESTRICTED)
        except Exception:  # a gauge must never stop the hub
            log.exception("headline indicators could not be computed")
            return
        metrics.INDICATOR.clear()
        for (indicator, district), value in values.items():
            metrics.INDICATOR.labels(indicator=indicator, district=district).set(value)

    def reload_if_changed(self) -> bool:
        """Read the definition files again if any changed; True when new ones are in use."""
        files, _ = indicator_files(self._paths)
        texts = _snapshot(files)
        if texts == self._texts:
            return False
        loaded = load_definitions(self._paths, self._catalog)
        if loaded.problems:
            if [str(p) for p in loaded.problems] != [str(p) for p in self.problems]:
                log.error(
                    "indicator definitions broken; the previous ones stay in use",
                    problems=[str(p) for p in loaded.problems],
                )
            self.problems = list(loaded.problems)
            return False
        self._record(self._texts, texts, loaded)
        self._texts = texts
        self.problems = []
        defs = list(loaded.definitions.values())
        self.updater.set_definitions(defs)
        self.service.set_definitions(defs)
        log.info("indicator definitions reloaded", definitions=len(defs))
        return True

    def _record(
        self, before: dict[Path, str], after: dict[Path, str], loaded: DefinitionSet
    ) -> None:
        if self._record_change is None:
            return
        old_versions = {d.id: d.version for d in self.service.loaded()}
        for path in sorted(set(before) | set(after)):
            a, b = before.get(path, ""), after.get(path, "")
            if a == b:
                continue
            in_file = {i for i, (file, _) in loaded.sources.items() if Path(file).resolve() == path}
            changed = sorted(
                i
                for i in in_file | {i for i in old_versions if i not in loaded.definitions}
                if old_versions.get(i)
                != (loaded.definitions[i].version if i in loaded.definitions else None)
            )
            self._record_change("file", ",".join(changed), "indicator-file-edit", path, a, b)

    def health(self) -> dict[str, Any]:
        """For GET /api/v1/health."""
        return {
            "definitions": len(self.service.loaded()),
            "problems": [str(p) for p in self.problems],
            "last_error": self.updater.last_error,
            "unsaved_after_crash_ms": list(self.updater.unsaved) if self.updater.unsaved else None,
        }

    def close(self) -> None:
        """Close the store's connections."""
        self.store.close()
