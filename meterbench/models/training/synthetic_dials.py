"""Synthetic pointer sub-dial crops for training: many pointer shapes on drawn dial faces.

A crop shows a round dial face (white, cream, pale green or grey, with a
vignette), a scale (10 or 50 ticks, the digits 0-9 in a Hershey font, upright
or turned with the dial), and a red pointer at an exact continuous position
(tenths of a turn, clockwise from 12 o'clock) in one of POINTER_STYLES:

- needle: a thin line, optionally with a counterweight tail (a disc or a short
  wide bar behind the centre);
- arrow: a line with a triangular head;
- teardrop: a round red hub with a narrow triangle to the tip;
- wedge: a wide triangle, apex at the scale, base across or behind the centre;
- kite: widest part away from the centre, both ends pointed (the long end is the tip);

over a hub or cap that is absent, red, black or metallic (grey radial gradient
with a highlight), drawn with a soft shadow. Training only.
"""

from __future__ import annotations

import cv2
import numpy as np

POINTER_STYLES = ("needle", "arrow", "teardrop", "wedge", "kite")
HUB_STYLES = ("none", "red", "black", "metal")
RENDER_PX = 128  # drawn at this size, then resized (anti-aliasing) to the requested size
_FACES = [(235, 235, 235), (205, 225, 235), (215, 235, 215), (200, 200, 200), (240, 245, 250)]  # BGR


def _pointer_polygons(style: str, centre: np.ndarray, direction: np.ndarray, radius: float, rng: np.random.Generator):
    """[(polygon points, is_disc)] of one pointer: polygons as (K, 2) float arrays, discs as (cx, cy, r)."""
    normal = np.array([-direction[1], direction[0]])
    reach = radius * rng.uniform(0.6, 0.85)
    tip = centre + reach * direction
    parts: list[tuple[np.ndarray, bool]] = []
    if style in ("needle", "arrow"):
        half = radius * rng.uniform(0.015, 0.04)
        tail = centre - radius * rng.uniform(0.0, 0.3) * direction
        parts.append(
            (np.array([tail + half * normal, tip + half * normal, tip - half * normal, tail - half * normal]), False)
        )
        if style == "arrow":
            head = radius * rng.uniform(0.12, 0.22)
            base = tip - head * direction
            wing = radius * rng.uniform(0.06, 0.12)
            parts.append((np.array([tip + 0.3 * head * direction, base + wing * normal, base - wing * normal]), False))
        if rng.random() < 0.5:  # counterweight on the tail
            weight = centre - radius * rng.uniform(0.15, 0.3) * direction
            if rng.random() < 0.6:
                parts.append((np.array([*weight, radius * rng.uniform(0.05, 0.1)]), True))
            else:
                w = radius * rng.uniform(0.05, 0.1)
                parts.append(
                    (np.array([weight + w * normal + w * direction, weight + w * normal - w * direction,
                               weight - w * normal - w * direction, weight - w * normal + w * direction]), False)
                )  # fmt: skip
    elif style == "teardrop":
        hub_r = radius * rng.uniform(0.18, 0.35)
        parts.append((np.array([*centre, hub_r]), True))
        parts.append((np.array([tip, centre + hub_r * normal, centre - hub_r * normal]), False))
    elif style == "wedge":
        back = centre - radius * rng.uniform(-0.05, 0.2) * direction
        half = radius * rng.uniform(0.14, 0.35)
        parts.append((np.array([tip, back + half * normal, back - half * normal]), False))
    else:  # kite
        wide = centre + reach * rng.uniform(0.3, 0.5) * direction
        half = radius * rng.uniform(0.08, 0.16)
        tail = centre - radius * rng.uniform(0.05, 0.15) * direction
        parts.append((np.array([tip, wide + half * normal, tail, wide - half * normal]), False))
    return parts


def _draw_parts(image: np.ndarray, parts, colour) -> None:
    """Fill the pointer parts (sub-pixel: coordinates × 2**shift)."""
    shift = 4
    for shape, is_disc in parts:
        if is_disc:
            cx, cy, r = shape
            cv2.circle(image, (int(cx * 16), int(cy * 16)), int(r * 16), colour, -1, cv2.LINE_AA, shift)
        else:
            cv2.fillPoly(image, [np.round(shape * 16).astype(np.int32)], colour, cv2.LINE_AA, shift)


