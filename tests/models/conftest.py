"""Shared fixtures of the models tests: real crops from the shared data folder."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from meterbench.models.training.train import DATA_DIR, DEV_UNITS, _split_units


def labelled_dev_crops(kind: str, count: int) -> list[tuple[Path, int]]:
    """The first `count` crops (path, label in tenths) of the dev units: never trained on."""
    data_dir = DATA_DIR[kind]
    if not (data_dir / "labels.csv").is_file():
        if os.environ.get("CI"):  # CI has shared/ beside the clone: a missing folder is a failure there
            pytest.fail(f"{data_dir}: shared data folder not present")
        pytest.skip(f"{data_dir}: shared data folder not present")
    unit_of = _split_units(data_dir)
    chosen = []
    with (data_dir / "labels.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if unit_of.get(row["group"], row["group"]) in DEV_UNITS[kind] or row["group"] in DEV_UNITS[kind]:
                chosen.append((data_dir / row["path"], int(row["value_tenths"])))
    return chosen[:: max(1, len(chosen) // count)][:count]
