"""meterbench.sim: everything simulated: bench physics, register and neck-scale renderers,
the offline session simulators, the live bench peer and the Modbus slave.

Only the command line, the tests and the bench's device factory import this package.
"""

from meterbench.sim.helmet import SimDrop, simulate_helmet
from meterbench.sim.live import MarkerlessView, SimMeter, SimulatedBenchPeer, SimulatedCamera, markerless_view
from meterbench.sim.markerless import LightChange, PlateMotion
from meterbench.sim.modbus_slave import ModbusSlave
from meterbench.sim.register_render import RENDER_STYLES, CameraModel, RegisterRenderer, RenderStyle
from meterbench.sim.tank import simulate_tank
from meterbench.sim.water_meter import PROFILES, simulate_water_meter

__all__ = [
    "PROFILES",
    "RENDER_STYLES",
    "CameraModel",
    "LightChange",
    "MarkerlessView",
    "ModbusSlave",
    "PlateMotion",
    "RegisterRenderer",
    "RenderStyle",
    "SimMeter",
    "SimulatedBenchPeer",
    "SimulatedCamera",
    "markerless_view",
    "SimDrop",
    "simulate_helmet",
    "simulate_tank",
    "simulate_water_meter",
]
