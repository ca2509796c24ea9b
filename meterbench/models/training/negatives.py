"""Images that are NOT a digit wheel / pointer dial, made without downloading anything.

Used to measure (and, with other seeds, to train) the readers' abstention: each
must come back `readable: false`. Kinds (`NEGATIVE_KINDS`):

- noise: Gaussian, uniform or salt-and-pepper noise, grey or colour, any scale;
- flat: one colour (black, white, grey, any colour), with faint sensor noise;
- gradient: a linear ramp between two colours, any direction;
- text: letters and words (no digits) in OpenCV Hershey fonts;
- stripes: bars, checkerboards and grids;
- photo: random sub-crops of real camera crops of the *other* kind (digit-wheel
  crops for the dial reader; off-centre pieces of dial images, which hold no
  whole pointer, for the digit reader), so real texture, lighting and JPEG.

Crops come at the sizes a bench camera gives (20-90 px for wheels, 60-200 px
square for dials). Deterministic for a given seed.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

NEGATIVE_KINDS = ("noise", "flat", "gradient", "text", "stripes", "photo")
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz"
_WORDS = ("m3", "kWh", "Qn", "MID", "DN20", "Class B", "WATER", "GAS", "x0.1", "L/h", "Nr.", "CE", "LOT", "IP68")
_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)


def _size(kind: str, rng: np.random.Generator) -> tuple[int, int]:
    """(height, width) px of one crop for a reader of `kind` ('digit' tall, 'dial' square)."""
    if kind == "dial":
        side = int(rng.integers(60, 200))
        return side, side
    height = int(rng.integers(24, 90))
    return height, max(8, int(height * rng.uniform(0.45, 0.9)))


def _noise(hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    channels = 3 if rng.random() < 0.6 else 1
    cell = int(rng.choice([1, 1, 2, 3, 5]))
    small = (max(1, hw[0] // cell), max(1, hw[1] // cell), channels)
    style = rng.integers(3)
    if style == 0:
        image = rng.normal(rng.uniform(60, 200), rng.uniform(10, 80), small)
    elif style == 1:
        image = rng.uniform(0, 255, small)
    else:
        image = np.where(rng.random(small) < 0.5, 0.0, 255.0)
    image = cv2.resize(np.clip(image, 0, 255).astype(np.uint8), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)
    return image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


def _flat(hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    choice = rng.integers(4)
    colour = [np.zeros(3), np.full(3, 255.0), np.full(3, rng.uniform(30, 220)), rng.uniform(0, 255, 3)][choice]
    image = np.broadcast_to(colour, (*hw, 3)) + rng.normal(0, rng.uniform(0, 2.5), (*hw, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _gradient(hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0 : hw[0], 0 : hw[1]].astype(np.float64)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-9)
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return np.clip(a + (b - a) * ramp[:, :, None], 0, 255).astype(np.uint8)


def _text(hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    paper, ink = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if abs(paper.mean() - ink.mean()) < 60:
        ink = 255 - paper
    scale_up = 4  # draw large, then shrink: anti-aliased like a camera crop
    canvas = np.empty((hw[0] * scale_up, hw[1] * scale_up, 3), np.uint8)
    canvas[:] = paper.astype(np.uint8)
    pool = _LETTERS if rng.random() < 0.6 else _WORDS
    text = pool[int(rng.integers(len(pool)))]
    font = int(rng.choice(_FONTS))
    thickness = int(rng.integers(2, 9))
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, thickness)
    scale = rng.uniform(0.5, 1.1) * min(canvas.shape[1] / max(tw, 1), canvas.shape[0] / max(th, 1))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    x = int((canvas.shape[1] - tw) * rng.uniform(0, 1))
    y = int(th + (canvas.shape[0] - th) * rng.uniform(0, 1))
    cv2.putText(canvas, text, (x, y), font, scale, tuple(float(c) for c in ink), thickness, cv2.LINE_AA)
    return cv2.resize(canvas, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def _stripes(hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0 : hw[0], 0 : hw[1]].astype(np.float64)
    period = rng.uniform(3, max(4.0, max(hw) / 2))
    style = rng.integers(3)
    if style == 0:
        angle = rng.uniform(0, np.pi)
        mask = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period) > 0
    elif style == 1:
        mask = ((xx // period + yy // period) % 2) == 0
    else:
        mask = ((xx % period) < period / 4) | ((yy % period) < period / 4)
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return np.where(mask[:, :, None], a, b).astype(np.uint8)


def _photo_sources(kind: str, data_root: Path, count: int, part: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to `count` real images of the other kind (dial images for 'digit', digit crops for 'dial').

    `part` 0 or 1 takes every other image of the list (training draws from one
    half, the reported set from the other, so no photo is both).
    """
    folder = data_root / ("pointers" if kind == "digit" else "meterdigits")
    labels = folder / "labels.csv"
    if not labels.is_file():
        return []
    with labels.open(newline="") as f:
        paths = [row["path"] for row in csv.DictReader(f)][part::2]
    picked = rng.choice(len(paths), size=min(count, len(paths)), replace=False)
    images = [cv2.imread(str(folder / paths[i]), cv2.IMREAD_COLOR) for i in picked]
    return [image for image in images if image is not None]


