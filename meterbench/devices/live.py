"""Public names of the live bench devices (one import line in ``devices/__init__.py``)."""

from meterbench.devices._common import DeviceError, DeviceTimeoutError, Status, monotonic_clock
from meterbench.devices.camera import CameraCapture
from meterbench.devices.modbus import ModbusSlave, ModbusTotaliserReader, RegisterField
from meterbench.devices.mqtt import BenchController, MqttConfig
from meterbench.devices.serial_totaliser import TotaliserReader
from meterbench.devices.sim_live import MosquittoBroker, SimMeter, SimulatedBenchPeer, SocatPtyPair

__all__ = ["BenchController", "CameraCapture", "DeviceError", "DeviceTimeoutError",
           "ModbusSlave", "ModbusTotaliserReader", "MosquittoBroker", "MqttConfig",
           "RegisterField", "SimMeter", "SimulatedBenchPeer", "SocatPtyPair", "Status",
           "TotaliserReader", "monotonic_clock"]
