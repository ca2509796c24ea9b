"""Choose a reader's abstention (temperature, confidence threshold) on groups it was not trained on.

The temperature T is the one (on a grid of 0.2..5) that minimises the binary
log-loss of the confidence against "read within ±0.2", so the confidence is the
chance of a reading that close. The confidence threshold is a conformal-style
quantile: the `abstain_share` lowest calibrated confidences of the calibration
crops, a share fixed before looking at any result (2 % digits, 3 % dials).
"""

from __future__ import annotations

import numpy as np

from meterbench.models._runtime import Abstention, circular_distance, decode_logits

ABSTAIN_SHARE = {"digit": 0.02, "dial": 0.03}
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


def fit_abstention(logits: np.ndarray, label_tenths: np.ndarray, abstain_share: float) -> Abstention:
    """Abstention fitted on calibration crops (real wheels of groups the model never saw)."""
    temperature = fit_temperature(logits, label_tenths)
    _, confidence, *_ = decode_logits(logits, Abstention(temperature=temperature))
    threshold = float(np.quantile(confidence, abstain_share)) if len(confidence) else 0.5
    return Abstention(temperature=round(temperature, 4), min_confidence=round(threshold, 4))
