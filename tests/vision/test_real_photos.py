"""Real meter photos read as `meterbench read` reads them: their hand-checked boxes as a
marker-free layout (each photo its own reference), the shipped models, and the volume and
element values compared with what a person reads on the photo (tests/data/meter_photos/
readings.json). No simulator in the loop: the data was not made by this code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import pytest

from meterbench.vision import RegisterLayout, RegisterReader

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "meter_photos"
VOLUME_TOLERANCE_L = 0.05  # half a division of the finest (x0.0001 m3) dial
VALUE_TOLERANCE = {"wheel": 0.5, "dial": 0.3}  # divisions: the element still shows the hand-read digit


def hand_layout(name: str, photo: dict) -> RegisterLayout:
    """A marker-free layout of `photo`'s hand-checked boxes, the photo itself as the reference.
    Element names say the step: m3xK = K m3 (1000 K L) a digit, LxK = K L a division."""
    elements = []
    for e in photo["elements"]:
        unit, factor = e["name"].split("x")
        step_l = float(factor) * (1000.0 if unit == "m3" else 1.0)
        element = {"name": e["name"], "kind": e["kind"], "colour": e["colour"], "box_px": e["box_px"]}
        if e["kind"] == "dial":
            element |= {"center_px": e["center_px"], "radius_px": e["radius_px"]}
        element |= {"litres_per_turn": 10 * step_l, "coupling": "carry" if e["kind"] == "wheel" else "gear"}
        elements.append(element)
    height, width = cv2.imread(str(PHOTOS / name)).shape[:2]
    register = {"plate_size_px": [width, height], "reference": {"image": name}, "elements": elements}
    return RegisterLayout.from_dict(register, base_dir=PHOTOS)


def circular_gap(a: float, b: float) -> float:
    """|a - b| on the 0-10 ring of an element (divisions)."""
    return abs((a - b + 5.0) % 10.0 - 5.0)


@pytest.fixture(scope="module")
def readings() -> dict:
    """{photo: (hand reading, RegisterReading, layout)} for every real photo."""
    from meterbench.models import DialReader, DigitReader

    boxes = json.loads((PHOTOS / "boxes.json").read_text())["photos"]
    hand = json.loads((PHOTOS / "readings.json").read_text())["photos"]
    assert set(hand) == set(boxes)
    models = DigitReader(), DialReader()
    out = {}
    for name, photo in boxes.items():
        layout = hand_layout(name, photo)
        [reading] = RegisterReader(layout, *models).read_frames([cv2.imread(str(PHOTOS / name))])
        out[name] = hand[name], reading, layout
    return out


def test_no_real_photo_gives_a_wrong_volume_and_most_are_read(readings) -> None:
    """A volume is either the one a person reads (to half a division of the finest dial) or not
    given, with the reason. Measured 2026-12-03: 8 of 10 read, 0 wrong (6 before the pointer
    geometry could confirm a torn dial reading: the CRI meter's wedge pointers). The 2 others:
    cri-2020-06-19, whose two highest wheels lie under a reflection (the digit model reads them
    readably as 2.65 and 2.74; the carry check refuses the register: "digit 3 ambiguous"), and
    zr-paulianttila-2024, whose last wheel carries half a digit late (`layout teach` learns that)."""
    read = 0
    for name, (hand, reading, _) in readings.items():
        if not reading.ok:
            assert reading.reason and math.isnan(reading.volume_l), name
            continue
        read += 1
        assert hand["volume_l"] is not None, f"{name}: read {reading.volume_l} L, a person cannot read it"
        assert abs(reading.volume_l - hand["volume_l"]) <= VOLUME_TOLERANCE_L, (name, reading.volume_l)
    assert read >= 8


def test_every_element_a_person_can_read_is_read_near_the_hand_value_when_readable(readings) -> None:
    checked = 0
    for name, (hand, reading, layout) in readings.items():
        for element, value, readable, true in zip(
            layout.elements, reading.element_values, reading.element_readable, hand["values"], strict=True
        ):
            if true is None or not readable:
                continue
            checked += 1
            assert circular_gap(float(value), true) <= VALUE_TOLERANCE[element.kind], (name, element.name, value)
    assert checked >= 85  # of the 88 elements a person can read (88 readable on 2026-12-03)


def test_an_element_a_person_cannot_read_is_not_readable(readings) -> None:
    """The two top wheels of cri-2020-06-19 lie under a reflection (hand value null): the digit
    model must not call them readable (the model shipped until 2026-12-03 read them readably as
    2.65 and 2.74; only the register's carry check refused the volume)."""
    unreadable = [
        (name, element.name, bool(readable))
        for name, (hand, reading, layout) in readings.items()
        for element, readable, true in zip(layout.elements, reading.element_readable, hand["values"], strict=True)
        if true is None
    ]
    assert len(unreadable) == 2 and not any(readable for *_, readable in unreadable), unreadable
