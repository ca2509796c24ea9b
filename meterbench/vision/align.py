"""Align a camera frame to the register plate with its four ArUco markers.

Conventions: plate coordinates are those of the layout (px, origin at the
top-left *edge* of the plate, so pixel (i, j) covers [i, i+1) × [j, j+1)); camera
frames are OpenCV images (pixel centres at integer coordinates).  The
homography is fitted by least squares to all detected marker corners (16
points with 4 markers, 12 with 3) and maps camera -> plate.  Failure is a value:
a falsy `PlateAlignment` whose `message` says why, never an exception.

Only the element boxes are warped (`PlateAlignment.warp_box`), not the whole
plate: a 40×70 px box costs a few µs, the plate a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from meterbench.vision.layout import RegisterElement, RegisterLayout

__all__ = [
    "DEFAULT_DIAL_MARGIN",
    "DEFAULT_WHEEL_MARGIN",
    "MarkerAligner",
    "PlateAlignment",
    "align_to_plate",
    "element_crop_box",
]

DEFAULT_WHEEL_MARGIN = 0.06  # fraction of the wheel window added on each side
DEFAULT_DIAL_MARGIN = 0.04  # fraction of the dial radius added around the dial square
MIN_MARKERS = 3  # one of four markers may be hidden (glare, a finger)
MAX_RMS_PX = 1.5  # plate px: worse fits mean a misdetected marker
CHECK_RMS_PX = 0.7  # plate px: above this, look for one inconsistent marker
SEARCH_PAD_MIN_PX = 10.0  # camera px around a marker's expected place (tracking)
SEARCH_PAD_FRACTION = 0.4  # ... or this fraction of its size, whichever is larger
WINDOW_CLEARANCE_PX = 3.0  # a tracked marker closer than this to its window edge is redone
MAX_PREDICT_PX = 4.0  # plate px: a marker the other three place further off may be bad ...
DROP_RMS_RATIO = 0.5  # ... and is dropped only if the other three then fit this much better
DETECTORS = ("tuned", "default", "wide")  # parameter sets tried in turn until every marker is found
_HALF = np.array([0.5, 0.5])  # pixel-centre <-> pixel-edge coordinates


@dataclass(frozen=True)
class PlateAlignment:
    """Camera -> plate homography of one frame, or why there is none.

    `homography` (3×3, camera px -> plate px, edge convention) is None when the
    alignment failed; `markers_found` / `markers_missing` list marker ids;
    `rms_px` is the corner fit residual in plate px; `message` is "" when all
    markers were found, a note when one was missing or dropped, the failure
    reason when the alignment is falsy; `reused` marks a homography carried over
    from an earlier frame.
    """

    homography: np.ndarray | None
    markers_found: tuple[int, ...] = ()
    markers_missing: tuple[int, ...] = ()
    rms_px: float = float("nan")
    message: str = ""
    reused: bool = False
    _camera_from_plate: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.homography is not None

    @property
    def camera_from_plate(self) -> np.ndarray:
        """Inverse homography: plate px -> camera px (edge convention both sides)."""
        if self.homography is None:
            raise ValueError(f"PlateAlignment: no homography ({self.message})")
        if self._camera_from_plate is None:
            object.__setattr__(self, "_camera_from_plate", np.linalg.inv(self.homography))
        return self._camera_from_plate

    def reused_copy(self, why: str) -> PlateAlignment:
        """This homography, marked as carried over to a frame where `why` happened."""
        return PlateAlignment(
            self.homography,
            (),
            self.markers_found + self.markers_missing,
            self.rms_px,
            f"reused last homography: {why}",
            True,
            self._camera_from_plate,
        )

    def warp_box(
        self, frame: np.ndarray, box_px: tuple[float, float, float, float], *, out_size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """Rectified crop of plate box (x, y, w, h) (plate px) from camera `frame`.

        out_size (w, h) px defaults to the box size rounded; the crop keeps the
        frame's channels and dtype.
        """
        x, y, w, h = box_px
        out_w, out_h = out_size if out_size else (max(1, round(w)), max(1, round(h)))
        # crop pixel centre (u, v) -> plate edge coords -> camera edge -> camera centre
        crop_to_plate = np.array(
            [[w / out_w, 0.0, x + 0.5 * w / out_w], [0.0, h / out_h, y + 0.5 * h / out_h], [0.0, 0.0, 1.0]]
        )
        edge_to_centre = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
        camera_from_crop = edge_to_centre @ self.camera_from_plate @ crop_to_plate
        return cv2.warpPerspective(
            frame,
            camera_from_crop,
            (out_w, out_h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )

    def warp_plate(self, frame: np.ndarray, plate_size_px: tuple[int, int]) -> np.ndarray:
        """The whole rectified plate (plate_size_px (w, h)), e.g. for inspection."""
        w, h = plate_size_px
        return self.warp_box(frame, (0.0, 0.0, float(w), float(h)), out_size=(w, h))


def element_crop_box(
    element: RegisterElement, *, wheel_margin: float = DEFAULT_WHEEL_MARGIN, dial_margin: float = DEFAULT_DIAL_MARGIN
) -> tuple[float, float, float, float]:
    """Plate box (x, y, w, h) px handed to the reader: the wheel window plus
    `wheel_margin` of its size on each side, or the square around the dial
    (radius × (1 + `dial_margin`))."""
    if element.kind == "dial" and element.center_px is not None and element.radius_px:
        cx, cy = element.center_px
        half = element.radius_px * (1.0 + dial_margin)
        return (cx - half, cy - half, 2 * half, 2 * half)
    x, y, w, h = element.box_px
    return (x - wheel_margin * w, y - wheel_margin * h, w * (1 + 2 * wheel_margin), h * (1 + 2 * wheel_margin))


def _detector_parameters(kind: str = "tuned") -> cv2.aruco.DetectorParameters:
    """ArUco detector parameters, both with sub-pixel corners.

    "tuned": for ~25–80 px markers in a 640×360 frame, one threshold window
    (instead of three); ~1.5 ms per frame on one core, but it misses small
    blurred markers.  "default": OpenCV's defaults (three threshold windows,
    3..23 px), which find those (benchmarks/aruco.py); ~2× slower, so tried
    only for the markers the tuned set missed.  "wide": six windows, 3..33 px,
    for markers blurred over ~2 px (~4 ms), tried last.
    """
    params = cv2.aruco.DetectorParameters()
    if kind == "tuned":
        params.adaptiveThreshWinSizeMin = 9
        params.adaptiveThreshWinSizeMax = 9
        params.minMarkerPerimeterRate = 0.05
    elif kind == "wide":
        params.adaptiveThreshWinSizeMin = 3
        params.adaptiveThreshWinSizeMax = 33
        params.adaptiveThreshWinSizeStep = 6
    elif kind != "default":
        raise ValueError(f"detector parameters: expected one of {DETECTORS}, got {kind!r}")
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    params.cornerRefinementWinSize = 3
    return params


def _normalising_transform(pts: np.ndarray) -> np.ndarray:
    """Similarity moving `pts` to zero mean and mean distance sqrt(2) (Hartley)."""
    centre = pts.mean(axis=0)
    scale = np.sqrt(2.0) / max(float(np.mean(np.linalg.norm(pts - centre, axis=1))), 1e-12)
    return np.array([[scale, 0.0, -scale * centre[0]], [0.0, scale, -scale * centre[1]], [0.0, 0.0, 1.0]])


def _project(homography: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 3×3 homography to (N, 2) points."""
    mapped = pts @ homography[:, :2].T + homography[:, 2]
    return mapped[:, :2] / mapped[:, 2:3]


