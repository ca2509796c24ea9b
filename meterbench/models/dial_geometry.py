"""A classical reader of red pointer sub-dials: the second opinion beside the dial CNN.

No learning: the pointer is the red part of the crop (R − max(G, B): the large
red blobs, a hub may cut the pointer in two); its axis is the blob's principal axis (the axis passes through
the dial's centre whatever the crop's offset); which end is the tip comes from
the dial's pivot, and failing that from the mass along the axis. A dial crop is
centred on the dial, so the pivot is the crop centre: the tip is the end that
reaches clearly further from it (by PIVOT_REACH_RATIO; an arrow's wide head, a
counterweight or a wedge's base behind the pivot cannot fool this). When the two
reaches are alike (an off-centre crop, a pointer drawn across the pivot), the tip
is the end that reaches further from the blob's centre of mass and is the
thinner end (a hub, a counterweight or the wide base of a triangle sits on the
tail side). The value is the tip's angle clockwise from 12 o'clock,
in tenths of a turn (0..10), as the CNN reads it.

It has an opinion only when the blob is clearly elongated (else it is a round
hub alone, or no pointer); `tip_sure` is false when the two ends are too alike
to tell apart, and then only the axis is known (the reading or the opposite).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from meterbench.models._runtime import circular_distance

WORK_SIZE_PX = 64  # crops are resized to this square before measuring
MIN_RED_SHARE = 0.01  # the red blob must cover at least this share of the crop
MIN_ELONGATION = 1.35  # sqrt(major / minor second moment) below which no axis is trusted
MIN_TIP_MARGIN = 0.12  # relative difference of the two ends' scores below which the tip is unsure
MIN_PART_SHARE = 0.15  # red blobs at least this share of the largest one are parts of the pointer
MIN_REDNESS = 25.0  # grey levels of R − max(G, B) always needed to count as red
PIVOT_REACH_RATIO = 1.5  # the tip reaches this much further from the crop centre than the tail


@dataclass(frozen=True)
class DialGeometry:
    """Geometric readings of N crops: value (0..10), has_axis, tip_sure (bool arrays)."""

    value: np.ndarray
    has_axis: np.ndarray
    tip_sure: np.ndarray

    def __len__(self) -> int:
        return len(self.value)


def _red_blob(crop: np.ndarray) -> np.ndarray | None:
    """Boolean mask of the red pointer (the large red blobs) of a BGR crop at WORK_SIZE_PX, or None."""
    small = cv2.resize(crop, (WORK_SIZE_PX, WORK_SIZE_PX), interpolation=cv2.INTER_AREA).astype(np.float32)
    redness = small[:, :, 2] - np.maximum(small[:, :, 0], small[:, :, 1])
    threshold = max(MIN_REDNESS, 0.45 * _percentile(redness.ravel(), 99.5))
    mask = (redness > threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    if areas.sum() < MIN_RED_SHARE * WORK_SIZE_PX**2:
        return None
    # the pointer may be cut in two by a metal hub or cap over its middle: keep every large part
    is_part = np.concatenate(([False], areas >= MIN_PART_SHARE * areas.max()))
    return is_part[labels]


def _percentile(values: np.ndarray, q: float, *, is_sorted: bool = False) -> float:
    """``np.percentile(values, q)`` (its linear method, bit for bit) of a 1-D array, sorted or not: the
    crops are small, so numpy's per-call overhead was half of a register read."""
    virtual = (values.size - 1) * (q / 100)
    if virtual >= values.size - 1:
        return float(values[-1] if is_sorted else values.max())
    below = math.floor(virtual)
    ordered = values if is_sorted else np.partition(values, (below, below + 1))
    gamma = virtual - below
    a, b = ordered[below], ordered[below + 1]
    return float(b - (b - a) * (1 - gamma) if gamma >= 0.5 else a + (b - a) * gamma)


def _end_score(along: np.ndarray, ordered: np.ndarray, across: np.ndarray, sign: float) -> float:
    """How tip-like the `sign` end of the blob is: its reach from the centre of mass divided by
    its width near that end (a long thin end is a tip; a short wide one a hub or base).
    ``ordered``: ``sign * along`` sorted."""
    reach = _percentile(ordered, 98, is_sorted=True)
    if reach <= 0:
        return 0.0
    near_end = sign * along > 0.7 * reach
    width = float(np.ptp(across[near_end])) + 1.0 if near_end.any() else 1.0
    return reach / width**0.5


def read_dial_geometry(crops: Sequence[np.ndarray]) -> DialGeometry:
    """The pointer position (0..10) of each BGR dial crop from its red blob alone."""
    n = len(crops)
    value, has_axis, tip_sure = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
    for i, crop in enumerate(crops):
        image = np.asarray(crop)
        if image.ndim != 3 or image.shape[2] < 3:
            continue  # a grey crop has no redness: no opinion
        blob = _red_blob(np.ascontiguousarray(image[:, :, :3]))
        if blob is None:
            continue
        ys, xs = np.nonzero(blob)
        points = np.stack([xs - xs.mean(), ys - ys.mean()], axis=1).astype(np.float64)
        moments, axes = np.linalg.eigh(points.T @ points / len(points))
        if moments[0] <= 0 or np.sqrt(moments[1] / moments[0]) < MIN_ELONGATION:
            continue
        major, minor = axes[:, 1], axes[:, 0]
        along, across = points @ major, points @ minor
        pivot = float((np.array([WORK_SIZE_PX / 2 - 0.5] * 2) - [xs.mean(), ys.mean()]) @ major)
        ordered = np.sort(along)
        reach_forward = _percentile(ordered, 98, is_sorted=True) - pivot
        reach_backward = pivot - _percentile(ordered, 2, is_sorted=True)
        forward = _end_score(along, ordered, across, 1.0)
        backward = _end_score(along, -ordered[::-1], across, -1.0)
        if max(reach_forward, reach_backward) >= PIVOT_REACH_RATIO * max(min(reach_forward, reach_backward), 1.0):
            forward, backward = reach_forward, max(reach_backward, 1.0)  # the pivot decides
        direction = major if forward >= backward else -major
        # clockwise from 12 o'clock (image y grows downwards)
        angle = np.arctan2(direction[0], -direction[1])
        value[i] = np.mod(angle / (2 * np.pi) * 10.0, 10.0)
        has_axis[i] = True
        tip_sure[i] = abs(forward - backward) / max(forward, backward) >= MIN_TIP_MARGIN
    return DialGeometry(value=value, has_axis=has_axis, tip_sure=tip_sure)


def disagrees(cnn_value: np.ndarray, geometry: DialGeometry, tolerance: float) -> np.ndarray:
    """True where the geometric reading contradicts the CNN's by more than `tolerance` (0..10 units).

    Sure tip: the CNN must be within `tolerance` of it. Unsure tip: within
    `tolerance` of either end of the axis. No axis: no opinion (False).
    """
    to_tip = circular_distance(cnn_value, geometry.value)
    to_tail = circular_distance(cnn_value, np.mod(geometry.value + 5.0, 10.0))
    off = np.where(geometry.tip_sure, to_tip, np.minimum(to_tip, to_tail))
    return geometry.has_axis & (off > tolerance)


def confirms(cnn_value: np.ndarray, geometry: DialGeometry, agreement: float) -> np.ndarray:
    """True where the geometric reading is sure of the tip and within `agreement` (0..10 units) of the
    CNN's: two independent readers agree, enough to read a crop the CNN alone is torn about."""
    return geometry.has_axis & geometry.tip_sure & (circular_distance(cnn_value, geometry.value) <= agreement)
