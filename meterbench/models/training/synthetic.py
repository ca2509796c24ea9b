"""Synthetic digit-wheel crops for training: a rolling strip of digits seen through a window.

Each font gives one grey "strip" (digits 9 0 1 ... 9 0 1 stacked at a fixed
pitch, white ink on black); a crop for any wheel position v in [0, 10) is the
window centred on v, so labels are exact and continuous. Fonts: OpenCV Hershey
fonts (always) plus TrueType fonts shipped with matplotlib (DejaVu, STIX,
Computer Modern) when Pillow and matplotlib are installed. Training only.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

PITCH_PX = 48  # distance between digit centres on a strip
STRIP_DIGITS = [9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]  # index 1 is the '0' of value 0.0

# (ink, paper) BGR pairs
_PALETTE = [
    ((20, 20, 20), (235, 235, 235)),
    ((235, 235, 235), (25, 25, 25)),
    ((40, 40, 200), (230, 230, 230)),
    ((230, 230, 230), (40, 40, 190)),
    ((30, 30, 120), (200, 210, 215)),
    ((220, 220, 220), (60, 60, 60)),
]
_HERSHEY = [
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
]


def _hershey_strip(font: int, thickness: int, italic: bool) -> np.ndarray:
    face = font | (cv2.FONT_ITALIC if italic else 0)
    (w, h), _ = cv2.getTextSize("0", face, 1.0, thickness)
    scale = 0.62 * PITCH_PX / h
    width = int(w * scale * 1.3) + 8
    strip = np.zeros((PITCH_PX * len(STRIP_DIGITS), width), np.uint8)
    for j, digit in enumerate(STRIP_DIGITS):
        (dw, dh), _ = cv2.getTextSize(str(digit), face, scale, thickness)
        org = ((width - dw) // 2, int((j + 0.5) * PITCH_PX + dh / 2))
        cv2.putText(strip, str(digit), org, face, scale, 255, thickness, cv2.LINE_AA)
    return strip


def _truetype_strips() -> list[np.ndarray]:
    try:
        import matplotlib
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return []
    font_dir = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
    names = [
        p
        for p in sorted(font_dir.glob("*.ttf"))
        if p.name.startswith(("DejaVuSans", "DejaVuSerif", "STIXGeneral", "cmr", "cmss", "cmtt"))
    ]
    strips = []
    for path in names:
        font = ImageFont.truetype(str(path), int(0.8 * PITCH_PX))
        box = font.getbbox("0")
        digit_h = box[3] - box[1]
        if digit_h <= 0:
            continue
        width = int((box[2] - box[0]) * 1.3) + 8
        canvas = Image.new("L", (width, PITCH_PX * len(STRIP_DIGITS)), 0)
        draw = ImageDraw.Draw(canvas)
        for j, digit in enumerate(STRIP_DIGITS):
            b = font.getbbox(str(digit))
            x = (width - (b[2] - b[0])) / 2 - b[0]
            y = (j + 0.5) * PITCH_PX - (b[1] + b[3]) / 2
            draw.text((x, y), str(digit), fill=255, font=font)
        strips.append(np.asarray(canvas))
    return strips


def digit_strips() -> list[np.ndarray]:
    """All font strips (grey uint8, ink = 255), Hershey variants then TrueType fonts."""
    strips = [
        _hershey_strip(font, thickness, italic)
        for font in _HERSHEY
        for thickness in (1, 2, 4)
        for italic in (False, True)
    ]
    return strips + _truetype_strips()


def _wheel_window(strip: np.ndarray, tenths: float, size_hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Ink coverage (0..1, float32) of a wheel seen through a window of `size_hw` px at `tenths`."""
    centre = (tenths / 10 + 1.5) * PITCH_PX
    half_h = 0.5 * PITCH_PX * rng.uniform(1.0, 1.45)
    window = strip[int(round(centre - half_h)) : int(round(centre + half_h)), :]
    window = window.astype(np.float32) / 255.0
    return cv2.resize(window, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)


def _colours(rng: np.random.Generator, random_share: float) -> tuple[np.ndarray, np.ndarray]:
    """(ink, paper) BGR: the common bench colours, or with `random_share` any legible pair."""
    if rng.random() >= random_share:  # black/white/red, either way round
        ink, paper = (np.array(c, np.float64) for c in _PALETTE[int(rng.integers(len(_PALETTE)))])
        ink, paper = ink * rng.uniform(0.8, 1.2), paper * rng.uniform(0.8, 1.2)
    else:
        ink, paper = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if np.abs(ink.mean() - paper.mean()) < 60:  # keep the digit legible
        ink = 255 - paper
    return ink, paper


def _paint(coverage: np.ndarray, ink: np.ndarray, paper: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Coloured wheel (float BGR) with cylinder shading: darker towards its top and bottom."""
    y = np.linspace(-1, 1, coverage.shape[0])[:, None, None]
    shade = 1 - rng.uniform(0, 0.5) * y**2
    return (paper + (ink - paper) * coverage[:, :, None]) * shade


def render_wheel(
    strips: list[np.ndarray], rng: np.random.Generator, size_hw: tuple[int, int], frame_p: float = 0.0
) -> tuple[np.ndarray, float]:
    """A random synthetic wheel crop (BGR uint8, `size_hw`) and its label in tenths.

    With probability `frame_p` the wheel is seen as a bench camera crops it: inside
    the register window's frame (dark or bright bands, nearly the same above and
    below so the window centre stays the crop centre) with slivers of the
    neighbouring wheels at the sides.
    """
    strip = strips[int(rng.integers(len(strips)))]
    tenths = float(rng.uniform(0, 100))
    height, width = size_hw
    framed = rng.random() < frame_p
    ink, paper = _colours(rng, random_share=0.2 if framed else 0.4)
    if not framed:
        image = _paint(_wheel_window(strip, tenths, size_hw, rng), ink, paper, rng)
        return np.clip(image, 0, 255).astype(np.uint8), tenths
    band = rng.uniform(0.0, 0.2) * height
    top, bottom = (max(0, int(round(band + rng.normal(0, 0.01 * height)))) for _ in range(2))
    left, right = (int(rng.uniform(0, 0.25) * width) for _ in range(2))
    inner_hw = (height - top - bottom, width - left - right)
    frame = rng.uniform(0, 60, 3) if rng.random() < 0.6 else rng.uniform(140, 255, 3)
    image = np.empty((height, width, 3), np.float64)
    image[:] = frame
    for x0, x1 in ((0, left), (width - right, width)):  # neighbouring wheels
        if x1 - x0 >= 2 and rng.random() < 0.5:
            other = strips[int(rng.integers(len(strips)))]
            neighbour = _wheel_window(other, rng.uniform(0, 100), inner_hw, rng)
            part = neighbour[:, : x1 - x0] if x0 == 0 else neighbour[:, -(x1 - x0) :]
            image[top : height - bottom, x0:x1] = _paint(part, ink, paper, rng) * rng.uniform(0.5, 1)
    image[top : height - bottom, left : width - right] = _paint(
        _wheel_window(strip, tenths, inner_hw, rng), ink, paper, rng
    )
    return np.clip(image, 0, 255).astype(np.uint8), tenths
