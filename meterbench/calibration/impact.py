"""Helmet impact signal processing: SAE J211 channel filter, resultant, peak, dwell time, HIC,
impact velocity from a light gate, and one drop's features (:func:`analyse_impact`).

Pure computation (NumPy/SciPy, no I/O). Conventions, written once:

- accelerations in g, times in s (``*_ms`` fields in ms), sample rate ``fs_hz`` in Hz;
- a trace is sampled uniformly from t = 0 at its first sample; between samples it is taken as
  linear (the same model for the dwell crossings and the HIC integral, cumulative trapezoid);
- a tri-axial trace is an (N, 3) array; each axis is filtered, then the resultant is taken
  (SAE J211 filters the channels, the resultant is computed from the filtered channels).

Sources and choices (docs/helmets.md "Signal processing"):

- Filter: SAE J211-1 Appendix C 2-pole Butterworth difference equation run forward then backward
  (4-pole, phaseless), coefficients from wd = 2 pi CFC 2.0775, wa = sin(wd T/2)/cos(wd T/2);
  start-up as in J211 (the first two outputs of each pass copy the inputs). Sampling rate at least
  10 x CFC (600 Hz, 1.8 kHz, 6 kHz, 10 kHz for CFC 60/180/600/1000, i.e. about 6 x the -3 dB
  frequency 1.65 CFC) [SRC: SAE J211/1 as tabulated by weisang.com "CFC Filter Analysis"].
- End treatment: J211 asks for at least 10 ms of data beyond each end of the interval of interest.
  Each end is pre-extended by an inverted mirror (odd reflection about the end sample) of 10 ms
  (or the whole trace if shorter), which keeps the end value and slope, so a trace starting at
  rest starts the filter at rest; the extension is cut off after filtering [MEM: the common J211
  implementation, exact J211 wording not confirmed here].
- HIC (FMVSS 208 S6.2 form): max over t1 < t2, t2 - t1 <= window, of
  (t2 - t1) [ 1/(t2 - t1) int_t1^t2 a dt ]^2.5, searched exactly over every pair of samples.
  ``hic`` has no window cap (helmet rules search all windows [MEM]); ``hic15``/``hic36`` cap it at
  15 / 36 ms. A window with a negative mean contributes 0.
- Dwell (FMVSS 218 S5.1): cumulative time above the level, the crossings interpolated linearly.
- Peak: the largest sample of the filtered resultant (a value the channel reported; no parabola:
  at 20 kHz a 6 ms half-sine's sample maximum is within 0.01 % of the true peak).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter, lfiltic

from meterbench.errors import MeterbenchError

__all__ = [
    "CFC_CLASSES",
    "GRAVITY_M_S2",
    "HicResult",
    "ImpactFeatures",
    "ImpactSignalError",
    "analyse_impact",
    "cfc_coefficients",
    "cfc_filter",
    "cfc_min_sample_rate_hz",
    "dwell_time_s",
    "hic",
    "impact_velocity_m_s",
    "peak_g",
    "resultant_g",
    "velocity_from_flag_m_s",
    "velocity_from_gates_m_s",
]

CFC_CLASSES = (60, 180, 600, 1000)
"""The SAE J211 channel frequency classes this filter implements."""
J211_WD_FACTOR = 2.0775
"""J211 Appendix C: wd = 2 pi CFC 2.0775 (rad/s), the 2-pole design frequency per pass."""
J211_MIN_RATE_PER_CFC = 10.0
"""J211 sampling rate: at least 10 x CFC (weisang.com's J211/1 table: 10 kHz for CFC 1000)."""
J211_PAD_S = 0.010
"""J211: at least 10 ms of data beyond each end of the interval of interest."""
GRAVITY_M_S2 = 9.80665
"""Standard gravity (m/s^2), for the light gate's height correction."""
HIC15_WINDOW_S = 0.015
HIC36_WINDOW_S = 0.036
_PAIRS_PER_BLOCK = 1 << 19  # HIC search: pairs evaluated per NumPy block (~4 MB of float64)


class ImpactSignalError(MeterbenchError, ValueError):
    """A trace or parameter the impact analysis cannot use (the message names the requirement)."""


def _check_rate(fs_hz: float) -> float:
    fs_hz = float(fs_hz)
    if not math.isfinite(fs_hz) or fs_hz <= 0:
        raise ImpactSignalError(f"fs_hz: expected a positive sample rate in Hz, got {fs_hz!r}")
    return fs_hz


def _trace(accel_g: np.ndarray, name: str = "accel_g", min_samples: int = 2) -> np.ndarray:
    a = np.asarray(accel_g, dtype=float)
    if a.ndim != 1 and not (a.ndim == 2 and a.shape[1] >= 1):
        raise ImpactSignalError(f"{name}: expected an (N,) or (N, axes) array, got shape {a.shape}")
    if a.shape[0] < min_samples:
        raise ImpactSignalError(f"{name}: expected at least {min_samples} samples, got {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise ImpactSignalError(f"{name}: expected finite values, found NaN or infinity")
    return a


def cfc_min_sample_rate_hz(cfc: int) -> float:
    """The lowest sample rate (Hz) SAE J211 accepts for channel frequency class ``cfc``."""
    return J211_MIN_RATE_PER_CFC * _check_cfc(cfc)


def _check_cfc(cfc: int) -> int:
    if cfc not in CFC_CLASSES:
        raise ImpactSignalError(f"cfc: expected one of {', '.join(map(str, CFC_CLASSES))} or None, got {cfc!r}")
    return int(cfc)


def cfc_coefficients(fs_hz: float, cfc: int) -> tuple[np.ndarray, np.ndarray]:
    """SAE J211-1 Appendix C 2-pole coefficients as (b, a) for :func:`scipy.signal.lfilter`.

    J211 writes Y[i] = a0 X[i] + a1 X[i-1] + a2 X[i-2] + b1 Y[i-1] + b2 Y[i-2]; here
    b = (a0, a1, a2) and a = (1, -b1, -b2). Raises :class:`ImpactSignalError` when ``fs_hz`` is
    below J211's 10 x CFC.
    """
    cfc = _check_cfc(cfc)
    fs_hz = _check_rate(fs_hz)
    if fs_hz < cfc_min_sample_rate_hz(cfc):
        raise ImpactSignalError(
            f"SAE J211 CFC {cfc}: the sample rate must be at least 10 x CFC = "
            f"{cfc_min_sample_rate_hz(cfc):g} Hz, got {fs_hz:g} Hz"
        )
    period = 1.0 / fs_hz
    wd = 2.0 * math.pi * cfc * J211_WD_FACTOR
    wa = math.sin(wd * period / 2.0) / math.cos(wd * period / 2.0)
    root2 = math.sqrt(2.0)
    denominator = 1.0 + root2 * wa + wa * wa
    a0 = wa * wa / denominator
    b1 = -2.0 * (wa * wa - 1.0) / denominator
    b2 = (-1.0 + root2 * wa - wa * wa) / denominator
    return np.array([a0, 2.0 * a0, a0]), np.array([1.0, -b1, -b2])


def _j211_pass(x: np.ndarray, b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """One J211 2-pole pass along axis 0: the first two outputs copy the inputs (J211 start-up)."""
    y = np.empty_like(x)
    y[:2] = x[:2]
    if x.shape[0] > 2:
        # the recursion from i = 2 with Y[0], Y[1] = X[0], X[1] as its past
        zi = np.stack([lfiltic(b, a, y=col[1::-1], x=col[1::-1]) for col in x[:2].T], axis=-1)
        y[2:] = lfilter(b, a, x[2:], axis=0, zi=zi)[0]
    return y


def _mirror_pad(x: np.ndarray, pad: int) -> np.ndarray:
    """Pre-extend both ends by an inverted mirror (odd reflection about the end sample)."""
    head = 2.0 * x[:1] - x[pad:0:-1]
    tail = 2.0 * x[-1:] - x[-2 : -pad - 2 : -1]
    return np.concatenate([head, x, tail], axis=0)


def cfc_filter(accel_g: np.ndarray, fs_hz: float, cfc: int | None) -> np.ndarray:
    """Filter a trace with the SAE J211-1 channel frequency class ``cfc`` (60/180/600/1000).

    The J211 2-pole Butterworth runs forward then backward (4-pole, phaseless) over the trace
    pre-extended by a 10 ms inverted mirror at each end (see the module notes). ``accel_g`` is
    (N,) or (N, axes), filtered along axis 0; ``cfc=None`` returns the input unchanged (as float).
    Raises :class:`ImpactSignalError` for a sample rate below 10 x CFC.
    """
    x = _trace(accel_g)
    if cfc is None:
        return x.copy()
    b, a = cfc_coefficients(fs_hz, cfc)
    flat = x.reshape(x.shape[0], -1)
    pad = min(int(round(J211_PAD_S * float(fs_hz))), flat.shape[0] - 1)
    padded = _mirror_pad(flat, pad) if pad > 0 else flat
    forward = _j211_pass(padded, b, a)
    both = _j211_pass(forward[::-1], b, a)[::-1]
    return both[pad : pad + flat.shape[0]].reshape(x.shape)


def resultant_g(ax: np.ndarray, ay: np.ndarray, az: np.ndarray) -> np.ndarray:
    """Resultant acceleration sqrt(ax^2 + ay^2 + az^2) (g) of three equal-length axes."""
    axes = [np.asarray(v, dtype=float) for v in (ax, ay, az)]
    if len({v.shape for v in axes}) != 1:
        raise ImpactSignalError(f"resultant_g: expected three axes of one shape, got {[v.shape for v in axes]}")
    return np.sqrt(axes[0] ** 2 + axes[1] ** 2 + axes[2] ** 2)


def peak_g(accel_g: np.ndarray, fs_hz: float) -> tuple[float, float]:
    """The largest sample (g) and its time (s from the first sample); the first one on a tie."""
    a = _trace(accel_g, min_samples=1)
    if a.ndim != 1:
        raise ImpactSignalError(f"accel_g: expected one (N,) trace, got shape {a.shape}")
    index = int(np.argmax(a))
    return float(a[index]), index / _check_rate(fs_hz)


def dwell_time_s(accel_g: np.ndarray, fs_hz: float, level_g: float) -> float:
    """Cumulative time (s) the trace spends above ``level_g``, crossings interpolated linearly.

    Exact for the piecewise-linear trace through the samples; every excursion counts (FMVSS 218
    limits the cumulative time above 150 g and 200 g).
    """
    a = _trace(accel_g)
    if a.ndim != 1:
        raise ImpactSignalError(f"accel_g: expected one (N,) trace, got shape {a.shape}")
    period = 1.0 / _check_rate(fs_hz)
    left, right = a[:-1] - level_g, a[1:] - level_g
    above = np.where(left > 0, 1.0, 0.0) * np.where(right > 0, 1.0, 0.0)
    crossing = (left > 0) != (right > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        part_above = np.where(left > 0, left, right) / np.abs(left - right)
    fraction = np.where(crossing, part_above, above)
    return float(np.sum(fraction) * period)


@dataclass(frozen=True)
class HicResult:
    """A Head Injury Criterion value and its window (s from the first sample)."""

    hic: float
    t1_s: float
    t2_s: float


def _hic_lags(integral: np.ndarray, fs_hz: float, first_lag: int, last_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """For each lag m = first_lag..last_lag samples: the largest (t2 - t1) mean^2.5, its first sample."""
    n = integral.shape[0]
    lags = last_lag - first_lag + 1
    # past the end, repeat the last value: such a "pair" has the same integral as (i, n-1) over a
    # longer time, so it never beats a real pair of a shorter lag (it only ties at 0)
    extended = np.concatenate([integral, np.full(last_lag, integral[-1])])
    windows = sliding_window_view(extended, last_lag + 1)[: n - first_lag]  # windows[i, m] = integral[i + m]
    duration_factor = (np.arange(first_lag, last_lag + 1) / fs_hz) ** -1.5  # dt (I/dt)^2.5 = I^2.5 dt^-1.5
    best = np.zeros(lags)
    start = np.zeros(lags, dtype=np.int64)
    rows = max(1, _PAIRS_PER_BLOCK // lags)
    for first in range(0, windows.shape[0], rows):
        block = windows[first : first + rows]
        rise = np.maximum(block[:, first_lag:] - block[:, :1], 0.0)
        values = rise * rise * np.sqrt(rise) * duration_factor
        row = np.argmax(values, axis=0)
        top = values[row, np.arange(lags)]
        better = top > best
        best[better] = top[better]
        start[better] = row[better] + first
    return best, start


def _hic_by_lag(accel_g: np.ndarray, fs_hz: float, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """For each lag m = 1..max_lag samples: the largest (t2 - t1) mean^2.5 and its first sample.

    Exact, with a proven skip: any window's integral is at most P, the sum of the positive
    trapezoids, so a window longer than (P^2.5 / H)^(2/3) cannot beat an HIC H already found;
    the lags up to 15 ms are searched first, the longer ones only up to that bound (their
    entries stay 0, below the best found).
    """
    period = 1.0 / fs_hz
    segments = (accel_g[1:] + accel_g[:-1]) * (period / 2.0)
    integral = np.concatenate([[0.0], np.cumsum(segments)])
    best = np.zeros(max_lag)
    start = np.zeros(max_lag, dtype=np.int64)
    first_stage = min(max_lag, max(1, int(HIC15_WINDOW_S * fs_hz)))
    best[:first_stage], start[:first_stage] = _hic_lags(integral, fs_hz, 1, first_stage)
    found = float(best[:first_stage].max())
    if first_stage < max_lag and found > 0.0:
        positive = float(np.sum(np.maximum(segments, 0.0)))
        bound = int(math.floor((positive**2.5 / found) ** (2.0 / 3.0) * fs_hz * (1 + 1e-9))) + 1
        last = min(max_lag, bound)
        if last > first_stage:
            best[first_stage:last], start[first_stage:last] = _hic_lags(integral, fs_hz, first_stage + 1, last)
    return best, start


def _hic_from_lags(best: np.ndarray, start: np.ndarray, fs_hz: float, max_lag: int) -> HicResult:
    lag = int(np.argmax(best[:max_lag])) + 1
    if best[lag - 1] <= 0.0:
        return HicResult(0.0, 0.0, 0.0)
    t1 = int(start[lag - 1])
    return HicResult(float(best[lag - 1]), t1 / fs_hz, (t1 + lag) / fs_hz)


def _max_lag(n: int, fs_hz: float, max_window_s: float | None) -> int:
    if max_window_s is None:
        return n - 1
    window = float(max_window_s)
    if not math.isfinite(window) or window <= 0:
        raise ImpactSignalError(f"max_window_s: expected a positive window in s or None, got {max_window_s!r}")
    return max(1, min(n - 1, int(math.floor(window * fs_hz + 1e-9))))


def hic(accel_g: np.ndarray, fs_hz: float, max_window_s: float | None) -> HicResult:
    """Head Injury Criterion of a resultant trace (g), all sample pairs with t2 - t1 <= window.

    HIC = max (t2 - t1) [ 1/(t2 - t1) int_t1^t2 a dt ]^2.5, the integral by cumulative trapezoid;
    ``max_window_s=None`` searches every window (no cap). Exact over all sample pairs.
    """
    a = _trace(accel_g)
    if a.ndim != 1:
        raise ImpactSignalError(f"accel_g: expected one (N,) resultant trace, got shape {a.shape}")
    fs_hz = _check_rate(fs_hz)
    max_lag = _max_lag(a.shape[0], fs_hz, max_window_s)
    best, start = _hic_by_lag(a, fs_hz, max_lag)
    return _hic_from_lags(best, start, fs_hz, max_lag)


def velocity_from_flag_m_s(flag_length_m: float, blocked_s: float) -> float:
    """Mean velocity (m/s) of a flag of known length that blocked one light gate for ``blocked_s``."""
    return _ratio("flag_length_m", flag_length_m, "blocked_s", blocked_s)


def velocity_from_gates_m_s(gate_spacing_m: float, interval_s: float) -> float:
    """Mean velocity (m/s) between two light gates ``gate_spacing_m`` apart crossed ``interval_s`` apart."""
    return _ratio("gate_spacing_m", gate_spacing_m, "interval_s", interval_s)


def _ratio(length_name: str, length_m: float, time_name: str, time_s: float) -> float:
    for name, value in ((length_name, length_m), (time_name, time_s)):
        if not math.isfinite(float(value)) or float(value) <= 0:
            raise ImpactSignalError(f"{name}: expected a positive finite number, got {value!r}")
    return float(length_m) / float(time_s)


def impact_velocity_m_s(
    *,
    flag_length_m: float | None = None,
    blocked_s: float | None = None,
    gate_spacing_m: float | None = None,
    interval_s: float | None = None,
    height_above_impact_m: float = 0.0,
) -> float:
    """Impact velocity (m/s) from one gate and a flag, or from two gates.

    The gate gives the mean velocity where it measures; ``height_above_impact_m`` (the height of
    that point above the point of impact) adds the free-fall gain: v = sqrt(v_gate^2 + 2 g h).
    """
    by_flag = flag_length_m is not None or blocked_s is not None
    by_gates = gate_spacing_m is not None or interval_s is not None
    if by_flag == by_gates:
        raise ImpactSignalError(
            "impact velocity: expected either flag_length_m and blocked_s, or gate_spacing_m and interval_s"
        )
    if by_flag:
        velocity = velocity_from_flag_m_s(_given("flag_length_m", flag_length_m), _given("blocked_s", blocked_s))
    else:
        velocity = velocity_from_gates_m_s(_given("gate_spacing_m", gate_spacing_m), _given("interval_s", interval_s))
    height = float(height_above_impact_m)
    if not math.isfinite(height) or height < 0:
        raise ImpactSignalError(f"height_above_impact_m: expected a height >= 0 in m, got {height_above_impact_m!r}")
    return math.sqrt(velocity * velocity + 2.0 * GRAVITY_M_S2 * height)


def _given(name: str, value: float | None) -> float:
    if value is None:
        raise ImpactSignalError(f"{name}: missing (the light gate needs both its length and its time)")
    return float(value)


@dataclass(frozen=True, eq=False)
class ImpactFeatures:
    """One drop's features from its filtered resultant (g, ms) and the trace checks a verdict needs.

    hic: no window cap; hic15 / hic36: window <= 15 / 36 ms; ``*_window_s``: (t1, t2) in s.
    dwell_ms: cumulative time above each level, keyed by the level as text ("150", "200").
    filtered_g: the filtered resultant (N,), the trace every feature is taken from.
    clipped: some raw channel sits flat at its extreme for ``clip_run`` samples or more.
    dead_channels: indices of channels with (almost) no signal while another shows the pulse.
    preconditions_ok / precondition_problem: the J211 pre-conditions and a fully recorded pulse.
    """

    peak_g: float
    t_peak_ms: float
    hic: float
    hic15: float
    hic36: float
    hic_window_s: tuple[float, float]
    hic15_window_s: tuple[float, float]
    hic36_window_s: tuple[float, float]
    dwell_ms: dict[str, float]
    filtered_g: np.ndarray = field(repr=False)
    fs_hz: float
    cfc: int | None
    clipped: bool
    dead_channels: list[int]
    preconditions_ok: bool
    precondition_problem: str | None

    def summary(self) -> dict[str, object]:
        """The `meterbench impact --json` fields (DESIGN.md "Helmet impact")."""
        return {
            "peak_g": self.peak_g,
            "hic": self.hic,
            "hic15": self.hic15,
            "hic36": self.hic36,
            "dwell_ms": dict(self.dwell_ms),
            "t_peak_ms": self.t_peak_ms,
        }


def _level_key(level_g: float) -> str:
    return f"{level_g:g}"


def clipped_channels(accel_g: np.ndarray, clip_run: int = 3) -> list[int]:
    """Channels whose extreme on the pulse's side (farther from the median) repeats ``clip_run`` times.

    A flat top at the channel's extreme is what an ADC or amplifier at its limit records; a smooth
    peak never holds one value for 3 samples (two equal samples can straddle a symmetric peak).
    """
    channels = np.asarray(accel_g, dtype=float).reshape(len(accel_g), -1)
    found = []
    for index, channel in enumerate(channels.T):
        baseline = float(np.median(channel))
        high, low = float(channel.max()), float(channel.min())
        extreme = high if high - baseline >= baseline - low else low  # the pulse's side
        if extreme == baseline:
            continue  # a constant channel is dead, not clipped
        at = np.concatenate([[False], channel == extreme, [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(at))
        if np.max(edges[1::2] - edges[::2]) >= clip_run:
            found.append(index)
    return found


def dead_channel_indices(filtered_g: np.ndarray, dead_fraction: float = 0.01) -> list[int]:
    """Channels (of an (N, axes) filtered trace) whose range is below ``dead_fraction`` of the largest.

    A constant channel is always dead; with one channel only that test applies.
    """
    channels = np.asarray(filtered_g, dtype=float).reshape(len(filtered_g), -1)
    ranges = np.ptp(channels, axis=0)
    largest = float(ranges.max())
    return [i for i, r in enumerate(ranges) if r == 0 or (channels.shape[1] > 1 and r < dead_fraction * largest)]


def analyse_impact(
    accel_g: np.ndarray,
    fs_hz: float,
    cfc: int | None = 1000,
    dwell_levels_g: tuple[float, ...] = (150.0, 200.0),
    *,
    clip_run: int = 3,
    dead_fraction: float = 0.01,
    end_fraction: float = 0.1,
) -> ImpactFeatures:
    """Features of one drop: filter each axis (J211 ``cfc``), take the resultant, then peak, HIC
    (no cap, 15 ms, 36 ms), cumulative dwell above each level, and the trace checks.

    ``accel_g`` is (N,) or (N, 3) in g at ``fs_hz``. A sample rate below J211's 10 x CFC does not
    raise here: the trace is analysed unfiltered and ``preconditions_ok`` is False with the reason.
    The pulse must be fully recorded: the resultant's first and last samples below
    ``end_fraction`` of the peak, else ``preconditions_ok`` is False.
    """
    raw = _trace(accel_g, min_samples=3)
    fs_hz = _check_rate(fs_hz)
    if raw.ndim == 2 and raw.shape[1] not in (1, 3):
        raise ImpactSignalError(f"accel_g: expected (N,) or (N, 3) axes, got shape {raw.shape}")
    problems = []
    try:
        filtered = cfc_filter(raw, fs_hz, cfc)
    except ImpactSignalError as exc:
        if cfc not in CFC_CLASSES:
            raise
        problems.append(str(exc))
        filtered = raw.copy()
    channels = filtered.reshape(raw.shape[0], -1)
    resultant = channels[:, 0] if channels.shape[1] == 1 else resultant_g(*channels.T)
    peak, t_peak = peak_g(resultant, fs_hz)
    if peak > 0 and max(abs(resultant[0]), abs(resultant[-1])) >= end_fraction * peak:
        problems.append(
            f"pulse not fully recorded: the trace must start and end below {end_fraction:g} x peak "
            f"({end_fraction * peak:.1f} g), got {resultant[0]:.1f} g and {resultant[-1]:.1f} g"
        )
    best, start = _hic_by_lag(resultant, fs_hz, resultant.shape[0] - 1)
    windows = {
        "hic": _hic_from_lags(best, start, fs_hz, resultant.shape[0] - 1),
        "hic15": _hic_from_lags(best, start, fs_hz, _max_lag(resultant.shape[0], fs_hz, HIC15_WINDOW_S)),
        "hic36": _hic_from_lags(best, start, fs_hz, _max_lag(resultant.shape[0], fs_hz, HIC36_WINDOW_S)),
    }
    return ImpactFeatures(
        peak_g=peak,
        t_peak_ms=t_peak * 1e3,
        hic=windows["hic"].hic,
        hic15=windows["hic15"].hic,
        hic36=windows["hic36"].hic,
        hic_window_s=(windows["hic"].t1_s, windows["hic"].t2_s),
        hic15_window_s=(windows["hic15"].t1_s, windows["hic15"].t2_s),
        hic36_window_s=(windows["hic36"].t1_s, windows["hic36"].t2_s),
        dwell_ms={_level_key(level): dwell_time_s(resultant, fs_hz, level) * 1e3 for level in dwell_levels_g},
        filtered_g=resultant,
        fs_hz=fs_hz,
        cfc=cfc,
        clipped=bool(clipped_channels(raw, clip_run)),
        dead_channels=dead_channel_indices(channels, dead_fraction) if raw.ndim == 2 and raw.shape[1] > 1 else [],
        preconditions_ok=not problems,
        precondition_problem="; ".join(problems) or None,
    )
