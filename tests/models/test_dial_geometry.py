"""The geometric dial reader on rendered pointer shapes: it finds the tip, and it vetoes a CNN that
takes the wrong end of the pointer (the failure seen on wide triangles over a metallic hub)."""

import numpy as np
import pytest

from meterbench.models._runtime import GEOMETRY_TOLERANCE, circular_distance
from meterbench.models.dial_geometry import disagrees, read_dial_geometry
from meterbench.models.training.synthetic_dials import render_dial


def _rendered(style: str, hub: str, n: int = 60, seed: int = 7) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    crops, tenths = zip(*[render_dial(rng, (94, 94), style, hub) for _ in range(n)], strict=True)
    return list(crops), np.array(tenths) / 10.0


@pytest.mark.parametrize(
    ("style", "hub", "min_sure"),
    [("wedge", "metal", 0.7), ("arrow", "none", 0.9), ("needle", "metal", 0.85), ("teardrop", "red", 0.9)],
)
def test_geometry_reads_the_tip_and_vetoes_the_wrong_end(style, hub, min_sure):
    crops, truth = _rendered(style, hub)
    geometry = read_dial_geometry(crops)
    sure = geometry.tip_sure
    assert sure.mean() >= min_sure
    assert circular_distance(geometry.value[sure], truth[sure]).max() < 0.5
    wrong_end = disagrees(np.mod(truth + 5.0, 10.0), geometry, GEOMETRY_TOLERANCE)
    assert wrong_end[sure].all()  # a CNN reading the tail is vetoed wherever the tip is sure
    assert not disagrees(truth, geometry, GEOMETRY_TOLERANCE).any()  # the right reading never is


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_percentile_is_numpys_bit_for_bit(dtype):
    """The reader's own percentile (one sort or partition instead of numpy's per-call overhead) gives
    exactly np.percentile's linear-method numbers, so the second opinion did not move."""
    from meterbench.models.dial_geometry import _percentile

    rng = np.random.default_rng(7)
    for size in (1, 2, 3, 17, 64 * 64):
        values = (rng.normal(0, 50, size) * rng.choice([1, 1e-3, 1e3])).astype(dtype)
        for q in (2, 50, 98, 99.5, 100):
            expected = float(np.percentile(values, q))
            assert _percentile(values, q) == expected, (size, q)
            assert _percentile(np.sort(values), q, is_sorted=True) == expected, (size, q)
