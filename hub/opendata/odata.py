"""The query options of the SensorThings API (OData), parsed strictly: the supported subset
works as the specification says, anything else is a 400 saying what is supported.

Supported (docs/open-data.md):

- ``$top`` (capped at the service's page size: a larger ask gets a page and an
  ``@iot.nextLink``), ``$skip``, ``$count=true|false``;
- ``$orderby=prop [asc|desc], …`` on the properties an entity set can filter on;
- ``$select=prop, …`` (properties and navigation links of the entity);
- ``$expand=Nav, Nav($select=…;$filter=…;$orderby=…;$top=…;$skip=…;$count=…)``,
  one level (an ``$expand`` inside an ``$expand``, or ``Nav/Nav``, is a 400);
- ``$filter``: comparisons (``eq ne gt ge lt le``) of one property with one
  literal, joined by ``and``, with parentheses. Literals: ``'text'`` (``''`` is a
  quote), numbers, ``true``/``false``, and date-times (``2025-11-24T16:00:00Z``,
  an offset or fractions allowed). ``or``, ``not``, functions, arithmetic, ``null``
  and comparisons of two properties are a 400 (never a guess).

Error messages are fixed sentences with positions: they never repeat the request,
so a name a client typed (a hidden metric's, say) is never echoed in a public
answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Kind = Literal["time", "number", "string", "result"]
Value = int | float | str | bool
Op = Literal["eq", "ne", "gt", "ge", "lt", "le"]

OPTIONS = ("$top", "$skip", "$count", "$orderby", "$select", "$expand", "$filter")
#: What the server puts in ``@iot.nextLink``s besides the client's options (opaque).
SKIPTOKEN = "$skiptoken"
_FLIP: dict[str, Op] = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
_COMPARISONS = frozenset(_FLIP)
_UNSUPPORTED_WORDS = {
    "or": "'or' is not supported; join comparisons with 'and'",
    "not": "'not' is not supported",
    "has": "'has' is not supported",
    "in": "'in' is not supported",
    "add": "arithmetic is not supported",
    "sub": "arithmetic is not supported",
    "mul": "arithmetic is not supported",
    "div": "arithmetic is not supported",
    "mod": "arithmetic is not supported",
    "null": "null is not supported",
}
_TOKEN = re.compile(
    r"""(?P<space>\s+)
    |(?P<open>\()|(?P<close>\))|(?P<comma>,)
    |(?P<string>'(?:[^']|'')*')
    |(?P<time>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))
    |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    |(?P<name>[A-Za-z@_][A-Za-z0-9@_./]*)""",
    re.VERBOSE,
)
#: Longest ``$filter`` accepted (a real one is a line; this bounds the parser's work).
MAX_FILTER = 2000
#: Most comparisons one ``$filter`` may join.
MAX_COMPARISONS = 20
_PROPERTY = re.compile(r"[A-Za-z@][A-Za-z0-9@_.]*(?:/[A-Za-z@][A-Za-z0-9@_.]*)*")


class QueryError(Exception):
    """A request outside the supported subset: answered 400 with this fixed sentence."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """``path op value`` (a literal on the left is turned around)."""

    path: str
    op: Op
    value: Value


@dataclass(frozen=True, slots=True)
class Filter:
    """Comparisons that must all hold."""

    comparisons: tuple[Comparison, ...]

    def on(self, path: str) -> list[Comparison]:
        """The comparisons of ``path``."""
        return [c for c in self.comparisons if c.path == path]


TRUE = Filter(())


@dataclass(frozen=True, slots=True)
class Options:
    """The query options of one request (or of one ``$expand`` item)."""

    top: int | None = None
    skip: int = 0
    count: bool = False
    orderby: tuple[tuple[str, bool], ...] = ()
    select: tuple[str, ...] | None = None
    expand: tuple[Expand, ...] = ()
    filter_text: str | None = None
    skiptoken: str | None = None


@dataclass(frozen=True, slots=True)
class Expand:
    """One ``$expand`` item: a navigation property and its own options."""

    nav: str
    options: Options


# --------------------------------------------------------------------------- options


def parse_options(
    pairs: Sequence[tuple[str, str]], *, max_skip: int, nested: bool = False
) -> Options:
    """The options of a request's query string (or of one ``$expand`` item's parentheses)."""
    seen: dict[str, str] = {}
    allowed = tuple(o for o in OPTIONS if o != "$expand") if nested else (*OPTIONS, SKIPTOKEN)
    for key, value in pairs:
        if key not in allowed:
            if nested and key == "$expand":
                raise QueryError("$expand goes one level deep: no $expand inside an $expand")
            raise QueryError(
                "unknown query option; this service takes " + ", ".join(allowed)
                if not nested
                else "unknown option inside $expand; it takes " + ", ".join(allowed)
            )
        if key in seen:
            raise QueryError(f"{key} is given more than once")
        seen[key] = value
    return Options(
        top=_whole(seen, "$top", 0, 10**9),
        skip=_whole(seen, "$skip", 0, max_skip) or 0,
        count=_boolean(seen.get("$count")),
        orderby=_orderby(seen["$orderby"]) if "$orderby" in seen else (),
        select=_select(seen["$select"]) if "$select" in seen else None,
        expand=_expand(seen["$expand"], max_skip) if "$expand" in seen else (),
        filter_text=seen.get("$filter"),
        skiptoken=seen.get(SKIPTOKEN),
    )


def _whole(seen: Mapping[str, str], key: str, low: int, high: int) -> int | None:
    text = seen.get(key)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 12 or not low <= int(text) <= high:
        raise QueryError(f"{key} must be a whole number from {low} to {high}")
    return int(text)


def _boolean(text: str | None) -> bool:
    if text is None or text == "false":
        return False
    if text == "true":
        return True
    raise QueryError("$count must be true or false")


def _split(text: str, sep: str) -> list[str]:
    """``text`` split on ``sep`` outside parentheses and quotes."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth < 0:
                raise QueryError("unbalanced parentheses")
        if ch == sep and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if depth or quoted:
        raise QueryError("unbalanced parentheses or quotes")
    parts.append("".join(current))
    return [p.strip() for p in parts]


