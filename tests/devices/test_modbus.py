"""Modbus RTU framing, and a reader against a simulated slave over a real pty pair."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from meterbench.devices.modbus import (
    ModbusError,
    ModbusTotaliserReader,
    RegisterField,
    crc16_modbus,
    decode_value,
    encode_value,
    parse_read_response,
    read_request,
    with_crc,
)
from meterbench.session import SessionRecorder
from meterbench.sim import ModbusSlave
from tests.session.session_helpers import water_meter_manifest


def test_crc_matches_the_specification_example():
    # Modbus over serial line spec, read 2 holding registers from slave 1 at 0: CRC C4 0B.
    assert read_request(1, 0x03, 0, 2) == bytes.fromhex("010300000002C40B")
    assert crc16_modbus(b"123456789") == 0x4B37  # CRC-16/MODBUS check value


@pytest.mark.parametrize("kind", ["float32", "uint32"])
@pytest.mark.parametrize("order", ["big", "little"])
def test_values_round_trip_through_registers(kind, order):
    assert decode_value(encode_value(123456.0, kind, order), kind, order) == 123456.0


def test_exception_and_crc_errors_are_raised():
    with pytest.raises(ModbusError, match="exception response 2"):
        parse_read_response(with_crc(bytes.fromhex("018402")), 1, 0x04, 2)
    with pytest.raises(ModbusError, match="CRC"):
        parse_read_response(bytes.fromhex("0104040000000000ff"), 1, 0x04, 2)


@pytest.mark.serial
def test_reader_counts_crc_errors_timeouts_and_exceptions(pty_pair, tmp_path):
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("t"))
    log = recorder.device_log("flow-computer", "modbus")
    with ModbusSlave(pty_pair.b) as slave:
        slave.set_value(0, 1234.5678, "float32")
        slave.set_value(2, 42000, "uint32")
        fields = [RegisterField("volume_l", 0), RegisterField("pulses", 2, "uint32", units="")]
        reader = ModbusTotaliserReader(pty_pair.a, log, recorder.now_s, fields, timeout_s=0.2)
        reader.open()  # polled by hand: no thread racing the fault injection
        # the float32 the slave's two registers hold, exactly (no rounding on the way)
        assert reader.poll() == {"volume_l": float(np.float32(1234.5678)), "pulses": 42000.0}
        slave.corrupt_next = 1
        assert reader.poll() is None
        slave.drop_next = 1
        started = time.monotonic()
        assert reader.poll() is None
        assert time.monotonic() - started < 1.0
        time.sleep(0.1)
        reader.stop()
        bad = ModbusTotaliserReader(pty_pair.a, log, recorder.now_s, [RegisterField("x", 50)])
        assert bad.open().poll() is None
        bad.stop()
    recorder.close()
    assert (reader.counts.ok, reader.counts.crc_errors, reader.counts.timeouts) == (1, 1, 1)
    assert bad.counts.exceptions == 1
    events = [json.loads(x) for x in (tmp_path / "s/devices/flow-computer.jsonl").read_text().splitlines()]
    assert [e["error"] is None for e in events] == [True, False, False, False]
    assert events[1]["error"] == "CRC mismatch" and events[1]["raw"]
    assert events[2]["error"].startswith("timeout")
