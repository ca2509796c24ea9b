"""Renderer of simulated water-meter register frames, as a bench camera sees them.

The register plate (layout frame, px) is drawn once: ArUco markers, wheel
windows, dial faces (0–9 scale, ticks, numerals), a little text.  Per frame only
the moving parts are drawn: digit wheels scrolled through a precomputed,
cylinder-shaded strip of digits; red pointers at position/10 of a turn clockwise
from 0 at the top, smeared over the exposure when `motion` is given.  The plate
is then warped into the camera frame (fixed perspective + per-frame shake),
lit unevenly, glared, blurred and given sensor noise.

Two render styles.  "classic" (the default): Hershey digits, one drum
curvature, a glare blob anywhere in the frame (60 % of cameras), Gaussian
noise.  "varied" (issue 17: what real registers show): digits in a TrueType
font picked per register from the Debian fonts installed (DejaVu, Liberation,
FreeFont; Pillow draws them), a stronger and varied drum curvature, varied red
shades of the fraction wheels, a reflection fixed to the camera over one
element for the whole session (`RenderStyle.glare_element`), and sensor noise
on a Bayer mosaic (RGGB, shot + read noise, then demosaiced).

Deterministic for a given `rng`, style and call sequence; ~2–4 ms per 640×360
frame (classic), ~6 ms (varied).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from meterbench.errors import ConfigError
from meterbench.vision.layout import RegisterElement, RegisterLayout

__all__ = ["RENDER_STYLES", "CameraModel", "RegisterRenderer", "RenderStyle", "truetype_fonts"]

RENDER_STYLES = ("classic", "varied")
FONT_DIR = Path("/usr/share/fonts/truetype")
# Bold and regular sans, serif and mono faces of the Debian font packages fonts-dejavu-core,
# fonts-liberation and fonts-freefont-ttf (all free licences), as far as installed.  DejaVu Sans
# Mono is left out: its zero is dotted, which no register wheel prints.
TRUETYPE_FONTS = (
    "dejavu/DejaVuSans-Bold.ttf",
    "dejavu/DejaVuSans.ttf",
    "dejavu/DejaVuSansCondensed-Bold.ttf",
    "dejavu/DejaVuSerif-Bold.ttf",
    "dejavu/DejaVuSerifCondensed-Bold.ttf",
    "liberation/LiberationSans-Bold.ttf",
    "liberation/LiberationSans-Regular.ttf",
    "liberation/LiberationSansNarrow-Bold.ttf",
    "liberation/LiberationMono-Bold.ttf",
    "liberation/LiberationSerif-Bold.ttf",
    "freefont/FreeSansBold.ttf",
    "freefont/FreeSans.ttf",
    "freefont/FreeMonoBold.ttf",
    "freefont/FreeSerifBold.ttf",
)

FONT = cv2.FONT_HERSHEY_DUPLEX
DIGIT_PITCH = 0.8  # strip pitch between digits, fraction of the window height
DIGIT_HEIGHT = 0.66  # digit glyph height, fraction of the window height
CYLINDER_RADIUS = 0.6  # wheel radius, fraction of the window height
NOISE_BANK_FRAMES = 3
MOTION_STEPS_MAX = 8  # needle copies to smear a fast pointer over the exposure

# BGR colours of the printed plate
PLATE_WHITE = (236, 238, 240)
INK = (25, 25, 25)
WHEEL_STYLES = {  # (background, digit) BGR
    "black": ((28, 28, 30), (232, 232, 228)),
    "red": ((38, 36, 178), (236, 236, 236)),
    "red-on-white": ((232, 234, 236), (40, 40, 190)),
}
NEEDLE_RED = (28, 30, 215)


def tilted_plate_corners(rng: np.random.Generator, w: float, h: float, cx: float, cy: float) -> np.ndarray:
    """Camera px of a w x h plate centred at (cx, cy), seen with a small keystone (each side up to
    4 % shorter) and rotated up to ±3°: (4, 2), clockwise from top-left."""
    base = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    tilt_x, tilt_y = rng.uniform(-0.04, 0.04, 2)  # keystone: one side shorter
    base[:, 1] *= 1 + tilt_x * np.sign(base[:, 0])
    base[:, 0] *= 1 + tilt_y * np.sign(base[:, 1])
    angle = math.radians(rng.uniform(-3.0, 3.0))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return base @ rot.T + [cx, cy]


@dataclass(frozen=True)
class CameraModel:
    """A bench camera looking at one register (all lengths px in the camera frame).

    `plate_corners_px`: where the plate corners (TL, TR, BR, BL) land in the frame
    at rest; shake moves the frame by ~N(0, `shake_px`) px and N(0, `shake_deg`)°,
    a new offset every ~`shake_hold_frames` frames (geometric; 1 = every frame: a
    bench vibrates in bursts, and held offsets keep the video small).  Light: a
    linear gradient of ±`light_gradient` (fraction) along `light_angle_deg`, a
    vignette, an optional glare blob (centre, radius px, strength 0..1).
    `noise_sigma` grey levels, `blur_sigma` px, `exposure_s` (s) for motion blur.
    """

    frame_size_px: tuple[int, int] = (640, 360)
    plate_corners_px: tuple[tuple[float, float], ...] = ((48.0, 68.0), (592.0, 68.0), (592.0, 289.0), (48.0, 289.0))
    shake_px: float = 0.6
    shake_deg: float = 0.15
    shake_hold_frames: float = 1.0
    light_gradient: float = 0.15
    light_angle_deg: float = 30.0
    vignette: float = 0.15
    glare: tuple[float, float, float, float] | None = None
    noise_sigma: float = 3.0
    blur_sigma: float = 0.7
    exposure_s: float = 0.02
    background_bgr: tuple[int, int, int] = (70, 62, 55)

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        plate_size_px: tuple[int, int] = (640, 260),
        frame_size_px: tuple[int, int] = (640, 360),
    ) -> CameraModel:
        """A plausible camera: plate ~80–90 % of the frame width, small tilt, varied light."""
        fw, fh = frame_size_px
        pw, ph = plate_size_px
        scale = rng.uniform(0.78, 0.88) * fw / pw
        w, h = pw * scale, ph * scale
        cx = fw / 2 + rng.uniform(-0.04, 0.04) * fw
        cy = fh / 2 + rng.uniform(-0.04, 0.04) * fh
        corners = tilted_plate_corners(rng, w, h, cx, cy)
        glare = None
        if rng.random() < 0.6:
            glare = (
                float(rng.uniform(0.15, 0.85) * fw),
                float(rng.uniform(0.15, 0.85) * fh),
                float(rng.uniform(0.05, 0.15) * fw),
                float(rng.uniform(0.25, 0.6)),
            )
        grey = int(rng.integers(40, 110))
        return cls(
            frame_size_px=(fw, fh),
            plate_corners_px=tuple((float(x), float(y)) for x, y in corners),
            shake_px=float(rng.uniform(0.2, 1.0)),
            shake_deg=float(rng.uniform(0.05, 0.2)),
            shake_hold_frames=float(rng.uniform(5.0, 15.0)),
            light_gradient=float(rng.uniform(0.05, 0.3)),
            light_angle_deg=float(rng.uniform(0, 360)),
            vignette=float(rng.uniform(0.05, 0.25)),
            glare=glare,
            noise_sigma=float(rng.uniform(1.0, 3.0)),
            blur_sigma=float(rng.uniform(0.4, 1.1)),
            exposure_s=float(rng.uniform(0.008, 0.03)),
            background_bgr=(grey + int(rng.integers(0, 20)), grey, grey - int(rng.integers(0, 15))),
        )

    def to_dict(self) -> dict:
        """JSON-ready parameters (for truth.json)."""
        return {
            "frame_size_px": list(self.frame_size_px),
            "plate_corners_px": [list(c) for c in self.plate_corners_px],
            "shake_px": self.shake_px,
            "shake_deg": self.shake_deg,
            "shake_hold_frames": self.shake_hold_frames,
            "light_gradient": self.light_gradient,
            "light_angle_deg": self.light_angle_deg,
            "vignette": self.vignette,
            "glare": list(self.glare) if self.glare else None,
            "noise_sigma": self.noise_sigma,
            "blur_sigma": self.blur_sigma,
            "exposure_s": self.exposure_s,
        }


def _glyph(
    digit: str, width: int, height: int, colour: tuple[int, int, int], background: tuple[int, int, int]
) -> np.ndarray:
    """One digit, drawn 4× large with a thick Hershey font and shrunk to (height, width).

    Hershey zeros are slashed, meter wheels' are not: "0" is drawn as a capital O.
    """
    digit = "O" if digit == "0" else digit
    scale, thickness = 4.0, 9
    (tw, th), _ = cv2.getTextSize(digit, FONT, scale, thickness)
    canvas = np.full((th + 24, tw + 24, 3), background, np.uint8)
    cv2.putText(canvas, digit, (12, th + 12), FONT, scale, colour, thickness, cv2.LINE_AA)
    ys, xs = np.nonzero(np.any(canvas != np.array(background, np.uint8), axis=2))
    canvas = canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)


def truetype_fonts(font_dir: Path = FONT_DIR) -> list[Path]:
    """The TrueType fonts of `TRUETYPE_FONTS` installed under `font_dir` (may be empty)."""
    return [font_dir / name for name in TRUETYPE_FONTS if (font_dir / name).is_file()]


def _truetype_glyphs(font_path: Path, glyph_h: int, max_w: int) -> list[np.ndarray]:
    """Coverage masks (float32 0..1, glyph_h rows) of the digits 0..9 in a TrueType font, each
    as wide as the font draws it at that height (a "1" is narrow), at most `max_w` px."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise ConfigError(
            "render style 'varied': needs Pillow to draw TrueType digits (pip install pillow, or the [train] extra)"
        ) from None
    size = 4 * glyph_h
    font = ImageFont.truetype(str(font_path), size)
    masks = []
    for d in range(10):
        canvas = Image.new("L", (3 * size, 2 * size), 0)
        ImageDraw.Draw(canvas).text((size // 2, size // 4), str(d), fill=255, font=font)
        mask = np.asarray(canvas, np.uint8)
        ys, xs = np.nonzero(mask)
        mask = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        width = max(2, min(max_w, int(round(mask.shape[1] * glyph_h / mask.shape[0]))))
        masks.append(cv2.resize(mask, (width, glyph_h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0)
    return masks


def _digit_strip(
    window_w: int,
    window_h: int,
    style: str,
    *,
    colours: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
    font_path: Path | None = None,
    glyph_height: float = DIGIT_HEIGHT,
) -> np.ndarray:
    """Vertical strip of digits 0..9 (one turn), cell pitch DIGIT_PITCH × window height; float32.

    Hershey digits by default; with `font_path` the digits of that TrueType font, and
    `colours` (background, ink) BGR instead of the style's."""
    background, ink = colours if colours is not None else WHEEL_STYLES[style]
    pitch = int(round(DIGIT_PITCH * window_h))
    glyph_h = int(round(glyph_height * window_h))
    glyph_w = int(round(0.62 * window_w))
    strip = np.empty((10 * pitch, window_w, 3), np.uint8)
    strip[:] = background
    if font_path is not None:
        masks = _truetype_glyphs(font_path, glyph_h, int(round(0.8 * window_w)))
        bg, fg = np.array(background, np.float32), np.array(ink, np.float32)
        for d, mask in enumerate(masks):
            y = d * pitch + (pitch - glyph_h) // 2
            x = (window_w - mask.shape[1]) // 2
            cell = bg + (fg - bg) * mask[:, :, None]
            strip[y : y + glyph_h, x : x + mask.shape[1]] = np.clip(cell + 0.5, 0, 255).astype(np.uint8)
        return strip.astype(np.float32)
    for d in range(10):
        glyph = _glyph(str(d), glyph_w, glyph_h, ink, background)
        y = d * pitch + (pitch - glyph_h) // 2
        x = (window_w - glyph_w) // 2
        strip[y : y + glyph_h, x : x + glyph_w] = glyph
    return strip.astype(np.float32)


def _cylinder_rows(
    window_h: int, pitch: int, radius_fraction: float = CYLINDER_RADIUS, shade_power: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """Strip row offset (relative to the window centre) and shading factor per window row."""
    radius = radius_fraction * window_h
    y = np.arange(window_h) + 0.5 - window_h / 2
    theta = np.arcsin(np.clip(y / radius, -0.999, 0.999))
    offset = radius * theta + pitch / 2
    shade = np.cos(theta) ** shade_power
    return offset.astype(np.float32), shade.astype(np.float32)[:, None, None]


@dataclass(frozen=True)
class RenderStyle:
    """How a register is drawn beyond its camera (see the module docstring).

    `font_path` None: Hershey digits.  `drum_radius`: wheel radius / window height
    (smaller = more curved), `drum_shade_power`: darkening towards the window's
    edges.  `red_colours`: (background, ink) BGR of the red wheels (None: the
    red-wheel style's).  `glare_element`: index of the element a reflection fixed
    to the camera covers for the whole session, `glare_strength` 0..1 and
    `glare_radius` (× the element's width in the frame; a specular patch with a
    saturated core); None: the camera's own glare.  `bayer_noise`: sensor noise on an RGGB mosaic (read noise
    `read_noise` grey levels, shot noise `shot_gain` × sqrt(signal)).
    """

    name: str = "classic"
    font_path: Path | None = None
    glyph_height: float = DIGIT_HEIGHT
    drum_radius: float = CYLINDER_RADIUS
    drum_shade_power: float = 0.8
    red_colours: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None
    glare_element: int | None = None
    glare_strength: float = 0.0
    glare_radius: float = 0.0
    bayer_noise: bool = False
    read_noise: float = 0.0
    shot_gain: float = 0.0

    @classmethod
    def varied(cls, rng: np.random.Generator, layout: RegisterLayout, red_wheel_style: str) -> RenderStyle:
        """A random real-looking style: font, drum, red shade, one glared element, Bayer noise."""
        fonts = truetype_fonts()
        if not fonts:
            raise ConfigError(
                f"render style 'varied': no TrueType font found under {FONT_DIR} "
                "(apt-get install -y fonts-dejavu-core fonts-liberation fonts-freefont-ttf)"
            )
        font = fonts[int(rng.integers(len(fonts)))]
        red = (int(rng.integers(20, 60)), int(rng.integers(20, 55)), int(rng.integers(150, 215)))
        light = (int(rng.integers(215, 245)),) * 3
        red_colours = (red, light) if red_wheel_style == "red" else (light, red)
        return cls(
            name="varied",
            font_path=font,
            glyph_height=float(rng.uniform(0.58, 0.72)),
            drum_radius=float(rng.uniform(0.5, 0.58)),
            drum_shade_power=float(rng.uniform(1.0, 2.0)),
            red_colours=red_colours,
            glare_element=int(rng.integers(len(layout.elements))),
            glare_strength=float(rng.uniform(0.85, 1.0)),
            glare_radius=float(rng.uniform(0.5, 0.7)),
            bayer_noise=True,
            read_noise=float(rng.uniform(1.0, 2.5)),
            shot_gain=float(rng.uniform(0.15, 0.35)),
        )

    def to_dict(self) -> dict:
        """JSON-ready description (for truth.json)."""
        return {
            "name": self.name,
            "font": self.font_path.name if self.font_path else "hershey",
            "drum_radius": self.drum_radius,
            "glare_element": self.glare_element,
            "glare_strength": self.glare_strength,
            "bayer_noise": self.bayer_noise,
        }


class _Wheel:
    """A digit wheel: its strip, window box and cylinder mapping (plate frame)."""

    def __init__(self, element: RegisterElement, style: str, render_style: RenderStyle | None = None):
        x, y, w, h = (int(round(v)) for v in element.box_px)
        self.box = (x, y, w, h)
        rs = render_style or RenderStyle()
        colours = rs.red_colours if style != "black" else None
        self.strip = _digit_strip(w, h, style, colours=colours, font_path=rs.font_path, glyph_height=rs.glyph_height)
        self.pitch = self.strip.shape[0] // 10
        self.offset, self.shade = _cylinder_rows(h, self.pitch, rs.drum_radius, rs.drum_shade_power)

    def draw(self, plate: np.ndarray, position: float, motion: float) -> None:
        x, y, w, h = self.box
        window = self._sample(position)
        if motion > 0.02:  # average a few samples over the exposure
            steps = min(MOTION_STEPS_MAX, 2 + int(motion * 10))
            for k in range(1, steps):
                window += self._sample(position + motion * k / (steps - 1))
            window /= steps
        plate[y : y + h, x : x + w] = np.clip(window * self.shade, 0, 255).astype(np.uint8)

    def _sample(self, position: float) -> np.ndarray:
        rows = self.offset + (position % 10.0) * self.pitch
        r0 = np.floor(rows)
        frac = (rows - r0)[:, None, None]
        n = self.strip.shape[0]
        i0 = r0.astype(np.int64) % n
        return self.strip[i0] * (1 - frac) + self.strip[(i0 + 1) % n] * frac


class _Dial:
    """A red pointer sub-dial: face drawn on the plate once, needle per frame."""

    def __init__(self, element: RegisterElement):
        self.center = np.array(element.center_px, np.float64)
        self.radius = float(element.radius_px)
        r = self.radius
        pad = 2
        x0, y0 = int(math.floor(self.center[0] - r)) - pad, int(math.floor(self.center[1] - r)) - pad
        size = int(math.ceil(2 * r)) + 2 * pad
        self.roi = (x0, y0, size, size)
        # needle blade in units of r, pointing up (0) before rotation; the hub is a disc
        self.blade = np.array([(-0.24, 0.0), (-0.05, -0.8), (0.0, -0.88), (0.05, -0.8), (0.24, 0.0)], np.float64)
        self.hub_radius = 0.3 * r

    def draw_face(self, plate: np.ndarray) -> None:
        c = tuple(int(round(v)) for v in self.center)
        r = self.radius
        cv2.circle(plate, c, int(r), (250, 250, 250), -1, cv2.LINE_AA)
        cv2.circle(plate, c, int(r), INK, 2, cv2.LINE_AA)
        for k in range(50):  # ticks: every 0.2 of a division, long at the numerals
            a = math.radians(k * 7.2)
            inner = 0.86 if k % 5 else 0.78
            p0 = self.center + r * inner * np.array([math.sin(a), -math.cos(a)])
            p1 = self.center + r * 0.96 * np.array([math.sin(a), -math.cos(a)])
            cv2.line(plate, _pt(p0), _pt(p1), INK, 1, cv2.LINE_AA)
        scale = r / 70.0
        for d in range(10):
            a = math.radians(d * 36)
            text = "O" if d == 0 else str(d)  # Hershey's zero is slashed
            (tw, th), _ = cv2.getTextSize(text, FONT, scale * (0.85 if d == 0 else 1.0), 2)
            p = self.center + r * 0.62 * np.array([math.sin(a), -math.cos(a)])
            org = (int(round(p[0] - tw / 2)), int(round(p[1] + th / 2)))
            cv2.putText(plate, text, org, FONT, scale * (0.85 if d == 0 else 1.0), INK, 2, cv2.LINE_AA)

    def needle_polygon(self, position: float) -> np.ndarray:
        a = 2 * math.pi * (position % 10.0) / 10.0
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        return self.blade @ rot.T * self.radius + self.center

    def draw(self, plate: np.ndarray, position: float, motion: float) -> None:
        x0, y0, size, _ = self.roi
        roi = plate[y0 : y0 + size, x0 : x0 + size]
        if motion <= 0.02:
            self._draw_needle(roi, position)
            return
        steps = min(MOTION_STEPS_MAX, 2 + int(motion * 10))
        acc = np.zeros(roi.shape, np.float32)
        for k in range(steps):
            layer = roi.copy()
            self._draw_needle(layer, position + motion * k / (steps - 1))
            acc += layer
        roi[:] = (acc / steps).astype(np.uint8)

    def _draw_needle(self, roi: np.ndarray, position: float) -> None:
        """Red needle into `roi` (the dial's square, plate px offset `self.roi`)."""
        origin = np.array(self.roi[:2], np.float64)
        poly = np.round((self.needle_polygon(position) - origin) * 16).astype(np.int32)
        cv2.fillPoly(roi, [poly], NEEDLE_RED, cv2.LINE_AA, shift=4)
        centre = np.round((self.center - origin) * 16).astype(np.int32)
        cv2.circle(
            roi,
            (int(centre[0]), int(centre[1])),
            int(round(self.hub_radius * 16)),
            NEEDLE_RED,
            -1,
            cv2.LINE_AA,
            shift=4,
        )


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


class RegisterRenderer:
    """Renders camera frames of one register from its element positions.

    >>> layout = RegisterLayout.from_dict(default_register_layout("dials"))
    >>> renderer = RegisterRenderer(layout, rng=np.random.default_rng(0))
    >>> frame = renderer.render(positions_from_volume(layout, 1234.5))   # (360, 640, 3) uint8

    `style`: "classic" (default, unchanged), "varied" (a random `RenderStyle.varied`
    drawn from `rng`), or a `RenderStyle`.
    """

    def __init__(
        self,
        layout: RegisterLayout,
        *,
        rng: np.random.Generator,
        camera: CameraModel | None = None,
        label: str = "SIM-0001",
        red_wheel_style: str | None = None,
        markers: bool = True,
        style: str | RenderStyle = "classic",
    ):
        self.layout = layout
        self.markers = markers  # False: a plate without fiducials (read by a reference image)
        self.rng = rng
        self.camera = camera if camera is not None else CameraModel.random(rng, layout.plate_size_px)
        if red_wheel_style is None:
            red_wheel_style = "red" if rng.random() < 0.6 else "red-on-white"
        if red_wheel_style not in ("red", "red-on-white"):
            raise ValueError(
                f"RegisterRenderer: red_wheel_style: expected 'red' or 'red-on-white', got {red_wheel_style!r}"
            )
        self.red_wheel_style = red_wheel_style
        if isinstance(style, RenderStyle):
            self.style = style
        elif style in RENDER_STYLES:
            self.style = RenderStyle.varied(rng, layout, red_wheel_style) if style == "varied" else RenderStyle()
        else:
            raise ConfigError(f"RegisterRenderer: style: expected one of {', '.join(RENDER_STYLES)}, got {style!r}")
        self._parts = [
            _Wheel(e, "black" if e.colour == "black" else red_wheel_style, self.style)
            if e.kind == "wheel"
            else _Dial(e)
            for e in layout.elements
        ]
        self._plate = self._draw_plate(label)
        # plate edge coords -> camera edge coords (corners), then pixel-centre convention
        # both sides, as cv2.warpPerspective samples pixel centres
        edge_homography = cv2.getPerspectiveTransform(
            np.array(_plate_corners(layout), np.float32), np.array(self.camera.plate_corners_px, np.float32)
        )
        centre_to_edge = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
        self._homography = np.linalg.inv(centre_to_edge) @ edge_homography @ centre_to_edge
        self._glare_spec = self.camera.glare if self.style.glare_element is None else self._element_glare()
        self._background = self._draw_background()
        self._light = self._light_map()
        self._noise = self._noise_bank()
        self._shake = np.eye(3)
        self._shake_frames_left = 0

    # -- precomputed parts -------------------------------------------------
    def _draw_plate(self, label: str) -> np.ndarray:
        w, h = self.layout.plate_size_px
        plate = np.empty((h, w, 3), np.uint8)
        plate[:] = PLATE_WHITE
        markers = self.layout.markers if self.markers else ()
        if markers:
            dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.layout.marker_dictionary))
        for marker in markers:
            corners = np.array(marker.corners_px)
            x0, y0 = np.round(corners.min(axis=0)).astype(int)
            x1, y1 = np.round(corners.max(axis=0)).astype(int)
            size = int(x1 - x0)
            image = cv2.aruco.generateImageMarker(dictionary, marker.id, size)
            plate[y0 : y0 + size, x0 : x0 + size] = image[:, :, None]
        wheels = [p for p in self._parts if isinstance(p, _Wheel)]
        if wheels:  # a dark bezel around the counter row
            xs = [p.box[0] for p in wheels] + [p.box[0] + p.box[2] for p in wheels]
            y, hh = wheels[0].box[1], wheels[0].box[3]
            cv2.rectangle(plate, (min(xs) - 6, y - 6), (max(xs) + 6, y + hh + 6), (60, 60, 60), -1)
            blacks = [
                p
                for p, e in zip(self._parts, self.layout.elements, strict=True)
                if isinstance(p, _Wheel) and e.colour == "black"
            ]
            if blacks:
                right = blacks[-1].box[0] + blacks[-1].box[2]
                cv2.putText(
                    plate,
                    "m3",
                    (right + 8 if len(blacks) == len(wheels) else max(xs) + 10, y + hh - 4),
                    FONT,
                    0.6,
                    INK,
                    1,
                    cv2.LINE_AA,
                )
        for part, element in zip(self._parts, self.layout.elements, strict=True):
            if isinstance(part, _Dial):
                part.draw_face(plate)
                x, y, bw, bh = element.box_px
                text = "x" + element.name.removeprefix("Lx") + " L" if element.name.startswith("Lx") else element.name
                cv2.putText(plate, text, (int(x + bw - 4), int(y + bh)), FONT, 0.4, INK, 1, cv2.LINE_AA)
        cv2.putText(
            plate,
            f"DN15  Q3 2.5  R100  class 2  T30   {label}",
            (70, h - 14),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.42,
            INK,
            1,
            cv2.LINE_AA,
        )
        return plate

    def _draw_background(self) -> np.ndarray:
        fw, fh = self.camera.frame_size_px
        bg = np.empty((fh, fw, 3), np.uint8)
        bg[:] = self.camera.background_bgr
        corners = np.array(self.camera.plate_corners_px)
        centre = corners.mean(axis=0)
        rim = corners + (corners - centre) * 0.06  # a darker bezel around the plate
        cv2.fillPoly(bg, [np.round(rim).astype(np.int32)], (35, 35, 38), cv2.LINE_AA)
        return bg

    def _light_map(self) -> np.ndarray:
        """Gain per pixel ×128 (uint8 for cv2.multiply), with the glare as a separate add."""
        cam = self.camera
        fw, fh = cam.frame_size_px
        yy, xx = np.mgrid[0:fh, 0:fw].astype(np.float32)
        u = (
            (xx - fw / 2) * math.cos(math.radians(cam.light_angle_deg))
            + (yy - fh / 2) * math.sin(math.radians(cam.light_angle_deg))
        ) / (fw / 2)
        rr = ((xx - fw / 2) ** 2 + (yy - fh / 2) ** 2) / ((fw / 2) ** 2 + (fh / 2) ** 2)
        gain = 0.95 * (1 + cam.light_gradient * u) * (1 - cam.vignette * rr)
        self._glare = None
        if self._glare_spec is not None:
            gx, gy, radius, strength = self._glare_spec
            d2 = ((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * radius**2)
            # a specular reflection: flat saturated core, steep rim (super-Gaussian); else a soft blob
            blob = np.exp(-(d2**2)) if self.style.glare_element is not None else np.exp(-d2)
            self._glare = np.clip(255 * strength * blob, 0, 255).astype(np.uint8)
            self._glare = np.repeat(self._glare[:, :, None], 3, axis=2)
            gain = gain * (1 - 0.5 * strength * blob)  # glare washes out the contrast
        return np.repeat(np.clip(gain * 128, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)

    def _element_glare(self) -> tuple[float, float, float, float]:
        """(x, y, radius px, strength) of a reflection over the style's glare element, in the frame."""
        element = self.layout.elements[self.style.glare_element]
        x, y, w, h = element.box_px
        pts = np.array([[[x + w / 2, y + h / 2], [x, y + h / 2], [x + w, y + h / 2]]], np.float32)
        edge = cv2.getPerspectiveTransform(
            np.array(_plate_corners(self.layout), np.float32), np.array(self.camera.plate_corners_px, np.float32)
        )
        centre, left, right = cv2.perspectiveTransform(pts, edge)[0]
        width_px = float(np.linalg.norm(right - left))
        jitter = self.rng.normal(0.0, 0.1 * width_px, 2)
        return (
            float(centre[0] + jitter[0]),
            float(centre[1] + jitter[1]),
            self.style.glare_radius * width_px,
            self.style.glare_strength,
        )

    def _noise_bank(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """A few frames of Gaussian noise, split into (+, −) uint8 parts for saturating adds."""
        fw, fh = self.camera.frame_size_px
        bank = []
        if self.style.bayer_noise:
            return bank  # drawn per frame on the mosaic instead
        for _ in range(NOISE_BANK_FRAMES):
            noise = self.rng.normal(0, self.camera.noise_sigma, (fh + 16, fw + 16, 3))
            noise = np.clip(np.round(noise), -255, 255)
            bank.append((np.clip(noise, 0, None).astype(np.uint8), np.clip(-noise, 0, None).astype(np.uint8)))
        return bank

    # -- per frame ---------------------------------------------------------
    def render_plate(self, positions: np.ndarray, motion: np.ndarray | None = None) -> np.ndarray:
        """The rectified plate (plate_size_px, BGR uint8) with elements at `positions`."""
        positions = np.asarray(positions, np.float64)
        n = len(self.layout.elements)
        if positions.shape != (n,):
            raise ValueError(f"RegisterRenderer.render: positions: expected shape ({n},), got {positions.shape}")
        motion = np.zeros(n) if motion is None else np.asarray(motion, np.float64)
        if motion.shape != (n,):
            raise ValueError(f"RegisterRenderer.render: motion: expected shape ({n},), got {motion.shape}")
        plate = self._plate.copy()
        for part, pos, move in zip(self._parts, positions, motion, strict=True):
            part.draw(plate, float(pos), float(move))
        return plate

    def render(
        self, positions: np.ndarray, motion: np.ndarray | None = None, *, plate_motion: np.ndarray | None = None
    ) -> np.ndarray:
        """A camera frame (H×W×3 BGR uint8) of the register at element `positions` ([0, 10)).

        `motion` (E,): how far each element advances during the exposure (same units),
        smeared into the image; None = still.  `plate_motion` (3×3, frame px): where
        the meter has moved in the frame since the camera was set up (shift,
        rotation, drift), applied before the shake; None = not moved.
        """
        plate = self.render_plate(positions, motion)
        cam = self.camera
        fw, fh = cam.frame_size_px
        shake = self._shake_matrix()
        if plate_motion is not None:
            shake = shake @ np.asarray(plate_motion, np.float64)
        frame = self._background.copy()
        cv2.warpPerspective(
            plate,
            shake @ self._homography,
            (fw, fh),
            dst=frame,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_TRANSPARENT,
        )
        frame = cv2.multiply(frame, self._light, scale=1 / 128)
        if self._glare is not None:
            frame = cv2.add(frame, self._glare)
        if cam.blur_sigma > 0:
            frame = cv2.GaussianBlur(frame, (0, 0), cam.blur_sigma)
        if self.style.bayer_noise:
            return self._bayer_sensor(frame)
        plus, minus = self._noise[int(self.rng.integers(NOISE_BANK_FRAMES))]
        dx, dy = (int(v) for v in self.rng.integers(0, 16, 2))
        frame = cv2.add(frame, plus[dy : dy + fh, dx : dx + fw])
        return cv2.subtract(frame, minus[dy : dy + fh, dx : dx + fw])

    def _bayer_sensor(self, frame: np.ndarray) -> np.ndarray:
        """The frame as a colour sensor records it: an RGGB mosaic with shot and read noise,
        demosaiced (bilinear) back to BGR (colour fringes at edges, correlated noise)."""
        mosaic = np.empty(frame.shape[:2], np.float32)
        mosaic[0::2, 0::2] = frame[0::2, 0::2, 2]
        mosaic[0::2, 1::2] = frame[0::2, 1::2, 1]
        mosaic[1::2, 0::2] = frame[1::2, 0::2, 1]
        mosaic[1::2, 1::2] = frame[1::2, 1::2, 0]
        sigma = np.sqrt(self.style.read_noise**2 + self.style.shot_gain**2 * mosaic)
        mosaic += sigma * self.rng.standard_normal(mosaic.shape, np.float32)
        raw = np.clip(mosaic + 0.5, 0, 255).astype(np.uint8)
        return cv2.cvtColor(raw, cv2.COLOR_BayerBG2BGR)

    def _shake_matrix(self) -> np.ndarray:
        """The current shake (3×3, frame px): held for a random number of frames."""
        if self._shake_frames_left <= 0:
            self._shake = self._new_shake()
            self._shake_frames_left = int(self.rng.geometric(1.0 / max(self.camera.shake_hold_frames, 1.0)))
        self._shake_frames_left -= 1
        return self._shake

    def _new_shake(self) -> np.ndarray:
        cam = self.camera
        fw, fh = cam.frame_size_px
        tx, ty = np.clip(self.rng.normal(0, cam.shake_px, 2), -2.0, 2.0)
        angle = float(np.clip(self.rng.normal(0, cam.shake_deg), -0.5, 0.5))
        m = cv2.getRotationMatrix2D((fw / 2, fh / 2), angle, 1.0)
        m[:, 2] += (tx, ty)
        return np.vstack([m, [0, 0, 1]])


def _plate_corners(layout: RegisterLayout) -> list[tuple[float, float]]:
    w, h = layout.plate_size_px
    return [(0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h))]
