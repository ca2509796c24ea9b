"""The human report (report.html) read back with the stdlib HTML parser, and the warnings summary."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from meterbench.verify.report import (
    group_warnings,
    report_warning_groups,
    summary_lines,
    write_report_html,
    write_reports,
)


class _Page(HTMLParser):
    """Collects what the tests look at: svg texts (class, x, y, text), circles, tables by scope, visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[dict] = []  # svg <text>
        self.circles: list[dict] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.body_text: list[str] = []
        self.style = ""
        self._stack: list[tuple[str, dict]] = []
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._svg_text: dict | None = None
        self.banners = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._stack.append((tag, attrs))
        if tag == "text":
            self._svg_text = {**attrs, "text": ""}
        elif tag == "circle":
            self.circles.append(attrs)
        elif tag == "table":
            self._table = self.tables.setdefault(
                attrs.get("data-scope") or attrs.get("class") or f"t{len(self.tables)}", []
            )
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []
        if "simulated-banner" in (attrs.get("class") or ""):
            self.banners += 1

    def handle_endtag(self, tag):
        if tag == "text" and self._svg_text is not None:
            self.texts.append(self._svg_text)
            self._svg_text = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        while self._stack and self._stack.pop()[0] != tag:
            pass

    def handle_data(self, data):
        if self._stack and self._stack[-1][0] == "style":
            self.style += data
            return
        if self._stack and self._stack[-1][0] == "title":
            self.title = data
        self.body_text.append(data)
        if self._svg_text is not None:
            self._svg_text["text"] += data
        if self._cell is not None:
            self._cell.append(data)

    def of_class(self, name: str) -> list[dict]:
        return [t for t in self.texts if t.get("class") == name]


def _point(name, flow, error, mpe, u=0.3, verdict="pass") -> dict:
    return {
        "name": name,
        "flow_rate": flow,
        "reference_volume": 10.0,
        "indicated_volume": 10.0 * (1 + error / 100),
        "error_pct": error,
        "mpe_pct": mpe,
        "uncertainty_pct": u,
        "verdict": verdict,
        "reason": "",
    }


def _report(points, kind="water-meter", **top) -> dict:
    return {
        "session": "S1",
        "verdict": "pass",
        "bench_kind": kind,
        "instruments": [{"id": "M1", "kind": kind, "verdict": "pass", "points": points, "warnings": []}],
        "inputs": {"session.json": "ab" * 32},
        "warnings": [],
        **top,
    }


def _render(report: dict, tmp_path: Path) -> _Page:
    page = _Page()
    page.feed(write_report_html(report, tmp_path).read_text(encoding="utf-8"))
    return page


WATER_POINTS = [_point("Q3", 2.37657, 0.21, 2.0), _point("Q2", 0.042036, 0.88, 2.0), _point("Q1", 0.026252, -1.1, 5.0)]


def test_y_axis_ticks_carry_their_values_in_percent(tmp_path):
    page = _render(_report(WATER_POINTS), tmp_path)
    ticks = page.of_class("y-tick")
    # span = 5 % x 1.15 -> step 2 %, ticks to ±6 %
    assert [t["text"] for t in ticks] == ["-6", "-4", "-2", "0", "+2", "+4", "+6"]
    ys = [float(t["y"]) for t in ticks]
    steps = [b - a for a, b in zip(ys, ys[1:], strict=False)]
    assert all(abs(s - steps[0]) < 0.11 and s < 0 for s in steps)  # linear, + up
    assert "error (%)" in "".join(page.body_text)


def test_x_axis_shows_flows_on_a_log_scale_where_the_points_are(tmp_path):
    page = _render(_report(WATER_POINTS), tmp_path)
    ticks = {float(t["data-value"]): float(t["x"]) for t in page.of_class("x-tick")}
    assert [t["text"] for t in page.of_class("x-tick")] == ["0.02", "0.05", "0.1", "0.2", "0.5", "1", "2"]
    px_per_decade = ticks[0.2] - ticks[0.02]
    assert ticks[2.0] - ticks[0.2] == pytest.approx(px_per_decade, abs=0.15)
    assert ticks[0.05] - ticks[0.02] == pytest.approx(px_per_decade * math.log10(2.5), abs=0.15)
    # each point's marker sits at its flow on that axis
    for point, circle in zip(WATER_POINTS, page.circles, strict=True):
        expected = ticks[0.2] + math.log10(point["flow_rate"] / 0.2) * px_per_decade
        assert float(circle["cx"]) == pytest.approx(expected, abs=0.2), point["name"]
    assert "flow (m³/h, log scale)" in "".join(page.body_text)