def _property(text: str, option: str) -> str:
    if not _PROPERTY.fullmatch(text):
        raise QueryError(f"{option} takes property names such as name or @iot.id")
    return text


def _orderby(text: str) -> tuple[tuple[str, bool], ...]:
    out = []
    for item in _split(text, ","):
        words = item.split()
        # asc/desc in any case: frost-sta-client, for one, sends DESC
        direction = words[1].lower() if len(words) == 2 else "asc"
        if not words or len(words) > 2 or direction not in ("asc", "desc"):
            raise QueryError("$orderby takes 'property', 'property asc' or 'property desc'")
        out.append((_property(words[0], "$orderby"), direction == "desc"))
    if len(out) > 5:
        raise QueryError("$orderby takes at most 5 properties")
    return tuple(out)


def _select(text: str) -> tuple[str, ...]:
    names = tuple(_property(item, "$select") for item in _split(text, ","))
    if len(names) > 50:
        raise QueryError("$select takes at most 50 properties")
    return names


def _expand(text: str, max_skip: int) -> tuple[Expand, ...]:
    items = []
    for item in _split(text, ","):
        nav, paren, rest = item.partition("(")
        nav = nav.strip()
        if "/" in nav:
            raise QueryError("$expand goes one level deep: Nav/Nav is not supported")
        if not re.fullmatch(r"[A-Za-z]+", nav):
            raise QueryError("$expand takes navigation properties such as Datastreams")
        pairs: list[tuple[str, str]] = []
        if paren:
            if not rest.endswith(")"):
                raise QueryError("an $expand item's options end with ')'")
            for option in _split(rest[:-1], ";"):
                key, eq, value = option.partition("=")
                if not eq:
                    raise QueryError("options inside $expand look like $top=10")
                pairs.append((key.strip(), value.strip()))
        items.append(Expand(nav, parse_options(pairs, max_skip=max_skip, nested=True)))
    if len({e.nav for e in items}) != len(items):
        raise QueryError("$expand names a navigation property more than once")
    return tuple(items)


# --------------------------------------------------------------------------- $filter


