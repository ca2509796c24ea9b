"""The session format (version 1): its name, version, JSON Schemas and the schema check that
both the reader and the writer apply, so that nothing is written that the reader refuses.
Format: docs/session-format.md."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "SCHEMA_DIR", "field_path", "load_json", "schema_problems", "short"]

FORMAT_NAME = "meterbench-session"
FORMAT_VERSION = 1
SCHEMA_DIR = Path(__file__).parent / "schemas"


@cache
def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


@cache
def _validator(name: str) -> Any:
    import jsonschema

    schema = _schema(name)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def short(value: Any, limit: int = 60) -> str:
    """JSON text of ``value`` cut to ``limit`` characters, for messages."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_path(parts: Iterable[str | int]) -> str:
    """``["instruments", 0, "q3_m3h"]`` -> ``instruments[0].q3_m3h``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref`` ("#/$defs/name") links."""
    while isinstance(schema, dict) and "$ref" in schema:
        node: Any = root
        for key in schema["$ref"].lstrip("#/").split("/"):
            node = node[key]
        schema = node
    return schema


def _describe(schema: dict[str, Any], root: dict[str, Any]) -> str:
    """What a (sub)schema expects, in words: "a number > 0", "one of "wheel", "dial""."""
    schema = _resolve(schema, root)
    if "x-expected" in schema:
        return schema["x-expected"]
    if "const" in schema:
        return short(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(short(v) for v in schema["enum"])
    kinds = schema.get("type")
    if isinstance(kinds, list):
        return " or ".join(_describe({"type": k}, root) for k in kinds)
    words = {
        "number": "a number",
        "integer": "an integer",
        "string": "a string",
        "object": "an object",
        "array": "a list",
        "boolean": "true or false",
        "null": "null",
    }
    text = words.get(kinds, "a value")
    bounds = [(">", "exclusiveMinimum"), (">=", "minimum"), ("<", "exclusiveMaximum"), ("<=", "maximum")]
    text += "".join(f" {op} {schema[key]}" for op, key in bounds if key in schema)
    if kinds == "string" and schema.get("minLength"):
        text = "a non-empty string"
    if kinds == "array":
        low, high = schema.get("minItems"), schema.get("maxItems")
        if low is not None and low == high:
            text += f" of {low} items"
        elif low:
            text += f" of at least {low} item{'s' if low > 1 else ''}"
        if "items" in schema and _resolve(schema["items"], root).get("type") in words:
            text += f" ({_describe(schema['items'], root)} each)"
    return text


def schema_problems(file_label: str, data: Any, schema_name: str) -> list[str]:
    """One message per schema violation of ``data``, sorted by field path."""
    root = _schema(schema_name)
    problems: list[tuple[tuple, str]] = []
    for error in _validator(schema_name).iter_errors(data):
        path = list(error.absolute_path)
        for field_parts, text in _error_texts(error, path, root):
            where = field_path(field_parts)
            label = f"{file_label}: {where}: " if where else f"{file_label}: "
            sort_key = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in field_parts)
            problems.append((sort_key, label + text))
    problems.sort(key=lambda item: item[0])
    unique = dict.fromkeys(text for _, text in problems)
    return list(unique)


def _error_texts(error: Any, path: list, root: dict[str, Any]) -> list[tuple[list, str]]:
    """(field path, message) pairs for one jsonschema error."""
    keyword = error.validator
    if keyword == "required":
        properties = error.schema.get("properties", {})
        return [
            (
                path + [name],
                "missing (expected " + (_describe(properties[name], root) if name in properties else "a value") + ")",
            )
            for name in error.validator_value
            if isinstance(error.instance, dict) and name not in error.instance
        ]
    if keyword == "additionalProperties" and error.validator_value is False and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        expected = ", ".join(sorted(known)) or "none"
        return [
            (path + [name], f"unknown key (expected one of {expected})") for name in error.instance if name not in known
        ]
    if keyword == "oneOf" and all(set(s) == {"required"} for s in error.validator_value):
        names = " or ".join(short(s["required"][0]) for s in error.validator_value)
        return [(path, f"expected exactly one of the fields {names}")]
    if keyword in {
        "type",
        "const",
        "enum",
        "pattern",
        "minimum",
        "exclusiveMinimum",
        "maximum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
        "minLength",
    }:
        return [(path, f"expected {_describe(error.schema, root)}, got {short(error.instance)}")]
    return [(path, error.message)]


def load_json(path: Path, label: str) -> tuple[Any, list[str]]:
    """Parse a JSON file; on failure return (None, [one-line problem])."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), []
    except FileNotFoundError:
        return None, [f"{label}: not found"]
    except UnicodeDecodeError as exc:
        return None, [f"{label}: not UTF-8 text (byte {exc.start})"]
    except json.JSONDecodeError as exc:
        return None, [f"{label}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"]
    except OSError as exc:
        return None, [f"{label}: cannot be read: {exc.strerror or exc}"]
