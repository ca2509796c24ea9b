"""The package layout's import rules (DESIGN.md "Layout"), checked on the source itself.

Each package talks to another only through what it imports; these rules keep the data flow
top to bottom: ``calibration`` is pure, ``devices`` are real drivers that import nothing of ours
but ``errors`` and ``protocols`` (the pure wire-protocol parsers, standard library only, which the
session reader also re-parses recorded ``raw`` with), only the command line, the bench's device
factory (and the tests) import ``sim``, and there is no import cycle between packages.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "meterbench"

# package -> the meterbench packages it may import (besides itself and ``errors``)
ALLOWED = {
    "errors": set(),
    "calibration": set(),
    "models": set(),
    "protocols": set(),
    "devices": {"protocols"},
    "session": {"protocols"},
    "vision": {"models", "calibration"},
    "verify": {"calibration", "models", "session", "vision", "progress", "protocols"},
    "sim": {"calibration", "devices", "session", "vision", "testing", "progress"},
    "testing": set(),
    "bench": {"calibration", "devices", "session", "verify", "vision", "sim", "testing", "logs", "progress"},
    "batch": {"session", "verify", "calibration", "progress"},
    "health": {"models", "bench", "devices", "calibration", "session", "testing"},
    "logs": set(),
    "web": {"bench", "verify", "session", "certificates", "calibration", "progress"},
    "progress": set(),
    "certificates": {"calibration", "session", "protocols"},
    "store": {"session", "verify", "certificates", "calibration", "protocols"},
    "cli": {
        "batch",
        "bench",
        "health",
        "logs",
        "models",
        "session",
        "sim",
        "verify",
        "vision",
        "calibration",
        "progress",
        "certificates",
        "store",
        "web",  # `meterbench replay --serve` (and later `bench --serve`): only the entry point wires the live view
    },
    "__main__": {"cli"},
    "__init__": set(),
}
SIM_IMPORTERS = {"cli.py", "bench/factory.py"}


def _package_of(path: Path) -> str:
    part = path.relative_to(PACKAGE).parts[0]
    return part.removesuffix(".py")


def _imports(path: Path) -> list[str]:
    """Absolute meterbench modules imported by one file (top-level and function-level imports)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "meterbench":
                found += [f"meterbench.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:  # inside its own package
            base = path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level]
            found.append(".".join([*base, *([node.module] if node.module else [])]))
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name for name in found if name == "meterbench" or name.startswith("meterbench.")]


def _package_edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _package_of(path)
        for module in _imports(path):
            parts = module.split(".")
            target = parts[1] if len(parts) > 1 else "__init__"
            if not ((PACKAGE / target).is_dir() or (PACKAGE / f"{target}.py").is_file()):
                target = "__init__"  # a name of the top package itself, e.g. __version__
            if target != source:
                edges.setdefault((source, target), []).append(str(path.relative_to(PACKAGE)))
    return edges


def test_every_package_imports_only_what_the_layout_allows():
    problems = [
        f"{', '.join(sorted(set(files)))}: {source} imports {target}"
        for (source, target), files in _package_edges().items()
        if target not in ALLOWED.get(source, set()) | {"errors", "__init__"}
    ]
    assert not problems, "\n".join(problems)


def test_only_cli_and_the_bench_factory_import_sim():
    importers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if _package_of(path) != "sim" and any(m.startswith("meterbench.sim") for m in _imports(path))
    )
    assert set(importers) <= SIM_IMPORTERS, importers


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for source, target in _package_edges():
        graph.setdefault(source, set()).add(target)

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(node) :], node]))
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*trail, node])

    for start in sorted(graph):
        visit(start, [])


@pytest.mark.parametrize("module", ["meterbench.verify", "meterbench.session", "meterbench.calibration"])
def test_verifying_loads_no_device_library_and_no_simulator(module):
    """Reading a session and writing its report must not load paho-mqtt, pyserial or a simulator."""
    code = (
        f"import sys, {module}\n"
        "loaded = [m for m in ('paho', 'serial', 'meterbench.sim', 'meterbench.devices', 'meterbench.testing')\n"
        "          if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == ""


def test_public_names_are_exported():
    """Each package's ``__all__`` lists names that exist (a typo would break ``from x import *``)."""
    import importlib

    for init in sorted(PACKAGE.glob("*/__init__.py")):
        name = f"meterbench.{init.parent.name}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a package of an extra not installed (e.g. store without [store])
            if os.environ.get("CI") or exc.name is None or exc.name.startswith("meterbench"):
                raise
            continue
        missing = [n for n in getattr(module, "__all__", []) if not hasattr(module, n)]
        assert not missing, f"{name}: {missing}"
