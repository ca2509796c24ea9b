"""Teach a meter type's reading offsets from one bench run (`meterbench layout teach`).

A pointer mounted a few degrees off, or a wheel window cut a little high, makes
an element read a constant fraction of a step away from where the gear train
puts it.  The carry logic then sees that element disagree with the one below
it, and near every roll-over a digit comes out wrong or the frame is flagged.
The offset is visible without knowing the meter's error: element i must show
`digit + expected_fraction(lower)`, so its carry residual against the resolved
element below (`compose.carry_residuals`) is, frame after frame, its offset.

Metrology (docs/layouts.md): only what does not depend on the meter's error is
taught.  The residuals are within-turn quantities (a fraction of a step at a
given position of the element below); the slope of the register against the
reference, which holds the meter's error, is never fitted here.  The reference
track serves one check only: over the run, each element advances by as many
steps as the element below made whole turns.  A verdict is never computed
with corrections taught from the same run: the layout records the session it
was taught from (`taught.session_id`) and `self_taught_reason` names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from meterbench.errors import ConfigError
from meterbench.vision.compose import DEFAULT_MAX_RESIDUAL, DEFAULT_MIN_CONFIDENCE, carry_residuals, resolve_digit
from meterbench.vision.layout import RegisterLayout

__all__ = [
    "MIN_OFFSET_STEPS",
    "TEACH_MAX_RESIDUAL",
    "ElementTeaching",
    "TeachResult",
    "self_taught_reason",
    "taught_offsets",
    "teach_offsets",
]

MIN_OFFSET_STEPS = 0.05  # steps: half a tenth class of the models; smaller offsets are within their quantisation
TEACH_MAX_RESIDUAL = 0.5  # steps: wider than the reader's 0.35, so an offset near it is still seen whole
SIGNIFICANCE = 3.0  # an offset is applied when it exceeds this many standard errors
MIN_FRAMES = 20
BLOCKS = 8  # the standard error comes from the spread of the medians of this many blocks of frames


@dataclass(frozen=True)
class ElementTeaching:
    """What the run says of one element: its offset (steps) and the figures behind it."""

    name: str
    offset_steps: float
    applied: bool
    frames: int
    standard_error_steps: float
    residual_iqr_steps: float
    consistent_fraction_before: float
    consistent_fraction_after: float
    carry_check: dict
    reason: str

    def to_dict(self) -> dict:
        return {
            "offset_steps": round(self.offset_steps, 4),
            "applied": self.applied,
            "frames": self.frames,
            "standard_error_steps": _round(self.standard_error_steps),
            "residual_iqr_steps": _round(self.residual_iqr_steps),
            "consistent_fraction_before": _round(self.consistent_fraction_before),
            "consistent_fraction_after": _round(self.consistent_fraction_after),
            "carry_check": self.carry_check,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class TeachResult:
    """Per-element teachings (most significant first) and the offsets to apply (steps)."""

    elements: tuple[ElementTeaching, ...]
    frames_read: int
    frames_used: int

    @property
    def offsets(self) -> np.ndarray:
        return np.array([e.offset_steps if e.applied else 0.0 for e in self.elements])

    def taught_block(self, session_id: str, instrument_id: str) -> dict:
        """The `taught` object written into the register layout."""
        return {
            "session_id": session_id,
            "instrument": instrument_id,
            "method": "carry residuals against the element below (median); slope never fitted",
            "frames_read": self.frames_read,
            "frames_used": self.frames_used,
            "offsets_steps": {e.name: round(e.offset_steps, 4) if e.applied else 0.0 for e in self.elements},
            "evidence": {e.name: e.to_dict() for e in self.elements},
        }


def _round(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 4)


def _usable(values: np.ndarray, confidences: np.ndarray, min_confidence: float) -> np.ndarray:
    vals = np.array(values, dtype=np.float64, copy=True)
    vals[~(np.asarray(confidences) >= min_confidence)] = np.nan
    return vals


def _residuals(layout: RegisterLayout, values: np.ndarray) -> np.ndarray:
    """(N, E) carry residuals, each frame's cascade starting at its finest read element (elements
    that turned too fast to read at that frame's flow are nan)."""
    out = np.full(values.shape, np.nan)
    finite = np.isfinite(values)
    last = np.where(finite.any(axis=1), values.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1), -1)
    for finest in np.unique(last):
        if finest <= 0:
            continue
        rows = last == finest
        out[rows] = carry_residuals(layout, values[rows], finest_element=int(finest))
    return out


