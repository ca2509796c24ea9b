"""Fusion of register readings with the reference volume track.

A camera reads the meter register many times per second; each reading may be
noisy or (rarely) wrong. The reference meter gives a dense, trusted volume
track on the same clock. Around each flying start/stop instant the register
readings are regressed on the reference volume, misreads are rejected (never
averaged in) and the register value *at the instant* is the fit's intercept,
with its standard uncertainty. Between the two instants, sparse readings must
follow the same line: a register that stalls, jumps or runs backwards makes
the point untrustworthy.

A frame in which an upper element cannot be read (a reflection over it for the
whole session) still says what its lower elements show; the frames of a point
complete each other (`complete_partial_readings`): between the carries the
lower elements announce, the upper ones stand still.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Completion",
    "complete_partial_readings",
    "ReferenceTrack",
    "InstantEstimate",
    "estimate_at_instant",
    "check_track",
    "TrackCheck",
]

#: Stretches (most recent first) a frame may chain to, so that one misread does not cut the chain.
LINK_STRETCHES = 3
#: Robust scale of a normal distribution from the median absolute deviation.
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class ReferenceTrack:
    """The reference meter's cumulative volume (L) against session time (s)."""

    t_s: np.ndarray
    volume_l: np.ndarray

    @classmethod
    def from_samples(cls, t_s, volume_l) -> ReferenceTrack:
        """Build from samples; they must be time-ordered and non-decreasing in volume."""
        t = np.asarray(t_s, dtype=np.float64)
        v = np.asarray(volume_l, dtype=np.float64)
        if t.ndim != 1 or t.shape != v.shape or t.size < 2:
            raise ValueError("reference track: need at least 2 (t_s, volume_l) samples of equal length")
        if np.any(np.diff(t) <= 0):
            raise ValueError("reference track: t_s must be strictly increasing")
        if np.any(np.diff(v) < 0):
            raise ValueError("reference track: volume_l runs backwards")
        return cls(t, v)

    def volume_at(self, t_s) -> np.ndarray:
        """Reference volume (L) at the given times, linear between samples; NaN outside."""
        return np.interp(t_s, self.t_s, self.volume_l, left=np.nan, right=np.nan)

    def flow_l_s(self, t0_s: float, t1_s: float) -> float:
        """Mean reference flow (L/s) over [t0_s, t1_s]."""
        v0, v1 = self.volume_at([t0_s, t1_s])
        return float((v1 - v0) / (t1_s - t0_s))

    def covers(self, t0_s: float, t1_s: float) -> bool:
        """True when the track spans [t0_s, t1_s]."""
        return bool(self.t_s[0] <= t0_s and t1_s <= self.t_s[-1])


@dataclass
class InstantEstimate:
    """The register value at one instant, from a robust local fit."""

    ok: bool
    volume_l: float = float("nan")
    u_l: float = float("nan")  # standard uncertainty of volume_l (L)
    slope: float = float("nan")  # register litres per reference litre (1 + error)
    n_used: int = 0
    n_rejected: int = 0
    residual_sd_l: float = float("nan")
    reason: str = ""


