"""Run the shipped digit-wheel and pointer-dial ONNX models (onnxruntime, numpy, cv2 only).

Both models classify a crop into 100 circular classes (tenths of a wheel step or
of a dial turn, 9.9 is next to 0.0). The value is the circular mean of the
probabilities near the most likely class; the confidence is the probability mass
within ±0.15 of that value, so a crop the model is torn about (two digits, a
glare spot) gets a low confidence instead of a silent wrong value.

A model may carry a 101st "not a wheel" class (sidecar ``classes.reject_class``),
trained on noise, flat colours, text and pieces of other photos. Each reading
says whether it may be used (`readable`) and, when not, why (`reason`): the crop
is blank, the reject class wins, or the (temperature-calibrated) confidence is
below the sidecar's ``abstain.min_confidence``, chosen on held-out groups.

A model file may hold an ensemble: M members trained alike from other seeds,
one graph whose first output is their combined logits (the mean of the
members' log-probabilities) and whose second, ``member_logits`` (N, M, K), the
members' own. Where a member reads the crop more than
``abstain.max_member_spread`` from the combined value, the members disagree and
the crop is not readable: a wheel style none of them has learnt is read
differently by each, where one model alone would be confidently wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from meterbench.errors import ConfigError

MODEL_DIR = Path(__file__).resolve().parent
N_CLASSES = 100
DECODE_HALF_WINDOW = 3  # classes each side of the argmax used for the circular mean
CONFIDENCE_HALF_WIDTH = 1.5  # tenths: confidence = probability mass within ±0.15 of the value
GEOMETRY_TOLERANCE = 0.5  # dial units: CNN and pointer geometry further apart than this -> not readable
MEMBER_SPREAD = 0.3  # units: an ensemble member further than this from the combined value -> not readable
# A dial crop the CNN is only torn about (confidence below its threshold, not "not a dial", not blank)
# is readable when the independent pointer geometry is sure of the tip and reads within CONFIRM_AGREEMENT
# of it, and the CNN's confidence is at least CONFIRM_MIN_CONFIDENCE (the fixed cut before calibration).
# Fixed before any figure was seen (a wrong reading is >= 0.5 off; the geometry's own error ~0.1-0.2).
CONFIRM_AGREEMENT = 0.3  # dial units
CONFIRM_MIN_CONFIDENCE = 0.5
UNSURE_REASON = "unsure (confidence"  # how decode_logits begins the reason of a torn crop

PLANE_CHANNELS = {"grey": 1, "grey+redness": 2, "bgr": 3}  # input planes -> channels
PLANES = tuple(PLANE_CHANNELS)


@dataclass(frozen=True)
class InputSpec:
    """What a model is fed: which image planes, at what size (px).

    grey: luminance, per-crop standardised. grey+redness: plus R − max(G, B)
    scaled by its own maximum, so red ink or a red wheel stands out whatever
    its luminance. bgr: the three colour planes, standardised together.
    """

    planes: str
    height_px: int
    width_px: int

    def __post_init__(self) -> None:
        if self.planes not in PLANES:
            raise ConfigError(f"input planes: expected one of {PLANES}, got {self.planes!r}")
        for name in ("height_px", "width_px"):
            size = getattr(self, name)
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ConfigError(f"input {name}: expected an integer >= 1, got {size!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one preprocessed crop."""
        return PLANE_CHANNELS[self.planes], self.height_px, self.width_px


# Default input per model kind; a model's sidecar (.json) may say otherwise.
# The training code uses the same specs and the same `preprocess_crops`.
DEFAULT_INPUT = {"digit": InputSpec("grey", 32, 20), "dial": InputSpec("grey+redness", 32, 32)}
MODEL_FILE = {"digit": "digit_wheel.onnx", "dial": "pointer_dial.onnx"}


def circular_distance(a: np.ndarray | float, b: np.ndarray | float, period: float = 10.0) -> np.ndarray:
    """Distance between wheel positions on a circle of `period` (0..period/2).

    9.9 and 0.1 are 0.2 apart on a 0..10 wheel.
    """
    d = np.mod(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)), period)
    return np.minimum(d, period - d)


