"""meterbench.bench: the live engine: the bench config (BENCH.toml), the test sequence, the
device factory (real drivers, or the simulated peer when the config asks for one)."""

from meterbench.bench.engine import BenchStopped, load_bench_config, run_bench

__all__ = ["BenchStopped", "load_bench_config", "run_bench"]
