"""``hub indicators report``: the indicator report per district, as HTML or CSV.

The HTML report is one self-contained page a person reads (no script, no remote
file): for the city and then each district, a summary of the last period with the
change since the period before and the target, a chart and a table of every
indicator over the periods asked, the devices that pulled the district's data
quality down in the last period, and at the end what each indicator means and how
it is computed. Charts are SVG drawn by pygal; the page is a Jinja2 template with
autoescaping. The CSV has one row per indicator, period and district (the city as a
whole has an empty district).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pygal
from jinja2 import Environment, select_autoescape
from markupsafe import Markup
from pygal.etree import etree
from pygal.style import Style

from hub.indicators.definitions import IndicatorDefinition
from hub.indicators.periods import Period
from hub.indicators.service import IndicatorService
from hub.ports import UNRESTRICTED, DeviceFigure, IndicatorPoint, IndicatorQuery, Scope

#: Devices listed per district and indicator as pulling it down.
WORST_DEVICES = 10
#: Indicators whose worst devices the report lists.
DRILL_DOWN = ("data_completeness_pct", "device_availability_pct")
CITY = ""


@dataclass(slots=True)
class Row:
    """One indicator in one area over the periods of the report."""

    definition: IndicatorDefinition
    points: list[IndicatorPoint | None]  # per period of the report, None: no value
    previous: IndicatorPoint | None  # the period before the first

    @property
    def last(self) -> IndicatorPoint | None:
        """The value of the last period."""
        return self.points[-1] if self.points else None

    @property
    def before_last(self) -> IndicatorPoint | None:
        """The value of the period before the last (or before the report)."""
        return self.points[-2] if len(self.points) > 1 else self.previous

    def change(self) -> float | None:
        """Last value minus the value before it."""
        a, b = self.last, self.before_last
        if a is None or b is None or a.value is None or b.value is None:
            return None
        return a.value - b.value

    def verdict(self) -> str:
        """``better``, ``worse`` or ``same`` since the period before."""
        delta = self.change()
        if delta is None or abs(delta) < 1e-9:
            return "same"
        up_is_good = self.definition.direction == "higher_is_better"
        return "better" if (delta > 0) == up_is_good else "worse"

    def meets_target(self) -> bool | None:
        """Whether the last value meets the target (None: no target or no value)."""
        p, target = self.last, self.definition.target
        if p is None or p.value is None or target is None:
            return None
        if self.definition.direction == "higher_is_better":
            return p.value >= target
        return p.value <= target


@dataclass(slots=True)
class Area:
    """The city (``district`` empty) or one district."""

    district: str
    rows: list[Row] = field(default_factory=list)
    worst: dict[str, list[DeviceFigure]] = field(default_factory=dict)
    #: Readings rejected in the last period, by reason (most first).
    rejected: list[tuple[str, int]] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    """Everything the report shows."""

    period: Period
    periods: list[tuple[int, int]]
    labels: list[str]
    timezone: str
    generated_ms: int
    definitions: list[IndicatorDefinition]
    areas: list[Area]
    district: str | None = None


def build_report(
    service: IndicatorService,
    period: Period,
    start_ms: int,
    end_ms: int,
    *,
    district: str | None = None,
    scope: Scope = UNRESTRICTED,
    now_ms: int,
) -> Report:
    """Collect the values of every loaded indicator for the city and each district."""
    cal = service.calendar
    periods = cal.periods(period, start_ms, end_ms)
    if not periods:
        raise ValueError("the range holds no period")
    before = cal.periods(period, periods[0][0] - 1, periods[0][0])
    first = before[0][0] if before else periods[0][0]
    starts = [p[0] for p in periods]
    definitions = service.loaded()
    areas: dict[str, Area] = {}
    if district is None:
        areas[CITY] = Area(CITY)
    for d in definitions:
        groups = ["city", "district"] if district is None else ["district"]
        for by in groups:
            q = IndicatorQuery(d.id, period, first, periods[-1][1], district=district, by=by)  # type: ignore[arg-type]
            found: dict[str, dict[int, IndicatorPoint]] = {}
            for p in service.series(q, scope):
                key = CITY if by == "city" else (p.district or CITY)
                found.setdefault(key, {})[p.period_start_ms] = p
            for key, by_start in found.items():
                area = areas.setdefault(key, Area(key))
                area.rows.append(
                    Row(
                        d,
                        [by_start.get(s) for s in starts],
                        by_start.get(first) if before else None,
                    )
                )
    for key, area in areas.items():
        if not key:
            continue
        for ind in DRILL_DOWN:
            d2 = next((d for d in definitions if d.id == ind), None)
            if d2 is None:
                continue
            q = IndicatorQuery(ind, period, periods[-1][0], periods[-1][1], district=key)
            worst = [f for f in service.devices(q, scope, WORST_DEVICES) if f.value is not None]
            if worst:
                area.worst[ind] = worst
    rejected = service.rejections(periods[-1][0], periods[-1][1], scope)
    for key, area in areas.items():
        by_reason = rejected.get(key, {}) if key else _sum_reasons(rejected.values())
        area.rejected = sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
    ordered = [areas[k] for k in sorted(areas)]
    for area in ordered:
        area.rows.sort(key=lambda r: (not r.definition.headline, definitions.index(r.definition)))
    return Report(
        period=period,
        periods=periods,
        labels=[cal.label(period, s) for s in starts],
        timezone=cal.zone_name,
        generated_ms=now_ms,
        definitions=definitions,
        areas=ordered,
        district=district,
    )


def _sum_reasons(groups: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for g in groups:
        for reason, n in g.items():
            out[reason] = out.get(reason, 0) + n
    return out


# ---------------------------------------------------------------------- CSV


def write_csv(report: Report, out: IO[str]) -> None:
    """One row per indicator, period and area (the city: empty district)."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        (
            "indicator",
            "title",
            "unit",
            "period",
            "period_start_ms",
            "district",
            "value",
            "numerator",
            "denominator",
            "target",
            "direction",
            "meets_target",
        )
    )
    for area in report.areas:
        for row in area.rows:
            d = row.definition
            for label, (start, _), p in zip(report.labels, report.periods, row.points, strict=True):
                value = p.value if p is not None else None
                meets = None
                if value is not None and d.target is not None:
                    meets = (
                        value >= d.target
                        if d.direction == "higher_is_better"
                        else value <= d.target
                    )
                w.writerow(
                    _blank(
                        (
                            d.id,
                            d.title,
                            d.unit,
                            label,
                            start,
                            area.district,
                            value,
                            p.numerator if p is not None else None,
                            p.denominator if p is not None else None,
                            d.target,
                            d.direction,
                            meets,
                        )
                    )
                )


