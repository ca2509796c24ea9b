"""The session format (version 1): its name, version, JSON Schemas and the schema check that
both the reader and the writer apply, so that nothing is written that the reader refuses.
Format: docs/session-format.md."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

from meterbench.protocols import strict_json_loads

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_MANIFEST_BYTES",
    "SCHEMA_DIR",
    "UnsafeFile",
    "field_path",
    "load_json",
    "open_inside",
    "parse_json",
    "read_inside",
    "read_json_bytes",
    "schema_problems",
    "short",
]

FORMAT_NAME = "meterbench-session"
FORMAT_VERSION = 1
SCHEMA_DIR = Path(__file__).parent / "schemas"
MAX_MANIFEST_BYTES = 10 * 2**20
"""session.json, truth.json: a manifest larger than this (10 MiB) is refused unread."""


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
    if keyword == "required":  # a conditional's "then" at the top names no properties: the root's say
        properties = error.schema.get("properties") or (root.get("properties", {}) if not path else {})
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


class UnsafeFile(Exception):
    """A file of the session cannot be read safely; the message (one line) says why."""


_FILE_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def open_inside(folder: Path, relpath: str, max_bytes: int) -> BinaryIO:
    """Open ``folder/relpath`` for reading in binary, only when it is a regular file of at most
    ``max_bytes`` bytes inside ``folder``: a FIFO, a device or a socket (reading one may block
    or never end), or a link leading out of the folder raises :class:`UnsafeFile`, never hangs."""
    root = folder.resolve()
    try:
        real = (root / relpath).resolve(strict=True)
    except FileNotFoundError:
        raise UnsafeFile("not found") from None
    except (OSError, RuntimeError) as exc:  # a link loop
        raise UnsafeFile(f"cannot be resolved ({exc})") from None
    if not real.is_relative_to(root):
        raise UnsafeFile("is a link to outside the session folder; not read")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)  # O_NONBLOCK: opening a FIFO never waits for a writer
    except OSError as exc:
        raise UnsafeFile(f"cannot be opened ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = f"is {_FILE_KINDS.get(stat.S_IFMT(info.st_mode), 'not a regular file')}, not a regular file; not read"
    elif info.st_size > max_bytes:
        problem = f"is {info.st_size} bytes, more than the {max_bytes} bytes allowed; not read"
    if problem is not None:
        os.close(fd)
        raise UnsafeFile(problem)
    return os.fdopen(fd, "rb")


def read_inside(folder: Path, relpath: str, max_bytes: int) -> bytes:
    """The bytes of ``folder/relpath`` (see :func:`open_inside`); a file that grows past
    ``max_bytes`` while being read raises :class:`UnsafeFile`."""
    with open_inside(folder, relpath, max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFile(f"grew to more than the {max_bytes} bytes allowed while read; not read")
    return data


def read_bounded(path: Path, max_bytes: int, error: type[Exception], expected: str) -> bytes:
    """The bytes of a file named by the user (a report, a certificate record), at most ``max_bytes``;
    else ``error`` with one line naming the file and what was expected there."""
    try:
        if path.stat().st_size > max_bytes:
            raise error(f"{path}: larger than {max_bytes // 2**20} MiB (expected {expected})")
        return path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: missing (expected {expected})") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read: {exc.strerror or exc}") from None


def parse_json(data: bytes, label: str) -> tuple[Any, list[str]]:
    """Strict JSON (:func:`meterbench.protocols.strict_json_loads`: no NaN/Infinity, no float
    overflow, no huge integers, no deep nesting) of a file's bytes; on failure (None, [one line])."""
    try:
        return strict_json_loads(data.decode("utf-8")), []
    except UnicodeDecodeError as exc:
        return None, [f"{label}: not UTF-8 text (byte {exc.start})"]
    except json.JSONDecodeError as exc:
        return None, [f"{label}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"]
    except ValueError as exc:
        return None, [f"{label}: not valid JSON: {exc}"]


def load_json(path: Path, label: str, max_bytes: int = MAX_MANIFEST_BYTES) -> tuple[Any, list[str]]:
    """Parse the JSON file ``path`` (a regular file of its folder, at most ``max_bytes``, strict JSON);
    on failure return (None, [one-line problem])."""
    data, problems = read_json_bytes(path, label, max_bytes)
    return (None, problems) if problems else parse_json(data, label)


def read_json_bytes(path: Path, label: str, max_bytes: int = MAX_MANIFEST_BYTES) -> tuple[bytes, list[str]]:
    """The bytes of ``path`` read as :func:`read_inside` does, or (b"", [one-line problem])."""
    try:
        return read_inside(path.parent, path.name, max_bytes), []
    except UnsafeFile as exc:
        return b"", [f"{label}: {exc}"]
    except OSError as exc:
        return b"", [f"{label}: cannot be read: {exc.strerror or exc}"]
