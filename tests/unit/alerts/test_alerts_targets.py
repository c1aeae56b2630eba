"""Response targets in the routing file, and maintenance window occurrences over a range."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from hub.alerts.routing import MaintenanceWindow, parse_routes
from hub.alerts.silences import window_active, window_spans

BASE = """\
receivers:
  - {name: m, mqtt: {}}
route:
  receivers: [m]
"""


def test_targets_per_severity_are_read_as_durations() -> None:
    """`targets.acknowledge` maps severities to durations in milliseconds."""
    model, problems, _ = parse_routes(
        BASE + "targets:\n  acknowledge: {critical: 15m, info: 4h}\n", "routes.yaml"
    )
    assert problems == []
    assert model is not None
    assert model.targets.acknowledge == {"critical": 900_000, "info": 14_400_000}


def test_a_bad_severity_or_duration_is_a_file_line_problem() -> None:
    """An unknown severity or a zero target names the routing file's line and key."""
    _, problems, _ = parse_routes(
        BASE + "targets:\n  acknowledge:\n    severe: 15m\n    warning: 0s\n", "routes.yaml"
    )
    text = [str(p) for p in problems]
    assert any(t.startswith("routes.yaml:7: targets.acknowledge.severe") for t in text), text
    assert any(
        t.startswith("routes.yaml:8: targets.acknowledge.warning") and "longer than 0" in t
        for t in text
    ), text


def test_window_spans_follow_local_time_over_a_dst_change() -> None:
    """A nightly 02:00-05:00 Paris window, every day of a week with the spring change:
    each occurrence is active inside and not outside, and the DST night is an hour short."""
    paris = ZoneInfo("Europe/Paris")
    w = MaintenanceWindow(
        name="nights",
        match={"district": "d07"},
        start=time(2),
        end=time(5),
        timezone="Europe/Paris",
    )
    lo = int(datetime(2026, 3, 27, tzinfo=paris).timestamp() * 1000)
    hi = int(datetime(2026, 3, 31, tzinfo=paris).timestamp() * 1000)
    spans = window_spans(w, lo, hi)
    assert len(spans) == 4
    assert [b - a for a, b in spans] == [3 * 3_600_000, 3 * 3_600_000, 2 * 3_600_000, 3 * 3_600_000]
    for a, b in spans:
        assert window_active(w, a)
        assert window_active(w, b - 1)
        assert not window_active(w, b)


def test_overnight_window_belongs_to_the_day_it_starts() -> None:
    """22:00-04:00 on Mondays only runs into Tuesday morning, not into Monday's."""
    w = MaintenanceWindow(
        name="mon", match={"district": "d01"}, start=time(22), end=time(4), days=["mon"]
    )
    lo = int(datetime(2026, 3, 2, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)  # a Monday
    spans = window_spans(w, lo, lo + 7 * 86_400_000)
    assert spans == [(lo + 22 * 3_600_000, lo + 28 * 3_600_000)]
