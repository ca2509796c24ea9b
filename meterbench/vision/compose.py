"""Carry logic: compose raw wheel/dial positions into one register value (L).

Raw readings of a register disagree near every 9 -> 0 transition: a carry
wheel is half-turned while the element below passes 9, a gear-coupled pointer
is always between two digits.  The integer digit of each element is therefore
resolved from right to left: the already resolved lower element says which
fraction of a step the upper element must show (`expected_fraction`), and the
upper element's digit is `round(value - expected_fraction) mod 10`.  When the
reading disagrees with that expectation by more than `max_residual` steps, or
its model is unsure, the register is flagged (ok False, volume nan) instead of
guessed: a wrong digit is worth 10^k divisions, far more than any flag costs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from meterbench.vision.layout import RegisterElement, RegisterLayout

__all__ = [
    "DEFAULT_MAX_RESIDUAL",
    "DEFAULT_MIN_CONFIDENCE",
    "DEFAULT_MIN_DIGIT_PROB",
    "DEFAULT_POSITION_STD",
    "Composition",
    "carry_residuals",
    "compose_register",
    "estimate_offsets",
    "expected_fraction",
    "resolve_digit",
]

DEFAULT_MAX_RESIDUAL = 0.35  # steps: |reading - (digit + expected fraction)| allowed
DEFAULT_MIN_CONFIDENCE = 0.5  # model confidence below which an element is not trusted
DEFAULT_MIN_DIGIT_PROB = 0.8  # probability mass that must back the chosen digit (with probs)
DEFAULT_POSITION_STD = 0.05  # steps: reading precision of the finest element without probs
QUANTISATION_STD = 0.1 / math.sqrt(12.0)  # steps: floor from the models' tenth classes
N_CLASSES = 100
CLASS_POSITIONS = np.arange(N_CLASSES) / 10.0  # steps: position of each tenth class


class Composition(NamedTuple):
    """Result of `compose_register`: volume (L), its standard uncertainty (L), ok, reason.

    `partial_l` / `partial_modulus_l` (L): what the elements that could be resolved
    from the finest upwards say even when a higher one could not: the volume
    modulo one turn of the highest resolved element (nan / nan when not even the
    finest was read; volume_l / inf when ok).  Across frames the missing turns are
    known from other frames (`meterbench.verify.fusion.complete_partial_readings`).
    """

    volume_l: float
    resolution_l: float
    ok: bool
    reason: str
    partial_l: float = float("nan")
    partial_modulus_l: float = float("nan")


def expected_fraction(coupling: str, lower_position: float) -> float:
    """Fraction of a step (0..1) an element shows, given the resolved lower element.

    "gear": turns continuously at 1/10 of the lower element's speed -> lower / 10.
    "carry": moves only while the lower element passes 9 -> 0 -> max(0, lower - 9).
    """
    if coupling == "gear":
        return lower_position / 10.0
    if coupling == "carry":
        return max(0.0, lower_position - 9.0)
    raise ValueError(f"coupling: expected 'gear' or 'carry', got {coupling!r}")


def resolve_digit(coupling: str, value: float, lower_position: float) -> tuple[int, float, float]:
    """(digit, expected fraction, residual) of an element reading `value` above a
    lower element resolved at `lower_position`: digit = round(value − fraction)
    mod 10; residual = value − (digit + fraction), wrapped to [−5, 5) steps."""
    fraction = expected_fraction(coupling, lower_position)
    digit = int(round(value - fraction)) % 10
    return digit, fraction, _signed_circular(value - fraction - digit)


def carry_residuals(layout: RegisterLayout, values: np.ndarray, finest_element: int | None = None) -> np.ndarray:
    """(N, E) residuals (steps) of each element against the resolved element below it.

    values: (N, E) raw positions of N frames.  The finest element and unread
    elements get nan.  Over many frames the median residual of an element is its
    reading offset (parallax, a pointer mounted a little off, a wheel window cut
    high): see `estimate_offsets`.
    """
    vals = np.atleast_2d(np.asarray(values, dtype=np.float64))
    finest = len(layout.elements) - 1 if finest_element is None else int(finest_element)
    out = np.full(vals.shape, np.nan)
    for row, frame_values in zip(out, vals, strict=True):
        lower_position = frame_values[finest]
        for i in range(finest - 1, -1, -1):
            if not (np.isfinite(lower_position) and np.isfinite(frame_values[i])):
                break
            digit, fraction, row[i] = resolve_digit(layout.elements[i].coupling, frame_values[i], lower_position)
            lower_position = digit + fraction
    return out


def estimate_offsets(
    layout: RegisterLayout, values: np.ndarray, *, max_residual: float = DEFAULT_MAX_RESIDUAL, min_frames: int = 20
) -> np.ndarray:
    """(E,) reading offset (steps) per element: median carry residual over frames
    where it is within ±`max_residual`; 0 where fewer than `min_frames` qualify
    (and always for the finest element, whose offset the cascade cannot see).
    Subtract from raw readings (`RegisterReader(element_offsets=...)`)."""
    residuals = carry_residuals(layout, values)
    usable = np.abs(residuals) <= max_residual
    offsets = np.zeros(len(layout.elements))
    for i in range(len(layout.elements)):
        if usable[:, i].sum() >= min_frames:
            offsets[i] = float(np.median(residuals[usable[:, i], i]))
    return offsets


def _signed_circular(delta: float) -> float:
    """Wrap a difference of positions (steps) to [-5, 5)."""
    return (delta + 5.0) % 10.0 - 5.0


def _digit_probability(probs: np.ndarray, digit: int, fraction: float) -> float:
    """Probability mass of the tenth classes within ±0.5 step of `digit + fraction`."""
    offset = np.abs((CLASS_POSITIONS - digit - fraction + 5.0) % 10.0 - 5.0)
    inside = offset < 0.5 - 1e-9
    edge = np.abs(offset - 0.5) <= 1e-9  # a class exactly on the border counts half
    return float(probs[inside].sum() + 0.5 * probs[edge].sum())


def _position_std(value: float, probs: np.ndarray | None, default_std: float) -> float:
    """Reading precision (steps) of one element: spread of its class probabilities
    within ±0.5 step of `value`, floored at the tenth-class quantisation;
    `default_std` without probs.  Mass further away is the confidence's business
    (a circular std over all classes would let 2 % of stray mass triple it)."""
    if probs is None or not math.isfinite(value):
        return default_std
    offset = (CLASS_POSITIONS - value + 5.0) % 10.0 - 5.0
    near = np.abs(offset) <= 0.5
    weights = np.asarray(probs, dtype=np.float64)[near]
    if not weights.sum() > 0:
        return default_std
    spread = math.sqrt(float(np.sum(weights * offset[near] ** 2) / weights.sum()))
    return max(spread, QUANTISATION_STD)


def _check_inputs(
    layout: RegisterLayout, values: np.ndarray, confidences: np.ndarray, probs: np.ndarray | None, finest: int
) -> None:
    n_el = len(layout.elements)
    if values.shape != (n_el,):
        raise ValueError(f"compose_register: values: expected shape ({n_el},), got {values.shape}")
    if confidences.shape != (n_el,):
        raise ValueError(f"compose_register: confidences: expected shape ({n_el},), got {confidences.shape}")
    if probs is not None and probs.shape != (n_el, N_CLASSES):
        raise ValueError(f"compose_register: probs: expected shape ({n_el}, {N_CLASSES}), got {probs.shape}")
    if not 0 <= finest < n_el:
        raise ValueError(f"compose_register: finest_element: expected 0..{n_el - 1}, got {finest}")


def _element_trouble(
    element: RegisterElement, value: float, confidence: float, min_confidence: float, readable: bool, why: str
) -> str:
    """Reason an element's raw reading cannot be used ("" when it can)."""
    if not (math.isfinite(value) and 0.0 <= value < 10.0):
        return f"{element.kind} {element.name} not read (value {value!r})"
    if not readable:
        return f"{element.kind} {element.name} unreadable" + (f" ({why})" if why else "")
    if not confidence >= min_confidence:
        return f"{element.kind} {element.name} confidence {confidence:.2f} < {min_confidence:.2f}"
    return ""


