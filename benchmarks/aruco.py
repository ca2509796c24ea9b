"""ArUco plate alignment on small, blurred, glared markers: detection rate and element box error.

Renders the "dials" register with markers of 25-40 px side in the camera frame
(the plate shrunk accordingly), Gaussian blur 0.7-2.0 px, with and without a
glare blob over one marker, sensor noise, no shake (so the true homography is
known), and aligns every frame with several aligner configurations in the
same run:

- "old": the tuned detector parameters only, a marker dropped whenever the
  other three place it > 4 plate px off, fit limits in plate px whatever the
  plate's size in the frame (the behaviour before issue 17);
- "default params": OpenCV's default detector parameters only (sub-pixel corners);
- "new": tuned, then default, then wide-window parameters for missed markers; a
  marker dropped only when the other three then fit twice as well; fit limits
  scaled by plate px per camera px (meterbench's default).

Prints per marker size and per configuration: frames with all 4 markers, with
>= 3 (aligned), and the element box error (max over all element box corners,
camera px, estimated vs true homography: p50 / p95 / max), plus ms per frame.

    python benchmarks/aruco.py --frames 30 [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meterbench.sim.register_render import CameraModel, RegisterRenderer, tilted_plate_corners  # noqa: E402
from meterbench.vision import RegisterLayout, default_register_layout, positions_from_volume  # noqa: E402
from meterbench.vision.align import MarkerAligner, element_crop_box  # noqa: E402

CONFIGS = {
    "old": {"detectors": ("tuned",), "drop_rms_ratio": math.inf, "scale_limits": False},
    "default params": {"detectors": ("default",)},
    "new": {},
}


def small_marker_camera(
    rng: np.random.Generator, layout: RegisterLayout, marker_px: float, blur_sigma: float, glare_on_marker: bool
) -> CameraModel:
    """A still camera showing the plate's markers at `marker_px` side, tilted a little."""
    pw, ph = layout.plate_size_px
    side = float(np.ptp(np.array(layout.markers[0].corners_px)[:, 0]))
    scale = marker_px / side
    w, h = pw * scale, ph * scale
    cx, cy = 320 + rng.uniform(-30, 30), 180 + rng.uniform(-20, 20)
    corners = tilted_plate_corners(rng, w, h, cx, cy)
    glare = None
    if glare_on_marker:  # centred near one marker of the plate
        marker = layout.markers[int(rng.integers(len(layout.markers)))]
        mx, my = np.mean(np.array(marker.corners_px), axis=0)
        homography = cv2.getPerspectiveTransform(
            np.array([(0, 0), (pw, 0), (pw, ph), (0, ph)], np.float32), corners.astype(np.float32)
        )
        gx, gy = cv2.perspectiveTransform(np.array([[[mx, my]]], np.float32), homography)[0, 0]
        glare = (float(gx + rng.normal(0, 4)), float(gy + rng.normal(0, 4)), float(1.2 * marker_px), 0.45)
    return CameraModel(
        plate_corners_px=tuple((float(x), float(y)) for x, y in corners),
        shake_px=0.0,
        shake_deg=0.0,
        glare=glare,
        noise_sigma=float(rng.uniform(1.0, 3.0)),
        blur_sigma=blur_sigma,
        light_gradient=float(rng.uniform(0.05, 0.25)),
        light_angle_deg=float(rng.uniform(0, 360)),
    )


def true_box_corners(layout: RegisterLayout, camera: CameraModel, plate_pts: np.ndarray) -> np.ndarray:
    """Camera px (edge convention) of plate points (edge convention) under the camera's exact homography."""
    pw, ph = layout.plate_size_px
    homography = cv2.getPerspectiveTransform(
        np.array([(0, 0), (pw, 0), (pw, ph), (0, ph)], np.float32), np.array(camera.plate_corners_px, np.float32)
    )
    return cv2.perspectiveTransform(plate_pts.reshape(-1, 1, 2), homography).reshape(-1, 2)


def box_corners(layout: RegisterLayout) -> np.ndarray:
    pts = []
    for element in layout.elements:
        x, y, w, h = element_crop_box(element)
        pts += [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    return np.array(pts, np.float64)


def run(frames: int, seed: int, sizes: list[float], blurs: list[float]) -> None:
    layout = RegisterLayout.from_dict(default_register_layout("dials"))
    aligners = {name: MarkerAligner(layout, **options) for name, options in CONFIGS.items()}
    plate_pts = box_corners(layout)
    rng = np.random.default_rng(seed)
    print(f"{frames} frames per marker size x blur {blurs} px, half with glare over one marker")
    header = (
        f"{'marker':>7} {'config':>15} {'4 found':>8} {'>=3 (aligned)':>14} {'box err p50/p95/max px':>24} {'ms':>6}"
    )
    print(header)
    totals = {name: {"all4": 0, "aligned": 0, "n": 0, "err": [], "s": 0.0} for name in CONFIGS}
    for size in sizes:
        stats = {name: {"all4": 0, "aligned": 0, "n": 0, "err": [], "s": 0.0} for name in CONFIGS}
        for k in range(frames):
            blur = blurs[k % len(blurs)]
            camera = small_marker_camera(rng, layout, size, blur, glare_on_marker=k % 2 == 1)
            renderer = RegisterRenderer(layout, rng=rng, camera=camera)
            frame = renderer.render(positions_from_volume(layout, float(rng.uniform(0, 99999))))
            truth = true_box_corners(layout, camera, plate_pts)
            for name, aligner in aligners.items():
                started = time.perf_counter()
                alignment = aligner.align(frame)
                elapsed = time.perf_counter() - started
                for bucket in (stats[name], totals[name]):
                    bucket["n"] += 1
                    bucket["s"] += elapsed
                    bucket["all4"] += len(alignment.markers_found) == 4
                    if alignment:
                        bucket["aligned"] += 1
                        est = cv2.perspectiveTransform(
                            plate_pts.reshape(-1, 1, 2), alignment.camera_from_plate
                        ).reshape(-1, 2)
                        bucket["err"].append(float(np.linalg.norm(est - truth, axis=1).max()))
        for name in CONFIGS:
            print_row(f"{size:.0f} px", name, stats[name])
    for name in CONFIGS:
        print_row("all", name, totals[name])


def print_row(label: str, name: str, bucket: dict) -> None:
    n = bucket["n"]
    err = np.array(bucket["err"]) if bucket["err"] else np.array([math.nan])
    print(
        f"{label:>7} {name:>15} {bucket['all4']:>4}/{n:<3} {bucket['aligned']:>8}/{n:<5} "
        f"{np.percentile(err, 50):7.2f} {np.percentile(err, 95):7.2f} {err.max():7.2f} "
        f"{1e3 * bucket['s'] / max(n, 1):6.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames per marker size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=float, nargs="+", default=[25.0, 30.0, 35.0, 40.0])
    parser.add_argument("--blurs", type=float, nargs="+", default=[0.7, 1.2, 1.6, 2.0])
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    run(args.frames, args.seed, args.sizes, args.blurs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
