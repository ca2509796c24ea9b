"""The shipped systemd unit: its commands parse with today's command line, it writes runs into one
--out (each run its own folder), and a failure that a restart cannot fix cannot loop for ever."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from meterbench.cli import build_parser

UNIT = Path(__file__).parents[2] / "deploy" / "meterbench-bench.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_commands_parse_with_the_command_line():
    service = _unit()["Service"]
    doctor = build_parser().parse_args(shlex.split(service["ExecStartPre"])[1:])
    bench = build_parser().parse_args(shlex.split(service["ExecStart"])[1:])
    assert (doctor.command, doctor.config) == ("doctor", "/etc/meterbench/bench.toml")
    assert (bench.command, bench.config, bench.out) == ("bench", doctor.config, "/var/lib/meterbench/runs")
    assert bench.log_format == "json"
    assert service["KillSignal"] == "SIGINT"


def test_restarts_are_bounded():
    unit = _unit()
    assert unit["Service"]["Restart"] == "on-failure"
    interval_s = int(unit["Unit"]["StartLimitIntervalSec"])
    burst = int(unit["Unit"]["StartLimitBurst"])
    restart_s = int(unit["Service"]["RestartSec"])
    assert burst * restart_s < interval_s  # the limit is reached before the window ends: no endless loop