def _photo(source: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A piece of a real image of the other kind: a digit crop, alone or tiled as a register strip
    (dial reader), or an off-centre piece of a dial image (digit reader: a top or bottom band, never
    the whole pointer)."""
    h, w = source.shape[:2]
    if kind == "dial":
        if rng.random() < 0.5:
            return cv2.resize(np.hstack([source] * int(rng.integers(2, 5))), (h, h), interpolation=cv2.INTER_AREA)
        return source
    ch = max(8, int(h * rng.uniform(0.3, 0.5)))
    cw = max(6, int(ch * rng.uniform(0.45, 0.9)))
    top = int(rng.integers(0, max(1, h // 8)))
    y = top if rng.random() < 0.5 else h - ch - top
    x = int(rng.integers(0, max(1, w - cw + 1)))
    return source[y : y + ch, x : x + cw]


_MAKERS = {"noise": _noise, "flat": _flat, "gradient": _gradient, "text": _text, "stripes": _stripes}


class NegativeSource:
    """An endless stream of non-`kind` images of the chosen `kinds`, in equal shares.

    'photo' needs `data_root` (the shared data folder) and is left out without
    it; `photo_part` picks which half of those photos is used (0 training, 1 report).
    """

    def __init__(
        self,
        kind: str,
        rng: np.random.Generator,
        data_root: Path | None = None,
        kinds: tuple[str, ...] = NEGATIVE_KINDS,
        photo_part: int = 1,
        n_photos: int = 400,
    ) -> None:
        unknown = set(kinds) - set(NEGATIVE_KINDS)
        if unknown:
            raise ValueError(f"kinds: expected some of {NEGATIVE_KINDS}, got {sorted(unknown)}")
        self.kind, self.rng = kind, rng
        self.sources = (
            _photo_sources(kind, data_root, n_photos, photo_part, rng) if data_root and "photo" in kinds else []
        )
        self.kinds = [k for k in kinds if k != "photo" or self.sources]
        self._count = 0

    def draw(self) -> tuple[np.ndarray, str]:
        """One BGR uint8 image and the name of its kind."""
        name = self.kinds[self._count % len(self.kinds)]
        self._count += 1
        if name == "photo":
            image = _photo(self.sources[int(self.rng.integers(len(self.sources)))], self.kind, self.rng)
        else:
            image = _MAKERS[name](_size(self.kind, self.rng), self.rng)
        return np.ascontiguousarray(image), name


def negative_crops(
    kind: str,
    count: int,
    seed: int,
    data_root: Path | None = None,
    kinds: tuple[str, ...] = NEGATIVE_KINDS,
    photo_part: int = 1,
) -> tuple[list[np.ndarray], list[str]]:
    """`count` BGR uint8 images that are not a `kind` ('digit' / 'dial') crop, and the kind of each."""
    source = NegativeSource(kind, np.random.default_rng(seed), data_root, kinds, photo_part)
    drawn = [source.draw() for _ in range(count)]
    return [image for image, _ in drawn], [name for _, name in drawn]
