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

PITCH_PX = 48          # distance between digit centres on a strip
STRIP_DIGITS = [9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]   # index 1 is the '0' of value 0.0

# (ink, paper) BGR pairs
_PALETTE = [((20, 20, 20), (235, 235, 235)), ((235, 235, 235), (25, 25, 25)),
            ((40, 40, 200), (230, 230, 230)), ((230, 230, 230), (40, 40, 190)),
            ((30, 30, 120), (200, 210, 215)), ((220, 220, 220), (60, 60, 60))]
_HERSHEY = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
            cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_PLAIN]


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
    names = [p for p in sorted(font_dir.glob("*.ttf"))
             if p.name.startswith(("DejaVuSans", "DejaVuSerif", "STIXGeneral", "cmr", "cmss",
                                   "cmtt"))]
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
    strips = [_hershey_strip(font, thickness, italic) for font in _HERSHEY
              for thickness in (1, 2, 4) for italic in (False, True)]
    return strips + _truetype_strips()


def render_wheel(strips: list[np.ndarray], rng: np.random.Generator, size_hw: tuple[int, int],
                 ) -> tuple[np.ndarray, float]:
    """A random synthetic wheel crop (BGR uint8, `size_hw`) and its label in tenths."""
    strip = strips[int(rng.integers(len(strips)))]
    tenths = rng.uniform(0, 100)
    centre = (tenths / 10 + 1.5) * PITCH_PX
    half_h = 0.5 * PITCH_PX * rng.uniform(1.0, 1.45)
    top = int(round(centre - half_h))
    window = strip[top:int(round(centre + half_h)), :].astype(np.float32) / 255.0
    window = cv2.resize(window, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
    # cylinder shading: the wheel darkens towards its top and bottom edges
    y = np.linspace(-1, 1, size_hw[0])[:, None, None]
    shade = 1 - rng.uniform(0, 0.5) * y ** 2
    if rng.random() < 0.6:   # the common bench colours: black/white/red, either way round
        ink, paper = (np.array(c, np.float64) for c in _PALETTE[int(rng.integers(len(_PALETTE)))])
        ink, paper = ink * rng.uniform(0.8, 1.2), paper * rng.uniform(0.8, 1.2)
    else:
        ink, paper = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if np.abs(ink.mean() - paper.mean()) < 60:     # keep the digit legible
        ink = 255 - paper
    image = (paper + (ink - paper) * window[:, :, None]) * shade
    return np.clip(image, 0, 255).astype(np.uint8), float(tenths)
