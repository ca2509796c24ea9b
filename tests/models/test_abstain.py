"""Abstention: readers say "cannot read" (readable false, with a reason) instead of a confident wrong number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from meterbench.errors import ConfigError
from meterbench.models import DialReader, DigitReader
from meterbench.models._calibrate import fit_abstention, fit_temperature
from meterbench.models._metrics import abstain_metrics, expected_calibration_error
from meterbench.models._runtime import MODEL_DIR, Abstention, decode_logits
from meterbench.models.dial_geometry import DialGeometry, disagrees, read_dial_geometry
from meterbench.models.training.negatives import NEGATIVE_KINDS, negative_crops
from meterbench.models.training.train import DATA_ROOT

from .conftest import labelled_dev_crops

REPO = Path(__file__).resolve().parents[2]
# The reported non-wheel set of benchmarks/crossval.py uses seed 1; these tests draw other images.
TEST_SEED = 7


@pytest.fixture(scope="module")
def digit_reader():
    return DigitReader()


@pytest.fixture(scope="module")
def dial_reader():
    return DialReader()


def _one_hot_logits(tenths: list[int], scale: float = 20.0, reject: float | None = None) -> np.ndarray:
    logits = np.zeros((len(tenths), 100 if reject is None else 101))
    logits[np.arange(len(tenths)), tenths] = scale
    if reject is not None:
        logits[:, 100] = reject
    return logits


def test_reject_class_makes_a_crop_unreadable_but_keeps_its_value():
    logits = _one_hot_logits([37, 37], reject=None)
    logits = np.hstack([logits, [[0.0], [25.0]]])
    value, confidence, probs, reject, readable, reason = decode_logits(logits, Abstention())
    np.testing.assert_allclose(value, [3.7, 3.7], atol=1e-6)
    assert probs.shape == (2, 100)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert reject[0] < 1e-6 and reject[1] > 0.99
    assert readable.tolist() == [True, False]
    assert reason[0] == "" and reason[1].startswith("not a wheel")


def test_blank_crop_and_torn_model_are_unreadable_with_their_reason():
    logits = np.vstack([_one_hot_logits([50]), np.zeros((1, 100)), _one_hot_logits([50])])
    _, confidence, _, _, readable, reason = decode_logits(logits, Abstention(), contrast=np.array([30.0, 30.0, 0.5]))
    assert confidence[1] == pytest.approx(0.03, abs=1e-6)  # 3 of 100 equal classes within ±0.15
    assert readable.tolist() == [True, False, False]
    assert reason[1].startswith("unsure (confidence 0.03")
    assert reason[2].startswith("blank crop (contrast 0.5")


def test_temperature_softens_an_overconfident_model():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 100, 400)
    predicted = labels.copy()
    predicted[:100] = (labels[:100] + 30) % 100  # a quarter read 3 units off, as confidently as the rest
    logits = _one_hot_logits(predicted.tolist(), scale=12.0) + rng.normal(0, 0.3, (400, 100))
    temperature = fit_temperature(logits, labels)
    assert temperature > 1.5
    value, confidence, *_ = decode_logits(logits, Abstention(temperature=temperature))
    hit = np.abs(value - labels / 10) < 0.2
    assert hit.mean() == pytest.approx(0.75)
    assert expected_calibration_error(confidence, hit) < expected_calibration_error(
        decode_logits(logits, Abstention())[1], hit
    )
    abstention = fit_abstention(logits, labels, 0.02)
    assert abstention.temperature == pytest.approx(temperature, rel=1e-3)
    _, calibrated, *_ = decode_logits(logits, abstention)
    assert np.mean(calibrated < abstention.min_confidence) == pytest.approx(0.02, abs=0.005)


def test_expected_calibration_error_of_known_bins():
    confidence = np.array([0.95] * 10 + [0.55] * 10)
    hit = np.array([1] * 10 + [1] * 5 + [0] * 5)
    assert expected_calibration_error(confidence, hit) == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)


def test_abstain_metrics_count_silent_misreads():
    value = np.array([1.0, 5.0, 5.0, 9.95])
    readable = np.array([True, True, False, True])
    f = abstain_metrics(value, readable, np.array([10, 10, 10, 0]))
    assert f["wrong"] == 0.5 and f["wrong_readable"] == 0.25 and f["wrong_caught"] == 0.5
    assert f["abstained"] == 0.25 and f["within_0_1"] == 0.5 and f["good_abstained"] == 0.0


@pytest.mark.parametrize(
    ("section", "field"),
    [({"temperature": 0}, "abstain.temperature"), ({"min_confidence": "high"}, "abstain.min_confidence")],
)
def test_a_bad_abstain_section_names_the_sidecar_and_field(tmp_path, section, field):
    model = tmp_path / "digit_wheel.onnx"
    model.write_bytes((MODEL_DIR / "digit_wheel.onnx").read_bytes())
    info = json.loads((MODEL_DIR / "digit_wheel.json").read_text())
    info["abstain"] = section
    model.with_suffix(".json").write_text(json.dumps(info))
    with pytest.raises(ConfigError, match=rf"digit_wheel\.json: {field}"):
        DigitReader(model)


@pytest.mark.parametrize(("reader_name", "kind"), [("digit_reader", "digit"), ("dial_reader", "dial")])
def test_non_wheel_images_are_unreadable(request, reader_name, kind):
    if not all((DATA_ROOT / name / "labels.csv").is_file() for name in ("meterdigits", "pointers")):
        if os.environ.get("CI"):  # CI has shared/ beside the clone: the photo negatives come from it
            pytest.fail(f"{DATA_ROOT}: shared data folder not present")
        pytest.skip(f"{DATA_ROOT}: shared data folder not present (the photo negatives come from it)")
    reader = request.getfixturevalue(reader_name)
    images, kinds = negative_crops(kind, 300, TEST_SEED, DATA_ROOT)
    result = reader.read(images)
    unreadable = ~result.readable
    by_kind = {k: float(unreadable[np.array(kinds) == k].mean()) for k in set(kinds)}
    assert set(by_kind) == set(NEGATIVE_KINDS)
    assert unreadable.mean() >= 0.97, by_kind
    assert all(reason for reason, ok in zip(result.reason, result.readable, strict=True) if not ok)


@pytest.mark.parametrize(("reader_name", "kind"), [("digit_reader", "digit"), ("dial_reader", "dial")])
def test_real_unseen_crops_are_mostly_readable(request, reader_name, kind):
    reader = request.getfixturevalue(reader_name)
    crops = labelled_dev_crops(kind, 200)
    result = reader.read([cv2.imread(str(path)) for path, _ in crops])
    assert result.readable.mean() >= 0.95
    assert all(reason == "" for reason, ok in zip(result.reason, result.readable, strict=True) if ok)


def _draw_pointer(value: float, style: str, size: int = 120) -> np.ndarray:
    """A white dial with a red pointer at `value` (0..10, clockwise from 12 o'clock)."""
    image = np.full((size, size, 3), 225, np.uint8)
    c = size / 2
    angle = value / 10 * 2 * np.pi
    direction = np.array([np.sin(angle), -np.cos(angle)])
    normal = np.array([-direction[1], direction[0]])
    red = (30, 30, 210)
    centre = np.array([c, c])
    if style == "teardrop":  # round hub, narrow tip
        cv2.circle(image, (int(c), int(c)), int(0.18 * size), red, -1)
        tip = centre + 0.42 * size * direction
        base = [centre + 0.16 * size * normal, centre - 0.16 * size * normal]
        cv2.fillPoly(image, [np.array([tip, *base]).astype(np.int32)], red)
    elif style == "wedge":  # wide base across the centre, pointed end at the scale
        tip = centre + 0.44 * size * direction
        back = centre - 0.12 * size * direction
        poly = [tip, back + 0.14 * size * normal, back - 0.14 * size * normal]
        cv2.fillPoly(image, [np.array(poly).astype(np.int32)], red)
    else:  # needle with a counterweight tail and a grey metal hub
        tip = centre + 0.45 * size * direction
        tail = centre - 0.2 * size * direction
        cv2.line(image, tuple(tail.astype(int)), tuple(tip.astype(int)), red, 4)
        cv2.circle(image, tuple(tail.astype(int)), int(0.07 * size), red, -1)
        cv2.circle(image, (int(c), int(c)), int(0.06 * size), (150, 150, 150), -1)
    return image


@pytest.mark.parametrize("style", ["teardrop", "wedge", "needle"])
def test_pointer_geometry_finds_the_tip_of_each_pointer_shape(style):
    values = np.arange(0.3, 10, 0.7)
    geometry = read_dial_geometry([_draw_pointer(v, style) for v in values])
    assert geometry.has_axis.all() and geometry.tip_sure.all()
    error = np.abs((geometry.value - values + 5) % 10 - 5)
    assert error.max() < 0.12, error


def test_pointer_geometry_has_no_opinion_without_a_pointer():
    flat = np.full((80, 80, 3), 200, np.uint8)
    hub_only = flat.copy()
    cv2.circle(hub_only, (40, 40), 15, (30, 30, 210), -1)
    geometry = read_dial_geometry([flat, hub_only, cv2.cvtColor(flat, cv2.COLOR_BGR2GRAY)])
    assert not geometry.has_axis.any()


def test_disagreement_rule():
    geometry = DialGeometry(
        value=np.array([2.0, 2.0, 2.0, 2.0]),
        has_axis=np.array([True, True, True, False]),
        tip_sure=np.array([True, True, False, False]),
    )
    flagged = disagrees(np.array([2.3, 7.0, 7.1, 7.0]), geometry, 0.5)
    assert flagged.tolist() == [False, True, False, False]


def test_dial_reader_vetoes_a_reading_the_geometry_contradicts(dial_reader):
    path, tenths = labelled_dev_crops("dial", 3)[1]
    crop = cv2.imread(str(path))
    result = dial_reader.read([crop])
    assert result.readable[0]

    class WrongEnd(DialReader):
        """The CNN's reading turned half a turn: what taking the wrong end of the pointer gives."""

        def second_opinion(self, crops, value):
            return super().second_opinion(crops, np.mod(value + 5.0, 10.0))

    flipped = WrongEnd().read([crop])
    assert not flipped.readable[0]
    assert flipped.reason[0].startswith("second opinion disagrees (pointer geometry reads")


class Unconfirmed(DialReader):
    """The dial reader without the geometry's confirmation (as before it existed)."""

    def second_opinion(self, crops, value):
        contradicts, why, _ = super().second_opinion(crops, value)
        return contradicts, why, np.zeros(len(value), bool)


def test_a_torn_dial_reading_the_pointer_geometry_confirms_is_readable_and_right(dial_reader):
    """Needle pointers (a shape the dial CNN never trained on; seed 7, not the benchmark's): the CNN
    alone abstains on most of them, the geometry's confirmation reads them, none wrongly."""
    from meterbench.models._runtime import CONFIRM_MIN_CONFIDENCE, circular_distance
    from meterbench.models.training.synthetic_dials import render_dial

    rng = np.random.default_rng(7)
    crops, tenths = zip(*[render_dial(rng, (94, 94), "needle", "none") for _ in range(60)], strict=True)
    truth = np.array(tenths) / 10.0
    alone, confirmed = Unconfirmed().read(list(crops)), dial_reader.read(list(crops))
    lifted = confirmed.readable & ~alone.readable
    assert np.array_equal(confirmed.value, alone.value)  # the value is the CNN's either way
    assert lifted.sum() >= 0.4 * len(crops), (alone.readable.mean(), confirmed.readable.mean())
    assert all(alone.reason[i].startswith("unsure (confidence") for i in np.flatnonzero(lifted))
    assert (confirmed.confidence[lifted] >= CONFIRM_MIN_CONFIDENCE).all()
    assert all(confirmed.reason[i] == "" for i in np.flatnonzero(lifted))
    assert circular_distance(confirmed.value[confirmed.readable], truth[confirmed.readable]).max() < 0.5


def test_the_geometry_never_makes_a_blank_or_not_a_dial_crop_readable():
    """Even a second opinion that confirmed everything lifts only torn readings."""

    class ConfirmsAll(DialReader):
        def second_opinion(self, crops, value):
            contradicts, why, _ = super().second_opinion(crops, value)
            return contradicts, why, np.ones(len(value), bool)

    negatives, kinds = negative_crops("dial", 300, seed=11, data_root=DATA_ROOT)
    alone, confirming = Unconfirmed().read(negatives), ConfirmsAll().read(negatives)
    kept = [r for r in alone.reason if not r.startswith("unsure (confidence")]
    assert len(kept) > 0.9 * len(negatives)  # blank / not a dial: the reasons confirmation cannot lift
    for before, after, readable in zip(alone.reason, confirming.reason, confirming.readable, strict=True):
        if before and not before.startswith("unsure (confidence"):
            assert after == before and not readable


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meterbench", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_cli_json_says_a_noise_image_is_not_readable(tmp_path):
    ((path, tenths),) = labelled_dev_crops("digit", 1)
    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), np.random.default_rng(3).integers(0, 256, (40, 24, 3), dtype=np.uint8))
    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), np.full((40, 24, 3), 128, np.uint8))
    done = _cli("digits", str(path), str(noise), str(flat), "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [set(line) for line in lines] == [{"path", "value", "confidence", "readable"}] * 3
    assert [line["readable"] for line in lines] == [True, False, False]
    assert all(isinstance(line["value"], float) for line in lines)


def test_risk_threshold_keeps_silent_misreads_under_the_bound():
    from meterbench.models._calibrate import risk_threshold

    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    wrong = np.array([False, False, True, False, True, False])
    # keeping the two most confident: no wrong one; a third (wrong) would be 1/6 > 0.1
    assert risk_threshold(confidence, wrong, 0.1) == 0.95
    assert risk_threshold(confidence, wrong, 0.2) == 0.8  # one wrong of six kept is allowed
    assert risk_threshold(confidence, np.ones(6, bool), 0.1) > 0.99  # nothing is safe: abstain on all
