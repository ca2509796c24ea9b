"""Data tables of the calibration package: loading, overriding, provenance.

Every number that comes from a standard lives in ``data/*.json`` as a leaf
``{"value": ..., "provenance": "SRC"|"MEM"|"DER", "source": "..."}``
(METROLOGY.md tags). A caller may merge a configuration dict over a table;
an overridden leaf gets provenance ``"CFG"`` so a report can say the value is
the lab's setting, not the package default.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

PROVENANCES = ("SRC", "MEM", "DER", "CFG")
CONFIRMED_PROVENANCES = ("SRC", "DER")
TABLE_NAMES = ("water_meter", "tank", "dispenser", "physical", "decision")


@dataclass(frozen=True)
class Sourced:
    """A table value with its provenance tag and source string.

    ``provenance``: "SRC" confirmed in a public source, "DER" derived from
    confirmed inputs, "MEM" recalled but not confirmed, "CFG" set by
    configuration (overriding the package default).
    """

    value: Any
    provenance: str
    source: str

    @property
    def confirmed(self) -> bool:
        """True when the value is confirmed (SRC) or derived from confirmed values (DER)."""
        return self.provenance in CONFIRMED_PROVENANCES

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for reports: value, provenance, source, confirmed."""
        return {"value": self.value, "provenance": self.provenance, "source": self.source, "confirmed": self.confirmed}


def _is_leaf(node: Any) -> bool:
    return isinstance(node, Mapping) and "value" in node and "provenance" in node


@cache
def _load_default(name: str) -> dict[str, Any]:
    if name not in TABLE_NAMES:
        raise ValueError(f"table name {name!r} unknown; expected one of {', '.join(TABLE_NAMES)}")
    text = resources.files("meterbench.calibration").joinpath("data", f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def table_sha256() -> dict[str, str]:
    """SHA-256 (hex) of every shipped data file (``data/<name>.json``, the helmet profiles too) by name, sorted:
    the software identity a report records, whichever of them its verdicts used."""
    data = resources.files("meterbench.calibration").joinpath("data")
    files = sorted((f for f in data.iterdir() if f.name.endswith(".json")), key=lambda f: f.name)
    return {f.name.removesuffix(".json"): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _override_leaf(default: Mapping[str, Any], override: Any, where: str) -> dict[str, Any]:
    """Replace a leaf: a plain value, or a dict with ``value`` (and optional ``source``)."""
    if isinstance(override, Mapping):
        if "value" not in override:
            raise ValueError(
                f"table override {where}: expected a value or a dict with 'value', got keys {sorted(override)}"
            )
        value = override["value"]
        source = str(override.get("source", "configuration override"))
    else:
        value, source = override, "configuration override"
    return {
        "value": value,
        "provenance": "CFG",
        "source": f"{source} (default was {default['value']!r}, {default['provenance']})",
    }


def _merge(default: Any, override: Any, where: str) -> Any:
    if _is_leaf(default):
        return _override_leaf(default, override, where)
    if isinstance(default, Mapping) and isinstance(override, Mapping):
        merged = dict(default)
        for key, value in override.items():
            key = str(key)
            path = f"{where}.{key}" if where else key
            if key in default:
                merged[key] = _merge(default[key], value, path)
            elif isinstance(value, Mapping) and not _is_leaf(value) and "value" not in value:
                merged[key] = _merge({}, value, path)  # a new branch (e.g. a new tank class)
            else:
                merged[key] = _new_leaf(value, path)
        return merged
    if isinstance(default, Mapping):
        raise ValueError(f"table override {where}: expected a dict of entries, got {override!r}")
    return override  # plain (non-sourced) field such as a rule name


def _new_leaf(value: Any, where: str) -> Any:
    if isinstance(value, Mapping) and "value" in value:
        return {
            "value": value["value"],
            "provenance": "CFG",
            "source": str(value.get("source", "configuration (no package default)")),
        }
    if isinstance(value, str):
        return value  # plain field, e.g. {"rule": "percent"}
    return {"value": value, "provenance": "CFG", "source": f"configuration ({where}, no default)"}


def load_table(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Load the shipped table ``name`` and merge ``overrides`` over it.

    ``overrides`` mirrors the table's nesting; a leaf may be a plain value or
    ``{"value": ..., "source": "..."}``. Overridden leaves get provenance "CFG".

    >>> load_table("water_meter", {"in_service_factor": 2.5})["in_service_factor"]["provenance"]
    'CFG'
    """
    table = copy.deepcopy(_load_default(name))
    if overrides is None:
        return table
    if not isinstance(overrides, Mapping):
        raise ValueError(f"table override for {name!r}: expected a dict, got {type(overrides).__name__}")
    return _merge(table, overrides, "")


def sourced(table: Mapping[str, Any], *path: str) -> Sourced:
    """The leaf at ``path`` of a loaded table as a :class:`Sourced` (KeyError names the path)."""
    node: Any = table
    for i, key in enumerate(path):
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(f"table entry {'.'.join(path[: i + 1])} not found")
        node = node[key]
    if not _is_leaf(node):
        raise KeyError(f"table entry {'.'.join(path)} is not a sourced value")
    return Sourced(node["value"], node["provenance"], node["source"])


def iter_sourced(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Sourced]]:
    """Every sourced leaf of a table as (dotted path, Sourced), in file order."""
    found: list[tuple[str, Sourced]] = []
    for key, node in table.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if _is_leaf(node):
            found.append((path, Sourced(node["value"], node["provenance"], node["source"])))
        elif isinstance(node, Mapping):
            found.extend(iter_sourced(node, path))
    return found


def unconfirmed_values(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> list[tuple[str, Sourced]]:
    """All table values that are not confirmed (MEM or CFG), as ("table.path", Sourced).

    ``overrides`` maps a table name to that table's overrides. A report lists
    these so a reader knows which numbers are not yet backed by a source.
    """
    overrides = overrides or {}
    unknown = set(overrides) - set(TABLE_NAMES)
    if unknown:
        raise ValueError(f"overrides: unknown table(s) {sorted(unknown)}; expected {TABLE_NAMES}")
    result = []
    for name in TABLE_NAMES:
        for path, value in iter_sourced(load_table(name, overrides.get(name))):
            if not value.confirmed:
                result.append((f"{name}.{path}", value))
    return result


def _markdown_value(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        return "; ".join(", ".join(f"{k} {v}" for k, v in row.items()) for row in value)
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def tables_markdown() -> str:
    """Every shipped table value as Markdown tables (one per data file), for docs/metrology.md."""
    blocks = []
    for name in TABLE_NAMES:
        rows = ["| entry | value | tag | source |", "|---|---|---|---|"]
        for path, value in iter_sourced(load_table(name)):
            source = value.source.replace("|", "/")
            rows.append(f"| `{path}` | {_markdown_value(value.value)} | {value.provenance} | {source} |")
        blocks.append(f"#### `data/{name}.json`\n\n" + "\n".join(rows))
    return "\n\n".join(blocks) + "\n"


def provenance_notes(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """One line per unconfirmed table value (MEM or CFG), for the human report.

    >>> any("in_service_factor" in line for line in provenance_notes())
    True
    """
    return [
        f"{path} = {_markdown_value(value.value)} [{value.provenance}, not confirmed]: {value.source}"
        for path, value in unconfirmed_values(overrides)
    ]
