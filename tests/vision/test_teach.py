"""Teaching a meter type's element offsets from a run (vision.teach) and the session glue (verify.teach).

Frames are rendered from the exact gear train with a pointer mounted 0.4 division off (and a
wheel rolled 0.2 step high) and read by the shipped ONNX models: teaching must recover the
pointer's offset, and a second run read with the taught offsets must give the error of
indication within 0.05 %-points, where the untaught reader flags almost every frame.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from meterbench.errors import ConfigError
from meterbench.vision import RegisterLayout, RegisterReader, default_register_layout, positions_from_volume
from meterbench.vision.teach import (
    MIN_OFFSET_STEPS,
    self_taught_reason,
    taught_offsets,
    teach_offsets,
)

POINTER = "Lx1"  # the 10 L/turn pointer
POINTER_OFFSET = 0.4  # divisions: 14.4 degrees off, more than the reader's 0.35-step carry tolerance
WHEEL = "m3x10"
WHEEL_OFFSET = 0.2
METER_ERROR = 0.012  # +1.2 %: the register runs fast; teaching must not depend on it


@pytest.fixture(scope="module")
def models():
    from meterbench.models import DialReader, DigitReader

    return DigitReader(), DialReader()


@pytest.fixture(scope="module")
def layout() -> RegisterLayout:
    return RegisterLayout.from_dict(default_register_layout("dials"))


def _true_offsets(layout: RegisterLayout) -> np.ndarray:
    names = [e.name for e in layout.elements]
    offsets = np.zeros(len(names))
    offsets[names.index(POINTER)] = POINTER_OFFSET
    offsets[names.index(WHEEL)] = WHEEL_OFFSET
    return offsets


def _render(layout: RegisterLayout, volumes_l: np.ndarray, seed: int) -> list[np.ndarray]:
    from meterbench.sim.register_render import RegisterRenderer

    renderer = RegisterRenderer(layout, rng=np.random.default_rng(seed))
    offsets = _true_offsets(layout)
    return [renderer.render((positions_from_volume(layout, v) + offsets) % 10.0) for v in volumes_l]


@pytest.fixture(scope="module")
def taught(layout, models):
    """Teach from a first run: 120 frames, register advancing 0.5..3 L between frames."""
    rng = np.random.default_rng(11)
    register_l = 12_345.0 + np.cumsum(rng.uniform(0.5, 3.0, 120))
    readings = RegisterReader(layout, *models).read_frames(_render(layout, register_l, seed=5))
    values = np.array([r.element_values for r in readings])
    confidences = np.array([r.element_confidence for r in readings])
    reference_l = (register_l - register_l[0]) / (1 + METER_ERROR)  # what the reference totaliser says
    return teach_offsets(layout, values, confidences, reference_l), readings


@pytest.mark.slow
def test_teach_recovers_a_pointer_mounted_off(layout, taught) -> None:
    result, readings = taught
    by_name = {e.name: e for e in result.elements}
    pointer = by_name[POINTER]
    assert pointer.applied
    assert pointer.offset_steps == pytest.approx(POINTER_OFFSET, abs=0.03)
    assert pointer.consistent_fraction_before < 0.3  # untaught, most frames break the carry
    assert pointer.consistent_fraction_after > 0.95
    assert pointer.carry_check["agree"] is True and pointer.carry_check["frame_pairs"] >= 5
    # the wheel rolled high is seen too (the digit model reads part-rolled wheels a little long)
    assert by_name[WHEEL].applied and 0.15 <= by_name[WHEEL].offset_steps <= 0.4
    # elements mounted true are left alone, and the finest is 0 by convention
    for name in ("Lx100", "Lx10"):
        assert abs(by_name[name].offset_steps) < MIN_OFFSET_STEPS and not by_name[name].applied
    assert result.elements[-1].offset_steps == 0.0 and not result.elements[-1].applied
    assert sum(r.ok for r in readings) < 0.3 * len(readings)


@pytest.mark.slow
def test_another_run_read_with_the_taught_offsets_gives_the_error_within_0_05_points(layout, models, taught) -> None:
    result, _ = taught
    register = default_register_layout("dials")
    register["taught"] = result.taught_block("first-run", "M1")
    offsets = taught_offsets(register)
    assert np.allclose(offsets, result.offsets, atol=1e-4)  # written to 4 decimals
    reference_advance_l = 100.0
    start_l = 55_555.55
    stop_l = start_l + reference_advance_l * (1 + METER_ERROR)
    frames = _render(layout, np.array([start_l] * 4 + [stop_l] * 4), seed=9)  # another run, another camera
    taught_reader = RegisterReader(layout, *models, element_offsets=offsets)
    plain_reader = RegisterReader(layout, *models)
    taught_readings = taught_reader.read_frames(frames)
    assert all(r.ok for r in taught_readings), [r.reason for r in taught_readings]
    start = np.median([r.volume_l for r in taught_readings[:4]])
    stop = np.median([r.volume_l for r in taught_readings[4:]])
    error_pct = ((stop - start) / reference_advance_l - 1) * 100
    assert error_pct == pytest.approx(METER_ERROR * 100, abs=0.05)
    assert not any(r.ok for r in plain_reader.read_frames(frames))  # without teaching: flagged, never guessed


def test_a_run_is_never_verified_with_corrections_taught_from_itself() -> None:
    register = default_register_layout("dials")
    assert self_taught_reason(register, "sim-1") == ""
    register["taught"] = {"session_id": "sim-1", "offsets_steps": {"Lx1": 0.4}}
    assert "taught from this very session (sim-1)" in self_taught_reason(register, "sim-1")
    assert self_taught_reason(register, "sim-2") == ""
    offsets = taught_offsets(register)
    names = [e["name"] for e in register["elements"]]
    assert offsets[names.index("Lx1")] == 0.4 and np.count_nonzero(offsets) == 1


@pytest.mark.parametrize(
    ("taught", "field"),
    [
        ({"offsets_steps": {"Lx1": 0.1}}, "register.taught"),
        ({"session_id": "s", "offsets_steps": {"nope": 0.1}}, "register.taught.offsets_steps"),
        ({"session_id": "s", "offsets_steps": {"Lx1": 1.5}}, "register.taught.offsets_steps.Lx1"),
        ({"session_id": "s", "offsets_steps": {"Lx1": "0.1"}}, "register.taught.offsets_steps.Lx1"),
    ],
)
def test_a_malformed_taught_block_is_one_line_naming_the_field(taught, field) -> None:
    register = default_register_layout("dials") | {"taught": taught}
    with pytest.raises(ConfigError, match=f"^{field.replace('.', '[.]')}: expected"):
        taught_offsets(register)


def test_teaching_ignores_the_slope_so_the_meter_error_changes_nothing(layout) -> None:
    """The offsets come from within-turn residuals only: scaling the reference track (any meter
    error) leaves every taught figure but the turn counts' input unchanged."""
    rng = np.random.default_rng(2)
    register_l = 2_000.0 + np.cumsum(rng.uniform(0.3, 2.0, 200))
    values = positions_from_volume(layout, register_l) + _true_offsets(layout) + rng.normal(0, 0.02, (200, 9))
    values %= 10.0
    confidences = np.ones_like(values)
    a = teach_offsets(layout, values, confidences, register_l)
    b = teach_offsets(layout, values, confidences, register_l / 1.05)
    assert np.array_equal(a.offsets, b.offsets)
    assert a.offsets[[e.name for e in layout.elements].index(POINTER)] == pytest.approx(POINTER_OFFSET, abs=0.01)
    assert [e.carry_check for e in a.elements] == [e.carry_check for e in b.elements]


@pytest.mark.slow
def test_layout_teach_on_a_simulated_session_writes_the_taught_layout(tmp_path) -> None:
    from meterbench.cli import main
    from meterbench.sim.water_meter import simulate_water_meter

    session = simulate_water_meter(tmp_path / "s", seed=1, meters=1, profile="short")
    out = tmp_path / "taught.json"
    assert main(["layout", "teach", str(session), "--instrument", "M1", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    manifest = json.loads((session / "session.json").read_text())
    RegisterLayout.from_dict(written)  # still a valid layout
    assert written["taught"]["session_id"] == manifest["session_id"]
    assert written["taught"]["instrument"] == "M1"
    assert set(written["taught"]["offsets_steps"]) == {e["name"] for e in written["elements"]}
    # the simulated pointers are mounted true: nothing of a pointer's size is taught
    assert all(abs(v) < 0.1 for v in written["taught"]["offsets_steps"].values())
    assert self_taught_reason(written, manifest["session_id"]).startswith("register corrections were taught")
    assert main(["layout", "teach", str(session), "--instrument", "M1", "--out", str(out)]) == 2  # never overwritten
    assert main(["layout", "teach", str(session), "--instrument", "M9", "--out", str(tmp_path / "x.json")]) == 2
