"""The local spool: runs that could not reach the store wait here, then go in on the next ingest or flush.

Location: ``$MB_SPOOL_DIR``, else ``<data home>/spool`` (``~/.local/share/meterbench/spool``), one
sub-folder per store (a hash of its URL without password, so one store's queue never goes to
another), one entry per run named by its report SHA-256: a copy of the report.json and the
certificate records (so a run folder deleted meanwhile loses nothing) and ``entry.json`` (source,
store URL without password, the key fingerprint the certificates were checked with). An entry is
written in a temporary folder and renamed into place (atomic); it is removed only after its run
is stored (or found already stored), so a crash in between sends it again, and the store skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from meterbench.errors import OutputError

from ._engine import data_home, resolve_db_url, safe_url
from ._ingest import REPORT_FILE, RunFiles

SPOOL_ENV = "MB_SPOOL_DIR"
_ENTRY = "entry.json"


def spool_dir(url: str | None) -> Path:
    """The spool folder of the store at ``url``."""
    base = Path(os.environ.get(SPOOL_ENV) or data_home() / "spool")
    key = hashlib.sha256(safe_url(resolve_db_url(url)).encode()).hexdigest()[:16]
    return base / key


def queue_run(url: str | None, files: RunFiles, trusted_fingerprint: str | None) -> Path:
    """Put a checked run in the store's spool (no-op when it is queued already); the entry's folder."""
    folder = spool_dir(url)
    entry = folder / files.sha256
    if (entry / _ENTRY).is_file():
        return entry
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=".incoming-", dir=folder))
        (temporary / REPORT_FILE).write_bytes(files.report_raw)
        for name, raw in files.certificate_raws.items():
            (temporary / name).write_bytes(raw)
        if files.session_raw is not None:
            (temporary / "session.json").write_bytes(files.session_raw)
        meta = {
            "source": files.source,
            "report_sha256": files.sha256,
            "store": safe_url(resolve_db_url(url)),
            "trusted_fingerprint": trusted_fingerprint,
        }
        (temporary / _ENTRY).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for path in temporary.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, entry)
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot queue {files.report_path} in the spool: {exc.strerror or exc}") from None
    return entry


def queued(url: str | None) -> list[Path]:
    """The spool entries waiting for the store at ``url``, oldest first."""
    folder = spool_dir(url)
    if not folder.is_dir():
        return []
    entries = [p for p in folder.iterdir() if p.is_dir() and (p / _ENTRY).is_file()]
    return sorted(entries, key=lambda p: (p.stat().st_mtime, p.name))


def entry_files(entry: Path) -> tuple[RunFiles, str | None]:
    """The run held by a spool entry and the key fingerprint its certificates were checked with."""
    meta = json.loads((entry / _ENTRY).read_text(encoding="utf-8"))
    certs = {p.name: p.read_bytes() for p in sorted(entry.glob("certificate-*.json"))}
    session = entry / "session.json"
    files = RunFiles(
        entry / REPORT_FILE,
        (entry / REPORT_FILE).read_bytes(),
        certs,
        session.read_bytes() if session.is_file() else None,
        meta.get("source") or str(entry),
    )
    if files.sha256 != meta.get("report_sha256") or files.sha256 != entry.name:
        raise OutputError(f"{entry}: spooled report.json does not match its recorded SHA-256 (spool damaged)")
    return files, meta.get("trusted_fingerprint")


def remove_entry(entry: Path) -> None:
    """Remove a spool entry once its run is in the store."""
    shutil.rmtree(entry, ignore_errors=True)
