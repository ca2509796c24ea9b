"""The db commands, certificates through the store (verify --code --db) and the dashboard, end to end."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

from tests.conftest import require_module
from tests.store.conftest import write_runs

require_module("sqlalchemy", "store")

from meterbench.cli import main  # noqa: E402


def test_db_ingest_query_and_report(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_runs(tmp_path / "batch", 30)
    assert main(["db", "ingest", str(tmp_path / "batch"), "--db", store_url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "30 stored, 0 already stored, 0 queued, 0 refused"
    assert main(["db", "ingest", str(tmp_path / "batch"), "--db", store_url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 stored, 30 already stored, 0 queued, 0 refused"
    assert main(["db", "query", "rates", "--by", "month", "--json", "--db", store_url]) == 0
    months = json.loads(capsys.readouterr().out)
    assert [m["month"] for m in months] == ["2026-01"] and months[0]["n"] == sum(
        len(json.loads((f / "report.json").read_text())["instruments"]) for f in (tmp_path / "batch").iterdir()
    )
    assert main(["db", "query", "drift", "--json", "--db", store_url, "--min-runs", "2"]) == 0
    charts = json.loads(capsys.readouterr().out)
    bench_a = [c for c in charts if c["scope"] == "bench" and c["id"] == "bench-A" and c["point"] == "Q3"]
    assert [c["serial"] for c in bench_a] == ["CHECK-bench-A"]
    checks = [json.loads((tmp_path / "batch" / f"run-{i:04d}" / "report.json").read_text()) for i in (0, 15)]
    expected = [i["points"][0]["error_pct"] for r in checks for i in r["instruments"] if i["serial"] == "CHECK-bench-A"]
    assert bench_a[0]["values"] == expected and bench_a[0]["centre"] == pytest.approx(sum(expected) / 2)
    assert bench_a[0]["ucl"] == pytest.approx(sum(expected) / 2 + 2.66 * abs(expected[1] - expected[0]))
    assert main(["db", "report", "--db", store_url, "--out", str(tmp_path / "dash")]) == 0
    page = (tmp_path / "dash" / "index.html").read_text(encoding="utf-8")
    assert page.count("<svg") >= 5 and "Wilson" in page and "DN15 single-jet" in page
    assert not re.search(r"(src|href)=['\"]?https?:", page) and "<script" not in page  # self-contained
    assert json.loads((tmp_path / "dash" / "data.json").read_text())["rates"]["bench"][0]["bench"] == "bench-A"


def test_db_ingest_refuses_a_corrupt_report_in_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MB_SPOOL_DIR", str(tmp_path / "spool"))
    [run] = write_runs(tmp_path, 1)
    (run / "report.json").write_bytes(b"\xff\xfe not json")
    assert main(["db", "ingest", str(run), "--db", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"refused: {run / 'report.json'}: not UTF-8 text (expected a report.json)"]


def test_db_ingest_queues_when_the_store_is_down_and_flush_sends(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MB_SPOOL_DIR", str(tmp_path / "spool"))
    runs = write_runs(tmp_path / "runs", 2)
    down = "postgresql+psycopg://nobody@127.0.0.1:9/none"
    assert main(["db", "ingest", *map(str, runs), "--db", down]) == 1
    out = capsys.readouterr().out
    assert out.count("queued in") == 2 and out.splitlines()[-1] == "0 stored, 0 already stored, 2 queued, 0 refused"
    assert main(["db", "flush", "--db", down]) == 2  # still down: one line, exit 2
    assert "unavailable" in capsys.readouterr().err


def _certified_run(tmp_path: Path):
    """(lab, run folder, report, certificates issued) of a synthetic 2-meter report certified by a test lab."""
    from meterbench.certificates import certify_run
    from meterbench.sim.store_reports import synthetic_report
    from tests.certificates.conftest import make_lab

    lab = make_lab(tmp_path / "lab")
    run = tmp_path / "run"
    run.mkdir()
    report = synthetic_report(1, meters=2) | {
        "bench_id": "sim-bench",
        "technician_id": "tech-01",
        "reference_standard_ids": ["ref-meter-1"],
    }
    (run / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    issued = certify_run(run, lab.key, lab.toml, issued_utc="2026-01-10T10:00:00Z")
    return lab, run, report, issued


@pytest.mark.slow
def test_certificates_resolve_through_the_store(store_url: str, tmp_path: Path, capsys) -> None:
    require_module("cryptography", "cert")
    lab, run, report, issued = _certified_run(tmp_path)
    assert main(["db", "ingest", str(run), "--db", store_url]) == 2  # certificates but no key to check them
    assert "cannot check its signature" in capsys.readouterr().err
    assert main(["db", "ingest", str(run), "--db", store_url, "--lab", str(lab.toml)]) == 0
    capsys.readouterr()
    code = issued[0].verification_code
    assert main(["verify", "--code", code, "--db", store_url, "--lab", str(lab.toml)]) == 0
    assert capsys.readouterr().out.startswith("valid: ")
    assert main(["verify", "--code", code, "--db", store_url]) == 1  # no key: the signature cannot be trusted
    assert "unknown key" in capsys.readouterr().out
    other = "00000-00000-0"
    assert main(["verify", "--code", other, "--db", store_url, "--lab", str(lab.toml)]) == 1
    assert capsys.readouterr().out.startswith("NOT valid: ")
    # a report edited after signing: the ingest refuses it (its SHA-256 is not the signed one)
    edited = tmp_path / "edited"
    edited.mkdir()
    for path in run.glob("certificate-*.json"):
        (edited / path.name).write_bytes(path.read_bytes())
    (edited / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")  # same data, other bytes
    assert main(["db", "ingest", str(edited), "--db", store_url, "--lab", str(lab.toml)]) == 2
    assert "is not the report_sha256" in capsys.readouterr().err


def test_batch_db_stores_each_run_folder_as_it_finishes(tmp_path: Path, capsys, monkeypatch) -> None:
    from meterbench.store import storing_progress

    monkeypatch.setenv("MB_SPOOL_DIR", str(tmp_path / "spool"))
    write_runs(tmp_path / "out", 2)
    seen = []
    callback = storing_progress(str(tmp_path / "s.sqlite"), tmp_path / "out", lambda *a: seen.append(a))
    callback(1, 2, "run-0000")
    callback(2, 2, "run-0001")
    callback(2, 2, "run-0001")  # told twice: stored once
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{tmp_path / 'out' / 'run-0000' / 'report.json'}: stored, ")
    assert err[1].startswith(f"{tmp_path / 'out' / 'run-0001' / 'report.json'}: stored, ")
    assert err[2].startswith(f"{tmp_path / 'out' / 'run-0001' / 'report.json'}: already stored")
    assert seen == [(1, 2, "run-0000"), (2, 2, "run-0001"), (2, 2, "run-0001")]


def test_batch_db_on_a_real_session_stores_its_points(store_url: str, tmp_path: Path, capsys, monkeypatch) -> None:
    """The real command: batch a recorded tank session with --db, then the store holds exactly its points."""
    monkeypatch.setenv("MB_SPOOL_DIR", str(tmp_path / "spool"))
    sample = Path(__file__).resolve().parents[2] / "samples" / "tank-sim-seed2"
    out = tmp_path / "batch"
    assert main(["batch", str(sample), "--out", str(out), "--db", store_url]) == 0
    assert ": stored, " in capsys.readouterr().err
    (report_path,) = out.glob("*/report.json")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    errors = [p["error_pct"] for i in report["instruments"] for p in i["points"]]
    assert main(["db", "ingest", str(out), "--db", store_url]) == 0  # a second time: nothing new
    assert "0 stored, 1 already stored, 0 queued, 0 refused" in capsys.readouterr().out
    assert main(["db", "query", "tanks", "--db", store_url, "--json"]) == 0
    (tanks,) = json.loads(capsys.readouterr().out)
    assert tanks["n"] == len(report["instruments"]) == 1
    assert tanks["fail"]["count"] == sum(i["verdict"] == "fail" for i in report["instruments"])
    assert tanks["median_error_pct"] == pytest.approx(statistics.median(errors), abs=1e-6)
    assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").iterdir())


@pytest.mark.slow
def test_a_certificate_record_with_a_broken_signature_is_refused_and_nothing_stored(
    store_url: str, tmp_path: Path, capsys
) -> None:
    require_module("cryptography", "cert")
    from meterbench.store import Store

    lab, run, _, _ = _certified_run(tmp_path)
    [record_path] = sorted(run.glob("certificate-*.json"))[:1]
    record = json.loads(record_path.read_text(encoding="utf-8"))
    record["certificate"]["instrument"]["serial"] = "FORGED-1"  # signed bytes changed, signature kept
    record_path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    assert main(["db", "ingest", str(run), "--db", store_url, "--lab", str(lab.toml)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"refused: {record_path}: verification code does not match the record's contents"
        " (the record was changed after sealing)"
    ]
    from sqlalchemy import func, select

    from meterbench.store._schema import certificates, runs

    with Store(store_url) as store, store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(runs)).scalar_one() == 0
        assert connection.execute(select(func.count()).select_from(certificates)).scalar_one() == 0
