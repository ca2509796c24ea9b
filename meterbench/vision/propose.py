"""Propose a register layout from one photo of a meter face (`meterbench layout propose`).

Classical computer vision, no model: the digit window is the tallest row of
digit-like glyphs at a regular pitch (connected components of an adaptive
threshold, both polarities, so white-on-black and black-on-white wheels alike);
each wheel's window edges are the strongest steps of the grey profiles around
its glyph (projection profiles with the glyphs masked out); a wheel is red when
its background or its digits are red.  Pointer sub-dials are red blobs (HSV
mask) at the centre of a circle (Hough); the hub, the widest part of the
pointer (distance-transform peak), must sit near that centre.

What one image cannot say, the caller gives: the litres of one step of the
lowest black wheel (`wheel_litres`) and of one division of each dial
(`dial_litres`, coarse to fine).  Printed factors ("x0.1") are not read (no
text reader ships with meterbench): without the options the usual decade chain
is assumed (m³ wheels, then tenths) and the proposal says so.  Every element
carries the reasons it is unsure, shown in the overlay and printed by the
command line: a proposal is a draft a person checks at a glance, never a
silent layout.  Coordinates: image px, origin at the top-left edge of the image
(the layout's plate convention with the reference image as the plate).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from meterbench.errors import ConfigError
from meterbench.vision._draw import outlined_text, overlay_scale
from meterbench.vision.align import element_crop_box
from meterbench.vision.reference_align import EDGE_CLEARANCE_PX

__all__ = [
    "DEFAULT_WHEEL_LITRES",
    "project_layout",
    "score_proposal",
    "LayoutProposal",
    "ProposedElement",
    "draw_overlay",
    "find_dials",
    "find_wheels",
    "parse_dial_litres",
    "propose_layout",
    "read_image",
    "text_detector",
    "TextDetector",
    "write_proposal",
]

DEFAULT_WHEEL_LITRES = 1000.0  # one step of the lowest black wheel: 1 m³
GLYPH_HEIGHT_RANGE = (0.035, 0.25)  # fraction of the image height
GLYPH_ASPECT_RANGE = (0.12, 0.95)  # width / height ("1" is narrow)
GLYPH_FILL_RANGE = (0.12, 0.80)  # ink fraction of the glyph's bounding box
ROW_MIN_GLYPHS = 3
MIN_COUNTER_WHEELS = 4  # fewer wheels in a proposed counter: some were missed, or it is not the counter
DIGIT_PER_WINDOW = 0.65  # digit height / window height (when the row's glyphs are the windows)
WINDOW_SEARCH = 1.5  # window edges are searched this many digit heights above and below the row
FRAME_STEP = 0.2  # a window edge: the frame's grey falls by this fraction of the frame-to-ink contrast
FRAME_STEP_ACROSS = 0.2  # top/bottom: window and separator columns part by this fraction of it
FRAME_STEP_MIN = 10.0  # ... and by at least these grey levels
FRAME_PLATEAU = 6  # samples (0.5 px) of frame passed before a top/bottom edge counts
ALIGN_PASSES = 2
ALIGN_ACROSS_ONLY = True  # slots move along the row only (the row's line comes from its glyphs)
ALIGN_MIN_GAIN = 0.03  # moves taken only when they cut the frame mismatch by this fraction
ALIGN_REACH = 3.0  # px a slot may move to match the median slot's frame
DIGIT_CLEARANCE = 0.6  # top/bottom edges lie at least this many digit heights from the row's centre line
OUTLINE_AGREEMENT_PX = 3.0  # frame edges and traced window outlines must agree this well (size)
RIVAL_ROW_SHARE = 0.75  # a second row scoring this share of the counter's makes its choice unsure
COUNTER_MIN_PITCH = 0.8  # counter wheels: pitch / glyph height at least this (print is set tighter)
WINDOW_HEIGHT_PER_GLYPH = 1.55  # prior: window height / digit height (when no edge is found)
WINDOW_WIDTH_PER_PITCH = 0.8  # prior: window width / wheel pitch
RED_MIN_CHROMA = 45.0  # R - max(G, B) (grey levels) of a red pixel
RED_WHEEL_FRACTION = 0.06  # fraction of red pixels (red digits or background) that makes a wheel red
DIAL_RADIUS_RANGE = (0.035, 0.2)  # fraction of min(image w, h)
HOUGH_SIZE_PX = 320  # the Hough search runs on a copy with this shorter side (px)
HUB_MAX_OFFSET = 0.45  # hub distance from the circle centre allowed, fraction of the radius
DIAL_DIVISIONS = 10  # ticks (and digits) around a sub-dial
TICK_POINTER_REACH = 0.7  # first guess of a tick radius: pointer reach / this
TICK_SEARCH = 0.3  # the dial centre is searched this far (fraction of the radius) around the pointer hub
TICK_MIN_AMPLITUDE = 6.0  # grey levels of the ten-fold pattern below which no tick ring is taken
TICK_MIN_CONTRAST = 25.0  # grey levels between a tick and the face
TICK_RING_GAP = 1.4  # a printed ring outside the ticks is searched up to this many tick radii
RING_MIN_CONTRAST = 30.0  # grey levels by which a printed ring is darker than the face


@dataclass(frozen=True)
class ProposedElement:
    """One proposed wheel or dial (image px): kind, colour, box, dial geometry, and why unsure."""

    kind: str
    colour: str
    box_px: tuple[float, float, float, float]
    center_px: tuple[float, float] | None = None
    radius_px: float | None = None
    unsure: tuple[str, ...] = ()

    @property
    def center(self) -> tuple[float, float]:
        """Centre of the box (px)."""
        x, y, w, h = self.box_px
        return (x + w / 2, y + h / 2)


@dataclass
class LayoutProposal:
    """A proposed layout: the `register` dict, its elements (most significant first) and notes."""

    register: dict
    elements: list[ProposedElement]
    names: list[str]
    notes: list[str] = field(default_factory=list)

    def unsure_lines(self) -> list[str]:
        """One line per unsure element: 'kind name: reason; reason'."""
        return [
            f"{e.kind} {name}: {'; '.join(e.unsure)}"
            for name, e in zip(self.names, self.elements, strict=True)
            if e.unsure
        ]


@dataclass(frozen=True)
class _Glyph:
    x: int
    y: int
    w: int
    h: int
    dark: bool = True  # darker than its surround (found on the inverse threshold)

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


def read_image(path: Path) -> np.ndarray:
    """A BGR image from a file; ConfigError naming it when it is not a readable image."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: expected an image file, found none")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ConfigError(f"{path}: expected an image (PNG, JPEG, ...), could not decode it")
    return image


