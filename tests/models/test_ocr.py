"""The optional OCR second opinion: the disagreement rule, and the real recogniser on drawn digits."""

import cv2
import numpy as np
import pytest

from meterbench.models._ocr import OcrDigits, ocr_disagrees
from tests.conftest import require_ocr_models


def _sure_of(digits: list[int], p: float = 0.9) -> np.ndarray:
    probs = np.full((len(digits), 10), 0.01)
    probs[np.arange(len(digits)), digits] = p
    return probs


def test_ocr_disagrees_only_with_a_digit_the_reading_cannot_show():
    value = np.array([3.02, 3.02, 3.5, 3.5, 9.95, 9.95, 3.02])
    probs = _sure_of([3, 8, 4, 5, 0, 9, 8])
    probs[6] = 0.3  # unsure OCR: no opinion
    assert ocr_disagrees(value, probs).tolist() == [False, True, False, True, False, True, False]


def _drawn_digit(digit: int) -> np.ndarray:
    image = np.full((60, 40, 3), 235, np.uint8)
    cv2.putText(image, str(digit), (6, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (20, 20, 20), 3, cv2.LINE_AA)
    return image


def test_recogniser_reads_drawn_digits():
    require_ocr_models()
    probs = OcrDigits().digit_probs([_drawn_digit(d) for d in range(10)])
    assert probs.argmax(axis=1).tolist() == list(range(10))
    # Far above the veto's MIN_OCR_PROBABILITY (0.5): measured min 0.8999 on an AMD EPYC, above 0.9
    # elsewhere (ONNX Runtime's kernels differ between CPUs in the last digits).
    assert probs[2:].max(axis=1).min() > 0.85
    assert probs[:2].max(axis=1).max() < 0.5  # a lone Hershey 0 or 1 is no sure digit to it: no veto


def test_missing_recogniser_is_a_config_error(tmp_path):
    from meterbench.errors import ConfigError

    with pytest.raises(ConfigError, match="recogniser not found"):
        OcrDigits(tmp_path / "none.onnx")
