"""Synthetic digit-wheel crops for training: a rolling strip of digits seen through a window.

Each font gives one grey "strip" (digits 9 0 1 ... 9 0 1 stacked at a fixed
pitch, white ink on black); a crop for any wheel position v in [0, 10) is the
window centred on v, so labels are exact and continuous. Fonts: OpenCV Hershey
fonts (always), drawn seven-segment digits, and with Pillow (the [train] extra)
up to FONTS_PER_FAMILY faces of each Debian font package found under
SYSTEM_FONT_DIRS (the packages of the shipped model: docs/models.md §9; free
licences, mostly OFL-1.1; used at training time only, nothing of them is
shipped) and those matplotlib ships when it is installed. The window may look at a curved drum
(rows foreshortened towards its top and bottom, shaded, with a highlight band).
Training only.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

PITCH_PX = 48  # distance between digit centres on a strip
SYSTEM_FONT_DIRS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype"))
FONTS_PER_FAMILY = 8  # font files drawn per folder of SYSTEM_FONT_DIRS (one Debian font package each)
_NOT_DIGIT_FONTS = (
    "D050000L",
    "StandardSymbols",
    "Symbol",
    "Dingbat",
    "Z003",
    "STIXIntegrals",
    "STIXNonUnicode",
    "STIXSize",
)
INK_SHARE = (0.04, 0.45)  # a strip's ink share between its outermost ink columns: hairline or boxed glyphs outside
STRIP_DIGITS = [9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]  # index 1 is the '0' of value 0.0

# (ink, paper) BGR pairs
_PALETTE = [
    ((20, 20, 20), (235, 235, 235)),
    ((235, 235, 235), (25, 25, 25)),
    ((40, 40, 200), (230, 230, 230)),
    ((230, 230, 230), (40, 40, 190)),
    ((30, 30, 120), (200, 210, 215)),
    ((220, 220, 220), (60, 60, 60)),
    ((200, 200, 205), (40, 40, 110)),  # white on dim red (power meters)
    ((150, 150, 150), (70, 70, 70)),  # low-contrast grey on grey
    ((25, 25, 25), (170, 215, 230)),  # black on cream
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
        tile = np.zeros((2 * PITCH_PX, width), np.uint8)
        cv2.putText(tile, str(digit), ((width - dw) // 2, PITCH_PX + dh // 2), face, scale, 255, thickness, cv2.LINE_AA)
        rows = np.flatnonzero(tile.max(axis=1) > 0)
        shift = int(round(PITCH_PX - (rows[0] + rows[-1] + 1) / 2))  # centre the ink (Hershey glyphs sit low)
        tile = np.roll(tile, shift, axis=0)[PITCH_PX // 2 : PITCH_PX // 2 + PITCH_PX]
        strip[j * PITCH_PX : (j + 1) * PITCH_PX] = np.maximum(strip[j * PITCH_PX : (j + 1) * PITCH_PX], tile)
    return strip


def _spread(items: list, most: int) -> list:
    """At most `most` of `items`, evenly spread over the (sorted) list."""
    if len(items) <= most:
        return items
    return [items[int(i * len(items) / most)] for i in range(most)]


def _font_families() -> dict[str, list[Path]]:
    """TrueType/OpenType font files with digits by family: up to FONTS_PER_FAMILY per font package
    folder of SYSTEM_FONT_DIRS (so a package with 50 weights does not outweigh one with a single
    face), then matplotlib's when it is installed."""
    families: dict[str, list[Path]] = {}
    for root in SYSTEM_FONT_DIRS:
        for family in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            found = [p for p in sorted(family.rglob("*")) if p.suffix in (".ttf", ".otf")]
            found = [p for p in found if not any(bad in p.name for bad in _NOT_DIGIT_FONTS)]
            if found:
                families[f"{root.name}/{family.name}"] = _spread(found, FONTS_PER_FAMILY)
    try:
        import matplotlib

        mpl_dir = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
        prefixes = ("DejaVuSans", "DejaVuSerif", "STIXGeneral", "cmr", "cmss", "cmtt")
        families["matplotlib"] = [p for p in sorted(mpl_dir.glob("*.ttf")) if p.name.startswith(prefixes)]
    except ImportError:
        pass
    return families


