"""End-to-end water-meter benchmark: simulated sessions with known truth -> meterbench run.

Prints, over all meters x test points: |error_pct - true_error_pct| (max, p95),
points whose true error lies outside error ± U, wrong pass/fail verdicts
(against the true error and the same decision rule), inconclusive points, and
the replay speed against real time (session duration / processing time, one
process); with a reflection in the frames, the points are also split by whether the glared
element stands still during the point ("glare still": it can be known from the other frames)
or turns ("glare moving": the volume needs it; inconclusive when it is never read). Each style
of simulated registers (`--styles classic varied`; "varied":
TrueType digits, curved drums, a reflection over one element of each register for
the whole session, Bayer noise) is verified twice in the same run: "old" (frames
used only when read whole, a fixed 0.5 confidence cut, the aligner before issue
17) and "new" (the defaults: the readers' `readable`, frames completing each
other). Usage:

    python benchmarks/water_meter.py --sessions 7 --meters 3 --profile short [--styles classic varied]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from meterbench.calibration import format_test_plan, plan_test_volumes, water_meter_flows
from meterbench.session.reader import load_session
from meterbench.sim import simulate_water_meter
from meterbench.verify.run import RegisterReaders, verify_session
from meterbench.verify.water_meter import ReadingOptions


def session_duration_s(session) -> float:
    """Span of the recorded camera frames (s): the session's real-time length."""
    spans = [session.camera(c["id"]).frame_times for c in session.manifest["cameras"]]
    return max(float(t[-1] - t[0]) for t in spans if len(t))


class OldReaders(RegisterReaders):
    """The register reading before issue 17: a fixed 0.5 confidence cut (the readers' own
    `readable` ignored) and the tuned-only ArUco detector that drops noisy markers."""

    def __call__(self, instrument: dict, *args, **kwargs):
        from meterbench.vision.align import MarkerAligner

        reader = super().__call__(instrument, *args, **kwargs)
        reader.use_readable, reader.min_confidence = False, 0.5
        if reader.layout.markers:
            reader.aligner = MarkerAligner(
                reader.layout, detectors=("tuned",), drop_rms_ratio=math.inf, scale_limits=False
            )
        return reader


def glared_element(session, instrument: dict) -> str | None:
    """The element a reflection covers in this meter's camera (its centre saturated in the first
    frame, the others not), found in the recorded video; None when there is none."""
    import cv2

    from meterbench.vision import RegisterLayout
    from meterbench.vision.align import MarkerAligner

    layout = RegisterLayout.from_dict(instrument["register"])
    if not layout.markers:
        return None
    [(_, _, frame)] = list(session.camera(instrument["camera"]).iter_frames([0]))
    alignment = MarkerAligner(layout).align(frame) if frame is not None else None
    if not alignment:
        return None
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    centres = np.array([[[x + w / 2, y + h / 2] for x, y, w, h in (e.box_px for e in layout.elements)]])
    means = []
    for cx, cy in cv2.perspectiveTransform(centres, alignment.camera_from_plate)[0]:
        x, y = int(round(cx)), int(round(cy))
        means.append(float(grey[y - 4 : y + 5, x - 4 : x + 5].mean()))
    order = np.argsort(means)
    return layout.elements[order[-1]].name if means[order[-1]] > 235 and means[order[-2]] < 215 else None


def glare_category(instrument: dict, glared: str | None, true_point: dict) -> str:
    """'no glare', 'glare still' (the glared element shows one digit all point long) or 'glare moving'."""
    if glared is None:
        return "no glare"
    element = next(e for e in instrument["register"]["elements"] if e["name"] == glared)
    step_l = element["litres_per_turn"] / 10.0
    start, stop = true_point["register_start_l"], true_point["register_stop_l"]
    return "glare moving" if math.floor(start / step_l) != math.floor(stop / step_l) else "glare still"


