"""Render a camera frame of a measuring tank's neck: gauge glass, scale plate, meniscus.

The scene is drawn at ``_SUPERSAMPLE`` times the output resolution with exact
fractional pixel coverage, then turned by the camera roll and area-averaged
down, so mark edges and the meniscus sit at sub-pixel positions that are known
exactly (the truth for the reader). Geometry is a
:class:`meterbench.vision.NeckScaleGeometry`; the level is in mL relative to
the nominal mark, and its image row is where the lowest point of the
meniscus's lower edge lies (the OIML reading point, tangent to a mark's upper
edge when the level is on that mark).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from meterbench.vision.neck_scale import NeckScaleGeometry

__all__ = ["NeckRenderConditions", "random_conditions", "render_neck", "stress_conditions"]

_SUPERSAMPLE = 4
FRAME_SIZE_WH = (200, 400)


@dataclass(frozen=True)
class NeckRenderConditions:
    """Imaging conditions of one frame (grey levels 0..255, px at output resolution)."""

    backing: str = "bright"  # behind the glass: "bright" or "dark"
    plate: str = "light"  # scale plate: "light" (dark marks) or "dark"
    water_tint_bgr: tuple[float, float, float] = (0.97, 0.97, 0.97)  # 1 = clear
    tilt_deg: float = 0.0  # camera roll about the nominal point
    glare_x_px: tuple[float, ...] = ()  # vertical glare stripes on the glass
    bubbles: int = 0
    noise_sigma: float = 2.0
    blur_sigma: float = 0.7
    mark_width_px: float = 3.0
    meniscus_rise_px: float = 6.0  # capillary rise at the wall
    band_px: float = 3.0  # meniscus band thickness at the centre
    meniscus_visible: bool = True
    meniscus_contrast: float = 1.0  # 1 = full dark (bright) band, 0 = invisible
    bubble_depth_px: tuple[float, float] = (8.0, 120.0)  # bubbles this far below the level
    hidden_divisions: tuple[int, ...] = ()  # marks covered (dirt, a clip)
    light_gradient: float = 0.1  # relative illumination change top to bottom
    seed: int = 0
    extra: dict = field(default_factory=dict)


def stress_conditions(rng: np.random.Generator) -> NeckRenderConditions:
    """Harsher than a bench should be: tilt ±7°, heavy noise, 3 glare stripes, bubbles at the
    meniscus, a faint band, marks hidden. The reader must read or flag, never be silently wrong."""
    base = random_conditions(rng, hard=True)
    return NeckRenderConditions(
        **{
            **base.__dict__,
            "tilt_deg": float(rng.uniform(-7, 7)),
            "noise_sigma": float(rng.uniform(4, 10)),
            "blur_sigma": float(rng.uniform(0.8, 1.6)),
            "glare_x_px": tuple(rng.uniform(0.2, 0.8, size=3)),
            "bubbles": int(rng.integers(3, 9)),
            "bubble_depth_px": (2.0, 20.0),
            "meniscus_contrast": float(rng.uniform(0.15, 1.0)),
            "hidden_divisions": tuple(range(int(rng.integers(-8, 4)), int(rng.integers(4, 9))))
            if rng.random() < 0.3
            else base.hidden_divisions,
        }
    )


def random_conditions(rng: np.random.Generator, *, hard: bool = True) -> NeckRenderConditions:
    """Random realistic conditions: backing, tint, tilt ±4°, glare, bubbles, hidden marks."""
    tints = [(0.97, 0.97, 0.97), (0.80, 0.93, 0.99), (0.95, 0.85, 0.70), (0.85, 0.97, 0.88)]
    glare = tuple(rng.uniform(0.25, 0.8, size=int(rng.integers(0, 3 if hard else 1))))
    hidden: tuple[int, ...] = ()
    if hard and rng.random() < 0.4:
        start = int(rng.integers(-10, 8))
        hidden = tuple(range(start, start + int(rng.integers(1, 4))))
    return NeckRenderConditions(
        backing="dark" if rng.random() < 0.3 else "bright",
        plate="dark" if rng.random() < 0.2 else "light",
        water_tint_bgr=tints[int(rng.integers(len(tints)))],
        tilt_deg=float(rng.uniform(-4, 4)) if hard else float(rng.uniform(-1, 1)),
        glare_x_px=glare,
        bubbles=int(rng.integers(0, 5 if hard else 1)),
        noise_sigma=float(rng.uniform(1.0, 4.0 if hard else 2.0)),
        blur_sigma=float(rng.uniform(0.5, 1.0)),
        mark_width_px=float(rng.uniform(2.5, 3.5)),
        meniscus_rise_px=float(rng.uniform(4, 9)),
        band_px=float(rng.uniform(2.5, 4.5)),
        hidden_divisions=hidden,
        light_gradient=float(rng.uniform(-0.15, 0.15)),
        seed=int(rng.integers(2**31)),
    )


def _coverage(lo: np.ndarray | float, hi: np.ndarray | float, cells: np.ndarray) -> np.ndarray:
    """Fraction of each unit cell [c, c+1) covered by the interval [lo, hi) (broadcasting)."""
    return np.clip(np.minimum(cells + 1, hi) - np.maximum(cells, lo), 0.0, 1.0)


def _blend(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray | float) -> None:
    """image := image + alpha·(colour − image), in place (alpha 2-D, broadcast over channels)."""
    image += alpha[..., None] * (colour - image)


def _fill_rect(image: np.ndarray, x0: float, x1: float, y0: float, y1: float, colour: np.ndarray | float) -> None:
    """Fill a rectangle with exact fractional coverage at its edges (coordinates in image px)."""
    h, w = image.shape[:2]
    r0, r1 = max(0, int(math.floor(y0))), min(h, int(math.ceil(y1)))
    c0, c1 = max(0, int(math.floor(x0))), min(w, int(math.ceil(x1)))
    if r1 <= r0 or c1 <= c0:
        return
    rows = _coverage(y0, y1, np.arange(r0, r1, dtype=np.float32))
    cols = _coverage(x0, x1, np.arange(c0, c1, dtype=np.float32))
    full_rows, full_cols = np.flatnonzero(rows >= 1.0), np.flatnonzero(cols >= 1.0)
    if full_rows.size > 2 and full_cols.size > 2:  # solid inside, blend only the rim
        i0, i1 = r0 + full_rows[0], r0 + full_rows[-1] + 1
        j0, j1 = c0 + full_cols[0], c0 + full_cols[-1] + 1
        for rs, cs in (((r0, i0), (c0, c1)), ((i1, r1), (c0, c1)), ((i0, i1), (c0, j0)), ((i0, i1), (j1, c1))):
            if rs[1] > rs[0] and cs[1] > cs[0]:
                alpha = rows[rs[0] - r0 : rs[1] - r0, None] * cols[None, cs[0] - c0 : cs[1] - c0]
                _blend(image[rs[0] : rs[1], cs[0] : cs[1]], alpha, colour)
        image[i0:i1, j0:j1] = colour
        return
    _blend(image[r0:r1, c0:c1], rows[:, None] * cols[None, :], colour)


def _draw_scale(canvas: np.ndarray, geometry: NeckScaleGeometry, conditions: NeckRenderConditions, s: int) -> None:
    light = conditions.plate == "light"
    plate, ink = (np.float32(225), np.float32(35)) if light else (np.float32(45), np.float32(225))
    width = canvas.shape[1] / s
    text_mask = np.zeros(canvas.shape[:2], np.uint8)  # putText draws on uint8 only
    _fill_rect(canvas, geometry.marks_x_px * s, width * s, 0, canvas.shape[0], plate)
    for division in range(geometry.min_division, geometry.max_division + 1):
        y_top = geometry.zero_mark_y_px - division * geometry.px_per_division
        major = division % geometry.major_every == 0
        length = geometry.major_length_px if major else geometry.minor_length_px
        _fill_rect(
            canvas,
            geometry.marks_x_px * s,
            (geometry.marks_x_px + length) * s,
            y_top * s,
            (y_top + conditions.mark_width_px) * s,
            ink,
        )
        if major:
            text = f"{division * geometry.ml_per_division:+.0f}" if division else "0"
            origin = (int((geometry.marks_x_px + geometry.major_length_px + 4) * s), int((y_top + 5) * s))
            cv2.putText(text_mask, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.32 * s, 255, max(1, s), cv2.LINE_AA)
    x_text = int(geometry.marks_x_px + geometry.major_length_px) * s
    _blend(canvas[:, x_text:], text_mask[:, x_text:].astype(np.float32) / 255.0, ink)
    if conditions.hidden_divisions:  # one patch (dirt, a clip) over those marks
        top = geometry.zero_mark_y_px - max(conditions.hidden_divisions) * geometry.px_per_division
        bottom = (
            geometry.zero_mark_y_px
            - min(conditions.hidden_divisions) * geometry.px_per_division
            + conditions.mark_width_px
        )
        _fill_rect(
            canvas,
            (geometry.marks_x_px - 1) * s,
            (geometry.marks_x_px + geometry.major_length_px + 2) * s,
            (top - 4) * s,
            (bottom + 4) * s,
            np.float32(120),
        )


def _meniscus_rows(
    x: np.ndarray, centre: float, radius: float, level_y: float, conditions: NeckRenderConditions, s: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top and bottom (hi-res rows) of the meniscus band per hi-res column centre ``x``."""
    decay = 0.15 * radius
    distance = np.clip(radius - np.abs(x - centre), 0.0, None)
    rise = conditions.meniscus_rise_px * s * (np.exp(-distance / decay) - math.exp(-radius / decay))
    bottom = level_y - rise
    top = bottom - conditions.band_px * s - 1.5 * rise
    return top, bottom


