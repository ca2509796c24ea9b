"""meterbench.models: shipped ONNX readers for digit wheels and red pointer sub-dials."""

from meterbench.models._runtime import (
    CropResult,
    DialReader,
    DigitReader,
    WheelReadings,
    read_crop_files,
)

__all__ = ["CropResult", "DialReader", "DigitReader", "WheelReadings", "read_crop_files"]
