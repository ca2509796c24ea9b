"""Optional second reader of whole digits: the PP-OCRv4 text recogniser, as a second opinion.

The recogniser (Apache-2.0, PaddleOCR, trained on far more text than our wheel
crops) is the ONNX file inside the `rapidocr-onnxruntime` 1.4.4 wheel (no
pyproject extra: it would pull in opencv-python). That package declares opencv-python, which must not sit beside
opencv-python-headless, so it is installed with `pip install --no-deps` and
never imported: only its ONNX file is located and run with our onnxruntime.
Nothing is downloaded at run time; without the package there is no OCR opinion.

A crop's digit probabilities are the CTC outputs of the ten digit characters
(0 and 1 also of their look-alike letters, which a text recogniser prefers on a
lone glyph: O o and l I |), each its maximum over the time steps. The OCR disagrees with a wheel reading v
when it is sure (top digit probability ≥ `min_probability`) of a digit that is
neither v's nearest digit nor, for v between digits (fraction 0.2..0.8), one of
the two digits in view.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from meterbench.errors import ConfigError

OCR_PACKAGE = "rapidocr_onnxruntime"
REC_MODEL = Path("models") / "ch_PP-OCRv4_rec_infer.onnx"
OCR_HEIGHT_PX = 48  # the recogniser's input height
OCR_WIDTH_PX = 64  # crops are resized to the height, keeping their aspect, centred on a canvas this wide
MIN_OCR_PROBABILITY = 0.5
BETWEEN_DIGITS = (0.2, 0.8)  # a wheel fraction in this range shows two digits
LOOK_ALIKES = {0: "0Oo", 1: "1lI|"}  # characters that stand for a digit on a lone glyph


def ocr_model_path(model: Path = REC_MODEL) -> Path | None:
    """An ONNX file (default: the recogniser) of the installed rapidocr-onnxruntime package (not imported), or None."""
    spec = importlib.util.find_spec(OCR_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / model
    return path if path.is_file() else None


class OcrDigits:
    """The PP-OCRv4 recogniser reduced to ten digit probabilities per crop."""

    def __init__(self, model_path: str | Path | None = None, *, num_threads: int = 1) -> None:
        import onnxruntime as ort

        path = Path(model_path) if model_path else ocr_model_path()
        if path is None or not path.is_file():
            raise ConfigError(
                f"OCR second opinion: {path or OCR_PACKAGE}: recogniser not found "
                "(pip install --no-deps rapidocr-onnxruntime==1.4.4)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        characters = self._session.get_modelmeta().custom_metadata_map.get("character", "").splitlines()
        index = {c: i + 1 for i, c in enumerate(characters)}  # output 0 is the CTC blank
        if any(str(d) not in index for d in range(10)):
            raise ConfigError(f"{path}: no digit characters in the recogniser's metadata")
        self._outputs = [[index[c] for c in LOOK_ALIKES.get(d, str(d)) if c in index] for d in range(10)]
        self._input_name = self._session.get_inputs()[0].name

    @staticmethod
    def _prepare(crop: np.ndarray) -> np.ndarray:
        image = crop if crop.ndim == 3 else cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
        h, w = image.shape[:2]
        width = int(min(OCR_WIDTH_PX, max(1, np.ceil(OCR_HEIGHT_PX * w / max(h, 1)))))
        resized = cv2.resize(image[:, :, :3], (width, OCR_HEIGHT_PX)).astype(np.float32)
        out = np.zeros((3, OCR_HEIGHT_PX, OCR_WIDTH_PX), np.float32)
        left = (OCR_WIDTH_PX - width) // 2
        out[:, :, left : left + width] = resized.transpose(2, 0, 1) / 127.5 - 1.0
        return out

    def digit_probs(self, crops: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """(N, 10) probability of each digit 0..9 appearing in each BGR or grey crop."""
        out = []
        for start in range(0, len(crops), batch_size):
            batch = np.stack([self._prepare(np.asarray(c)) for c in crops[start : start + batch_size]])
            steps = self._session.run(None, {self._input_name: batch})[0].max(axis=1)  # (n, characters)
            out.append(np.stack([steps[:, columns].max(axis=1) for columns in self._outputs], axis=1))
        return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def ocr_disagrees(value: np.ndarray, digit_probs: np.ndarray, min_probability: float = MIN_OCR_PROBABILITY):
    """True where the OCR is sure of a digit the wheel reading `value` (0..10) cannot show."""
    value = np.asarray(value, np.float64)
    lower = np.floor(value).astype(int) % 10
    upper = (lower + 1) % 10
    fraction = value - np.floor(value)
    nearest = np.where(fraction < 0.5, lower, upper)
    ocr_digit, ocr_prob = digit_probs.argmax(axis=1), digit_probs.max(axis=1)
    between = (fraction >= BETWEEN_DIGITS[0]) & (fraction <= BETWEEN_DIGITS[1])
    shown = (ocr_digit == nearest) | (between & ((ocr_digit == lower) | (ocr_digit == upper)))
    return (ocr_prob >= min_probability) & ~shown
