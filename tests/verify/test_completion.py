"""complete_partial_readings: frames whose upper elements were unreadable, completed from the others."""

from __future__ import annotations

import math

import numpy as np

from meterbench.verify.fusion import ReferenceTrack, complete_partial_readings

FLOW_L_S = 0.7
T = np.arange(0.0, 60.0, 0.25)
TRUE_L = 12_345.6 + 1.02 * FLOW_L_S * T  # the meter reads 2 % high
REFERENCE = ReferenceTrack.from_samples(T, 500.0 + FLOW_L_S * T)
U = np.full(T.size, 0.01)


def _frames(modulus_l: float, whole_every: int | None):
    """Every frame's lower elements read (volume modulo `modulus_l`); every `whole_every`-th frame read whole."""
    whole = np.full(T.size, np.nan)
    modulus = np.full(T.size, modulus_l)
    if whole_every:
        whole[::whole_every] = TRUE_L[::whole_every]
        modulus[::whole_every] = math.inf
    partial = np.where(np.isfinite(modulus), np.mod(TRUE_L, modulus_l), TRUE_L)
    return whole, partial, modulus


def test_frames_with_an_unread_upper_element_get_the_volume_of_the_frames_read_whole() -> None:
    whole, partial, modulus = _frames(10.0, whole_every=7)  # the 10 L wheel carries 4 times in the minute
    result = complete_partial_readings(T, whole, partial, modulus, U, REFERENCE)
    assert result.reason == "" and result.offset_known and result.corrected == 0
    np.testing.assert_allclose(result.volume_l, TRUE_L, atol=1e-9)
    assert result.completed.sum() == T.size - len(T[::7])


def test_a_high_wheel_misread_in_a_few_frames_is_outvoted() -> None:
    whole, partial, modulus = _frames(100.0, whole_every=3)
    wrong = np.flatnonzero(np.isfinite(whole))[[2, 9, 15]]
    whole[wrong] += 3000.0  # the m3 wheel read three digits off
    partial[wrong] = whole[wrong]
    result = complete_partial_readings(T, whole, partial, modulus, U, REFERENCE)
    assert result.corrected == 3
    np.testing.assert_allclose(result.volume_l, TRUE_L, atol=1e-9)


def test_never_read_but_standing_still_gives_relative_volumes() -> None:
    whole, partial, modulus = _frames(1000.0, whole_every=None)  # 12.3 m3 .. 12.4 m3: no carry of the m3 wheel
    result = complete_partial_readings(T, whole, partial, modulus, U, REFERENCE)
    assert not result.offset_known and not result.unread_carries
    np.testing.assert_allclose(np.diff(result.volume_l), np.diff(TRUE_L), atol=1e-9)
    assert abs(result.volume_l[0] - TRUE_L[0] % 1000.0) < 1e-9


def test_never_read_and_carrying_is_not_invented() -> None:
    whole, partial, modulus = _frames(10.0, whole_every=None)  # the 10 L wheel turns over 4 times
    result = complete_partial_readings(T, whole, partial, modulus, U, REFERENCE)
    assert result.unread_carries and np.isnan(result.volume_l).all()
    assert "never read and turn over" in result.reason


def test_a_gap_longer_than_the_modulus_allows_is_not_bridged() -> None:
    whole, partial, modulus = _frames(10.0, whole_every=None)
    whole[:40] = TRUE_L[:40]  # read whole only in the first 10 s
    modulus[:40] = math.inf
    partial[:40] = TRUE_L[:40]
    keep = (T < 20.0) | (T > 40.0)  # 20 s without any reading: 14 L, more than one turn of the 10 L wheel
    result = complete_partial_readings(T[keep], whole[keep], partial[keep], modulus[keep], U[keep], REFERENCE)
    after = T[keep] > 40.0
    np.testing.assert_allclose(result.volume_l[~after], TRUE_L[keep][~after], atol=1e-9)
    assert np.isnan(result.volume_l[after]).all() and "cannot be chained" in result.reason


def test_one_misread_partial_frame_does_not_cut_the_chain() -> None:
    whole, partial, modulus = _frames(100.0, whole_every=None)
    whole[:4], modulus[:4], partial[:4] = TRUE_L[:4], math.inf, TRUE_L[:4]
    partial[100] = (partial[100] + 37.0) % 100.0  # one frame's 10 L wheel misread
    result = complete_partial_readings(T, whole, partial, modulus, U, REFERENCE)
    good = np.arange(T.size) != 100
    np.testing.assert_allclose(result.volume_l[good], TRUE_L[good], atol=1e-9)
    assert np.isnan(result.volume_l[100])


def test_one_frame_read_whole_does_not_set_the_upper_part_of_a_stretch() -> None:
    """A single frame read whole, its m3 wheel three digits off: fewer than 3 votes, so the point's
    volumes stay relative (stop - start exact) instead of taking that frame's upper part."""
    whole, partial, modulus = _frames(1000.0, whole_every=None)
    whole[50], modulus[50] = TRUE_L[50] + 3000.0, math.inf
    partial[50] = whole[50]
    result = complete_partial_readings(T, whole, partial, modulus, U, REFERENCE)
    assert not result.offset_known
    np.testing.assert_allclose(result.volume_l - result.volume_l[0], TRUE_L - TRUE_L[0], atol=1e-9)


def test_counting_the_turns_of_a_never_read_element_is_only_done_when_asked() -> None:
    whole, partial, modulus = _frames(10.0, whole_every=None)
    result = complete_partial_readings(T, whole, partial, modulus, U, REFERENCE, count_unread_turns=True)
    assert not result.unread_carries and not result.offset_known
    np.testing.assert_allclose(result.volume_l - result.volume_l[0], TRUE_L - TRUE_L[0], atol=1e-9)


def test_a_never_read_element_turning_only_before_the_needed_span_costs_only_the_frames_before() -> None:
    """The 10 L wheel turns at 12,350 L (t = 6.25 s), before the span needed (10-20 s): only the frames
    before the turnover are lost; a span that contains it needs the wheel."""
    whole, partial, modulus = _frames(10.0, whole_every=None)
    needed = (10.0, 20.0)  # 12,352.7 .. 12,359.9 L: no turnover inside
    keep = T <= 20.0
    args = (T[keep], whole[keep], partial[keep], modulus[keep], U[keep], REFERENCE)
    result = complete_partial_readings(*args, needed_s=needed)
    assert not result.unread_carries and not result.offset_known
    after = T[keep] >= 6.25
    assert np.isnan(result.volume_l[~after]).all()
    np.testing.assert_allclose(np.diff(result.volume_l[after]), np.diff(TRUE_L[keep][after]), atol=1e-9)
    assert complete_partial_readings(*args, needed_s=(5.0, 20.0)).unread_carries  # inside: needed
