"""Pointer-dial reader benchmark on the held-out dial: python benchmarks/dials.py"""

from _wheel_bench import main

if __name__ == "__main__":
    raise SystemExit(main("dial"))
