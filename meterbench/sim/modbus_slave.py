"""A simulated Modbus RTU slave (the bench's flow computer) over a serial port, for the
simulated bench and the tests; the framing comes from the real driver, ``devices.modbus``."""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable

import serial

from meterbench.devices.modbus import READ_HOLDING, READ_INPUT, check_crc, encode_value, with_crc


class ModbusSlave:
    """A simulated Modbus RTU slave: answers 0x03/0x04 from a register map over a port.

    ``set_value(address, value, kind)`` updates registers (thread-safe);
    ``before_answer`` (if set) is called before each answer, to refresh them. Faults for
    tests: ``corrupt_next`` responses get a wrong CRC, ``drop_next`` are not
    answered (a timeout for the master); reads outside the map get exception 2.
    """

    def __init__(self, port: str, *, slave: int = 1, baudrate: int = 19200, word_order: str = "big") -> None:
        self.slave = slave
        self.word_order = word_order
        self.registers: dict[int, int] = {}
        self.corrupt_next = 0
        self.drop_next = 0
        self.requests = 0
        self.before_answer: Callable[[], None] | None = None
        self._serial = serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modbus-slave", daemon=True)

    def set_value(self, address: int, value: float, kind: str = "float32") -> None:
        """Set the 32-bit value at ``address`` (two registers)."""
        with self._lock:
            high, low = encode_value(value, kind, self.word_order)
            self.registers[address], self.registers[address + 1] = high, low

    def start(self) -> ModbusSlave:
        """Start answering requests."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the port."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._serial.close()

    def __enter__(self) -> ModbusSlave:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, request: bytes) -> bytes | None:
        """Build the response frame to one request (None when not for this slave)."""
        if len(request) != 8 or not check_crc(request) or request[0] != self.slave:
            return None
        _, function, address, count = struct.unpack(">BBHH", request[:6])
        if function not in (READ_HOLDING, READ_INPUT):
            return with_crc(bytes([self.slave, function | 0x80, 1]))
        with self._lock:
            if any(a not in self.registers for a in range(address, address + count)):
                return with_crc(bytes([self.slave, function | 0x80, 2]))
            values = [self.registers[a] for a in range(address, address + count)]
        return with_crc(struct.pack(f">BBB{count}H", self.slave, function, 2 * count, *values))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                request = self._serial.read(8)
            except (serial.SerialException, OSError):
                return
            if len(request) < 8:
                continue
            self.requests += 1
            if self.before_answer is not None:
                self.before_answer()
            response = self.answer(request)
            if response is None:
                continue
            if self.drop_next > 0:
                self.drop_next -= 1
                continue
            if self.corrupt_next > 0:
                self.corrupt_next -= 1
                response = response[:-1] + bytes([response[-1] ^ 0xFF])
            self._serial.write(response)
