"""The OData subset of the SensorThings API: what parses, what is a clear 400, and that an
error never repeats what the client wrote."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.opendata.odata import (
    Comparison,
    Kind,
    QueryError,
    interval_holds,
    matches,
    parse_filter,
    parse_options,
)

PROPS: dict[str, Kind] = {
    "phenomenonTime": "time",
    "result": "result",
    "name": "string",
    "@iot.id": "string",
    "Datastream/@iot.id": "string",
}
T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z


def parse(text: str) -> list[Comparison]:
    return list(parse_filter(text, PROPS, "Observations").comparisons)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("result gt 3", [Comparison("result", "gt", 3.0)]),
        ("3 lt result", [Comparison("result", "gt", 3.0)]),  # a literal on the left turns
        ("result le -1.5e2", [Comparison("result", "le", -150.0)]),
        ("result eq true", [Comparison("result", "eq", True)]),
        ("name eq 'it''s'", [Comparison("name", "eq", "it's")]),
        ("phenomenonTime ge 2025-11-24T16:00:00Z", [Comparison("phenomenonTime", "ge", T0)]),
        (
            "phenomenonTime lt 2025-11-24T18:00:00.500+02:00",
            [Comparison("phenomenonTime", "lt", T0 + 500)],
        ),
        (
            "(phenomenonTime gt 2025-11-24T16:00Z and result ne 0) and name eq 'x'",
            [
                Comparison("phenomenonTime", "gt", T0),
                Comparison("result", "ne", 0.0),
                Comparison("name", "eq", "x"),
            ],
        ),
        (
            "Datastream/@iot.id eq 'fg-1:water_level_m'",
            [Comparison("Datastream/@iot.id", "eq", "fg-1:water_level_m")],
        ),
    ],
)
def test_supported_filters_parse(text: str, expected: list[Comparison]) -> None:
    """Comparisons of one property with one literal, joined by and, with parentheses."""
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("result gt 3 or result lt 1", "'or' is not supported"),
        ("not result gt 3", "'not' is not supported"),
        ("substringof('a', name)", "functions are not supported"),
        ("result add 1 gt 3", "arithmetic"),
        ("result eq null", "null is not supported"),
        ("result gt result", "one property with one value"),
        ("3 gt 4", "one property with one value"),
        ("battery_v gt 3", "can be filtered on"),
        ("properties/h2s_ppm gt 3", "can be filtered on"),
        ("result gt 'high'", "takes number or bool values"),
        ("phenomenonTime gt 3", "takes time values"),
        ("name eq 5", "takes string values"),
        ("result gt true", "true and false take eq or ne only"),
        ("phenomenonTime gt 2025-13-01T00:00:00Z", "not a valid date-time"),
        ("result gt", "ends too early"),
        ("(result gt 3", "not closed"),
        ("result gt 3)", "unexpected close"),
        ("result ~ 3", "unexpected character"),
        ("result gt 3 result lt 2", "expected and"),
        ("name eq 'x' " * 30, "expected and"),
        (" and ".join(["result gt 1"] * 21), "at most 20 comparisons"),
        ("name eq '" + "x" * 2000 + "'", "longer than 2000"),
    ],
)
def test_unsupported_filters_are_a_clear_400(text: str, why: str) -> None:
    """Everything outside the subset is refused, saying what is supported: never a guess."""
    with pytest.raises(QueryError, match=why):
        parse(text)


SECRET = "h2s_ppm"


@given(
    st.text(alphabet=st.sampled_from("ab (')=<>/.:-_0123456789TZ"), max_size=40),
    st.sampled_from(["$filter", "$orderby", "$select", "$expand", "$top", "$count", "x"]),
)
def test_errors_never_repeat_the_request(noise: str, option: str) -> None:
    """Whatever a client writes (here a hidden metric's name among noise), a refusal is a
    fixed sentence: the name never comes back in it. (What parses here, such as a $select
    of that name, is refused by the entity set: tests/unit/opendata/test_privacy.py.)"""
    text = f"{noise} {SECRET} {noise}"
    message = ""
    try:
        options = parse_options([(option, text)], max_skip=100)
        parse_filter(options.filter_text, PROPS, "Observations")
    except QueryError as refused:
        message = str(refused)
    assert SECRET not in message


def test_options_parse_and_bound() -> None:
    """$top, $skip, $count, $orderby, $select and one level of $expand with its own options."""
    options = parse_options(
        [
            ("$top", "5"),
            ("$skip", "10"),
            ("$count", "true"),
            ("$orderby", "phenomenonTime DESC, name"),
            ("$select", "name,@iot.id"),
            ("$expand", "Datastreams($top=2;$filter=name eq 'a;b';$select=name),Locations"),
            ("$filter", "name eq 'x'"),
        ],
        max_skip=100,
    )
    assert (options.top, options.skip, options.count) == (5, 10, True)
    assert options.orderby == (("phenomenonTime", True), ("name", False))
    assert options.select == ("name", "@iot.id")
    assert [e.nav for e in options.expand] == ["Datastreams", "Locations"]
    inner = options.expand[0].options
    assert (inner.top, inner.filter_text, inner.select) == (2, "name eq 'a;b'", ("name",))


@pytest.mark.parametrize(
    ("pairs", "why"),
    [
        ([("$top", "-1")], "whole number"),
        ([("$top", "1.5")], "whole number"),
        ([("$skip", "101")], "from 0 to 100"),
        ([("$count", "yes")], "true or false"),
        ([("$top", "1"), ("$top", "2")], "more than once"),
        ([("$format", "json")], "unknown query option"),
        ([("district", "d03")], "unknown query option"),
        ([("$resultFormat", "dataArray")], "unknown query option"),
        ([("$orderby", "name sideways")], "asc"),
        ([("$select", "name,")], "property names"),
        ([("$expand", "Datastreams/Observations")], "one level deep"),
        ([("$expand", "Datastreams($expand=Observations)")], "one level deep"),
        ([("$expand", "Datastreams($top)")], "look like"),
        ([("$expand", "Datastreams,Datastreams")], "more than once"),
        ([("$expand", "Datastreams($skiptoken=1)")], r"inside \$expand"),
        ([("$filter", "name eq 'x")], None),
    ],
)
def test_bad_options_are_a_clear_400(pairs: list[tuple[str, str]], why: str | None) -> None:
    """Unknown, repeated or malformed options are refused with what the service takes."""

    def parsed() -> None:
        options = parse_options(pairs, max_skip=100)
        parse_filter(options.filter_text, PROPS, "Things")

    with pytest.raises(QueryError, match=why):
        parsed()


def test_matching_instants_and_intervals() -> None:
    """An instant compares as itself; an interval [start, end) as all of its instants."""
    flt = parse_filter("result gt 2 and name eq 'a'", PROPS, "x")
    assert matches(flt, {"result": 3.0, "name": "a"})
    assert not matches(flt, {"result": 2.0, "name": "a"})
    assert not matches(flt, {"name": "a"})  # a missing value never matches
    hour = 3_600_000
    assert interval_holds("gt", T0, T0 + hour, T0 - 1)
    assert not interval_holds("gt", T0, T0 + hour, T0)
    assert interval_holds("ge", T0, T0 + hour, T0)
    assert interval_holds("lt", T0, T0 + hour, T0 + hour)  # end is exclusive
    assert not interval_holds("lt", T0, T0 + hour, T0 + hour - 1)
    assert interval_holds("le", T0, T0 + hour, T0 + hour - 1)
    assert interval_holds("eq", T0, T0 + hour, T0)
    assert interval_holds("ne", T0, T0 + hour, T0 + 1)
    timed = parse_filter("phenomenonTime lt 2025-11-24T17:00:00Z", PROPS, "x")
    assert matches(timed, {"phenomenonTime": (T0, T0 + hour)})
    assert not matches(timed, {"phenomenonTime": (T0 + 1, T0 + hour + 1)})
