"""Decision rules (ILAC-G8:09/2019) for a measured error against its MPE.

A pass or fail is only given when the uncertainty allows it: whatever the
rule, a point whose expanded uncertainty U exceeds ``max_uncertainty_ratio``
× MPE (the test-equipment limit, 1/3 for verification, MEM) is
"inconclusive" with that reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._tables import load_table, sourced

RULES = ("simple", "guard-band", "non-binary")
VERDICTS = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class Decision:
    """Verdict of one point (or one instrument).

    verdict: "pass" | "fail" | "inconclusive"; reason: why (always set);
    rule: the decision rule used; acceptance_limit_pct: |E| must not exceed it
    to pass (nan for an instrument); statement: the ILAC-G8 statement
    ("pass", "conditional pass", "conditional fail", "fail", "inconclusive").
    """

    verdict: str
    reason: str
    rule: str
    acceptance_limit_pct: float
    statement: str = ""


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return value


def _describe(error: float, mpe: float, u: float) -> str:
    return f"|E| = {abs(error):.4g} %, MPE = {mpe:.4g} %, U = {u:.4g} %"


def _uncertainty_ratio(ratio: float | str, table: Mapping[str, Any] | None) -> float:
    if isinstance(ratio, str):
        limits = load_table("decision", table)["max_uncertainty_ratio"]
        if ratio not in limits:
            raise ValueError(f"max_uncertainty_ratio: expected a number or one of {', '.join(limits)}, got {ratio!r}")
        ratio = sourced(load_table("decision", table), "max_uncertainty_ratio", ratio).value
    return _finite("max_uncertainty_ratio", ratio)


def decide(
    error_pct: float,
    mpe_pct: float,
    expanded_uncertainty_pct: float,
    *,
    rule: str = "simple",
    max_uncertainty_ratio: float | str | None = 1 / 3,
    table: Mapping[str, Any] | None = None,
) -> Decision:
    """Pass / fail / inconclusive for an error E (%) against ±MPE (%) with expanded U (%, k=2).

    simple (ILAC-G8 4.2.1): pass if |E| <= MPE, else fail.
    guard-band (4.2.2, w = U): pass if |E| <= MPE - U, fail if |E| > MPE + U,
    otherwise inconclusive. non-binary (4.2.3): as guard-band, with the
    "conditional pass"/"conditional fail" statement for the inconclusive band.
    Every rule: U > max_uncertainty_ratio × MPE → inconclusive (None disables;
    "verification" / "type-evaluation" take 1/3 / 1/5 from data/decision.json, MEM,
    overridable with ``table``).

    >>> decide(1.5, 2.0, 0.3).verdict
    'pass'
    >>> decide(1.9, 2.0, 0.3, rule="guard-band").verdict
    'inconclusive'
    """
    if rule not in RULES:
        raise ValueError(f"rule: expected one of {', '.join(RULES)}, got {rule!r}")
    error = _finite("error_pct", error_pct)
    mpe = _finite("mpe_pct", mpe_pct)
    u = _finite("expanded_uncertainty_pct", expanded_uncertainty_pct)
    if mpe <= 0:
        raise ValueError(f"mpe_pct: expected > 0 %, got {mpe:g}")
    if u < 0:
        raise ValueError(f"expanded_uncertainty_pct: expected >= 0 %, got {u:g}")
    facts = _describe(error, mpe, u)
    limit = mpe if rule == "simple" else mpe - u
    if max_uncertainty_ratio is not None:
        ratio = _uncertainty_ratio(max_uncertainty_ratio, table)
        if ratio <= 0:
            raise ValueError(f"max_uncertainty_ratio: expected > 0, got {ratio:g}")
        if u > ratio * mpe:
            beyond = " (the error is beyond MPE + U)" if abs(error) > mpe + u else ""
            return Decision(
                "inconclusive",
                f"uncertainty too large: U = {u:.4g} % exceeds {ratio:.3g} x MPE "
                f"= {ratio * mpe:.4g} % (test-equipment limit){beyond}; {facts}",
                rule,
                limit,
                "inconclusive",
            )
    magnitude = abs(error)
    if rule == "simple":
        if magnitude <= mpe:
            return Decision("pass", f"within MPE (simple acceptance); {facts}", rule, limit, "pass")
        return Decision("fail", f"outside MPE (simple acceptance); {facts}", rule, limit, "fail")
    if magnitude <= mpe - u:
        return Decision("pass", f"within MPE - U ({rule}); {facts}", rule, limit, "pass")
    if magnitude > mpe + u:
        return Decision("fail", f"beyond MPE + U ({rule}); {facts}", rule, limit, "fail")
    statement = "conditional pass" if magnitude <= mpe else "conditional fail"
    side = "within MPE but within U of it" if magnitude <= mpe else "beyond MPE but within U of it"
    return Decision(
        "inconclusive",
        f"{statement}: error {side} ({rule}); {facts}",
        rule,
        limit,
        statement if rule == "non-binary" else "inconclusive",
    )


def _as_decision(item: Decision | str, name: str) -> Decision:
    if isinstance(item, Decision) and item.verdict in VERDICTS:
        return item
    if isinstance(item, str) and item in VERDICTS:
        return Decision(item, f"point verdict {item}", "given", math.nan, item)
    raise ValueError(f"point_decisions[{name}]: expected a Decision or one of {', '.join(VERDICTS)}, got {item!r}")


def decide_instrument(point_decisions: Sequence[Decision | str] | Mapping[str, Decision | str]) -> Decision:
    """Combined verdict: any fail → fail; else any inconclusive (or nothing decided) → inconclusive; else pass.

    The one rule for the points of an instrument and for the instruments of a
    session. ``point_decisions`` holds Decisions (or verdict strings), as a
    sequence or as a mapping name → decision (then the reason names them).
    Always returns a Decision; its ``rule`` joins the rules of the items.

    >>> decide_instrument(["pass", "inconclusive", "pass"]).verdict
    'inconclusive'
    """
    items = (
        list(point_decisions.items())
        if isinstance(point_decisions, Mapping)
        else [(f"point {i + 1}", d) for i, d in enumerate(point_decisions)]
    )
    if not items:
        return Decision("inconclusive", "nothing decided (no points)", "none", math.nan, "inconclusive")
    named = [(str(name), _as_decision(item, str(name))) for name, item in items]
    rules = "+".join(sorted({d.rule for _, d in named}))
    for verdict in ("fail", "inconclusive"):
        hits = [f"{name}: {d.reason}" for name, d in named if d.verdict == verdict]
        if hits:
            return Decision(
                verdict, f"{len(hits)} of {len(named)} {verdict}: " + " | ".join(hits), rules, math.nan, verdict
            )
    return Decision("pass", f"all {len(named)} pass", rules, math.nan, "pass")


def same_sign_check(
    errors_pct: Sequence[float], mpes_pct: Sequence[float], *, table: Mapping[str, Any] | None = None
) -> Decision:
    """Same-sign rule (MEM): if all errors share one sign, one must be <= fraction × its MPE.

    fraction = 1/2 by default (``table={"same_sign_fraction": ...}`` in the
    water-meter table overrides it). Returns a "pass" Decision when the rule
    is met or not triggered, else "fail"; the reason says the rule is unconfirmed.
    """
    errors = [_finite("errors_pct", e) for e in errors_pct]
    mpes = [_finite("mpes_pct", m) for m in mpes_pct]
    if not errors or len(errors) != len(mpes):
        raise ValueError(f"errors_pct, mpes_pct: expected equal non-empty lengths, got {len(errors)} and {len(mpes)}")
    fraction = sourced(load_table("water_meter", table), "same_sign_fraction")
    note = f"same-sign rule [{fraction.provenance}: {fraction.source}]"
    same_sign = all(e > 0 for e in errors) or all(e < 0 for e in errors)
    if not same_sign:
        return Decision("pass", f"errors change sign; {note} not triggered", "same-sign", math.nan, "pass")
    limits = [float(fraction.value) * m for m in mpes]
    if any(abs(e) <= lim for e, lim in zip(errors, limits, strict=True)):
        return Decision(
            "pass",
            f"all errors of one sign, one within {fraction.value:g} x MPE; {note}",
            "same-sign",
            math.nan,
            "pass",
        )
    return Decision(
        "fail",
        f"all errors of one sign and none within {fraction.value:g} x MPE "
        f"(errors {', '.join(f'{e:+.3g}' for e in errors)} %); {note}",
        "same-sign",
        math.nan,
        "fail",
    )
