"""Leave-groups-out cross-validation of a training recipe: python benchmarks/crossval.py --kind digit

Digits: 5 folds of whole split units (groups.csv), water-, gas- and power-meter
units spread over the folds. Dials: 4 folds, one dial (zeiger1..4) each. For
each fold a model is trained from scratch on the other folds LESS an inner
validation set (the small units of the next fold, or the next dial); the
abstention (temperature, confidence threshold: meterbench.models._calibrate) is
chosen on that inner set only, then the fold's crops - never trained on, never
used for a choice - are read. The same run also applies the old rule (no
temperature, readable = confidence ≥ 0.5, no reject class) to the same logits.

Per fold the logits are cached (--cache): a second run only re-reads them.
Short training (--epochs) keeps a run within the CPU budget; the figures are
then a lower bound of the full recipe's.
"""

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

from meterbench.models._calibrate import ABSTAIN_SHARE, HIT_TOLERANCE, MAX_WRONG_READABLE, fit_abstention  # noqa: E402
from meterbench.models._metrics import abstain_metrics, expected_calibration_error  # noqa: E402
from meterbench.models._ocr import ocr_disagrees  # noqa: E402
from meterbench.models._runtime import (  # noqa: E402
    CONFIRM_AGREEMENT,
    DEFAULT_INPUT,
    GEOMETRY_TOLERANCE,
    Abstention,
    circular_distance,
    combine_members,
    confirmed_torn,
    crop_contrast,
    decode_logits,
    members_disagree,
    preprocess_crops,
)
from meterbench.models.dial_geometry import DialGeometry, confirms, disagrees, read_dial_geometry  # noqa: E402
from meterbench.models.training.negatives import negative_crops  # noqa: E402
from meterbench.models.training.train import DATA_DIR, DATA_ROOT, load_crops, predict_logits, train_model  # noqa: E402

OLD_RULE = Abstention(temperature=1.0, min_confidence=0.5, max_reject=1.0, min_contrast=0.0)
LOGIT_KEYS = ("test_logits", "inner_logits", "negative_logits")
N_NEGATIVES = 1200
NEGATIVE_SEED = 1  # report set; training draws its own stream from the other half of the photos


def unit_types(data_dir: Path) -> dict[str, tuple[str, str]]:
    """split unit -> (meter type, display) of the group that names it (dials: ('dial', 'dial'))."""
    groups_csv = data_dir / "groups.csv"
    if not groups_csv.is_file():
        return {}
    with groups_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    named = {row["group"]: (row["meter_type"], row["display"]) for row in rows}
    return {row["split_unit"]: named.get(row["split_unit"], (row["meter_type"], row["display"])) for row in rows}


def make_folds(units: list[str], sizes: dict[str, int], types: dict[str, str], n_folds: int) -> list[list[str]]:
    """Whole units into `n_folds` folds, largest first, each to the fold with fewest crops of its
    meter type, then fewest crops: every type spread over the folds."""
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    by_type = [dict.fromkeys(set(types.values()), 0) for _ in range(n_folds)]
    total = [0] * n_folds
    for unit in sorted(units, key=lambda u: (-sizes[u], u)):
        best = min(range(n_folds), key=lambda k: (by_type[k][types[unit]], total[k], k))
        folds[best].append(unit)
        by_type[best][types[unit]] += sizes[unit]
        total[best] += sizes[unit]
    return folds


def inner_units(folds: list[list[str]], k: int, sizes: dict[str, int], max_crops: int) -> list[str]:
    """Calibration units for outer fold k: the units of the next folds, smallest first, up to `max_crops`."""
    chosen, count = [], 0
    for j in range(1, len(folds)):
        for unit in sorted(folds[(k + j) % len(folds)], key=lambda u: sizes[u]):
            if count + sizes[unit] <= max_crops:
                chosen.append(unit)
                count += sizes[unit]
        if count >= max_crops // 2:
            break
    return chosen


