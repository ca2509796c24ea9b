"""The real photos of tests/data/meter_photos carry their source, licence and a checksum, and
their hand-checked boxes are well formed (benchmarks/propose.py and test_propose.py rely on them)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import cv2

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "meter_photos"
SPLITS = {"dev", "test", "test-new"}


def test_every_photo_has_its_source_licence_checksum_and_sound_boxes() -> None:
    photos = json.loads((PHOTOS / "boxes.json").read_text())["photos"]
    assert len(photos) == 10 and sum(p["split"] == "dev" for p in photos.values()) == 7
    for name, photo in photos.items():
        source = (PHOTOS / name).with_suffix(".SOURCE.md").read_text()
        licence = re.search(r"copied here as\s+`(LICENSE-[^`]+)`", source)
        assert licence and (PHOTOS / licence.group(1)).is_file(), name
        digest = re.search(r"SHA-256 of this file: `([0-9a-f]{64})`", source).group(1)
        assert hashlib.sha256((PHOTOS / name).read_bytes()).hexdigest() == digest, name
        assert photo["split"] in SPLITS, name
        height, width = cv2.imread(str(PHOTOS / name)).shape[:2]
        for element in photo["elements"]:
            x, y, w, h = element["box_px"]
            assert x >= 0 and y >= 0 and x + w <= width and y + h <= height and w > 0 and h > 0, (name, element)
            if element["kind"] == "dial":
                cx, cy = element["center_px"]
                r = element["radius_px"]
                assert abs(cx - (x + w / 2)) < 0.1 and abs(cy - (y + h / 2)) < 0.1 and abs(w - 2 * r) < 0.1
