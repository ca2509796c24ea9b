"""Choose a reader's abstention (temperature, confidence threshold) on groups it was not trained on.

The temperature T is the one (on a grid of 0.2..5) that minimises the binary
log-loss of the confidence against "read within ±0.2", so the confidence is the
chance of a reading that close. The confidence threshold is a conformal-style
quantile: the `abstain_share` lowest calibrated confidences of the calibration
crops, a share fixed before looking at any result (2 % digits, 3 % dials).
Or, with `max_wrong_readable`, a risk-control threshold: the lowest one at which
the share of calibration crops that are wrong (off by ≥ 0.5) and still readable
is at most that bound, whatever the abstention costs.

Which crops calibrate matters more than how: crops of units the model family
never saw (out-of-fold readings, benchmarks/crossval.py) behave like a new
meter; an inner set of easy, familiar units makes the confidence too sharp.
"""

from __future__ import annotations

import numpy as np

from meterbench.models._runtime import Abstention, circular_distance, decode_logits

ABSTAIN_SHARE = {"digit": 0.02, "dial": 0.03}
MAX_WRONG_READABLE = {"digit": 0.001, "dial": 0.002}  # issue 17's targets, shares of all crops
WRONG_DISTANCE = 0.5  # a reading this far from the label is a wrong digit / wrong unit
TEMPERATURES = np.geomspace(0.2, 5.0, 57)
HIT_TOLERANCE = 0.2  # a reading within ±0.2 of the label counts as right for the calibration


def _log_loss(confidence: np.ndarray, hit: np.ndarray) -> float:
    p = np.clip(confidence, 1e-6, 1 - 1e-6)
    return float(-np.mean(hit * np.log(p) + (1 - hit) * np.log(1 - p)))


def fit_temperature(logits: np.ndarray, label_tenths: np.ndarray) -> float:
    """The temperature whose confidences best predict a ±0.2 reading (binary log-loss)."""
    truth = np.asarray(label_tenths, np.float64) / 10.0
    losses = []
    for temperature in TEMPERATURES:
        value, confidence, *_ = decode_logits(logits, Abstention(temperature=float(temperature)))
        losses.append(_log_loss(confidence, circular_distance(value, truth) <= HIT_TOLERANCE + 1e-6))
    return float(TEMPERATURES[int(np.argmin(losses))])


def risk_threshold(confidence: np.ndarray, wrong: np.ndarray, max_wrong_readable: float) -> float:
    """The lowest confidence threshold t with mean(wrong & confidence ≥ t) ≤ `max_wrong_readable`."""
    if not len(confidence):
        return 0.5
    order = np.argsort(-confidence, kind="stable")
    wrong_kept = np.cumsum(wrong[order]) / len(confidence)  # keeping the k most confident crops
    kept = int(np.sum(wrong_kept <= max_wrong_readable))  # a prefix: wrong_kept never decreases
    if kept == 0:
        return float(confidence.max()) + 1e-6  # even the most confident crop is too risky
    return float(confidence[order[kept - 1]])


def fit_abstention(
    logits: np.ndarray,
    label_tenths: np.ndarray,
    abstain_share: float,
    max_wrong_readable: float | None = None,
    vetoed: np.ndarray | None = None,
) -> Abstention:
    """Abstention fitted on calibration crops (real wheels of groups the model never saw): the
    `abstain_share` quantile threshold, or the risk-control one when `max_wrong_readable` is given.
    `vetoed` (N,) marks crops another check already makes unreadable (ensemble members disagree):
    the risk-control threshold then only has to cover the others."""
    temperature = fit_temperature(logits, label_tenths)
    value, confidence, _, _, wheel, _ = decode_logits(logits, Abstention(temperature=temperature, min_confidence=0.0))
    if vetoed is not None:
        wheel = wheel & ~np.asarray(vetoed, bool)
    if max_wrong_readable is None:
        threshold = float(np.quantile(confidence, abstain_share)) if len(confidence) else 0.5
    else:
        wrong = circular_distance(value, np.asarray(label_tenths) / 10.0) >= WRONG_DISTANCE - 1e-9
        threshold = risk_threshold(np.where(wheel, confidence, 0.0), wrong & wheel, max_wrong_readable)
    return Abstention(temperature=round(temperature, 4), min_confidence=round(threshold, 4))
