"""meterbench.devices"""

from meterbench.devices.recording import CameraWriter, DeviceLog, SessionRecorder  # noqa: E402,F401