def parse_dial_litres(text: str) -> tuple[float, ...]:
    """'100,10,1,0.1' -> (100.0, 10.0, 1.0, 0.1): litres per division, coarse to fine, each 10× the next."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"--dial-litres: expected numbers separated by commas (e.g. 100,10,1,0.1), got {text!r}"
        ) from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"--dial-litres: expected litres > 0 per division, got {text!r}")
    for a, b in zip(values, values[1:], strict=False):
        if not math.isclose(a / b, 10.0, rel_tol=1e-9):
            raise ConfigError(f"--dial-litres: expected each dial 10x the next (coarse to fine), got {text!r}")
    return values


# -- digit wheels ---------------------------------------------------------------------------------
def _glyph_candidates(
    grey: np.ndarray, *, height_range: tuple[float, float] | None = None, offset: tuple[int, int] = (0, 0)
) -> list[_Glyph]:
    """Digit-like connected components of both polarities (image px, shifted by `offset` when
    `grey` is a crop).  Glyph heights: `height_range` px, default a fraction of the image height."""
    h_img = grey.shape[0]
    block = max(15, int(h_img / 8) | 1)
    low, high = height_range or (GLYPH_HEIGHT_RANGE[0] * h_img, GLYPH_HEIGHT_RANGE[1] * h_img)
    found: list[_Glyph] = []
    seen: set[_Glyph] = set()
    for inverse, c in ((True, 12), (False, -12)):
        kind = cv2.THRESH_BINARY_INV if inverse else cv2.THRESH_BINARY
        binary = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, kind, block, c)
        # opened too: thin window frames touching a bold digit would otherwise join it to them
        opened = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        for plane in (binary, opened):
            n, _, stats, _ = cv2.connectedComponentsWithStats(plane, connectivity=8)
            for x, y, w, h, area in stats[1:n]:
                if not low <= h <= high:
                    continue
                if not GLYPH_ASPECT_RANGE[0] <= w / h <= GLYPH_ASPECT_RANGE[1]:
                    continue
                if not GLYPH_FILL_RANGE[0] <= area / (w * h) <= GLYPH_FILL_RANGE[1]:
                    continue
                glyph = _Glyph(int(x) + offset[0], int(y) + offset[1], int(w), int(h), inverse)
                if glyph not in seen:
                    seen.add(glyph)
                    found.append(glyph)
    return found


def _rows(glyphs: list[_Glyph]) -> list[list[_Glyph]]:
    """Chains of glyphs of one height along one (possibly tilted) line at a regular pitch, best first."""
    glyphs = sorted(glyphs, key=lambda g: g.cx)
    rows: list[tuple[float, list[_Glyph]]] = []
    for seed in glyphs:
        row = [seed]
        for g in glyphs:
            last = row[-1]
            if g.cx <= last.cx + 0.3 * last.h:
                continue
            if g.cx - last.cx > 2.6 * seed.h:
                break
            slope = (last.cy - row[0].cy) / (last.cx - row[0].cx) if len(row) > 1 else 0.0
            slope = float(np.clip(slope, -0.1, 0.1))  # at most ~6 degrees of tilt
            if abs(g.h - seed.h) > 0.18 * seed.h or abs(g.cy - last.cy - slope * (g.cx - last.cx)) > 0.15 * seed.h:
                continue
            row.append(g)
        if len(row) < ROW_MIN_GLYPHS:
            continue
        gaps = np.diff([g.cx for g in row])
        pitch = float(np.median(gaps))
        steps = gaps / pitch
        if np.any(np.abs(steps - np.round(steps)) > 0.2) or np.any(np.round(steps) > 2):
            continue
        if not 0.55 * seed.h <= pitch <= 2.0 * seed.h:
            continue
        slots = int(round((row[-1].cx - row[0].cx) / pitch)) + 1
        rows.append((float(np.median([g.h for g in row])) * slots, row))
    rows.sort(key=lambda r: -r[0])
    return [r[1] for r in rows]


def _first_edge(profile: np.ndarray, start: float, stop: float) -> float | None:
    """Walking `profile` from index `start` towards `stop`, the first clear grey step (a local
    maximum of |gradient| above the noise) as an edge position (px, edge convention), or None."""
    valid = np.isfinite(profile)
    if valid.sum() < 4:
        return None
    idx = np.arange(profile.size, dtype=np.float64)
    grad = np.abs(np.diff(np.interp(idx, idx[valid], profile[valid])))  # grad[i]: step at edge i+1
    noise = float(np.median(np.abs(np.diff(grad)))) + 1e-6
    threshold = max(8.0, 4.0 * noise)
    direction = 1 if stop > start else -1
    a = int(round(start)) if direction > 0 else int(round(start)) - 1
    b = int(round(stop)) if direction > 0 else int(round(stop)) - 1
    positions = range(max(min(a, grad.size - 1), 0), max(min(b, grad.size - 1), 0), direction)
    for i in positions:
        before = grad[i - direction] if 0 <= i - direction < grad.size else 0.0
        after = grad[i + direction] if 0 <= i + direction < grad.size else 0.0
        if grad[i] >= threshold and grad[i] >= before and grad[i] >= after:
            # sub-pixel: parabola through the peak and its neighbours
            denom = before - 2 * grad[i] + after
            shift = 0.5 * (before - after) / denom * direction if denom < 0 else 0.0
            return float(i + 1 + shift)
    return None


def _wheel_colour(image: np.ndarray, box: tuple[float, float, float, float]) -> str:
    """'red' when the wheel's background or digits are red, else 'black'."""
    if image.ndim != 3:
        return "black"
    x, y, w, h = (int(round(v)) for v in box)
    crop = image[max(y, 0) : y + h, max(x, 0) : x + w].astype(np.int32)
    if crop.size == 0:
        return "black"
    chroma = crop[..., 2] - np.maximum(crop[..., 0], crop[..., 1])
    return "red" if float(np.mean(chroma > RED_MIN_CHROMA)) > RED_WHEEL_FRACTION else "black"


def find_wheels(
    image: np.ndarray, text_boxes: list[tuple[float, float, float, float]] = ()
) -> tuple[list[ProposedElement], list[str]]:
    """Digit wheels left to right (image px) and notes; [] and a note when no digit row is found.
    A row of fewer than MIN_COUNTER_WHEELS wheels has every wheel unsure (some were missed, or
    it is not the counter).

    `text_boxes` (x, y, w, h px; a text detector's lines, optional): glyphs are also looked for
    inside each at its own scale, and a row inside one counts as text rather than marks."""
    wheels, notes = _digit_row_wheels(image, text_boxes)
    if 0 < len(wheels) < MIN_COUNTER_WHEELS:
        few = f"only {len(wheels)} wheels in the digit row (counters have {MIN_COUNTER_WHEELS} or more): look for more"
        wheels = [replace(wheel, unsure=(*wheel.unsure, few)) for wheel in wheels]
        notes.append(few)
    return wheels, notes


