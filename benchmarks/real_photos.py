"""Real meter photos read end to end, as a stranger would: each photo of tests/data/meter_photos
is read (as `meterbench read` does, the photo its own reference) with (a) its hand-checked boxes
and (b) the layout `layout propose` makes from it (m3 wheels, x0.1..x0.0001 m3 dials given when
four dials are found), and the volume is compared with the hand reading (readings.json).

    /tmp/venv/bin/python benchmarks/real_photos.py [--text-detector]

Per photo: read (volume within 0.05 L of the hand reading, modulo one turn of the layout's top
element when the proposal found no counter), WRONG (read, but not that), or refused (the reason).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meterbench.errors import ConfigError  # noqa: E402
from meterbench.models import DialReader, DigitReader  # noqa: E402
from meterbench.vision import RegisterLayout, RegisterReader  # noqa: E402
from meterbench.vision.propose import propose_layout  # noqa: E402
from tests.vision.test_real_photos import PHOTOS, VOLUME_TOLERANCE_L, hand_layout  # noqa: E402

DIAL_LITRES = (100.0, 10.0, 1.0, 0.1)


def proposed_layout(image, name: str, text: bool) -> RegisterLayout:
    """The proposal for the photo (the dials' litres given when it found four dials)."""
    try:
        proposal = propose_layout(image, reference_image=name, wheel_litres=1000.0, dial_litres=DIAL_LITRES, text=text)
    except ConfigError:  # not four dials: the decades below the finest wheel are assumed
        proposal = propose_layout(image, reference_image=name, wheel_litres=1000.0, text=text)
    return RegisterLayout.from_dict(proposal.register, base_dir=PHOTOS)


def outcome(reading, layout: RegisterLayout, hand_l: float | None) -> str:
    if not reading.ok:
        return f"refused: {reading.reason}"
    if hand_l is None:
        return f"WRONG: read {reading.volume_l:.2f} L where a person cannot read the register"
    turn = layout.capacity_l
    gap = abs((reading.volume_l - hand_l + turn / 2) % turn - turn / 2)
    modulo = "" if turn > hand_l else f" (modulo {turn:g} L: no counter in the layout)"
    return f"read {reading.volume_l:.2f} L{modulo}" if gap <= VOLUME_TOLERANCE_L else f"WRONG: {reading.volume_l:.2f} L"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-detector", action="store_true", help="propose with the PP-OCRv4 text detector")
    args = parser.parse_args()
    boxes = json.loads((PHOTOS / "boxes.json").read_text())["photos"]
    hand = json.loads((PHOTOS / "readings.json").read_text())["photos"]
    models = DigitReader(), DialReader()
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for name, photo in boxes.items():
        image = cv2.imread(str(PHOTOS / name))
        print(f"{name} ({photo['split']}), hand reading {hand[name]['volume_l']} L")
        for label in ("hand boxes", "proposed"):
            started = time.perf_counter()
            if label == "hand boxes":
                layout = hand_layout(name, photo)
            else:
                layout = proposed_layout(image, name, args.text_detector)
            [reading] = RegisterReader(layout, *models).read_frames([image])
            result = outcome(reading, layout, hand[name]["volume_l"])
            print(f"   {label:10s} {len(layout.elements)} elements, {time.perf_counter() - started:5.2f} s: {result}")
            tally = counts.setdefault((photo["split"], label), {"photos": 0, "read": 0, "wrong": 0})
            tally["photos"] += 1
            tally["read"] += result.startswith("read")
            tally["wrong"] += result.startswith("WRONG")
    print("split      layout      photos  read  wrong  refused")
    for (split, label), tally in sorted(counts.items()):
        refused = tally["photos"] - tally["read"] - tally["wrong"]
        print(f"{split:10s} {label:10s} {tally['photos']:6d} {tally['read']:5d} {tally['wrong']:6d} {refused:8d}")


if __name__ == "__main__":
    main()