def evaluate(sessions: list, options: ReadingOptions, readers: RegisterReaders) -> dict:
    """Figures over every meter x point of the sessions for one reading configuration."""
    deltas, outside_u, wrong, inconclusive, rows = [], 0, 0, 0, []
    instant_u_l: dict[str, list[float]] = {}
    by_glare: dict[str, dict] = {}
    total_real_s = total_cpu_s = 0.0
    for folder, session in sessions:
        started = time.process_time()
        report, _ = verify_session(session, options, readers)
        total_cpu_s += time.process_time() - started
        total_real_s += session_duration_s(session)
        truth = {(i["id"], p["name"]): p for i in session.truth["instruments"] for p in i["points"]}
        declared = {i["id"]: i for i in session.manifest["instruments"]}
        for instrument in report["instruments"]:
            glared = glared_element(session, declared[instrument["id"]])
            for point in instrument["points"]:
                true_error = truth[(instrument["id"], point["name"])]["true_error_pct"]
                category = glare_category(declared[instrument["id"]], glared, truth[(instrument["id"], point["name"])])
                counts = by_glare.setdefault(category, {"points": 0, "inconclusive": 0, "wrong": 0, "deltas": []})
                counts["points"] += 1
                if point["verdict"] == "inconclusive":
                    counts["inconclusive"] += 1
                    inconclusive += 1
                    rows.append((folder.name, instrument["id"], point["name"], "inconclusive", point["reason"]))
                    continue
                reading = next(
                    c
                    for c in point["details"]["uncertainty_budget"]["components"]
                    if c["name"].startswith("register reading")
                )
                # the component is hypot(u_start, u_stop) / V in %: one instant's u in litres
                instant_u_l.setdefault(point["name"], []).append(
                    reading["u_pct"] / 100 * point["reference_volume"] / math.sqrt(2)
                )
                delta = point["error_pct"] - true_error
                deltas.append(abs(delta))
                outside_u += abs(delta) > point["uncertainty_pct"]
                true_verdict = "pass" if abs(true_error) <= point["mpe_pct"] else "fail"
                wrong += point["verdict"] != true_verdict
                counts["wrong"] += point["verdict"] != true_verdict
                counts["deltas"].append(abs(delta))
                if point["verdict"] != true_verdict or abs(delta) > 0.05:
                    rows.append(
                        (
                            folder.name,
                            instrument["id"],
                            point["name"],
                            point["verdict"],
                            f"true {true_error:+.4f} %, read {point['error_pct']:+.4f} %, "
                            f"U {point['uncertainty_pct']:.4f} %",
                        )
                    )
    return {
        "deltas": deltas,
        "outside_u": outside_u,
        "wrong": wrong,
        "inconclusive": inconclusive,
        "rows": rows,
        "instant_u_l": instant_u_l,
        "real_s": total_real_s,
        "cpu_s": total_cpu_s,
        "by_glare": by_glare,
    }


