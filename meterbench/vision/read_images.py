"""`meterbench read`: register volumes of photo files, one result per photo, as the bench reads them.

Each photo is aligned to the layout (ArUco markers, or the layout's reference
photo), its elements read and the carry resolved (`RegisterReader`).  A photo
that cannot be decoded, aligned or trusted gives ok False and the reason;
never a guessed volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from meterbench.errors import OutputError
from meterbench.vision._draw import outlined_text, overlay_scale
from meterbench.vision.layout import RegisterLayout
from meterbench.vision.register import CropReader, RegisterReader, RegisterReading

__all__ = ["draw_reading", "read_image_files", "reading_record"]

MAX_IMAGE_BYTES = 64 * 1024 * 1024  # a photo, not a scan


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def reading_record(path: str, reading: RegisterReading, layout: RegisterLayout) -> dict:
    """The JSON record of one photo: path, ok, volume_l (L, None unless ok), reason, and per
    element its name, raw value in [0, 10) (None when not read), confidence and readable."""
    readable = reading.element_readable
    elements = []
    for e, element in enumerate(layout.elements):
        value = float(reading.element_values[e])
        elements.append(
            {
                "name": element.name,
                "value": _finite_or_none(value),
                "confidence": round(float(reading.element_confidence[e]), 4),
                "readable": bool(readable[e]) if readable is not None and math.isfinite(value) else False,
            }
        )
    return {
        "path": path,
        "ok": bool(reading.ok),
        "volume_l": _finite_or_none(reading.volume_l) if reading.ok else None,
        "reason": reading.reason,
        "elements": elements,
    }


def _unread(path: str, reason: str, layout: RegisterLayout) -> dict:
    return {
        "path": path,
        "ok": False,
        "volume_l": None,
        "reason": reason,
        "elements": [{"name": e.name, "value": None, "confidence": 0.0, "readable": False} for e in layout.elements],
    }


def _load(path: Path) -> tuple[np.ndarray | None, str]:
    """(BGR image, "") or (None, why it cannot be used)."""
    import cv2

    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            return None, f"larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB"
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        return None, "not a readable image (PNG, JPEG, ...)"
    return image, ""


def draw_reading(image: np.ndarray, reading: RegisterReading, reader: RegisterReader) -> np.ndarray:
    """The photo with each element's crop outlined where the alignment put it and labelled with
    its reading: green readable, orange not (value '?' when not read); the volume (L) or the
    reason on top.  For checking a layout fixed by hand at a glance, and why a photo is refused."""
    import cv2

    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    scale, thick = overlay_scale(out)

    readable = reading.element_readable
    for e, (element, corners) in enumerate(zip(reader.layout.elements, reader.frame_corners(reading), strict=True)):
        if corners is None:
            continue
        value = float(reading.element_values[e])
        good = readable is not None and bool(readable[e]) and math.isfinite(value)
        colour = (0, 200, 0) if good else (0, 140, 255)
        polygon = np.round(np.asarray(corners)).astype(np.int32)
        cv2.polylines(out, [polygon], True, colour, thick, cv2.LINE_AA)
        label = f"{element.name} {value:.2f}" if math.isfinite(value) else f"{element.name} ?"
        left, top, bottom = polygon[:, 0].min(), polygon[:, 1].min(), polygon[:, 1].max()
        y = bottom + 12 * scale if e % 2 == 0 else top - 4 * scale  # neighbouring wheels: below, above
        outlined_text(out, label if good else label + " (unreadable)", (int(left), int(y)), colour, 0.35 * scale, thick)
    headline = f"{reading.volume_l:.4f} L" if reading.ok else f"not read: {reading.reason}"
    outlined_text(
        out, headline[:110], (6, int(16 * scale)), (255, 255, 255) if reading.ok else (0, 140, 255), 0.45 * scale, thick
    )
    return out


def read_image_files(
    paths: Sequence[str | Path],
    layout: RegisterLayout,
    digit_reader: CropReader,
    dial_reader: CropReader | None,
    overlay_dir: Path | None = None,
) -> list[dict]:
    """One `reading_record` per photo, in order (a photo that cannot be read: ok False, reason).
    With `overlay_dir`, each decoded photo is also drawn there (`draw_reading`) as
    `<photo stem>-read.png`."""
    import cv2

    reader = RegisterReader(layout, digit_reader, dial_reader)
    records = []
    for path in paths:
        image, problem = _load(Path(path))
        if image is None:
            records.append(_unread(str(path), f"{path}: {problem}", layout))
            continue
        reading = reader.read_frame(image)
        records.append(reading_record(str(path), reading, layout))
        if overlay_dir is not None:
            target = Path(overlay_dir) / f"{Path(path).stem}-read.png"
            if not cv2.imwrite(str(target), draw_reading(image, reading, reader)):
                raise OutputError(f"{target}: could not write the overlay image")
    return records
