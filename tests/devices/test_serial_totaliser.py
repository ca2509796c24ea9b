"""Totaliser line protocol and reader, over a real socat pseudo-terminal pair."""

from __future__ import annotations

import json
import time

import pytest
import serial

from meterbench.devices._common import monotonic_clock
from meterbench.devices.serial_totaliser import (
    LineFramer,
    TotaliserReader,
    format_totaliser_line,
    parse_totaliser_line,
)
from meterbench.session import SessionRecorder
from tests.session.session_helpers import water_meter_manifest


def test_format_then_parse_round_trips():
    line = format_totaliser_line(17, 123456, 12.3456, 2400.0, 20.12)
    assert line.endswith(b"\r\n")
    parsed, error = parse_totaliser_line(line)
    assert error is None
    assert parsed == {"seq": 17, "pulses": 123456, "volume_l": 12.3456, "flow_l_h": 2400.0, "temperature_c": 20.12}


@pytest.mark.parametrize(
    ("line", "error_start"),
    [
        (b"$TOT,1,100,0.0100,2400.0,20.10*00\r\n", "checksum mismatch"),
        (b"$TOT,1,100,0.0100\r\n", "partial line"),
        (b"\x00\xffnoise\r\n", "garbage"),
        (b"$GPGGA,1,2*11\r\n", "garbage"),
        (b"$TOT,1,abc,0.0100,2400.0,20.10*00\r\n", "malformed"),
    ],
)
def test_bad_lines_give_an_error_and_no_value(line, error_start):
    parsed, error = parse_totaliser_line(line)
    assert parsed is None
    assert error.startswith(error_start)


def test_framer_splits_a_cut_line_from_the_next():
    good = format_totaliser_line(2, 200, 0.02, 2400.0, 20.1)
    pieces = LineFramer().feed(b"$TOT,1,10" + good)
    assert pieces == [(b"$TOT,1,10", False), (good, True)]


def _events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.serial
def test_reader_over_pty_records_every_line_and_counts_faults(pty_pair, tmp_path):
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("t"))
    log = recorder.device_log("ref-meter", "serial-totaliser")
    reader = TotaliserReader(pty_pair.a, log, recorder.now_s, silence_s=0.5, pulse_volume_l=0.0001).start()
    with serial.Serial(pty_pair.b, 9600) as peer:
        peer.write(format_totaliser_line(1, 100, 0.01, 2400.0, 20.1))
        peer.write(b"line noise\r\n")
        peer.write(b"$TOT,2,200,0.0200,2400.0,20.10*00\r\n")  # bad checksum
        peer.write(b"$TOT,3,30")  # cut short
        peer.write(format_totaliser_line(4, 400, 0.04, 2400.0, 20.1))
        peer.write(format_totaliser_line(5, 500, 0.07, 2400.0, 20.1))  # volume != pulses
        peer.flush()
        assert reader.wait_for_line(-1.0, 2.0) is not None
        time.sleep(1.0)  # > silence_s
    reader.stop()
    recorder.close()
    counts = reader.counts
    assert (counts.parsed, counts.garbage, counts.checksum, counts.partial, counts.inconsistent) == (2, 1, 1, 1, 1)
    assert counts.gaps == 1 and counts.lost_lines == 2 and counts.silences == 1
    events = _events(tmp_path / "s" / "devices" / "ref-meter.jsonl")
    good = [e for e in events if e["parsed"] is not None]
    assert [e["parsed"]["seq"] for e in good] == [1, 4]
    assert all(e["error"] for e in events if e["parsed"] is None)
    assert "$TOT,3,30" in [e["raw"] for e in events]
    times = [e["t_s"] for e in events]
    assert times == sorted(times) and times[0] >= 0
    assert reader.read()["ref_volume"]["value"] == pytest.approx(0.04)


@pytest.mark.serial
def test_reader_survives_unplug_and_replug(pty_pair, tmp_path):
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest("t"))
    log = recorder.device_log("ref-meter", "serial-totaliser")
    reader = TotaliserReader(
        pty_pair.a, log, monotonic_clock(), silence_s=5.0, pulse_volume_l=0.0001, reopen_interval_s=0.1
    ).start()
    with serial.Serial(pty_pair.b) as peer:
        peer.write(format_totaliser_line(1, 1, 0.0001, 1.0, 20.0))
        peer.flush()
        assert reader.wait_for_line(-1.0, 2.0)["seq"] == 1
    pty_pair.unplug()
    time.sleep(0.3)
    pty_pair.plug()
    line = None
    with serial.Serial(pty_pair.b) as peer:  # a live device keeps sending, ~10 lines/s
        for seq in range(2, 100):
            peer.write(format_totaliser_line(seq, seq, seq / 1e4, 1.0, 20.0))
            peer.flush()
            line = reader.wait_for_line(reader.last_t_s, 0.1)
            if line is not None:
                break
    reader.stop()
    recorder.close()
    assert line is not None and line["seq"] >= 2
    assert reader.counts.disconnects == 1 and reader.counts.reconnects == 1
    errors = [e["error"] for e in _events(tmp_path / "s" / "devices" / "ref-meter.jsonl")]
    assert any(e and e.startswith("port lost") for e in errors)
