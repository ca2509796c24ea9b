import json
from pathlib import Path

import numpy as np
import pytest

from meterbench.models._runtime import circular_distance
from tests.conftest import require_module

torch = require_module("torch", "train")

from meterbench.models.training import train  # noqa: E402


def test_soft_labels_wrap_and_normalise():
    target = train.soft_labels(np.array([0.0, 37.0, 99.5]))
    np.testing.assert_allclose(target.sum(1), 1.0, rtol=1e-5)
    assert target[0, 99] == pytest.approx(target[0, 1])
    assert target[1].argmax() == 37
    assert target[2, 99] == pytest.approx(target[2, 0])


def test_dial_augmentation_turns_label_with_image():
    rng = np.random.default_rng(3)
    image = np.full((64, 64, 3), 200, np.uint8)
    for _ in range(20):
        _, label = train.augment(image, 37.0, "dial", rng)
        assert 0 <= label < 100
    # a digit keeps its label whatever the augmentation
    _, label = train.augment(np.full((64, 40, 3), 90, np.uint8), 37.0, "digit", rng)
    assert label == 37.0


def test_model_output_shape():
    for kind in ("digit", "dial"):
        for arch in train.ARCHS:
            model = train.build_model(kind, arch).eval()
            channels, h, w = train.DEFAULT_INPUT[kind].shape
            assert model(torch.zeros(2, channels, h, w)).shape == (2, 100)
    with pytest.raises(ValueError, match="arch"):
        train.build_model("digit", "huge")


