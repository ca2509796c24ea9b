"""Registers without fiducials, as a fixed bench camera sees them.

The camera is set up square to the register (a fixture above the meter); one
frame of it, taken before the run, is the layout's reference photo, and the
layout's boxes are the plate's boxes in that photo's pixels.  During the run
the meter sits a little differently in the fixture (a shift of up to ±15 px
and a rotation of up to ±3° since the reference was taken), creeps slowly
(drift), and the light changes (overall gain and its gradient).  Plain data
and pure functions of a numpy Generator: the same seed gives the same frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from meterbench.errors import ConfigError
from meterbench.sim.register_render import CameraModel, RegisterRenderer
from meterbench.vision.layout import RegisterLayout

__all__ = [
    "UPSET_KINDS",
    "LightChange",
    "PlateMotion",
    "SceneUpset",
    "cover_with_hand",
    "fog",
    "frontal_camera",
    "reference_layout",
    "reference_photo",
    "render_markerless",
    "upset_frame",
    "upset_matrix",
]

MAX_SHIFT_PX = 15.0
MAX_ROTATION_DEG = 3.0
MAX_DRIFT_PX = 3.0  # creep of the meter over the whole run
MAX_DRIFT_DEG = 0.4


def frontal_camera(
    rng: np.random.Generator, plate_size_px: tuple[int, int], frame_size_px: tuple[int, int] = (640, 360)
) -> CameraModel:
    """A camera square to the plate (no tilt, no rotation), the plate 74–84 % of the frame
    width, otherwise as varied as `CameraModel.random` (light, glare, noise, blur, shake)."""
    base = CameraModel.random(rng, plate_size_px, frame_size_px)
    fw, fh = frame_size_px
    pw, ph = plate_size_px
    scale = float(rng.uniform(0.74, 0.84)) * fw / pw
    cx = fw / 2 + float(rng.uniform(-0.02, 0.02)) * fw
    cy = fh / 2 + float(rng.uniform(-0.02, 0.02)) * fh
    x0, y0, x1, y1 = cx - pw * scale / 2, cy - ph * scale / 2, cx + pw * scale / 2, cy + ph * scale / 2
    return replace(base, plate_corners_px=((x0, y0), (x1, y0), (x1, y1), (x0, y1)))


def _plate_to_frame(camera: CameraModel, plate_size_px: tuple[int, int]) -> tuple[float, float, float]:
    """(scale, x0, y0) of a frontal camera: frame px = plate px × scale + (x0, y0)."""
    (x0, y0), (x1, _), _, _ = camera.plate_corners_px
    return (x1 - x0) / plate_size_px[0], x0, y0


def reference_layout(plate_layout: RegisterLayout, camera: CameraModel, image: str) -> dict:
    """The `register` dict of a marker-free layout: the plate's elements in the reference
    photo's pixels (a frontal camera: scale and shift), plate = the frame, `image` its path."""
    scale, x0, y0 = _plate_to_frame(camera, plate_layout.plate_size_px)
    elements = []
    for element in plate_layout.elements:
        item = element.to_dict()
        x, y, w, h = element.box_px
        item["box_px"] = [round(x * scale + x0, 3), round(y * scale + y0, 3), round(w * scale, 3), round(h * scale, 3)]
        if element.center_px is not None:
            cx, cy = element.center_px
            item["center_px"] = [round(cx * scale + x0, 3), round(cy * scale + y0, 3)]
            item["radius_px"] = round(float(element.radius_px) * scale, 3)
        elements.append(item)
    return {"plate_size_px": list(camera.frame_size_px), "reference": {"image": image}, "elements": elements}


def reference_photo(
    plate_layout: RegisterLayout,
    camera: CameraModel,
    positions: np.ndarray,
    rng: np.random.Generator,
    *,
    label: str,
    red_wheel_style: str,
) -> np.ndarray:
    """The reference photo: one still frame of the camera at rest (no shake, no motion)."""
    still = replace(camera, shake_px=0.0, shake_deg=0.0)
    renderer = RegisterRenderer(
        plate_layout, rng=rng, camera=still, label=label, red_wheel_style=red_wheel_style, markers=False
    )
    return renderer.render(positions)


