import json
from importlib import resources
from pathlib import Path

import pytest

from meterbench.calibration import load_table, provenance_notes, unconfirmed_values
from meterbench.calibration._tables import TABLE_NAMES, iter_sourced, tables_markdown


@pytest.mark.parametrize("name", TABLE_NAMES)
def test_every_shipped_value_has_provenance_and_source(name):
    leaves = iter_sourced(load_table(name))
    assert leaves
    for path, value in leaves:
        assert value.provenance in ("SRC", "MEM", "DER"), path
        assert len(value.source) > 10, path


def test_data_files_are_package_data_json():
    folder = resources.files("meterbench.calibration").joinpath("data")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".json"))
    # helmet.json is loaded by calibration._helmet on its own (else every water-meter report would list
    # the helmet [MEM] values); its provenance is tested in test_helmet_profiles.py
    assert names == sorted([f"{n}.json" for n in TABLE_NAMES] + ["helmet.json"])
    for name in names:
        json.loads(folder.joinpath(name).read_text(encoding="utf-8"))


def test_unconfirmed_values_lists_mem_and_cfg():
    paths = dict(unconfirmed_values())
    assert "water_meter.verification_flow_windows.Q1" in paths
    assert "decision.max_uncertainty_ratio.verification" in paths
    assert "water_meter.mpe_pct.2.lower" not in paths
    configured = dict(unconfirmed_values({"water_meter": {"mpe_pct": {"2": {"lower": 4.0}}}}))
    assert configured["water_meter.mpe_pct.2.lower"].provenance == "CFG"


def test_overrides_do_not_leak_into_defaults():
    load_table("water_meter", {"in_service_factor": 3.0})
    assert load_table("water_meter")["in_service_factor"]["value"] == 2.0


def test_bad_overrides_raise():
    with pytest.raises(ValueError, match="unknown table"):
        unconfirmed_values({"helmet": {}})
    with pytest.raises(ValueError, match="mpe_pct"):
        load_table("water_meter", {"mpe_pct": 3.0})
    with pytest.raises(ValueError, match="table name"):
        load_table("nope")


def test_docs_metrology_lists_the_shipped_tables():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrology.md").read_text(encoding="utf-8")
    generated = doc.split("<!-- tables:begin -->\n", 1)[1].split("<!-- tables:end -->", 1)[0]
    assert generated == tables_markdown()


def test_provenance_notes_name_each_unconfirmed_value():
    notes = provenance_notes()
    assert len(notes) == len(unconfirmed_values())
    assert any(n.startswith("tank.classes.scale-division.divisions = 1 [MEM") for n in notes)