def test_weight_average_moves_towards_new_weights():
    model = train.build_model("digit")
    average = train._WeightAverage(model, decay=0.5)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    before = [p.clone() for p in average.model.parameters()]
    average.update(model)
    for old, new, target in zip(before, average.model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(new, 0.5 * old + 0.5 * target)


@pytest.mark.slow
def test_one_epoch_training_smoke(tmp_path):
    assert (
        train.main(
            [
                "--kind",
                "digit",
                "--out",
                str(tmp_path),
                "--epochs",
                "1",
                "--limit",
                "64",
                "--batch-size",
                "32",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    sidecar = json.loads((tmp_path / "digit_wheel.json").read_text())
    assert sidecar["input"]["height_px"] == 32 and sidecar["classes"]["count"] == 100
    from meterbench.models import DigitReader

    reader = DigitReader(tmp_path / "digit_wheel.onnx")
    assert reader.model_sha256 == sidecar["sha256"]
    result = reader.read([np.zeros((40, 20), np.uint8)] * 3)
    assert result.probs.shape == (3, 100)
    assert np.all(circular_distance(result.value, result.value[0]) < 1e-6)


def test_synthetic_wheels_have_exact_labels_and_requested_size():
    from meterbench.models.training.synthetic import digit_strips, render_wheel

    strips = digit_strips()
    assert len(strips) >= 36  # Hershey variants alone
    rng = np.random.default_rng(0)
    for frame_p in (0.0, 1.0):
        for _ in range(10):
            image, tenths = render_wheel(strips, rng, (64, 40), frame_p)
            assert image.shape == (64, 40, 3) and image.dtype == np.uint8
            assert 0 <= tenths < 100


def test_font_packages_give_at_most_eight_faces_each_spread_over_their_weights(tmp_path, monkeypatch):
    """A package with 20 weights gives 8 of them (every 2-3rd in name order), one with a single
    face gives it; symbol fonts are never drawn."""
    pytest.importorskip("PIL")
    from meterbench.models.training import synthetic

    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not dejavu.is_file():
        pytest.skip("fonts-dejavu-core is not installed")
    (tmp_path / "many").mkdir()
    (tmp_path / "one").mkdir()
    for k in range(20):
        (tmp_path / "many" / f"Face{k:02d}.ttf").symlink_to(dejavu)
    (tmp_path / "one" / "Only.ttf").symlink_to(dejavu)
    (tmp_path / "one" / "StandardSymbolsPS.otf").symlink_to(dejavu)
    monkeypatch.setattr(synthetic, "SYSTEM_FONT_DIRS", (tmp_path,))
    drawn = [p for p in synthetic._font_files() if p.is_relative_to(tmp_path)]
    assert [p.name for p in drawn] == [f"Face{k:02d}.ttf" for k in (0, 2, 5, 7, 10, 12, 15, 17)] + ["Only.ttf"]
    inventory = synthetic.font_inventory()
    assert (inventory[f"{tmp_path.name}/many"], inventory[f"{tmp_path.name}/one"]) == (8, 1)


def test_balanced_epoch_flattens_the_tenth_digit_prior():
    tenths = np.array([30] * 800 + [35] * 100 + [39] * 100)
    rng = np.random.default_rng(0)
    plain = train.epoch_order(tenths, 0.0, rng)
    assert sorted(plain) == list(range(len(tenths)))
    drawn = np.bincount(tenths[train.epoch_order(tenths, 1.0, rng)] % 10, minlength=10)
    assert drawn.sum() == len(tenths)
    # each present tenth digit drawn about a third of the time, instead of 80/10/10 %
    assert all(250 < drawn[k] < 420 for k in (0, 5, 9)), drawn


@pytest.mark.slow
def test_reject_class_training_gives_a_101_output_model_with_a_fitted_abstention(tmp_path):
    args = ["--kind", "digit", "--out", str(tmp_path), "--epochs", "1", "--limit", "400", "--batch-size", "32"]
    assert train.main([*args, "--threads", "1", "--reject", "0.3", "--dev", "collected/watermeter/pp"]) == 0
    sidecar = json.loads((tmp_path / "digit_wheel.json").read_text())
    assert sidecar["classes"]["count"] == 101 and sidecar["classes"]["reject_class"] == 100
    assert sidecar["abstain"]["chosen_on"] == ["collected/watermeter/pp"]
    assert 0.2 <= sidecar["abstain"]["temperature"] <= 5.0
    from meterbench.models import DigitReader

    reader = DigitReader(tmp_path / "digit_wheel.onnx")
    assert reader.n_outputs == 101
    assert reader.abstention.min_confidence == sidecar["abstain"]["min_confidence"]
    result = reader.read([np.full((40, 20), 90, np.uint8), np.zeros((40, 20, 3), np.uint8)])
    assert result.probs.shape == (2, 100) and result.reject.shape == (2,)
    np.testing.assert_allclose(result.probs.sum(1), 1.0, atol=1e-5)
    assert not result.readable.any()


def test_drum_windows_keep_the_digit_on_the_centre_line():
    """At a whole-digit position the ink box of the digit in view is centred vertically, on flat
    and curved drums alike (the drum mapping is symmetric about the window centre), for the
    Hershey, seven-segment and TrueType strips."""
    from meterbench.models.training.synthetic import _wheel_window, digit_strips

    strips = digit_strips()
    rng = np.random.default_rng(3)
    offsets = []
    for k in range(120):
        strip = strips[k * 7 % len(strips)]
        rows = _wheel_window(strip, 10.0 * (k % 10), (64, 40), rng).max(axis=1) > 0.5
        # the digit in view: the inked run of rows that holds the centre line, or the nearest one
        runs = np.split(np.arange(64), np.flatnonzero(np.diff(rows.astype(int))) + 1)
        inked = [r for r in runs if rows[r[0]]]
        run = min(inked, key=lambda r: 0 if r[0] <= 31.5 <= r[-1] else min(abs(r[0] - 31.5), abs(r[-1] - 31.5)))
        offsets.append((run[0] + run[-1]) / 2 - 31.5)
    assert np.abs(offsets).max() <= 2.5, offsets


def test_synthetic_dials_point_where_their_label_says():
    from meterbench.models.dial_geometry import read_dial_geometry
    from meterbench.models.training.synthetic_dials import POINTER_STYLES, render_dial

    rng = np.random.default_rng(5)
    crops, tenths = zip(*[render_dial(rng, (64, 64), POINTER_STYLES[k % 5], "none") for k in range(40)], strict=True)
    assert all(c.shape == (64, 64, 3) and c.dtype == np.uint8 for c in crops)
    geometry = read_dial_geometry(list(crops))
    sure = geometry.tip_sure
    assert sure.mean() > 0.8
    error = np.abs((geometry.value - np.array(tenths) / 10 + 5) % 10 - 5)
    assert error[sure].max() < 0.5, error[sure]


def test_heavy_digit_distortions_keep_size_and_label():
    rng = np.random.default_rng(7)
    image = np.full((64, 40, 3), 200, np.uint8)
    image[16:48, 12:28] = 30
    outputs = [train.augment(image, 37.0, "digit", rng, heavy=1.0) for _ in range(30)]
    assert all(out.shape == (64, 40, 3) and out.dtype == np.uint8 and label == 37.0 for out, label in outputs)
    # the distortions alone keep the digit where it was (dark in the centre, light at the sides)
    for _ in range(30):
        out = train._heavy_digit(image, rng).astype(float)
        assert out.shape == image.shape
        assert out[20:44, 16:24].mean() < 90 and out[20:44, :6].mean() > 120


@pytest.mark.slow
def test_two_member_ensemble_exports_combined_and_member_logits(tmp_path):
    args = ["--kind", "digit", "--out", str(tmp_path), "--epochs", "1", "--limit", "96", "--batch-size", "32"]
    assert train.main([*args, "--threads", "2", "--members", "2", "--reject", "0.2"]) == 0
    sidecar = json.loads((tmp_path / "digit_wheel.json").read_text())
    assert sidecar["training"]["members"] == 2 and sidecar["training"]["member_seeds"] == [0, 1]
    from meterbench.models import DigitReader
    from meterbench.models._runtime import combine_members, preprocess_crops

    reader = DigitReader(tmp_path / "digit_wheel.onnx")
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (40, 24, 3), dtype=np.uint8) for _ in range(8)]
    combined, members = reader.run_members(preprocess_crops(crops, reader.input_spec))
    assert members.shape == (8, 2, 101)
    assert not np.allclose(members[:, 0], members[:, 1])  # two seeds, two models
    np.testing.assert_allclose(combined, combine_members(members), atol=1e-4)
    result = reader.read(crops)
    spread_reasons = [r for r in result.reason if r.startswith("ensemble members disagree")]
    assert all(not ok for ok, r in zip(result.readable, result.reason, strict=True) if r in spread_reasons)
