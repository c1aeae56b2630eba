#!/usr/bin/env python3
"""Fetch the console's third-party libraries from the npm registry, pinned, with licences.

    python3 deploy/console/vendor.py           # fetch and (re)write the vendored files
    python3 deploy/console/vendor.py --check   # offline: do the files match the manifest?

Each package is fetched with ``npm pack NAME@VERSION`` (the ordinary npm client),
its tarball's integrity is compared with the one pinned below, and only the files
the console (or its tests) use are copied out, with the package's licence files.
The manifest ``hub/api/static/vendor/VENDORED.json`` records what came from where
and each file's SHA-256, so anyone can reproduce the vendored tree and a test can
check that nobody edited a vendored file by hand. The hub serves these files
itself: nothing is loaded from a CDN at run time (docs/console.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATIC_VENDOR = REPO / "hub" / "api" / "static" / "vendor"
TEST_VENDOR = REPO / "tests" / "data" / "vendor"
MANIFEST = STATIC_VENDOR / "VENDORED.json"


@dataclass(frozen=True)
class Package:
    """One pinned npm package and the files taken from it (tarball path -> vendored path)."""

    name: str
    version: str
    integrity: str
    licence: str
    why: str
    files: dict[str, str]
    root: Path = STATIC_VENDOR


PACKAGES = (
    Package(
        "htm",
        "3.1.1",
        "sha512-983Vyg8NwUE7JkZ6NmOqpCZ+sh1bKv2iYTlUkzlWmA5JD2acKoxd4KVxbMmxX/85mtfdnDmTFoNKcg5DGAvxNQ==",
        "Apache-2.0 (htm); MIT (the Preact 10 it bundles)",
        "components and hooks without a build step: htm's standalone module bundles Preact",
        {
            "package/preact/standalone.module.js": "htm-preact/standalone.module.js",
            "package/LICENSE": "htm-preact/LICENSE",
        },
    ),
    Package(
        "preact",
        "10.28.2",
        "sha512-lbteaWGzGHdlIuiJ0l2Jq454m6kcpI1zNje6d8MlGAFlYvP2GO4ibnat7P74Esfz4sPTdM6UxtTwh/d3pwM9JA==",
        "MIT",
        "only its licence: the Preact inside htm's standalone module",
        {"package/LICENSE": "htm-preact/LICENSE-preact"},
    ),
    Package(
        "leaflet",
        "1.9.4",
        "sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3XnWyZAxwQixURb+FA74PA==",
        "BSD-2-Clause",
        "the map: raster tiles optional, GeoJSON outlines and markers without WebGL",
        {
            "package/dist/leaflet.js": "leaflet/leaflet.js",
            "package/dist/leaflet.css": "leaflet/leaflet.css",
            "package/dist/images/layers.png": "leaflet/images/layers.png",
            "package/dist/images/layers-2x.png": "leaflet/images/layers-2x.png",
            "package/dist/images/marker-icon.png": "leaflet/images/marker-icon.png",
            "package/dist/images/marker-icon-2x.png": "leaflet/images/marker-icon-2x.png",
            "package/dist/images/marker-shadow.png": "leaflet/images/marker-shadow.png",
            "package/LICENSE": "leaflet/LICENSE",
        },
    ),
    Package(
        "leaflet.markercluster",
        "1.5.3",
        "sha512-vPTw/Bndq7eQHjLBVlWpnGeLa3t+3zGiuM7fJwCkiMFq+nmRuG3RI3f7f4N4TDX7T4NpbAXpR2+NTRSEGfCSeA==",
        "MIT",
        "clustering, so 10,000 devices stay fluid on the map",
        {
            "package/dist/leaflet.markercluster.js": "markercluster/leaflet.markercluster.js",
            "package/dist/MarkerCluster.css": "markercluster/MarkerCluster.css",
            "package/MIT-LICENCE.txt": "markercluster/LICENSE",
        },
    ),
    Package(
        "uplot",
        "1.6.32",
        "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        "MIT",
        "time-series charts on canvas: tens of thousands of points, bands, custom draw hooks",
        {
            "package/dist/uPlot.esm.js": "uplot/uPlot.esm.js",
            "package/dist/uPlot.min.css": "uplot/uPlot.min.css",
            "package/LICENSE": "uplot/LICENSE",
        },
    ),
    Package(
        "axe-core",
        "4.11.0",
        "sha512-ilYanEU8vxxBexpJd8cWM4ElSQq4QctCLKih0TSfjIfCQTeyH/6zVrmIJfLPrKTKJRbiG+cfnZbQIjAlJmF1jQ==",
        "MPL-2.0",
        "tests only: the accessibility scan injected into each console page",
        {
            "package/axe.min.js": "axe-core/axe.min.js",
            "package/LICENSE": "axe-core/LICENSE",
            "package/LICENSE-3RD-PARTY.txt": "axe-core/LICENSE-3RD-PARTY.txt",
        },
        TEST_VENDOR,
    ),
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def fetch() -> dict[str, object]:
    """Fetch every package with npm, copy its files, return the manifest."""
    manifest: dict[str, object] = {"packages": []}
    with tempfile.TemporaryDirectory() as tmp:
        for pkg in PACKAGES:
            out = subprocess.run(  # noqa: S603 - fixed arguments, pinned names
                ["npm", "pack", f"{pkg.name}@{pkg.version}", "--json", "--silent"],
                cwd=tmp,
                check=True,
                capture_output=True,
                text=True,
            )
            info = json.loads(out.stdout)[0]
            if info["integrity"] != pkg.integrity:
                sys.exit(
                    f"{pkg.name}@{pkg.version}: integrity {info['integrity']} is not the pinned one"
                )
            files: dict[str, str] = {}
            with tarfile.open(Path(tmp) / info["filename"]) as tar:
                for member, target in pkg.files.items():
                    source = tar.extractfile(member)
                    if source is None:
                        sys.exit(f"{pkg.name}@{pkg.version}: no file {member}")
                    dest = pkg.root / target
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(source.read())
                    files[_relative(dest)] = _sha256(dest)
            manifest["packages"].append(  # type: ignore[attr-defined]
                {
                    "name": pkg.name,
                    "version": pkg.version,
                    "integrity": info["integrity"],
                    "licence": pkg.licence,
                    "why": pkg.why,
                    "files": files,
                }
            )
            print(f"{pkg.name}@{pkg.version}: {len(files)} files")
    return manifest


def check() -> list[str]:
    """Differences between the vendored files and the manifest ([] when they match)."""
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    problems = []
    for pkg in manifest["packages"]:
        for rel, digest in pkg["files"].items():
            path = REPO / rel
            if not path.is_file():
                problems.append(f"{rel}: missing")
            elif _sha256(path) != digest:
                problems.append(f"{rel}: differs from {pkg['name']}@{pkg['version']}")
    return problems


def main() -> int:
    """Fetch (default) or check the vendored files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify only, no network")
    args = parser.parse_args()
    if args.check:
        problems = check()
        for p in problems:
            print(p)
        return 1 if problems else 0
    manifest = fetch()
    MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {_relative(MANIFEST)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
