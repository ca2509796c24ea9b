"""A broken model file or sidecar is a user error (ConfigError, one line naming the file), never a bare exception."""

from __future__ import annotations

import json

import pytest

from meterbench.errors import ConfigError, MeterbenchError
from meterbench.models import DigitReader, read_crop_files
from meterbench.models._runtime import MODEL_DIR


@pytest.fixture
def model(tmp_path):
    """A copy of the shipped digit model with its sidecar, to damage."""
    path = tmp_path / "digit_wheel.onnx"
    path.write_bytes((MODEL_DIR / "digit_wheel.onnx").read_bytes())
    path.with_suffix(".json").write_text((MODEL_DIR / "digit_wheel.json").read_text())
    return path


def _sidecar(model, change) -> None:
    info = json.loads(model.with_suffix(".json").read_text())
    change(info)
    model.with_suffix(".json").write_text(json.dumps(info))


def test_a_file_that_is_not_onnx_is_refused_with_its_name(model):
    model.write_bytes(b"not a model")
    with pytest.raises(ConfigError) as caught:
        DigitReader(model)
    assert str(caught.value).startswith(f"{model}: not a usable ONNX model (")
    assert "\n" not in str(caught.value)


def test_a_sidecar_that_is_not_json_is_refused_with_its_name(model):
    model.with_suffix(".json").write_text('{"input": ')
    with pytest.raises(ConfigError, match=r"digit_wheel\.json: not valid JSON \("):
        DigitReader(model)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda info: info.update(input=5), "input: expected an object with planes, height_px, width_px, got 5"),
        (
            lambda info: info["input"].pop("width_px"),
            "input: expected planes, height_px, width_px; width_px is missing",
        ),
        (lambda info: info["input"].update(height_px="32"), "input height_px: expected an integer >= 1, got '32'"),
        (lambda info: info["input"].update(planes="purple"), "input planes: expected one of"),
    ],
)
def test_a_bad_sidecar_input_names_the_sidecar_and_the_field(model, change, expected):
    _sidecar(model, change)
    with pytest.raises(ConfigError) as caught:
        DigitReader(model)
    assert str(caught.value).startswith(f"{model.with_suffix('.json')}: {expected}")
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError still do


def test_a_sidecar_that_does_not_match_the_model_is_a_config_error(model):
    _sidecar(model, lambda info: info["input"].update(height_px=40))
    with pytest.raises(ConfigError, match=r"model input \(1, 32, 20\) does not match its sidecar's \(1, 40, 20\)"):
        DigitReader(model)


def test_a_bad_batch_size_is_a_user_error():
    with pytest.raises(MeterbenchError, match="batch_size: expected an integer ≥ 1, got 0"):
        list(read_crop_files(["a.png"], batch_size=0))
