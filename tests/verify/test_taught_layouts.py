"""Layouts taught on the bench (`layout teach`) in verification: their offsets are applied, and a
session is never verified with corrections taught from itself (docs/layouts.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from meterbench.errors import SessionError
from meterbench.verify import run_session
from meterbench.verify.run import RegisterReaders

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "water-meter-short"


def _taught(register: dict, session_id: str, offsets: dict[str, float]) -> dict:
    names = [e["name"] for e in register["elements"]]
    return {**register, "taught": {"session_id": session_id, "offsets_steps": {n: offsets.get(n, 0.0) for n in names}}}


def test_the_readers_apply_a_taught_layouts_offsets() -> None:
    manifest = json.loads((SAMPLE / "session.json").read_text())
    instrument = manifest["instruments"][0]
    name = instrument["register"]["elements"][-2]["name"]
    readers = RegisterReaders()
    reader = readers({**instrument, "register": _taught(instrument["register"], "another-run", {name: 0.25})})
    expected = np.zeros(len(instrument["register"]["elements"]))
    expected[-2] = 0.25
    assert np.array_equal(reader.element_offsets, expected)
    assert not readers(instrument).element_offsets.any()
    bad = _taught(instrument["register"], "another-run", {name: 2.0})
    with pytest.raises(SessionError, match=r"instrument 'M1': register\.taught\.offsets_steps\.\S+: expected a number"):
        readers({**instrument, "register": bad})


@pytest.mark.slow
def test_a_session_is_never_verified_with_corrections_taught_from_itself(tmp_path) -> None:
    session = tmp_path / "s"
    shutil.copytree(SAMPLE, session)
    (session / "hashes.json").unlink(missing_ok=True)  # edited after close
    manifest = json.loads((session / "session.json").read_text())
    own = manifest["session_id"]
    manifest["instruments"][0]["register"] = _taught(manifest["instruments"][0]["register"], own, {})
    (session / "session.json").write_text(json.dumps(manifest))
    report = run_session(session, tmp_path / "out")
    first, *others = report["instruments"]
    assert first["verdict"] == "inconclusive"
    assert all(p["verdict"] == "inconclusive" for p in first["points"])
    assert all(f"taught from this very session ({own})" in p["reason"] for p in first["points"])
    for instrument in others:  # the other meters are verified as before
        assert all("taught" not in (p["reason"] or "") for p in instrument["points"])
        assert any(p["verdict"] in ("pass", "fail") for p in instrument["points"])
