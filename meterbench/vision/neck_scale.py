"""Read the liquid level on the graduated neck of a measuring tank (standard capacity measure).

The camera sees a vertical gauge glass and, beside it (to its right), a scale plate
with horizontal graduation marks: minor marks every division, longer major marks
every ``major_every`` divisions, one of them the nominal (0 mL) mark. The reading
follows the OIML convention (R 138 §4.6.1, NIST GMP 3): the level is where the
*lowest point of the concave meniscus* stands, and a mark "is reached" when that
point is tangent to the mark's *upper edge*.

Steps (all on one grey frame, a few ms on one core):

1. tilt: the camera roll is found from the marks (the angle that makes the mark
   profile sharpest), and the frame is turned upright about the hint's nominal point;
2. marks: sub-pixel centres (centroid) and upper edges (gradient peak) on a 1-D
   profile across the minor-mark strip; indices from the spacing; a line fit
   px -> division with its residuals (spacing consistency);
3. nominal mark: major marks are told from minor ones by their length; the major
   closest to the hint's nominal row is division 0;
4. meniscus: the dark (bright on a dark backing) band in the glass, its lower edge
   per column to sub-pixel, a robust quadratic fit across the glass centre, and
   its lowest point.

Failure is a value: ``NeckScaleReading.ok`` is False with a one-line ``reason``
("meniscus not found", "only 3 marks visible", "mark spacing inconsistent: 4.1 %
spread") instead of a guessed level. Coordinates: px, origin top-left, x right,
y down (OpenCV).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
from scipy.ndimage import median_filter

from meterbench.errors import SessionError

__all__ = ["NeckScaleGeometry", "NeckScaleReading", "read_neck_scale"]

_MIN_MARKS = 5  # fewer marks cannot check the spacing
_MAX_SPREAD_PCT = 2.5  # rms residual of the mark fit, % of a division
_MAX_TILT_DEG = 8.0
_TILT_STEP_DEG = 2.0
_MODEL_FLOOR_DIV = 0.02  # standard uncertainty floor (blur, compression), divisions
_MAX_EXTRAPOLATION_DIV = 1.0  # meniscus beyond the outermost visible mark
_MIN_MENISCUS_CONTRAST = 10.0  # grey levels
_MAX_EDGE_WIDTH_PX = 5.0  # a sharper band-to-water edge than this, or flag
_MAX_SHIFT_PX = 12  # sideways camera shift tolerated against the hint


def _fail_field(where: str, expected: str, got: Any) -> SessionError:
    """A tank's ``scale`` object in session.json has a bad field: one line naming it."""
    return SessionError(f"tank scale: {where}: expected {expected}, got {got!r}")


