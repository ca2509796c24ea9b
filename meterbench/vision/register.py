"""Read a water-meter register from camera frames: align, crop, read, compose.

One `RegisterReader` per camera.  `read_frames` aligns every frame to the plate
(ArUco markers), cuts each element's box straight out of the camera frame (one
small perspective warp per element), reads all wheel crops of all frames in one
`DigitReader.read` call and all dial crops in one `DialReader.read` call, then
resolves the carry right to left (`compose_register`).  An element is used only
when its reader says it is `readable` (the models' calibrated abstention), never
on a confidence guess.  A frame that cannot be trusted comes back with ok False
and a reason, never with a guessed volume; what its lower elements did say is
kept (`partial_l` modulo `partial_modulus_l`) so that the frames of a test
point can complete each other (`meterbench.verify.fusion`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from meterbench.vision.align import (
    DEFAULT_DIAL_MARGIN,
    DEFAULT_WHEEL_MARGIN,
    PlateAlignment,
    element_crop_box,
)
from meterbench.vision.compose import (
    DEFAULT_MAX_RESIDUAL,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_MIN_DIGIT_PROB,
    DEFAULT_POSITION_STD,
    N_CLASSES,
    compose_register,
)
from meterbench.vision.layout import RegisterLayout
from meterbench.vision.reference_align import ReferenceAlignment, plate_aligner

__all__ = ["CropReader", "RegisterReader", "RegisterReading", "StageTimes"]


class CropReader(Protocol):
    """What `RegisterReader` needs of a model (meterbench.models.DigitReader, DialReader)."""

    def read(self, crops: Sequence[np.ndarray]):  # -> WheelReadings (value, confidence, probs[, readable, reason])
        ...


@dataclass(frozen=True)
class RegisterReading:
    """Reading of one frame (docs/INTERFACES.md, "vision").

    volume_l (L) is nan unless ok; element_values (E,) raw positions in [0, 10)
    and element_confidence (E,) are nan / 0 for elements not read (below
    `finest_element`, or no alignment); resolution_l (L) is the standard
    uncertainty of volume_l.  homography_ok / markers_found / alignment_message
    tell how the plate was found.  element_readable (E,) is the readers' own
    verdict per element; partial_l (L) is the volume modulo partial_modulus_l (L,
    one turn of the highest element resolved from the finest up) when a higher
    element could not be used (inf when ok, nan when not even the finest was).
    """

    ok: bool
    reason: str
    volume_l: float
    element_values: np.ndarray
    element_confidence: np.ndarray
    resolution_l: float
    homography_ok: bool = False
    markers_found: tuple[int, ...] = ()
    alignment_message: str = ""
    finest_element: int = -1
    element_readable: np.ndarray | None = None
    partial_l: float = float("nan")
    partial_modulus_l: float = float("nan")
    alignment_refusal: str = ""  # reference layouts: "unregistered", "moved" or "scene" when refused
    # the frame's plate alignment (homography, rms_px, a reference layout's quality): the live view
    # draws the element boxes from it; not part of the reading's value (repr/compare)
    alignment: PlateAlignment | None = field(default=None, repr=False, compare=False)


@dataclass
class StageTimes:
    """Cumulative wall time (s) per stage over the frames read so far."""

    frames: int = 0
    align_s: float = 0.0
    crop_s: float = 0.0
    model_s: float = 0.0
    compose_s: float = 0.0

    def per_frame_ms(self) -> dict[str, float]:
        """Mean ms per frame of each stage and in total."""
        n = max(self.frames, 1)
        stages = {"align": self.align_s, "crop": self.crop_s, "model": self.model_s, "compose": self.compose_s}
        out = {k: 1e3 * v / n for k, v in stages.items()}
        out["total"] = sum(out.values())
        return out


class RegisterReader:
    """Reads register volumes (L) from camera frames of one meter.

    Parameters
    ----------
    layout : RegisterLayout (plate, markers, elements most significant first).
    digit_reader, dial_reader : objects with `.read(crops)` returning value,
        confidence, probs (meterbench.models.DigitReader / DialReader).
    min_confidence : element confidence below which an element is not used; None
        (default): 0 for readers that say `readable` themselves (calibrated
        abstention: their verdict is used, not a fixed cut), else 0.5.
    use_readable : False ignores the readers' own verdict (the behaviour before
        issue 17, for benchmarks comparing the two).
    max_residual : steps; carry inconsistency tolerated between an element and
        the one below (see `compose_register`).
    min_digit_prob : probability mass that must back each resolved digit.
    reuse_last_homography : when the markers are not found, use the last good
        homography (off by default: with camera shake it may be wrong).
    element_offsets : (E,) steps subtracted from the raw readings before the
        carry is resolved (parallax, pointers mounted off): `estimate_offsets`.
    """

    def __init__(
        self,
        layout: RegisterLayout,
        digit_reader: CropReader,
        dial_reader: CropReader | None = None,
        *,
        min_confidence: float | None = None,
        use_readable: bool = True,
        max_residual: float = DEFAULT_MAX_RESIDUAL,
        min_digit_prob: float = DEFAULT_MIN_DIGIT_PROB,
        position_std: float = DEFAULT_POSITION_STD,
        wheel_margin: float = DEFAULT_WHEEL_MARGIN,
        dial_margin: float = DEFAULT_DIAL_MARGIN,
        reuse_last_homography: bool = False,
        element_offsets: Sequence[float] | None = None,
    ) -> None:
        if dial_reader is None and any(e.kind == "dial" for e in layout.elements):
            raise ValueError("RegisterReader: dial_reader: the layout has dials, expected a DialReader")
        self.layout = layout
        self.digit_reader = digit_reader
        self.dial_reader = dial_reader
        self.min_confidence = min_confidence
        self.use_readable = use_readable
        self.compose_options = {
            "max_residual": max_residual,
            "min_digit_prob": min_digit_prob,
            "position_std": position_std,
        }
        self.reuse_last_homography = reuse_last_homography
        offsets = np.zeros(len(layout.elements)) if element_offsets is None else np.asarray(element_offsets, np.float64)
        if offsets.shape != (len(layout.elements),) or not np.all(np.abs(offsets) < 1.0):
            raise ValueError(
                f"RegisterReader: element_offsets: expected {len(layout.elements)} "
                f"offsets in (-1, 1) steps, got {element_offsets!r}"
            )
        self.element_offsets = offsets
        self.aligner = plate_aligner(layout)  # ArUco markers or the layout's reference photo
        self.crop_boxes = [
            element_crop_box(e, wheel_margin=wheel_margin, dial_margin=dial_margin) for e in layout.elements
        ]
        self.times = StageTimes()
        self._last_good: PlateAlignment | None = None
        self._previous: PlateAlignment | None = None  # last frame's, narrows the search

    # -- public ----------------------------------------------------------
    def read_frame(self, frame: np.ndarray, finest_element: int | None = None) -> RegisterReading:
        """Read one frame (H×W×3 BGR or H×W grey uint8)."""
        return self.read_frames([frame], finest_element)[0]

    def read_frames(self, frames: Sequence[np.ndarray], finest_element: int | None = None) -> list[RegisterReading]:
        """Read many frames with one model call per element kind (batched)."""
        finest = self._check_finest(finest_element)
        t0 = time.perf_counter()
        alignments = [self.align(frame) for frame in frames]
        t1 = time.perf_counter()
        crops = {"wheel": [], "dial": []}
        slots: list[tuple[int, int, str, int]] = []  # (frame, element, kind, index in kind)
        for f, (frame, alignment) in enumerate(zip(frames, alignments, strict=True)):
            if not alignment:
                continue
            for e, element in enumerate(self.layout.elements[: finest + 1]):
                if frame.ndim == 2 and element.kind == "dial":
                    continue  # the dial model finds the pointer by its red colour
                slots.append((f, e, element.kind, len(crops[element.kind])))
                crops[element.kind].append(alignment.warp_box(frame, self.crop_boxes[e]))
        t2 = time.perf_counter()
        results = {
            "wheel": self._run(self.digit_reader, crops["wheel"]),
            "dial": self._run(self.dial_reader, crops["dial"]),
        }
        t3 = time.perf_counter()
        readings = self._compose_all(alignments, slots, results, finest)
        readings = [
            self._grey_frame_reason(r) if frame.ndim == 2 else r for frame, r in zip(frames, readings, strict=True)
        ]
        t4 = time.perf_counter()
        self.times.frames += len(frames)
        self.times.align_s += t1 - t0
        self.times.crop_s += t2 - t1
        self.times.model_s += t3 - t2
        self.times.compose_s += t4 - t3
        return readings

    def align(self, frame: np.ndarray) -> PlateAlignment:
        """Plate alignment of one frame (markers searched near the previous frame's
        first); reuses the last good homography only if configured."""
        alignment = self.aligner.align(frame, near=self._previous)
        self._previous = alignment if alignment else None
        if alignment:
            self._last_good = alignment
        elif self.reuse_last_homography and self._last_good is not None:
            alignment = self._last_good.reused_copy(alignment.message)
        return alignment

    def element_crops(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        """Element name -> the crop handed to its model (empty if the markers are not
        found).  Save them to run `meterbench digits` / `meterbench dials` on them."""
        alignment = self.aligner.align(frame)
        if not alignment:
            return {}
        return {
            e.name: alignment.warp_box(frame, box) for e, box in zip(self.layout.elements, self.crop_boxes, strict=True)
        }

    def frame_corners(self, reading: RegisterReading) -> list[list[list[float]] | None]:
        """Per element, the 4 corners (x, y) of its crop in the frame's px as `reading`'s alignment
        put them (None for all when the frame was not aligned): what the live page and
        `meterbench read --overlay` draw."""
        alignment = reading.alignment
        if not alignment:
            return [None] * len(self.layout.elements)
        import cv2

        boxes = []
        for x, y, w, h in self.crop_boxes:
            boxes.extend([(x, y), (x + w, y), (x + w, y + h), (x, y + h)])
        points = cv2.perspectiveTransform(np.asarray(boxes, np.float64).reshape(-1, 1, 2), alignment.camera_from_plate)
        return points.reshape(-1, 4, 2).tolist()

    # -- internals -------------------------------------------------------
    def _check_finest(self, finest_element: int | None) -> int:
        n_el = len(self.layout.elements)
        if finest_element is None:
            return n_el - 1
        if not 0 <= int(finest_element) < n_el:
            raise ValueError(f"RegisterReader: finest_element: expected 0..{n_el - 1}, got {finest_element}")
        return int(finest_element)

    def _run(self, reader: CropReader | None, crops: list[np.ndarray]) -> tuple:
        """(value, confidence, probs, readable, reason, min_confidence) of one model call."""
        if not crops:
            return np.zeros(0), np.zeros(0), np.zeros((0, N_CLASSES)), np.zeros(0, bool), (), 0.0
        res = reader.read(crops)
        own_verdict = getattr(res, "readable", None) if self.use_readable else None
        readable = np.ones(len(crops), bool) if own_verdict is None else np.asarray(own_verdict, bool)
        reasons = (
            tuple(getattr(res, "reason", None) or ("",) * len(crops)) if own_verdict is not None else ("",) * len(crops)
        )
        if self.min_confidence is not None:
            min_confidence = self.min_confidence
        else:
            min_confidence = DEFAULT_MIN_CONFIDENCE if own_verdict is None else 0.0
        return (
            np.asarray(res.value, np.float64),
            np.asarray(res.confidence, np.float64),
            np.asarray(res.probs, np.float64),
            readable,
            reasons,
            min_confidence,
        )

    def _compose_all(
        self,
        alignments: list[PlateAlignment],
        slots: list[tuple[int, int, str, int]],
        results: dict[str, tuple],
        finest: int,
    ) -> list[RegisterReading]:
        n_frames, n_el = len(alignments), len(self.layout.elements)
        values = np.full((n_frames, n_el), np.nan)
        confidence = np.zeros((n_frames, n_el))
        probs = np.zeros((n_frames, n_el, N_CLASSES))
        readable = np.zeros((n_frames, n_el), bool)
        reasons = [[""] * n_el for _ in range(n_frames)]
        # the element's own confidence cut: 0 where its reader abstains by itself
        min_confidence = np.full(n_el, DEFAULT_MIN_CONFIDENCE if self.min_confidence is None else self.min_confidence)
        for f, e, kind, k in slots:
            value, conf, prob, read_ok, why, min_conf = results[kind]
            values[f, e], confidence[f, e], probs[f, e], readable[f, e] = value[k], conf[k], prob[k], read_ok[k]
            reasons[f][e] = why[k]
            min_confidence[e] = min_conf
        return [
            self._reading(
                alignments[f], values[f], confidence[f], probs[f], readable[f], reasons[f], min_confidence, finest
            )
            for f in range(n_frames)
        ]

    def _reading(
        self,
        alignment: PlateAlignment,
        values: np.ndarray,
        confidence: np.ndarray,
        probs: np.ndarray,
        readable: np.ndarray,
        reasons: list[str],
        min_confidence: np.ndarray,
        finest: int,
    ) -> RegisterReading:
        common = {
            "element_values": values,
            "element_confidence": confidence,
            "element_readable": readable,
            "homography_ok": bool(alignment),
            "markers_found": alignment.markers_found,
            "alignment_message": alignment.message,
            "finest_element": finest,
            "alignment": alignment,
        }
        if isinstance(alignment, ReferenceAlignment):
            common["alignment_refusal"] = alignment.refusal
        if not alignment:
            reason = (
                alignment.message
                if isinstance(alignment, ReferenceAlignment)
                else f"markers not found: {alignment.message}"
            )
            return RegisterReading(False, reason, float("nan"), resolution_l=float("nan"), **common)
        corrected, shifted_probs = self._remove_offsets(values, probs)
        result = compose_register(
            self.layout,
            corrected,
            confidence,
            shifted_probs,
            finest,
            readable=readable,
            reasons=tuple(reasons),
            min_confidence=min_confidence,
            **self.compose_options,
        )
        return RegisterReading(
            result.ok,
            result.reason,
            result.volume_l,
            resolution_l=result.resolution_l,
            partial_l=result.partial_l,
            partial_modulus_l=result.partial_modulus_l,
            **common,
        )

    def _grey_frame_reason(self, reading: RegisterReading) -> RegisterReading:
        """Say why the dials of a grey frame were not read (instead of "value nan")."""
        unread = [
            e.name
            for e, v in zip(self.layout.elements[: reading.finest_element + 1], reading.element_values, strict=False)
            if e.kind == "dial" and np.isnan(v)
        ]
        if reading.ok or not reading.homography_ok or not unread:
            return reading
        return replace(reading, reason=f"grey frame: red dial {unread[0]} needs a colour frame")

    def _remove_offsets(self, values: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw readings minus the calibrated element offsets (steps); probabilities
        rolled by the same amount (whole tenth classes)."""
        if not self.element_offsets.any():
            return values, probs
        corrected = np.mod(values - self.element_offsets, 10.0)
        corrected[corrected >= 10.0] = 0.0
        shifts = np.rint(self.element_offsets * 10).astype(int)
        rolled = np.stack([np.roll(p, -k) for p, k in zip(probs, shifts, strict=True)])
        return corrected, rolled