def test_labels_of_close_flows_do_not_overlap(tmp_path):
    points = [
        _point("Q1", 0.016, -1.0, 5.0),
        _point("Q2", 0.0175, 0.5, 2.0),  # 9 % above Q1: ~7 px apart on the axis
        _point("Q2b", 0.018, 0.4, 2.0),
        _point("Q3", 2.5, 0.2, 2.0),
        _point("Q4", 3.125, 0.1, 2.0),
    ]
    page = _render(_report(points), tmp_path)
    labels = page.of_class("point-label")
    assert sorted(t["text"] for t in labels) == ["Q1", "Q2", "Q2b", "Q3", "Q4"]
    by_row: dict[str, list[dict]] = {}
    for label in labels:
        by_row.setdefault(label["y"], []).append(label)
    for row in by_row.values():
        row.sort(key=lambda t: float(t["x"]))
        for a, b in zip(row, row[1:], strict=False):
            # centred labels of about 6.6 px per character must be half their widths apart, plus a gap
            needed = (len(a["text"]) + len(b["text"])) / 2 * 6.6 + 4
            assert float(b["x"]) - float(a["x"]) >= needed, (a, b)
    # and each label stays near its own point
    circles_x = [float(c["cx"]) for c in page.circles]
    for label, point_x in zip(sorted(labels, key=lambda t: t["text"]), sorted(circles_x), strict=True):
        assert abs(float(label["x"]) - point_x) <= 40


def test_tank_runs_at_the_same_flow_get_one_x_position_each(tmp_path):
    runs = [_point(f"R{i}", 2.4, 0.05 * i, 0.1, u=0.02) for i in (1, 2, 3)]
    page = _render(_report(runs, kind="tank"), tmp_path)
    xs = [float(c["cx"]) for c in page.circles]
    assert len(set(xs)) == 3
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.1) and xs[1] - xs[0] > 100
    labels = {t["text"]: float(t["x"]) for t in page.of_class("point-label")}
    assert labels == pytest.approx({"R1": xs[0], "R2": xs[1], "R3": xs[2]}, abs=0.1)
    assert page.of_class("x-tick") == []  # no flow axis: the runs are the x axis
    assert "run (one position per run, at 2.4 m³/h)" in "".join(page.body_text)


def test_meter_identity_and_test_date_are_shown_when_known(tmp_path):
    report = _report(WATER_POINTS, start_time_utc="2026-11-27T08:15:00Z")
    report["instruments"][0].update(
        {"serial": "WM-2026-0042", "type": "DN15 multi-jet", "q3_m3h": 2.5, "r": 160, "accuracy_class": "2"}
    )
    page = _render(report, tmp_path)
    identity = {row[0]: row[1] for row in page.tables["identity"]}
    assert identity == {
        "serial number": "WM-2026-0042",
        "type": "DN15 multi-jet",
        "Q3 (m³/h)": "2.5",
        "R (Q3/Q1)": "160",
        "accuracy class": "2",
    }
    assert "Test date: 2026-11-27T08:15:00Z (UTC, start of the session)." in "".join(page.body_text)


def test_a_tank_identity_shows_its_volume_and_material(tmp_path):
    report = _report([_point("R1", 2.4, 0.05, 0.1)], kind="tank")
    report["instruments"][0].update({"nominal_volume_l": 20.0, "material": "stainless-steel", "serial": None})
    identity = {row[0]: row[1] for row in _render(report, tmp_path).tables["identity"]}
    assert identity == {"nominal volume (L)": "20", "material": "stainless-steel"}


def test_a_real_session_has_no_identity_table_or_date_when_unknown(tmp_path):
    page = _render(_report(WATER_POINTS), tmp_path)
    assert "identity" not in page.tables
    assert "Test date" not in "".join(page.body_text)


def test_a_simulated_session_is_marked_on_screen_and_on_every_printed_page(tmp_path):
    page = _render(_report(WATER_POINTS, simulated=True), tmp_path)
    assert page.banners == 1
    assert "SIMULATED" in "".join(page.body_text)
    assert page.title.startswith("SIMULATED")
    # in print, the banner is fixed to the page: browsers repeat fixed elements on every page
    print_rules = re.search(r"@media print\{(.*)\}\s*$", page.style, re.S).group(1)
    assert re.search(r"\.simulated-banner\{[^}]*position:fixed;top:0", print_rules)


def test_a_real_session_carries_no_simulated_mark(tmp_path):
    page = _render(_report(WATER_POINTS, simulated=False), tmp_path)
    assert page.banners == 0
    assert "SIMULATED" not in "".join(page.body_text)


def test_without_the_flag_a_truth_file_among_the_inputs_marks_it_simulated(tmp_path):
    report = _report(WATER_POINTS)
    report["inputs"]["truth.json"] = "cd" * 32
    assert _render(report, tmp_path).banners == 1