def _weighted_line_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Weighted least squares y = a + b x; returns a, b, covariance of (a, b) scaled by 1."""
    design = np.stack([np.ones_like(x), x], axis=1)
    wd = design * w[:, None]
    normal = design.T @ wd
    cov = np.linalg.inv(normal)
    a, b = cov @ (wd.T @ y)
    return float(a), float(b), cov


def estimate_at_instant(
    reading_t_s: np.ndarray,
    reading_volume_l: np.ndarray,
    reading_u_l: np.ndarray,
    reference: ReferenceTrack,
    instant_t_s: float,
    *,
    min_readings: int = 3,
    reject_sigma: float = 4.0,
    slope_bounds: tuple[float, float] = (0.5, 1.5),
) -> InstantEstimate:
    """Estimate the register value (L) at ``instant_t_s`` from nearby readings.

    Model: register = a + b * (V_ref(t) - V_ref(instant)); the intercept ``a``
    is the register value at the instant. Readings more than ``reject_sigma``
    robust standard deviations (never below the reading's own uncertainty)
    off the fit are rejected and the fit repeated. When the flow is ~zero the
    slope is unidentifiable and a weighted mean is used instead.
    """
    t = np.asarray(reading_t_s, dtype=np.float64)
    y = np.asarray(reading_volume_l, dtype=np.float64)
    u = np.maximum(np.asarray(reading_u_l, dtype=np.float64), 1e-9)
    valid = np.isfinite(t) & np.isfinite(y) & np.isfinite(u)
    t, y, u = t[valid], y[valid], u[valid]
    if t.size < min_readings:
        return InstantEstimate(
            False, reason=f"only {t.size} good register readings near t={instant_t_s:.2f} s (need {min_readings})"
        )
    ref_at_instant = float(reference.volume_at(instant_t_s))
    if not np.isfinite(ref_at_instant):
        return InstantEstimate(False, reason=f"reference track does not cover t={instant_t_s:.2f} s")
    x = reference.volume_at(t) - ref_at_instant
    covered = np.isfinite(x)  # readings beyond the reference track's ends cannot be placed on it
    t, y, u, x = t[covered], y[covered], u[covered], x[covered]
    if t.size < min_readings:
        return InstantEstimate(
            False,
            reason=f"only {t.size} register readings near t={instant_t_s:.2f} s "
            f"fall inside the reference track (need {min_readings})",
        )

    keep = np.ones(t.size, dtype=bool)
    fit_slope = np.ptp(x) > 3 * float(np.median(u))
    for _ in range(5):
        xs, ys, us = x[keep], y[keep], u[keep]
        if xs.size < min_readings:
            break
        w = 1.0 / us**2
        if fit_slope:
            a, b, cov = _weighted_line_fit(xs, ys, w)
        else:
            a, b = float(np.sum(w * ys) / np.sum(w)), 1.0
            cov = np.array([[1.0 / np.sum(w), 0.0], [0.0, 0.0]])
        residual = y - (a + b * x)
        scale = _MAD_TO_SIGMA * float(np.median(np.abs(residual[keep] - np.median(residual[keep]))))
        limit = reject_sigma * np.maximum(u, scale)
        new_keep = np.abs(residual) <= limit
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    n_used = int(keep.sum())
    n_rejected = int(t.size - n_used)
    if n_used < min_readings:
        return InstantEstimate(
            False,
            n_used=n_used,
            n_rejected=n_rejected,
            reason=f"only {n_used} consistent register readings near t={instant_t_s:.2f} s "
            f"({n_rejected} rejected as misreads)",
        )
    if fit_slope and not (slope_bounds[0] <= b <= slope_bounds[1]):
        return InstantEstimate(
            False,
            slope=b,
            n_used=n_used,
            n_rejected=n_rejected,
            reason=f"register advances {b:.3f} L per reference litre near t={instant_t_s:.2f} s "
            f"(expected {slope_bounds[0]}..{slope_bounds[1]})",
        )
    residual_kept = residual[keep]
    dof = max(n_used - (2 if fit_slope else 1), 1)
    chi2 = float(np.sum((residual_kept / u[keep]) ** 2) / dof)
    # Inflate the formal uncertainty when the scatter exceeds the stated reading uncertainty.
    u_a = float(np.sqrt(cov[0, 0] * max(chi2, 1.0)))
    # Neighbouring frames share systematic reading errors: never claim better than the
    # single-reading uncertainty divided by sqrt(3) (an effective ~3 independent looks).
    u_floor = float(np.median(u[keep])) / np.sqrt(3.0)
    return InstantEstimate(
        True,
        volume_l=a,
        u_l=max(u_a, u_floor),
        slope=b,
        n_used=n_used,
        n_rejected=n_rejected,
        residual_sd_l=float(np.std(residual_kept, ddof=1)) if n_used > 1 else 0.0,
    )


@dataclass
class TrackCheck:
    """Whether the register followed the reference between start and stop."""

    ok: bool
    n_checked: int = 0
    n_outliers: int = 0
    max_deviation_l: float = 0.0
    reason: str = ""
    outlier_times_s: list[float] = field(default_factory=list)


def check_track(
    reading_t_s: np.ndarray,
    reading_volume_l: np.ndarray,
    reading_u_l: np.ndarray,
    reference: ReferenceTrack,
    start: InstantEstimate,
    stop: InstantEstimate,
    start_t_s: float,
    stop_t_s: float,
    *,
    tolerance_sigma: float = 6.0,
    max_outlier_share: float = 0.2,
) -> TrackCheck:
    """Check that readings between start and stop lie on the line joining them.

    The line is register(t) = start + (stop - start) * progress(t), with
    progress the reference volume's fraction of the test volume, so flow
    changes inside the point are followed. Single misreads are tolerated and
    counted (they are not used anyway); a register that stalls, skips or runs
    backwards for a sizeable share of the readings fails the check.
    """
    t = np.asarray(reading_t_s, dtype=np.float64)
    y = np.asarray(reading_volume_l, dtype=np.float64)
    u = np.asarray(reading_u_l, dtype=np.float64)
    inside = (t > start_t_s) & (t < stop_t_s) & np.isfinite(y)
    t, y, u = t[inside], y[inside], u[inside]
    if t.size == 0:
        return TrackCheck(True, reason="no readings between start and stop to check")
    ref0, ref1 = reference.volume_at([start_t_s, stop_t_s])
    progress = (reference.volume_at(t) - ref0) / (ref1 - ref0)
    expected = start.volume_l + (stop.volume_l - start.volume_l) * progress
    deviation = y - expected
    limit = tolerance_sigma * np.sqrt(u**2 + max(start.u_l, stop.u_l) ** 2)
    outliers = np.abs(deviation) > limit
    n_out = int(outliers.sum())
    share = n_out / t.size
    result = TrackCheck(
        ok=share <= max_outlier_share,
        n_checked=int(t.size),
        n_outliers=n_out,
        max_deviation_l=float(np.max(np.abs(deviation))),
        outlier_times_s=[float(v) for v in t[outliers][:20]],
    )
    if not result.ok:
        result.reason = (
            f"register left the reference line in {n_out} of {t.size} readings "
            f"between start and stop (max {result.max_deviation_l:.4f} L off)"
        )
    return result


@dataclass
class Completion:
    """Register volumes of a point's frames after the frames have completed each other.

    volume_l (N,): the whole register volume (L) per frame, nan where it cannot be
    known; completed (N,): frames whose upper elements came from other frames;
    corrected: frames read whole whose upper elements the other frames outvoted
    (a misread high wheel, replaced); offset_known False: no frame read the whole
    register, so the volumes are only known up to a constant multiple of
    modulus_l (enough for stop − start while the unread elements do not move);
    unread_carries: the unread elements moved during the frames (the elements
    below turned over) and no frame read them: the volume needs them;
    turns_counted: with `count_unread_turns`, how many turnovers of modulus_l the
    kept frames span while the elements above were never read (their advance was
    inferred from the elements below, 0 when not);
    reason says what made frames unusable ("" when none).
    """

    volume_l: np.ndarray
    completed: np.ndarray
    modulus_l: float = float("inf")
    corrected: int = 0
    offset_known: bool = True
    unread_carries: bool = False
    reason: str = ""
    n_whole: int = 0  # frames read whole among those used
    turns_counted: int = 0


def complete_partial_readings(
    t_s: np.ndarray,
    volume_l: np.ndarray,
    partial_l: np.ndarray,
    modulus_l: np.ndarray,
    u_l: np.ndarray,
    reference: ReferenceTrack,
    *,
    max_slope: float = 1.5,
    min_coverage: float = 0.9,
    min_vote_share: float = 0.75,
    min_votes: int = 3,
    count_unread_turns: bool = False,
    needed_s: tuple[float, float] | None = None,
) -> Completion:
    """Complete frames whose upper register elements could not be read from the other frames.

    Per frame: `volume_l` the whole register (nan unless every element was read),
    `partial_l` what the elements resolved from the finest up say, modulo
    `modulus_l` (one turn of the highest of them; inf for whole readings, nan when
    not even the finest element was read), `u_l` the reading uncertainty (L).

    During a test point the upper elements stand still except at the carries the
    lower ones announce.  So: (1) every usable frame is reduced to its volume
    modulo M, the common modulus (the largest that `min_coverage` of the frames
    reach); (2) consecutive frames are chained when the volume between them,
    bounded by `max_slope` × the reference meter's volume over that time, leaves
    exactly one number of turnovers of M (the register never runs backwards); a
    gap or an ambiguous step starts a new stretch; (3) in each stretch the
    frames read whole vote on the upper part, which must win `min_vote_share` of
    the votes; every frame of the stretch then gets it (frames read whole that
    lost the vote are corrected).  A stretch with fewer than `min_votes` frames
    read whole counts as one without votes (one misread high wheel must not set
    a whole stretch).  A stretch without votes stays unknown, except
    when it is the only one: then the volumes are relative (offset_known False),
    and if the unread part moved inside it, `unread_carries` is set and nothing
    is returned (the volume would need the unread elements); with
    `count_unread_turns` the turnovers counted along the chain give the
    relative volumes instead (off by default: issue 17's rule is to abstain).
    `needed_s` (t0, t1): the span whose volume is wanted (the point, flying start
    to stop); unread elements turning only outside it (in the window read before
    the start) cost just the frames on the far side of that turnover.
    """
    t = np.asarray(t_s, dtype=np.float64)
    whole = np.asarray(volume_l, dtype=np.float64)
    part = np.asarray(partial_l, dtype=np.float64)
    modulus = np.asarray(modulus_l, dtype=np.float64)
    u = np.asarray(u_l, dtype=np.float64)
    n = t.size
    out = whole.copy()
    completed = np.zeros(n, dtype=bool)
    usable = np.isfinite(part) & ~np.isnan(modulus)
    finite_moduli = np.sort(modulus[usable & np.isfinite(modulus)])
    if finite_moduli.size == 0:
        return Completion(out, completed)  # every usable frame was read whole
    # the largest modulus that min_coverage of the usable frames reach (whole readings reach any)
    reach = np.where(np.isfinite(modulus[usable]), modulus[usable], np.inf)
    candidates = np.unique(finite_moduli)[::-1]
    common = next((m for m in candidates if np.mean(reach >= m) >= min_coverage), candidates[-1])
    usable &= modulus >= common
    order = np.flatnonzero(usable)[np.argsort(t[usable], kind="stable")]
    if order.size == 0:
        return Completion(out, completed, common, reason="no frame read far enough up the register")
    low = np.mod(part[order], common)
    tolerance = 6.0 * max(float(np.nanmedian(u[order])) if np.isfinite(u[order]).any() else 0.0, 1e-4)
    # (2) chain frames into stretches, counting turnovers of the common modulus; a frame that
    # links to none of the last few stretches (a misread, a gap) starts its own
    stretch = np.full(order.size, -1, dtype=np.int64)
    turns = np.zeros(order.size, dtype=np.int64)
    ref = reference.volume_at(t[order])
    tails: list[int] = []  # per stretch: its latest member (index into order)
    for k in range(order.size):
        for s in sorted(range(len(tails)), key=lambda i: -tails[i])[:LINK_STRETCHES]:
            j = tails[s]
            advance_max = max_slope * (ref[k] - ref[j]) + tolerance
            step = (low[k] - low[j]) % common  # 0 <= step < M
            options = [step + m * common for m in (-1, 0, 1, 2) if -tolerance <= step + m * common <= advance_max]
            if np.isfinite(advance_max) and len(options) == 1:
                stretch[k], tails[s] = s, k
                turns[k] = turns[j] + int(round((options[0] - (low[k] - low[j])) / common))
                break
        else:
            stretch[k] = len(tails)
            tails.append(k)
    relative = low + turns * common
    reasons = []
    corrected = 0
    offset_known = True
    unread_carries = False
    turns_counted = 0
    has_votes = [int(np.isfinite(whole[order[stretch == s]]).sum()) >= min_votes for s in range(len(tails))]
    relative_stretch = -1  # without any frame read whole: the largest stretch, relative volumes
    if not any(has_votes):
        relative_stretch = int(np.argmax(np.bincount(stretch)))
    for s in range(len(tails)):
        members = np.flatnonzero(stretch == s)
        frames = order[members]
        voters = members[np.isfinite(whole[frames])]
        span = f"frames at {t[frames[0]]:.2f}-{t[frames[-1]]:.2f} s"
        if has_votes[s]:
            votes = np.round((whole[order[voters]] - relative[voters]) / common).astype(np.int64)
            values, counts = np.unique(votes, return_counts=True)
            best = int(np.argmax(counts))
            if counts[best] < min_vote_share * voters.size or np.sum(counts == counts[best]) > 1:
                reasons.append(
                    f"{span} disagree on the upper elements ({counts[best]} of {voters.size} frames read whole agree)"
                )
                out[frames] = np.nan
                continue
            offset = float(values[best]) * common
            corrected += int(voters.size - counts[best])
        elif s == relative_stretch:
            if np.ptp(turns[members]) > 0 and not count_unread_turns and needed_s is not None:
                inside = members[(t[frames] >= needed_s[0]) & (t[frames] <= needed_s[1])]
                if inside.size and np.ptp(turns[inside]) == 0:  # turned only outside the needed span
                    members = members[turns[members] == turns[inside[0]]]
                    frames = order[members]
            if np.ptp(turns[members]) > 0 and not count_unread_turns:
                return Completion(
                    np.full(n, np.nan),
                    np.zeros(n, dtype=bool),
                    common,
                    offset_known=False,
                    unread_carries=True,
                    n_whole=int(np.isfinite(whole[order]).sum()),
                    reason=f"the elements above {common:g} L per turn were never read and turn over during the frames",
                )
            offset, offset_known, relative_frames = 0.0, False, frames
            turns_counted = int(np.ptp(turns[members]))
        else:
            reasons.append(f"{span}: no frame read the whole register and they cannot be chained to frames that did")
            out[frames] = np.nan
            continue
        completed[frames] = ~np.isfinite(whole[frames])
        out[frames] = relative[members] + offset
    if not offset_known:  # only the relative stretch's frames (on the needed side of any turnover)
        keep = np.zeros(n, dtype=bool)
        keep[relative_frames] = True
        out[~keep] = np.nan
        completed &= keep
    return Completion(
        out,
        completed,
        common,
        corrected=corrected,
        offset_known=offset_known,
        unread_carries=unread_carries,
        reason="; ".join(reasons),
        turns_counted=turns_counted,
    )
