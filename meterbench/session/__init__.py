"""meterbench.session: the session folder format (version 1): schemas, reader and writer.

The writer checks what it writes with the same JSON Schemas the reader enforces
(``format.schema_problems``). Format: docs/session-format.md.
"""

from meterbench.session.format import FORMAT_NAME, FORMAT_VERSION, SCHEMA_DIR, read_bounded, schema_problems
from meterbench.session.reader import CameraSource, DeviceEvent, EvidenceGap, Session, load_session
from meterbench.session.traces import Trace, TraceError, parse_trace, read_trace, write_trace_csv
from meterbench.session.writer import (
    CameraWriter,
    DeviceLog,
    SessionRecorder,
    reference_image_path,
    write_json_atomic,
    write_text_atomic,
    write_texts_atomic,
)

__all__ = [
    "read_bounded",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SCHEMA_DIR",
    "CameraSource",
    "CameraWriter",
    "DeviceEvent",
    "DeviceLog",
    "EvidenceGap",
    "Session",
    "SessionRecorder",
    "Trace",
    "TraceError",
    "load_session",
    "parse_trace",
    "read_trace",
    "reference_image_path",
    "schema_problems",
    "write_json_atomic",
    "write_text_atomic",
    "write_texts_atomic",
    "write_trace_csv",
]
