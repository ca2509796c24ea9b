"""meterbench.vision"""

from meterbench.vision.layout import (  # noqa: F401
    RegisterLayout,
    default_register_layout,
    positions_from_volume,
    volume_from_positions,
)
