"""The lab file (LAB.toml): the lab's identity and traceability, schema-validated.

``parse_lab`` is pure (a parsed TOML dict in, a :class:`Lab` or a ConfigError out);
``load_lab`` reads the file. Every problem is one line naming the file and the field.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterbench.errors import ConfigError
from meterbench.session import schema_problems

__all__ = [
    "LAB_SCHEMA",
    "Bench",
    "Lab",
    "ReferenceStandard",
    "Technician",
    "load_lab",
    "normalize_fingerprint",
    "parse_lab",
]

LAB_SCHEMA = Path(__file__).resolve().parent / "schemas" / "lab-v1.json"
"""JSON Schema of LAB.toml (dates checked in code: JSON Schema has no date type)."""


def normalize_fingerprint(text: str) -> str:
    """A key fingerprint as 32 lowercase hex digits (colons, spaces and case ignored)."""
    return text.replace(":", "").replace(" ", "").lower()


@dataclass(frozen=True)
class ReferenceStandard:
    """A reference standard (e.g. the bench's reference meter) with its calibration certificate.

    ``expanded_uncertainty_pct`` is U (%, relative) with ``coverage_factor`` k, as on its certificate;
    ``due_date`` is the date its calibration expires (a run after it is not traceable)."""

    id: str
    serial: str
    calibration_certificate: str
    expanded_uncertainty_pct: float
    coverage_factor: float
    due_date: dt.date
    description: str = ""
    calibrated_by: str = ""

    @property
    def standard_uncertainty_pct(self) -> float:
        """u = U / k (%)."""
        return self.expanded_uncertainty_pct / self.coverage_factor

    def as_dict(self) -> dict[str, Any]:
        """The certificate's view: every field, the due date as YYYY-MM-DD."""
        return {
            "id": self.id,
            "description": self.description,
            "serial": self.serial,
            "calibration_certificate": self.calibration_certificate,
            "calibrated_by": self.calibrated_by,
            "expanded_uncertainty_pct": self.expanded_uncertainty_pct,
            "coverage_factor": self.coverage_factor,
            "due_date": self.due_date.isoformat(),
        }


@dataclass(frozen=True)
class Bench:
    """A test bench of the lab and the ids of the reference standards it uses."""

    id: str
    reference_standards: tuple[str, ...]
    name: str = ""
    location: str = ""


@dataclass(frozen=True)
class Technician:
    """A person who may perform tests (named on the certificate)."""

    id: str
    name: str


@dataclass(frozen=True)
class Lab:
    """A parsed LAB.toml. ``records`` is the folder of the certificate register and the audit log."""

    path: Path
    name: str
    address: str
    accreditation_number: str
    key_fingerprint: str  # normalized: 32 lowercase hex digits
    place: str
    records: Path
    benches: dict[str, Bench]
    technicians: dict[str, Technician]
    reference_standards: dict[str, ReferenceStandard]
    contact: dict[str, str]
    previous_keys: dict[str, dt.date]  # normalized fingerprint -> the day from which it signs nothing

    def identity(self) -> dict[str, str]:
        """The lab's identity as printed on a certificate."""
        return {
            "name": self.name,
            "address": self.address,
            "accreditation_number": self.accreditation_number,
            **self.contact,
        }


def _non_finite(value: Any, where: str) -> list[str]:
    """NaN and infinities anywhere (TOML allows them; no lab quantity can be one)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{where}: expected a finite number, got {value}"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{where}[{i}]")]
    return []


def _duplicates(items: list[dict], table: str, label: str) -> list[str]:
    seen: set[str] = set()
    problems = []
    for i, item in enumerate(items):
        if item["id"] in seen:
            problems.append(f"{label}: {table}[{i}].id: {item['id']!r} is used twice (expected unique ids)")
        seen.add(item["id"])
    return problems


def parse_lab(data: dict[str, Any], path: Path) -> Lab:
    """Validate a parsed LAB.toml (``path`` names it in messages and anchors ``records``); ConfigError otherwise."""
    label = str(path)
    problems = [f"{label}: {p}" for p in _non_finite(data, "")]
    if not problems:
        problems = schema_problems(label, data, str(LAB_SCHEMA))
    if problems:
        raise ConfigError("\n".join(problems))
    standards = data["reference_standards"]
    for i, item in enumerate(standards):
        due = item["due_date"]
        if not isinstance(due, dt.date) or isinstance(due, dt.datetime):
            got = json.dumps(due) if isinstance(due, str) else f"a {type(due).__name__}"
            problems.append(
                f"{label}: reference_standards[{i}].due_date: expected a TOML date (YYYY-MM-DD, unquoted), got {got}"
            )
    for i, item in enumerate(data["lab"].get("previous_keys", [])):
        retired = item["retired"]
        if not isinstance(retired, dt.date) or isinstance(retired, dt.datetime):
            got = json.dumps(retired) if isinstance(retired, str) else f"a {type(retired).__name__}"
            problems.append(
                f"{label}: lab.previous_keys[{i}].retired: expected a TOML date (YYYY-MM-DD, unquoted), got {got}"
            )
    for table in ("benches", "technicians", "reference_standards"):
        problems += _duplicates(data[table], table, label)
    known = {item["id"] for item in standards}
    for i, bench in enumerate(data["benches"]):
        for j, ref in enumerate(bench["reference_standards"]):
            if ref not in known:
                problems.append(
                    f"{label}: benches[{i}].reference_standards[{j}]: {ref!r} is not a [[reference_standards]] id "
                    f"(expected one of {', '.join(sorted(known))})"
                )
    if problems:
        raise ConfigError("\n".join(problems))
    lab = data["lab"]
    records = Path(lab.get("records", f"{path.stem}-records"))
    return Lab(
        path=path,
        name=lab["name"],
        address=lab["address"],
        accreditation_number=lab["accreditation_number"],
        key_fingerprint=normalize_fingerprint(lab["key_fingerprint"]),
        place=lab.get("place", lab["address"]),
        records=records if records.is_absolute() else path.parent / records,
        benches={
            b["id"]: Bench(b["id"], tuple(b["reference_standards"]), b.get("name", ""), b.get("location", ""))
            for b in data["benches"]
        },
        technicians={t["id"]: Technician(t["id"], t["name"]) for t in data["technicians"]},
        reference_standards={
            s["id"]: ReferenceStandard(
                id=s["id"],
                serial=s["serial"],
                calibration_certificate=s["calibration_certificate"],
                expanded_uncertainty_pct=float(s["expanded_uncertainty_pct"]),
                coverage_factor=float(s["coverage_factor"]),
                due_date=s["due_date"],
                description=s.get("description", ""),
                calibrated_by=s.get("calibrated_by", ""),
            )
            for s in standards
        },
        contact={key: lab[key] for key in ("phone", "email") if key in lab},
        previous_keys={normalize_fingerprint(k["fingerprint"]): k["retired"] for k in lab.get("previous_keys", [])},
    )


def load_lab(path: Path | str) -> tuple[Lab, bytes]:
    """Read and validate LAB.toml; returns the lab and the file's bytes (hashed into the audit trail)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_lab(data, path), raw
