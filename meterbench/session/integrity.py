"""Tamper evidence of a session folder: a hash chain through each device log, and the hashes of
every file written when the session is closed.

Each line of ``devices/<id>.jsonl`` carries ``"prev"``: the SHA-256 (hex) of the bytes of the
line before it (without its newline); the first line's ``prev`` is :func:`chain_seed` of the
device id, so logs cannot be swapped between devices. Editing, inserting or deleting any line
but the last breaks the chain at the next line. Closing the session writes ``hashes.json``
(:data:`HASHES_FILE`) with the SHA-256 of every file, which also covers each log's last line;
it has room for a signature by the lab key (``"signature"``, added by whoever signs).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = [
    "CHAIN_FIELD",
    "HASHES_FILE",
    "HASHES_FORMAT",
    "chain_breaks",
    "chain_seed",
    "file_sha256",
    "hash_files",
    "hash_mismatches",
    "line_digest",
]

CHAIN_FIELD = "prev"
HASHES_FILE = "hashes.json"
HASHES_FORMAT = "meterbench-session-hashes"
_READ_CHUNK_BYTES = 1 << 20


def chain_seed(device_id: str) -> str:
    """The ``prev`` of a device log's first line (hex SHA-256 of the log's name)."""
    return hashlib.sha256(f"meterbench-session/devices/{device_id}.jsonl".encode()).hexdigest()


def line_digest(line: bytes) -> str:
    """The ``prev`` the next line must carry: hex SHA-256 of ``line`` (no trailing newline)."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(folder: Path) -> dict[str, str]:
    """SHA-256 of every regular file under ``folder`` (relative '/' paths, sorted), except
    :data:`HASHES_FILE` itself and temporary files (``*.tmp``); symbolic links are not followed."""
    hashes = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink() or not path.is_file() or relative == HASHES_FILE or path.name.endswith(".tmp"):
            continue
        hashes[relative] = file_sha256(path)
    return hashes


def chain_breaks(lines: list[bytes], device_id: str, label: str) -> list[str]:
    """Where a device log's hash chain breaks: one ``file:line`` problem per line whose ``prev``
    is not the hash of the line before it (an edited, inserted or deleted line). ``lines`` are
    the log's raw lines without newlines; lines without ``prev`` (older recordings) are not checked."""
    problems = []
    expected = chain_seed(device_id)
    for number, line in enumerate(lines, start=1):
        try:
            given = json.loads(line).get(CHAIN_FIELD)
        except (ValueError, AttributeError, RecursionError):
            given = None
        if given is not None and given != expected:
            problems.append(f"{label}:{number}: hash chain broken (line {number - 1} was changed, or lines removed)")
        expected = line_digest(line)
    return problems


def hash_mismatches(folder: Path, recorded: dict[str, str]) -> list[str]:
    """Files that differ from the hashes recorded at close (``hashes.json`` ``files``): changed,
    missing or added since the session was closed."""
    present = hash_files(folder)
    problems = [
        f"{path}: changed since the session was closed"
        for path in sorted(recorded)
        if path in present and present[path] != recorded[path]
    ]
    problems += [f"{path}: missing since the session was closed" for path in sorted(set(recorded) - set(present))]
    problems += [f"{path}: added after the session was closed" for path in sorted(set(present) - set(recorded))]
    return problems
