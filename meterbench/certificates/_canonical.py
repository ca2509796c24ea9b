"""Canonical JSON: the exact bytes that are hashed and signed. Pure.

Keys sorted, no whitespace, UTF-8 (not \\u-escaped), no NaN or infinity, floats in Python's
shortest round-trip form. Parsing the bytes and serializing again gives the same bytes,
so anyone can recompute a record's hash from its JSON.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "record_file_text", "sha256_hex"]


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON value (sorted keys, compact, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def record_file_text(record: dict[str, Any]) -> str:
    """The one text form a record file has: its canonical JSON on one line, and a newline.

    A verifier parses the file, re-serializes it this way and compares: any edit that leaves
    the values the same (whitespace, escapes, a base64 padding bit) is caught too. (One line,
    not indented: Python's indenting encoder is ten times slower, and verification must be fast;
    ``python -m json.tool`` shows it indented.)"""
    return canonical_json(record).decode("utf-8") + "\n"