def _standard_error(residuals: np.ndarray) -> float:
    """Standard error of the median from the spread of block medians (frames in time order are
    correlated, so the scatter of single frames would understate it)."""
    blocks = [b for b in np.array_split(residuals, BLOCKS) if b.size]
    if len(blocks) < 3:
        return float("inf")
    medians = np.array([np.median(b) for b in blocks])
    return float(np.std(medians, ddof=1) / math.sqrt(len(blocks)))


def _carry_check(layout: RegisterLayout, values: np.ndarray, reference_l: np.ndarray, index: int) -> dict:
    """Element `index` against the one below over whole turns.

    Between consecutive frames where the lower element stands clear of its 9 -> 0 roll-over (so
    the upper digit is unambiguous), the upper digit must advance by as many steps as the lower
    element made whole turns; those turns come from the lower element's two readings and the
    reference advance between the frames (less than one turn, so a meter error of a few % cannot
    change the count).  A check, not a fit: nothing here is taught from the reference."""
    upper, lower = layout.elements[index], layout.elements[index + 1]
    u, lo = values[:, index], values[:, index + 1]
    clean = np.isfinite(u) & np.isfinite(lo) & np.isfinite(reference_l) & (lo >= 0.5) & (lo <= 8.5)
    rows = np.flatnonzero(clean)
    pairs = disagree = steps = 0
    for a, b in zip(rows, rows[1:], strict=False):
        advance = (reference_l[b] - reference_l[a]) / lower.litres_per_turn * 10.0  # lower steps
        if not 0.0 <= advance < 9.0:
            continue
        turns = int(round((lo[a] + advance - lo[b]) / 10.0))
        digit_a = resolve_digit(upper.coupling, u[a], lo[a])[0]
        digit_b = resolve_digit(upper.coupling, u[b], lo[b])[0]
        pairs += 1
        steps += (digit_b - digit_a) % 10
        disagree += int((digit_b - digit_a) % 10 != turns % 10)
    return {
        "frame_pairs": pairs,
        "upper_steps": int(steps),
        "disagreeing_pairs": int(disagree),
        "agree": None if pairs == 0 else disagree == 0,
    }