def _number(data: dict, key: str, *, positive: bool = False, default: Any = None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail_field(key, "a finite number", value)
    if positive and value <= 0:
        raise _fail_field(key, "a number > 0", value)
    return float(value)


def _pair(data: dict, key: str) -> tuple[float, float]:
    value = data.get(key)
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise _fail_field(key, "a list of 2 numbers", value)
    return float(value[0]), float(value[1])


@dataclass(frozen=True)
class NeckScaleGeometry:
    """Where the gauge glass and the scale roughly are in the camera frame, and what a division is.

    This is the ``scale`` object of a tank in session.json. Pixel values are the
    camera set-up's nominal positions (px, untilted); the reader refines them.
    ``zero_mark_y_px`` is the upper edge of the nominal (0 mL) mark at the glass
    centre; ``glass_x_px`` the inner walls of the gauge glass; marks start at
    ``marks_x_px`` and run right for ``minor_length_px`` (``major_length_px``
    for every ``major_every``-th division, the nominal mark being one of them).
    """

    ml_per_division: float = 20.0
    major_every: int = 5
    min_division: int = -10
    max_division: int = 10
    px_per_division: float = 16.0
    zero_mark_y_px: float = 200.0
    glass_x_px: tuple[float, float] = (56.0, 96.0)
    marks_x_px: float = 100.0
    minor_length_px: float = 14.0
    major_length_px: float = 26.0

    @classmethod
    def from_dict(cls, data: dict) -> NeckScaleGeometry:
        """Build from the session's ``scale`` object; raise SessionError (a ValueError) naming a bad field."""
        if not isinstance(data, dict):
            raise _fail_field("scale", "an object", data)
        major_every = data.get("major_every", 5)
        if isinstance(major_every, bool) or not isinstance(major_every, int) or major_every < 2:
            raise _fail_field("major_every", "an integer >= 2", major_every)
        divisions = [data.get("min_division", -10), data.get("max_division", 10)]
        if (
            not all(isinstance(d, int) and not isinstance(d, bool) for d in divisions)
            or not divisions[0] <= 0 < divisions[1]
        ):
            raise _fail_field("min_division/max_division", "integers with min <= 0 < max", divisions)
        glass = _pair(data, "glass_x_px")
        if glass[1] - glass[0] < 6:
            raise _fail_field("glass_x_px", "left < right by >= 6 px", list(glass))
        geometry = cls(
            ml_per_division=_number(data, "ml_per_division", positive=True),
            major_every=major_every,
            min_division=divisions[0],
            max_division=divisions[1],
            px_per_division=_number(data, "px_per_division", positive=True),
            zero_mark_y_px=_number(data, "zero_mark_y_px"),
            glass_x_px=glass,
            marks_x_px=_number(data, "marks_x_px"),
            minor_length_px=_number(data, "minor_length_px", positive=True),
            major_length_px=_number(data, "major_length_px", positive=True),
        )
        if geometry.px_per_division < 6:
            raise _fail_field("px_per_division", "a number >= 6 (marks must be resolved)", geometry.px_per_division)
        if geometry.major_length_px < geometry.minor_length_px + 4:
            raise _fail_field("major_length_px", "at least minor_length_px + 4", geometry.major_length_px)
        return geometry

    def to_dict(self) -> dict:
        """The ``scale`` object for session.json."""
        return {
            "ml_per_division": self.ml_per_division,
            "major_every": self.major_every,
            "min_division": self.min_division,
            "max_division": self.max_division,
            "px_per_division": self.px_per_division,
            "zero_mark_y_px": self.zero_mark_y_px,
            "glass_x_px": list(self.glass_x_px),
            "marks_x_px": self.marks_x_px,
            "minor_length_px": self.minor_length_px,
            "major_length_px": self.major_length_px,
        }

    @property
    def glass_centre_x_px(self) -> float:
        return 0.5 * (self.glass_x_px[0] + self.glass_x_px[1])


@dataclass
class NeckScaleReading:
    """One frame's neck-scale reading; falsy when not ok (then ``level_ml`` is nan)."""

    ok: bool
    reason: str = ""
    level_ml: float = math.nan  # meniscus level relative to the nominal mark, mL
    u_ml: float = math.nan  # standard uncertainty of level_ml, mL
    level_divisions: float = math.nan
    tilt_deg: float = math.nan  # camera roll estimated from the marks
    marks_used: int = 0
    px_per_division: float = math.nan  # fitted mark spacing, px
    spacing_spread_pct: float = math.nan  # rms residual of the mark fit, % of a division
    meniscus_xy_px: tuple[float, float] = (math.nan, math.nan)  # lowest point, frame px
    meniscus_contrast: float = math.nan  # grey levels
    mark_residuals_px: list[float] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class _MarkFit:
    centres: np.ndarray  # px (upright frame), sorted top to bottom
    indices: np.ndarray  # integer index, increasing downward
    intercept: float  # px of index 0 (mark centre)
    slope: float  # px per division (> 0, downward)
    residuals: np.ndarray
    half_width: float  # centre - upper edge, px
    zero_index: int = 0  # index of the nominal mark


def _grey(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3):
        raise ValueError(
            f"frame: expected an H×W or H×W×3 uint8 image, got "
            f"{getattr(frame, 'dtype', type(frame).__name__)} "
            f"{getattr(frame, 'shape', '')}"
        )
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    return grey.astype(np.float32)


def _upright_matrix(
    theta_deg: float, centre: tuple[float, float], offset: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """2×3 map from upright (output) px to frame px: rotate by theta about ``centre``.

    ``offset`` is the upright position of output pixel (0, 0) (to warp a sub-window).
    """
    t = math.radians(theta_deg)
    c, s = math.cos(t), math.sin(t)
    cx, cy = centre
    ox, oy = offset
    # frame = R(theta) (upright - centre) + centre, upright = out + offset
    return np.array(
        [[c, -s, c * (ox - cx) - s * (oy - cy) + cx], [s, c, s * (ox - cx) + c * (oy - cy) + cy]], dtype=np.float64
    )


def _warp(grey: np.ndarray, theta_deg: float, centre: tuple[float, float], x0: int, x1: int, height: int) -> np.ndarray:
    matrix = _upright_matrix(theta_deg, centre, (float(x0), 0.0))
    return cv2.warpAffine(
        grey, matrix, (x1 - x0, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


def _strip_columns(geometry: NeckScaleGeometry, width: int) -> tuple[int, int]:
    x0 = int(round(geometry.marks_x_px + 2))
    x1 = int(round(geometry.marks_x_px + geometry.minor_length_px - 2))
    return max(0, x0), min(width, max(x1, x0 + 2))


def _profile_sharpness(profile: np.ndarray) -> float:
    return float(np.sum(np.diff(profile) ** 2))


def _estimate_tilt(grey: np.ndarray, geometry: NeckScaleGeometry) -> float:
    """Camera roll (deg) that makes the mark-strip profile sharpest (coarse grid + parabola)."""
    height, width = grey.shape
    x0, x1 = _strip_columns(geometry, width)
    centre = (geometry.glass_centre_x_px, geometry.zero_mark_y_px)

    def sharpness(theta: float) -> float:
        return _profile_sharpness(_warp(grey, theta, centre, x0, x1, height).mean(axis=1))

    def refine(thetas: np.ndarray) -> float:
        scores = np.array([sharpness(t) for t in thetas])
        best = int(np.argmax(scores))
        if 0 < best < len(thetas) - 1:
            left, mid, right = scores[best - 1 : best + 2]
            denom = left - 2 * mid + right
            if denom < 0:
                step = thetas[1] - thetas[0]
                return float(thetas[best] + 0.5 * step * (left - right) / denom)
        return float(thetas[best])

    coarse = refine(np.arange(-_MAX_TILT_DEG - 2, _MAX_TILT_DEG + 2.01, _TILT_STEP_DEG))
    return refine(coarse + np.array([-0.4, 0.0, 0.4]))


def _noise_sigma(profile: np.ndarray) -> float:
    diffs = np.diff(profile)
    return float(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2)) + 1e-3


def _parabola_offset(left: float, mid: float, right: float) -> float:
    denom = left - 2 * mid + right
    return 0.0 if denom >= 0 else float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))


def _find_marks(profile: np.ndarray, geometry: NeckScaleGeometry) -> tuple[np.ndarray, float]:
    """Sub-pixel centres of the marks in a 1-D profile across them, and the edge half-width (px)."""
    ppd = geometry.px_per_division
    window = int(ppd) | 1
    baseline = median_filter(profile, size=window, mode="nearest")
    deviation = profile - baseline
    polarity = -1.0 if abs(np.percentile(deviation, 2)) > abs(np.percentile(deviation, 98)) else 1.0
    signal = polarity * deviation  # marks are positive peaks
    noise = _noise_sigma(profile)
    is_peak = (signal[1:-1] >= signal[:-2]) & (signal[1:-1] > signal[2:])
    candidates = np.flatnonzero(is_peak) + 1
    if candidates.size == 0:
        return np.empty(0), math.nan
    heights = signal[candidates]
    threshold = max(6.0 * noise, 0.35 * float(np.percentile(heights, 90)))
    candidates = candidates[heights > threshold]
    kept: list[int] = []  # non-maximum suppression, half a division apart
    for index in candidates[np.argsort(-signal[candidates])]:
        if all(abs(index - k) >= 0.5 * ppd for k in kept):
            kept.append(int(index))
    half_window = max(2, int(round(0.25 * ppd)))
    centres, halves, widths = [], [], []
    for index in sorted(kept):
        lo, hi = index - half_window, index + half_window + 1
        if lo < 1 or hi >= len(signal):
            continue
        weights = np.clip(signal[lo:hi] - 0.2 * signal[index], 0.0, None)
        centre = float(np.sum(np.arange(lo, hi) * weights) / np.sum(weights))
        upper = _edge_position(signal[lo - 1 : index + 1], lo - 0.5)
        lower = _edge_position(-signal[index : hi + 1], index + 0.5)
        centres.append(centre)
        halves.append(centre - upper)
        widths.append(lower - upper)
    if not centres:
        return np.empty(0), math.nan
    widths_arr = np.array(widths)
    typical = float(np.median(widths_arr))
    regular = np.abs(widths_arr - typical) < 0.3 * typical + 0.5  # not a blot or a clip edge
    return np.array(centres)[regular], float(np.median(np.array(halves)[regular]))


def _edge_position(values: np.ndarray, first_position: float) -> float:
    """Sub-pixel position of the steepest rise in ``values`` (rise j sits at first + j)."""
    rise = np.diff(values)
    j = int(np.argmax(rise))
    offset = _parabola_offset(*rise[j - 1 : j + 2]) if 0 < j < len(rise) - 1 else 0.0
    return first_position + j + offset


def _fit_marks(centres: np.ndarray, half_width: float, geometry: NeckScaleGeometry) -> _MarkFit | str:
    """Index the marks from their spacing and fit px = a + b·index; a reason string if impossible."""
    if centres.size < _MIN_MARKS:
        return f"only {centres.size} marks visible"
    gaps = np.diff(centres)
    steps = np.maximum(1, np.round(gaps / geometry.px_per_division))
    spacing = float(np.median(gaps / steps))
    if not 0.7 * geometry.px_per_division < spacing < 1.4 * geometry.px_per_division:
        return f"mark spacing {spacing:.1f} px far from the expected {geometry.px_per_division:.1f} px"
    steps = np.maximum(1, np.round(gaps / spacing)).astype(int)
    indices = np.concatenate([[0], np.cumsum(steps)])
    keep = np.ones(centres.size, bool)
    for _ in range(3):  # drop at most a few spurious peaks
        slope, intercept = np.polyfit(indices[keep], centres[keep], 1)
        residuals = centres - (intercept + slope * indices)
        worst = int(np.argmax(np.where(keep, np.abs(residuals), -1)))
        if abs(residuals[worst]) < 0.15 * spacing or keep.sum() <= _MIN_MARKS:
            break
        keep[worst] = False
    slope, intercept = np.polyfit(indices[keep], centres[keep], 1)
    residuals = centres[keep] - (intercept + slope * indices[keep])
    return _MarkFit(centres[keep], indices[keep], float(intercept), float(slope), residuals, half_width)


def _major_flags(upright: np.ndarray, fit: _MarkFit, geometry: NeckScaleGeometry, polarity_sign: float) -> np.ndarray:
    """True for marks whose dark (or bright) line reaches into the major-only zone."""
    x_minor0, x_minor1 = _strip_columns(geometry, upright.shape[1])
    x0 = int(round(geometry.marks_x_px + geometry.minor_length_px + 3))
    x1 = int(round(geometry.marks_x_px + geometry.major_length_px - 2))
    rows = np.round(fit.centres).astype(int)
    gaps = np.round(fit.centres + 0.5 * fit.slope).astype(int)
    inside = (rows >= 0) & (gaps < upright.shape[0])
    if x1 <= x0 or not inside.any():
        return np.zeros(fit.centres.size, bool)
    rows, gaps = np.clip(rows, 0, upright.shape[0] - 1), np.clip(gaps, 0, upright.shape[0] - 1)
    minor = upright[:, x_minor0:x_minor1].mean(axis=1)
    major = upright[:, x0:x1].mean(axis=1)
    minor_depth = polarity_sign * (minor[gaps] - minor[rows])
    major_depth = polarity_sign * (major[gaps] - major[rows])
    return inside & (minor_depth > 0) & (major_depth > 0.5 * minor_depth)


def _locate_zero(fit: _MarkFit, majors: np.ndarray, geometry: NeckScaleGeometry) -> int | str:
    """Index of the nominal mark: the major closest to the hint's nominal row."""
    if not majors.any():
        return "no major mark visible: cannot locate the nominal mark"
    residues = fit.indices[majors] % geometry.major_every
    counts = np.bincount(residues, minlength=geometry.major_every)
    residue = int(np.argmax(counts))
    if counts[residue] < 0.75 * majors.sum():
        return "major marks inconsistent: cannot locate the nominal mark"
    hint_index = (geometry.zero_mark_y_px + fit.half_width - fit.intercept) / fit.slope
    base = hint_index - residue
    zero_index = int(round(base / geometry.major_every)) * geometry.major_every + residue
    if abs(zero_index - hint_index) > 0.45 * geometry.major_every:
        return f"nominal mark {abs(zero_index - hint_index):.1f} divisions from its expected row: check the scale hint"
    return zero_index


@dataclass
class _Meniscus:
    y_px: float
    u_px: float
    contrast: float
    columns: int


def _find_meniscus(upright: np.ndarray, geometry: NeckScaleGeometry, row_range: tuple[int, int]) -> _Meniscus | str:
    """Lowest point (px, upright frame) of the meniscus's lower edge across the glass centre."""
    g0, g1 = geometry.glass_x_px
    centre, half = 0.5 * (g0 + g1), 0.3 * (g1 - g0)
    c0, c1 = int(round(centre - half)), int(round(centre + half)) + 1
    r0, r1 = max(2, row_range[0]), min(upright.shape[0] - 3, row_range[1])
    if r1 - r0 < 8:
        return "meniscus not found (scale outside the frame)"
    window = upright[:, c0:c1]
    profile = np.median(window, axis=1)
    background = median_filter(profile, size=int(1.5 * geometry.px_per_division) | 1, mode="nearest")
    deviation = np.convolve(profile - background, np.ones(3) / 3, mode="same")
    search = np.abs(deviation[r0:r1])
    # the surface is the topmost strong feature: bubbles and foam only ever lie below it
    is_peak = np.r_[True, search[1:] >= search[:-1]] & np.r_[search[:-1] >= search[1:], True]
    candidates = np.flatnonzero(is_peak & (search >= 0.5 * search.max()))
    peak = r0 + int(candidates[0])
    contrast = float(abs(deviation[peak]))
    noise = _noise_sigma(profile)
    if contrast < max(_MIN_MENISCUS_CONTRAST, 6.0 * noise):
        return f"meniscus not found (contrast {contrast:.0f} grey levels)"
    far = np.abs(np.arange(r0, r1) - peak) > geometry.px_per_division
    if far.any() and search[far].max() > 0.7 * contrast:
        return "meniscus ambiguous: two candidate levels"
    band_dark = deviation[peak] < 0
    oriented = window if band_dark else -window  # the band is dark in `oriented`
    b0, b1 = _band_extent(deviation, peak, r0, r1)
    lo, hi = max(1, b0 - 1), min(upright.shape[0] - 2, b1 + 4)
    second = _second_edge(profile if band_dark else -profile, lo, hi, int(b1 + 0.6 * geometry.px_per_division))
    if second:
        return second
    blurred = _edge_width(profile if band_dark else -profile, b0, b1, geometry.px_per_division)
    if blurred > _MAX_EDGE_WIDTH_PX:
        return f"meniscus edge blurred over {blurred:.0f} px (bubbles or foam?)"
    steps = np.abs(profile[r0 + 3 : b0 - 2] - profile[r0 : b0 - 5]) if b0 - 5 > r0 else np.zeros(1)
    if steps.max() > max(0.5 * contrast, 6.0 * noise):  # above the surface is only air
        above = b0 - (r0 + int(np.argmax(steps)))
        return f"meniscus ambiguous: another edge {above} px above the band"
    rise = np.diff(oriented[lo - 1 : hi + 2], axis=0)  # rise[j] sits between rows lo-1+j, lo+j
    best = np.argmax(rise[1:-1], axis=0) + 1
    cols = np.arange(rise.shape[1])
    strength = rise[best, cols]
    offsets = np.array(
        [_parabola_offset(rise[b - 1, c], rise[b, c], rise[b + 1, c]) for b, c in zip(best, cols, strict=True)]
    )
    edge = lo - 1 + best + 0.5 + offsets
    good = strength > 0.5 * np.median(strength)
    x = np.arange(c0, c1, dtype=np.float64) - centre
    for _ in range(3):
        if good.sum() < 5:
            return "meniscus edge not found across the glass (glare?)"
        coeffs = np.polyfit(x[good], edge[good], 2)
        residuals = edge - np.polyval(coeffs, x)
        sigma = max(0.15, 1.4826 * float(np.median(np.abs(residuals[good]))))
        good = good & (np.abs(residuals) < 3 * sigma)
    coeffs = np.polyfit(x[good], edge[good], 2)
    # the lowest point lies on the glass axis; a concave fit may put its vertex a little aside
    vertex = -coeffs[1] / (2 * coeffs[0]) if coeffs[0] < 0 else 0.0
    y_low = float(np.polyval(coeffs, vertex if abs(vertex) < 0.25 * half else 0.0))
    residual_sd = float(np.std(edge[good] - np.polyval(coeffs, x[good]), ddof=3))
    return _Meniscus(y_low, 2.0 * residual_sd / math.sqrt(good.sum()), contrast, int(good.sum()))


def _band_extent(deviation: np.ndarray, peak: int, r0: int, r1: int) -> tuple[int, int]:
    """Rows where the band's deviation stays above half its peak (same sign)."""
    level = 0.5 * deviation[peak]
    b0, b1 = peak, peak
    while b0 > r0 and deviation[b0 - 1] * level > level * level:
        b0 -= 1
    while b1 < r1 - 1 and deviation[b1 + 1] * level > level * level:
        b1 += 1
    return b0, b1


def _edge_width(oriented_profile: np.ndarray, b0: int, b1: int, px_per_division: float) -> float:
    """Band-to-water recovery divided by its steepest step (px): about 2.5 σ for a clean edge."""
    bottom = b0 + int(np.argmin(oriented_profile[b0 : b1 + 1]))
    near = int(0.5 * px_per_division)
    water_rows = oriented_profile[bottom + near : bottom + int(px_per_division) + 1]
    ramp = np.diff(oriented_profile[bottom : bottom + near + 1])
    if water_rows.size == 0 or ramp.size == 0 or ramp.max() <= 0:
        return 0.0
    return float((np.median(water_rows) - oriented_profile[bottom]) / ramp.max())


def _second_edge(oriented_profile: np.ndarray, lo: int, hi: int, below: int) -> str:
    """A reason when a second rising edge almost as strong lies just under the band (foam)."""
    rise = np.diff(oriented_profile[lo : max(below, hi + 1) + 1])
    if rise.size < 3:
        return ""
    first = int(np.argmax(rise[: hi - lo + 1]))
    rest = rise[first + 3 :]
    if rest.size and rest.max() > 0.6 * rise[first]:
        offset = int(np.argmax(rest)) + 3
        return f"meniscus edge ambiguous: a second edge {offset} px below the band (bubbles or foam?)"
    return ""


def _upright(grey: np.ndarray, tilt: float, centre: tuple[float, float], geometry: NeckScaleGeometry) -> np.ndarray:
    """The frame turned upright about ``centre``; only the glass and mark columns are filled."""
    height, width = grey.shape
    left = max(0, int(geometry.glass_x_px[0]) - 4 - _MAX_SHIFT_PX)
    right = min(width, int(math.ceil(geometry.marks_x_px + geometry.major_length_px)) + 2 + _MAX_SHIFT_PX)
    upright = np.zeros_like(grey)
    upright[:, left:right] = _warp(grey, tilt, centre, left, right, height)
    return upright


def _marks(upright: np.ndarray, geometry: NeckScaleGeometry) -> tuple[_MarkFit | str, np.ndarray]:
    """Mark fit (or a reason) from the minor-mark strip, and the strip's row profile."""
    x0, x1 = _strip_columns(geometry, upright.shape[1])
    strip_profile = upright[:, x0:x1].mean(axis=1)
    centres, half_width = _find_marks(strip_profile, geometry)
    return _fit_marks(centres, half_width, geometry), strip_profile


def _marks_x_shift(upright: np.ndarray, fit: _MarkFit, geometry: NeckScaleGeometry) -> float:
    """Sideways offset (px) of the marks' left ends from the hint, from mark rows vs gap rows."""
    x0 = max(0, int(geometry.marks_x_px) - _MAX_SHIFT_PX)
    x1 = min(upright.shape[1], int(geometry.marks_x_px + geometry.minor_length_px) - 1)
    rows = np.clip(np.round(fit.centres).astype(int), 0, upright.shape[0] - 1)
    gaps = np.clip(np.round(fit.centres + 0.5 * fit.slope).astype(int), 0, upright.shape[0] - 1)
    contrast = upright[gaps, x0:x1].mean(axis=0) - upright[rows, x0:x1].mean(axis=0)
    contrast *= np.sign(np.median(contrast[-6:]))  # marks positive, whatever their colour
    level = 0.5 * float(np.median(contrast[-6:]))
    inside = np.flatnonzero(contrast > level)
    if level <= 0 or inside.size == 0 or inside[0] == 0:
        return 0.0
    j = int(inside[0])  # first column past half height
    fraction = (level - contrast[j - 1]) / (contrast[j] - contrast[j - 1])
    return float(x0 + j - 1 + fraction + 0.5 - geometry.marks_x_px)


def _fail(reason: str, **known: Any) -> NeckScaleReading:
    return NeckScaleReading(ok=False, reason=reason, **known)


def read_neck_scale(frame: np.ndarray, geometry: NeckScaleGeometry) -> NeckScaleReading:
    """Read the meniscus level on a tank's neck scale, in mL relative to the nominal mark.

    Parameters
    ----------
    frame : (H, W[, 3]) uint8 ndarray
        Camera frame (BGR or grey) showing the gauge glass and its scale.
    geometry : NeckScaleGeometry
        Rough positions (the tank's ``scale`` hint) and mL per division.

    Returns
    -------
    NeckScaleReading
        ``level_ml`` (positive above the nominal mark) with its standard
        uncertainty ``u_ml``; ``ok=False`` and a ``reason`` when it cannot read.
    """
    grey = _grey(frame)
    for _ in range(2):  # a second pass when the camera has moved sideways from the hint
        tilt = _estimate_tilt(grey, geometry)
        if abs(tilt) > _MAX_TILT_DEG:
            return _fail(f"camera tilt {tilt:.1f} deg beyond ±{_MAX_TILT_DEG:.0f} deg", tilt_deg=tilt)
        centre = (geometry.glass_centre_x_px, geometry.zero_mark_y_px)
        upright = _upright(grey, tilt, centre, geometry)
        fit, strip_profile = _marks(upright, geometry)
        shift = 0.0 if isinstance(fit, str) else _marks_x_shift(upright, fit, geometry)
        if abs(shift) <= 1.0:
            break
        geometry = replace(
            geometry,
            marks_x_px=geometry.marks_x_px + shift,
            glass_x_px=(geometry.glass_x_px[0] + shift, geometry.glass_x_px[1] + shift),
        )
    if isinstance(fit, str):
        return _fail(fit, tilt_deg=tilt)
    spread_pct = 100.0 * float(np.sqrt(np.mean(fit.residuals**2))) / fit.slope
    known = {
        "tilt_deg": tilt,
        "marks_used": int(fit.centres.size),
        "px_per_division": fit.slope,
        "spacing_spread_pct": spread_pct,
        "mark_residuals_px": [float(r) for r in fit.residuals],
    }
    if spread_pct > _MAX_SPREAD_PCT:
        return _fail(f"mark spacing inconsistent: {spread_pct:.1f} % spread", **known)
    polarity_sign = 1.0 if np.median(strip_profile) > np.min(strip_profile) + 0.5 * (np.ptp(strip_profile)) else -1.0
    zero = _locate_zero(fit, _major_flags(upright, fit, geometry, polarity_sign), geometry)
    if isinstance(zero, str):
        return _fail(zero, **known)
    fit.zero_index = zero
    margin = int(2 * fit.slope)
    rows = (int(fit.centres[0]) - margin, int(fit.centres[-1]) + margin)
    meniscus = _find_meniscus(upright, geometry, rows)
    if isinstance(meniscus, str):
        return _fail(meniscus, **known)
    return _level_reading(fit, meniscus, geometry, tilt, centre, known)


def _level_reading(
    fit: _MarkFit,
    meniscus: _Meniscus,
    geometry: NeckScaleGeometry,
    tilt: float,
    centre: tuple[float, float],
    known: dict,
) -> NeckScaleReading:
    """Convert the meniscus row to divisions and mL through the mark fit, with its uncertainty."""
    edge_intercept = fit.intercept - fit.half_width
    index = (meniscus.y_px - edge_intercept) / fit.slope
    level_div = fit.zero_index - index
    n = fit.indices.size
    sxx = float(np.sum((fit.indices - fit.indices.mean()) ** 2))
    sd = float(np.sqrt(np.sum(fit.residuals**2) / max(1, n - 2)))
    u_fit_div = sd / fit.slope * math.sqrt(1.0 / n + (index - fit.indices.mean()) ** 2 / sxx)
    u_div = math.hypot(u_fit_div, meniscus.u_px / fit.slope, _MODEL_FLOOR_DIV)
    matrix = _upright_matrix(tilt, centre)
    point = matrix @ np.array([geometry.glass_centre_x_px, meniscus.y_px, 1.0])
    known = {**known, "meniscus_xy_px": (float(point[0]), float(point[1])), "meniscus_contrast": meniscus.contrast}
    beyond = max(fit.indices[0] - index, index - fit.indices[-1])
    if beyond > _MAX_EXTRAPOLATION_DIV:
        return _fail(f"meniscus {beyond:.1f} divisions beyond the visible marks", **known)
    return NeckScaleReading(
        ok=True,
        level_ml=level_div * geometry.ml_per_division,
        u_ml=u_div * geometry.ml_per_division,
        level_divisions=level_div,
        **known,
    )
