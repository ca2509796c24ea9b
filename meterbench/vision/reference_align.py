"""Marker-free plate alignment: register each camera frame to the layout's reference photo.

A layout with `reference` (instead of ArUco `markers`) has its boxes drawn on
one photo of the fixed camera.  Every frame is mapped onto that photo by a
homography found by ECC (enhanced correlation coefficient) on a pyramid of
band-passed images (difference of Gaussians: the light's gain and gradient
drop out), over the static print only (element windows masked: wheels and
pointers move): a rotation and shift at 1/8 and 1/4 scale from the identity
(the camera is fixed: ±15 px and ±3° are well inside the basin there), then a
homography at 1/2 scale.  With the previous frame's alignment only the last
level runs, from it.  Photos larger than 640 px are aligned at that size.  ORB features + RANSAC were measured too
(benchmarks/alignment.py, `method="features+ecc"`): on a plate whose print is
thin and partly repetitive (dial numerals, ticks) most nearest-neighbour
matches are wrong, so features only seed ECC there.

Every alignment is checked before a frame is read: ECC converged (its last
level moved the element crops by little; with features: enough consistent
matches), a plausible motion (no element leaving the frame, no strong scaling
or shear: a homography cannot follow a meter that tilted or left),
photometric agreement with the reference over the static print (normalised
cross-correlation of the band-passed images, globally and per tile, and their
contrast: fog, another meter, a hand over the print), and no element window
showing colours its reference window has nowhere (a hand or a finger over a
wheel or dial).  A frame that fails is not
read: `ReferenceAlignment.refusal` says which check failed ("unregistered",
"moved", "scene") and `message` why, with figures.  `AlignmentWatch` turns
the refused frames of a camera into warnings saying when each stretch began.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from meterbench.vision.align import (
    DEFAULT_DIAL_MARGIN,
    DEFAULT_WHEEL_MARGIN,
    MarkerAligner,
    PlateAlignment,
    element_crop_box,
)
from meterbench.vision.layout import RegisterLayout

__all__ = [
    "AlignmentQuality",
    "AlignmentWatch",
    "ReferenceAligner",
    "ReferenceAlignment",
    "plate_aligner",
]

#: ECC pyramid: (scale, motion model, iterations, DoG inner and outer sigma in level px).  A full-
#: resolution level after it was measured too (45 frames): element box error p95 0.61 -> 0.25 px
#: for ~4x the time; the register readings were right either way, so the half-scale fit is kept.
PYRAMID = (
    (0.125, cv2.MOTION_EUCLIDEAN, 20, 1.5, 6.0),
    (0.25, cv2.MOTION_EUCLIDEAN, 10, 1.0, 4.0),
    (0.5, cv2.MOTION_HOMOGRAPHY, 12, 0.7, 4.0),
)
WORK_SIZE_PX = 640  # the pyramid's scales are for a reference this large (longer side); a larger
# photo is first scaled down to it: the ±15 px of a 640 px frame are a fraction of the field of
# view, and ECC's cost grows with the pixels (a 4000 px photo at 1/2 would take seconds)
TRACK_LEVELS = 1  # from the previous frame: only the last level ...
TRACK_ITERATIONS = 8  # ... with fewer iterations (the camera held still)
MAX_STEP_PX = 2.5  # the last ECC level may move the element crops by at most this (else it ran off)
N_FEATURES = 1500  # ORB keypoints per image
FAST_THRESHOLD = 12  # ORB's FAST threshold (grey levels): low, the print is thin
RATIO_TEST = 0.9  # Lowe's ratio between best and second-best match (among the nearby ones)
SEARCH_PX = 60.0  # a frame feature is matched only to reference features this close to where
# the previous alignment (or, without one, the reference itself: the camera is fixed) puts it;
# ±15 px and ±3° move the plate's corners by at most ~35 px
RANSAC_PX = 3.0  # reference px: inlier distance for the RANSAC fit
MIN_INLIERS = 20  # consistent matches needed to trust a feature homography
CONTEXT_FRACTION = 0.35  # the static print looked at: element hull + this fraction each side
MIN_NCC = 0.7  # photometric agreement over the whole static print (clean frames: 0.82-0.99)
MIN_TILE_NCC = 0.6  # ... and in each textured tile (a hand, a wet patch; clean frames >= 0.82)
TILE_GRID = (4, 3)  # tiles (columns, rows) over the static print
MIN_CONTRAST = 0.5  # band-passed std of the frame / the reference's (fog, glare, defocus)
#: An element window is covered (a hand, a finger, a reflection) when more than this fraction of
#: its pixels has a colour its reference window does not have anywhere (digits and pointers move,
#: but keep their colours); colours binned by luminance (light gain removed) and chroma.
MAX_FOREIGN_FRACTION = 0.03  # clean frames: <= 0.05 % (benchmarks/alignment.py); hands mostly 5-98 %
COLOUR_BINS = (8, 16, 16)  # luminance, blue − green, red − green: a bin and its neighbours are allowed
MAX_SCALE_CHANGE = 0.15  # local scale of the homography: 1 ± this
MAX_SHEAR = 0.08  # anisotropy of the local Jacobian (singular value ratio − 1)
MAX_ROTATION_DEG = 15.0
EDGE_CLEARANCE_PX = 2.0  # every element crop must lie this far inside the camera frame

_CENTRE_TO_EDGE = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
_EDGE_TO_CENTRE = np.linalg.inv(_CENTRE_TO_EDGE)


@dataclass(frozen=True)
class AlignmentQuality:
    """How well one frame matches the reference photo.

    `method`: "ecc" (pyramid from the identity), "track" (ECC from the
    previous frame) or "features+ecc".  `matches` / `inliers`: feature matches
    and those consistent with the RANSAC fit (0 without features);
    `reprojection_px`: for features the inliers' RMS distance, for ECC how far
    its last iteration level still moved the element crops (reference px: a
    converged fit moves them by a few hundredths); `ncc`: normalised cross-correlation of the
    warped frame with the reference over the static print (1 = identical up to
    gain and light gradient), `tile_ncc`: the worst textured tile's;
    `contrast`: the frame's band-passed contrast over the reference's; `shift_px`,
    `rotation_deg` (counter-clockwise in the image), `scale`: the motion of the plate
    centre since the reference.
    """

    method: str
    matches: int
    inliers: int
    reprojection_px: float
    ncc: float
    tile_ncc: float
    contrast: float
    shift_px: float
    rotation_deg: float
    scale: float

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class ReferenceAlignment(PlateAlignment):
    """A PlateAlignment found against a reference photo, with its quality and, when
    falsy, which check refused it (`refusal`: "unregistered", "moved", "scene")."""

    quality: AlignmentQuality | None = None
    refusal: str = ""


def _refused(kind: str, message: str, quality: AlignmentQuality | None = None) -> ReferenceAlignment:
    return ReferenceAlignment(None, message=message, quality=quality, refusal=kind)


def _dog(grey: np.ndarray, scale: float, inner: float, outer: float) -> np.ndarray:
    """`grey` at `scale`, band-passed (difference of Gaussians, level px): the print, not the light."""
    image = grey if scale == 1.0 else cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    image = image.astype(np.float32)
    return cv2.GaussianBlur(image, (0, 0), inner) - cv2.GaussianBlur(image, (0, 0), outer)


def _scaling(scale: float) -> np.ndarray:
    """Full-resolution pixel-centre coordinates -> those of a level resized by `scale`."""
    offset = (scale - 1.0) / 2.0
    return np.array([[scale, 0.0, offset], [0.0, scale, offset], [0.0, 0.0, 1.0]])


def _grey(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b)) / denominator if denominator > 0 else 0.0


class ReferenceAligner:
    """Aligns camera frames to a layout's reference photo (same interface as MarkerAligner).

    `align(frame, near=None)` returns a ReferenceAlignment: truthy with the
    camera -> reference homography (edge convention, reference px = plate px)
    and its `quality`, or falsy with `refusal` and a message.  With `near` (the
    previous frame's good alignment) ECC starts from it; when that fails the
    full pyramid runs.  `method`: "ecc" (default) or "features+ecc" (ORB +
    RANSAC seed the homography levels; measured in benchmarks/alignment.py).
    """

    def __init__(
        self,
        layout: RegisterLayout,
        *,
        method: str = "ecc",
        min_inliers: int = MIN_INLIERS,
        max_step_px: float = MAX_STEP_PX,
        min_ncc: float = MIN_NCC,
        min_tile_ncc: float = MIN_TILE_NCC,
        min_contrast: float = MIN_CONTRAST,
    ) -> None:
        if layout.reference is None or layout.reference.pixels is None:
            raise ValueError("ReferenceAligner: layout: expected a layout with a loaded reference image")
        if method not in ("ecc", "features+ecc"):
            raise ValueError(f"ReferenceAligner: method: expected 'ecc' or 'features+ecc', got {method!r}")
        self.layout = layout
        self.method = method
        self.min_inliers = min_inliers
        self.max_step_px = max_step_px
        self.min_ncc = min_ncc
        self.min_tile_ncc = min_tile_ncc
        self.min_contrast = min_contrast
        reference = _grey(layout.reference.pixels)
        self._size = (reference.shape[1], reference.shape[0])
        self._static = self._static_mask()
        base = self._base = min(1.0, WORK_SIZE_PX / max(self._size))
        self._levels = [
            (
                scale,
                motion,
                iterations,
                (inner, outer),
                _dog(reference, scale, inner, outer),
                self._static
                if scale == 1.0
                else cv2.resize(self._static, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST),
            )
            for scale, motion, iterations, inner, outer in ((s * base, *rest) for s, *rest in PYRAMID)
        ]
        # photometric agreement at the finest level's scale (cheap; the print is still resolved)
        self._check_scale = self._levels[-1][0]
        check_ref, check_mask = self._levels[-1][4], self._levels[-1][5]
        self._check_size = (check_ref.shape[1], check_ref.shape[0])
        ys, xs = np.nonzero(check_mask)
        if ys.size == 0:
            raise ValueError("ReferenceAligner: layout: the element windows cover the whole reference image")
        self._mask_index = (ys, xs)
        self._ref_values = check_ref[ys, xs]
        self._ref_std = float(self._ref_values.std())
        self._tiles = self._tile_index(ys, xs)
        self._static_index = (ys, xs)
        small = cv2.resize(layout.reference.pixels, self._check_size, interpolation=cv2.INTER_AREA)
        self._ref_static_luma = float(small[ys, xs].mean())
        self._windows = self._element_windows(small)
        self._crop_corners = self._element_corners()
        w, h = self._size
        self._centre = np.array([w / 2.0, h / 2.0])
        self._orb = None
        if method == "features+ecc":
            self._orb = cv2.ORB_create(nfeatures=N_FEATURES, fastThreshold=FAST_THRESHOLD)
            self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
            keypoints, self._ref_descriptors = self._orb.detectAndCompute(reference, self._static)
            self._ref_points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
            gate = int(2 * SEARCH_PX + 1)
            self._search_mask = cv2.dilate(self._static, cv2.getStructuringElement(cv2.MORPH_RECT, (gate, gate)))

    # -- set-up ------------------------------------------------------------
    def _element_boxes(self) -> list[tuple[float, float, float, float]]:
        return [
            element_crop_box(e, wheel_margin=DEFAULT_WHEEL_MARGIN, dial_margin=DEFAULT_DIAL_MARGIN)
            for e in self.layout.elements
        ]

    def _static_mask(self) -> np.ndarray:
        """255 on the static print near the register (element hull + context), 0 on element windows."""
        w, h = self._size
        boxes = np.array(self._element_boxes())
        x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
        x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
        pad_x, pad_y = CONTEXT_FRACTION * (x1 - x0), CONTEXT_FRACTION * (y1 - y0)
        mask = np.zeros((h, w), np.uint8)
        mask[
            max(0, int(y0 - pad_y)) : min(h, int(math.ceil(y1 + pad_y))),
            max(0, int(x0 - pad_x)) : min(w, int(math.ceil(x1 + pad_x))),
        ] = 255
        for bx, by, bw, bh in boxes:
            mask[
                max(0, int(by)) : max(0, int(math.ceil(by + bh))), max(0, int(bx)) : max(0, int(math.ceil(bx + bw)))
            ] = 0
        return mask

    def _tile_index(self, ys: np.ndarray, xs: np.ndarray) -> list[np.ndarray]:
        """Indices (into the static pixels) of each textured tile of the static print."""
        cols, rows = TILE_GRID
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        col = np.minimum(((xs - x0) * cols) // max(x1 - x0, 1), cols - 1)
        row = np.minimum(((ys - y0) * rows) // max(y1 - y0, 1), rows - 1)
        tiles = []
        for k in range(cols * rows):
            index = np.nonzero(row * cols + col == k)[0]
            # a tile of plain plate has no texture to compare: its NCC is noise
            if index.size > 50 and float(self._ref_values[index].std()) > 0.5 * self._ref_std:
                tiles.append(index)
        return tiles

    def _element_windows(self, small: np.ndarray) -> list[tuple[str, tuple[slice, slice], np.ndarray]]:
        """(name, window slices at the check scale, reference colour bins and their neighbours) per element."""
        scale = self._check_scale
        height, width = small.shape[:2]
        windows = []
        for element in self.layout.elements:
            x, y, w, h = element.box_px
            rows = slice(max(0, int(y * scale)), min(height, int(math.ceil((y + h) * scale))))
            cols = slice(max(0, int(x * scale)), min(width, int(math.ceil((x + w) * scale))))
            occupied = np.zeros(COLOUR_BINS, bool)
            occupied[tuple(self._colour_bins(small[rows, cols], 1.0).T)] = True
            # blends of any two colours present (a moved pointer's anti-aliased edge over a numeral,
            # motion smear) are colours of the window too: the bin coordinates are linear in BGR
            centres = np.argwhere(occupied) + 0.5
            for t in (0.25, 0.5, 0.75):
                blends = t * centres[:, None, :] + (1 - t) * centres[None, :, :]
                occupied[tuple(blends.reshape(-1, 3).astype(np.int64).T)] = True
            padded = np.pad(occupied, 1)
            dilated = np.zeros_like(occupied)
            for dl, db, dr in itertools.product(range(3), repeat=3):  # every neighbouring bin
                dilated |= padded[dl : dl + COLOUR_BINS[0], db : db + COLOUR_BINS[1], dr : dr + COLOUR_BINS[2]]
            windows.append((element.name, (rows, cols), dilated))
        return windows

    @staticmethod
    def _colour_bins(pixels: np.ndarray, gain: float) -> np.ndarray:
        """(N, 3) bin indices (luminance / gain, blue − green, red − green) of BGR pixels."""
        bgr = pixels.reshape(-1, 3).astype(np.float32)
        luma = bgr.mean(axis=1) / gain
        blue, red = bgr[:, 0] - bgr[:, 1], bgr[:, 2] - bgr[:, 1]
        bins = np.stack([luma / 256.0, (blue / gain + 128.0) / 256.0, (red / gain + 128.0) / 256.0], axis=1)
        counts = np.array(COLOUR_BINS)
        return np.clip((bins * counts).astype(np.int64), 0, counts - 1)

    def _covered_element(self, frame: np.ndarray, homography: np.ndarray) -> tuple[str, float]:
        """(name, foreign-colour fraction) of the element window most unlike its reference's colours."""
        if frame.ndim == 2:
            return "", 0.0
        warped = cv2.warpPerspective(frame, homography, self._check_size, flags=cv2.INTER_LINEAR)
        gain = float(warped[self._static_index].mean()) / max(self._ref_static_luma, 1e-6)
        worst = ("", 0.0)
        for name, (rows, cols), allowed in self._windows:
            bins = self._colour_bins(warped[rows, cols], max(gain, 1e-3))
            foreign = 1.0 - float(allowed[tuple(bins.T)].mean()) if bins.size else 0.0
            if foreign > worst[1]:
                worst = (name, foreign)
        return worst

    def _element_corners(self) -> np.ndarray:
        """(4E, 2) corners of every element crop (reference px, pixel-centre convention)."""
        corners = []
        for x, y, w, h in self._element_boxes():
            corners += [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
        return np.array(corners, np.float64) - 0.5

    # -- per frame -----------------------------------------------------------
    def align(self, frame: np.ndarray, near: PlateAlignment | None = None) -> ReferenceAlignment:
        """Camera -> reference homography of one frame, checked (falsy with refusal and message)."""
        if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"align: frame: expected H×W[×3] uint8 image, got {getattr(frame, 'shape', type(frame))} "
                f"{getattr(frame, 'dtype', '')}"
            )
        grey = _grey(frame)
        prepared: dict[float, np.ndarray] = {}
        if near and not near.reused and near.homography is not None:
            start = np.linalg.inv(_EDGE_TO_CENTRE @ near.homography @ _CENTRE_TO_EDGE)
            levels = [
                *self._levels[-TRACK_LEVELS:-1],
                (*self._levels[-1][:2], TRACK_ITERATIONS, *self._levels[-1][3:]),
            ]
            tracked = self._ecc(grey, prepared, start, levels)
            if tracked is not None:
                result = self._checked(frame, grey, prepared, tracked[0], "track", 0, 0, tracked[1])
                if result:
                    return result
        matches = inliers = 0
        levels, start, method = self._levels, np.eye(3), "ecc"
        if self._orb is not None:
            seeded = self._features(grey)
            if isinstance(seeded, ReferenceAlignment):
                return seeded
            start, matches, inliers = seeded
            levels, method = self._levels[-TRACK_LEVELS:], "features+ecc"
        fitted = self._ecc(grey, prepared, start, levels)
        if fitted is None:
            return _refused("unregistered", "not registered to the reference: ECC did not converge")
        return self._checked(frame, grey, prepared, fitted[0], method, matches, inliers, fitted[1])

    def _ecc(
        self, grey: np.ndarray, prepared: dict[float, np.ndarray], warp: np.ndarray, levels: list
    ) -> tuple[np.ndarray, float] | None:
        """ECC over `levels` from `warp` (reference -> frame, centre px); (camera -> reference
        homography, how far the last level moved the crops in px) or None if it failed."""
        last = warp
        for scale, motion, iterations, (inner, outer), ref_level, mask in levels:
            if scale not in prepared:
                prepared[scale] = _dog(grey, scale, inner, outer)
            s = _scaling(scale)
            level_warp = (s @ warp @ np.linalg.inv(s)).astype(np.float32)
            frame_level = prepared[scale]
            # ECC's mask says which pixels of the *frame* to use: the static print, where the current
            # warp (reference -> frame) puts it
            frame_mask = cv2.warpPerspective(
                mask, level_warp.astype(np.float64), frame_level.shape[::-1], flags=cv2.INTER_NEAREST
            )
            if motion != cv2.MOTION_HOMOGRAPHY:
                level_warp = level_warp[:2].copy()
            try:
                _, level_warp = cv2.findTransformECC(
                    ref_level,
                    frame_level,
                    level_warp,
                    motion,
                    (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-4),
                    frame_mask,
                    1,
                )
            except cv2.error:
                return None
            if level_warp.shape[0] == 2:
                level_warp = np.vstack([level_warp, [0.0, 0.0, 1.0]])
            last, warp = warp, np.linalg.inv(s) @ level_warp.astype(np.float64) @ s
            if not np.all(np.isfinite(warp)) or abs(np.linalg.det(warp)) < 1e-9:
                return None
        step = self._crop_shift(last, warp)
        return np.linalg.inv(warp) / np.linalg.inv(warp)[2, 2], step

    def _crop_shift(self, warp_a: np.ndarray, warp_b: np.ndarray) -> float:
        """Largest distance (px) between where two reference -> frame warps put the crop corners."""
        a = cv2.perspectiveTransform(self._crop_corners.reshape(-1, 1, 2), warp_a)
        b = cv2.perspectiveTransform(self._crop_corners.reshape(-1, 1, 2), warp_b)
        return float(np.abs(a - b).max())

    def _features(self, grey: np.ndarray) -> tuple[np.ndarray, int, int] | ReferenceAlignment:
        """ORB matches near their reference place, RANSAC: (reference -> frame warp, matches,
        inliers), or a refusal."""
        search = self._search_mask if self._search_mask.shape == grey.shape else None
        keypoints, descriptors = self._orb.detectAndCompute(grey, search)
        if descriptors is None or len(keypoints) < self.min_inliers:
            return _refused("unregistered", f"not registered to the reference: {len(keypoints)} features in the frame")
        frame_pts = np.array([k.pt for k in keypoints], np.float32)
        near_mask = np.sum((frame_pts[:, None, :] - self._ref_points[None, :, :]) ** 2, axis=2) < SEARCH_PX**2
        pairs = self._matcher.knnMatch(descriptors, self._ref_descriptors, k=2, mask=near_mask.astype(np.uint8))
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO_TEST * p[1].distance]
        if len(good) < self.min_inliers:
            return _refused(
                "unregistered", f"not registered to the reference: {len(good)} feature matches < {self.min_inliers}"
            )
        src = frame_pts[[m.queryIdx for m in good]]
        dst = self._ref_points[[m.trainIdx for m in good]]
        homography, inlier_mask = cv2.findHomography(dst, src, cv2.RANSAC, RANSAC_PX, maxIters=2000)
        inliers = int(inlier_mask.sum()) if inlier_mask is not None else 0
        if homography is None or inliers < self.min_inliers:
            return _refused(
                "unregistered", f"not registered to the reference: {inliers} consistent matches < {self.min_inliers}"
            )
        return homography, len(good), inliers

    def _motion(self, homography: np.ndarray) -> tuple[float, float, float, float]:
        """(shift px, rotation °, scale, shear) of the reference -> frame map at the plate centre."""
        inverse = np.linalg.inv(homography)
        c = self._centre
        p = inverse @ np.array([c[0], c[1], 1.0])
        w = p[2]
        jacobian = (inverse[:2, :2] * w - np.outer(p[:2], inverse[2, :2])) / w**2
        singular = np.linalg.svd(jacobian, compute_uv=False)
        # counter-clockwise as seen in the image (y down), as cv2.getRotationMatrix2D counts it
        rotation = math.degrees(math.atan2(jacobian[0, 1] - jacobian[1, 0], jacobian[0, 0] + jacobian[1, 1]))
        shift = float(np.hypot(*(p[:2] / w - c)))
        return (
            shift,
            rotation,
            float(math.sqrt(singular[0] * singular[1])),
            float(singular[0] / max(singular[1], 1e-12) - 1),
        )

    def _checked(
        self,
        frame: np.ndarray,
        grey: np.ndarray,
        prepared: dict[float, np.ndarray],
        homography: np.ndarray,
        method: str,
        matches: int,
        inliers: int,
        step: float,
    ) -> ReferenceAlignment:
        """The alignment if it converged, its motion is one a homography follows and the frame looks
        like the reference; else a refusal saying which check failed."""
        shift, rotation, scale, shear = self._motion(homography)

        def quality(ncc: float = math.nan, tile: float = math.nan, contrast: float = math.nan) -> AlignmentQuality:
            return AlignmentQuality(method, matches, inliers, step, ncc, tile, contrast, shift, rotation, scale)

        if step * self._base > self.max_step_px:  # in px of the working size (WORK_SIZE_PX)
            return _refused(
                "unregistered",
                f"not registered to the reference: ECC still moving ({step * self._base:.2f} px > "
                f"{self.max_step_px:.2f} px)",
                quality(),
            )
        if abs(scale - 1.0) > MAX_SCALE_CHANGE or shear > MAX_SHEAR or abs(rotation) > MAX_ROTATION_DEG:
            return _refused(
                "moved",
                f"moved beyond what the reference homography follows: scale {scale:.3f}, shear {shear:.3f}, "
                f"rotation {rotation:.1f}°",
                quality(),
            )
        camera_corners = cv2.perspectiveTransform(self._crop_corners.reshape(-1, 1, 2), np.linalg.inv(homography))
        height, width = grey.shape
        low, high = camera_corners.reshape(-1, 2).min(axis=0), camera_corners.reshape(-1, 2).max(axis=0)
        if low.min() < EDGE_CLEARANCE_PX or high[0] > width - EDGE_CLEARANCE_PX or high[1] > height - EDGE_CLEARANCE_PX:
            return _refused("moved", "moved: an element of the register is outside the camera frame", quality())
        check_scale = self._check_scale
        if check_scale not in prepared:
            prepared[check_scale] = _dog(grey, check_scale, *self._levels[-1][3])
        s = _scaling(check_scale)
        check_homography = s @ homography @ np.linalg.inv(s)
        ncc, tile_ncc, contrast = self._agreement(prepared[check_scale], check_homography)
        if ncc < self.min_ncc or tile_ncc < self.min_tile_ncc or contrast < self.min_contrast:
            return _refused(
                "scene",
                f"scene unlike the reference (another meter, a hand, fog?): photometric agreement {ncc:.2f} "
                f"(min {self.min_ncc:.2f}), worst tile {tile_ncc:.2f} (min {self.min_tile_ncc:.2f}), "
                f"contrast {contrast:.2f} (min {self.min_contrast:.2f})",
                quality(ncc, tile_ncc, contrast),
            )
        covered, foreign = self._covered_element(frame, s @ homography)  # full-res frame -> check scale
        if foreign > MAX_FOREIGN_FRACTION:
            return _refused(
                "scene",
                f"element {covered} covered or changed (a hand, a reflection?): {100 * foreign:.0f} % of its window "
                f"in colours its reference window has nowhere (max {100 * MAX_FOREIGN_FRACTION:.0f} %)",
                quality(ncc, tile_ncc, contrast),
            )
        edge = _CENTRE_TO_EDGE @ homography @ _EDGE_TO_CENTRE
        return ReferenceAlignment(edge / edge[2, 2], rms_px=step, quality=quality(ncc, tile_ncc, contrast))

    def _agreement(self, band: np.ndarray, homography: np.ndarray) -> tuple[float, float, float]:
        """(NCC over the static print, worst textured tile's NCC, contrast ratio) of the band-passed
        frame warped onto the reference; pixels from outside the frame count as disagreeing (0)."""
        warped = cv2.warpPerspective(band, homography, self._check_size, flags=cv2.INTER_LINEAR, borderValue=0.0)
        values = warped[self._mask_index]
        ncc = _ncc(values, self._ref_values)
        tiles = [_ncc(values[index], self._ref_values[index]) for index in self._tiles]
        contrast = float(values.std()) / max(self._ref_std, 1e-6)
        return ncc, (min(tiles) if tiles else ncc), contrast


