"""meterbench.bench: the live engine.

``config`` reads and validates BENCH.toml (JSON Schema ``schemas/bench-config-v1.json``
plus cross-checks), ``factory`` builds the bench's devices (the real drivers, or the
simulated peer for a ``[simulator]`` table), ``engine`` runs the test sequence on them.
"""

from meterbench.bench.config import (
    BENCH_SCHEMA,
    SIM,
    BenchConfig,
    BenchConfigError,
    Disturbance,
    PointPlan,
    SequenceOptions,
    SimulatorConfig,
    load_bench_config,
)
from meterbench.bench.engine import BenchStopped, StepFn, claim_run_dir, print_step, run_bench
from meterbench.bench.factory import BenchDevices, PreparedDevices, open_devices, prepare_devices

__all__ = [
    "BENCH_SCHEMA",
    "SIM",
    "BenchConfig",
    "BenchConfigError",
    "BenchDevices",
    "BenchStopped",
    "Disturbance",
    "PointPlan",
    "PreparedDevices",
    "SequenceOptions",
    "SimulatorConfig",
    "StepFn",
    "claim_run_dir",
    "load_bench_config",
    "open_devices",
    "prepare_devices",
    "print_step",
    "run_bench",
]
