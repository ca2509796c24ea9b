"""Register layout of a water meter and its forward mechanism.

The layout says where each digit wheel and pointer dial sits on the rectified
register plate (plate frame: px, origin top-left, x right, y down) and how many
litres one full turn of it is.  `positions_from_volume` is the exact forward
model of the gear train: the position of every element, in [0, 10), for a given
register volume (L).  The simulator renders frames from it; the reader's carry
logic inverts it.  See docs/INTERFACES.md, "Register layout".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from meterbench.errors import ConfigError

__all__ = [
    "MarkerSpec",
    "ReferenceImage",
    "RegisterElement",
    "RegisterLayout",
    "default_register_layout",
    "layout_file_register",
    "positions_from_volume",
    "volume_from_positions",
]

ELEMENT_KINDS = ("wheel", "dial")
ELEMENT_COLOURS = ("black", "red")
COUPLINGS = ("carry", "gear")
ARUCO_DICTIONARIES = ("DICT_4X4_50",)


def _fail(where: str, expected: str, got: Any) -> ConfigError:
    """A layout file (or a session's `register` object) has a bad field: one line naming it."""
    return ConfigError(f"register layout: {where}: expected {expected}, got {got!r}")


def _number(value: Any, where: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(where, "a finite number", value)
    if positive and value <= 0:
        raise _fail(where, "a number > 0", value)
    return float(value)


def _numbers(value: Any, where: str, count: int, *, positive: bool = False) -> tuple[float, ...]:
    if not isinstance(value, list | tuple) or len(value) != count:
        raise _fail(where, f"a list of {count} numbers", value)
    return tuple(_number(v, f"{where}[{i}]", positive=positive) for i, v in enumerate(value))


def _choice(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _fail(where, " or ".join(repr(a) for a in allowed), value)
    return value


def _mapping(value: Any, where: str, keys: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise _fail(where, "an object", value)
    missing = [k for k in keys if k not in value]
    if missing:
        raise _fail(where, f"an object with key {missing[0]!r}", sorted(value))
    return value


@dataclass(frozen=True)
class MarkerSpec:
    """One ArUco marker printed on the plate: its id and 4 corners (px, plate frame).

    Corners are in OpenCV order: top-left, top-right, bottom-right, bottom-left.
    """

    id: int
    corners_px: tuple[tuple[float, float], ...]

    @classmethod
    def from_dict(cls, data: Any, where: str) -> MarkerSpec:
        data = _mapping(data, where, ("id", "corners_px"))
        marker_id = data["id"]
        if isinstance(marker_id, bool) or not isinstance(marker_id, int) or marker_id < 0:
            raise _fail(f"{where}.id", "an integer >= 0", marker_id)
        corners = data["corners_px"]
        if not isinstance(corners, list | tuple) or len(corners) != 4:
            raise _fail(f"{where}.corners_px", "4 corners [x, y]", corners)
        points = tuple(_numbers(c, f"{where}.corners_px[{i}]", 2) for i, c in enumerate(corners))
        return cls(id=marker_id, corners_px=points)

    def to_dict(self) -> dict:
        return {"id": self.id, "corners_px": [list(c) for c in self.corners_px]}


@dataclass(frozen=True)
class ReferenceImage:
    """The reference photo a marker-free layout is drawn on (plate = that image).

    `image` is the path as written in the layout (relative to the layout file or
    to the session folder); `pixels` the decoded BGR uint8 image once loaded
    (None for a layout only checked for its structure); `source` names where it
    was read from, for messages.
    """

    image: str
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)
    source: str = ""

    def to_dict(self) -> dict:
        return {"image": self.image}


def decode_reference_image(data: bytes, where: str, source: str) -> np.ndarray:
    """Decode an encoded reference image (PNG, JPEG, ...) to BGR uint8; ConfigError naming `source`."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise _fail(where, "a readable image file (PNG or JPEG)", f"{source}: cannot be decoded")
    return image


def read_reference_file(path: Path, where: str) -> np.ndarray:
    """Read and decode the reference image file `path`; ConfigError naming it and the field."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(where, "a readable image file", f"{path}: {exc.strerror or exc}") from None
    return decode_reference_image(data, where, str(path))


@dataclass(frozen=True)
class RegisterElement:
    """One digit wheel or pointer dial of the register.

    `box_px` (x, y, w, h) is the crop for the reader (wheel window or whole dial);
    dials also give `center_px` and `radius_px` (px, plate frame).
    `litres_per_turn` is the volume of one full turn (L); `coupling` is "carry"
    (odometer wheel, moves while the next lower element passes 9 -> 0) or "gear"
    (turns continuously).
    """

    name: str
    kind: str
    colour: str
    box_px: tuple[float, float, float, float]
    litres_per_turn: float
    coupling: str
    center_px: tuple[float, float] | None = None
    radius_px: float | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RegisterElement:
        data = _mapping(data, where, ("name", "kind", "colour", "box_px", "litres_per_turn", "coupling"))
        name = data["name"]
        if not isinstance(name, str) or not name:
            raise _fail(f"{where}.name", "a non-empty string", name)
        kind = _choice(data["kind"], f"{where}.kind", ELEMENT_KINDS)
        box = _numbers(data["box_px"], f"{where}.box_px", 4)
        if box[2] <= 0 or box[3] <= 0:
            raise _fail(f"{where}.box_px", "[x, y, w, h] with w > 0 and h > 0", data["box_px"])
        center = radius = None
        if kind == "dial":
            if "center_px" not in data or "radius_px" not in data:
                raise _fail(where, "a dial with 'center_px' and 'radius_px'", sorted(data))
            center = _numbers(data["center_px"], f"{where}.center_px", 2)
            radius = _number(data["radius_px"], f"{where}.radius_px", positive=True)
        return cls(
            name=name,
            kind=kind,
            colour=_choice(data["colour"], f"{where}.colour", ELEMENT_COLOURS),
            box_px=box,  # type: ignore[arg-type]
            litres_per_turn=_number(data["litres_per_turn"], f"{where}.litres_per_turn", positive=True),
            coupling=_choice(data["coupling"], f"{where}.coupling", COUPLINGS),
            center_px=center,  # type: ignore[arg-type]
            radius_px=radius,
        )

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "colour": self.colour, "box_px": list(self.box_px)}
        if self.center_px is not None:
            out["center_px"] = list(self.center_px)
            out["radius_px"] = self.radius_px
        out["litres_per_turn"] = self.litres_per_turn
        out["coupling"] = self.coupling
        return out


@dataclass(frozen=True)
class RegisterLayout:
    """Register plate: size (px), how it is found, and elements, most significant first.

    The plate is found either by ArUco markers printed on it (`markers`) or, on
    a meter without fiducials, by a reference photo of the fixed camera
    (`reference`; plate = that image, every box in its pixels).  Exactly one
    of the two is set.  Every element turns exactly 10× slower than the next
    lower one (`litres_per_turn` ratio 10), so register values are exact
    decimal odometers.
    """

    plate_size_px: tuple[int, int]
    marker_dictionary: str
    markers: tuple[MarkerSpec, ...]
    elements: tuple[RegisterElement, ...]
    reference: ReferenceImage | None = None

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        base_dir: str | Path | None = None,
        read_image: Callable[[str], np.ndarray] | None = None,
    ) -> RegisterLayout:
        """Validate a `register` object; raises ConfigError (a ValueError) naming the bad field.

        A `reference` image is loaded when `read_image` (relative path -> BGR
        image, e.g. a session's safe reader) or `base_dir` (the folder of the
        layout file) is given, and must then be `plate_size_px` large;
        without either only its path is checked.
        """
        data = _mapping(data, "register", ("plate_size_px", "elements"))
        size = _numbers(data["plate_size_px"], "register.plate_size_px", 2, positive=True)
        if any(s != int(s) for s in size):
            raise _fail("register.plate_size_px", "2 integers", data["plate_size_px"])
        plate_size = (int(size[0]), int(size[1]))
        has_markers, has_reference = "markers" in data, "reference" in data
        if has_markers == has_reference:
            got = "both" if has_markers else f"neither (keys: {', '.join(sorted(map(str, data)))})"
            raise ConfigError(f"register layout: register: expected either 'markers' or 'reference', got {got}")
        dictionary, marker_specs, reference = "", (), None
        if has_markers:
            dictionary, marker_specs = _markers(data["markers"])
        else:
            reference = _reference(data["reference"], plate_size, base_dir, read_image)
        elements = data["elements"]
        if not isinstance(elements, list) or len(elements) < 1:
            raise _fail("register.elements", "a non-empty list", elements)
        element_specs = tuple(RegisterElement.from_dict(e, f"register.elements[{i}]") for i, e in enumerate(elements))
        _check_decades(element_specs)
        if reference is not None:  # the plate is the photo: an element beyond its edge cannot be read
            _check_inside(element_specs, plate_size)
        return cls(
            plate_size_px=plate_size,
            marker_dictionary=dictionary,
            markers=marker_specs,
            elements=element_specs,
            reference=reference,
        )

    @classmethod
    def load(cls, path: str | Path) -> RegisterLayout:
        """Read a layout file (JSON: one `register` object); a reference image is
        resolved relative to the file.  ConfigError naming the file and field."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not a JSON layout file: {exc}") from None
        try:
            return cls.from_dict(data, base_dir=path.parent)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"plate_size_px": list(self.plate_size_px)}
        if self.reference is not None:
            out["reference"] = self.reference.to_dict()
        else:
            out["markers"] = {"dictionary": self.marker_dictionary, "items": [m.to_dict() for m in self.markers]}
        out["elements"] = [e.to_dict() for e in self.elements]
        return out

    def with_reference_image(self, image: str) -> RegisterLayout:
        """The same layout with its reference image path rewritten (the pixels kept), e.g. as a
        session copies the image to cameras/<camera_id>-reference.png."""
        if self.reference is None:
            raise ValueError("with_reference_image: the layout has markers, not a reference image")
        return replace(self, reference=replace(self.reference, image=image))

    @property
    def finest(self) -> RegisterElement:
        """The least significant element (the last one)."""
        return self.elements[-1]

    @property
    def capacity_l(self) -> float:
        """Volume after which the register wraps to zero (L): one turn of the top element."""
        return self.elements[0].litres_per_turn


def layout_file_register(path: str | Path, image: str) -> tuple[dict, np.ndarray | None]:
    """The `register` object a session records for the layout file `path`, and for a marker-free
    layout its reference photo: the photo's path rewritten to `image` (the session's copy of it,
    e.g. cameras/<camera_id>-reference.png) and a `taught` block (`layout teach`) kept as written,
    so that the verification applies its offsets.  ConfigError naming the file and field."""
    layout = RegisterLayout.load(path)
    if layout.reference is None:
        register, photo = layout.to_dict(), None
    else:
        register, photo = layout.with_reference_image(image).to_dict(), layout.reference.pixels
    taught = json.loads(Path(path).read_text(encoding="utf-8")).get("taught")
    if taught is not None:
        register["taught"] = taught
    return register, photo


def _markers(value: Any) -> tuple[str, tuple[MarkerSpec, ...]]:
    markers = _mapping(value, "register.markers", ("dictionary", "items"))
    dictionary = _choice(markers["dictionary"], "register.markers.dictionary", ARUCO_DICTIONARIES)
    items = markers["items"]
    if not isinstance(items, list) or len(items) < 1:
        raise _fail("register.markers.items", "a non-empty list", items)
    marker_specs = tuple(MarkerSpec.from_dict(m, f"register.markers.items[{i}]") for i, m in enumerate(items))
    if len({m.id for m in marker_specs}) != len(marker_specs):
        raise _fail("register.markers.items", "distinct marker ids", [m.id for m in marker_specs])
    return dictionary, marker_specs


def _reference(
    value: Any,
    plate_size: tuple[int, int],
    base_dir: str | Path | None,
    read_image: Callable[[str], np.ndarray] | None,
) -> ReferenceImage:
    """The `reference` object, its image loaded (and checked against plate_size_px) when it can be."""
    where = "register.reference.image"
    image = _mapping(value, "register.reference", ("image",))["image"]
    if not isinstance(image, str) or not image.strip():
        raise _fail(where, "a path to an image file", image)
    if read_image is None and base_dir is None:
        return ReferenceImage(image)
    if read_image is not None:
        source, pixels = image, read_image(image)
    else:
        path = Path(image) if Path(image).is_absolute() else Path(base_dir) / image
        source, pixels = str(path), read_reference_file(path, where)
    if not isinstance(pixels, np.ndarray) or pixels.ndim not in (2, 3) or pixels.dtype != np.uint8:
        raise _fail(where, "an 8-bit image", f"{source}: {getattr(pixels, 'shape', type(pixels))}")
    height, width = pixels.shape[:2]
    if (width, height) != plate_size:
        raise _fail(
            where,
            f"an image of plate_size_px {plate_size[0]}×{plate_size[1]} px",
            f"{source}: {width}×{height} px",
        )
    if pixels.ndim == 2:
        import cv2

        pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    pixels.setflags(write=False)
    return ReferenceImage(image, pixels, source)


def _check_inside(elements: tuple[RegisterElement, ...], plate_size: tuple[int, int]) -> None:
    """Every element box of a marker-free layout lies inside its reference photo (px)."""
    width, height = plate_size
    for i, element in enumerate(elements):
        x, y, w, h = element.box_px
        if x < 0 or y < 0 or x + w > width or y + h > height:
            raise _fail(
                f"register.elements[{i}].box_px",
                f"a box inside the reference photo ({width}×{height} px) for {element.name!r}",
                list(element.box_px),
            )


def _check_decades(elements: tuple[RegisterElement, ...]) -> None:
    names = [e.name for e in elements]
    if len(set(names)) != len(names):
        raise _fail("register.elements", "distinct element names", names)
    for i in range(1, len(elements)):
        ratio = elements[i - 1].litres_per_turn / elements[i].litres_per_turn
        if not math.isclose(ratio, 10.0, rel_tol=1e-9):
            raise _fail(
                f"register.elements[{i - 1}].litres_per_turn",
                f"10 x the next element's ({elements[i].litres_per_turn:g} L)",
                elements[i - 1].litres_per_turn,
            )


def _marker_items(plate_w: int, plate_h: int, size: int, margin: int) -> list[dict]:
    origins = [
        (margin, margin),
        (plate_w - margin - size, margin),
        (plate_w - margin - size, plate_h - margin - size),
        (margin, plate_h - margin - size),
    ]
    return [
        {"id": i, "corners_px": [[x, y], [x + size, y], [x + size, y + size], [x, y + size]]}
        for i, (x, y) in enumerate(origins)
    ]


_BLACK_WHEELS = (("m3x10000", 1e8), ("m3x1000", 1e7), ("m3x100", 1e6), ("m3x10", 1e5), ("m3x1", 1e4))
_FRACTIONS = (("Lx100", 1000.0), ("Lx10", 100.0), ("Lx1", 10.0), ("Lx0.1", 1.0))
#: A test-bench register's extra pointer: 0.1 L per turn, 0.01 L per division.
_FINE_DIAL = ("Lx0.01", 0.1)
REGISTER_VARIANTS = ("dials", "wheels", "fine", "fine-wheels")
WHEEL_SIZE_PX = (36, 64)
WHEEL_PITCH_PX = 44
DIAL_RADIUS_PX = 46


def _wheel(name: str, colour: str, litres_per_turn: float, x: int, y: int) -> dict:
    w, h = WHEEL_SIZE_PX
    return {
        "name": name,
        "kind": "wheel",
        "colour": colour,
        "box_px": [x, y, w, h],
        "litres_per_turn": litres_per_turn,
        "coupling": "carry",
    }


def _dial(name: str, litres_per_turn: float, cx: int, cy: int) -> dict:
    r = DIAL_RADIUS_PX
    return {
        "name": name,
        "kind": "dial",
        "colour": "red",
        "box_px": [cx - r, cy - r, 2 * r, 2 * r],
        "center_px": [cx, cy],
        "radius_px": r,
        "litres_per_turn": litres_per_turn,
        "coupling": "gear",
    }


def default_register_layout(variant: str = "dials") -> dict:
    """A DN15-style register as a `register` dict (plate 640×260 px, 4 corner markers).

    "dials": 5 black m³ wheels + 4 red pointer dials of 1000, 100, 10 and 1 L per
    turn (finest: 0.1 L per division).  "wheels": 5 black m³ wheels + 3 red
    wheels (100, 10, 1 L per digit) + 1 red dial of 1 L per turn.  "fine" and
    "fine-wheels": the same plus a test dial of 0.1 L per turn (0.01 L per
    division), as registers made for flying-start bench tests carry.
    """
    plate_w, plate_h = 640, 260
    wheel_y, dial_cy = 34, 178
    if variant not in REGISTER_VARIANTS:
        raise ConfigError(
            f"default_register_layout: variant: expected one of {', '.join(REGISTER_VARIANTS)}, got {variant!r}"
        )
    fine = variant.startswith("fine")
    if variant in ("dials", "fine"):
        x0 = (plate_w - 5 * WHEEL_PITCH_PX) // 2 + (WHEEL_PITCH_PX - WHEEL_SIZE_PX[0]) // 2
        elements = [
            _wheel(n, "black", lpt, x0 + i * WHEEL_PITCH_PX, wheel_y) for i, (n, lpt) in enumerate(_BLACK_WHEELS)
        ]
        dials = _FRACTIONS + ((_FINE_DIAL,) if fine else ())
        pitch = 120 if not fine else 100
        first_x = plate_w // 2 - pitch * (len(dials) - 1) // 2
        elements += [_dial(n, lpt, first_x + i * pitch, dial_cy) for i, (n, lpt) in enumerate(dials)]
    else:
        x0 = (plate_w - 8 * WHEEL_PITCH_PX) // 2 + (WHEEL_PITCH_PX - WHEEL_SIZE_PX[0]) // 2
        wheels = [(n, "black", lpt) for n, lpt in _BLACK_WHEELS]
        wheels += [(n, "red", lpt) for n, lpt in _FRACTIONS[:3]]
        elements = [_wheel(n, c, lpt, x0 + i * WHEEL_PITCH_PX, wheel_y) for i, (n, c, lpt) in enumerate(wheels)]
        dials = (_FRACTIONS[3],) + ((_FINE_DIAL,) if fine else ())
        first_x = plate_w // 2 - 70 * (len(dials) - 1)
        elements += [_dial(n, lpt, first_x + i * 140, dial_cy) for i, (n, lpt) in enumerate(dials)]
    return {
        "plate_size_px": [plate_w, plate_h],
        "markers": {"dictionary": "DICT_4X4_50", "items": _marker_items(plate_w, plate_h, size=44, margin=10)},
        "elements": elements,
    }


def positions_from_volume(layout: RegisterLayout, volume_l: float | np.ndarray) -> np.ndarray:
    """Position in [0, 10) of every element for register volume(s) `volume_l` (L).

    Gear elements turn continuously: (volume / litres_per_turn × 10) mod 10.
    Carry wheels show their digit and roll only while the next lower element is
    in [9, 10): position = digit + (lower − 9).  The register wraps at
    `layout.capacity_l`.  Exact: digits come from an integer count of the
    finest element's divisions, so no wheel ever disagrees with the one below.

    Returns shape (E,) for a scalar volume, (N, E) for N volumes.
    """
    volumes = np.asarray(volume_l, dtype=np.float64)
    if not np.all(np.isfinite(volumes)) or np.any(volumes < 0):
        raise ValueError("positions_from_volume: volume_l: expected finite volumes >= 0 L")
    flat = volumes.reshape(-1)
    finest_lpt = layout.finest.litres_per_turn
    divisions = flat * (10.0 / finest_lpt)  # in units of the finest division
    whole = np.floor(divisions)
    frac = divisions - whole
    count = whole.astype(np.int64) % int(round(layout.capacity_l * 10.0 / finest_lpt))
    n_el = len(layout.elements)
    positions = np.empty((flat.size, n_el), dtype=np.float64)
    lower = None
    for i in range(n_el - 1, -1, -1):
        element = layout.elements[i]
        ratio = int(round(element.litres_per_turn / finest_lpt))  # finest divisions per digit
        digit = (count // ratio) % 10
        if element.coupling == "gear" or lower is None:
            pos = ((count % (10 * ratio)) + frac) / ratio
        else:
            pos = digit + np.clip(lower - 9.0, 0.0, 1.0)
        pos = np.where(pos >= 10.0, pos - 10.0, pos)
        positions[:, i] = pos
        lower = pos
    return positions.reshape(volumes.shape + (n_el,))


def volume_from_positions(layout: RegisterLayout, positions: np.ndarray) -> np.ndarray:
    """Register value (L) from consistent element positions: the inverse of
    `positions_from_volume` (integer digits of all but the finest element, plus
    the finest element's continuous position).  No carry repair: readings whose
    digits disagree belong to the reader's carry logic, not here.
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.shape[-1] != len(layout.elements):
        raise ValueError(
            f"volume_from_positions: positions: expected last axis {len(layout.elements)}, got shape {pos.shape}"
        )
    step_l = np.array([e.litres_per_turn / 10.0 for e in layout.elements])
    digits = np.floor(pos[..., :-1])
    return digits @ step_l[:-1] + pos[..., -1] * step_l[-1]