def _as_bgr(crop: np.ndarray) -> np.ndarray:
    """Return a H×W×3 uint8 BGR view of a grey, BGR or BGRA crop."""
    image = np.asarray(crop)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"crop: expected H×W grey or H×W×3 BGR image, got shape {image.shape}")


def _standardise(plane: np.ndarray) -> np.ndarray:
    """Per-crop contrast normalisation: zero mean, unit spread (floor 4 grey levels)."""
    return (plane - plane.mean()) / max(float(plane.std()), 4.0)


def input_spec(spec: InputSpec | str) -> InputSpec:
    """An InputSpec, or the default one of a model kind ('digit' / 'dial')."""
    if isinstance(spec, InputSpec):
        return spec
    if spec not in DEFAULT_INPUT:
        raise ValueError(f"kind: expected 'digit' or 'dial', got {spec!r}")
    return DEFAULT_INPUT[spec]


def preprocess_crop(crop: np.ndarray, spec: InputSpec | str) -> np.ndarray:
    """One crop (any size, grey/BGR uint8) -> model input (C, H, W) float32.

    `spec` is an InputSpec or a model kind (its default spec).
    """
    spec = input_spec(spec)
    image = _as_bgr(crop)
    if image.dtype != np.uint8:
        raise ValueError(f"crop: expected uint8 pixels, got {image.dtype}")
    if min(image.shape[:2]) < 4:
        raise ValueError(f"crop: too small ({image.shape[1]}×{image.shape[0]} px, need ≥ 4×4)")
    small = cv2.resize(image, (spec.width_px, spec.height_px), interpolation=cv2.INTER_AREA).astype(np.float32)
    if spec.planes == "bgr":
        return _standardise(small).transpose(2, 0, 1).astype(np.float32)
    grey = small @ np.array([0.114, 0.587, 0.299], np.float32)
    planes = [_standardise(grey)]
    if spec.planes == "grey+redness":
        redness = np.clip(small[:, :, 2] - np.maximum(small[:, :, 0], small[:, :, 1]), 0, None)
        planes.append(redness / max(float(redness.max()), 20.0))
    return np.stack(planes).astype(np.float32)


def preprocess_crops(crops: Sequence[np.ndarray], spec: InputSpec | str) -> np.ndarray:
    """Crops -> model batch (N, C, H, W) float32."""
    spec = input_spec(spec)
    if len(crops) == 0:
        return np.zeros((0, *spec.shape), np.float32)
    return np.stack([preprocess_crop(c, spec) for c in crops])


def input_spec_from_sidecar(info: dict, kind: str) -> InputSpec:
    """The InputSpec a model sidecar describes (older sidecars: planes from the channel count).

    Raises ConfigError naming the field when the sidecar's ``input`` is not what a model is fed.
    """
    if not isinstance(info, dict):
        raise ConfigError(f"expected a JSON object, got {type(info).__name__}")
    section = info.get("input")
    if not section:
        return DEFAULT_INPUT[kind]
    if not isinstance(section, dict):
        raise ConfigError(f"input: expected an object with planes, height_px, width_px, got {section!r}")
    by_channels = {channels: planes for planes, channels in PLANE_CHANNELS.items()}
    planes = section.get("planes") or by_channels.get(section.get("channels"), "")
    missing = [key for key in ("height_px", "width_px") if key not in section]
    if missing:
        raise ConfigError(f"input: expected planes, height_px, width_px; {missing[0]} is missing")
    return InputSpec(planes, section["height_px"], section["width_px"])


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def decode_probs(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 100) class probabilities -> (value in [0, 10), confidence in [0, 1]).

    value: circular mean of the probabilities within ±0.3 of the argmax.
    confidence: probability mass of the classes within ±0.15 of the value.
    """
    probs = np.asarray(probs, dtype=np.float64)
    n = probs.shape[0]
    rows = np.arange(n)[:, None]
    top = probs.argmax(axis=1)
    offsets = np.arange(-DECODE_HALF_WINDOW, DECODE_HALF_WINDOW + 1)
    window = probs[rows, (top[:, None] + offsets) % N_CLASSES]
    angles = 2 * np.pi * (top[:, None] + offsets) / N_CLASSES
    mean_angle = np.arctan2((window * np.sin(angles)).sum(1), (window * np.cos(angles)).sum(1))
    tenths = np.mod(mean_angle * N_CLASSES / (2 * np.pi), N_CLASSES)
    value = np.mod(tenths / 10.0, 10.0)
    value[value >= 10.0] = 0.0
    return value, _mass_near(probs, value)


def _mass_near(probs: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Probability mass of the classes within ±0.15 of each value (0..10): the confidence."""
    near = circular_distance(np.arange(N_CLASSES)[None, :], 10.0 * np.asarray(value)[:, None], N_CLASSES)
    return np.clip((np.asarray(probs, np.float64) * (near <= CONFIDENCE_HALF_WIDTH)).sum(axis=1), 0.0, 1.0)