def _digit_row_wheels(
    image: np.ndarray, text_boxes: list[tuple[float, float, float, float]]
) -> tuple[list[ProposedElement], list[str]]:
    """find_wheels before the wheel-count check."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    glyphs = _glyph_candidates(grey)
    known = set(glyphs)
    for x, y, w, h in text_boxes:
        x0, y0 = max(int(x - 0.5 * h), 0), max(int(y - 0.5 * h), 0)
        crop = grey[y0 : int(y + 1.5 * h) + 1, x0 : int(x + w + 0.5 * h) + 1]
        if min(crop.shape) >= 8:
            extra = _glyph_candidates(crop, height_range=(0.45 * h, 1.4 * h), offset=(x0, y0))
            glyphs += [g for g in extra if g not in known]
            known.update(extra)
    rows = _rows(glyphs)
    if not rows:
        return [], ["no row of digit wheels found"]
    scores = [_counter_score(r, glyphs, text_boxes) for r in rows]
    best = int(np.argmax(scores))
    row = rows[best]
    gh = float(np.median([g.h for g in row]))
    row_y = float(np.median([g.cy for g in row]))
    rivals = [
        (score, float(np.median([g.cy for g in r])))
        for r, score in zip(rows, scores, strict=True)
        if not set(r) & set(row) and abs(float(np.median([g.cy for g in r])) - row_y) > 0.5 * gh
    ]
    rival = max(rivals, default=None)
    doubt = []
    if rival is not None and rival[0] >= RIVAL_ROW_SHARE * scores[best]:
        doubt = [f"counter choice: another glyph row (y {rival[1]:.0f} px) looks almost as much like one"]
    if len(_window_glyphs(row, glyphs)) >= max(2, len(row) / 3):
        gh *= DIGIT_PER_WINDOW  # the row's glyphs are the windows: the digits inside are smaller
    xs, ys = np.array([g.cx for g in row]), np.array([g.cy for g in row])
    gaps = np.diff(xs)
    pitch = float(np.median(gaps / np.maximum(np.round(gaps / np.median(gaps)), 1)))
    ks = np.round((xs - xs[0]) / pitch).astype(int)
    pitch, x0 = (float(v) for v in np.polyfit(ks, xs, 1))
    slope, y0 = (float(v) for v in np.polyfit(xs, ys, 1))
    slots = list(range(int(ks.min()), int(ks.max()) + 1))
    unsure: dict[int, list[str]] = {k: ([] if k in ks else ["no whole digit seen (rolling?)"]) for k in slots}
    # a rolling wheel at either end shows only parts of two digits: accept partial glyphs there
    partial = [g for g in glyphs if abs(g.cy - (y0 + slope * g.cx)) < 0.5 * gh and 0.25 * gh <= g.h < 0.9 * gh]
    for direction in (-1, 1):
        while True:
            k = (slots[0] - 1) if direction < 0 else (slots[-1] + 1)
            expected = x0 + k * pitch
            if expected - pitch / 2 < 0 or expected + pitch / 2 > grey.shape[1]:
                break
            if not any(abs(g.cx - expected) < 0.25 * pitch for g in partial):
                break
            slots.insert(0, k) if direction < 0 else slots.append(k)
            unsure[k] = ["only part of a digit seen (rolling?)"]
    framed = _window_offsets(grey, [x0 + k * pitch for k in slots], x0, y0, pitch, slope, gh)
    outlines = _window_glyphs(row, glyphs)
    if framed is not None and outlines:
        # the row's glyphs are window outlines: the frame's edges must agree with their size
        off = max(
            abs((framed[1] - framed[0]) - float(np.median([g.w for g in outlines]))),
            abs((framed[3] - framed[2]) - float(np.median([g.h for g in outlines]))),
        )
        if off > OUTLINE_AGREEMENT_PX:
            doubt.append(f"window frame edges and window outlines differ by {off:.0f} px in size")
    if framed is not None:
        for _ in range(ALIGN_PASSES):
            aligned = _align_slots(grey, slots, framed, x0, y0, pitch, slope, gh)
            if aligned is None:
                break
            x0, y0, pitch, slope = aligned
            framed = _window_offsets(grey, [x0 + k * pitch for k in slots], x0, y0, pitch, slope, gh) or framed
        return _place_wheels(image, slots, unsure, framed, x0, y0, pitch, slope, gh, "window frame", doubt)
    # window edges: first grey steps outward from the digits, glyph pixels (dilated) masked out
    pad = max(1, int(round(0.08 * gh)))
    mask = np.zeros(grey.shape, bool)
    for g in glyphs:
        if abs(g.cy - (y0 + slope * g.cx)) < gh:
            mask[max(g.y - pad, 0) : g.y + g.h + pad, max(g.x - pad, 0) : g.x + g.w + pad] = True
    plane = grey.astype(np.float64)
    plane[mask] = np.nan
    glyph_half_w = float(np.median([g.w for g in row])) / 2 + pad
    lefts, rights = [], []
    for k in slots:
        cx = x0 + k * pitch
        cy = y0 + slope * cx
        band = plane[int(max(cy - 0.3 * gh, 0)) : int(cy + 0.3 * gh) + 1]
        if band.size == 0 or np.all(np.isnan(band)):
            continue
        with _quiet():
            col_profile = np.nanmedian(band, axis=0)
        left = _first_edge(col_profile, cx - glyph_half_w, cx - 0.55 * pitch)
        right = _first_edge(col_profile, cx + glyph_half_w, cx + 0.55 * pitch)
        if left is not None and right is not None:
            lefts.append(left - cx)
            rights.append(right - cx)
    tops, bottoms = _window_rows(grey, x0 + slots[0] * pitch, x0 + slots[-1] * pitch, y0, slope, gh)
    notes = []
    if lefts:
        left_off, right_off = float(np.median(lefts)), float(np.median(rights))
    else:
        left_off, right_off = -WINDOW_WIDTH_PER_PITCH * pitch / 2, WINDOW_WIDTH_PER_PITCH * pitch / 2
        notes.append("wheel window sides not found: width from the pitch")
    if tops is not None:
        top_off, bottom_off = tops, bottoms
    else:
        top_off, bottom_off = -WINDOW_HEIGHT_PER_GLYPH * gh / 2, WINDOW_HEIGHT_PER_GLYPH * gh / 2
        notes.append("wheel window top/bottom not found: height from the digits")
    offsets = (left_off, right_off, top_off, bottom_off)
    notes.append("window frame not traced: windows from the grey steps beside the digits, check their edges")
    return _place_wheels(image, slots, unsure, offsets, x0, y0, pitch, slope, gh, "digit", notes + doubt)


def _place_wheels(
    image: np.ndarray,
    slots: list[int],
    unsure: dict[int, list[str]],
    offsets: tuple[float, float, float, float],
    x0: float,
    y0: float,
    pitch: float,
    slope: float,
    gh: float,
    found_by: str,
    notes: list[str],
) -> tuple[list[ProposedElement], list[str]]:
    """One box per slot from the window's edges (left, right, top, bottom, px from the slot's
    centre on the row line); [] and a note when the windows are implausible."""
    left_off, right_off, top_off, bottom_off = offsets
    w, h = right_off - left_off, bottom_off - top_off
    cos, sin = 1 / math.sqrt(1 + slope * slope), abs(slope) / math.sqrt(1 + slope * slope)
    bw, bh = w * cos + h * sin, h * cos + w * sin  # axis-aligned box around the tilted window
    if not (w > 0.2 * pitch and 0 < h < 4 * gh and abs(slope) <= 0.11):
        return [], [f"digit row found but its windows are implausible ({w:.0f} x {h:.0f} px): no wheels proposed"]
    wheels = []
    for k in slots:
        cx = x0 + k * pitch + (left_off + right_off) / 2
        cy = y0 + slope * cx + (top_off + bottom_off) / 2
        box = (cx - bw / 2, cy - bh / 2, bw, bh)
        reasons = list(unsure[k]) + [n.split(":")[0] for n in notes]
        wheels.append(ProposedElement("wheel", _wheel_colour(image, box), box, unsure=tuple(reasons)))
    tilt = math.degrees(math.atan(slope))
    notes = [
        f"digit row: {len(wheels)} wheels, pitch {pitch:.1f} px, digit height {gh:.1f} px, tilt {tilt:+.1f} deg, "
        f"windows {w:.0f} x {h:.0f} px from the {found_by} edges",
        *notes,
    ]
    return wheels, notes


def _slot_stack(
    grey: np.ndarray, centres: list[float], y0: float, slope: float, pitch: float, half_height: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, median): the wheel slots cut out pitch-wide around their centres on the row line,
    rotated with the row, at 0.5 px steps, and their pixel-wise median (the frame is the same at
    every slot, the digits differ).  u across, v down, px from the slot centre."""
    u = np.arange(-pitch / 2, pitch / 2 + 1e-6, 0.5)
    v = np.arange(-half_height, half_height + 1e-6, 0.5)
    plane = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 0.7)
    crops = []
    for cx in centres:
        cy = y0 + slope * cx
        map_x = (cx + u[None, :] - v[:, None] * slope - 0.5).astype(np.float32)
        map_y = (cy + v[:, None] + u[None, :] * slope - 0.5).astype(np.float32)
        crops.append(cv2.remap(plane, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    return u, v, np.median(np.array(crops), axis=0)


def _align_slots(
    grey: np.ndarray,
    slots: list[int],
    offsets: tuple[float, float, float, float],
    x0: float,
    y0: float,
    pitch: float,
    slope: float,
    gh: float,
) -> tuple[float, float, float, float] | None:
    """The row's line and pitch refitted to where each slot's window frame really is: every slot
    shifted (up to ALIGN_REACH px, 0.5 px steps) to best match the median slot on a band around
    the window's edges (the digits inside differ, the frame does not).  (x0, y0, pitch, slope), or
    None (fewer than 3 slots, or the frames match less than ALIGN_MIN_GAIN better for the moves)."""
    if len(slots) < 3:
        return None
    margin = ALIGN_REACH
    u, v, template = _slot_stack(grey, [x0 + k * pitch for k in slots], y0, slope, pitch, WINDOW_SEARCH * gh)
    left, right, top, bottom = offsets
    uu, vv = np.meshgrid(u, v)
    inside_v, inside_u = (vv > top - 3) & (vv < bottom + 3), (uu > left - 3) & (uu < right + 3)
    ring = (((np.abs(uu - left) < 3) | (np.abs(uu - right) < 3)) & inside_v) | (
        ((np.abs(vv - top) < 3) | (np.abs(vv - bottom) < 3)) & inside_u
    )
    if ring.sum() < 20:
        return None
    n = int(round(2 * margin))  # samples of 0.5 px
    big_u = np.arange(u[0] - margin, u[-1] + margin + 1e-6, 0.5)
    big_v = np.arange(v[0] - margin, v[-1] + margin + 1e-6, 0.5)
    plane = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 0.7)
    found_x, found_y, gain = [], [], [0.0, 0.0]
    for k in slots:
        cx = x0 + k * pitch
        cy = y0 + slope * cx
        map_x = (cx + big_u[None, :] - big_v[:, None] * slope - 0.5).astype(np.float32)
        map_y = (cy + big_v[:, None] + big_u[None, :] * slope - 0.5).astype(np.float32)
        crop = cv2.remap(plane, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        best = (math.inf, 0, 0)
        for dy in (n,) if ALIGN_ACROSS_ONLY else range(2 * n + 1):
            for dx in range(2 * n + 1):
                window = crop[dy : dy + template.shape[0], dx : dx + template.shape[1]]
                cost = float(np.mean(np.abs(window[ring] - template[ring])))
                if cost < best[0]:
                    best = (cost, dx - n, dy - n)
        found_x.append(cx + 0.5 * best[1])
        found_y.append(cy + 0.5 * best[2])
        unmoved = crop[n : n + template.shape[0], n : n + template.shape[1]]
        gain[0] += float(np.mean(np.abs(unmoved[ring] - template[ring])))
        gain[1] += best[0]
    if gain[1] > (1.0 - ALIGN_MIN_GAIN) * gain[0]:
        return None  # the slots sit where the row says already
    ks = np.array(slots, np.float64)
    new_pitch, new_x0 = (float(q) for q in np.polyfit(ks, found_x, 1))
    new_slope, new_y0 = (float(q) for q in np.polyfit(found_x, found_y, 1))
    return new_x0, new_y0, new_pitch, new_slope


def _departure(
    profile: np.ndarray, pos: np.ndarray, start: int, stop: int, level: float, plateau: int, inner: float = 0.0
) -> float | None:
    """Walking `profile` from index `start` towards `stop`: a fall below `level` after at least
    `plateau` samples at or above it (leaving the frame), as a sub-sample position; of several,
    the last one at |pos| >= `inner` (the one nearest the slot centre outside the digit); None if none."""
    step = 1 if stop > start else -1
    run, found = 0, None
    for i in range(start, stop, step):
        if profile[i] >= level:
            run += 1
            continue
        if run >= plateau:
            j = i - step
            edge = float(pos[j] + (profile[j] - level) / (profile[j] - profile[i] + 1e-9) * (pos[i] - pos[j]))
            if abs(edge) >= inner:
                found = edge
            if inner == 0.0:
                return found
        run = 0
    return found


def _window_offsets(
    grey: np.ndarray, centres: list[float], x0: float, y0: float, pitch: float, slope: float, gh: float
) -> tuple[float, float, float, float] | None:
    """The digit window's edges (left, right, top, bottom; px from the slot centre) from the frame
    around it, on the median of all slots: sides where the separator between windows (the frame's
    grey) first falls by FRAME_STEP walking in from the middle between two slots; top and bottom
    where the window columns first differ by as much from the separator columns beside them,
    walking in from above and below the row.  None when an edge is not found or the window is
    implausible (narrower than 0.4 or wider than 0.98 pitches, lower than 1 or higher than 2.6
    digit heights)."""
    if len(centres) < 2:
        return None
    u, v, median = _slot_stack(grey, centres, y0, slope, pitch, WINDOW_SEARCH * gh)
    middle = median[np.abs(v) <= 0.4 * gh]
    profile = np.median(middle, axis=0)
    ink = float(np.percentile(middle, 5))
    centre_u, centre_v = int(np.argmin(np.abs(u))), int(np.argmin(np.abs(v)))
    frame = [float(np.median(profile[np.abs(u - side * pitch / 2) <= 1.5])) for side in (-1, 1)]
    step = [max(FRAME_STEP_MIN, FRAME_STEP * (f - ink)) for f in frame]
    left = _departure(profile, u, 0, centre_u, frame[0] - step[0], 1)
    right = _departure(profile, u, u.size - 1, centre_u, frame[1] - step[1], 1)
    if left is None or right is None:
        return None
    inner = (u > left + 0.15 * (right - left)) & (u < right - 0.15 * (right - left))
    separator = (u < left - 1.5) | (u > right + 1.5)
    if not inner.any() or not separator.any():
        return None
    difference = -np.abs(np.median(median[:, inner], axis=1) - np.median(median[:, separator], axis=1))
    threshold = -max(FRAME_STEP_MIN, FRAME_STEP_ACROSS * (float(np.mean(frame)) - ink))
    top = _departure(difference, v, 0, centre_v, threshold, FRAME_PLATEAU, DIGIT_CLEARANCE * gh)
    bottom = _departure(difference, v, v.size - 1, centre_v, threshold, FRAME_PLATEAU, DIGIT_CLEARANCE * gh)
    if top is None or bottom is None:
        return None
    if not (0.4 * pitch <= right - left <= 0.98 * pitch and 1.0 * gh <= bottom - top <= 2.6 * gh):
        return None
    return left, right, top, bottom


def _row_geometry(row: list[_Glyph]) -> tuple[float, float, float, float, np.ndarray]:
    """(pitch, x of slot 0, y0, slope, slot index per glyph) of a glyph row: centres on a line at a
    regular pitch (a missing glyph leaves a gap of whole pitches)."""
    xs, ys = np.array([g.cx for g in row]), np.array([g.cy for g in row])
    gaps = np.diff(xs)
    pitch = float(np.median(gaps / np.maximum(np.round(gaps / np.median(gaps)), 1)))
    ks = np.round((xs - xs[0]) / pitch).astype(int)
    pitch, x0 = (float(v) for v in np.polyfit(ks, xs, 1)) if len(set(ks)) > 1 else (pitch, float(xs[0]))
    slope, y0 = (float(v) for v in np.polyfit(xs, ys, 1))
    return pitch, x0, y0, slope, ks


def _window_glyphs(row: list[_Glyph], glyphs: list[_Glyph]) -> list[_Glyph]:
    """The glyphs of `row` that are wheel windows, not digits: a smaller digit-like glyph (0.45-0.9
    of its height, of the same polarity: not a hole in a digit) sits inside them, centred across."""
    out = []
    for w in row:
        for g in glyphs:
            if not 0.45 * w.h <= g.h <= 0.9 * w.h or g.w >= w.w or g.dark != w.dark:
                continue  # (a digit's hole is of the other polarity)
            inside = w.x <= g.x and g.x + g.w <= w.x + w.w and w.y <= g.y and g.y + g.h <= w.y + w.h
            if inside and abs(g.cx - w.cx) < 0.3 * w.w:
                out.append(w)
                break
    return out


def _counter_score(
    row: list[_Glyph], glyphs: list[_Glyph], text_boxes: list[tuple[float, float, float, float]] = ()
) -> float:
    """How much a glyph row looks like the register's counter rather than printed text (serial
    number, type marks): its height x slots, less when set tight like print (pitch < 0.8 glyph
    heights: wheels sit in windows with frames between them), when it has fewer than 4 or more than
    8 slots, and more when its glyphs are windows with a digit inside (at least half of them: one
    window among digits is a mixed row) or a text detector saw its glyphs as one line of text."""
    pitch, *_, ks = _row_geometry(row)
    h = float(np.median([g.h for g in row]))
    slots = int(ks.max() - ks.min()) + 1
    score = h * slots
    if pitch < COUNTER_MIN_PITCH * h:
        score *= 0.3
    if not MIN_COUNTER_WHEELS <= slots <= 8:
        score *= 0.6
    windows = len(_window_glyphs(row, glyphs))
    windows = windows if windows >= max(2, len(row) / 2) else 0  # a row of windows, not one among digits
    in_text = any(
        sum(1 for g in row if x <= g.cx <= x + w and y <= g.cy <= y + h) >= TEXT_ROW_SHARE * len(row)
        for x, y, w, h in text_boxes
    )
    return score * (1.0 + windows / len(row)) * (TEXT_ROW_BONUS if in_text else 1.0)


def _wheels_from_windows(
    image: np.ndarray, row: list[_Glyph], windows: list[_Glyph], glyphs: list[_Glyph]
) -> tuple[list[ProposedElement], list[str]]:
    """Wheels from a row of window outlines (each with a digit inside): one size for all (the
    median window), each slot at its window's centre, or on the row's line where no window was
    traced (marked unsure)."""
    pitch, x0, y0, slope, ks = _row_geometry(row)
    w = float(np.median([g.w for g in windows]))
    h = float(np.median([g.h for g in windows]))
    by_slot = {int(k): g for k, g in zip(ks, row, strict=True) if g in windows}
    # the line and pitch of the windows alone (digits and windows have their centres apart)
    sized = {k: g for k, g in by_slot.items() if abs(g.w - w) <= 2 and abs(g.h - h) <= 2}
    if len(sized) >= 2:
        k_arr = np.array(sorted(sized), np.float64)
        cxs = np.array([sized[int(k)].cx for k in k_arr])
        cys = np.array([sized[int(k)].cy for k in k_arr])
        pitch, x0 = (float(v) for v in np.polyfit(k_arr, cxs, 1))
        slope, y0 = (float(v) for v in np.polyfit(cxs, cys, 1))
    slots = list(range(int(ks.min()), int(ks.max()) + 1))
    # a rolling or glared wheel at either end: a digit-like glyph there on the row's line
    for direction in (-1, 1):
        k = (slots[0] - 1) if direction < 0 else (slots[-1] + 1)
        cx = x0 + k * pitch
        if cx - w / 2 < 0 or cx + w / 2 > image.shape[1]:
            continue
        cy = y0 + slope * cx
        if any(abs(g.cx - cx) < 0.25 * pitch and abs(g.cy - cy) < 0.3 * h and 0.3 * h <= g.h <= h for g in glyphs):
            slots.insert(0, k) if direction < 0 else slots.append(k)
    wheels = []
    for k in slots:
        g = sized.get(k) if len(sized) >= 2 else by_slot.get(k)
        if g is not None:
            cx, cy, reasons = g.cx, g.cy, []
        else:
            cx = x0 + k * pitch
            cy, reasons = y0 + slope * cx, ["window not traced: placed on the row at the pitch"]
        box = (cx - w / 2, cy - h / 2, w, h)
        wheels.append(ProposedElement("wheel", _wheel_colour(image, box), box, unsure=tuple(reasons)))
    tilt = math.degrees(math.atan(slope))
    notes = [
        f"digit row: {len(wheels)} wheels in traced windows, pitch {pitch:.1f} px, window {w:.0f} x {h:.0f} px, "
        f"tilt {tilt:+.1f} deg"
    ]
    return wheels, notes


def _window_rows(
    grey: np.ndarray, x_first: float, x_last: float, y0: float, slope: float, gh: float
) -> tuple[float | None, float | None]:
    """Top and bottom of the digit window (px from the row's centre line): walking out from the
    digits, where the grey spread across the row (digits, windows against the separators between
    them) first falls to that of the uniform frame around it; (None, None) when it never does."""
    x = np.arange(int(max(x_first, 0)), int(min(x_last, grey.shape[1] - 1)) + 1, dtype=np.float32)
    offsets = np.arange(-1.4 * gh, 1.4 * gh + 0.5, 0.5, dtype=np.float32)
    if x.size < 4:
        return None, None
    map_x = np.repeat(x[None, :], offsets.size, axis=0)
    map_y = (y0 + slope * x)[None, :] + offsets[:, None] - 0.5
    strip = cv2.remap(grey.astype(np.float32), map_x - 0.5, map_y.astype(np.float32), cv2.INTER_LINEAR)
    spread = np.subtract(*np.percentile(strip, [85, 15], axis=1))
    outside = np.abs(offsets) >= 0.9 * gh
    level = max(6.0, 2.5 * float(np.percentile(spread[outside], 10)))  # a uniform frame's spread, with noise
    found = []
    for direction in (-1, 1):
        edge = None
        for i in np.flatnonzero(direction * offsets >= 0.5 * gh)[::direction]:
            j = i - direction
            if spread[i] < level:
                t = (spread[j] - level) / max(spread[j] - spread[i], 1e-6)  # linear crossing
                edge = float(offsets[j] + t * (offsets[i] - offsets[j]))
                break
        found.append(edge)
    if found[0] is None or found[1] is None:
        return None, None
    return found[0], found[1]


def _quiet():
    import warnings

    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore", RuntimeWarning)

    class _Exit:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            ctx.__exit__(*exc)
            return False

    return _Exit()


# -- pointer dials --------------------------------------------------------------------------------
def _red_mask(image: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    mask = ((hue <= 10) | (hue >= 170)) & (sat >= 90) & (val >= 60)
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))


def find_dials(image: np.ndarray, exclude: list[ProposedElement] = ()) -> tuple[list[ProposedElement], list[str]]:
    """Red-pointer dials (unordered) and notes: red blobs with their hub near a circle's centre.

    Red blobs inside `exclude` boxes (digit wheels: red ones, or red digits) are not pointers."""
    if image.ndim != 3:
        return [], ["grey image: red pointers cannot be found"]
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    size = min(grey.shape)
    r_min, r_max = (int(f * size) for f in DIAL_RADIUS_RANGE)
    # Hough on a copy about 320 px high (cost grows with pixels x radii); the ring fit refines
    scale = min(1.0, HOUGH_SIZE_PX / size)
    small = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else grey
    circles = cv2.HoughCircles(
        cv2.GaussianBlur(small, (0, 0), 1.5 * scale),
        cv2.HOUGH_GRADIENT,
        dp=1,
        minDist=max(r_min * scale, 8),
        param1=120,
        param2=22,
        minRadius=max(int(r_min * scale), 4),
        maxRadius=int(r_max * scale),
    )
    circles = (
        [] if circles is None else [(float(c[0]) / scale, float(c[1]) / scale, float(c[2]) / scale) for c in circles[0]]
    )
    mask = _red_mask(image)
    for e in exclude:
        x, y, w, h = (int(round(v)) for v in e.box_px)
        pad_x, pad_y = 2 + w // 8, 2 + h // 3  # rolling digits show parts of their neighbours
        mask[max(y - pad_y, 0) : y + h + pad_y, max(x - pad_x, 0) : x + w + pad_x] = 0
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    tick_plane = _tick_plane(grey, _red_mask(image))
    dials: list[ProposedElement] = []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < max(20, (0.012 * size) ** 2):
            continue
        blob = (labels == i).astype(np.uint8)
        dist = cv2.distanceTransform(blob, cv2.DIST_L2, 5)
        hy, hx = np.unravel_index(int(np.argmax(dist)), dist.shape)
        hub = (hx + 0.5, hy + 0.5)
        ys, xs = np.nonzero(blob)
        reach = float(np.max(np.hypot(xs + 0.5 - hub[0], ys + 0.5 - hub[1])))
        near = [c for c in circles if math.hypot(c[0] + 0.5 - hub[0], c[1] + 0.5 - hub[1]) < HUB_MAX_OFFSET * c[2]]
        near = [c for c in near if reach < 1.1 * c[2]]
        centre, r, reasons = None, 0.0, []
        if near:
            cx, cy, r = min(near, key=lambda c: math.hypot(c[0] + 0.5 - hub[0], c[1] + 0.5 - hub[1]))
            centre = (cx + 0.5, cy + 0.5)
            ring = _fit_ring(grey, centre, r)
            if ring is not None:
                centre, r = ring
            else:
                reasons = ["dial ring not traced: centre and radius from the Hough circle"]
        if centre is None or reasons:
            # no dark ring (tick-only scales, wedge pointers): the ring of ten ticks around the pivot
            ticks = _fit_tick_ring(tick_plane, hub, r if centre is not None else reach / TICK_POINTER_REACH, r_max)
            if ticks is not None:
                (tx, ty), tr, tick_reasons = ticks
                ring_r = _ring_outside(tick_plane, (tx, ty), tr)  # a printed ring just outside the ticks?
                centre, r, reasons = (tx, ty), tr, tick_reasons
                if ring_r is not None:  # the ring's own circle fit, when it agrees
                    r, reasons = ring_r, ["dial ring: the darkest circle outside the ticks, not traced all round"]
                    ring = _fit_ring(grey, centre, ring_r)
                    if ring is not None and math.dist(ring[0], centre) < 2.0 and abs(ring[1] - ring_r) < 2.0:
                        (centre, r), reasons = ring, []
        if centre is None:
            r = reach / 0.88
            centre, reasons = hub, ["no dial circle found: centre at the pointer hub, radius from its length"]
        if r < r_min:
            continue
        dials.append(
            ProposedElement(
                "dial", "red", (centre[0] - r, centre[1] - r, 2 * r, 2 * r), centre, float(r), tuple(reasons)
            )
        )
    dials = _drop_overlapping(dials)
    return dials, [f"{len(dials)} red-pointer dials ({len(circles)} circles, {n - 1} red blobs)"]


def _tick_plane(grey: np.ndarray, red: np.ndarray) -> np.ndarray:
    """The grey image for tick search: red pointers painted over with the face's light grey
    (a wedge pointer would mask the ticks behind it), slightly blurred, float32."""
    plane = grey.copy()
    plane[cv2.dilate(red, np.ones((5, 5), np.uint8)) > 0] = int(np.percentile(grey, 75))
    return cv2.GaussianBlur(plane.astype(np.float32), (0, 0), 1.0)


def _polar(plane: np.ndarray, centre: tuple[float, float], rhos: np.ndarray, step_deg: float) -> np.ndarray:
    """Samples of `plane` on circles of radii `rhos` around `centre` (px, edge convention): rho x angle."""
    angles = np.radians(np.arange(0.0, 360.0, step_deg))
    xs = centre[0] - 0.5 + np.cos(angles)[None, :] * rhos[:, None]
    ys = centre[1] - 0.5 + np.sin(angles)[None, :] * rhos[:, None]
    map_x, map_y = xs.astype(np.float32), ys.astype(np.float32)
    return cv2.remap(plane, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _tick_strength(plane: np.ndarray, centre: tuple[float, float], rhos: np.ndarray) -> np.ndarray:
    """Per radius, the amplitude (grey levels) of the 10-fold pattern around `centre`: ten ticks
    (or digits) evenly spaced show as the 10th angular harmonic, smeared when the centre is off."""
    samples = _polar(plane, centre, rhos, 1.0)
    return np.abs(np.fft.rfft(samples, axis=1))[:, DIAL_DIVISIONS] * 2.0 / samples.shape[1]


def _fit_tick_ring(
    plane: np.ndarray, hub: tuple[float, float], radius: float, r_max: float
) -> tuple[tuple[float, float], float, list[str]] | None:
    """Centre and radius (outer ends of the ticks, px) of a ten-tick dial scale near a pointer hub.

    The centre is where the ten-fold angular pattern is sharpest (grid search, 3, 1 then 0.5 px,
    within TICK_SEARCH of the radius around the hub); the radius where that pattern fades for the
    last time outward (below half its peak: the ticks lie outside the digits); then a circle is
    fitted through the outer end of each tick found (twice; ends > 2 px off dropped).  None when
    no ten-fold pattern is found; reasons when the fit is weak (fewer than 7 tick ends, or ends far off the circle)."""
    radius = float(np.clip(radius, 4.0, r_max))
    coarse = np.arange(0.5 * radius, 1.45 * radius, 1.0, dtype=np.float64)
    rhos = np.arange(0.5 * radius, 1.45 * radius, 0.5, dtype=np.float64)
    best, centre = -1.0, np.array(hub, np.float64)
    span = TICK_SEARCH * radius
    for reach, step, radii in ((span, 3.0, coarse), (3.0, 1.0, rhos), (1.0, 0.5, rhos)):
        base, best = centre.copy(), -1.0  # scores compare within a pass (its radii)
        for dx in np.arange(-reach, reach + 1e-6, step):
            for dy in np.arange(-reach, reach + 1e-6, step):
                strength = _tick_strength(plane, (base[0] + dx, base[1] + dy), radii)
                score = float(np.mean(np.sort(strength)[-10:]))
                if score > best:
                    best, centre = score, base + (dx, dy)
    if best < TICK_MIN_AMPLITUDE:
        return None
    strength = np.convolve(_tick_strength(plane, tuple(centre), rhos), np.ones(3) / 3, mode="same")
    half = 0.5 * float(strength.max())
    i = int(np.flatnonzero(strength >= half)[-1])  # the outermost ten-fold band (ticks outside the digits)
    if i + 1 >= strength.size:
        return None
    r = float(rhos[i] + (strength[i] - half) / (strength[i] - strength[i + 1] + 1e-9) * (rhos[i + 1] - rhos[i]))
    fit, ends, spread = (float(centre[0]), float(centre[1])), 0, 0.0
    for _ in range(2):
        refined = _fit_tick_ends(plane, fit, r)
        if refined is None:
            break
        fit, r, ends, spread = refined
    reasons = []
    if ends == 0:
        reasons.append("dial from its ticks, their ends not traced: radius where the ten-fold pattern fades")
    elif ends < 7 or spread > 2.0:
        reasons.append(f"dial from its ticks, weak fit ({ends} tick ends, {spread:.1f} px off the circle)")
    if not 0.3 * radius <= r <= r_max:
        return None
    return fit, r, reasons


def _ring_outside(plane: np.ndarray, centre: tuple[float, float], tick_radius: float) -> float | None:
    """Radius (px) of a dark printed ring concentric with a tick ring, within TICK_RING_GAP of
    its radius outside it (the scale's outer circle on ringed dials), or None (ticks only)."""
    rhos = np.arange(1.02 * tick_radius, TICK_RING_GAP * tick_radius, 0.25)
    samples = _polar(plane, centre, rhos, 1.0)
    dark = np.percentile(samples, 40, axis=1)
    j = int(np.argmin(dark))
    if float(np.median(samples)) - dark[j] < RING_MIN_CONTRAST or j in (0, rhos.size - 1):
        return None
    denom = dark[j - 1] - 2 * dark[j] + dark[j + 1]
    shift = 0.5 * (dark[j - 1] - dark[j + 1]) / denom if denom > 0 else 0.0
    return float(rhos[j] + shift * (rhos[1] - rhos[0]))


def _fit_tick_ends(
    plane: np.ndarray, centre: tuple[float, float], radius: float
) -> tuple[tuple[float, float], float, int, float] | None:
    """A circle through the outer ends of the ten ticks around `centre`: each tick's angle from
    the phase of the 10th harmonic, its end where it fades to half its contrast along the ray.
    (centre, radius, ends used, largest distance of a used end from the circle) or None (< 6 ends)."""
    rhos = np.arange(0.7 * radius, 1.25 * radius, 0.25)
    step = 0.5
    samples = _polar(plane, centre, rhos, step)
    band = (rhos > 0.85 * radius) & (rhos < radius)
    harmonic = np.fft.rfft(samples[band].mean(axis=0))[DIAL_DIVISIONS]
    n_angles = samples.shape[1]
    points = []
    for k in range(DIAL_DIVISIONS):
        theta = ((math.pi - np.angle(harmonic)) / DIAL_DIVISIONS + k * 2 * math.pi / DIAL_DIVISIONS) % (2 * math.pi)
        cols = [(int(round(math.degrees(theta) / step)) + d) % n_angles for d in range(-4, 5)]
        darkest = samples[:, cols].min(axis=1)
        background = float(np.percentile(samples[:, cols], 90))
        if background - darkest.min() < TICK_MIN_CONTRAST:
            continue
        level = darkest.min() + 0.5 * (background - darkest.min())
        i = int(np.argmin(darkest))
        while i + 1 < rhos.size and darkest[i + 1] < level:
            i += 1
        if i + 1 >= rhos.size:
            continue
        rho = rhos[i] + (level - darkest[i]) / (darkest[i + 1] - darkest[i] + 1e-9) * (rhos[i + 1] - rhos[i])
        angle = math.radians(cols[int(np.argmin(samples[i, cols]))] * step)
        points.append((centre[0] + math.cos(angle) * rho, centre[1] + math.sin(angle) * rho))
    pts = np.array(points)
    keep = np.ones(len(pts), bool)
    for _ in range(2):
        if keep.sum() < 6:
            return None
        a = np.c_[pts[keep], np.ones(int(keep.sum()))]
        sol, *_ = np.linalg.lstsq(a, (pts[keep] ** 2).sum(axis=1), rcond=None)
        cx, cy = sol[0] / 2, sol[1] / 2
        r = math.sqrt(max(sol[2] + cx * cx + cy * cy, 0.0))
        off = np.abs(np.hypot(pts[:, 0] - cx, pts[:, 1] - cy) - r)
        keep = off <= 2.0
    if keep.sum() < 6:
        return None
    return (float(cx), float(cy)), float(r), int(keep.sum()), float(off[keep].max())


def _fit_ring(grey: np.ndarray, centre: tuple[float, float], radius: float) -> tuple[tuple[float, float], float] | None:
    """Centre (px, edge convention) and radius of a dial's dark outer ring near a first guess:
    the darkest radius at each of 180 angles between 0.75 and 1.3 radii, a least-squares circle
    through them, refitted without the points > 1.5 px off; None when fewer than 40 % fit."""
    angles = np.radians(np.arange(0, 360, 2.0))
    rhos = np.arange(0.75 * radius, 1.3 * radius, 0.25)
    xs = centre[0] - 0.5 + np.cos(angles)[:, None] * rhos[None, :]
    ys = centre[1] - 0.5 + np.sin(angles)[:, None] * rhos[None, :]
    samples = cv2.remap(grey.astype(np.float32), xs.astype(np.float32), ys.astype(np.float32), cv2.INTER_LINEAR)
    darkest = np.argmin(samples, axis=1)
    contrast = np.median(samples, axis=1) - samples[np.arange(angles.size), darkest]
    keep = contrast > 25.0
    px = xs[np.arange(angles.size), darkest] + 0.5
    py = ys[np.arange(angles.size), darkest] + 0.5
    for _ in range(3):
        if keep.sum() < 0.4 * angles.size:
            return None
        a = np.c_[px[keep], py[keep], np.ones(int(keep.sum()))]
        b = px[keep] ** 2 + py[keep] ** 2
        sol, *_ = np.linalg.lstsq(a, b, rcond=None)
        cx, cy = sol[0] / 2, sol[1] / 2
        r = math.sqrt(max(sol[2] + cx * cx + cy * cy, 0.0))
        keep = keep & (np.abs(np.hypot(px - cx, py - cy) - r) < 1.5)
    if keep.sum() < 0.4 * angles.size or abs(r - radius) > 0.3 * radius:
        return None
    return (float(cx), float(cy)), float(r)


def _drop_overlapping(dials: list[ProposedElement]) -> list[ProposedElement]:
    """One dial per place: of two whose centres are closer than their radius, keep the sure one."""
    kept: list[ProposedElement] = []
    for d in sorted(dials, key=lambda d: (len(d.unsure), -(d.radius_px or 0))):
        if all(math.dist(d.center_px, k.center_px) > 0.8 * max(d.radius_px, k.radius_px) for k in kept):
            kept.append(d)
    return kept


def _order_dials(dials: list[ProposedElement], image_size: tuple[int, int]) -> tuple[list[ProposedElement], str]:
    """Dials most significant first: a row reads left to right; an arc (dials around the face)
    clockwise, starting after the widest gap between neighbours."""
    if len(dials) <= 1:
        return list(dials), "one dial"
    centres = np.array([d.center_px for d in dials])
    radius = float(np.median([d.radius_px for d in dials]))
    line_spread = float(np.std(centres[:, 1]))
    if line_spread < 0.25 * radius:
        return sorted(dials, key=lambda d: d.center_px[0]), "dials in a row: ordered left to right"
    middle = np.array(image_size, np.float64) / 2
    angles = np.degrees(np.arctan2(centres[:, 1] - middle[1], centres[:, 0] - middle[0])) % 360.0
    order = np.argsort(angles)
    gaps = np.diff(np.r_[angles[order], angles[order][0] + 360.0])
    start = (int(np.argmax(gaps)) + 1) % len(order)
    order = np.r_[order[start:], order[:start]]
    return [dials[i] for i in order], "dials on an arc: ordered clockwise from the widest gap (check the x-factors)"


# -- the optional text detector (PP-OCRv4, the [ocr] extra) --------------------------------------
DET_MODEL = Path("models") / "ch_PP-OCRv4_det_infer.onnx"
TEXT_DETECTOR_MISSING = "rapidocr-onnxruntime not installed (pip install --no-deps rapidocr-onnxruntime==1.4.4)"
DET_MAX_SIDE_PX = 960  # the detector runs on a copy no larger than this (px, a multiple of 32)
DET_PIXEL_THRESHOLD = 0.3  # DB post-processing: text probability of a pixel
DET_BOX_THRESHOLD = 0.5  # ... mean probability inside a kept box
DET_UNCLIP = 1.5  # ... a box is grown by area * this / perimeter (the shrunk text kernel back to the line)
TEXT_ROW_SHARE = 0.6  # a glyph row is text when this share of its glyphs lie in one text box
TEXT_ROW_BONUS = 1.5


class TextDetector:
    """The PP-OCRv4 text detector (Apache-2.0, PaddleOCR; the ONNX file inside the
    rapidocr-onnxruntime 1.4.4 wheel, installed --no-deps and never imported) with its DB
    post-processing: threshold the probability map, one box per connected region, grown back
    by the unclip ratio.  Boxes are axis-aligned (x, y, w, h) in image px."""

    def __init__(self, model_path: str | Path | None = None, *, num_threads: int = 1) -> None:
        import onnxruntime as ort

        from meterbench.models._ocr import OCR_PACKAGE, ocr_model_path

        path = Path(model_path) if model_path else ocr_model_path(DET_MODEL)
        if path is None or not path.is_file():
            raise ConfigError(f"text detector: {path or OCR_PACKAGE}: model not found ({TEXT_DETECTOR_MISSING})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def probability(self, image: np.ndarray) -> np.ndarray:
        """The text probability map (0..1) at the detector's input size (multiples of 32 px)."""
        h, w = image.shape[:2]
        scale = min(1.0, DET_MAX_SIDE_PX / max(h, w))
        size = (max(32, int(round(w * scale / 32)) * 32), max(32, int(round(h * scale / 32)) * 32))
        bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        rgb = cv2.resize(bgr, size)[:, :, ::-1].astype(np.float32) / 255.0
        rgb = (rgb - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
        return self._session.run(None, {self._input: rgb.transpose(2, 0, 1)[None]})[0][0, 0]

    def boxes(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Text lines as (x, y, w, h) image px, top to bottom."""
        prob = self.probability(image)
        fx, fy = image.shape[1] / prob.shape[1], image.shape[0] / prob.shape[0]
        n, labels, stats, _ = cv2.connectedComponentsWithStats((prob > DET_PIXEL_THRESHOLD).astype(np.uint8))
        out = []
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if min(w, h) < 3 or float(prob[labels == i].mean()) < DET_BOX_THRESHOLD:
                continue
            grow = area * DET_UNCLIP / (2.0 * (w + h))
            out.append(((x - grow) * fx, (y - grow) * fy, (w + 2 * grow) * fx, (h + 2 * grow) * fy))
        return sorted(out, key=lambda b: (b[1], b[0]))


_DETECTOR: list[TextDetector | None] = []


def text_detector() -> TextDetector | None:
    """The shared text detector, or None when the [ocr] extra (rapidocr-onnxruntime) is absent."""
    if not _DETECTOR:
        from meterbench.models._ocr import ocr_model_path

        _DETECTOR.append(TextDetector() if ocr_model_path(DET_MODEL) is not None else None)
    return _DETECTOR[0]


# -- the layout -----------------------------------------------------------------------------------
def _name(step_l: float) -> str:
    return f"m3x{step_l / 1000:g}" if step_l >= 1000 else f"Lx{step_l:g}"


def _readable_margin_px(element: ProposedElement) -> tuple[float, float]:
    """(x, y) px an element's box must keep from the photo's edge so that the reader's crop
    (`element_crop_box`: the box plus its margin) lies inside it with the aligner's clearance."""
    x, y, _, _ = element.box_px
    crop_x, crop_y, _, _ = element_crop_box(element)  # type: ignore[arg-type]  # same fields as a RegisterElement
    slack = EDGE_CLEARANCE_PX + 0.5  # crop corners use the pixel-centre convention
    return x - crop_x + slack, y - crop_y + slack


def _inside_photo(element: ProposedElement, size: tuple[int, int]) -> bool:
    """Whether the reader can crop `element` from the photo (box plus margin inside it)."""
    x, y, bw, bh = element.box_px
    mx, my = _readable_margin_px(element)
    return x >= mx and y >= my and x + bw <= size[0] - mx and y + bh <= size[1] - my


def _clip_to_photo(wheel: ProposedElement, size: tuple[int, int]) -> ProposedElement:
    """A wheel whose box (with the reader's margin) runs beyond the photo, cut at its edge and marked
    unsure: a layout's boxes lie inside its reference photo, and a crop off the photo is never read."""
    if _inside_photo(wheel, size):
        return wheel
    x, y, bw, bh = wheel.box_px
    mx, my = _readable_margin_px(wheel)
    x0, y0 = max(x, mx), max(y, my)
    x0, y0 = min(x0, size[0] - mx - 1.0), min(y0, size[1] - my - 1.0)  # a box wholly beyond: 1 px at the edge
    x1, y1 = max(min(x + bw, size[0] - mx), x0 + 1.0), max(min(y + bh, size[1] - my), y0 + 1.0)
    return replace(wheel, box_px=(x0, y0, x1 - x0, y1 - y0), unsure=(*wheel.unsure, "box cut at the photo's edge"))


def propose_layout(
    image: np.ndarray,
    *,
    reference_image: str,
    wheel_litres: float | None = None,
    dial_litres: tuple[float, ...] | None = None,
    text: bool | None = False,
) -> LayoutProposal:
    """A layout dict for the register in `image` (coordinates in its pixels).

    `text`: use the PP-OCRv4 text detector to find the counter (True: required, ConfigError when the
    `[ocr]` extra is absent; None: when it is installed; False, the default: never; on the dev photos
    it found fewer wheels, benchmarks/propose.py).

    `wheel_litres`: litres of one step of the lowest black wheel (default 1000: m³ wheels);
    red wheels after it go on by tenths.  `dial_litres`: litres of one division of each dial
    found, coarse to fine (default: the next decades below the finest wheel).
    ConfigError when no register element is found or the options do not fit what was found.
    """
    h, w = image.shape[:2]
    detector = text_detector() if text is not False else None
    if text is True and detector is None:
        raise ConfigError(f"text detector: {TEXT_DETECTOR_MISSING}")
    text_boxes = detector.boxes(image) if detector is not None else []
    wheels, notes = find_wheels(image, text_boxes)
    notes.append(
        f"text detector (PP-OCRv4): {len(text_boxes)} text lines"
        if detector is not None
        else "text detector: not used" + ("" if text is False else f" ({TEXT_DETECTOR_MISSING})")
    )
    wheels = [_clip_to_photo(x, (w, h)) for x in wheels]
    dials, dial_notes = find_dials(image, wheels)
    inside = [d for d in dials if _inside_photo(d, (w, h))]
    if len(inside) < len(dials):
        dial_notes.append(f"{len(dials) - len(inside)} dial candidate(s) reaching beyond the photo's edge dropped")
    dials, order_note = _order_dials(inside, (w, h))
    notes += dial_notes + ([order_note] if dials else [])
    if not wheels and not dials:
        raise ConfigError(f"layout propose: {reference_image}: no register found (no digit row, no red-pointer dial)")
    blacks = [x for x in wheels if x.colour == "black"]
    if wheels and not blacks:
        notes.append("no black wheel: every wheel is red, the first is taken as the lowest m³ step")
    if wheels and blacks and wheels.index(blacks[-1]) != len(blacks) - 1:
        notes.append("red wheels before black ones: colours are unsure")
    source = (
        "given (--wheel-litres)" if wheel_litres is not None else "assumed (1 m³ per step of the lowest black wheel)"
    )
    wheel_l = DEFAULT_WHEEL_LITRES if wheel_litres is None else float(wheel_litres)
    if not (math.isfinite(wheel_l) and wheel_l > 0):
        raise ConfigError(f"--wheel-litres: expected litres > 0, got {wheel_litres!r}")
    n_black = max(len(blacks), 1)
    steps = [wheel_l * 10.0 ** (n_black - 1 - i) for i in range(len(wheels))]
    notes.append(f"wheel litres per step: {source}")
    if dial_litres is not None:
        if len(dial_litres) != len(dials):
            raise ConfigError(
                f"--dial-litres: expected {len(dials)} values (one per dial found), got {len(dial_litres)}"
            )
        if steps and not math.isclose(steps[-1] / dial_litres[0], 10.0, rel_tol=1e-9):
            raise ConfigError(
                f"--dial-litres: expected the first dial at {steps[-1] / 10:g} L per division "
                f"(a tenth of the finest wheel's {steps[-1]:g} L step), got {dial_litres[0]:g}"
            )
        dial_steps = list(dial_litres)
        notes.append("dial litres per division: given (--dial-litres)")
    else:
        first = steps[-1] / 10 if steps else 100.0
        dial_steps = [first / 10.0**i for i in range(len(dials))]
        if dials:
            notes.append(
                "dial litres per division: assumed (decades below the finest wheel; printed x-factors are not read)"
            )
    elements, names, register_elements = [], [], []
    for element, step in zip(wheels + dials, steps + dial_steps, strict=True):
        name = _name(step)
        entry: dict[str, Any] = {
            "name": name,
            "kind": element.kind,
            "colour": element.colour,
            "box_px": [round(v, 2) for v in element.box_px],
        }
        if element.kind == "dial":
            entry["center_px"] = [round(v, 2) for v in element.center_px]
            entry["radius_px"] = round(element.radius_px, 2)
        entry["litres_per_turn"] = float(f"{step * 10:.12g}")
        entry["coupling"] = "carry" if element.kind == "wheel" else "gear"
        register_elements.append(entry)
        elements.append(element)
        names.append(name)
    register = {
        "plate_size_px": [int(w), int(h)],
        "reference": {"image": reference_image},
        "elements": register_elements,
        "proposed": {
            "method": "meterbench layout propose (glyph rows, profile edges, red masks, Hough circles)",
            "notes": notes,
            "unsure": {n: list(e.unsure) for n, e in zip(names, elements, strict=True) if e.unsure},
        },
    }
    return LayoutProposal(register, elements, names, notes)


def draw_overlay(image: np.ndarray, proposal: LayoutProposal) -> np.ndarray:
    """The photo with every proposed element outlined and named: green sure, orange unsure ('?')."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    scale, thick = overlay_scale(out)
    for name, e in zip(proposal.names, proposal.elements, strict=True):
        colour = (0, 140, 255) if e.unsure else (0, 200, 0)
        x, y, w, h = e.box_px
        if e.kind == "dial":
            c = (int(round(e.center_px[0])), int(round(e.center_px[1])))
            cv2.circle(out, c, int(round(e.radius_px)), colour, thick, cv2.LINE_AA)
            cv2.drawMarker(out, c, colour, cv2.MARKER_CROSS, int(8 * scale), thick)
        else:
            cv2.rectangle(out, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), colour, thick)
        label = f"{name} {e.colour[0]}" + (" ?" if e.unsure else "")
        org = (int(round(x)), int(round(y + h + 12 * scale)))
        outlined_text(out, label, org, colour, 0.35 * scale, thick)
    n_unsure = sum(1 for e in proposal.elements if e.unsure)
    legend = f"proposed: {len(proposal.elements)} elements, {n_unsure} unsure (orange, ?): check before use"
    outlined_text(out, legend, (6, int(16 * scale)), (255, 255, 255), 0.4 * scale, thick, cv2.LINE_8)
    return out


def write_proposal(
    image_path: Path,
    out_path: Path,
    *,
    overlay_path: Path | None = None,
    wheel_litres: float | None = None,
    dial_litres: tuple[float, ...] | None = None,
    text: bool | None = False,
) -> LayoutProposal:
    """Propose a layout for the photo at `image_path`; write LAYOUT.json with the photo copied
    beside it (`<layout stem>-reference<ext>`, referenced by a relative path) and the overlay.

    Refuses to overwrite an existing layout (OutputError-free: ConfigError naming the file)."""
    image_path, out_path = Path(image_path), Path(out_path)
    image = read_image(image_path)
    if out_path.exists():
        raise ConfigError(f"{out_path}: exists already, expected a new layout file (layouts are never overwritten)")
    reference = out_path.with_name(f"{out_path.stem}-reference{image_path.suffix.lower() or '.png'}")
    proposal = propose_layout(
        image, reference_image=reference.name, wheel_litres=wheel_litres, dial_litres=dial_litres, text=text
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if reference.resolve() != image_path.resolve():
        shutil.copyfile(image_path, reference)
    import json

    out_path.write_text(json.dumps(proposal.register, indent=2) + "\n", encoding="utf-8")
    if overlay_path is not None:
        overlay_path = Path(overlay_path)
        overlay_path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(overlay_path), draw_overlay(image, proposal)):
            raise ConfigError(f"{overlay_path}: could not write the overlay image (expected a .png or .jpg path)")
    return proposal


def project_layout(register: dict, image_from_plate: np.ndarray, image_size: tuple[int, int]) -> list[dict]:
    """The elements of a plate layout mapped into an image by a homography (plate px -> image
    px, edge convention both sides): boxes as the bounding box of the mapped corners, dial
    centres mapped, radii scaled by the local area scale.  Turns an ArUco layout and one
    aligned frame into reference-image coordinates (and gives the renders' true boxes)."""
    out = []
    hom = np.asarray(image_from_plate, np.float64)
    for element in register["elements"]:
        x, y, w, h = element["box_px"]
        corners = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64)
        mapped = cv2.perspectiveTransform(corners[None], hom)[0]
        x0, y0 = mapped.min(axis=0)
        x1, y1 = mapped.max(axis=0)
        entry = dict(element, box_px=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)])
        if "center_px" in element:
            cx, cy = element["center_px"]
            c = cv2.perspectiveTransform(np.array([[[cx, cy]]], np.float64), hom)[0, 0]
            jac = _jacobian(hom, cx, cy)
            entry["center_px"] = [float(c[0]), float(c[1])]
            entry["radius_px"] = float(element["radius_px"] * math.sqrt(abs(np.linalg.det(jac))))
        out.append(entry)
    return out


def _jacobian(hom: np.ndarray, x: float, y: float) -> np.ndarray:
    d = hom[2, 0] * x + hom[2, 1] * y + hom[2, 2]
    u = (hom[0, 0] * x + hom[0, 1] * y + hom[0, 2]) / d
    v = (hom[1, 0] * x + hom[1, 1] * y + hom[1, 2]) / d
    return np.array(
        [
            [(hom[0, 0] - u * hom[2, 0]) / d, (hom[0, 1] - u * hom[2, 1]) / d],
            [(hom[1, 0] - v * hom[2, 0]) / d, (hom[1, 1] - v * hom[2, 1]) / d],
        ]
    )


def score_proposal(proposed: list[dict], truth: list[dict], tolerance_px: float = 3.0) -> list[dict]:
    """Each true element matched to the proposed one nearest its centre: found when it is of the
    same kind and name and within `tolerance_px` (wheels: every box edge; dials: the centre and
    the radius).  One dict per true element: name, found, centre and edge/radius errors (px)."""
    out = []
    for t in truth:
        tc = _box_centre(t["box_px"])
        best = min(proposed, key=lambda p: math.dist(_box_centre(p["box_px"]), tc), default=None)
        row = {"name": t["name"], "kind": t["kind"], "found": False, "centre_px": None, "error_px": None}
        if best is not None and best["kind"] == t["kind"]:
            if t["kind"] == "dial":
                centre = math.dist(best["center_px"], t["center_px"])
                error = max(centre, abs(best["radius_px"] - t["radius_px"]))
            else:
                centre = math.dist(_box_centre(best["box_px"]), tc)
                error = max(abs(a - b) for a, b in zip(_edges(best["box_px"]), _edges(t["box_px"]), strict=True))
            row.update(centre_px=round(centre, 2), error_px=round(error, 2), proposed_name=best["name"])
            row["found"] = error <= tolerance_px and best["name"] == t["name"]
        out.append(row)
    return out


def _box_centre(box) -> tuple[float, float]:
    x, y, w, h = box
    return (x + w / 2, y + h / 2)


def _edges(box) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return (x, y, x + w, y + h)
