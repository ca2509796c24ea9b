"""The pure parts of records: report checks, traceability, marking untraceable points, sealing."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest

from meterbench.certificates import (
    ReferenceStandard,
    canonical_json,
    check_record,
    mark_points_inconclusive,
    mark_untraceable_points,
    report_problems,
    seal_documents,
    seal_record,
    traceability_problems,
)

from .conftest import require_cert

require_cert()


@pytest.fixture
def report(water_run_master) -> dict:
    return json.loads((water_run_master / "report.json").read_text(encoding="utf-8"))


def _standard(due: dt.date, u_pct: float = 0.1, k: float = 2.0) -> ReferenceStandard:
    return ReferenceStandard("ref-1", "REF-1", "CAL-1", u_pct, k, due)


def test_an_unchanged_report_has_no_problems_and_a_swapped_verdict_is_found(report):
    assert report_problems(report) == []
    changed = copy.deepcopy(report)
    changed["verdict"] = "pass"
    assert report_problems(changed) == [
        "report.json: verdict: 'pass' does not combine the instruments' (expected 'fail'): the report was changed"
    ]
    changed = copy.deepcopy(report)
    changed["instruments"][0]["points"][2]["mpe_pct"] = 0.1  # a pass that the MPE no longer allows
    [problem] = report_problems(changed)
    assert problem.startswith("report.json: instruments[0].points[2].verdict: 'pass' does not follow from E, MPE and U")
    assert report_problems({"format": "other"}) == [
        "report.json: not a meterbench report (expected format 'meterbench-report', report_version 1)"
    ]


def test_traceability_by_due_date_and_stated_uncertainty(report):
    test_day = dt.date(2026, 11, 27)
    assert traceability_problems(report, [_standard(test_day)]) == []
    [expired] = traceability_problems(report, [_standard(test_day - dt.timedelta(days=1))])
    assert "past its calibration due date 2026-11-26 on the test date 2026-11-27" in expired
    assert traceability_problems(report, [_standard(test_day, u_pct=0.1, k=2.0)]) == []  # u 0.05 % = the run's
    understated = traceability_problems(report, [_standard(test_day, u_pct=0.1, k=1.9)])  # u 0.0526 % > 0.05 %
    assert len(understated) == 6  # 2 meters x 3 points


def test_an_expired_standard_makes_every_point_inconclusive_with_that_reason(report):
    marked = mark_untraceable_points(report, [_standard(dt.date(2026, 1, 1))])
    assert marked["verdict"] == "inconclusive"
    for instrument in marked["instruments"]:
        assert instrument["verdict"] == "inconclusive"
        for point in instrument["points"]:
            assert point["verdict"] == "inconclusive"
            assert point["reason"] == (
                "reference standard ref-1 (serial REF-1, calibration certificate CAL-1) past its calibration "
                "due date 2026-01-01 on the test date 2026-11-27"
            )
    assert report["verdict"] == "fail"  # the input is not changed
    assert mark_untraceable_points(report, [_standard(dt.date(2027, 1, 1))]) == report


class _Key:
    """A stand-in signer with a real Ed25519 key (from cryptography)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ed25519

        self.key = ed25519.Ed25519PrivateKey.generate()

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)

    def verify(self, signature: bytes, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            self.key.public_key().verify(signature, message)
        except InvalidSignature:
            return False
        return True


def test_seal_and_check_a_record_and_its_documents():
    key = _Key()
    record = seal_record({"number": 7, "verdict": "pass", "lab": {"name": "實驗室"}}, "ab" * 32, "f" * 32, key.sign)
    record = seal_documents(record, {"certificate-7.pdf": "cd" * 32}, key.sign)
    assert check_record(record, key.verify, "f" * 32) == ""
    assert canonical_json(record) == canonical_json(json.loads(canonical_json(record)))
    changed = {**record, "documents": {"certificate-7.pdf": "ce" * 32}}
    assert check_record(changed, key.verify, "f" * 32).startswith("signature of the document digests mismatch")
    assert check_record(record, key.verify, "e" * 32) == f"signed by key {'f' * 32}, not by the trusted key {'e' * 32}"
    assert check_record(record, None, None).startswith(f"unknown key {'f' * 32}")
    other = _Key()
    assert check_record(record, other.verify, "f" * 32).startswith("signature mismatch")


def test_a_folder_of_many_input_files_is_one_row_hashing_their_list():
    from meterbench.certificates import input_rows, sha256_hex

    frames = {f"cameras/cam-T1/{i:06d}.jpg": f"{i:064x}" for i in range(5)}
    inputs = {"session.json": "a" * 64, "cameras/cam-T1.csv": "b" * 64, **frames}
    rows = input_rows(inputs)
    assert rows[0] == ("session.json", "a" * 64)  # by folder: the session's top level first
    assert rows[1] == ("cameras/cam-T1.csv", "b" * 64)
    assert rows[2] == (
        "cameras/cam-T1/ (5 files)",
        f"{sha256_hex(canonical_json(frames))} (SHA-256 of the list of their SHA-256)",
    )
    three = dict(list(frames.items())[:3])
    assert input_rows(three) == tuple(sorted(three.items()))  # up to 3 files: listed one by one


def test_hostile_records_give_a_reason_never_an_exception():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from meterbench.certificates import RECORD_FORMAT, check_record_bytes

    key = _Key()
    sealed = seal_documents(
        seal_record({"number": 1, "lab": {"name": "x"}}, "ab" * 32, "f" * 32, key.sign), {"a.pdf": "c" * 64}, key.sign
    )
    values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    )

    class Trusted:
        fingerprint = "f" * 32
        verify = staticmethod(key.verify)

    @settings(max_examples=300, deadline=None)
    @given(field=st.sampled_from(sorted(sealed)), value=values)
    def check(field, value):
        hostile = {**sealed, field: value, "format": RECORD_FORMAT if field != "format" else value}
        raw = json.dumps(hostile).encode()
        _, reason = check_record_bytes(raw, Trusted())
        assert isinstance(reason, str) and (reason or hostile == sealed)

    check()
    for raw in (b"", b"[]", b"nul", b'{"format": "meterbench-certificate-record"}', b"1e999", b"\xff\xfe"):
        assert check_record_bytes(raw, Trusted())[1]


def test_points_named_by_a_map_are_marked_and_the_others_kept(report):
    marked = mark_points_inconclusive(report, {("M1", "Q2"): "U understated"})
    m1, m2 = marked["instruments"]
    assert [(p["name"], p["verdict"]) for p in m1["points"]] == [("Q3", "pass"), ("Q2", "inconclusive"), ("Q1", "pass")]
    assert m1["points"][1]["reason"] == "U understated" and m1["verdict"] == "inconclusive"
    assert m2 == report["instruments"][1] and marked["verdict"] == "fail"  # M2 fails whatever M1 is
    assert report_problems(marked) == []  # a consistent report