def _wheel_part(probs: np.ndarray) -> np.ndarray:
    """The first 100 classes of (N, 100 or 101) probabilities, renormalised: positions given a wheel."""
    wheel = probs[:, :N_CLASSES]
    return wheel / np.maximum(wheel.sum(1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class WheelReadings:
    """Readings of N crops.

    value in [0, 10); confidence in [0, 1] (calibrated); probs (N, 100) over the
    wheel positions (given the crop is a wheel; the model's own, not temperature-scaled);
    reject (N,) the probability that the crop is not a wheel at all (0 for a model without that class); readable
    (N,) bool: false when the reader abstains, with `reason` (one string per crop,
    "" when readable). The value of an unreadable crop is only for debugging.
    """

    value: np.ndarray
    confidence: np.ndarray
    probs: np.ndarray
    readable: np.ndarray
    reason: tuple[str, ...]
    reject: np.ndarray

    def __len__(self) -> int:
        return len(self.value)


@dataclass(frozen=True)
class Abstention:
    """When a reader says "cannot read" (sidecar section ``abstain``).

    temperature: logits are divided by it before the softmax (fitted on held-out
    groups so that the confidence matches the share read within ±0.2);
    min_confidence: calibrated confidence below which the model is torn;
    max_reject: "not a wheel" probability above which the crop is no wheel;
    min_contrast: grey-level standard deviation (0..255) below which a crop is blank;
    max_member_spread: (ensemble models) units a member may read away from the combined value.
    """

    temperature: float = 1.0
    min_confidence: float = 0.5
    max_reject: float = 0.5
    min_contrast: float = 2.0
    max_member_spread: float = MEMBER_SPREAD

    @classmethod
    def from_sidecar(cls, info: dict) -> Abstention:
        """The sidecar's ``abstain`` section (defaults for an older sidecar); ConfigError naming a bad field."""
        section = info.get("abstain") or {}
        if not isinstance(section, dict):
            raise ConfigError(f"abstain: expected an object, got {section!r}")
        values = {}
        for name in ("temperature", "min_confidence", "max_reject", "min_contrast", "max_member_spread"):
            value = section.get(name, getattr(cls, name))
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value < 0:
                raise ConfigError(f"abstain.{name}: expected a finite number >= 0, got {value!r}")
            values[name] = float(value)
        if values["temperature"] <= 0:
            raise ConfigError(f"abstain.temperature: expected > 0, got {values['temperature']!r}")
        return cls(**values)


def decode_logits(
    logits: np.ndarray, abstention: Abstention, contrast: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """(N, 100 or 101) logits -> value, confidence, probs (N, 100), reject (N,), readable, reason.

    A 101st logit is the "not a wheel" class. `contrast` (N,) is each crop's
    grey-level standard deviation before normalisation (None: not checked).
    """
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or logits.shape[1] not in (N_CLASSES, N_CLASSES + 1):
        raise ValueError(f"logits: expected (N, {N_CLASSES}) or (N, {N_CLASSES + 1}), got {logits.shape}")
    everything = softmax(logits)
    reject = everything[:, N_CLASSES] if logits.shape[1] > N_CLASSES else np.zeros(len(logits))
    probs = _wheel_part(everything)
    value, confidence = decode_probs(probs)
    if abstention.temperature != 1.0:  # value and probs stay the model's own; the confidence is calibrated
        confidence = _mass_near(_wheel_part(softmax(logits / abstention.temperature)), value)
    blank = np.zeros(len(logits), bool) if contrast is None else np.asarray(contrast) < abstention.min_contrast
    no_wheel = reject > abstention.max_reject
    torn = confidence < abstention.min_confidence
    reasons = []
    for i in range(len(logits)):
        if blank[i]:
            reasons.append(f"blank crop (contrast {contrast[i]:.1f} < {abstention.min_contrast:g} grey levels)")
        elif no_wheel[i]:
            reasons.append(f"not a wheel (probability {reject[i]:.2f})")
        elif torn[i]:
            reasons.append(f"{UNSURE_REASON} {confidence[i]:.2f} < {abstention.min_confidence:.2f})")
        else:
            reasons.append("")
    readable = ~(blank | no_wheel | torn)
    return value, confidence, probs.astype(np.float32), reject, readable, tuple(reasons)


def confirmed_torn(reason: Sequence[str], confidence: np.ndarray, confirms: np.ndarray) -> np.ndarray:
    """(N,) bool: crops unreadable only because the model is torn (`decode_logits`' reason), with a
    confidence of at least CONFIRM_MIN_CONFIDENCE, that an independent reader `confirms`."""
    torn_only = np.array([r.startswith(UNSURE_REASON) for r in reason], bool)
    return torn_only & np.asarray(confirms, bool) & (np.asarray(confidence) >= CONFIRM_MIN_CONFIDENCE)


def combine_members(member_logits: np.ndarray) -> np.ndarray:
    """(N, M, K) logits of M ensemble members -> (N, K) combined logits: the mean of the members'
    log-probabilities (the same combination the exported ensemble graph computes)."""
    z = np.asarray(member_logits, np.float64)
    z = z - z.max(axis=2, keepdims=True)
    return (z - np.log(np.exp(z).sum(axis=2, keepdims=True))).mean(axis=1)


def member_spread(member_logits: np.ndarray, value: np.ndarray) -> np.ndarray:
    """(N,) largest distance (units, circular) of a member's own reading from the combined `value`."""
    member_logits = np.asarray(member_logits, np.float64)
    n, m = member_logits.shape[:2]
    if m == 0:
        return np.zeros(n)
    member_values = decode_probs(_wheel_part(softmax(member_logits.reshape(n * m, -1))))[0].reshape(n, m)
    return circular_distance(member_values, np.asarray(value)[:, None]).max(axis=1)


def members_disagree(
    member_logits: np.ndarray | None, value: np.ndarray, abstention: Abstention
) -> tuple[np.ndarray, list[str]]:
    """Where the ensemble's members read a crop differently (bool (N,)), and why; none without members."""
    if member_logits is None:
        return np.zeros(len(value), bool), [""] * len(value)
    spread = member_spread(member_logits, value)
    why = [f"ensemble members disagree (up to {d:.2f} apart > {abstention.max_member_spread:g})" for d in spread]
    return spread > abstention.max_member_spread, why


def crop_contrast(crops: Sequence[np.ndarray]) -> np.ndarray:
    """Grey-level standard deviation (0..255) of each crop: ~0 for a blank or flat one."""
    out = np.empty(len(crops))
    for i, crop in enumerate(crops):
        image = _as_bgr(crop)
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        out[i] = float(grey.std())
    return out


def _onnx_load_errors() -> tuple[type[Exception], ...]:
    """ONNX Runtime's exceptions for a model file it cannot load (bad protobuf or graph, unknown operator)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoModel", "NoSuchFile", "NotImplemented")
    return tuple(getattr(state, name) for name in names if hasattr(state, name))


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _WheelModel:
    """ONNX classifier of 100 circular tenths; subclasses fix the kind and file."""

    kind = ""

    def __init__(self, model_path: str | Path | None = None, *, num_threads: int = 1, batch_size: int = 64) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path) if model_path else MODEL_DIR / MODEL_FILE[self.kind]
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{self.model_path}: model file not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        except _onnx_load_errors() as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"{self.model_path}: not a usable ONNX model ({first_line})") from exc
        self._input_name = self._session.get_inputs()[0].name
        self.batch_size = batch_size
        self.model_sha256 = _file_sha256(self.model_path)
        sidecar = self.model_path.with_suffix(".json")
        try:
            self.info: dict = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{sidecar}: not valid JSON ({exc})") from None
        try:
            self.input_spec = input_spec_from_sidecar(self.info, self.kind)
        except ConfigError as exc:
            raise ConfigError(f"{sidecar}: {exc}") from None
        try:
            self.abstention = Abstention.from_sidecar(self.info)
        except ConfigError as exc:
            raise ConfigError(f"{sidecar}: {exc}") from None
        outputs = self._session.get_outputs()
        self.n_outputs = int(outputs[0].shape[1])
        self._member_output = next((o.name for o in outputs[1:] if o.name == "member_logits"), None)
        if self.n_outputs not in (N_CLASSES, N_CLASSES + 1):
            raise ConfigError(
                f"{self.model_path}: model gives {self.n_outputs} outputs, expected {N_CLASSES} or {N_CLASSES + 1}"
            )
        model_shape = tuple(self._session.get_inputs()[0].shape[1:])
        if model_shape != self.input_spec.shape:
            raise ConfigError(
                f"{self.model_path}: model input {model_shape} does not match its "
                f"sidecar's {self.input_spec.shape} (C, H, W)"
            )

    def run_logits(self, batch: np.ndarray) -> np.ndarray:
        """Model call on a preprocessed (N, C, H, W) batch -> (N, 100 or 101) raw (combined) logits."""
        return self._session.run(None, {self._input_name: batch})[0]

    def run_members(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Model call -> (combined logits (N, K), members' logits (N, M, K) or None for a single model)."""
        outputs = self._session.run(None, {self._input_name: batch})
        return outputs[0], (outputs[1] if self._member_output else None)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """Model call on a preprocessed (N, C, H, W) batch -> (N, 100) wheel-position probabilities."""
        return decode_logits(self.run_logits(batch), self.abstention)[2]

    def read(self, crops: Sequence[np.ndarray]) -> WheelReadings:
        """Read crops (any size, grey or BGR uint8) in batches of `batch_size`."""
        calls = [
            self.run_members(preprocess_crops(crops[i : i + self.batch_size], self.input_spec))
            for i in range(0, len(crops), self.batch_size)
        ]
        all_logits = np.concatenate([c[0] for c in calls]) if calls else np.zeros((0, self.n_outputs), np.float32)
        members = np.concatenate([c[1] for c in calls]) if calls and self._member_output else None
        value, confidence, probs, reject, readable, reason = decode_logits(
            all_logits, self.abstention, crop_contrast(crops)
        )
        contradicts, contradiction, confirms = self.second_opinion(crops, value)
        confirmed = confirmed_torn(reason, confidence, confirms)
        readable = readable | confirmed
        reason = tuple("" if c else r for r, c in zip(reason, confirmed, strict=True))
        for disagree, why in (members_disagree(members, value, self.abstention), (contradicts, contradiction)):
            reason = tuple(r or (w if d else "") for r, w, d in zip(reason, why, disagree, strict=True))
            readable = readable & ~disagree
        return WheelReadings(value, confidence, probs, readable, reason, reject)

    def second_opinion(
        self, crops: Sequence[np.ndarray], value: np.ndarray
    ) -> tuple[np.ndarray, list[str], np.ndarray]:
        """An independent reader's verdict on `value`: where it contradicts it (bool (N,)) and why,
        and where it confirms it closely enough to read a crop the model alone is torn about
        (bool (N,)); neither by default."""
        return np.zeros(len(value), bool), [""] * len(value), np.zeros(len(value), bool)


class DigitReader(_WheelModel):
    """Reads digit-wheel crops (meterbench/models/digit_wheel.onnx).

    With `ocr`, a general text recogniser (models._ocr; rapidocr-onnxruntime
    installed --no-deps) gives a second opinion on the whole digit: where it is sure of a digit the reading
    cannot show, the crop is not readable. It costs about 200 crops/s on one
    thread (the wheel model alone: about 18,000), so it is off by default.
    """

    kind = "digit"

    def __init__(
        self, model_path: str | Path | None = None, *, num_threads: int = 1, batch_size: int = 64, ocr: bool = False
    ) -> None:
        super().__init__(model_path, num_threads=num_threads, batch_size=batch_size)
        self._ocr = None
        if ocr:
            from meterbench.models._ocr import OcrDigits

            self._ocr = OcrDigits(num_threads=num_threads)

    def second_opinion(
        self, crops: Sequence[np.ndarray], value: np.ndarray
    ) -> tuple[np.ndarray, list[str], np.ndarray]:
        if self._ocr is None:
            return super().second_opinion(crops, value)
        from meterbench.models._ocr import ocr_disagrees

        probs = self._ocr.digit_probs(crops)
        why = [f"second opinion disagrees (OCR reads {d} with probability {p:.2f})" for d, p in
               zip(probs.argmax(axis=1), probs.max(axis=1), strict=True)]  # fmt: skip
        return ocr_disagrees(value, probs), why, np.zeros(len(value), bool)  # never confirms: not measured


class DialReader(_WheelModel):
    """Reads red pointer sub-dial crops (meterbench/models/pointer_dial.onnx).

    A classical geometric reader (models.dial_geometry) gives a second opinion:
    where it contradicts the CNN by more than `geometry_tolerance` (0..10 units;
    0.5 = a wrong reading), the crop is not readable.
    """

    kind = "dial"
    geometry_tolerance = GEOMETRY_TOLERANCE

    def second_opinion(
        self, crops: Sequence[np.ndarray], value: np.ndarray
    ) -> tuple[np.ndarray, list[str], np.ndarray]:
        from meterbench.models.dial_geometry import confirms, disagrees, read_dial_geometry

        geometry = read_dial_geometry(crops)
        disagree = disagrees(value, geometry, self.geometry_tolerance)
        why = [f"second opinion disagrees (pointer geometry reads {v:.1f})" for v in geometry.value]
        return disagree, why, confirms(value, geometry, CONFIRM_AGREEMENT)


@dataclass(frozen=True)
class CropResult:
    """Reading of one crop file; `error` is a one-line reason when it could not be read."""

    path: str
    value: float = float("nan")
    confidence: float = 0.0
    error: str = ""
    readable: bool = False
    reason: str = ""


def _load_crop(path: str) -> tuple[np.ndarray | None, str]:
    if not Path(path).is_file():
        return None, "file not found"
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        return None, "not a readable image (expected PNG/JPEG/BMP...)"
    if min(image.shape[:2]) < 4:
        return None, f"image too small ({image.shape[1]}×{image.shape[0]} px, need ≥ 4×4)"
    return image, ""


def read_crop_files(
    paths: Iterable[str | Path],
    kind: str = "digit",
    batch_size: int = 64,
    reader: _WheelModel | None = None,
) -> Iterator[CropResult]:
    """Read crop image files in batches, yielding one CropResult per path, in order.

    A missing or unreadable file yields a result with `error` set; the others
    are still read.
    """
    if kind not in MODEL_FILE:
        raise ValueError(f"kind: expected 'digit' or 'dial', got {kind!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected an integer ≥ 1, got {batch_size!r}")
    if reader is None:
        reader = DigitReader() if kind == "digit" else DialReader()
    path_list = [str(p) for p in paths]
    for start in range(0, len(path_list), batch_size):
        chunk = path_list[start : start + batch_size]
        loaded = [_load_crop(p) for p in chunk]
        good = [image for image, _ in loaded if image is not None]
        readings = reader.read(good) if good else None
        k = 0
        for path, (image, error) in zip(chunk, loaded, strict=True):
            if image is None:
                yield CropResult(path=path, error=error)
                continue
            yield CropResult(
                path=path,
                value=float(readings.value[k]),
                confidence=float(readings.confidence[k]),
                readable=bool(readings.readable[k]),
                reason=readings.reason[k],
            )
            k += 1
