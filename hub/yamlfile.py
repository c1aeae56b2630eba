"""Strict YAML loading for the catalog and the scenarios: errors name file, line, key path.

The files are read with ruamel.yaml's round-trip loader, which remembers where each
key sits, then validated by pydantic models with ``extra="forbid"``; each pydantic
error is mapped back to the line of the offending key (Frigate's approach), so a
typo reads ``hub/catalog/manhole.yaml:7: metrics.h2s_ppm.clasification: unknown field``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class FileProblem(Exception):
    """A file that cannot be used; ``messages`` are ``file:line: key.path: message`` lines."""

    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = list(messages)


def parse_duration(value: Any) -> float:
    """Seconds from ``20s``, ``500ms``, ``2m``, ``1h`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 20s, 500ms, 2m or 1h")  # noqa: TRY004
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if match is None:
            raise ValueError(f"{value!r} is not a duration like 20s, 500ms, 2m or 1h")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


#: A pydantic field type: a duration in seconds, written ``20s``, ``2m``, ``500ms`` or a number.
Duration = Annotated[float, BeforeValidator(parse_duration)]


def load_yaml(path: Path) -> Any:
    """The file's YAML document (round-trip nodes, with line numbers); raises FileProblem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileProblem([f"{path}:1: cannot read: {exc}"]) from None
    try:
        return YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise FileProblem([f"{path}:{line}: invalid YAML: {exc.problem or exc}"]) from None
    except YAMLError as exc:
        raise FileProblem([f"{path}:1: invalid YAML: {exc}"]) from None


def _child(node: Any, part: int | str) -> tuple[Any, int] | None:
    """The child ``part`` of a YAML node and its 1-based line, or None if absent."""
    if isinstance(node, CommentedMap) and part in node:
        return node[part], node.lc.key(part)[0] + 1
    if isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
        return node[part], node.lc.item(part)[0] + 1
    return None


def line_of(document: Any, loc: Sequence[int | str]) -> int:
    """1-based line of the deepest node of ``loc`` found in ``document``.

    Parts of a pydantic location that are not in the YAML (union tags, validator
    names) are skipped rather than ending the walk.
    """
    node = document
    line = (node.lc.line + 1) if isinstance(node, CommentedMap | CommentedSeq) else 1
    for part in loc:
        found = _child(node, part)
        if found is not None:
            node, line = found
    return line


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _key_path(loc: Sequence[int | str], document: Any) -> str:
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
        parts.append(f"[{part}]" if isinstance(part, int) else str(part))
    return ".".join(parts).replace(".[", "[") or "(file)"


def validation_messages(path: Path, document: Any, exc: ValidationError) -> list[str]:
    """``file:line: key.path: message`` for each of pydantic's errors."""
    out = []
    for error in exc.errors():
        loc = error["loc"]
        line = line_of(document, loc)
        out.append(f"{path}:{line}: {_key_path(loc, document)}: {_message(error)}")
    return out
