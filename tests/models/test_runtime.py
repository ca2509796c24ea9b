import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from meterbench.models import DialReader, DigitReader, WheelReadings, read_crop_files
from meterbench.models._runtime import circular_distance, preprocess_crop

from .conftest import labelled_dev_crops

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digit_reader():
    return DigitReader()


@pytest.fixture(scope="module")
def dial_reader():
    return DialReader()


@pytest.mark.parametrize(("reader_name", "kind"), [("digit_reader", "digit"), ("dial_reader", "dial")])
def test_reads_unseen_real_crops_close_to_labels(request, reader_name, kind):
    reader = request.getfixturevalue(reader_name)
    crops = labelled_dev_crops(kind, 24)
    images = [cv2.imread(str(path)) for path, _ in crops]
    result = reader.read(images)
    assert isinstance(result, WheelReadings)
    assert result.probs.shape == (len(crops), 100)
    error = circular_distance(result.value, np.array([t for _, t in crops]) / 10)
    assert np.mean(error <= 0.2) >= 0.9, error
    assert np.all((result.value >= 0) & (result.value < 10))
    assert np.all((result.confidence >= 0) & (result.confidence <= 1))


def test_any_size_grey_and_colour_crop_give_same_reading(digit_reader):
    path, tenths = labelled_dev_crops("digit", 4)[1]
    colour = cv2.imread(str(path))
    grey = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    big = cv2.resize(colour, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    bgra = cv2.cvtColor(colour, cv2.COLOR_BGR2BGRA)
    result = digit_reader.read([colour, grey, big, bgra])
    assert np.all(circular_distance(result.value, result.value[0]) < 0.15)


def test_batching_does_not_change_results():
    crops = [cv2.imread(str(p)) for p, _ in labelled_dev_crops("digit", 10)]
    whole = DigitReader(batch_size=64).read(crops)
    split = DigitReader(batch_size=3).read(crops)
    np.testing.assert_allclose(whole.value, split.value, atol=1e-5)


def test_empty_batch_and_bad_crop(digit_reader):
    assert len(digit_reader.read([])) == 0
    with pytest.raises(ValueError, match="crop"):
        preprocess_crop(np.zeros((10, 10, 5), np.uint8), "digit")
    with pytest.raises(ValueError, match="uint8"):
        preprocess_crop(np.zeros((10, 10), np.float32), "digit")


def test_model_sha256_matches_sidecar(digit_reader, dial_reader):
    for reader in (digit_reader, dial_reader):
        assert len(reader.model_sha256) == 64
        assert reader.info["sha256"] == reader.model_sha256


def test_read_crop_files_reports_missing_and_corrupt_but_reads_others(tmp_path, digit_reader):
    ((good_path, tenths),) = labelled_dev_crops("digit", 1)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    missing = tmp_path / "missing.png"
    paths = [good_path, missing, corrupt, good_path]
    results = list(read_crop_files(paths, kind="digit", batch_size=2, reader=digit_reader))
    assert [r.path for r in results] == [str(p) for p in paths]
    assert results[1].error == "file not found"
    assert "not a readable image" in results[2].error
    for r in (results[0], results[3]):
        assert r.error == ""
        assert circular_distance(r.value, tenths / 10) <= 0.2


def test_read_crop_files_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        list(read_crop_files(["a.jpg"], kind="lcd"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meterbench", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_cli_digits_json_lines(tmp_path):
    ((path, tenths),) = labelled_dev_crops("digit", 1)
    done = _cli("digits", str(path), str(path), "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 2
    assert set(lines[0]) == {"path", "value", "confidence", "readable"}
    assert lines[0]["readable"] is True
    assert lines[0]["path"] == str(path)
    assert circular_distance(lines[0]["value"], tenths / 10) <= 0.2
    assert 0 <= lines[0]["confidence"] <= 1


def test_cli_dials_missing_file_fails_but_reads_others(tmp_path):
    ((path, _),) = labelled_dev_crops("dial", 1)
    missing = tmp_path / "nope.jpg"
    done = _cli("dials", str(missing), str(path), "--json")
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 1
    assert str(missing) in done.stderr and "file not found" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_input_spec_comes_from_the_sidecar_and_must_match_the_model(tmp_path):
    from meterbench.models._runtime import MODEL_DIR, InputSpec, preprocess_crops

    model = tmp_path / "digit_wheel.onnx"
    model.write_bytes((MODEL_DIR / "digit_wheel.onnx").read_bytes())
    sidecar = json.loads((MODEL_DIR / "digit_wheel.json").read_text())
    assert DigitReader(model).input_spec == InputSpec("grey", 32, 20)  # no sidecar: the default
    sidecar["input"]["height_px"] = 40
    model.with_suffix(".json").write_text(json.dumps(sidecar))
    with pytest.raises(ValueError, match="does not match its sidecar"):
        DigitReader(model)
    sidecar["input"]["planes"] = "purple"
    model.with_suffix(".json").write_text(json.dumps(sidecar))
    with pytest.raises(ValueError, match="input"):
        DigitReader(model)
    crops = [np.full((50, 30, 3), 100, np.uint8)]
    assert preprocess_crops(crops, InputSpec("bgr", 24, 16)).shape == (1, 3, 24, 16)
    assert preprocess_crops(crops, InputSpec("grey+redness", 24, 16)).shape == (1, 2, 24, 16)


def test_ensemble_members_that_read_a_crop_apart_make_it_unreadable():
    from meterbench.models._runtime import Abstention, combine_members, members_disagree

    def peaked(tenths: float) -> np.ndarray:  # logits of a member sure of one position
        logits = np.full(101, -20.0)
        logits[int(tenths)] = 10.0
        return logits

    members = np.stack(
        [
            np.stack([peaked(30), peaked(31)]),  # 3.0 and 3.1: one reading
            np.stack([peaked(30), peaked(80)]),  # 3.0 and 8.0: a three read as an eight
            np.stack([peaked(99), peaked(2)]),  # 9.9 and 0.2 across the wrap: 0.3 apart, not more
        ]
    )
    combined = combine_members(members)
    z = members - members.max(axis=2, keepdims=True)
    expected = (z - np.log(np.exp(z).sum(axis=2, keepdims=True))).mean(axis=1)
    np.testing.assert_allclose(combined, expected, atol=1e-12)
    value = combined[:, :100].argmax(axis=1) / 10.0
    disagree, why = members_disagree(members, value, Abstention())
    assert disagree.tolist() == [False, True, False]
    assert why[1] == "ensemble members disagree (up to 5.00 apart > 0.3)"
    assert members_disagree(None, value, Abstention())[0].tolist() == [False] * 3
    assert members_disagree(members, value, Abstention(max_member_spread=5.5))[0].tolist() == [False] * 3
