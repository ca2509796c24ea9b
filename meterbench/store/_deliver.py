"""Deliver runs to the store: check them, store each in its transaction, queue them when the store is down."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from meterbench.errors import MeterbenchError

from ._engine import StoreUnavailableError
from ._ingest import IngestResult, ParsedRun, Store, find_reports, load_run, parse_run
from ._spool import entry_files, queue_run, queued, remove_entry


def _fingerprint(trust) -> str | None:
    return getattr(trust, "fingerprint", None)


def _queue(url: str | None, run: ParsedRun, trust, why: str) -> IngestResult:
    entry = queue_run(url, run.files, _fingerprint(trust) or _spooled_fingerprint(run))
    return IngestResult(
        str(run.files.report_path), run.files.sha256, "queued", 0, f"{run.files.report_path}: queued in {entry} ({why})"
    )


def _spooled_fingerprint(run: ParsedRun) -> str | None:
    return next((r.get("key_fingerprint") for r in run.records), None)


def flush(url: str | None, trust=None, store: Store | None = None) -> list[IngestResult]:
    """Send the spooled runs of the store at ``url``; StoreUnavailableError if it is still down."""
    entries = queued(url)
    if not entries:
        return []
    own = store is None
    store = store or Store(url)
    results = []
    try:
        for entry in entries:
            files, fingerprint = entry_files(entry)
            run = parse_run(files, trust, fingerprint)
            result = store.ingest(run)
            remove_entry(entry)
            results.append(
                IngestResult(
                    files.source,
                    result.sha256,
                    result.status,
                    result.points,
                    f"spool {entry.name[:12]}: "
                    f"{files.source}: {result.status}" + (f", {result.points} points" if result.points else ""),
                )
            )
    finally:
        if own:
            store.close()
    return results


def ingest_paths(
    url: str | None, paths: Iterable[Path], trust=None, timeout_s: float | None = None
) -> tuple[list[IngestResult], list[str]]:
    """Ingest run/batch folders or report.json files: (results, refusals — one line per refused run).

    Runs are checked first; each good one is stored in its own transaction (the spool is sent
    first). When the store cannot be reached or written, the remaining good runs are queued."""
    checked: list[ParsedRun] = []
    refused: list[str] = []
    for path in find_reports(paths):
        try:
            checked.append(parse_run(load_run(path), trust))
        except MeterbenchError as exc:
            refused.append(str(exc))
    results: list[IngestResult] = []
    try:
        store = Store(url, timeout_s)
    except StoreUnavailableError as exc:
        return [_queue(url, run, trust, str(exc)) for run in checked], refused
    try:
        results += flush(url, trust, store)
        for index, run in enumerate(checked):
            try:
                results.append(store.ingest(run))
            except StoreUnavailableError as exc:
                results += [_queue(url, later, trust, str(exc)) for later in checked[index:]]
                break
    except StoreUnavailableError as exc:  # while sending the spool: the new runs join it
        results += [_queue(url, run, trust, str(exc)) for run in checked]
    finally:
        store.close()
    return results, refused


def ingest_or_queue(url: str | None, run_folder: Path, trust=None) -> IngestResult:
    """Store the run just written in ``run_folder`` (the live bench, batch), or queue it if the store is down."""
    results, refused = ingest_paths(url, [Path(run_folder)], trust)
    if refused:
        from meterbench.errors import ConfigError

        raise ConfigError(refused[0])
    return results[-1]  # the spool's runs come first


def storing_progress(
    url: str, out_dir: Path, progress: Callable[[int, int, str], None]
) -> Callable[[int, int, str], None]:
    """batch --db: a progress callback that first stores (or queues) each run folder ``out_dir/label`` as
    it finishes, its one-line outcome on stderr (a refused run is said, the batch goes on)."""

    def store_then_progress(done: int, total: int, label: str) -> None:
        if (out_dir / label / "report.json").is_file():
            try:
                print(ingest_or_queue(url, out_dir / label).message, file=sys.stderr)
            except MeterbenchError as exc:
                print(f"meterbench batch: --db: {exc}", file=sys.stderr)
        progress(done, total, label)

    return store_then_progress