def _fit(camera_pts: np.ndarray, plate_pts: np.ndarray) -> tuple[np.ndarray | None, float]:
    """Least-squares homography camera -> plate (normalised DLT, ~30 µs for 16
    points) and its RMS residual (plate px)."""
    t_src, t_dst = _normalising_transform(camera_pts), _normalising_transform(plate_pts)
    src = camera_pts @ t_src[:2, :2].T + t_src[:2, 2]
    dst = plate_pts @ t_dst[:2, :2].T + t_dst[:2, 2]
    n = len(src)
    rows = np.zeros((2 * n, 9))
    rows[0::2, 0:2], rows[0::2, 2] = src, 1.0
    rows[0::2, 6:8], rows[0::2, 8] = -dst[:, :1] * src, -dst[:, 0]
    rows[1::2, 3:5], rows[1::2, 5] = src, 1.0
    rows[1::2, 6:8], rows[1::2, 8] = -dst[:, 1:] * src, -dst[:, 1]
    normalised = np.linalg.eigh(rows.T @ rows)[1][:, 0].reshape(3, 3)  # least-squares null vector
    homography = np.linalg.inv(t_dst) @ normalised @ t_src
    if not np.all(np.isfinite(homography)) or abs(homography[2, 2]) < 1e-12:
        return None, float("inf")
    homography /= homography[2, 2]
    residual = _project(homography, camera_pts) - plate_pts
    return homography, float(np.sqrt(np.mean(np.sum(residual**2, axis=1))))


