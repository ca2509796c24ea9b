"""A bad register layout or tank scale raises the error class of its source, one line naming the field."""

from __future__ import annotations

import pytest

from meterbench.errors import ConfigError, SessionError
from meterbench.vision import NeckScaleGeometry, RegisterLayout, default_register_layout


def test_a_bad_layout_field_is_a_config_error_naming_it():
    layout = default_register_layout("dials")
    layout["elements"][2]["box_px"] = [10, 10, 0, 20]
    with pytest.raises(ConfigError) as caught:
        RegisterLayout.from_dict(layout)
    assert str(caught.value) == (
        "register layout: register.elements[2].box_px: expected [x, y, w, h] with w > 0 and h > 0, got [10, 10, 0, 20]"
    )
    assert isinstance(caught.value, ValueError)


def test_a_layout_that_is_not_an_object_is_a_config_error():
    with pytest.raises(ConfigError, match=r"register layout: register: expected an object, got \[\]"):
        RegisterLayout.from_dict([])


def test_an_unknown_default_layout_is_a_config_error():
    with pytest.raises(ConfigError, match="default_register_layout: variant: expected one of dials, wheels"):
        default_register_layout("sundial")


def test_a_bad_tank_scale_is_a_session_error_naming_the_field():
    with pytest.raises(SessionError) as caught:
        NeckScaleGeometry.from_dict({"major_every": 1})
    assert str(caught.value) == "tank scale: major_every: expected an integer >= 2, got 1"
    assert isinstance(caught.value, ValueError)