def _draw_face(image: np.ndarray, centre: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Dial face, ring, ticks and digits 0-9 drawn on the uint8 BGR `image`; returns it as float."""
    face = np.array(_FACES[int(rng.integers(len(_FACES)))], np.float64) * rng.uniform(0.8, 1.05)
    c = tuple(int(v) for v in centre)
    cv2.circle(image, c, int(radius), tuple(float(v) for v in face), -1, cv2.LINE_AA)
    ink = tuple(float(v) for v in rng.uniform(0, 70, 3))
    if rng.random() < 0.7:
        cv2.circle(image, c, int(radius * rng.uniform(0.9, 0.98)), ink, int(rng.integers(1, 4)), cv2.LINE_AA)
    ticks = int(rng.choice([10, 50, 0]))
    for k in range(ticks):
        a = 2 * np.pi * k / ticks
        d = np.array([np.sin(a), -np.cos(a)])
        long = k % 5 == 0 or ticks == 10
        r0 = radius * (0.78 if long else 0.84)
        p0, p1 = centre + r0 * d, centre + radius * 0.9 * d
        cv2.line(image, tuple(int(v) for v in p0), tuple(int(v) for v in p1), ink, 2 if long else 1, cv2.LINE_AA)
    if rng.random() < 0.85:
        font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_PLAIN]))
        scale = radius * rng.uniform(0.011, 0.016) * (2.0 if font == cv2.FONT_HERSHEY_PLAIN else 1.0)
        ring = radius * rng.uniform(0.58, 0.7)
        thickness = int(rng.integers(1, 3))
        for digit in range(10):
            a = 2 * np.pi * digit / 10
            (w, h), _ = cv2.getTextSize(str(digit), font, scale, thickness)
            p = centre + ring * np.array([np.sin(a), -np.cos(a)])
            org = (int(p[0] - w / 2), int(p[1] + h / 2))
            cv2.putText(image, str(digit), org, font, scale, ink, thickness, cv2.LINE_AA)
    # vignette: darker towards the rim
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    rr = np.hypot(xx - centre[0], yy - centre[1]) / radius
    return image * (1 - rng.uniform(0, 0.35) * np.clip(rr, 0, 1) ** 2)[:, :, None]


def _draw_hub(image: np.ndarray, centre: np.ndarray, radius: float, style: str, rng: np.random.Generator) -> None:
    if style == "none":
        return
    r = radius * rng.uniform(0.06, 0.2)
    c = (int(centre[0] * 16), int(centre[1] * 16))
    if style == "red":
        colour = (float(rng.uniform(20, 60)), float(rng.uniform(20, 60)), float(rng.uniform(140, 220)))
        cv2.circle(image, c, int(r * 16), colour, -1, cv2.LINE_AA, 4)
    elif style == "black":
        cv2.circle(image, c, int(r * 16), tuple(float(v) for v in rng.uniform(10, 50, 3)), -1, cv2.LINE_AA, 4)
    else:  # metal: grey radial gradient with an off-centre highlight
        yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
        light = centre + r * rng.uniform(-0.5, 0.5, 2)
        inside = np.hypot(xx - centre[0], yy - centre[1]) <= r
        glow = np.exp(-((np.hypot(xx - light[0], yy - light[1]) / (0.6 * r)) ** 2))
        grey = rng.uniform(90, 160) + rng.uniform(40, 95) * glow
        tint = rng.uniform(0.92, 1.08, 3)
        image[inside] = (grey[inside, None] * tint[None, :]).clip(0, 255)


def render_dial(
    rng: np.random.Generator, size_hw: tuple[int, int], style: str | None = None, hub: str | None = None
) -> tuple[np.ndarray, float]:
    """A random synthetic dial crop (BGR uint8, `size_hw`) and its pointer position in tenths (0..100).

    `style` / `hub` pick the pointer shape (POINTER_STYLES) and hub (HUB_STYLES); random when None.
    """
    style = style or str(rng.choice(POINTER_STYLES))
    hub = hub or str(rng.choice(HUB_STYLES))
    size = RENDER_PX
    image = np.empty((size, size, 3), np.uint8)
    image[:] = np.clip(rng.uniform(60, 200) * rng.uniform(0.85, 1.15, 3), 0, 255)  # housing around the dial
    centre = np.array([size / 2, size / 2]) + rng.normal(0, 0.02 * size, 2)
    radius = size * rng.uniform(0.44, 0.56)
    image = _draw_face(image, centre, radius, rng)
    tenths = float(rng.uniform(0, 100))
    angle = tenths / 100 * 2 * np.pi
    direction = np.array([np.sin(angle), -np.cos(angle)])
    parts = _pointer_polygons(style, centre, direction, radius, rng)
    shadow = rng.uniform(1, 4, 2) * rng.choice([-1, 1], 2)
    shadow_parts = [(np.append(s[:2] + shadow, s[2]) if disc else s + shadow, disc) for s, disc in parts]
    shade = np.zeros((size, size), np.float64)
    _draw_parts(shade, shadow_parts, 1.0)
    image *= 1 - rng.uniform(0.1, 0.4) * cv2.GaussianBlur(shade, (0, 0), 2.0)[:, :, None]
    g_b = rng.uniform(10, 70)
    red = (float(g_b * rng.uniform(0.8, 1.2)), float(g_b), float(rng.uniform(150, 240)))
    _draw_parts(image, parts, red)
    _draw_hub(image, centre, radius, hub, rng)
    out = cv2.resize(np.clip(image, 0, 255).astype(np.uint8), (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
    return out, tenths
