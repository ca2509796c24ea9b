"""One result type for every bench kind: a test point's result, an instrument's, and one way to combine verdicts.

Both pipelines (water meter, tank) build :class:`PointResult` and
:class:`InstrumentResult`. A point or an instrument whose *recorded data*
cannot give a verdict (a camera without frames, a log without the event, no
temperature logged) raises :class:`Inconclusive` inside its evaluation; the
evaluation is run through :meth:`PointResult.from_evaluation` or
:meth:`InstrumentResult.from_evaluation`, which turn it into inconclusive
points with the reason. Anything else that is raised (a bug) goes on up.
Verdicts combine by one rule, :func:`meterbench.calibration.decide_instrument`,
for the points of an instrument and for the instruments of a session.
``to_dict()`` gives the report.json objects of DESIGN.md ("Run command").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from meterbench import calibration
from meterbench.calibration import Decision
from meterbench.errors import SessionError
from meterbench.protocols import is_number

__all__ = [
    "ASSUMED_TEMPERATURE_KEY",
    "IDENTITY_KEYS",
    "Inconclusive",
    "InstrumentResult",
    "PointResult",
    "ReasonCounts",
    "WaterTemperature",
    "bench_point_problem",
    "instrument_identity",
    "is_number",
    "reference_uncertainty",
    "require_frames",
    "session_decision",
    "water_temperature",
]

NAN = math.nan
ASSUMED_TEMPERATURE_KEY = "assumed_water_temperature_c"
"""session.json key: the water temperature (°C) to assume when none was logged during a point."""
IDENTITY_KEYS = ("serial", "type", "q3_m3h", "r", "accuracy_class", "nominal_volume_l", "material")
"""Identity fields of an instrument copied from session.json into report.json (absent ones omitted)."""
_NUMBER = re.compile(r"(?<![A-Za-z.\d])\d+(\.\d+)?")  # a number that is not part of a name ("w3", "Q1")
_MANIFEST_ALIASES = {"accuracy_class": ("accuracy_class", "class")}  # a tank's class is "class" in session.json


class Inconclusive(Exception):
    """The recorded data of a point or an instrument cannot give a verdict; the message is the reason.

    ``known`` holds the point fields measured before the problem was found
    (``flow_rate`` m³/h, ``reference_volume`` L, ``mpe_pct`` %, ``details``), so
    the inconclusive point still shows them.
    """

    def __init__(self, reason: str, **known: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.known = known


@dataclass(frozen=True)
class PointResult:
    """The result of one test point of one instrument (volumes L, flow m³/h, errors and U in %, U at k = 2).

    ``notes`` are facts the verdict rests on that a reader must see (an
    assumed temperature): the instrument lists them in its warnings.
    ``figure`` is an image for the human report (a BGR array, or SVG text for a helmet impact's trace), never
    in report.json.
    """

    name: str
    decision: Decision
    flow_rate: float = NAN
    reference_volume: float = NAN
    indicated_volume: float = NAN
    error_pct: float = NAN
    mpe_pct: float = NAN
    uncertainty_pct: float = NAN
    details: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()
    figure: Any = field(default=None, repr=False, compare=False)

    @property
    def verdict(self) -> str:
        """ "pass", "fail" or "inconclusive"."""
        return self.decision.verdict

    @property
    def reason(self) -> str:
        """Why this verdict (always set)."""
        return self.decision.reason

    @classmethod
    def inconclusive(
        cls,
        name: str,
        reason: str,
        *,
        flow_rate: float = NAN,
        reference_volume: float = NAN,
        mpe_pct: float = NAN,
        details: Mapping[str, Any] | None = None,
        notes: Sequence[str] = (),
    ) -> PointResult:
        """A point that cannot be decided, with the reason and whatever was measured before."""
        decision = Decision("inconclusive", reason, "not decided", NAN, "inconclusive")
        return cls(
            name,
            decision,
            flow_rate=flow_rate,
            reference_volume=reference_volume,
            mpe_pct=mpe_pct,
            details=details,
            notes=tuple(notes),
        )

    @classmethod
    def decided(
        cls,
        name: str,
        *,
        flow_rate: float,
        reference_volume: float,
        indicated_volume: float,
        error_pct: float,
        mpe_pct: float,
        uncertainty_pct: float,
        rule: str,
        details: Mapping[str, Any] | None = None,
        notes: Sequence[str] = (),
        figure: Any = None,
    ) -> PointResult:
        """A measured point; the verdict comes from :func:`meterbench.calibration.decide` under ``rule``."""
        decision = calibration.decide(error_pct, mpe_pct, uncertainty_pct, rule=rule)
        return cls(
            name,
            decision,
            flow_rate=flow_rate,
            reference_volume=reference_volume,
            indicated_volume=indicated_volume,
            error_pct=error_pct,
            mpe_pct=mpe_pct,
            uncertainty_pct=uncertainty_pct,
            details=details,
            notes=tuple(notes),
            figure=figure,
        )

    @classmethod
    def from_evaluation(cls, name: str, evaluate: Callable[[], PointResult], **known: Any) -> PointResult:
        """``evaluate()``, or the inconclusive point when it raises :class:`Inconclusive` (``known`` as defaults)."""
        try:
            return evaluate()
        except Inconclusive as exc:
            return cls.inconclusive(name, exc.reason, **{**known, **exc.known})

    def to_dict(self) -> dict[str, Any]:
        """The report.json point object (DESIGN.md), plus ``details`` when there are any."""
        point: dict[str, Any] = {
            "name": self.name,
            "flow_rate": self.flow_rate,
            "reference_volume": self.reference_volume,
            "indicated_volume": self.indicated_volume,
            "error_pct": self.error_pct,
            "mpe_pct": self.mpe_pct,
            "uncertainty_pct": self.uncertainty_pct,
            "verdict": self.verdict,
            "reason": self.reason,
        }
        if self.details:
            point["details"] = dict(self.details)
        return point


@dataclass(frozen=True)
class InstrumentResult:
    """The result of one instrument (water meter or tank): its points, combined decision, identity, warnings."""

    id: str
    kind: str
    points: tuple[PointResult, ...]
    decision: Decision
    identity: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        """ "pass", "fail" or "inconclusive" (any fail -> fail, else any inconclusive -> inconclusive)."""
        return self.decision.verdict

    @classmethod
    def from_points(
        cls,
        instrument_id: str,
        kind: str,
        points: Iterable[PointResult],
        *,
        identity: Mapping[str, Any] | None = None,
        warnings: Iterable[str] = (),
    ) -> InstrumentResult:
        """Combine the points' decisions; the points' notes join the warnings (once each, naming the points)."""
        points = tuple(points)
        noted: dict[str, list[str]] = {}
        for point in points:
            for note in point.notes:
                noted.setdefault(note, []).append(point.name)
        all_warnings = list(warnings) + [f"{note} (points {', '.join(names)})" for note, names in noted.items()]
        return cls(
            instrument_id,
            kind,
            points,
            calibration.decide_instrument({p.name: p.decision for p in points}),
            dict(identity or {}),
            tuple(all_warnings),
        )

    @classmethod
    def inconclusive(
        cls,
        instrument_id: str,
        kind: str,
        point_names: Iterable[str],
        reason: str,
        *,
        identity: Mapping[str, Any] | None = None,
        warnings: Iterable[str] = (),
        **known: Any,
    ) -> InstrumentResult:
        """An instrument whose data gives no point a verdict: every point inconclusive with ``reason``."""
        points = [PointResult.inconclusive(name, reason, **known) for name in point_names]
        return cls.from_points(instrument_id, kind, points, identity=identity, warnings=warnings)

    @classmethod
    def from_evaluation(
        cls,
        instrument_id: str,
        kind: str,
        point_names: Iterable[str],
        evaluate: Callable[[], InstrumentResult],
        *,
        identity: Mapping[str, Any] | None = None,
        warnings: Iterable[str] = (),
    ) -> InstrumentResult:
        """``evaluate()``, or every point inconclusive when it raises :class:`Inconclusive`.

        One instrument's unusable data (a camera without frames) so never costs
        the other instruments of the session their verdicts.
        """
        try:
            return evaluate()
        except Inconclusive as exc:
            return cls.inconclusive(
                instrument_id, kind, point_names, exc.reason, identity=identity, warnings=warnings, **exc.known
            )

    def to_dict(self) -> dict[str, Any]:
        """The report.json instrument object: id, kind, verdict, points, identity fields, warnings."""
        instrument: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "verdict": self.verdict,
            "points": [p.to_dict() for p in self.points],
        }
        instrument.update(self.identity)
        instrument["warnings"] = list(self.warnings)
        return instrument


def session_decision(instruments: Sequence[InstrumentResult]) -> Decision:
    """The session's verdict, by the same rule as an instrument's (any fail -> fail, ...; none -> inconclusive)."""
    return calibration.decide_instrument({i.id: i.decision for i in instruments})


def bench_point_problem(manifest: Mapping[str, Any], name: str) -> str | None:
    """Why the live bench itself does not vouch for point ``name``, or None.

    The bench writes ``bench_points`` into session.json (docs/devices.md): a point whose status is
    not "ok" (a suspect temperature, a conflicting or implausible latch, an invalid attempt) must not
    get a verdict from the camera readings alone, whatever they say. Sessions without the key (offline
    recordings, older benches) are not affected; a malformed entry is itself a reason.
    """
    points = manifest.get("bench_points")
    if points is None:
        return None
    entry = points.get(name) if isinstance(points, Mapping) else None
    if entry is None:
        return None if isinstance(points, Mapping) else "session.json bench_points is not an object"
    status = entry.get("status") if isinstance(entry, Mapping) else None
    if status == "ok":
        return None
    reasons = entry.get("reasons") if isinstance(entry, Mapping) else None
    said = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) and reasons else "no reason given"
    return f"the bench marked point {name} {status if isinstance(status, str) else 'unreadable'}: {said}"


def instrument_identity(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The identity fields (IDENTITY_KEYS) of a session.json instrument or tank entry that are present."""
    identity = {}
    for key in IDENTITY_KEYS:
        for name in _MANIFEST_ALIASES.get(key, (key,)):
            if entry.get(name) is not None:
                identity[key] = entry[name]
                break
    return identity


@dataclass(frozen=True)
class WaterTemperature:
    """A point's water temperature (°C): the mean of the logged values, or the configured assumption."""

    value_c: float
    assumed: bool = False

    @property
    def note(self) -> str:
        """What the instrument's warnings say when the temperature was assumed ("" when logged)."""
        if not self.assumed:
            return ""
        return (
            f"no water temperature logged: assumed {self.value_c:g} °C "
            f"(session.json {ASSUMED_TEMPERATURE_KEY}) for the MPE and the temperature corrections"
        )


def water_temperature(samples_c: Iterable[Any], manifest: Mapping[str, Any], where: str = "") -> WaterTemperature:
    """Mean of the logged temperatures (°C) of a point (values that are not finite numbers are left out).

    With none logged: the session's explicit ``assumed_water_temperature_c``
    (flagged as assumed), else :class:`Inconclusive`: the MPE and the expansion
    corrections depend on the temperature, so it is never guessed silently.
    A non-finite assumed value is a SessionError; a temperature outside the
    range of the water tables (Tanaka 2001: 0-40 °C) is Inconclusive.
    ``where`` says which sensor and time span, for the reason.
    """
    values = [float(v) for v in samples_c if is_number(v)]
    if values:
        temperature = WaterTemperature(float(np.mean(values)))
    else:
        assumed = manifest.get(ASSUMED_TEMPERATURE_KEY)
        if assumed is not None and not is_number(assumed):  # the schema checks type and range, not NaN
            raise SessionError(
                f"session.json: {ASSUMED_TEMPERATURE_KEY}: expected a finite number of °C, got {assumed!r}"
            )
        if assumed is None:
            suffix = f" ({where})" if where else ""
            raise Inconclusive(
                f"no water temperature logged during the point{suffix}; "
                f"set {ASSUMED_TEMPERATURE_KEY} in session.json to assume one"
            )
        temperature = WaterTemperature(float(assumed), assumed=True)
    try:  # the density and expansion corrections are defined on a range of temperatures only
        calibration.water_density(temperature.value_c)
    except ValueError as exc:
        raise Inconclusive(f"water temperature {temperature.value_c:g} °C cannot be corrected for: {exc}") from None
    return temperature


REFERENCE_U_RANGE_PCT = (0.0, 100.0)
COVERAGE_FACTOR_RANGE = (1.0, 10.0)


def reference_uncertainty(reference: Mapping[str, Any]) -> tuple[float, float]:
    """The reference standard's expanded uncertainty U (%) and its coverage factor k (default 2),
    as its calibration certificate states them (session.json ``reference_instruments[0]``).

    U missing: Inconclusive (no uncertainty budget). U or k not a finite number in its range
    (U 0..100 %, k 1..10): SessionError naming the field (the schema checks this too; a live
    bench's manifest comes the same way).
    """
    where = "session.json: reference_instruments[0]"
    u_pct = reference.get("expanded_uncertainty_pct")
    if u_pct is None:
        raise Inconclusive("reference_instruments[0].expanded_uncertainty_pct missing: no uncertainty budget")
    k = reference.get("coverage_factor", 2.0)
    for key, value, (low, high) in (
        ("expanded_uncertainty_pct", u_pct, REFERENCE_U_RANGE_PCT),
        ("coverage_factor", k, COVERAGE_FACTOR_RANGE),
    ):
        if not is_number(value) or not low <= value <= high:
            raise SessionError(f"{where}.{key}: expected a number from {low:g} to {high:g}, got {value!r}")
    return float(u_pct), float(k)


def require_frames(camera: Any, minimum: int = 2) -> None:
    """Raise Inconclusive naming the camera, and what its reader found wrong, when it has < ``minimum`` frames.

    ``camera`` is a :class:`meterbench.session.CameraSource`.
    """
    if camera.frame_count >= minimum:
        return
    why = "; ".join(camera.problems) or f"{camera.entry['frame_times']} lists {camera.frame_count} frame(s)"
    raise Inconclusive(f"camera {camera.camera_id}: {camera.frame_count} usable frame(s), need {minimum}: {why}")


class ReasonCounts:
    """Why frames were refused, grouped by kind and counted, for an inconclusive point's reason.

    Reasons that differ only in their numbers ("wheel w3 confidence 0.37 <
    0.50", "wheel w3 confidence 0.41 < 0.50") are one kind; ``str()`` shows each
    kind by its first real example and its count, most frequent first:
    "120x like wheel w3 confidence 0.37 < 0.50; 2x markers not found".
    """

    def __init__(self, reasons: Iterable[str] = ()) -> None:
        self._kinds: dict[str, tuple[str, int, bool]] = {}  # kind -> (first example, count, all the same text)
        for reason in reasons:
            self.add(reason)

    def add(self, reason: str) -> None:
        """Count one more refused frame with this reason."""
        kind = _NUMBER.sub("#", reason)
        example, count, same = self._kinds.get(kind, (reason, 0, True))
        self._kinds[kind] = (example, count + 1, same and reason == example)

    def __len__(self) -> int:
        return sum(count for _, count, _ in self._kinds.values())

    def __str__(self) -> str:
        parts = []
        for example, count, same in sorted(self._kinds.values(), key=lambda kind: (-kind[1], kind[0])):
            parts.append(example if count == 1 else f"{count}x {example}" if same else f"{count}x like {example}")
        return "; ".join(parts)
