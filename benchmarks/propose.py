"""`meterbench layout propose` against known boxes: simulated renders and hand-checked real photos.

    /tmp/venv/bin/python benchmarks/propose.py [--renders 40] [--seed 0] [--compare-with REV] [--verbose]

Renders: the simulator's registers (all four variants, random camera, tilt up to 3 deg, light,
glare, blur, noise; with ArUco markers and, when the renderer supports it, without), the true
boxes mapped into the frame through the render's homography.  Real photos:
tests/data/meter_photos (boxes.json, hand-checked), printed apart: the dev split (looked at
while building), the test split (held out: report this one) and test-new (held out, added
later: another unit and camera).  An element is found when its proposal has
the right kind and name (significance order) and lies within 3 px (wheels: every box edge;
dials: centre and radius).  A photo "needs a manual fix" when any element is not found or an
extra one was proposed.  The baseline is the same count for the renders, measured in the same
run: real photos are reported as a ratio to it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from meterbench.sim.register_render import CameraModel, RegisterRenderer
from meterbench.vision import propose
from meterbench.vision.layout import REGISTER_VARIANTS, RegisterLayout, default_register_layout, positions_from_volume
from meterbench.vision.propose import project_layout, score_proposal, text_detector

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "data" / "meter_photos"


def render_case(seed: int, markers: bool) -> tuple[np.ndarray, list[dict]]:
    """A still frame of a simulated register and its true elements in frame px."""
    rng = np.random.default_rng(seed)
    register = default_register_layout(REGISTER_VARIANTS[seed % len(REGISTER_VARIANTS)])
    layout = RegisterLayout.from_dict(register)
    camera = replace(CameraModel.random(rng, layout.plate_size_px), shake_px=0.0, shake_deg=0.0)
    kwargs = {} if markers else {"markers": False}
    renderer = RegisterRenderer(layout, rng=rng, camera=camera, **kwargs)
    frame = renderer.render(positions_from_volume(layout, float(rng.uniform(0, 99_000))))
    w, h = layout.plate_size_px
    plate = np.array([(0, 0), (w, 0), (w, h), (0, h)], np.float32)
    hom = cv2.getPerspectiveTransform(plate, np.array(camera.plate_corners_px, np.float32))
    return frame, project_layout(register, hom, camera.frame_size_px)


def score_case(
    image: np.ndarray, truth: list[dict], text: bool | None = False, module=None, **litres
) -> tuple[list[dict], int, float]:
    """(per-element rows, number of extra proposed elements, seconds).  Each row also says whether
    a missed element was proposed without any unsure reason (a silent wrong box).  `module`: the
    propose module to run (default: this tree's; --compare-with loads an older one)."""
    module = module or propose
    kwargs = {"text": text} if "text" in inspect.signature(module.propose_layout).parameters else {}
    t0 = time.perf_counter()
    unsure: dict = {}
    try:
        proposal = module.propose_layout(image, reference_image="x.png", **kwargs, **litres)
        proposed = proposal.register["elements"]
        unsure = proposal.register.get("proposed", {}).get("unsure", {})
    except Exception as exc:  # noqa: BLE001 - a benchmark counts a refusal as all missed
        print(f"    refused: {exc}")
        proposed = []
    seconds = time.perf_counter() - t0
    rows = score_proposal(proposed, truth)
    for row in rows:
        row["silent"] = (
            not row["found"] and row.get("proposed_name") is not None and not unsure.get(row["proposed_name"])
        )
    return rows, max(len(proposed) - len(truth), 0), seconds


def summarise(label: str, cases: list[tuple[str, list[dict], int, float]]) -> tuple[int, int, int, int]:
    found = sum(r["found"] for _, rows, _, _ in cases for r in rows)
    total = sum(len(rows) for _, rows, _, _ in cases)
    silent = sum(r.get("silent", False) for _, rows, _, _ in cases for r in rows)
    fix = sum(1 for _, rows, extra, _ in cases if extra or not all(r["found"] for r in rows))
    ms = 1e3 * np.mean([s for *_, s in cases])
    by_kind = {
        k: (
            sum(r["found"] for _, rows, _, _ in cases for r in rows if r["kind"] == k),
            sum(1 for _, rows, _, _ in cases for r in rows if r["kind"] == k),
        )
        for k in ("wheel", "dial")
    }
    print(
        f"{label}: {found}/{total} elements within 3 px ({100 * found / max(total, 1):.1f} %; "
        f"wheels {by_kind['wheel'][0]}/{by_kind['wheel'][1]}, dials {by_kind['dial'][0]}/{by_kind['dial'][1]}), "
        f"{silent} missed without an unsure mark, {fix}/{len(cases)} images need a manual fix, {ms:.0f} ms per image"
    )
    return found, total, fix, len(cases)


def load_revision(revision: str):
    """meterbench/vision/propose.py as it was at a git revision, as a module (for before/after)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:meterbench/vision/propose.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType(f"propose_at_{revision}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:meterbench/vision/propose.py", "exec"), module.__dict__)  # noqa: S102
    return module


def real_photos(label: str, truth: dict, module, text: bool, verbose: bool, baseline) -> None:
    """The hand-checked photos, dev, test and test-new split apart."""
    for split in ("dev", "test", "test-new"):
        cases = []
        for name, photo in truth["photos"].items():
            if photo.get("split", "dev") != split:
                continue
            image = cv2.imread(str(PHOTOS / name))
            litres = {"wheel_litres": photo["wheel_litres"], "dial_litres": None}
            rows, extra, seconds = score_case(image, photo["elements"], text=text, module=module, **litres)
            cases.append((name, rows, extra, seconds))
            if verbose:
                errors = ", ".join(f"{r['name']} {r['error_px']}{'' if r['found'] else '!'}" for r in rows)
                print(f"  {name}: {errors}")
        if not cases:
            continue
        which = {
            "dev": "dev (tuned on)",
            "test": "test (held out: evaluated only)",
            "test-new": "test-new (held out, another unit and camera: evaluated only)",
        }[split]
        found, total, _, _ = summarise(f"{label}, {which}", cases)
        if baseline and baseline[0]:
            ratio = (found / max(total, 1)) / (baseline[0] / max(baseline[1], 1))
            print(f"    / renders with markers (elements within 3 px): {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=40, help="simulated frames per marker setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="per-element errors of the real photos")
    parser.add_argument(
        "--compare-with", metavar="REV", help="also run propose.py as it was at this git revision (before/after)"
    )
    args = parser.parse_args()
    cv2.setNumThreads(1)
    settings = [True] + ([False] if "markers" in inspect.signature(RegisterRenderer.__init__).parameters else [])
    baseline = None
    before = load_revision(args.compare_with) if args.compare_with else None
    for markers in settings:
        cases, cases_before = [], []
        for k in range(args.renders):
            frame, truth = render_case(args.seed + k, markers)
            cases.append((f"render {k}", *score_case(frame, truth)))
            if before is not None:
                cases_before.append((f"render {k}", *score_case(frame, truth, module=before)))
        label = f"renders {'with' if markers else 'without'} markers"
        if before is not None:
            summarise(f"{label}, propose at {args.compare_with}", cases_before)
        figures = summarise(f"{label}, this tree", cases)
        baseline = baseline or figures
    truth = json.loads((PHOTOS / "boxes.json").read_text())
    if before is not None:
        real_photos(f"real photos, propose at {args.compare_with}", truth, before, False, args.verbose, baseline)
    detector = text_detector()
    if detector is None:
        print("text detector: not installed ([ocr] extra), real photos without it only")
    else:
        detector.boxes(np.zeros((64, 64, 3), np.uint8))  # the first run pays the model's start-up
    for text in [False] + ([True] if detector is not None else []):
        label = f"real photos, this tree, {'with' if text else 'without'} the text detector"
        real_photos(label, truth, None, text, args.verbose, baseline)


if __name__ == "__main__":
    main()
