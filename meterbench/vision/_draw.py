"""Drawing shared by the overlays a person checks (`layout propose --overlay`, `read --overlay`)."""

from __future__ import annotations

import cv2
import numpy as np


def overlay_scale(image: np.ndarray) -> tuple[float, int]:
    """(text scale, line thickness px) for an overlay of `image`: sized for a 600 px tall photo."""
    scale = max(image.shape[0] / 600.0, 0.5)
    return scale, max(1, int(round(scale)))


def outlined_text(
    out: np.ndarray,
    label: str,
    org: tuple[int, int],
    colour: tuple[int, int, int],
    size: float,
    thick: int,
    line_type: int = cv2.LINE_AA,
) -> None:
    """`label` at `org` in `colour` over a black outline, readable on any background (in place)."""
    cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), thick + 2, line_type)
    cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, size, colour, thick, line_type)
