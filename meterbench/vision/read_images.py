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

from meterbench.vision.layout import RegisterLayout
from meterbench.vision.register import CropReader, RegisterReader, RegisterReading

__all__ = ["read_image_files", "reading_record"]

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


def read_image_files(
    paths: Sequence[str | Path],
    layout: RegisterLayout,
    digit_reader: CropReader,
    dial_reader: CropReader | None,
) -> list[dict]:
    """One `reading_record` per photo, in order (a photo that cannot be read: ok False, reason)."""
    reader = RegisterReader(layout, digit_reader, dial_reader)
    records = []
    for path in paths:
        image, problem = _load(Path(path))
        if image is None:
            records.append(_unread(str(path), f"{path}: {problem}", layout))
            continue
        records.append(reading_record(str(path), reader.read_frame(image), layout))
    return records
