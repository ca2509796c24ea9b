"""The lab's certificate register: consecutive numbers and a hash-chained, signed audit log.

The register is a folder (LAB.toml ``[lab] records``) holding

- ``audit.jsonl``: one JSON object per line, append-only. Each entry has ``seq`` (1, 2, ...),
  ``prev`` (the previous entry's ``hash``; 64 zeros for the first), ``hash`` (SHA-256 of the
  entry's canonical JSON without ``hash`` and ``signature``) and ``signature`` (the lab key's
  Ed25519 signature of that hash). Events: ``certificate-number-reserved`` (before anything
  is written), ``certificate-issued`` (after the files are in place), ``config-first-seen`` /
  ``config-changed`` (lab file, signing key, software, each model and MPE table seen by a
  certified run: old and new hash, who) and ``torn-write-discarded``.
- ``certificates/certificate-<n>.json``: the lab's copy of every signed record (``verify --code``).
- ``lock``: taken with ``flock`` for the whole of one ``certify``: two certify calls never get the
  same number.

A number is reserved by an fsynced log line before its certificate exists, so it is never
reused; a crash after the reservation leaves a reserved-but-not-issued number: a visible gap.
A line cut short by a crash (no final newline) was never committed: it is cut off under the
lock and the cut recorded as an event. ``audit_problems`` is pure (bytes in, problems out).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterbench.errors import OutputError

from ._canonical import canonical_json, sha256_hex

__all__ = ["AUDIT_FILE", "LabRegister", "RegisterEntry", "audit_problems", "register_gaps"]

AUDIT_FILE = "audit.jsonl"
_RECORDS_DIR = "certificates"
_GENESIS = "0" * 64
_ENTRY_KEYS = (
    "seq",
    "time_utc",
    "event",
    "what",
    "old_hash",
    "new_hash",
    "who",
    "details",
    "prev",
    "hash",
    "signature",
)
_RECORD_NAME = re.compile(r"^certificate-(\d+)\.json$")


def _entry_hash(entry: dict[str, Any]) -> str:
    return sha256_hex(canonical_json({k: v for k, v in entry.items() if k not in ("hash", "signature")}))


@dataclass(frozen=True)
class RegisterEntry:
    """One parsed audit-log line."""

    seq: int
    event: str
    what: str
    old_hash: str | None
    new_hash: str | None
    details: dict[str, Any]
    hash: str


def audit_problems(data: bytes, verify: Callable[[bytes, bytes], bool] | None = None) -> list[str]:
    """Every edit, deletion, insertion or reordering of audit-log lines, one message each (empty: intact).

    Checks per line: valid JSON in canonical form, seq consecutive from 1, prev = previous hash,
    hash = SHA-256 of the entry; with ``verify`` (the lab's public key) also each signature.
    A truncation of the last lines is found against the lab's stored records (``LabRegister.problems``)."""
    problems = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        problems.append(f"line {len(lines)}: incomplete last line (no newline: a crash while writing?)")
    prev = _GENESIS
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            problems.append(f"line {number}: not a JSON object (edited or damaged)")
            prev = None
            continue
        if not isinstance(entry, dict) or set(entry) != set(_ENTRY_KEYS):
            problems.append(f"line {number}: not an audit entry (expected the keys {', '.join(_ENTRY_KEYS)})")
            prev = None
            continue
        if canonical_json(entry) != line:
            problems.append(f"line {number}: not in canonical form (edited)")
        if entry["seq"] != number:
            problems.append(
                f"line {number}: seq {entry['seq']!r} (expected {number}: a line deleted, inserted or moved)"
            )
        if prev is not None and entry["prev"] != prev:
            problems.append(f"line {number}: prev does not match line {number - 1}'s hash (chain broken)")
        try:
            recomputed = _entry_hash(entry)
        except (TypeError, ValueError):
            recomputed = None
        if entry["hash"] != recomputed:
            problems.append(f"line {number}: hash does not match its contents (edited)")
        elif verify is not None:
            signature = None
            if isinstance(entry["signature"], str):
                try:
                    signature = base64.b64decode(entry["signature"], validate=True)
                except (binascii.Error, ValueError):
                    signature = None
            if signature is None or not verify(signature, entry["hash"].encode("ascii")):
                problems.append(f"line {number}: signature does not match (not written with the lab's key)")
        prev = entry["hash"] if isinstance(entry["hash"], str) else None
    return problems


def register_gaps(entries: list[RegisterEntry]) -> list[str]:
    """Certificate numbers reserved but never issued (a crash), or missing from 1..max, one line each."""
    reserved = {e.details.get("number"): e for e in entries if e.event == "certificate-number-reserved"}
    issued = {e.details.get("number") for e in entries if e.event == "certificate-issued"}
    numbers = [n for n in reserved if isinstance(n, int)]
    gaps = []
    for n in range(1, max(numbers, default=0) + 1):
        if n not in reserved:
            gaps.append(f"certificate number {n}: never reserved (numbering skipped it)")
        elif n not in issued:
            gaps.append(f"certificate number {n}: reserved (audit seq {reserved[n].seq}) but never issued")
    return gaps


def _now_utc() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class LabRegister:
    """The lab's register folder. Use ``with register.locked(sign, who):`` for any change."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.audit_path = self.folder / AUDIT_FILE
        self.records_dir = self.folder / _RECORDS_DIR
        self._sign: Callable[[bytes], bytes] | None = None
        self._who = ""
        self._entries: list[RegisterEntry] | None = None
        self._last_hash = _GENESIS

    # ------------------------------------------------------------ reading (no lock needed)

    def read_entries(self) -> list[RegisterEntry]:
        """The audit log's entries as parsed (an absent log is empty); lines that do not parse are skipped."""
        try:
            data = self.audit_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise OutputError(f"{self.audit_path}: cannot be read: {exc.strerror or exc}") from None
        return self._parse(data)

    @staticmethod
    def _parse(data: bytes) -> list[RegisterEntry]:
        """The well-formed entries of a log's bytes (audit_problems reports the others)."""
        entries = []
        for line in data.split(b"\n"):
            try:
                e = json.loads(line)
                entry = RegisterEntry(
                    e["seq"], e["event"], e["what"], e["old_hash"], e["new_hash"], e["details"], e["hash"]
                )
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(entry.details, dict) and isinstance(entry.event, str) and isinstance(entry.what, str):
                entries.append(entry)
        return entries

    def find_code(self, code: str) -> Path | None:
        """The stored record issued with verification ``code`` (printed form), or None."""
        for entry in self.read_entries():
            if entry.event == "certificate-issued" and entry.details.get("verification_code") == code:
                name = str(entry.details.get("record", ""))
                if _RECORD_NAME.match(name):
                    return self.records_dir / name
        return None

    def problems(self, verify: Callable[[bytes, bytes], bool] | None = None) -> list[str]:
        """audit_problems of the log, plus stored records the log does not list as issued (a cut-off log)."""
        try:
            data = self.audit_path.read_bytes()
        except FileNotFoundError:
            data = b""
        problems = [f"{self.audit_path}: {p}" for p in audit_problems(data, verify)]
        issued = {e.details.get("record") for e in self._parse(data) if e.event == "certificate-issued"}
        if self.records_dir.is_dir():
            for path in sorted(self.records_dir.iterdir()):
                if _RECORD_NAME.match(path.name) and path.name not in issued:
                    problems.append(f"{path}: stored record not in the audit log as issued (log cut off or edited)")
        return problems

    # ------------------------------------------------------------ changing (under the lock)

    @contextmanager
    def locked(self, sign: Callable[[bytes], bytes], who: str) -> Iterator[LabRegister]:
        """Hold the register's lock (flock, blocking) while changing it; entries are signed with ``sign``."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.records_dir.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise OutputError(f"{self.folder}: cannot use the certificate register: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._sign, self._who = sign, who
            self._load_for_append()
            yield self
        finally:
            self._sign, self._entries = None, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _load_for_append(self) -> None:
        try:
            data = self.audit_path.read_bytes()
        except FileNotFoundError:
            data = b""
        torn = b""
        if data and not data.endswith(b"\n"):  # a line cut short by a crash: never committed
            cut = data.rfind(b"\n") + 1
            data, torn = data[:cut], data[cut:]
            os.truncate(self.audit_path, cut)
        problems = audit_problems(data)
        if problems:
            raise OutputError(f"{self.audit_path}: the audit log is damaged ({problems[0]}); nothing was certified")
        self._entries = self._parse(data)
        self._last_hash = self._entries[-1].hash if self._entries else _GENESIS
        if torn:
            self.append("torn-write-discarded", "audit log", None, sha256_hex(torn), {"bytes": len(torn)})

    @property
    def entries(self) -> list[RegisterEntry]:
        """The entries, while locked."""
        if self._entries is None:
            raise RuntimeError("LabRegister.entries used outside locked()")
        return self._entries

    def append(
        self, event: str, what: str, old_hash: str | None, new_hash: str | None, details: dict[str, Any]
    ) -> RegisterEntry:
        """Append one signed, chained entry and fsync it before returning."""
        if self._sign is None or self._entries is None:
            raise RuntimeError("LabRegister.append used outside locked()")
        entry: dict[str, Any] = {
            "seq": len(self._entries) + 1,
            "time_utc": _now_utc(),
            "event": event,
            "what": what,
            "old_hash": old_hash,
            "new_hash": new_hash,
            "who": self._who,
            "details": details,
            "prev": self._last_hash,
        }
        entry["hash"] = _entry_hash(entry)
        entry["signature"] = base64.b64encode(self._sign(entry["hash"].encode("ascii"))).decode("ascii")
        line = canonical_json(entry) + b"\n"
        try:
            fd = os.open(self.audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise OutputError(f"{self.audit_path}: cannot append: {exc.strerror or exc}") from None
        parsed = RegisterEntry(entry["seq"], event, what, old_hash, new_hash, details, entry["hash"])
        self._entries.append(parsed)
        self._last_hash = entry["hash"]
        return parsed

    def reserve_number(self, details: dict[str, Any]) -> int:
        """The next certificate number, reserved in the log (never given twice, never reused)."""
        numbers = [
            n
            for e in self.entries
            if e.event == "certificate-number-reserved" and isinstance(n := e.details.get("number"), int)
        ]
        number = max(numbers, default=0) + 1
        stored = [int(m.group(1)) for p in self.records_dir.iterdir() if (m := _RECORD_NAME.match(p.name))]
        if stored and max(stored) >= number:
            raise OutputError(
                f"{self.records_dir}: certificate-{max(stored)}.json is stored but the audit log reserved numbers "
                f"only up to {number - 1}: the log was cut off or replaced; nothing was certified"
            )
        self.append("certificate-number-reserved", f"certificate {number}", None, None, {"number": number, **details})
        return number

    def note_config(self, what: str, new_hash: str, details: dict[str, Any] | None = None) -> RegisterEntry | None:
        """Log ``what`` (lab file, key, model, table) when first seen or when its hash changed; the entry or None."""
        last = next((e for e in reversed(self.entries) if e.what == what and e.event.startswith("config-")), None)
        if last is None:
            return self.append("config-first-seen", what, None, new_hash, details or {})
        if last.new_hash != new_hash:
            return self.append("config-changed", what, last.new_hash, new_hash, details or {})
        return None

    def store_record(self, number: int, text: str) -> Path:
        """Write the lab's copy of record ``number`` (exclusive create, fsynced)."""
        path = self.records_dir / f"certificate-{number}.json"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise OutputError(f"{path}: cannot store the record: {exc.strerror or exc}") from None
        return path