def _logits(model, images: list[np.ndarray], kind: str) -> np.ndarray:
    return predict_logits(model, preprocess_crops(images, DEFAULT_INPUT[kind]))


def run_folds(args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Train (or load from the cache) every fold; returns per-fold arrays and the crop table."""
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    kind, data_dir = args.kind, DATA_DIR[args.kind]
    crops = load_crops(DEFAULT_INPUT[kind], data_dir)
    originals = [cv2.imread(str(data_dir / p), cv2.IMREAD_COLOR) for p in crops.paths]
    units = np.array(crops.units)
    sizes = {u: int(np.sum(units == u)) for u in set(crops.units)}
    types = {u: t[0] for u, t in unit_types(data_dir).items()} or {u: "dial" for u in sizes}
    folds = make_folds(sorted(sizes), sizes, types, args.folds)
    negatives, negative_kinds = negative_crops(kind, N_NEGATIVES, NEGATIVE_SEED, DATA_ROOT, photo_part=1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    results = []
    for k, test in enumerate(folds):
        inner = inner_units(folds, k, sizes, args.inner_max)
        path = cache / f"fold{k}.npz"
        is_test, is_inner = np.isin(units, test), np.isin(units, inner)
        if not path.is_file():
            started = time.time()
            model = train_model(
                kind,
                DEFAULT_INPUT[kind],
                crops.subset(~is_test & ~is_inner),
                args.epochs,
                128,
                3e-3,
                args.seed,
                synthetic_share=args.synthetic,
                frame_p=args.frame,
                reject_share=args.reject,
                zoom=args.zoom,
                heavy=args.heavy,
                log=lambda *a, **kw: None,
            )
            np.savez_compressed(
                path,
                test_logits=_logits(model, [originals[i] for i in np.flatnonzero(is_test)], kind),
                inner_logits=_logits(model, [originals[i] for i in np.flatnonzero(is_inner)], kind),
                negative_logits=_logits(model, negatives, kind),
                seconds=time.time() - started,
            )
            torch.save(model.state_dict(), path.with_suffix(".pt"))  # for test-time augmentation studies
            print(f"fold {k}: trained on {int((~is_test & ~is_inner).sum())} crops in {time.time() - started:.0f} s")
        saved = np.load(path)
        results.append(
            {
                "test_units": test,
                "inner_units": inner,
                "test": np.flatnonzero(is_test),
                "inner": np.flatnonzero(is_inner),
                **{key: saved[key] for key in ("test_logits", "inner_logits", "negative_logits")},
            }
        )
    displays = unit_types(data_dir)
    table = {
        "tenths": crops.tenths.astype(int),
        "groups": np.array(crops.groups),
        "units": units,
        "contrast": crop_contrast(originals),
        "negative_kinds": np.array(negative_kinds),
        "negative_contrast": crop_contrast(negatives),
        "display": {g: displays.get(u, ("dial", "dial"))[1] for g, u in zip(crops.groups, crops.units, strict=True)},
    }
    if kind == "dial":
        table["geometry"] = read_dial_geometry(originals)
        table["negative_geometry"] = read_dial_geometry(negatives)
    if kind == "digit" and args.ocr:  # the PP-OCRv4 recogniser's digit probabilities (DigitReader(ocr=True))
        from meterbench.models._ocr import OcrDigits

        ocr = OcrDigits()
        table["ocr"], table["negative_ocr"] = ocr.digit_probs(originals), ocr.digit_probs(negatives)
    return results, table


def as_ensemble(results: list[dict], caches: list[Path]) -> list[dict]:
    """The folds read by an ensemble: each fold's model and the same fold's models of `caches`
    (the same recipe run with other --seed values, hence the same folds); combined logits as the
    exported ensemble computes them, the members' own kept under "<key>_members" (N, M, K)."""
    out = []
    for k, fold in enumerate(results):
        others = []
        for cache in caches:
            path = cache / f"fold{k}.npz"
            if not path.is_file():
                raise SystemExit(f"--with {cache}: {path.name} missing (run crossval.py with that --cache first)")
            others.append(np.load(path))
        combined = dict(fold)
        for key in LOGIT_KEYS:
            members = np.stack([fold[key], *(o[key] for o in others)], axis=1)
            combined[key], combined[f"{key}_members"] = combine_members(members), members
        out.append(combined)
    return out


def _geometry(table: dict, key: str, idx: np.ndarray | slice) -> DialGeometry | None:
    geometry = table.get(key)
    if geometry is None:
        return None
    return DialGeometry(geometry.value[idx], geometry.has_axis[idx], geometry.tip_sure[idx])


def _readings(
    logits: np.ndarray,
    params: Abstention,
    contrast: np.ndarray,
    geometry: DialGeometry | None,
    members: np.ndarray | None = None,
    ocr_probs: np.ndarray | None = None,
) -> tuple:
    """value, confidence, readable of one rule (with the dial geometry's, the ensemble members' and the
    OCR's veto when given)."""
    value, confidence, _, _, readable, reason = decode_logits(logits, params, contrast)
    if geometry is not None:  # as DialReader.read: confirmed torn readings, then the vetoes
        readable = readable | confirmed_torn(reason, confidence, confirms(value, geometry, CONFIRM_AGREEMENT))
    readable = readable & ~members_disagree(members, value, params)[0]
    if geometry is not None:
        readable = readable & ~disagrees(value, geometry, GEOMETRY_TOLERANCE)
    if ocr_probs is not None:
        readable = readable & ~ocr_disagrees(value, ocr_probs)
    return value, confidence, readable


def _fitted_rules(results: list[dict], table: dict, kind: str) -> dict[str, list[Abstention]]:
    """Per fold, the abstention of each fitted rule:

    calibrated: quantile threshold fitted on the fold's inner units (read by the fold's model);
    crossfit: the same fit on the OTHER folds' held-out readings (each read by its own fold's
        model, which never saw it): how the model family does on meters it never saw; the
        fold's own labels are never used;
    crossfit-risk: as crossfit, with the risk-control threshold (wrong & readable ≤ the target).
    """
    rules: dict[str, list[Abstention]] = {"calibrated": [], "crossfit": [], "crossfit-risk": []}
    for k, fold in enumerate(results):
        rules["calibrated"].append(
            fit_abstention(fold["inner_logits"], table["tenths"][fold["inner"]], ABSTAIN_SHARE[kind])
        )
        others = [f for j, f in enumerate(results) if j != k]
        rules["crossfit"].append(_fit_on(others, table, kind, risk=False))
        rules["crossfit-risk"].append(_fit_on(others, table, kind, risk=True))
    return rules


def _fit_on(folds: list[dict], table: dict, kind: str, risk: bool) -> Abstention:
    """The crossfit abstention on these folds' held-out readings (risk: the risk-control threshold;
    an ensemble's member disagreement counts as already abstained)."""
    logits = np.concatenate([f["test_logits"] for f in folds])
    tenths = table["tenths"][np.concatenate([f["test"] for f in folds])]
    vetoed = None
    if "test_logits_members" in folds[0]:
        members = np.concatenate([f["test_logits_members"] for f in folds])
        vetoed = members_disagree(members, decode_logits(logits, Abstention())[0], Abstention())[0]
    if risk:
        return fit_abstention(logits, tenths, 0.0, MAX_WRONG_READABLE[kind], vetoed)
    return fit_abstention(logits, tenths, ABSTAIN_SHARE[kind])


def pooled_abstention(results: list[dict], table: dict, kind: str) -> dict[str, dict]:
    """The crossfit rules fitted on ALL folds' held-out readings: what a model trained on every
    unit ships (train --abstain-json), as it meets a meter none of the folds' models saw."""
    return {
        "crossfit": vars(_fit_on(results, table, kind, risk=False)),
        "crossfit-risk": vars(_fit_on(results, table, kind, risk=True)),
    }


def evaluate(results: list[dict], table: dict, kind: str) -> dict:
    """Pooled and per-group figures on the held-out folds for each rule: "old" (confidence ≥ 0.5),
    the fitted rules of _fitted_rules (with the reject class) and, for dials, each with the geometry."""
    fitted = _fitted_rules(results, table, kind)
    rules = ["old", *fitted] + ([f"{r}+geometry" for r in fitted] if "geometry" in table else [])
    rules += [f"{r}+ocr" for r in fitted] if "ocr" in table else []
    n = len(table["tenths"])
    out = {rule: {"value": np.zeros(n), "confidence": np.zeros(n), "readable": np.zeros(n, bool)} for rule in rules}
    negative_readable = {rule: [] for rule in rules}
    for k, fold in enumerate(results):
        for rule in rules:
            params = OLD_RULE if rule == "old" else fitted[rule.removesuffix("+geometry").removesuffix("+ocr")][k]
            use_geometry, use_ocr = rule.endswith("geometry"), rule.endswith("+ocr")
            geometry = _geometry(table, "geometry", fold["test"]) if use_geometry else None
            members = fold.get("test_logits_members") if rule != "old" else None
            value, confidence, readable = _readings(
                fold["test_logits"],
                params,
                table["contrast"][fold["test"]],
                geometry,
                members,
                table["ocr"][fold["test"]] if use_ocr else None,
            )
            out[rule]["value"][fold["test"]] = value
            out[rule]["confidence"][fold["test"]] = confidence
            out[rule]["readable"][fold["test"]] = readable
            negative_geometry = _geometry(table, "negative_geometry", slice(None)) if use_geometry else None
            negative_readable[rule].append(
                _readings(
                    fold["negative_logits"],
                    params,
                    table["negative_contrast"],
                    negative_geometry,
                    fold.get("negative_logits_members") if rule != "old" else None,
                    table["negative_ocr"] if use_ocr else None,
                )[2]
            )
    groups = table["groups"]
    wheel = np.array([table["display"][g] != "lcd" for g in groups])
    figures = {
        "rules": rules,
        "abstention_per_fold": {r: [vars(a) for a in f] for r, f in fitted.items()},
        "groups": {},
    }
    for rule in rules:
        o = out[rule]
        hit = circular_distance(o["value"], table["tenths"] / 10) <= HIT_TOLERANCE + 1e-6
        pooled = {}
        for name, keep in (("wheel", wheel), ("lcd", ~wheel)):
            if keep.any():
                pooled[name] = abstain_metrics(o["value"][keep], o["readable"][keep], table["tenths"][keep])
                pooled[name]["ece"] = expected_calibration_error(o["confidence"][keep], hit[keep])
        unreadable = ~np.stack(negative_readable[rule])  # (folds, negatives)
        kinds = table["negative_kinds"]
        pooled["non_wheel_unreadable"] = float(unreadable.mean())
        pooled["non_wheel_by_kind"] = {str(k): float(unreadable[:, kinds == k].mean()) for k in sorted(set(kinds))}
        figures[rule] = pooled
        for group in sorted(set(groups)):
            keep = groups == group
            figures["groups"].setdefault(group, {})[rule] = abstain_metrics(
                o["value"][keep], o["readable"][keep], table["tenths"][keep]
            )
    figures["fold_of_group"] = {g: k for k, fold in enumerate(results) for g in set(groups[fold["test"]])}
    return figures


def _pct(x: float) -> str:
    return "  –  " if x != x else f"{100 * x:5.1f}"


def print_figures(figures: dict) -> None:
    cols = ("within_0_1", "within_0_2", "wrong", "wrong_readable", "abstained", "integer_acc")
    best = figures.get("show", figures["rules"][-1])
    print(f"per group (held out), {best} / old rule, % of crops:")
    print(f"  {'group':46s} {'fold':>4s} {'n':>5s}  " + "  ".join(f"{c:>14s}" for c in cols))
    for group, f in figures["groups"].items():
        cells = "  ".join(f"{_pct(f[best][c])}/{_pct(f['old'][c])}".rjust(14) for c in cols)
        print(f"  {group[-46:]:46s} {figures['fold_of_group'][group]:4d} {f[best]['n']:5d}  {cells}")
    for rule in figures["rules"]:
        print(f"pooled, {rule} rule:")
        for name in ("wheel", "lcd"):
            if name in figures[rule]:
                f = figures[rule][name]
                print(
                    f"  {name:6s} n {f['n']}: ±0.1 {_pct(f['within_0_1'])} ±0.2 {_pct(f['within_0_2'])}"
                    f" wrong {f['wrong'] * 100:.2f} wrong+readable {f['wrong_readable'] * 100:.2f}"
                    f" abstained {_pct(f['abstained'])} int {_pct(f['integer_acc'])}"
                    f" | wrong caught {_pct(f['wrong_caught'])} good abstained {_pct(f['good_abstained'])}"
                    f" ECE {f['ece']:.3f}"
                )
        print(
            f"  non-wheel images unreadable {_pct(figures[rule]['non_wheel_unreadable'])} %: "
            + ", ".join(f"{k} {_pct(v)}" for k, v in figures[rule]["non_wheel_by_kind"].items())
        )
    for rule, chosen in figures["abstention_per_fold"].items():
        print(
            f"abstention per fold, {rule}: "
            + "; ".join(
                f"{k}: T {a['temperature']:.3f} min_confidence {a['min_confidence']:.3f}" for k, a in enumerate(chosen)
            )
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["digit", "dial"], required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--synthetic", type=float, help="share of rendered wheels / dials (default 0.25 / 0)")
    parser.add_argument("--frame", type=float, default=0.7, help="digits: share of framed rendered wheels")
    parser.add_argument("--reject", type=float, default=0.0, help='share of "not a wheel" images (0: no such class)')
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zoom", type=float, default=0.1, help="augmentation scale range (train --zoom)")
    parser.add_argument("--heavy", type=float, default=0.0, help="share of heavier digit distortions (train --heavy)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--folds", type=int, help="default: 5 (digits), 4 (dials)")
    parser.add_argument("--inner-max", type=int, help="most crops in a fold's inner calibration set (1200; dials 1300)")
    parser.add_argument("--cache", required=True, help="folder for the per-fold logits")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument(
        "--with",
        dest="with_caches",
        nargs="+",
        default=[],
        help="caches of the same recipe with other seeds: read the folds by the ensemble of the models",
    )
    parser.add_argument("--show", help="the rule of the per-group table (default: the last)")
    parser.add_argument(
        "--ocr",
        action="store_true",
        help="digits: also each fitted rule with the PP-OCRv4 second opinion's veto (rapidocr-onnxruntime --no-deps)",
    )
    args = parser.parse_args()
    args.folds = args.folds or (5 if args.kind == "digit" else 4)
    if args.synthetic is None:
        args.synthetic = 0.25 if args.kind == "digit" else 0.0
    args.inner_max = args.inner_max or (1200 if args.kind == "digit" else 1300)
    results, table = run_folds(args)
    if args.with_caches:
        results = as_ensemble(results, [Path(c) for c in args.with_caches])
    figures = evaluate(results, table, args.kind)
    figures["show"] = args.show or figures["rules"][-1]
    figures["pooled_abstention"] = pooled_abstention(results, table, args.kind)
    figures["recipe"] = {k: v for k, v in vars(args).items() if k not in ("cache", "json")}
    print_figures(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
