"""session.json names its bench, technician and reference standards by the lab file's ids (all optional)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meterbench.errors import SessionError
from meterbench.session import SessionRecorder, load_session
from tests.session.session_helpers import record_session, water_meter_manifest


def _named_manifest() -> dict:
    manifest = water_meter_manifest()
    manifest.update(bench_id="bench-A", technician_id="tech-01")
    manifest["reference_instruments"][0]["standard_id"] = "ref-meter-1"
    manifest["reference_instruments"].append({**manifest["reference_instruments"][0], "id": "ref2"})
    return manifest


def test_the_ids_are_written_and_read(tmp_path: Path) -> None:
    folder = record_session(tmp_path / "s", manifest=_named_manifest())
    with load_session(folder) as session:
        assert (session.bench_id, session.technician_id) == ("bench-A", "tech-01")
        assert session.reference_standard_ids == ["ref-meter-1"]  # two instruments, one standard: once


def test_an_old_session_without_them_stays_valid(tmp_path: Path) -> None:
    folder = record_session(tmp_path / "s")
    manifest = json.loads((folder / "session.json").read_text())
    assert "technician_id" not in manifest and "standard_id" not in manifest["reference_instruments"][0]
    with load_session(folder) as session:
        assert session.technician_id is None and session.reference_standard_ids == []
        assert not session.tampered


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda m: m.update(technician_id="tech 01"), "session.json: technician_id: expected an id of letters"),
        (lambda m: m.update(technician_id=7), "session.json: technician_id: expected"),
        (
            lambda m: m["reference_instruments"][0].update(standard_id=""),
            "session.json: reference_instruments[0].standard_id: expected an id of letters",
        ),
    ],
    ids=["space", "number", "empty-standard"],
)
def test_a_bad_id_is_refused_before_anything_is_written(tmp_path: Path, edit, problem: str) -> None:
    manifest = _named_manifest()
    edit(manifest)
    with pytest.raises(SessionError) as info:
        SessionRecorder.create(tmp_path / "s", manifest)
    assert any(line.startswith(problem) for line in info.value.problems), info.value.problems
    assert not (tmp_path / "s").exists()
