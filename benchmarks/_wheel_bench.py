"""Shared code of benchmarks/digits.py and benchmarks/dials.py: dev-split accuracy and speed."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meterbench.models._calibrate import HIT_TOLERANCE  # noqa: E402
from meterbench.models._metrics import abstain_metrics, expected_calibration_error, wheel_metrics  # noqa: E402
from meterbench.models._runtime import (  # noqa: E402
    DialReader,
    DigitReader,
    InputSpec,
    circular_distance,
    preprocess_crops,
)
from meterbench.models.dial_geometry import read_dial_geometry  # noqa: E402
from meterbench.models.training.negatives import negative_crops  # noqa: E402
from meterbench.models.training.synthetic_dials import POINTER_STYLES, render_dial  # noqa: E402
from meterbench.models.training.train import DATA_DIR, DATA_ROOT, DEV_UNITS, _split_units  # noqa: E402

N_NEGATIVES = 1200
NEGATIVE_SEED = 1  # the same non-wheel set as benchmarks/crossval.py


def dev_crops(
    kind: str,
    data_dir: Path,
    dev_units: tuple[str, ...],
) -> tuple[list[str], list[np.ndarray], np.ndarray, list[str]]:
    """Paths, BGR images, labels (tenths) and groups of the crops in the dev split units."""
    unit_of = _split_units(data_dir)
    paths, images, tenths, groups = [], [], [], []
    with (data_dir / "labels.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if unit_of.get(row["group"], row["group"]) not in dev_units and row["group"] not in dev_units:
                continue
            paths.append(row["path"])
            images.append(cv2.imread(str(data_dir / row["path"]), cv2.IMREAD_COLOR))
            tenths.append(int(row["value_tenths"]))
            groups.append(row["group"])
    return paths, images, np.array(tenths), groups


def _timings(reader, batch: np.ndarray, repeats: int) -> np.ndarray:
    for _ in range(20):
        reader.run_batch(batch)
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        reader.run_batch(batch)
        times[i] = time.perf_counter() - start
    return times


def speed(reader) -> dict[str, float]:
    """ONNX Runtime model-call speed on one thread: crops/s at batch 1 and 32, latency (ms)."""
    rng = np.random.default_rng(0)
    one = rng.normal(size=(1, *reader.input_spec.shape)).astype(np.float32)
    many = rng.normal(size=(32, *reader.input_spec.shape)).astype(np.float32)
    t1 = _timings(reader, one, 2000)
    t32 = _timings(reader, many, 300)
    return {
        "crops_per_s_batch1": 1 / float(np.median(t1)),
        "crops_per_s_batch32": 32 / float(np.median(t32)),
        "latency_p50_ms_batch1": 1e3 * float(np.median(t1)),
        "latency_p99_ms_batch1": 1e3 * float(np.percentile(t1, 99)),
    }


def near_duplicate_label_spread(
    images: list[np.ndarray], tenths: np.ndarray, threshold: float = 0.05
) -> dict[str, float]:
    """How consistent the labels themselves are: each crop's nearest look-alike in its group.

    Crops are compared as standardised 16×10 grey thumbnails (mean squared
    difference < `threshold`: about the same wheel position seen twice). The share
    of such pairs whose labels differ by 1 tenth, or by ≥ 2, is a hint of label
    noise, not a bound: a genuine 0.1 step can look alike at this size.
    """
    thumbs = preprocess_crops(images, InputSpec("grey", 16, 10)).reshape(len(images), -1)
    d2 = ((thumbs[:, None, :] - thumbs[None, :, :]) ** 2).mean(-1)
    np.fill_diagonal(d2, np.inf)
    nearest = d2.argmin(1)
    close = d2[np.arange(len(thumbs)), nearest] < threshold
    gap = np.rint(circular_distance(tenths, tenths[nearest], period=100))[close]
    n = max(1, int(close.sum()))
    return {
        "n_pairs": int(close.sum()),
        "label_gap_1_tenth": float(np.sum(gap == 1) / n),
        "label_gap_ge_2_tenths": float(np.sum(gap >= 2) / n),
    }


def _print_figures(title: str, figures: dict[str, float]) -> None:
    print(title)
    for key, value in figures.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"  {key:26s} {text}")


RENDERED_STYLES = [(style, "none") for style in POINTER_STYLES] + [("wedge", "metal"), ("needle", "metal")]
RENDER_SEED = 12345  # never used for a choice


def rendered_dial_styles(reader, n: int = 200) -> dict[str, dict[str, float]]:
    """Per rendered pointer style (training/synthetic_dials.py): the reader's figures, and the geometric
    reader's tip-sure share and share sure of the wrong end (the tail). Same renderer as training's
    synthetic dials (a model trained with --synthetic has seen the styles, not these crops)."""
    out = {}
    for style, hub in RENDERED_STYLES:
        rng = np.random.default_rng(RENDER_SEED)
        crops, tenths = zip(*[render_dial(rng, (94, 94), style, hub) for _ in range(n)], strict=True)
        truth = np.array(tenths) / 10.0
        readings = reader.read(list(crops))
        geometry = read_dial_geometry(list(crops))
        geometry_error = circular_distance(geometry.value, truth)
        out[f"{style}/{hub}"] = {
            **abstain_metrics(readings.value, readings.readable, np.rint(np.array(tenths)).astype(int) % 100),
            "geometry_tip_sure": float(geometry.tip_sure.mean()),
            "geometry_wrong_end": float(np.mean(geometry.tip_sure & (geometry_error >= 4.5))),
        }
    return out


def main(kind: str) -> int:
    parser = argparse.ArgumentParser(description=f"{kind} reader benchmark on the dev split")
    parser.add_argument("--model", help="ONNX file (default: the shipped one)")
    parser.add_argument("--data", help="data folder with labels.csv")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    reader = (DigitReader if kind == "digit" else DialReader)(args.model, num_threads=1)
    data_dir = Path(args.data) if args.data else DATA_DIR[kind]
    dev_info = reader.info.get("dev", {})
    dev_units = tuple(dev_info.get("units") or DEV_UNITS[kind])
    paths, images, tenths, groups = dev_crops(kind, data_dir, dev_units)
    started = time.perf_counter()
    readings = reader.read(images)
    end_to_end = len(images) / (time.perf_counter() - started)
    value, confidence = readings.value, readings.confidence
    negatives, negative_kinds = negative_crops(kind, N_NEGATIVES, NEGATIVE_SEED, DATA_ROOT)
    negative_unreadable = ~reader.read(negatives).readable
    hit = circular_distance(value, tenths / 10) <= HIT_TOLERANCE + 1e-6
    chosen_on = reader.info.get("abstain", {}).get("chosen_on", [])
    result = {
        "model": str(reader.model_path),
        "sha256": reader.model_sha256,
        "dev_units": list(dev_units),
        "held_out": bool(dev_info.get("held_out", False)),
        "all": wheel_metrics(value, confidence, tenths),
        "abstain": {
            **abstain_metrics(value, readings.readable, tenths),
            "ece": expected_calibration_error(confidence, hit),
            "chosen_on_these_units": bool(set(chosen_on) & set(dev_units)),
        },
        "non_wheel_unreadable": float(negative_unreadable.mean()),
        "non_wheel_by_kind": {
            k: float(negative_unreadable[np.array(negative_kinds) == k].mean()) for k in sorted(set(negative_kinds))
        },
    }
    for group in sorted(set(groups)):
        keep = np.array([g == group for g in groups])
        result[group] = wheel_metrics(value[keep], confidence[keep], tenths[keep])
        result[group]["labels"] = near_duplicate_label_spread(
            [im for im, k in zip(images, keep, strict=True) if k], tenths[keep]
        )
    if kind == "dial":
        result["rendered_styles"] = rendered_dial_styles(reader)
    result["speed"] = speed(reader)
    result["speed"]["end_to_end_crops_per_s_incl_preprocessing"] = end_to_end
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"model {result['model']} sha256 {result['sha256'][:16]}")
    if not result["held_out"]:
        print("WARNING: this model was trained on the dev units too: figures are NOT held out")
    print(f"dev units: {', '.join(dev_units)}")
    _print_figures("dev split, all crops:", result["all"])
    note = " (abstention chosen on these units: NOT held out)" if result["abstain"]["chosen_on_these_units"] else ""
    _print_figures(f"dev split, abstention{note}:", result["abstain"])
    print(f"non-{kind} images unreadable: {result['non_wheel_unreadable']:.4f} {result['non_wheel_by_kind']}")
    for group in sorted(set(groups)):
        f = result[group]
        print(
            f"  {group}: n {f['n']} exact {f['exact_tenths']:.4f} ±0.1 {f['within_0_1']:.4f}"
            f" ±0.2 {f['within_0_2']:.4f} int {f['integer_acc']:.4f}"
            f" off≥0.5 {f['off_ge_0_5']:.4f}"
        )
        spread = f["labels"]
        print(
            f"    label check: {spread['n_pairs']} look-alike pairs, labels 1 tenth apart "
            f"{spread['label_gap_1_tenth']:.3f}, ≥2 apart {spread['label_gap_ge_2_tenths']:.3f}"
        )
    if kind == "dial":
        print(f"rendered pointer styles ({RENDER_SEED=}, % of crops; geometry: tip sure, sure of the wrong end):")
        for name, f in result["rendered_styles"].items():
            print(
                f"  {name:16s} ±0.2 {100 * f['within_0_2']:5.1f} wrong {100 * f['wrong']:5.1f}"
                f" w&r {100 * f['wrong_readable']:5.1f} abstained {100 * f['abstained']:5.1f}"
                f" | tip sure {100 * f['geometry_tip_sure']:5.1f} wrong end {100 * f['geometry_wrong_end']:5.1f}"
            )
    _print_figures("ONNX Runtime, 1 thread:", result["speed"])
    return 0