def print_figures(label: str, res: dict) -> None:
    n = len(res["deltas"]) + res["inconclusive"]
    d = np.array(res["deltas"]) if res["deltas"] else np.array([math.nan])
    print(f"== {label}: {n} points")
    print(
        f"|error - true error| (%-points): max {np.max(d):.4f}, p95 {np.percentile(d, 95):.4f}, "
        f"median {np.median(d):.4f}; points > 0.05: {int(np.sum(d > 0.05))}"
    )
    print(f"true error outside error ± U (k=2): {res['outside_u']} of {len(res['deltas'])}")
    print(
        f"wrong pass/fail verdicts: {res['wrong']}; inconclusive points: {res['inconclusive']} "
        f"({100 * res['inconclusive'] / max(n, 1):.1f} %)"
    )
    print(
        f"replay: {res['real_s']:.0f} s of recording in {res['cpu_s']:.1f} s CPU "
        f"= {res['real_s'] / max(res['cpu_s'], 1e-9):.1f}x real time (one process)"
    )
    for category, counts in sorted(res["by_glare"].items()):
        d = np.array(counts["deltas"]) if counts["deltas"] else np.array([math.nan])
        print(
            f"   {category}: {counts['points']} points, inconclusive {counts['inconclusive']}, "
            f"wrong {counts['wrong']}, |error - truth| max {np.max(d):.4f}, points > 0.05: {int(np.sum(d > 0.05))}"
        )
    for row in res["rows"][:30]:
        print("  ", *row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=7)
    parser.add_argument("--meters", type=int, default=3)
    parser.add_argument("--profile", default="short")
    parser.add_argument("--seed0", type=int, default=100)
    parser.add_argument("--every-frame", action="store_true", help="read every frame (reference run)")
    parser.add_argument("--keep", help="folder to keep the simulated sessions in")
    parser.add_argument(
        "--styles", nargs="+", default=["classic"], help="render styles of the simulated registers (classic, varied)"
    )
    parser.add_argument("--new-only", action="store_true", help="skip the old reading configuration")
    parser.add_argument(
        "--count-unread-turns",
        action="store_true",
        help="also a 'turns' configuration: turnovers of never-read elements counted along the chained frames",
    )
    parser.add_argument(
        "--model-dir", help="folder with digit_wheel.onnx and pointer_dial.onnx for the new reading (default: shipped)"
    )
    parser.add_argument(
        "--compare-model-dir", help="also a 'cmp' configuration: the new reading with the models of this folder"
    )
    args = parser.parse_args()

    readers = RegisterReaders(Path(args.model_dir) if args.model_dir else None)
    new_options = ReadingOptions(every_frame=args.every_frame)
    configs = {"new": (new_options, readers)}
    if args.compare_model_dir:
        configs["cmp"] = (new_options, RegisterReaders(Path(args.compare_model_dir)))
    if not args.new_only:
        old_options = ReadingOptions(every_frame=args.every_frame, cross_frame=False)
        configs = {"old": (old_options, OldReaders()), **configs}
    if args.count_unread_turns:
        configs["turns"] = (ReadingOptions(every_frame=args.every_frame, count_unread_turns=True), readers)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="meterbench-bench-"))
    print(
        f"{args.sessions} sessions x {args.meters} meters x plan, profile {args.profile}, "
        f"{'every frame' if args.every_frame else 'windows + sparse track'}"
    )
    summary = []
    for style in args.styles:
        sessions = []
        for k in range(args.sessions):
            folder = root / f"{style}-s{args.seed0 + k}"
            if not (folder / "session.json").exists():
                simulate_water_meter(
                    folder, seed=args.seed0 + k, meters=args.meters, profile=args.profile, render_style=style
                )
            sessions.append((folder, load_session(folder)))
        for name, (options, config_readers) in configs.items():
            res = evaluate(sessions, options, config_readers)
            print_figures(f"{style} renders, {name} reading", res)
            summary.append((style, name, res))
    print("summary: style reading | points | inconclusive | wrong verdicts | max / p95 |error - truth| %-points")
    for style, name, res in summary:
        d = np.array(res["deltas"]) if res["deltas"] else np.array([math.nan])
        n = len(res["deltas"]) + res["inconclusive"]
        share = 100 * res["inconclusive"] / max(n, 1)
        print(
            f"  {style:>8} {name:>4} | {n:4d} | {res['inconclusive']:3d} ({share:4.1f} %)"
            f" | {res['wrong']} | {np.max(d):.4f} / {np.percentile(d, 95):.4f}"
        )
    instant_u_l = summary[-1][2]["instant_u_l"]
    if instant_u_l:
        achieved = {name: float(np.percentile(v, 95)) for name, v in instant_u_l.items()}
        print(
            "register reading achieved (last configuration), u of one flying reading (p95): "
            + ", ".join(f"{k} {1000 * v:.2f} mL" for k, v in achieved.items())
        )
        equivalent_d = {k: v * math.sqrt(12) for k, v in achieved.items()}  # rectangular d with that u
        plan = plan_test_volumes(water_meter_flows(2.5, 100), 2, reading_resolution_l=equivalent_d)
        print("shortest Q3/Q2/Q1 plan with reading u <= MPE/10 at that resolution (DN15, Q3 2.5, R100, class 2):")
        print(format_test_plan(plan))


if __name__ == "__main__":
    main()
