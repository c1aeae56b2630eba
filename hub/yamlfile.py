"""YAML files whose every problem names ``file:line``: the one module that maps them.

Every YAML file the hub reads goes through here: the device catalog, scenarios,
rule files, the alert routing file, device import files and the ``--config``
settings file. They are read with ruamel.yaml's round-trip loader, which remembers
where each key sits, then validated by pydantic models with ``extra="forbid"``; each
pydantic error is mapped back to the line of the offending key (Frigate's approach),
so a typo reads ``hub/catalog/manhole.yaml:7: metrics.h2s_ppm.clasification: unknown
field``. Each file type keeps the key-path style its users know: ``rules[2].value``
and ``events[0].at`` (:data:`BRACKETS`), ``route.routes.0.wait`` (:data:`DOTS`).

Parsing never raises anything but :class:`YamlSyntaxError` (a file's text is
untrusted input); :func:`load_yaml` turns it and unreadable files into
:class:`FileProblem`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

#: The round-trip node types (mappings and sequences that know their lines), for
#: ``isinstance`` checks elsewhere: no other module imports ruamel.yaml.
YamlMap = CommentedMap
YamlSeq = CommentedSeq

PathStyle = Literal["brackets", "dots"]
#: Key-path styles: ``a[0].b`` or ``a.0.b``.
BRACKETS: Final = "brackets"
DOTS: Final = "dots"


class FileProblem(Exception):
    """A file that cannot be used; ``messages`` are ``file:line: key.path: message`` lines."""

    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = list(messages)


class YamlSyntaxError(Exception):
    """Text that is not YAML; ``line`` is 1-based, ``str()`` the message for an author."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"YAML syntax error: {problem}")
        self.line = line
        self.problem = problem


def parse_yaml(text: str) -> Any:
    """The YAML document of ``text`` as round-trip nodes (with positions).

    Duplicate keys are an error. Raises only :class:`YamlSyntaxError`.
    """
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ruamel warns about some odd but valid input
            return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise YamlSyntaxError(line, what or str(exc)) from None
    except Exception as exc:  # any parser failure is the author's problem, not a crash
        raise YamlSyntaxError(1, f"{type(exc).__name__}: {exc}") from None


def load_yaml(path: Path) -> Any:
    """The file's YAML document (round-trip nodes, with line numbers); raises FileProblem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileProblem([f"{path}:1: cannot read: {exc}"]) from None
    try:
        return parse_yaml(text)
    except YamlSyntaxError as exc:
        raise FileProblem([f"{path}:{exc.line}: {exc}"]) from None


def key_line(mapping: CommentedMap, key: Any) -> int:
    """1-based line of ``key`` in ``mapping`` (the mapping's own line when unknown)."""
    try:
        return int(mapping.lc.key(key)[0]) + 1
    except Exception:  # ruamel has no position for synthesised keys (merges)
        return int(getattr(mapping.lc, "line", 0) or 0) + 1


def item_line(seq: CommentedSeq, index: int) -> int:
    """1-based line of item ``index`` of ``seq`` (the sequence's own line when unknown)."""
    try:
        return int(seq.lc.item(index)[0]) + 1
    except Exception:  # no position recorded
        return int(getattr(seq.lc, "line", 0) or 0) + 1


def item_column(seq: CommentedSeq, index: int) -> int:
    """0-based column of item ``index`` of ``seq`` (0 when unknown)."""
    try:
        return int(seq.lc.item(index)[1])
    except Exception:  # no position recorded
        return 0


def _child(node: Any, part: int | str) -> tuple[Any, int] | None:
    """The child ``part`` of a YAML node and its 1-based line, or None if absent."""
    if isinstance(node, CommentedMap) and part in node:
        return node[part], key_line(node, part)
    if isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
        return node[part], item_line(node, part)
    return None


def line_of(document: Any, loc: Sequence[int | str], default: int = 1) -> int:
    """1-based line of the deepest node of ``loc`` found in ``document``.

    Parts of a pydantic location that are not in the YAML (union tags, validator
    names) are skipped rather than ending the walk. ``default`` is the line when
    ``document`` is not a YAML container.
    """
    node = document
    line = (node.lc.line + 1) if isinstance(node, CommentedMap | CommentedSeq) else default
    for part in loc:
        found = _child(node, part)
        if found is not None:
            node, line = found
    return line


def plain(node: Any, memo: dict[int, Any] | None = None) -> Any:
    """ruamel's round-trip nodes as plain dicts, lists and scalars (what pydantic wants).

    Keys are text (``3:`` and ``true:`` are keys a person writes as text); a node
    shared through an anchor is converted once (``memo``), so recursive aliases do
    not recurse forever.
    """
    memo = {} if memo is None else memo
    if isinstance(node, Mapping):
        if id(node) in memo:
            return memo[id(node)]
        out: dict[Any, Any] = {}
        memo[id(node)] = out
        for k, v in node.items():
            out[str(k)] = plain(v, memo)
        return out
    if isinstance(node, list):
        if id(node) in memo:
            return memo[id(node)]
        items: list[Any] = []
        memo[id(node)] = items
        items.extend(plain(v, memo) for v in node)
        return items
    # ruamel's scalar subclasses (ScalarFloat, ScalarBoolean, ...) as the builtins.
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def describe(error: ErrorDetails, overrides: Mapping[str, str] | None = None) -> str:
    """One pydantic error as a sentence: ``unknown field``, ``required field is missing``...

    ``overrides`` replaces the sentence for some error types (e.g. a hint to the docs).
    """
    kind = error["type"]
    if overrides and kind in overrides:
        return overrides[kind]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def key_path(loc: Sequence[int | str], document: Any, style: PathStyle = BRACKETS) -> str:
    """``loc`` as the author sees it: ``metrics.h2s_ppm.unit``, ``rules[2].value``...

    Parts that are pydantic's own (``[key]`` markers, the tag of a discriminated
    union) are left out; an empty path is ``(file)``.
    """
    parts: list[str] = []
    node = document
    for part in loc:
        found = _child(node, part)
        if found is not None:
            node = found[0]
        elif isinstance(part, str) and (
            "[" in part or (isinstance(node, CommentedMap) and part in node.values())
        ):
            continue  # pydantic's "[key]" marker, or the tag of a discriminated union
        parts.append(f"[{part}]" if isinstance(part, int) and style == BRACKETS else str(part))
    return ".".join(parts).replace(".[", "[") or "(file)"


@dataclass(frozen=True, slots=True)
class Located:
    """One validation problem placed in its file: 1-based line, key path and sentence."""

    line: int
    path: str
    message: str


def locate_errors(
    document: Any,
    exc: ValidationError,
    *,
    style: PathStyle = BRACKETS,
    overrides: Mapping[str, str] | None = None,
    default_line: int = 1,
) -> list[Located]:
    """Each of pydantic's errors for ``document`` with its line and key path."""
    return [
        Located(
            line_of(document, err["loc"], default_line),
            key_path(err["loc"], document, style),
            describe(err, overrides),
        )
        for err in exc.errors()
    ]


def validation_messages(path: Path, document: Any, exc: ValidationError) -> list[str]:
    """``file:line: key.path: message`` for each of pydantic's errors."""
    return [f"{path}:{p.line}: {p.path}: {p.message}" for p in locate_errors(document, exc)]