def teach_offsets(
    layout: RegisterLayout,
    values: np.ndarray,
    confidences: np.ndarray,
    reference_l: np.ndarray,
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    max_residual: float = TEACH_MAX_RESIDUAL,
    min_frames: int = MIN_FRAMES,
) -> TeachResult:
    """Offsets (steps) of every element from a run's raw readings.

    values, confidences: (N, E) raw element positions in [0, 10) and the models' confidence,
    frames in time order; reference_l: (N,) the reference totaliser at each frame (L), used
    only for the whole-turn check.  The finest element's offset is 0 by convention: a constant
    offset of the finest element shifts start and stop alike and cancels in every error of
    indication; the cascade measures every other element relative to it.
    """
    vals = np.atleast_2d(np.asarray(values, np.float64))
    n, n_el = vals.shape
    if np.shape(confidences) != vals.shape or np.shape(reference_l) != (n,):
        raise ValueError("teach_offsets: values, confidences (N, E) and reference_l (N,) must agree")
    usable = _usable(vals, confidences, min_confidence)
    reference = np.asarray(reference_l, np.float64)
    before = _residuals(layout, usable)
    offsets = np.zeros(n_el)
    teachings: list[ElementTeaching | None] = [None] * n_el
    # from the finest upwards: each element's residual is taken with the ones below corrected
    corrected = usable.copy()
    for i in range(n_el - 2, -1, -1):
        residuals = _residuals(layout, corrected)[:, i]
        good = residuals[np.abs(residuals) <= max_residual]
        frames = int(good.size)
        if frames < min_frames:
            offset, se, iqr, applied = 0.0, float("inf"), float("nan"), False
            reason = f"{frames} consistent frames < {min_frames}: not taught"
        else:
            offset = float(np.median(good))
            se = _standard_error(good)
            iqr = float(np.subtract(*np.percentile(good, [75, 25])))
            applied = abs(offset) >= MIN_OFFSET_STEPS and abs(offset) > SIGNIFICANCE * se
            reason = (
                "applied"
                if applied
                else f"|offset| {abs(offset):.3f} step below max({MIN_OFFSET_STEPS}, {SIGNIFICANCE:g} SE)"
            )
        if applied:
            offsets[i] = offset
            corrected[:, i] = np.mod(corrected[:, i] - offset, 10.0)
        teachings[i] = (frames, offset, applied, se, iqr, reason)  # type: ignore[assignment]
    after = _residuals(layout, corrected)
    out = []
    for i, element in enumerate(layout.elements):
        if i == n_el - 1:
            out.append(
                ElementTeaching(
                    element.name,
                    0.0,
                    False,
                    int(np.isfinite(usable[:, i]).sum()),
                    float("nan"),
                    float("nan"),
                    float("nan"),
                    float("nan"),
                    {},
                    "finest element: offset 0 by convention (cancels in E)",
                )
            )
            continue
        frames, offset, applied, se, iqr, reason = teachings[i]  # type: ignore[misc]
        seen = np.isfinite(before[:, i])
        # consistency as the reader judges it (its own residual limit), before and after the offsets
        consistent_before = (
            float(np.mean(np.abs(before[seen, i]) <= DEFAULT_MAX_RESIDUAL)) if seen.any() else float("nan")
        )
        seen_after = np.isfinite(after[:, i])
        consistent_after = (
            float(np.mean(np.abs(after[seen_after, i]) <= DEFAULT_MAX_RESIDUAL)) if seen_after.any() else float("nan")
        )
        out.append(
            ElementTeaching(
                element.name,
                offset,
                applied,
                frames,
                se,
                iqr,
                consistent_before,
                consistent_after,
                _carry_check(layout, corrected, reference, i),
                reason,
            )
        )
    used = int(np.all(np.isfinite(usable), axis=1).sum())
    return TeachResult(tuple(out), n, used)


def taught_offsets(register: dict, where: str = "register") -> np.ndarray | None:
    """(E,) offsets (steps) a layout's `taught` block says to subtract, in element order, or
    None when it has none; ConfigError naming the field when it is malformed."""
    taught = register.get("taught") if isinstance(register, dict) else None
    if taught is None:
        return None
    offsets = taught.get("offsets_steps") if isinstance(taught, dict) else None
    if not isinstance(offsets, dict) or not isinstance(taught.get("session_id"), str):
        raise ConfigError(f"{where}.taught: expected an object with 'session_id' and 'offsets_steps', got {taught!r}")
    names = [e.get("name") for e in register.get("elements", []) if isinstance(e, dict)]
    unknown = sorted(set(offsets) - set(names))
    if unknown:
        raise ConfigError(f"{where}.taught.offsets_steps: expected element names, got {unknown[0]!r}")
    out = []
    for name in names:
        value = offsets.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not abs(value) < 1.0:
            raise ConfigError(f"{where}.taught.offsets_steps.{name}: expected a number in (-1, 1) steps, got {value!r}")
        out.append(float(value))
    return np.array(out)


def self_taught_reason(register: dict, session_id: str) -> str:
    """Why a session cannot be verified with this layout's taught corrections ('' when it can):
    corrections taught from the very run they would correct are not independent of it."""
    taught = register.get("taught") if isinstance(register, dict) else None
    if isinstance(taught, dict) and taught.get("session_id") == session_id:
        return (
            f"register corrections were taught from this very session ({session_id}); "
            "verify it with a layout taught on another run"
        )
    return ""
