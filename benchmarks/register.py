"""Register reading on rendered frames: share read, wrong volumes, error, per element, speed.

Renders N frames per register variant ("dials", "wheels") with RegisterRenderer
at random volumes (half of them just before a 9 -> 0 rollover of some decade),
with a new random camera (perspective, shake, light, glare, noise, blur) every
few frames and motion blur from a random flow (truth taken at mid-exposure), reads them with RegisterReader
and the shipped ONNX models on one thread, and prints:

- share of frames read ok, and the reasons of the others;
- share of wrong volumes among ok readings (|error| ≥ 0.5 finest step; must be 0);
- |volume error| percentiles in L and in finest steps;
- per element: share within ±0.1 / ±0.2 (circular) and off by ≥ 0.5, and the most
  frequent misreads (true digit -> read digit);
- ms per frame: alignment, crops, model, composition, total.

Render styles (`--styles`): "classic" (the simulator's default) and "varied"
(TrueType fonts, curved drums, red shades, a reflection over one element of each
camera, Bayer noise: `meterbench.sim.register_render.RenderStyle`).  Each style is
read twice in the same run: "old" (the fixed 0.5 confidence cut, readers'
`readable` ignored, the aligner before issue 17) and "new" (the defaults), so
the two can be compared frame for frame.

    python benchmarks/register.py --frames 300 [--seed 0] [--styles classic varied] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meterbench.sim.register_render import RegisterRenderer  # noqa: E402
from meterbench.vision import (  # noqa: E402
    RegisterLayout,
    RegisterReader,
    default_register_layout,
    positions_from_volume,
)
from meterbench.vision.align import MarkerAligner  # noqa: E402

FRAMES_PER_CAMERA = 10
MAX_FLOW_L_S = 0.7  # ~Q3 of a DN15 meter (2.5 m³/h)


def random_volumes(rng: np.random.Generator, n: int, capacity_l: float) -> np.ndarray:
    """Half log-uniform volumes (L), half within 0.3 L before a rollover of some decade."""
    spread = 10 ** rng.uniform(-1, np.log10(capacity_l) - 0.01, n)
    decade = 10.0 ** rng.integers(0, 8, n)
    rollover = (rng.integers(1, 10, n) * decade - rng.uniform(0, 0.3, n)) % capacity_l
    return np.where(rng.random(n) < 0.5, spread, rollover)


def occlude_marker(
    frame: np.ndarray, renderer: RegisterRenderer, layout: RegisterLayout, rng: np.random.Generator
) -> np.ndarray:
    """Cover one random marker with a flat grey patch (a finger, a glare spot)."""
    marker = layout.markers[int(rng.integers(len(layout.markers)))]
    w, h = layout.plate_size_px
    plate_to_camera = cv2.getPerspectiveTransform(
        np.array([(0, 0), (w, 0), (w, h), (0, h)], np.float32), np.array(renderer.camera.plate_corners_px, np.float32)
    )
    corners = cv2.perspectiveTransform(np.array([marker.corners_px], np.float32), plate_to_camera)[0]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 4
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 4
    out = frame.copy()
    out[max(y0, 0) : y1, max(x0, 0) : x1] = int(rng.integers(60, 230))
    return out


def render_frames(
    layout: RegisterLayout, n: int, rng: np.random.Generator, occlude_share: float = 0.0, style: str = "classic"
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, list[str]]:
    """Frames, true volumes (L) and positions (N, E) at mid-exposure, red wheel style per frame.

    The renderer smears each element from its position at the frame time over the
    exposure; what a reader can see is the middle of that smear, so the truth
    here is the register at mid-exposure (frame time + exposure / 2).
    """
    volumes = random_volumes(rng, n, layout.capacity_l)
    positions = positions_from_volume(layout, volumes)
    lpt = np.array([e.litres_per_turn for e in layout.elements])
    frames, styles, mid_volumes = [], [], np.empty(n)
    renderer = None
    for k in range(n):
        if k % FRAMES_PER_CAMERA == 0:
            renderer = RegisterRenderer(layout, rng=rng, style=style)
        flow_l_s = rng.uniform(0, MAX_FLOW_L_S)
        exposure_l = flow_l_s * renderer.camera.exposure_s
        frame = renderer.render(positions[k], exposure_l / lpt * 10.0)
        if rng.random() < occlude_share:
            frame = occlude_marker(frame, renderer, layout, rng)
        frames.append(frame)
        styles.append(renderer.red_wheel_style)
        mid_volumes[k] = (volumes[k] + exposure_l / 2) % layout.capacity_l
    return frames, mid_volumes, positions_from_volume(layout, mid_volumes), styles


def steady_speed(
    layout: RegisterLayout, digit_reader, dial_reader, batch_frames: int, rng: np.random.Generator, n: int = 160
) -> dict[str, float]:
    """ms per frame by stage for one fixed camera (the bench case: markers tracked
    from frame to frame), volumes rising at ~Q3."""
    renderer = RegisterRenderer(layout, rng=rng)
    volumes = 1234.5 + 0.07 * np.arange(n)
    frames = [renderer.render(p) for p in positions_from_volume(layout, volumes)]
    reader = RegisterReader(layout, digit_reader, dial_reader)
    reader.read_frames(frames[:batch_frames])
    reader.times.__init__()
    for start in range(batch_frames, n, batch_frames):
        reader.read_frames(frames[start : start + batch_frames])
    return {k: round(v, 3) for k, v in reader.times.per_frame_ms().items()}


def circular(a: np.ndarray, b: np.ndarray, period: float = 10.0) -> np.ndarray:
    d = np.mod(np.abs(a - b), period)
    return np.minimum(d, period - d)


def element_report(layout: RegisterLayout, values: np.ndarray, truth: np.ndarray, styles: list[str]) -> list[dict]:
    """Per element accuracy on the frames where it was read."""
    out = []
    for e, element in enumerate(layout.elements):
        read = np.isfinite(values[:, e])
        dist = circular(values[read, e], truth[read, e])
        true_digit = np.floor(truth[read, e] + 0.5).astype(int) % 10
        read_digit = np.floor(values[read, e] + 0.5).astype(int) % 10
        wrong = dist >= 0.5
        style = [s for s, r in zip(styles, read, strict=True) if r]
        misreads = Counter(
            f"{t}->{r}" + (f" ({s})" if element.colour == "red" and element.kind == "wheel" else "")
            for t, r, s, w in zip(true_digit, read_digit, style, wrong, strict=True)
            if w
        )
        out.append(
            {
                "name": element.name,
                "kind": element.kind,
                "colour": element.colour,
                "n": int(read.sum()),
                "within_0_1": float(np.mean(dist <= 0.1 + 1e-9)) if read.any() else None,
                "within_0_2": float(np.mean(dist <= 0.2 + 1e-9)) if read.any() else None,
                "off_ge_0_5": float(np.mean(wrong)) if read.any() else None,
                "top_misreads": misreads.most_common(4),
            }
        )
    return out


OLD_READER = {"use_readable": False, "min_confidence": 0.5}
OLD_ALIGNER = {"detectors": ("tuned",), "drop_rms_ratio": float("inf"), "scale_limits": False}


def run_variant(
    variant: str,
    n: int,
    seed: int,
    digit_reader,
    dial_reader,
    batch_frames: int,
    occlude_share: float = 0.0,
    style: str = "classic",
    old: bool = False,
) -> dict:
    layout = RegisterLayout.from_dict(default_register_layout(variant))
    rng = np.random.default_rng(seed)
    frames, volumes, positions, styles = render_frames(layout, n, rng, occlude_share, style)
    reader = RegisterReader(layout, digit_reader, dial_reader, **(OLD_READER if old else {}))
    if old:
        reader.aligner = MarkerAligner(layout, **OLD_ALIGNER)
    reader.read_frames(frames[:batch_frames])  # warm-up, not timed
    reader.times.__init__()
    readings = []
    for start in range(0, n, batch_frames):
        readings += reader.read_frames(frames[start : start + batch_frames])
    step_l = layout.finest.litres_per_turn / 10.0
    ok = np.array([r.ok for r in readings])
    read_l = np.array([r.volume_l for r in readings])
    err_l = circular(read_l[ok], volumes[ok], layout.capacity_l)
    err_steps = err_l / step_l
    reasons = Counter(_reason_kind(r.reason) for r in readings if not r.ok)
    # frames not read whole whose lower elements still said their part (volume modulo one turn of
    # the highest of them): what the frames of a test point complete each other from
    partial = np.array([not r.ok and np.isfinite(r.partial_l) for r in readings])
    partial_err = np.array(
        [
            circular(np.array(r.partial_l), np.array(v % r.partial_modulus_l), r.partial_modulus_l)
            for r, v, is_partial in zip(readings, volumes, partial, strict=True)
            if is_partial
        ]
    )
    values = np.array([r.element_values for r in readings])
    resolution = np.array([r.resolution_l for r in readings])[ok]
    pct = (50, 90, 99, 100)
    return {
        "variant": f"{variant} {style} {'old' if old else 'new'}",
        "frames": n,
        "finest_step_l": step_l,
        "share_ok": float(ok.mean()),
        "share_aligned": float(np.mean([r.homography_ok for r in readings])),
        "share_three_markers": float(np.mean([len(r.markers_found) == 3 for r in readings])),
        "not_ok_reasons": reasons.most_common(8),
        "wrong_among_ok": float(np.mean(err_steps >= 0.5)) if ok.any() else None,
        "share_partial": float(partial.mean()),
        "n_partial_wrong": int(np.sum(partial_err / step_l >= 0.5)),
        "n_wrong": int(np.sum(err_steps >= 0.5)),
        "abs_error_l_pct": dict(zip(map(str, pct), np.percentile(err_l, pct).round(4).tolist(), strict=True))
        if ok.any()
        else None,
        "abs_error_steps_pct": dict(zip(map(str, pct), np.percentile(err_steps, pct).round(3).tolist(), strict=True))
        if ok.any()
        else None,
        "rms_error_l": float(np.sqrt(np.mean(err_l**2))) if ok.any() else None,
        "mean_resolution_l": float(resolution.mean()) if ok.any() else None,
        "share_within_1u": float(np.mean(err_l <= resolution)) if ok.any() else None,
        "share_within_2u": float(np.mean(err_l <= 2 * resolution)) if ok.any() else None,
        "elements": element_report(layout, values, positions, styles),
        "ms_per_frame": {k: round(v, 3) for k, v in reader.times.per_frame_ms().items()},
        "ms_per_frame_one_camera": steady_speed(layout, digit_reader, dial_reader, batch_frames, rng),
    }


def _reason_kind(reason: str) -> str:
    """Reason with its numbers blanked, to count kinds ("wheel m3x1 confidence # < #")."""
    return re.sub(r"(?<![\w.])[-+]?\d+(\.\d+)?(?![\w.])", "#", reason)


def print_report(res: dict) -> None:
    print(f"== {res['variant']}: {res['frames']} frames, finest step {res['finest_step_l']} L")
    print(
        f"read ok {100 * res['share_ok']:.1f} %  (aligned {100 * res['share_aligned']:.1f} %, "
        f"{100 * res['share_three_markers']:.1f} % on 3 markers);"
        f" wrong among ok {res['n_wrong']} ({100 * (res['wrong_among_ok'] or 0):.2f} %)"
    )
    print(
        f"not read whole but lower elements read (partial) {100 * res['share_partial']:.1f} %, "
        f"of them wrong {res['n_partial_wrong']}"
    )
    for reason, count in res["not_ok_reasons"]:
        print(f"   not ok x{count}: {reason}")
    if res["abs_error_l_pct"]:
        print(f"|error| L   p50/p90/p99/max: {res['abs_error_l_pct']}")
        print(
            f"|error| steps p50/p90/p99/max: {res['abs_error_steps_pct']}  "
            f"rms {res['rms_error_l']:.4f} L, stated u {res['mean_resolution_l']:.4f} L "
            f"(|error| ≤ u {100 * res['share_within_1u']:.1f} %, "
            f"≤ 2u {100 * res['share_within_2u']:.1f} %)"
        )
    for el in res["elements"]:
        if el["n"]:
            print(
                f"   {el['name']:>9} {el['colour']:>5} {el['kind']:5} n={el['n']:4d} "
                f"±0.1 {100 * el['within_0_1']:5.1f} %  ±0.2 {100 * el['within_0_2']:5.1f} %  "
                f"≥0.5 {100 * el['off_ge_0_5']:4.1f} %  {el['top_misreads']}"
            )
    print(f"ms/frame, new camera every {FRAMES_PER_CAMERA} frames: {res['ms_per_frame']}")
    print(f"ms/frame, one camera (markers tracked): {res['ms_per_frame_one_camera']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-frames", type=int, default=16)
    parser.add_argument("--variants", nargs="+", default=["dials", "wheels"])
    parser.add_argument("--styles", nargs="+", default=["classic", "varied"], help="render styles")
    parser.add_argument("--new-only", action="store_true", help="skip the old reader configuration")
    parser.add_argument(
        "--occlude-share",
        type=float,
        default=0.0,
        help="share of frames with one marker covered (tests 3-marker alignment)",
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument(
        "--model-dir", help="folder with digit_wheel.onnx and pointer_dial.onnx (default: the shipped models)"
    )
    args = parser.parse_args(argv)
    from meterbench.models import DialReader, DigitReader

    cv2.setNumThreads(1)  # one thread for OpenCV too, as on a bench PC per camera

    model_dir = Path(args.model_dir) if args.model_dir else None
    digit_reader = DigitReader(model_dir / "digit_wheel.onnx" if model_dir else None, num_threads=1)
    dial_reader = DialReader(model_dir / "pointer_dial.onnx" if model_dir else None, num_threads=1)
    results = []
    for i, variant in enumerate(args.variants):
        for style in args.styles:
            for old in (False,) if args.new_only else (True, False):
                res = run_variant(
                    variant,
                    args.frames,
                    args.seed + i,
                    digit_reader,
                    dial_reader,
                    args.batch_frames,
                    args.occlude_share,
                    style,
                    old,
                )
                print_report(res)
                results.append(res)
    print("summary: variant style reader | read ok | wrong among ok | |error| p99 steps | partial (wrong)")
    for res in results:
        p99 = (res["abs_error_steps_pct"] or {}).get("99")
        print(
            f"  {res['variant']:<22} | {100 * res['share_ok']:5.1f} % | {res['n_wrong']:3d} "
            f"({100 * (res['wrong_among_ok'] or 0):.2f} %) | {p99} | {100 * res['share_partial']:5.1f} % "
            f"({res['n_partial_wrong']})"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"models": {"digit": digit_reader.model_sha256, "dial": dial_reader.model_sha256}, "results": results},
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