def test_truth_json_is_not_listed_among_the_input_files(tmp_path):
    report = _report(WATER_POINTS, simulated=True)
    report["inputs"] = {"session.json": "ab" * 32, "truth.json": "cd" * 32, "devices/ref.jsonl": "ef" * 32}
    page = _render(report, tmp_path)
    digests = set(report["inputs"].values())
    listed = [row[0] for table in page.tables.values() for row in table if len(row) == 2 and row[1] in digests]
    assert sorted(listed) == ["devices/ref.jsonl", "session.json"]
    assert "truth.json" not in "".join(page.body_text)


def _many_warnings() -> tuple[list[str], list[str]]:
    session = [f"cameras/cam-M1.mp4: frame {i} cannot be decoded; not used" for i in range(300, 918)]
    session += [f"devices/ref-meter.jsonl:{n}: skipped: not valid JSON" for n in range(12, 52)]
    session += ["cameras/cam-M2.mp4: frame 7 cannot be decoded; not used"]
    instrument = ["reference meter ref: 3 of 900 lines unusable (recorded raw, not used)"]
    return session, instrument


def test_warnings_are_grouped_by_kind_and_counted(tmp_path):
    session, instrument = _many_warnings()
    report = _report(WATER_POINTS, warnings=session)
    report["instruments"][0]["warnings"] = instrument
    page = _render(report, tmp_path)
    assert "Warnings: 660 in 4 kinds" in "".join(page.body_text)
    assert page.tables["session"] == [
        ["count", "first of its kind", "last of its kind"],
        ["618", session[0], "cameras/cam-M1.mp4: frame 917 cannot be decoded; not used"],
        [
            "40",
            "devices/ref-meter.jsonl:12: skipped: not valid JSON",
            "devices/ref-meter.jsonl:51: skipped: not valid JSON",
        ],
        ["1", "cameras/cam-M2.mp4: frame 7 cannot be decoded; not used", ""],
    ]
    assert page.tables["water-meter M1"][1:] == [["1", instrument[0], ""]]


def test_no_warnings_says_so(tmp_path):
    assert "No warnings." in "".join(_render(_report(WATER_POINTS), tmp_path).body_text)


def test_grouping_keeps_apart_what_differs_in_names_not_numbers():
    groups = group_warnings(
        [
            "cameras/cam-1.mp4: frame 3 cannot be decoded; not used",
            "cameras/cam-2.mp4: frame 3 cannot be decoded; not used",
            "cameras/cam-1.mp4: frame 4 cannot be decoded; not used",
            "t_s: expected a finite time > -0.5 s, got x",
            "t_s: expected a finite time > 1.25e-3 s, got x",
        ]
    )
    assert [(g.count, g.first) for g in groups] == [
        (2, "cameras/cam-1.mp4: frame 3 cannot be decoded; not used"),
        (2, "t_s: expected a finite time > -0.5 s, got x"),
        (1, "cameras/cam-2.mp4: frame 3 cannot be decoded; not used"),
    ]


def test_terminal_summary_counts_the_same_groups_within_ten_lines():
    session, instrument = _many_warnings()
    session += [f"kind {chr(65 + k)} of warning" for k in range(10)]  # 10 more kinds, 1 each
    report = _report(WATER_POINTS, warnings=session)
    report["instruments"][0]["warnings"] = instrument
    report["instruments"][0]["points"][2]["verdict"] = "inconclusive"
    report["instruments"][0]["verdict"] = "inconclusive"
    lines = summary_lines(report)
    assert lines[:3] == [
        "session S1: pass",
        "  water-meter M1: inconclusive (Q3 pass, Q2 pass, Q1 inconclusive)",
        "warnings: 670 in 14 kinds (see report.html)",
    ]
    warning_lines = lines[3:]
    assert len(warning_lines) == 10
    assert warning_lines[0] == "    618 x cameras/cam-M1.mp4: frame 300 cannot be decoded; not used (and 617 like it)"
    assert warning_lines[1] == "     40 x devices/ref-meter.jsonl:12: skipped: not valid JSON (and 39 like it)"
    assert warning_lines[-1] == "  ... and 5 more kinds"
    # the HTML shows the very same groups
    html_counts = [g.count for _, groups in report_warning_groups(report) for g in groups]
    assert sum(html_counts) == 670 and len(html_counts) == 14


def test_terminal_summary_without_warnings():
    assert summary_lines(_report(WATER_POINTS))[-1] == "no warnings"


def test_reports_are_written_as_a_pair_and_leave_no_temporary_file(tmp_path):
    report = _report(WATER_POINTS, simulated=True)
    json_path, html_path = write_reports(report, tmp_path / "out")
    assert json.loads(json_path.read_text())["session"] == "S1"
    assert "SIMULATED" in html_path.read_text()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json"]


def test_when_the_html_cannot_be_made_neither_file_is_written(tmp_path):
    report = _report(WATER_POINTS)
    report["instruments"][0]["points"] = "not a list of points"  # a broken report: rendering the HTML fails
    with pytest.raises(AttributeError):
        write_reports(report, tmp_path)
    assert list(tmp_path.iterdir()) == []
