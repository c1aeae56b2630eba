"""Wires the alert manager to its notifiers (the two stage packages do not import
each other): loads the routing file, builds one notifier per receiver, and returns
the manager. Also ``check_routes`` for ``hub rules check`` and CI."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path

from hub.alerts.manager import AlertManager
from hub.alerts.routing import (
    DEFAULT_ROUTES,
    RoutePlan,
    RoutesFile,
    RoutesInvalid,
    line_of_path,
    load_routes,
    parse_routes,
    plan_routes,
)
from hub.clock import Clock
from hub.logging import get_logger
from hub.messages import AlertEvent, Severity
from hub.notifiers.apprise import bad_apprise_urls
from hub.notifiers.base import Notifier
from hub.notifiers.factory import NotifierConfigError, build_notifier
from hub.ports import RuleProblem
from hub.settings import ConfigError, Settings

log = get_logger(__name__)


def check_routes(path: str | Path) -> list[RuleProblem]:
    """Every problem of a routing file as ``file:line: key.path: message``; [] when valid."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        return [RuleProblem(str(file), 0, f"cannot read: {exc.strerror}")]
    model, problems, _ = parse_routes(text, str(file))
    if model is None:
        return problems
    for i, receiver in enumerate(model.receivers):
        if receiver.apprise is None:
            continue
        for j, url in enumerate(receiver.apprise.urls):
            if bad_apprise_urls([url]):
                loc: list[str | int] = ["receivers", i, "apprise", "urls", j]
                problems.append(
                    RuleProblem(
                        str(file),
                        line_of_path(file, loc),
                        f"receivers.{i}.apprise.urls.{j}: Apprise cannot parse this URL",
                    )
                )
    return problems


def routes_test(path: str | Path, labels: Mapping[str, str]) -> list[RoutePlan]:
    """Which routes an alert with ``labels`` would reach (like ``amtool config routes test``).

    ``labels`` holds the rule's labels plus any of district, asset_type, severity
    (default ``warning``), rule_id and source. Raises ConfigError on a broken file.
    """
    routes = load_routes_file(path)
    severity = Severity.parse(labels.get("severity", "warning"))
    return plan_routes(routes.route, {**labels, "severity": severity.label}, severity)


def load_routes_file(path: str | Path) -> RoutesFile:
    """The routing file, or the built-in MQTT-only routes when it does not exist.

    Raises ConfigError listing every problem when the file is invalid.
    """
    file = Path(path)
    if not file.exists():
        log.warning("no routing file; every alert goes to MQTT only", path=str(file))
        return DEFAULT_ROUTES
    problems = check_routes(file)
    if problems:
        raise ConfigError("\n".join(str(p) for p in problems))
    try:
        return load_routes(file)
    except RoutesInvalid as exc:
        raise ConfigError("\n".join(str(p) for p in exc.problems)) from exc


def build_notifiers(
    routes: RoutesFile,
    settings: Settings,
    *,
    clock: Clock,
    mqtt_url: str,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Notifier]:
    """One notifier per receiver of the routing file; raises ConfigError naming the receiver."""
    secret = settings.alerts.webhook_secret
    notifiers: dict[str, Notifier] = {}
    for receiver in routes.receivers:
        channel = getattr(receiver, receiver.kind)
        try:
            notifiers[receiver.name] = build_notifier(
                receiver.name,
                receiver.kind,
                channel.model_dump(),
                mqtt_url=mqtt_url,
                topic_prefix=settings.mqtt.topic_prefix,
                clock=clock,
                client_id=f"{settings.mqtt.client_id}-alerts-{receiver.name}",
                default_secret=secret.get_secret_value() if secret is not None else None,
                environ=environ,
            )
        except NotifierConfigError as exc:
            raise ConfigError(f"{settings.alerts.routes_path}: {exc}") from exc
    return notifiers


def build_alert_manager(
    settings: Settings,
    conn: sqlite3.Connection,
    *,
    clock: Clock,
    on_event: Callable[[AlertEvent], None],
    locate: Callable[[str], tuple[float, float] | None],
    mqtt_url: str,
    environ: Mapping[str, str] | None = None,
) -> AlertManager:
    """The alert manager with the routes of ``settings.alerts.routes_path`` and its notifiers."""
    routes = load_routes_file(settings.alerts.routes_path)
    notifiers = build_notifiers(routes, settings, clock=clock, mqtt_url=mqtt_url, environ=environ)
    return AlertManager(
        conn,
        routes,
        notifiers,
        clock=clock,
        on_event=on_event,
        locate=locate,
        sender=settings.alerts.sender,
    )