@dataclass(frozen=True)
class PlateMotion:
    """Where the meter sits in the frame relative to the reference photo: an offset (`shift_px`
    (x, y), `rotation_deg` about `centre_px`) plus a drift growing linearly to `drift_px` and
    `drift_deg` at `duration_s`."""

    centre_px: tuple[float, float]
    shift_px: tuple[float, float]
    rotation_deg: float
    drift_px: tuple[float, float]
    drift_deg: float
    duration_s: float

    @classmethod
    def random(cls, rng: np.random.Generator, centre_px: tuple[float, float], duration_s: float) -> PlateMotion:
        """Offset up to ±15 px and ±3°, drift up to 3 px and 0.4° over the run."""
        angle = float(rng.uniform(0, 2 * math.pi))
        drift = float(rng.uniform(0.5, 1.0)) * MAX_DRIFT_PX
        return cls(
            centre_px=centre_px,
            shift_px=tuple(float(v) for v in rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX, 2)),
            rotation_deg=float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)),
            drift_px=(drift * math.cos(angle), drift * math.sin(angle)),
            drift_deg=float(rng.uniform(-MAX_DRIFT_DEG, MAX_DRIFT_DEG)),
            duration_s=max(float(duration_s), 1e-9),
        )

    def matrix(self, t_s: float) -> np.ndarray:
        """3×3 frame-px transform at time `t_s` (s)."""
        k = min(max(t_s / self.duration_s, 0.0), 1.0)
        m = cv2.getRotationMatrix2D(self.centre_px, self.rotation_deg + k * self.drift_deg, 1.0)
        m[:, 2] += (self.shift_px[0] + k * self.drift_px[0], self.shift_px[1] + k * self.drift_px[1])
        return np.vstack([m, [0.0, 0.0, 1.0]])

    def to_dict(self) -> dict:
        return {
            "shift_px": list(self.shift_px),
            "rotation_deg": self.rotation_deg,
            "drift_px": list(self.drift_px),
            "drift_deg": self.drift_deg,
        }


