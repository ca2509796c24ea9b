import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterbench.calibration import Decision, decide, decide_instrument, same_sign_check


@pytest.mark.parametrize(
    ("error", "verdict"), [(1.99, "pass"), (2.0, "pass"), (-2.0, "pass"), (2.01, "fail"), (-3.0, "fail")]
)
def test_simple_acceptance(error, verdict):
    decision = decide(error, 2.0, 0.5)
    assert decision.verdict == verdict
    assert decision.rule == "simple" and decision.acceptance_limit_pct == 2.0


@pytest.mark.parametrize(
    ("error", "verdict", "statement"),
    [
        (1.5, "pass", "pass"),  # |E| = MPE - U
        (1.6, "inconclusive", "conditional pass"),
        (2.4, "inconclusive", "conditional fail"),
        (2.5, "inconclusive", "conditional fail"),  # |E| = MPE + U
        (2.51, "fail", "fail"),
        (-2.6, "fail", "fail"),
    ],
)
def test_guard_band_and_non_binary(error, verdict, statement):
    guard = decide(error, 2.0, 0.5, rule="guard-band", max_uncertainty_ratio=None)
    assert guard.verdict == verdict
    assert guard.acceptance_limit_pct == pytest.approx(1.5)
    if verdict == "inconclusive":
        assert statement in guard.reason
    non_binary = decide(error, 2.0, 0.5, rule="non-binary", max_uncertainty_ratio=None)
    assert non_binary.verdict == verdict and non_binary.statement == statement


@pytest.mark.parametrize("rule", ["simple", "guard-band", "non-binary"])
def test_uncertainty_above_a_third_of_mpe_is_inconclusive_in_every_rule(rule):
    decision = decide(0.0, 2.0, 0.7, rule=rule)
    assert decision.verdict == "inconclusive"
    assert "uncertainty too large" in decision.reason
    assert decide(0.0, 2.0, 2.0 / 3, rule=rule).verdict == "pass"  # exactly 1/3: allowed


def test_named_uncertainty_limits_come_from_the_table():
    assert decide(0.0, 2.0, 0.5, max_uncertainty_ratio="type-evaluation").verdict == "inconclusive"
    assert decide(0.0, 2.0, 0.5, max_uncertainty_ratio="verification").verdict == "pass"
    loose = {"max_uncertainty_ratio": {"type-evaluation": 0.3}}
    assert decide(0.0, 2.0, 0.5, max_uncertainty_ratio="type-evaluation", table=loose).verdict == "pass"


@pytest.mark.parametrize(
    ("args", "match"),
    [((1.0, 0.0, 0.1), "mpe_pct"), ((1.0, 2.0, -0.1), "expanded_uncertainty_pct"), ((math.nan, 2.0, 0.1), "error_pct")],
)
def test_bad_input_raises(args, match):
    with pytest.raises(ValueError, match=match):
        decide(*args)
    with pytest.raises(ValueError, match="rule"):
        decide(1.0, 2.0, 0.1, rule="lenient")


finite = st.floats(min_value=-50, max_value=50, allow_nan=False)
positive = st.floats(min_value=0.01, max_value=10)
uncertainty = st.floats(min_value=0, max_value=10)
rules = st.sampled_from(["simple", "guard-band", "non-binary"])
ratios = st.one_of(st.none(), st.floats(min_value=0.05, max_value=2))


@given(finite, positive, uncertainty, rules, ratios)
def test_never_passes_beyond_the_mpe(error, mpe, u, rule, ratio):
    decision = decide(error, mpe, u, rule=rule, max_uncertainty_ratio=ratio)
    assert decision.verdict in ("pass", "fail", "inconclusive") and decision.reason
    if abs(error) > mpe:
        assert decision.verdict != "pass"
    if rule != "simple" and decision.verdict == "pass":
        assert abs(error) <= mpe - u
    if rule != "simple" and decision.verdict == "fail":
        assert abs(error) > mpe + u
    if ratio is not None and u > ratio * mpe:
        assert decision.verdict == "inconclusive"


def test_instrument_verdict_combines_points():
    ok = decide(0.5, 2.0, 0.1)
    bad = decide(3.0, 2.0, 0.1)
    unsure = decide(0.5, 2.0, 1.0)
    passed = decide_instrument([ok, ok])
    assert (passed.verdict, passed.reason, passed.rule, passed.statement) == ("pass", "all 2 pass", "simple", "pass")
    unsure_instrument = decide_instrument({"Q3": ok, "Q1": unsure})
    assert unsure_instrument.verdict == "inconclusive"
    assert unsure_instrument.reason == f"1 of 2 inconclusive: Q1: {unsure.reason}"
    combined = decide_instrument({"Q3": unsure, "Q2": bad, "Q1": ok})
    assert (combined.verdict, combined.statement) == ("fail", "fail")
    assert combined.reason == f"1 of 3 fail: Q2: {bad.reason}"  # a fail outranks the inconclusive Q3
    with pytest.raises(ValueError, match="point_decisions"):
        decide_instrument([None])


def test_nothing_decided_is_inconclusive_not_an_error():
    empty = decide_instrument([])
    assert isinstance(empty, Decision)
    assert (empty.verdict, empty.reason) == ("inconclusive", "nothing decided (no points)")
    assert decide_instrument({}).verdict == "inconclusive"


def test_same_sign_rule():
    assert same_sign_check([1.5, 1.2, 1.8], [2, 2, 2]).verdict == "fail"
    assert same_sign_check([1.5, 0.9, 1.8], [2, 2, 2]).verdict == "pass"
    assert same_sign_check([1.5, -1.2, 1.8], [2, 2, 2]).verdict == "pass"
    assert "MEM" in same_sign_check([1.5], [2]).reason
    relaxed = same_sign_check([1.5, 1.2], [2, 2], table={"same_sign_fraction": 0.7})
    assert relaxed.verdict == "pass"
    assert isinstance(relaxed, Decision)


def test_instrument_verdict_from_plain_strings_is_a_decision_too():
    """One return type: plain verdict strings in, a Decision out (was a bare string before)."""
    for verdicts, expected in (
        (["pass", "pass"], "pass"),
        (["pass", "inconclusive", "fail"], "fail"),
        (["pass", "inconclusive"], "inconclusive"),
    ):
        combined = decide_instrument(verdicts)
        assert isinstance(combined, Decision) and combined.verdict == expected
    assert decide_instrument(["pass", "fail"]).reason == "1 of 2 fail: point 2: point verdict fail"
    mixed = decide_instrument({"Q3": "pass", "Q1": decide(3.0, 2.0, 0.1)})
    assert isinstance(mixed, Decision) and mixed.verdict == "fail"
    assert mixed.rule == "given+simple"
    with pytest.raises(ValueError, match="point_decisions"):
        decide_instrument(["maybe"])