def compose_register(
    layout: RegisterLayout,
    values: np.ndarray,
    confidences: np.ndarray,
    probs: np.ndarray | None = None,
    finest_element: int | None = None,
    *,
    readable: np.ndarray | None = None,
    reasons: tuple[str, ...] | None = None,
    min_confidence: float | np.ndarray = DEFAULT_MIN_CONFIDENCE,
    max_residual: float = DEFAULT_MAX_RESIDUAL,
    min_digit_prob: float = DEFAULT_MIN_DIGIT_PROB,
    position_std: float = DEFAULT_POSITION_STD,
) -> Composition:
    """Register value (L) from raw element positions, carry resolved right to left.

    Parameters
    ----------
    layout : RegisterLayout
    values : (E,) float, raw positions in [0, 10) (elements below `finest_element`
        are ignored and may be nan).
    confidences : (E,) float in [0, 1], the reader's confidence per element.
    probs : (E, 100) float, optional: tenth-class probabilities; when given, the
        chosen digit must carry at least `min_digit_prob` of the element's mass and
        the finest element's spread sets the uncertainty.
    finest_element : index of the finest element used (None = the last one).
    readable : (E,) bool, optional: the reader's own verdict per element (its
        calibrated abstention); an element it abstains on is not used, whatever
        its confidence.  `reasons` (E,) say why, for the flag.
    min_confidence : confidence below which an element is not used, one for all
        or (E,) per element; with `readable` from a calibrated reader pass 0 for
        its elements (the reader already decided).
    max_residual : steps; a reading further than this from `digit + expected
        fraction` is flagged as inconsistent with the element below.
    position_std : steps; precision of the finest reading when no probs are given.

    Returns
    -------
    Composition(volume_l, resolution_l, ok, reason): volume and its standard
    uncertainty in L (finest element's precision × its litres per step, plus the
    truncation of the unread elements when the finest is a carry wheel); when not
    ok, volume_l is nan and reason names the first element that failed, and
    partial_l / partial_modulus_l keep what the elements below it gave.
    """
    vals = np.asarray(values, dtype=np.float64)
    confs = np.asarray(confidences, dtype=np.float64)
    prob_arr = None if probs is None else np.asarray(probs, dtype=np.float64)
    finest = len(layout.elements) - 1 if finest_element is None else int(finest_element)
    _check_inputs(layout, vals, confs, prob_arr, finest)

    elements = layout.elements
    finest_el = elements[finest]
    step_l = finest_el.litres_per_turn / 10.0
    std = _position_std(float(vals[finest]), None if prob_arr is None else prob_arr[finest], position_std)
    if finest_el.coupling == "carry" and finest < len(elements) - 1:
        # A carry wheel rests on whole digits: the unread elements below it add a
        # truncation of 0..1 step (uniform, std 1/sqrt(12) step) to its reading.
        std = math.hypot(std, 1.0 / math.sqrt(12.0))
    resolution_l = std * step_l

    read_ok = np.ones(len(elements), bool) if readable is None else np.asarray(readable, bool)
    why = ("",) * len(elements) if reasons is None else tuple(reasons)
    min_conf = np.broadcast_to(np.asarray(min_confidence, dtype=np.float64), (len(elements),))
    if read_ok.shape != (len(elements),) or len(why) != len(elements):
        raise ValueError(f"compose_register: readable/reasons: expected {len(elements)} entries each")

    def trouble_of(i: int) -> str:
        return _element_trouble(elements[i], vals[i], confs[i], float(min_conf[i]), bool(read_ok[i]), why[i])

    trouble = trouble_of(finest)
    if trouble:
        return Composition(float("nan"), resolution_l, False, trouble)
    lower_position = float(vals[finest])
    volume_l = lower_position * step_l

    def flagged(reason: str, top: int) -> Composition:
        # elements top+1..finest are resolved: the volume modulo one turn of element top+1
        return Composition(
            float("nan"), resolution_l, False, reason, float(volume_l), elements[top + 1].litres_per_turn
        )

    for i in range(finest - 1, -1, -1):
        element, lower = elements[i], elements[i + 1]
        trouble = trouble_of(i)
        if trouble:
            return flagged(trouble, i)
        digit, fraction, residual = resolve_digit(element.coupling, vals[i], lower_position)
        if abs(residual) > max_residual:
            return flagged(
                f"{element.kind} {element.name} reads {vals[i]:.2f}, inconsistent "
                f"with {lower.name} at {lower_position:.2f} "
                f"(residual {residual:+.2f} step)",
                i,
            )
        if prob_arr is not None:
            p_digit = _digit_probability(prob_arr[i], digit, fraction)
            if p_digit < min_digit_prob:
                return flagged(
                    f"{element.kind} {element.name} digit {digit} ambiguous "
                    f"(probability {p_digit:.2f} < {min_digit_prob:.2f})",
                    i,
                )
        lower_position = digit + fraction
        volume_l += digit * element.litres_per_turn / 10.0
    return Composition(float(volume_l), resolution_l, True, "", float(volume_l), math.inf)