class MarkerAligner:
    """Finds a register plate's markers in camera frames (one detector, reused).

    `max_rms_px`: plate px; a corner fit worse than this fails.  `max_predict_px`:
    plate px; with 4 markers, one that the other three place further off than
    this is dropped, if the other three then fit `drop_rms_ratio` times better
    (a displaced marker; noisy corners of small blurred markers spread over all
    four, and dropping one of them would only move the boxes: all four kept).
    `min_markers`: markers needed (default 3 of 4).  `detectors`: parameter sets
    tried in turn ("tuned", "default", "wide"), the later ones only for markers
    the earlier ones missed.  `scale_limits`: limits scaled for plates seen
    smaller than 1:1 (see `fit`).
    """

    def __init__(
        self,
        layout: RegisterLayout,
        *,
        max_rms_px: float = MAX_RMS_PX,
        max_predict_px: float = MAX_PREDICT_PX,
        check_rms_px: float = CHECK_RMS_PX,
        min_markers: int = MIN_MARKERS,
        drop_rms_ratio: float = DROP_RMS_RATIO,
        detectors: tuple[str, ...] = DETECTORS,
        scale_limits: bool = True,
    ) -> None:
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, layout.marker_dictionary))
        if not detectors:
            raise ValueError(f"MarkerAligner: detectors: expected some of {DETECTORS}, got none")
        self._detectors = [cv2.aruco.ArucoDetector(dictionary, _detector_parameters(k)) for k in detectors]
        self.drop_rms_ratio = drop_rms_ratio
        self.scale_limits = scale_limits
        self._plate_corners = {m.id: np.array(m.corners_px, np.float64) for m in layout.markers}
        self.max_rms_px = max_rms_px
        self.max_predict_px = max_predict_px
        self.check_rms_px = check_rms_px
        self.min_markers = min(min_markers, len(self._plate_corners))

    def detect(self, frame: np.ndarray, near: PlateAlignment | None = None) -> dict[int, np.ndarray]:
        """Layout marker id -> its 4 corners (camera px, edge convention) in `frame`.

        With `near` (the previous frame's good alignment) the markers are first
        looked for only in small windows around where it puts them (~4× cheaper);
        if any is not found there, the whole frame is searched.  Ids found twice
        are dropped (ambiguous); ids not in the layout are ignored.
        """
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if near:
            found = self._detect_near(grey, near)
            if len(found) == len(self._plate_corners):
                return found
        return self._detect_in(grey)

    def _detect_in(self, grey: np.ndarray) -> dict[int, np.ndarray]:
        """Markers found by the first parameter set, completed by the next ones."""
        found: dict[int, np.ndarray] = {}
        for detector in self._detectors:
            for marker_id, corners in self._detect_with(detector, grey).items():
                found.setdefault(marker_id, corners)
            if len(found) == len(self._plate_corners):
                break
        return found

    def _detect_with(self, detector: cv2.aruco.ArucoDetector, grey: np.ndarray) -> dict[int, np.ndarray]:
        corners, ids, _ = detector.detectMarkers(grey)
        if ids is None:
            return {}
        flat = [int(i) for i in ids.ravel()]
        return {
            i: c.reshape(4, 2).astype(np.float64) + _HALF
            for i, c in zip(flat, corners, strict=True)
            if i in self._plate_corners and flat.count(i) == 1
        }

    def _detect_near(self, grey: np.ndarray, near: PlateAlignment) -> dict[int, np.ndarray]:
        """Markers searched in windows around their places in `near`, tiled side by
        side on a white mosaic so that one detector call covers all of them."""
        height, width = grey.shape
        tiles, origins = [], {}
        for marker_id, plate_pts in self._plate_corners.items():
            camera_pts = _project(near.camera_from_plate, plate_pts) - _HALF
            low, high = camera_pts.min(axis=0), camera_pts.max(axis=0)
            pad = max(SEARCH_PAD_MIN_PX, SEARCH_PAD_FRACTION * float((high - low).max()))
            x0, y0 = (int(max(0, np.floor(v - pad))) for v in low)
            x1, y1 = int(min(width, np.ceil(high[0] + pad))), int(min(height, np.ceil(high[1] + pad)))
            if x1 - x0 < 8 or y1 - y0 < 8:
                return {}
            tiles.append((marker_id, grey[y0:y1, x0:x1], x0, y0))
        gap = 8
        mosaic = np.full(
            (max(t[1].shape[0] for t in tiles) + 2 * gap, sum(t[1].shape[1] + gap for t in tiles) + gap), 255, np.uint8
        )
        x = gap
        for marker_id, tile, x0, y0 in tiles:
            h, w = tile.shape
            mosaic[gap : gap + h, x : x + w] = tile
            origins[marker_id] = (
                np.array([x, gap, x + w, gap + h], np.float64),
                np.array([x0 - x, y0 - gap], np.float64),
            )
            x += w + gap
        found = {}
        for marker_id, corners in self._detect_in(mosaic).items():
            window, shift = origins[marker_id]
            # A marker cut by its window's edge (the camera moved) gives biased
            # corners: accept only markers well inside their own window.
            inside = (corners.min(axis=0) >= window[:2] + WINDOW_CLEARANCE_PX).all() and (
                corners.max(axis=0) <= window[2:] - WINDOW_CLEARANCE_PX
            ).all()
            if inside:
                found[marker_id] = corners + shift
        return found

    def align(self, frame: np.ndarray, near: PlateAlignment | None = None) -> PlateAlignment:
        """Homography camera -> plate for one frame (falsy with a message on failure).

        `near`: the previous frame's alignment, used only to narrow the marker
        search (the homography is always fitted to this frame's markers).
        """
        if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"align: frame: expected H×W[×3] uint8 image, got "
                f"{getattr(frame, 'shape', type(frame))} "
                f"{getattr(frame, 'dtype', '')}"
            )
        found = self.detect(frame, near if near and not near.reused else None)
        return self.fit(found)

    def fit(self, found: dict[int, np.ndarray]) -> PlateAlignment:
        """Fit the homography to detected marker corners, dropping one bad marker.

        When the fit residual exceeds `check_rms_px` (good frames: 0.3–0.5 px) and
        4 markers are found, each one is predicted from the other three; a marker
        predicted more than `max_predict_px` away is dropped (a projective fit to
        all 4 absorbs most of a displaced marker, leaving only a small residual)
        if the other three then fit `drop_rms_ratio` times better.  All limits are
        plate px at a plate seen at least 1:1; a plate seen smaller (small markers,
        each camera px covering several plate px) gets them scaled by that ratio,
        as its corners cannot be found better than to a camera pixel.
        """
        expected = sorted(self._plate_corners)
        missing = tuple(i for i in expected if i not in found)
        if len(found) < self.min_markers:
            what = (
                "no markers found"
                if not found
                else (f"only {len(found)} of {len(expected)} markers found (ids {sorted(found)})")
            )
            return PlateAlignment(None, tuple(sorted(found)), missing, message=what)
        used = tuple(sorted(found))
        scale = self._plate_px_per_camera_px(found) if self.scale_limits else 1.0
        max_rms = self.max_rms_px * scale
        homography, rms = self._fit_ids(found, used)
        dropped = self._worst_marker(found, used, scale) if rms > self.check_rms_px * scale else None
        if dropped is not None:
            fewer = tuple(i for i in used if i != dropped)
            homography_fewer, rms_fewer = self._fit_ids(found, fewer)
            if homography_fewer is not None and rms_fewer <= self.drop_rms_ratio * rms:
                used, homography, rms = fewer, homography_fewer, rms_fewer
            else:
                dropped = None  # noisy all over, not one displaced marker: keep all four
        if homography is None or rms > max_rms:
            return PlateAlignment(
                None, used, missing, rms, f"markers inconsistent (fit residual {rms:.2f} px > {max_rms:.2f} px)"
            )
        notes = [f"marker {i} missing" for i in missing]
        if dropped is not None:
            notes.append(f"marker {dropped} dropped (inconsistent)")
            missing = missing + (dropped,)
        return PlateAlignment(homography, used, missing, rms, "; ".join(notes))

    def _plate_px_per_camera_px(self, found: dict[int, np.ndarray]) -> float:
        """How many plate px one camera px spans at the markers (≥ 1: never tighter than the limits)."""
        camera_side = np.mean([np.linalg.norm(np.diff(c, axis=0, append=c[:1]), axis=1).mean() for c in found.values()])
        plate_side = np.mean(
            [
                np.linalg.norm(np.diff(c, axis=0, append=c[:1]), axis=1).mean()
                for i, c in self._plate_corners.items()
                if i in found
            ]
        )
        return max(1.0, float(plate_side / max(camera_side, 1e-9)))

    def _worst_marker(self, found: dict[int, np.ndarray], ids: tuple[int, ...], scale: float = 1.0) -> int | None:
        """The marker the others place more than `max_predict_px` × `scale` off (None if none)."""
        if len(ids) - 1 < max(self.min_markers, 3):
            return None
        errors = {}
        for held_out in ids:
            homography, _ = self._fit_ids(found, tuple(i for i in ids if i != held_out))
            if homography is None:
                continue
            predicted = _project(homography, found[held_out])
            errors[held_out] = float(np.abs(predicted - self._plate_corners[held_out]).max())
        if not errors:
            return None
        worst = max(errors, key=errors.get)
        return worst if errors[worst] > self.max_predict_px * scale else None

    def _fit_ids(self, found: dict[int, np.ndarray], ids: tuple[int, ...]) -> tuple[np.ndarray | None, float]:
        camera_pts = np.concatenate([found[i] for i in ids])
        plate_pts = np.concatenate([self._plate_corners[i] for i in ids])
        return _fit(camera_pts, plate_pts)


def align_to_plate(
    frame: np.ndarray, layout: RegisterLayout, *, aligner: MarkerAligner | None = None
) -> PlateAlignment:
    """Camera -> plate homography of `frame` from the layout's ArUco markers.

    Pass a `MarkerAligner` to reuse its detector across frames (saves ~0.1 ms).
    Returns a falsy PlateAlignment with a message when the markers are not found.

    >>> alignment = align_to_plate(frame, layout)
    >>> if not alignment: print(alignment.message)
    """
    return (aligner or MarkerAligner(layout)).align(frame)