@dataclass(frozen=True)
class LightChange:
    """Light that changes during the run: overall gain 1 ± `gain_amplitude` (period `period_s`)
    and a horizontal gradient of ± `gradient_amplitude` sweeping with it."""

    gain_amplitude: float
    gradient_amplitude: float
    period_s: float
    phase: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> LightChange:
        return cls(
            float(rng.uniform(0.1, 0.25)),
            float(rng.uniform(0.05, 0.15)),
            float(rng.uniform(20.0, 90.0)),
            float(rng.uniform(0, 2 * math.pi)),
        )

    def apply(self, frame: np.ndarray, t_s: float) -> np.ndarray:
        """`frame` (BGR uint8) lit as at `t_s` (s)."""
        phase = 2 * math.pi * t_s / self.period_s + self.phase
        gain = 1.0 + self.gain_amplitude * math.sin(phase)
        width = frame.shape[1]
        ramp = 1.0 + self.gradient_amplitude * math.cos(phase) * np.linspace(-1.0, 1.0, width, dtype=np.float32)
        lit = frame.astype(np.float32) * (gain * ramp)[None, :, None]
        return np.clip(lit, 0, 255).astype(np.uint8)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def cover_with_hand(frame: np.ndarray, rng: np.random.Generator, fraction: float = 0.3) -> np.ndarray:
    """`frame` with a hand (a skin-coloured palm and fingers, softly shaded) reaching in from one
    side over about `fraction` of its width."""
    out = frame.copy()
    h, w = frame.shape[:2]
    side = int(rng.integers(4))
    reach = fraction * (w if side < 2 else h)
    skin = tuple(int(v) for v in (rng.uniform(90, 140), rng.uniform(130, 170), rng.uniform(180, 225)))
    layer = np.zeros((h, w), np.uint8)
    along = float(rng.uniform(0.3, 0.7))
    if side == 0:  # from the left
        centre, axes, finger_dir = (0, int(along * h)), (int(reach), int(0.28 * h)), (1.0, 0.0)
    elif side == 1:  # from the right
        centre, axes, finger_dir = (w, int(along * h)), (int(reach), int(0.28 * h)), (-1.0, 0.0)
    elif side == 2:  # from the top
        centre, axes, finger_dir = (int(along * w), 0), (int(0.18 * w), int(reach)), (0.0, 1.0)
    else:  # from the bottom
        centre, axes, finger_dir = (int(along * w), h), (int(0.18 * w), int(reach)), (0.0, -1.0)
    cv2.ellipse(layer, centre, axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
    for k in range(4):  # fingers beyond the palm
        offset = (k - 1.5) * 0.09 * (h if side < 2 else w)
        base = np.array(centre, np.float64) + np.array(finger_dir) * (0.8 * max(axes))
        base += np.array([-finger_dir[1], finger_dir[0]]) * offset
        tip = base + np.array(finger_dir) * float(rng.uniform(0.25, 0.45)) * reach
        cv2.line(layer, _point(base), _point(tip), 255, max(6, int(0.05 * min(h, w))), cv2.LINE_AA)
    alpha = cv2.GaussianBlur(layer, (0, 0), 2.0).astype(np.float32)[:, :, None] / 255.0
    shade = np.linspace(0.85, 1.05, w, dtype=np.float32)[None, :, None]
    hand = np.empty_like(out, np.float32)
    hand[:] = skin
    out = out.astype(np.float32) * (1 - alpha) + hand * shade * alpha
    return np.clip(out, 0, 255).astype(np.uint8)


def _point(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


def fog(frame: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """`frame` seen through fogged glass: washed towards light grey by `strength` (0..1) and blurred."""
    veil = cv2.GaussianBlur(frame, (0, 0), 1.0 + 4.0 * strength).astype(np.float32)
    out = veil * (1.0 - strength) + 205.0 * strength
    return np.clip(out, 0, 255).astype(np.uint8)


UPSET_KINDS = ("jump", "hand")


@dataclass(frozen=True)
class SceneUpset:
    """A stretch of a markerless camera's run that no frame should be read through.

    ``kind`` "jump": the camera knocked, the plate a further `shift_px` (x, y) and `rotation_deg`
    (about the plate centre) off from `t_from_s` to `t_to_s` (s), back in its place after (far
    beyond what the homography of a fixed camera may follow: docs/markerless.md); "hand": a hand
    over about `fraction` of the frame's width meanwhile, held still (its shape drawn from `seed`).
    """

    kind: str
    t_from_s: float
    t_to_s: float
    shift_px: tuple[float, float] = (0.0, 0.0)
    rotation_deg: float = 0.0
    fraction: float = 0.45
    seed: int = 0

    def __post_init__(self) -> None:
        where = f"scene upset {self.kind!r}"
        if self.kind not in UPSET_KINDS:
            raise ConfigError(f"scene upset: kind: expected one of {', '.join(UPSET_KINDS)}, got {self.kind!r}")
        times = (self.t_from_s, self.t_to_s)
        if not all(math.isfinite(t) for t in times) or not 0.0 <= self.t_from_s < self.t_to_s:
            raise ConfigError(f"{where}: t_from_s, t_to_s: expected 0 <= t_from_s < t_to_s (s), got {times}")
        if not (0.05 <= self.fraction <= 0.9):
            raise ConfigError(f"{where}: fraction: expected 0.05..0.9 of the frame, got {self.fraction!r}")

    def active(self, t_s: float) -> bool:
        """Whether the upset spoils the frame at `t_s` (s)."""
        return self.t_from_s <= t_s <= self.t_to_s

    def to_dict(self) -> dict:
        return {**self.__dict__, "shift_px": list(self.shift_px)}


def upset_matrix(upsets: Sequence[SceneUpset], t_s: float, centre_px: tuple[float, float]) -> np.ndarray:
    """3×3 frame-px transform of the jumps active at `t_s` (s), applied after the plate's motion."""
    out = np.eye(3)
    for upset in upsets:
        if upset.kind == "jump" and upset.active(t_s):
            m = cv2.getRotationMatrix2D(centre_px, upset.rotation_deg, 1.0)
            m[:, 2] += upset.shift_px
            out = np.vstack([m, [0.0, 0.0, 1.0]]) @ out
    return out


def upset_frame(frame: np.ndarray, upsets: Sequence[SceneUpset], t_s: float) -> np.ndarray:
    """`frame` with the hands of the upsets active at `t_s` (s) over it."""
    for upset in upsets:
        if upset.kind == "hand" and upset.active(t_s):
            frame = cover_with_hand(frame, np.random.default_rng(upset.seed), fraction=upset.fraction)
    return frame


def render_markerless(
    renderer: RegisterRenderer,
    positions: np.ndarray,
    t_s: float,
    motion: PlateMotion,
    light: LightChange,
    upsets: Sequence[SceneUpset] = (),
    blur: np.ndarray | None = None,
) -> np.ndarray:
    """One frame of a markerless camera at `t_s` (s): the register at `positions` (`blur`: its
    motion during the exposure) with the plate where `motion` and the jumps of `upsets` put it,
    their hands over it, lit by `light`."""
    plate = upset_matrix(upsets, t_s, motion.centre_px) @ motion.matrix(t_s)
    frame = renderer.render(positions, blur, plate_motion=plate)
    return light.apply(upset_frame(frame, upsets, t_s), t_s)