def _font_files() -> list[Path]:
    """Every font file _font_families draws, in one list."""
    return [path for files in _font_families().values() for path in files]


def font_inventory() -> dict[str, int]:
    """Font files drawn per family folder (Debian font package), for a model's sidecar: which fonts
    a training run saw depends on the packages installed."""
    return {family: len(files) for family, files in _font_families().items()}


def _ink(font, digit: str, stroke: int) -> np.ndarray:
    """The digit's ink (grey uint8) cropped to its bounding box; empty when the font draws none.
    Measured on the pixels: some fonts' getbbox is the line box, the same for every digit."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (3 * font.size, 3 * font.size), 0)
    ImageDraw.Draw(canvas).text(
        (font.size, font.size // 2), digit, fill=255, font=font, stroke_width=stroke, stroke_fill=255
    )
    ink = np.asarray(canvas)
    rows, columns = np.flatnonzero(ink.max(axis=1)), np.flatnonzero(ink.max(axis=0))
    return ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1] if len(rows) else ink[:0, :0]


def _truetype_strip(path: Path, height_share: float, stroke: int, condense: float) -> np.ndarray | None:
    """One font's strip: digit height `height_share` of the pitch, `stroke` px bolder, width × `condense`;
    each digit's ink centred on its place."""
    from PIL import ImageFont

    zero = _ink(ImageFont.truetype(str(path), 64), "0", 0)
    if zero.shape[0] == 0:
        return None
    font = ImageFont.truetype(str(path), max(8, int(64 * height_share * PITCH_PX / zero.shape[0])))
    inks = {d: _ink(font, str(d), stroke) for d in range(10)}
    if inks[8].shape[0] == 0 or np.array_equal(inks[8], inks[1]):
        return None  # no digit glyphs (the same "missing" box for every digit)
    width = int(max(ink.shape[1] for ink in inks.values()) * 1.3) + 8
    canvas = np.zeros((PITCH_PX * len(STRIP_DIGITS), width), np.uint8)
    for j, digit in enumerate(STRIP_DIGITS):
        ink = inks[digit][:PITCH_PX]
        top, left = int(round((j + 0.5) * PITCH_PX - ink.shape[0] / 2)), (width - ink.shape[1]) // 2
        canvas[top : top + ink.shape[0], left : left + ink.shape[1]] = np.maximum(
            canvas[top : top + ink.shape[0], left : left + ink.shape[1]], ink
        )
    columns = np.flatnonzero(canvas.max(axis=0) > 127)
    if not INK_SHARE[0] <= canvas[:, columns[0] : columns[-1] + 1].mean() / 255 <= INK_SHARE[1]:
        return None  # hairline weights vanish at 20 px; inverted ("boxed") digits are no wheel print
    return cv2.resize(canvas, (max(8, int(width * condense)), canvas.shape[0]), interpolation=cv2.INTER_AREA)


