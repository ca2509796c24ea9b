"""meterbench.devices"""

from meterbench.devices.live import *  # noqa: E402,F401,F403  (live bench devices: live.__all__)
from meterbench.devices.recording import CameraWriter, DeviceLog, SessionRecorder  # noqa: E402,F401
from meterbench.devices.simulator import simulate_water_meter  # noqa: E402,F401
from meterbench.devices.tank_sim import simulate_tank  # noqa: E402,F401