def plate_aligner(layout: RegisterLayout) -> MarkerAligner | ReferenceAligner:
    """The aligner a layout calls for: ArUco markers or its reference photo."""
    return ReferenceAligner(layout) if layout.reference is not None else MarkerAligner(layout)


@dataclass(frozen=True)
class _Stretch:
    refusal: str
    t_from_s: float
    t_to_s: float
    frames: int
    message: str


class AlignmentWatch:
    """Collects which frames of one camera were refused by the reference aligner, and when.

    `note(t_s, refusal, message)` once per frame read (in any order);
    `warnings(camera_id)` gives one line per stretch of consecutive refused
    frames (among the frames read), saying when it began and ended and why.
    """

    MAX_LISTED = 5

    def __init__(self) -> None:
        self._frames: dict[float, tuple[str, str]] = {}

    def note(self, t_s: float, refusal: str, message: str = "") -> None:
        """Record one frame read at `t_s` (s): refusal "" when it was registered."""
        self._frames[float(t_s)] = (refusal, message)

    def note_readings(self, times_s: Iterable[float], readings: Iterable) -> None:
        """Record RegisterReadings (their `alignment_refusal`) read at `times_s` (s)."""
        for t_s, reading in zip(times_s, readings, strict=True):
            self.note(t_s, getattr(reading, "alignment_refusal", ""), getattr(reading, "alignment_message", ""))

    def stretches(self) -> list[_Stretch]:
        out: list[_Stretch] = []
        current: _Stretch | None = None
        for t_s in sorted(self._frames):
            refusal, message = self._frames[t_s]
            if current is not None and refusal == current.refusal:
                current = _Stretch(refusal, current.t_from_s, t_s, current.frames + 1, current.message)
                continue
            if current is not None and current.refusal:
                out.append(current)
            current = _Stretch(refusal, t_s, t_s, 1, message)
        if current is not None and current.refusal:
            out.append(current)
        return out

    def warnings(self, camera_id: str) -> list[str]:
        """One line per stretch of refused frames (at most MAX_LISTED, then a count)."""
        stretches = self.stretches()
        lines = [
            f"{camera_id}: frames refused by the reference alignment from t = {s.t_from_s:.2f} s to "
            f"{s.t_to_s:.2f} s ({s.frames} frame{'s' if s.frames != 1 else ''} read; {s.message})"
            for s in stretches[: self.MAX_LISTED]
        ]
        if len(stretches) > self.MAX_LISTED:
            lines.append(f"{camera_id}: {len(stretches) - self.MAX_LISTED} more stretches of refused frames")
        return lines
