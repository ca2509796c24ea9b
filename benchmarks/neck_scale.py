"""Neck-scale reading and tank-verification benchmark: python benchmarks/neck_scale.py

Part 1: ``--readings`` frames rendered under random conditions (backing, plate
polarity, water tint, tilt ±4°, glare stripes, bubbles, hidden marks, noise,
blur, mark spacing 12–20 px, hint off by ±5 px sideways and ±20 px vertically) at random levels; the scale
reading error in divisions (p50, p95, max), the share flagged "cannot read",
readings off by more than 0.25 division that were NOT flagged, and CPU ms per
reading. Part 2: ``--sessions`` simulated tank sessions (3 runs each) through
``evaluate_tank_session``: |error − truth| in %-points and wrong pass/fail
verdicts. Targets (issue 4): p95 ≤ 0.1 division, no unflagged error > 0.25
division, tank error within 0.02 %-points, no wrong verdict, ≤ 20 ms per reading.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from meterbench.session import load_session  # noqa: E402
from meterbench.sim import simulate_tank  # noqa: E402
from meterbench.sim.tank_render import (  # noqa: E402
    random_conditions,
    render_neck,
    stress_conditions,
)
from meterbench.verify.tank import evaluate_tank_session  # noqa: E402
from meterbench.vision import NeckScaleGeometry, read_neck_scale  # noqa: E402


def _random_case(rng: np.random.Generator) -> tuple[NeckScaleGeometry, NeckScaleGeometry, float]:
    """(true geometry, hint given to the reader, level mL) for one frame."""
    px_per_division = float(rng.uniform(12.0, 20.0))
    truth = NeckScaleGeometry(px_per_division=px_per_division, zero_mark_y_px=float(rng.uniform(185.0, 215.0)))
    visible = min(9.5, 175.0 / px_per_division)
    level_ml = float(rng.uniform(-visible, visible)) * truth.ml_per_division
    sideways = float(rng.uniform(-5, 5))  # the camera moved since the hint was set
    hint = replace(
        truth,
        zero_mark_y_px=truth.zero_mark_y_px + float(rng.uniform(-20, 20)),
        marks_x_px=truth.marks_x_px + sideways,
        glass_x_px=tuple(v + sideways + float(rng.uniform(-1, 1)) for v in truth.glass_x_px),
    )
    return truth, hint, level_ml


def bench_readings(count: int, seed: int, *, stress: bool = False) -> dict:
    """Reading errors (divisions) over ``count`` rendered frames; stress: harsh, JPEG q 60."""
    rng = np.random.default_rng(seed)
    errors, flagged, reasons, cpu_ms = [], 0, {}, []
    for _ in range(count):
        truth, hint, level_ml = _random_case(rng)
        conditions = stress_conditions(rng) if stress else random_conditions(rng, hard=True)
        frame = render_neck(level_ml, truth, conditions)
        if stress:
            frame = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_COLOR)
        start = time.process_time()
        reading = read_neck_scale(frame, hint)
        cpu_ms.append(1000.0 * (time.process_time() - start))
        if reading.ok:
            errors.append((reading.level_ml - level_ml) / truth.ml_per_division)
        else:
            flagged += 1
            reasons[reading.reason.split(":")[0]] = reasons.get(reading.reason.split(":")[0], 0) + 1
    abs_err = np.abs(np.array(errors)) if errors else np.full(1, np.nan)
    return {
        "readings": count,
        "read": len(errors),
        "flagged": flagged,
        "flagged_share_pct": 100.0 * flagged / count,
        "flag_reasons": reasons,
        "error_div_p50": float(np.percentile(abs_err, 50)),
        "error_div_p95": float(np.percentile(abs_err, 95)),
        "error_div_max": float(abs_err.max()),
        "unflagged_over_0_25_div": int(np.sum(abs_err > 0.25)),
        "cpu_ms_median": float(np.median(cpu_ms)),
        "cpu_ms_p95": float(np.percentile(cpu_ms, 95)),
    }


def bench_sessions(count: int, seed: int) -> dict:
    deltas, wrong, inconclusive, runs = [], [], 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(count):
            folder = simulate_tank(Path(tmp) / f"s{index}", seed=seed + index, runs=3)
            truth = json.loads((folder / "truth.json").read_text())
            true_errors = {p["name"]: p["true_error_pct"] for p in truth["instruments"][0]["points"]}
            [tank] = evaluate_tank_session(load_session(folder))
            for point in tank.to_dict()["points"]:
                runs += 1
                if point["verdict"] == "inconclusive":
                    inconclusive += 1
                    continue
                true_error = true_errors[point["name"]]
                deltas.append(abs(point["error_pct"] - true_error))
                expected = "fail" if abs(true_error) > point["mpe_pct"] else "pass"
                if point["verdict"] != expected:
                    wrong.append(f"seed {seed + index} {point['name']}: {point['verdict']} (true {true_error:+.4f} %)")
    return {
        "sessions": count,
        "runs": runs,
        "inconclusive": inconclusive,
        "max_abs_delta_pct_points": float(max(deltas)) if deltas else float("nan"),
        "mean_abs_delta_pct_points": float(np.mean(deltas)) if deltas else float("nan"),
        "wrong_verdicts": len(wrong),
        "wrong": wrong,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=240)
    parser.add_argument(
        "--stress", type=int, default=100, help="extra readings under harsh conditions (must be read or flagged)"
    )
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = {
        "scale_reading": bench_readings(args.readings, args.seed),
        "scale_reading_stress": bench_readings(args.stress, 500 + args.seed, stress=True),
        "tank_runs": bench_sessions(args.sessions, 1000 + args.seed),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
