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
