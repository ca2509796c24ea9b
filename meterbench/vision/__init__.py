"""meterbench.vision"""

from meterbench.vision.align import (  # noqa: F401
    MarkerAligner,
    PlateAlignment,
    align_to_plate,
    element_crop_box,
)
from meterbench.vision.compose import (  # noqa: F401
    Composition,
    carry_residuals,
    compose_register,
    estimate_offsets,
)
from meterbench.vision.layout import (  # noqa: F401
    ReferenceImage,
    RegisterLayout,
    default_register_layout,
    positions_from_volume,
    volume_from_positions,
)
from meterbench.vision.neck_scale import (  # noqa: F401
    NeckScaleGeometry,
    NeckScaleReading,
    read_neck_scale,
)
from meterbench.vision.reference_align import (  # noqa: F401
    AlignmentQuality,
    AlignmentWatch,
    ReferenceAligner,
    ReferenceAlignment,
    plate_aligner,
)
from meterbench.vision.register import RegisterReader, RegisterReading  # noqa: F401
