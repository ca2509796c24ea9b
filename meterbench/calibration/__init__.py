"""meterbench.calibration: MPE tables, volume and temperature corrections, uncertainty,
decision rules and test planning. Pure computation: no I/O except its own data tables
(data/*.json, each value tagged SRC/MEM/DER with its source)."""

from ._decision import Decision, decide, decide_instrument, same_sign_check
from ._density import (
    CUBIC_EXPANSION,
    REFERENCE_TEMPERATURE_C,
    TankError,
    cubic_expansion,
    tank_error,
    tank_volume_at_20c,
    transfer_volume,
    water_density,
    water_expansion_coefficient,
)
from ._flows import (
    Flows,
    NonStandardRatingWarning,
    verification_flow_window,
    water_meter_flows,
)
from ._mpe import MpeResult, dispenser_mpe, tank_mpe, water_meter_mpe, water_meter_zone
from ._planning import (
    PlannedPoint,
    TestPlan,
    format_test_plan,
    plan_test_volumes,
    round_up_to_series,
)
from ._tables import Sourced, load_table, provenance_notes, table_sha256, unconfirmed_values
from ._uncertainty import UncertaintyBudget, UncertaintyComponent

__all__ = [
    "CUBIC_EXPANSION",
    "REFERENCE_TEMPERATURE_C",
    "Decision",
    "Flows",
    "MpeResult",
    "NonStandardRatingWarning",
    "PlannedPoint",
    "Sourced",
    "TankError",
    "TestPlan",
    "UncertaintyBudget",
    "UncertaintyComponent",
    "cubic_expansion",
    "decide",
    "decide_instrument",
    "dispenser_mpe",
    "format_test_plan",
    "load_table",
    "plan_test_volumes",
    "provenance_notes",
    "round_up_to_series",
    "same_sign_check",
    "table_sha256",
    "tank_error",
    "tank_mpe",
    "tank_volume_at_20c",
    "transfer_volume",
    "unconfirmed_values",
    "verification_flow_window",
    "water_density",
    "water_expansion_coefficient",
    "water_meter_flows",
    "water_meter_mpe",
    "water_meter_zone",
]
