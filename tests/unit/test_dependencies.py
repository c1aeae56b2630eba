"""The dependency list says what the code uses, and paho's private seams are pinned and tested."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import inspect
import sys
import tomllib
from functools import cache
from pathlib import Path

import paho.mqtt.client as paho
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
DEV = [Requirement(r) for r in PROJECT["optional-dependencies"]["dev"]]


def _imported(*folders: str) -> set[str]:
    """Top-level modules imported anywhere in ``folders`` (lazy imports in functions too)."""
    names: set[str] = set()
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


@cache
def _modules_of(dist: str) -> set[str]:
    """Top-level modules a distribution installs."""
    wanted = canonicalize_name(dist)
    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if any(canonicalize_name(d) == wanted for d in dists)
    }


def _closure(requirements: list[Requirement]) -> set[str]:
    """Canonical names of the distributions ``requirements`` pull in, transitively."""
    seen: set[str] = set()
    todo = [r.name for r in requirements]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_every_runtime_dependency_is_imported_by_the_code() -> None:
    """No declared runtime dependency goes unused (influxdb-client was declared, never imported)."""
    code = _imported("hub", "devices")
    unused = [r.name for r in RUNTIME if not _modules_of(r.name) & code]
    assert unused == []


def test_every_third_party_import_is_declared() -> None:
    """Each third-party module the code imports comes from a declared dependency or its deps."""
    code = _imported("hub", "devices") - set(sys.stdlib_module_names) - {"hub", "devices"}
    provided = {m for dist in _closure(RUNTIME) for m in _modules_of(dist)}
    assert sorted(code - provided) == []


def test_type_stubs_are_for_packages_the_code_imports() -> None:
    """A types-* stub package is listed only if the code imports what it types (no PyYAML here)."""
    code = _imported("hub", "devices", "tests", "bench")
    stubs = [r.name for r in DEV if r.name.lower().startswith("types-")]
    unused = [
        name for name in stubs if not {m.removesuffix("-stubs") for m in _modules_of(name)} & code
    ]
    assert unused == []


def test_paho_is_pinned_to_the_tested_minor_version() -> None:
    """Two modules subclass paho's private internals: paho-mqtt is pinned to one minor version."""
    (paho_req,) = [r for r in RUNTIME if canonicalize_name(r.name) == "paho-mqtt"]
    installed = Version(metadata.version("paho-mqtt"))
    assert installed in paho_req.specifier
    minor = Version(f"{installed.major}.{installed.minor}")
    next_minor = Version(f"{installed.major}.{installed.minor + 1}")
    assert minor in paho_req.specifier
    assert next_minor not in paho_req.specifier


def test_paho_private_seams_have_the_shape_the_hub_relies_on() -> None:
    """The private members hub.ingest.mqtt_source and hub.notifiers.mqtt override or read exist."""
    for name, params in [
        ("_handle_publish", ["self"]),
        ("_create_socket", ["self"]),
        ("_handle_pubackcomp", ["self", "cmd"]),
        ("_do_on_publish", ["self", "mid", "reason_code", "properties"]),
    ]:
        method = getattr(paho.Client, name)
        assert list(inspect.signature(method).parameters) == params, name
    client = paho.Client(CallbackAPIVersion.VERSION2)
    assert {"command", "packet"} <= set(client._in_packet)
    assert isinstance(client._out_messages, dict)
    assert client._protocol == paho.MQTTv311