def _draw_glass(
    canvas: np.ndarray,
    geometry: NeckScaleGeometry,
    level_y_px: float,
    conditions: NeckRenderConditions,
    rng: np.random.Generator,
    s: int,
) -> None:
    g0, g1 = (v * s for v in geometry.glass_x_px)
    wall = 3.0 * s
    bright = conditions.backing == "bright"
    backing = np.float32(215 if bright else 40)
    _fill_rect(canvas, g0 - wall, g1 + wall, 0, canvas.shape[0], np.float32(150 if bright else 90))
    _fill_rect(canvas, g0, g1, 0, canvas.shape[0], backing)
    c0, c1 = int(g0), int(math.ceil(g1))
    x = np.arange(c0, c1, dtype=np.float32) + 0.5
    rows = np.arange(canvas.shape[0], dtype=np.float32)[:, None]
    centre, radius = 0.5 * (g0 + g1), 0.5 * (g1 - g0)
    top, bottom = _meniscus_rows(x, centre, radius, level_y_px * s, conditions, s)
    inside = _coverage(g0, g1, x - 0.5)[None, :]
    region = canvas[:, c0:c1]
    lens = 1.0 - 0.18 * ((x - centre) / radius) ** 4  # refraction shading of the column
    tint = np.asarray(conditions.water_tint_bgr, np.float32)
    water = backing * lens[:, None] * tint[None, :]  # (columns, 3)
    first = min(canvas.shape[0], max(0, int(math.floor(min(top.min(), bottom.min()))) - 1))
    solid = min(canvas.shape[0], max(first, int(math.ceil(bottom.max())) + 1))
    rows = rows[first:solid]
    inner = np.flatnonzero(inside[0] >= 1.0)
    region[solid:, inner] = water[None, inner, :]  # fully under water
    edge_cols = np.flatnonzero(inside[0] < 1.0)
    _blend(
        region[solid:, edge_cols],
        np.broadcast_to(inside[:, edge_cols], (canvas.shape[0] - solid, edge_cols.size)),
        water[None, edge_cols, :],
    )
    transition = region[first:solid]
    _blend(transition, _coverage(bottom[None, :], 1e9, rows) * inside, water[None, :, :])
    if conditions.meniscus_visible:
        band = np.float32(55 if bright else 175)
        _blend(transition, conditions.meniscus_contrast * _coverage(top[None, :], bottom[None, :], rows) * inside, band)
    for _ in range(conditions.bubbles):
        bx = rng.uniform(g0 + 4 * s, g1 - 4 * s)
        depth = rng.uniform(*conditions.bubble_depth_px)
        by = (level_y_px + depth) * s
        radius_px = int(rng.uniform(1.5, 3.5) * s)
        cv2.circle(canvas, (int(bx), int(by)), radius_px, (80.0, 80.0, 80.0), max(1, s // 2), cv2.LINE_AA)
    for fraction in conditions.glare_x_px:
        gx = g0 + fraction * (g1 - g0)
        sigma = rng.uniform(1.0, 2.5) * s
        stripe = np.exp(-0.5 * ((np.arange(c0, c1) - gx) / sigma) ** 2)
        canvas[:, c0:c1] += (rng.uniform(40, 80) * stripe)[None, :, None]


@functools.lru_cache(maxsize=8)
def _scale_canvas(
    geometry: NeckScaleGeometry,
    backing: str,
    plate: str,
    mark_width_px: float,
    hidden_divisions: tuple[int, ...],
    size_wh: tuple[int, int],
) -> np.ndarray:
    """Background and scale plate at supersampled resolution (the same for every frame of a camera)."""
    s = _SUPERSAMPLE
    background = np.float32(190 if backing == "bright" else 50)
    canvas = np.full((size_wh[1] * s, size_wh[0] * s, 3), background, np.float32)
    conditions = NeckRenderConditions(
        backing=backing, plate=plate, mark_width_px=mark_width_px, hidden_divisions=hidden_divisions
    )
    _draw_scale(canvas, geometry, conditions, s)
    canvas.flags.writeable = False
    return canvas


def render_neck(
    level_ml: float,
    geometry: NeckScaleGeometry,
    conditions: NeckRenderConditions | None = None,
    size_wh: tuple[int, int] = FRAME_SIZE_WH,
) -> np.ndarray:
    """Render one BGR uint8 frame (H×W×3) of the neck with the meniscus at ``level_ml`` (mL).

    ``level_ml`` is relative to the nominal mark (positive above it); the
    lowest point of the meniscus is at that level exactly.
    """
    conditions = conditions or NeckRenderConditions()
    rng = np.random.default_rng(conditions.seed)
    s = _SUPERSAMPLE
    width, height = size_wh
    canvas = _scale_canvas(
        geometry,
        conditions.backing,
        conditions.plate,
        conditions.mark_width_px,
        conditions.hidden_divisions,
        (width, height),
    ).copy()
    level_y = geometry.zero_mark_y_px - level_ml / geometry.ml_per_division * geometry.px_per_division
    _draw_glass(canvas, geometry, level_y, conditions, rng, s)
    frame = cv2.resize(canvas, size_wh, interpolation=cv2.INTER_AREA)
    if conditions.tilt_deg:
        centre = (geometry.glass_centre_x_px, geometry.zero_mark_y_px)
        matrix = cv2.getRotationMatrix2D(centre, -conditions.tilt_deg, 1.0)
        frame = cv2.warpAffine(frame, matrix, size_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    gradient = 1.0 + conditions.light_gradient * (np.arange(height, dtype=np.float32) / height - 0.5)
    frame *= gradient[:, None, None]
    if conditions.blur_sigma > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), conditions.blur_sigma)
    frame += rng.normal(0.0, conditions.noise_sigma, frame.shape).astype(np.float32)
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)
