"""meterbench.devices: real drivers only: serial pulse totaliser, Modbus RTU flow computer,
MQTT bench controller, cameras. Imports nothing of meterbench but ``meterbench.errors``."""

from meterbench.devices._common import Clock, EventSink, Status, monotonic_clock
from meterbench.devices.camera import CameraCapture
from meterbench.devices.modbus import ModbusError, ModbusTotaliserReader, RegisterField
from meterbench.devices.mqtt import BenchController, MqttConfig
from meterbench.devices.serial_totaliser import TotaliserReader
from meterbench.errors import DeviceError, DeviceTimeoutError

__all__ = [
    "BenchController",
    "CameraCapture",
    "Clock",
    "DeviceError",
    "DeviceTimeoutError",
    "EventSink",
    "ModbusError",
    "ModbusTotaliserReader",
    "MqttConfig",
    "RegisterField",
    "Status",
    "TotaliserReader",
    "monotonic_clock",
]