def parse_filter(text: str | None, properties: Mapping[str, Kind], what: str) -> Filter:
    """``$filter`` checked against the ``properties`` (path -> kind) of entity set ``what``."""
    if text is None:
        return TRUE
    if len(text) > MAX_FILTER:
        raise QueryError(f"$filter is longer than {MAX_FILTER} characters")
    tokens = _tokens(text)
    parser = _Parser(tokens, properties, what)
    comparisons = parser.expression()
    if parser.peek() is not None:
        kind, _word, position = parser.peek()  # type: ignore[misc]
        raise QueryError(f"$filter: unexpected {kind} at position {position}")
    if len(comparisons) > MAX_COMPARISONS:
        raise QueryError(f"$filter joins at most {MAX_COMPARISONS} comparisons")
    return Filter(tuple(comparisons))


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise QueryError(f"$filter: unexpected character at position {position}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            out.append((kind, match.group(), position))
        position = match.end()
    return out


class _Parser:
    def __init__(
        self, tokens: list[tuple[str, str, int]], properties: Mapping[str, Kind], what: str
    ) -> None:
        self.tokens = tokens
        self.i = 0
        self.properties = properties
        self.what = what

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise QueryError("$filter ends too early")
        self.i += 1
        return token

    def expression(self) -> list[Comparison]:
        found = self.primary()
        while (token := self.peek()) is not None and token[0] == "name":
            word = token[1]
            if word == "and":
                self.take()
                found.extend(self.primary())
                continue
            raise QueryError(
                f"$filter: {_UNSUPPORTED_WORDS.get(word, 'expected and')} (position {token[2]})"
            )
        return found

    def primary(self) -> list[Comparison]:
        token = self.peek()
        if token is not None and token[0] == "open":
            self.take()
            inner = self.expression()
            closing = self.peek()
            if closing is None or closing[0] != "close":
                raise QueryError("$filter: a parenthesis is not closed")
            self.take()
            return inner
        return [self.comparison()]

    def comparison(self) -> Comparison:
        left = self.operand()
        kind, word, position = self.take()
        if kind != "name" or word not in _COMPARISONS:
            reason = _UNSUPPORTED_WORDS.get(word) if kind == "name" else None
            raise QueryError(
                f"$filter: {reason or 'expected eq, ne, gt, ge, lt or le'} (position {position})"
            )
        right = self.operand()
        op: Op = word  # type: ignore[assignment]
        if left[0] == "path" and right[0] != "path":
            path, literal = left, right
        elif right[0] == "path" and left[0] != "path":
            path, literal, op = right, left, _FLIP[op]
        else:
            raise QueryError(f"$filter: compare one property with one value (position {position})")
        return self._typed(str(path[1]), op, literal, position)

    def operand(self) -> tuple[str, Value]:
        kind, word, position = self.take()
        if kind == "string":
            return "string", word[1:-1].replace("''", "'")
        if kind == "number":
            return "number", float(word)
        if kind == "time":
            return "time", _epoch_ms(word, position)
        if kind == "name":
            if word in ("true", "false"):
                return "bool", word == "true"
            if word in _UNSUPPORTED_WORDS:
                raise QueryError(f"$filter: {_UNSUPPORTED_WORDS[word]} (position {position})")
            following = self.peek()
            if following is not None and following[0] == "open":
                raise QueryError(f"$filter: functions are not supported (position {position})")
            return "path", word
        raise QueryError(f"$filter: expected a property or a value (position {position})")

    def _typed(self, path: str, op: Op, literal: tuple[str, Value], position: int) -> Comparison:
        kind = self.properties.get(path)
        if kind is None:
            raise QueryError(
                f"$filter: {self.what} can be filtered on "
                + ", ".join(sorted(self.properties))
                + f" only (position {position})"
            )
        literal_kind, value = literal
        fits = {
            "time": ("time",),
            "number": ("number",),
            "string": ("string",),
            "result": ("number", "bool"),
        }[kind]
        if literal_kind not in fits:
            raise QueryError(
                f"$filter: that property takes {' or '.join(fits)} values (position {position})"
            )
        if isinstance(value, bool) and op not in ("eq", "ne"):
            raise QueryError(f"$filter: true and false take eq or ne only (position {position})")
        return Comparison(path, op, value)


def _epoch_ms(text: str, position: int) -> int:
    try:
        return round(datetime.fromisoformat(text).timestamp() * 1000)
    except (ValueError, OverflowError):
        raise QueryError(f"$filter: not a valid date-time (position {position})") from None


# --------------------------------------------------------------------------- evaluation


def holds(op: Op, left: Value, right: Value) -> bool:
    """``left op right`` (bools compare as 1 and 0 with numbers)."""
    if op == "eq":
        return left == right
    if op == "ne":
        return left != right
    if isinstance(left, str) != isinstance(right, str):
        return False
    if op == "gt":
        return left > right  # type: ignore[operator]
    if op == "ge":
        return left >= right  # type: ignore[operator]
    if op == "lt":
        return left < right  # type: ignore[operator]
    return left <= right  # type: ignore[operator]


def interval_holds(op: Op, start_ms: int, end_ms: int, instant: int) -> bool:
    """A time interval ``[start, end)`` compared with an instant, as every instant of it:
    ``gt``/``ge`` when it starts after / at it, ``lt``/``le`` when it ends before / at it
    (end exclusive, so an interval ending at 16:00 is ``lt 16:00``), ``eq`` when it
    starts at it, ``ne`` otherwise."""
    if op == "gt":
        return start_ms > instant
    if op == "ge":
        return start_ms >= instant
    if op == "lt":
        return end_ms <= instant
    if op == "le":
        return end_ms - 1 <= instant
    if op == "eq":
        return start_ms == instant
    return start_ms != instant


def matches(flt: Filter, values: Mapping[str, object]) -> bool:
    """True when every comparison holds for an entity's ``values`` (path -> value; a time
    interval as a ``(start, end)`` tuple). A missing value never matches."""
    for c in flt.comparisons:
        value = values.get(c.path)
        if value is None:
            return False
        if isinstance(value, tuple):
            start, end = value
            if not interval_holds(c.op, start, end, int(c.value)):
                return False
        elif not holds(c.op, value, c.value):  # type: ignore[arg-type]
            return False
    return True
