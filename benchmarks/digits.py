"""Digit-wheel reader benchmark on the held-out dev split units: python benchmarks/digits.py"""

from _wheel_bench import main

if __name__ == "__main__":
    raise SystemExit(main("digit"))