def _truetype_strips() -> list[np.ndarray]:
    """Two variants per font file (plain; taller, bolder and condensed); [] without Pillow."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        return []
    strips = []
    for path in _font_files():
        for height_share, stroke, condense in ((0.62, 0, 1.0), (0.72, 2, 0.8)):
            strip = _truetype_strip(path, height_share, stroke, condense)
            if strip is not None:
                strips.append(strip)
    return strips


_SEGMENTS = {  # which of the segments a b c d e f g each digit lights
    0: "abcdef", 1: "bc", 2: "abdeg", 3: "abcdg", 4: "bcfg", 5: "acdfg",
    6: "acdefg", 7: "abc", 8: "abcdefg", 9: "abcdfg",
}  # fmt: skip


def _seven_segment_strip(thickness: int, slant: float) -> np.ndarray:
    """Seven-segment digits (LCD registers, some printed wheels), `slant` px of italic lean."""
    digit_w, digit_h = 22, 30
    ends = {  # segment end points in a unit digit box (x right, y down)
        "a": ((0, 0), (1, 0)), "b": ((1, 0), (1, 0.5)), "c": ((1, 0.5), (1, 1)), "d": ((0, 1), (1, 1)),
        "e": ((0, 0.5), (0, 1)), "f": ((0, 0), (0, 0.5)), "g": ((0, 0.5), (1, 0.5)),
    }  # fmt: skip
    width = digit_w + 2 * thickness + int(abs(slant)) + 16
    strip = np.zeros((PITCH_PX * len(STRIP_DIGITS), width), np.uint8)
    for j, digit in enumerate(STRIP_DIGITS):
        top, left = (j + 0.5) * PITCH_PX - digit_h / 2, (width - digit_w) / 2
        for seg in _SEGMENTS[digit]:
            (x0, y0), (x1, y1) = ends[seg]
            p0 = (int(left + x0 * digit_w + slant * (0.5 - y0)), int(top + y0 * digit_h))
            p1 = (int(left + x1 * digit_w + slant * (0.5 - y1)), int(top + y1 * digit_h))
            cv2.line(strip, p0, p1, 255, thickness, cv2.LINE_AA)
    return strip


def digit_strips() -> list[np.ndarray]:
    """All font strips (grey uint8, ink = 255), Hershey variants then TrueType fonts."""
    strips = [
        _hershey_strip(font, thickness, italic)
        for font in _HERSHEY
        for thickness in (1, 2, 4)
        for italic in (False, True)
    ]
    segments = [_seven_segment_strip(t, slant) for t in (3, 5) for slant in (0.0, 5.0)]
    return strips + segments + _truetype_strips()


def _wheel_window(strip: np.ndarray, tenths: float, size_hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Ink coverage (0..1, float32) of a wheel seen through a window of `size_hw` px at `tenths`.

    Half the windows look at a curved drum: output row y (-1..1) shows the strip at
    arc position asin(y·sin φ)/φ for a visible half-angle φ up to 1.2 rad, so digits
    are foreshortened towards the window's top and bottom; the window's width
    around the digit varies too.
    """
    centre = (tenths / 10 + 1.5) * PITCH_PX
    half_h = 0.5 * PITCH_PX * rng.uniform(1.0, 1.45)
    height, width = size_hw
    y = (np.arange(height) + 0.5) / height * 2 - 1
    if rng.random() < 0.5:
        half_angle = rng.uniform(0.3, 1.2)
        y = np.arcsin(y * np.sin(half_angle)) / half_angle
    half_w = 0.5 * strip.shape[1] * rng.uniform(0.8, 1.25)
    x = ((np.arange(width) + 0.5) / width * 2 - 1) * half_w + strip.shape[1] / 2
    map_x = np.broadcast_to(x[None, :], (height, width)).astype(np.float32)
    map_y = np.broadcast_to((centre + y * half_h)[:, None], (height, width)).astype(np.float32)
    source = cv2.GaussianBlur(strip, (0, 0), 0.5 * strip.shape[1] / width) if strip.shape[1] > 1.5 * width else strip
    window = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return window.astype(np.float32) / 255.0


def _colours(rng: np.random.Generator, random_share: float) -> tuple[np.ndarray, np.ndarray]:
    """(ink, paper) BGR: the common bench colours, or with `random_share` any legible pair."""
    if rng.random() >= random_share:  # black/white/red, either way round
        ink, paper = (np.array(c, np.float64) for c in _PALETTE[int(rng.integers(len(_PALETTE)))])
        ink, paper = ink * rng.uniform(0.8, 1.2), paper * rng.uniform(0.8, 1.2)
    else:
        ink, paper = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if np.abs(ink.mean() - paper.mean()) < rng.choice([35.0, 60.0]):  # keep the digit legible
        ink = 255 - paper
    return ink, paper


def _paint(coverage: np.ndarray, ink: np.ndarray, paper: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Coloured wheel (float BGR) with cylinder shading: darker towards its top and bottom, and
    sometimes a horizontal highlight band (a glossy drum under a lamp)."""
    y = np.linspace(-1, 1, coverage.shape[0])[:, None, None]
    shade = 1 - rng.uniform(0, 0.7) * y**2
    if rng.random() < 0.25:
        shade = shade + rng.uniform(0.1, 0.6) * np.exp(-((y - rng.uniform(-0.8, 0.8)) ** 2) / (2 * 0.15**2))
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