def _blank(values: Sequence[object]) -> list[object]:
    return ["" if v is None else str(v).lower() if isinstance(v, bool) else v for v in values]


# ---------------------------------------------------------------------- HTML


def fmt(value: float | None, unit: str = "") -> str:
    """A value as people read it: 3 significant digits at most, with its unit."""
    if value is None:
        return "–"
    if abs(value) >= 100 or value == int(value):
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip() if unit and unit != "%" else f"{text}{unit}"


_STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#333",
    foreground_strong="#111",
    foreground_subtle="#999",
    colors=("#1f6feb", "#d1242f"),
    font_family="system-ui, sans-serif",
)


def chart(row: Row, labels: Sequence[str]) -> Markup:
    """The indicator over the periods, with its target, as an inline SVG."""
    d = row.definition
    line = pygal.Line(
        style=_STYLE,
        width=640,
        height=220,
        show_legend=d.target is not None,
        legend_at_bottom=True,
        x_label_rotation=30 if len(labels) > 8 else 0,
        show_minor_x_labels=len(labels) <= 16,
        js=[],  # no script from anywhere: the report is read offline, as a file
        disable_xml_declaration=True,
        explicit_size=True,
        print_values=False,
        dots_size=3,
        include_x_axis=False,
    )
    line.x_labels = list(labels)
    line.x_labels_major = list(labels)[:: max(1, len(labels) // 8)]
    line.add(d.title, [p.value if p is not None else None for p in row.points])
    if d.target is not None:
        line.add(
            f"target {fmt(d.target, d.unit)}",
            [d.target] * len(labels),
            show_dots=False,
            stroke_style={"dasharray": "6,4"},
        )
    tree = line.render_tree()
    # pygal writes its config for its (optional) tooltip script into a <script>: the
    # report has no script at all, so that goes; the tables below carry the values.
    for parent in list(tree.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    svg = etree.tostring(tree, encoding="unicode")
    return Markup(svg)  # noqa: S704  (pygal's SVG of our own labels and numbers)


#: The page (Jinja2, autoescaped), beside this module so it ships with the package.
TEMPLATE = Path(__file__).resolve().parent / "report.html"


def write_html(report: Report, out: IO[str]) -> None:
    """The report as one self-contained HTML page."""
    env = Environment(autoescape=select_autoescape(default=True), trim_blocks=True)
    template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    what = f"district {report.district}" if report.district else "the city"
    title = f"Indicators of {what}, {report.labels[0]} to {report.labels[-1]}"
    generated = datetime.fromtimestamp(report.generated_ms / 1000, tz=UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    out.write(
        template.render(
            title=title,
            labels=report.labels,
            period=report.period,
            timezone=report.timezone,
            generated=generated,
            areas=report.areas,
            definitions=report.definitions,
            titles={d.id: d.title for d in report.definitions},
            units={d.id: d.unit for d in report.definitions},
            fmt=fmt,
            chart=chart,
        )
    )
