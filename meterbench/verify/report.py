"""Verification reports: report.json (the contract of DESIGN.md) and a human HTML report.

report.json is deterministic: the same session, models and configuration give
the same bytes (fixed key order, floats rounded, no wall-clock time in it).
The HTML report is for people: the meter's identity and the test date, per
instrument a table and a plot of the errors with their uncertainty bars against
the MPE envelope (inline SVG, so it needs no plotting library and opens on any
bench PC), and the warnings grouped by kind and counted. A simulated session is
marked SIMULATED at the top of the screen and of every printed page.

The two files are written as a pair (`write_reports`): both or neither.
"""

from __future__ import annotations

import html
import json
import math
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterbench.errors import OutputError
from meterbench.protocols import is_number
from meterbench.session.writer import write_text_atomic, write_texts_atomic

__all__ = [
    "REPORT_FILES",
    "WarningGroup",
    "atomic_write_text",
    "check_report_folder",
    "clean_for_json",
    "group_warnings",
    "is_simulated",
    "render_report_html",
    "render_report_json",
    "report_warning_groups",
    "summary_lines",
    "write_report_html",
    "write_report_json",
    "write_reports",
]

_FLOAT_DIGITS = 6
REPORT_FILES = ("report.json", "report.html")
"""The files `meterbench run` writes into its --out folder (never overwritten)."""
_TRUTH_FILE = "truth.json"  # a simulated session's answer key: not an input of the verification


def clean_for_json(value: Any) -> Any:
    """Round floats, turn NaN/inf into null (JSON has no NaN), drop private keys ('_...')."""
    if isinstance(value, float):
        return round(value, _FLOAT_DIGITS) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_for_json(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list | tuple):
        return [clean_for_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return clean_for_json(value.item())
    return value


def atomic_write_text(path: Path, text: str) -> None:
    """Write text so that a crash leaves either the old file or the new one, never half of it."""
    write_text_atomic(path, text)


def is_simulated(report: dict) -> bool:
    """True when the report is of a simulated session: its "simulated" flag, else a truth.json among the inputs.

    Never presents a simulated session as a real one: without the flag, the
    simulator's truth.json among the hashed inputs is taken as the sign.
    """
    flag = report.get("simulated")
    if isinstance(flag, bool):
        return flag
    return _TRUTH_FILE in (report.get("inputs") or {})


# ---------------------------------------------------------------- warnings

# A number standing on its own ("frame 356", "devices/ref.jsonl:12:", "got -0.5"), not part of a
# name ("cam-M1", "cam-2.mp4", "x120"): warnings that differ only in such numbers are one kind.
_FREE_NUMBER = re.compile(r"(?<![\w.\-/])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class WarningGroup:
    """Warnings of one kind: how many, and the first and last one as written (no placeholders)."""

    kind: str  # the message with its free-standing numbers replaced by '#': the grouping key
    count: int
    first: str
    last: str


def group_warnings(messages: Iterable[str]) -> list[WarningGroup]:
    """Group warning lines that differ only in their numbers; most frequent kind first, then first seen."""
    order: dict[str, list[str]] = {}
    for message in messages:
        text = str(message)
        order.setdefault(_FREE_NUMBER.sub("#", text), []).append(text)
    groups = [WarningGroup(kind, len(items), items[0], items[-1]) for kind, items in order.items()]
    rank = {g.kind: i for i, g in enumerate(groups)}
    return sorted(groups, key=lambda g: (-g.count, rank[g.kind]))


def report_warning_groups(report: dict) -> list[tuple[str, list[WarningGroup]]]:
    """(scope, groups) for the session's warnings and each instrument's, scopes without warnings left out.

    The scope is "session" or "<kind> <id>". The HTML report and the terminal
    summary both show these, so they always agree.
    """
    scopes = [("session", report.get("warnings") or [])]
    scopes += [
        (f"{i.get('kind', 'instrument')} {i.get('id', '?')}", i.get("warnings") or [])
        for i in report.get("instruments", [])
    ]
    return [(scope, group_warnings(messages)) for scope, messages in scopes if messages]


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def summary_lines(report: dict, max_warning_lines: int = 10, width: int = 110) -> list[str]:
    """A short terminal summary: one line per instrument (verdict and its points'), then the warnings.

    Warnings are grouped and counted as in the HTML report; at most
    ``max_warning_lines`` lines of them, the last saying how many kinds were left out.
    """
    lines = [f"session {report.get('session')}: {report.get('verdict')}"]
    for instrument in report.get("instruments", []):
        points = ", ".join(f"{p.get('name')} {p.get('verdict')}" for p in instrument.get("points", []))
        line = f"  {instrument.get('kind')} {instrument.get('id')}: {instrument.get('verdict')}"
        lines.append(_shorten(f"{line} ({points})" if points else line, width))
    scoped = [(scope, g) for scope, groups in report_warning_groups(report) for g in groups]
    if not scoped:
        return lines + ["no warnings"]
    total = sum(g.count for _, g in scoped)
    lines.append(f"warnings: {total} in {len(scoped)} kind{'s' if len(scoped) != 1 else ''} (see report.html)")
    shown = scoped if len(scoped) <= max_warning_lines else scoped[: max(max_warning_lines - 1, 0)]
    for scope, group in shown:
        prefix = "" if scope == "session" else f"{scope}: "
        more = f" (and {group.count - 1} like it)" if group.count > 1 else ""
        lines.append(f"  {group.count:>5} x {_shorten(prefix + group.first, width - len(more) - 10)}{more}")
    if len(shown) < len(scoped):
        lines.append(f"  ... and {len(scoped) - len(shown)} more kinds")
    return lines


# ---------------------------------------------------------------- output folder and writing


def check_report_folder(out_dir: Path, session_dir: Path | None = None) -> None:
    """Refuse, before any work, an --out where the reports could not be written or would overwrite something.

    Raises OutputError (one line) when ``out_dir`` is a file, already holds a
    report, lies inside the session folder, or cannot be created or written.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir}: is a file, expected a folder for the reports")
    for name in REPORT_FILES:
        if (out_dir / name).exists():
            raise OutputError(
                f"--out {out_dir}: already holds {name}; nothing is ever overwritten, choose a new folder"
            )
    if session_dir is not None:
        session, target = Path(session_dir).resolve(), out_dir.resolve()
        if target == session or session in target.parents:
            raise OutputError(
                f"--out {out_dir}: inside the session folder {session_dir}; a session is not written to, "
                f"choose a folder outside it"
            )
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"--out {out_dir}: {existing} is a file, so the folder cannot be created")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".meterbench-write-check-"):
            pass
    except OSError as exc:
        raise OutputError(f"--out {out_dir}: cannot write in {existing} ({exc.strerror or exc})") from exc


def render_report_json(report: dict) -> str:
    """The text of report.json: cleaned (rounded floats, no NaN, no private keys), indented."""
    return json.dumps(clean_for_json(report), indent=2, ensure_ascii=False) + "\n"


def write_report_json(report: dict, out_dir: Path) -> Path:
    """Write DIR/report.json atomically; returns its path. (`write_reports` writes it with the HTML as a pair.)"""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    atomic_write_text(path, render_report_json(report))
    return path


def write_report_html(
    report: dict, out_dir: Path, figures: dict[str, dict[str, str]] | None = None, provenance: list[str] | None = None
) -> Path:
    """Write DIR/report.html atomically; returns its path. (`write_reports` writes it with the JSON as a pair.)"""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    atomic_write_text(path, render_report_html(report, figures, provenance))
    return path


def write_reports(
    report: dict, out_dir: Path, figures: dict[str, dict[str, str]] | None = None, provenance: list[str] | None = None
) -> tuple[Path, Path]:
    """Write DIR/report.json and DIR/report.html as a pair (both or neither); returns their paths."""
    out_dir = Path(out_dir)
    texts = (render_report_json(report), render_report_html(report, figures, provenance))  # both before any write
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = tuple(out_dir / name for name in REPORT_FILES)
    write_texts_atomic(dict(zip(paths, texts, strict=True)))
    return paths  # type: ignore[return-value]


# ---------------------------------------------------------------- the error plot

_CHAR_PX = 6.6  # mean advance of a character of the 11 px sans-serif labels
_LABEL_GAP_PX = 6.0


def _label_width(text: str) -> float:
    return len(text) * _CHAR_PX


def _spread_labels(desired_x: Sequence[float], widths: Sequence[float], lo: float, hi: float) -> list[float]:
    """Centres for labels of these widths (px) near ``desired_x``, none overlapping, within [lo, hi].

    Labels that would overlap are merged into a block centred (least squares)
    on their desired positions, so close labels move apart symmetrically. When
    they cannot all fit, the result overlaps; the caller then uses a second row.
    """
    order = sorted(range(len(desired_x)), key=lambda i: desired_x[i])
    blocks: list[dict] = []  # {"items": [...], "left": px, "width": px}
    for i in order:
        blocks.append({"items": [i], "left": desired_x[i] - widths[i] / 2, "width": widths[i]})
        while True:
            block = blocks[-1]
            block["left"] = min(max(block["left"], lo), hi - block["width"])
            if len(blocks) < 2 or blocks[-2]["left"] + blocks[-2]["width"] + _LABEL_GAP_PX <= block["left"]:
                break
            prev = blocks.pop(-2)
            items = prev["items"] + block["items"]
            offsets, edge = [], 0.0
            for j in items:
                offsets.append(edge + widths[j] / 2)
                edge += widths[j] + _LABEL_GAP_PX
            left = sum(desired_x[j] - off for j, off in zip(items, offsets, strict=True)) / len(items)
            blocks[-1] = {"items": items, "left": left, "width": edge - _LABEL_GAP_PX}
    centres = [0.0] * len(desired_x)
    for block in blocks:
        edge = block["left"]
        for j in block["items"]:
            centres[j] = edge + widths[j] / 2
            edge += widths[j] + _LABEL_GAP_PX
    return centres


_MAX_LABEL_SHIFT_PX = 40.0  # a label moved further than this from its point is hard to attribute: use two rows


def _label_rows(desired_x: Sequence[float], texts: Sequence[str], lo: float, hi: float) -> list[tuple[float, int]]:
    """(centre px, row) of each label: one row when they fit side by side near their points, else two rows.

    In two rows the labels alternate (in x order), so each row has twice the room.
    """
    widths = [_label_width(t) for t in texts]
    if sum(widths) + _LABEL_GAP_PX * (len(widths) - 1) <= hi - lo:
        centres = _spread_labels(desired_x, widths, lo, hi)
        if max(abs(c - d) for c, d in zip(centres, desired_x, strict=True)) <= _MAX_LABEL_SHIFT_PX:
            return [(x, 0) for x in centres]
    order = sorted(range(len(texts)), key=lambda i: desired_x[i])
    placed: list[tuple[float, int]] = [(0.0, 0)] * len(texts)
    for row in (0, 1):
        members = order[row::2]
        centres = _spread_labels([desired_x[i] for i in members], [widths[i] for i in members], lo, hi)
        for i, x in zip(members, centres, strict=True):
            placed[i] = (x, row)
    return placed


def _nice_step(raw: float) -> float:
    """The 1-2-2.5-5 x 10^k step just above ``raw``."""
    exponent = math.floor(math.log10(raw))
    for mantissa in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= mantissa * 10**exponent * (1 + 1e-9):
            return mantissa * 10**exponent
    return 10.0 ** (exponent + 1)


def _tick_text(value: float, step: float) -> str:
    """A tick value with as many decimals as its step has (0.25 -> 2), signed: "-0.50", "0", "+0.25"."""
    decimals = len(f"{step:.10f}".rstrip("0").split(".")[1])
    if abs(value) < step * 1e-6:
        return "0"
    return f"{value:+.{decimals}f}"


def _y_ticks(span: float) -> tuple[list[float], float]:
    """Ticks (%) symmetric about 0 covering ±span, and the step between them."""
    step = _nice_step(span / 3)
    n = max(1, math.ceil(span / step - 1e-9))
    return [i * step for i in range(-n, n + 1)], step


def _log_ticks(lo_decade: float, hi_decade: float) -> list[float]:
    """Flow ticks (m³/h) between 10^lo and 10^hi: 1-2-5 per decade, decades only when many, 1..9 when few."""

    def candidates(mantissas: Sequence[int]) -> list[float]:
        values = []
        for exponent in range(math.floor(lo_decade), math.ceil(hi_decade) + 1):
            for m in mantissas:
                value = m * 10.0**exponent
                if lo_decade <= math.log10(value) <= hi_decade:
                    values.append(float(f"{value:.12g}"))
        return values

    ticks = candidates((1, 2, 5))
    if len(ticks) > 9:
        ticks = candidates((1,))
    elif len(ticks) < 2:
        ticks = candidates(range(1, 10))
    return ticks


@dataclass(frozen=True)
class _PlotFrame:
    """Pixel box of the plot area of an SVG of ``width`` x ``height``."""

    width: int = 640
    height: int = 320
    left: int = 64
    right: int = 20
    top: int = 28
    bottom: int = 76

    @property
    def x0(self) -> float:
        return float(self.left)

    @property
    def x1(self) -> float:
        return float(self.width - self.right)

    @property
    def y0(self) -> float:
        return float(self.top)

    @property
    def y1(self) -> float:
        return float(self.height - self.bottom)


def _error_plot_svg(points: list[dict], categorical: bool = False, frame: _PlotFrame | None = None) -> str:
    """Errors (%) with k=2 bars against the ±MPE envelope.

    Water meters: flow on a log axis (m³/h), the MPE a step function of flow.
    Tanks (``categorical``): the runs are at about the same flow, so each run
    gets its own x position, named on the axis. Axes carry ticks with their
    values; point labels are spread so that they never overlap.
    """
    frame = frame or _PlotFrame()
    has_flow = [p for p in points if is_number(p.get("flow_rate")) and p["flow_rate"] > 0]
    usable = list(points) if categorical else has_flow
    if not usable:
        return "<p>No point with a flow rate to plot.</p>"
    mpes = [abs(p["mpe_pct"]) for p in usable if is_number(p.get("mpe_pct"))]
    extents = [
        abs(p["error_pct"]) + (p["uncertainty_pct"] if is_number(p.get("uncertainty_pct")) else 0.0)
        for p in usable
        if is_number(p.get("error_pct"))
    ]
    span = max(mpes + extents) * 1.15 if mpes + extents and max(mpes + extents) > 0 else 1.0
    y_ticks, y_step = _y_ticks(span)
    y_extent = y_ticks[-1]

    def y_of(pct: float) -> float:
        return (frame.y0 + frame.y1) / 2 - pct / y_extent * (frame.y1 - frame.y0) / 2

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="error-plot" width="{frame.width}" height="{frame.height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{frame.width}" height="{frame.height}" fill="white" stroke="#ccc"/>',
        f'<rect x="{frame.x0}" y="{frame.y0}" width="{frame.x1 - frame.x0}" height="{frame.y1 - frame.y0}" '
        f'fill="none" stroke="#999"/>',
    ]
    for value in y_ticks:
        y = y_of(value)
        stroke = "#999" if value == 0 else "#eee"
        parts.append(f'<line x1="{frame.x0}" y1="{y:.1f}" x2="{frame.x1}" y2="{y:.1f}" stroke="{stroke}"/>')
        parts.append(
            f'<text class="y-tick" data-value="{value:.6g}" x="{frame.x0 - 4}" y="{y + 4:.1f}" '
            f'text-anchor="end">{_tick_text(value, y_step)}</text>'
        )
    mid_y = (frame.y0 + frame.y1) / 2
    parts.append(
        f'<text x="14" y="{mid_y:.1f}" transform="rotate(-90 14 {mid_y:.1f})" text-anchor="middle">error (%)</text>'
    )

    if categorical:
        slot = (frame.x1 - frame.x0) / len(usable)
        xs = [frame.x0 + (i + 0.5) * slot for i in range(len(usable))]
        flows = [p["flow_rate"] for p in usable if is_number(p.get("flow_rate"))]
        flow_range = sorted({f"{f:.3g}" for f in (min(flows), max(flows))}, key=float) if flows else []
        flow_note = f", at {'–'.join(flow_range)} m³/h" if flows else ""
        axis_title = f"run (one position per run{flow_note})"
        for x, p in zip(xs, usable, strict=True):
            if is_number(p.get("mpe_pct")):
                for sign in (1, -1):
                    y = y_of(sign * p["mpe_pct"])
                    parts.append(
                        f'<line class="mpe" x1="{x - slot / 2:.1f}" y1="{y:.1f}" x2="{x + slot / 2:.1f}" '
                        f'y2="{y:.1f}" stroke="#c00" stroke-dasharray="5,3"/>'
                    )
    else:
        flows = [p["flow_rate"] for p in usable]
        lo, hi = math.log10(min(flows)) - 0.2, math.log10(max(flows)) + 0.2

        def x_of(flow: float) -> float:
            return frame.x0 + (math.log10(flow) - lo) / (hi - lo) * (frame.x1 - frame.x0)

        xs = [x_of(f) for f in flows]
        axis_title = "flow (m³/h, log scale)"
        for value in _log_ticks(lo, hi):
            x = x_of(value)
            parts.append(f'<line x1="{x:.1f}" y1="{frame.y0}" x2="{x:.1f}" y2="{frame.y1}" stroke="#eee"/>')
            parts.append(
                f'<text class="x-tick" data-value="{value:.6g}" x="{x:.1f}" y="{frame.y1 + 14}" '
                f'text-anchor="middle">{value:g}</text>'
            )
        steps = sorted((p["flow_rate"], p["mpe_pct"]) for p in usable if is_number(p.get("mpe_pct")))
        for sign in (1, -1):
            # the MPE is a step function of flow (zones): hold each point's MPE up to the next point
            corners = []
            for i, (flow, mpe) in enumerate(steps):
                corners.append((flow, mpe))
                corners.append((steps[i + 1][0] if i + 1 < len(steps) else 10**hi, mpe))
            envelope = " ".join(f"{x_of(f):.1f},{y_of(sign * m):.1f}" for f, m in corners)
            parts.append(
                f'<polyline class="mpe" points="{envelope}" fill="none" stroke="#c00" stroke-dasharray="5,3"/>'
            )

    for x, p in zip(xs, usable, strict=True):
        error = p.get("error_pct")
        if not is_number(error):
            parts.append(f'<text x="{x:.1f}" y="{y_of(0) - 6:.1f}" fill="#a60" text-anchor="middle">?</text>')
            continue
        u = p["uncertainty_pct"] if is_number(p.get("uncertainty_pct")) else 0.0
        colour = {"pass": "#070", "fail": "#c00"}.get(p.get("verdict"), "#a60")
        parts.append(
            f'<line x1="{x:.1f}" y1="{y_of(error - u):.1f}" x2="{x:.1f}" y2="{y_of(error + u):.1f}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<circle cx="{x:.1f}" cy="{y_of(error):.1f}" r="4" fill="{colour}"/>')

    names = [str(p.get("name", "")) for p in usable]
    label_top = frame.y1 + (18 if categorical else 32)
    placed = _label_rows(xs, names, 2.0, frame.width - 2.0)
    for (label_x, row), x, name in zip(placed, xs, names, strict=True):
        y = label_top + row * 14
        if abs(label_x - x) > 1 or row:
            parts.append(f'<line x1="{x:.1f}" y1="{frame.y1}" x2="{label_x:.1f}" y2="{y - 10:.1f}" stroke="#bbb"/>')
        parts.append(
            f'<text class="point-label" x="{label_x:.1f}" y="{y:.1f}" text-anchor="middle">{html.escape(name)}</text>'
        )
    parts.append(
        f'<text x="{(frame.x0 + frame.x1) / 2:.1f}" y="{label_top + 14 * max(r for _, r in placed) + 20}" '
        f'text-anchor="middle">'
        f"{html.escape(axis_title)}</text>"
    )
    parts.append(f'<text x="{frame.x0}" y="16">error of indication with U (k=2); dashed: ±MPE</text></svg>')
    svg = "".join(parts)
    left_out = len(points) - len(usable)
    if left_out:
        svg += f"<p>{left_out} point(s) without a measured flow are not plotted (see the table).</p>"
    return svg


# ---------------------------------------------------------------- HTML


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:.{digits}f}" if math.isfinite(value) else "–"
    return "–" if value is None else html.escape(str(value))


def _budget_html(point: dict) -> str:
    """A point's uncertainty budget as a folded table (standard uncertainties in %)."""
    budget = (point.get("details") or {}).get("uncertainty_budget") or {}
    components = budget.get("components") or []
    if not components:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(c.get('name')))}</td><td>{_fmt(c.get('u_pct'), 4)}</td>"
        f"<td>{html.escape(str(c.get('source', '')))}</td></tr>"
        for c in components
    )
    return (
        f"<details><summary>uncertainty budget, point {html.escape(str(point['name']))}: "
        f"U = {_fmt(point.get('uncertainty_pct'), 4)} % (k = 2)</summary>"
        f"<table><tr><th>component</th><th>u (%)</th><th>source</th></tr>{rows}</table></details>"
    )


_POINT_COLUMNS = (
    ("name", "point", 0),
    ("flow_rate", "flow (m³/h)", 4),
    ("reference_volume", "V ref (L)", 4),
    ("indicated_volume", "V ind (L)", 4),
    ("error_pct", "error (%)", 3),
    ("mpe_pct", "MPE (±%)", 2),
    ("uncertainty_pct", "U k=2 (%)", 3),
    ("verdict", "verdict", 0),
    ("reason", "reason", 0),
)

_IDENTITY_FIELDS = (
    ("serial", "serial number"),
    ("type", "type"),
    ("q3_m3h", "Q3 (m³/h)"),
    ("r", "R (Q3/Q1)"),
    ("accuracy_class", "accuracy class"),
    ("nominal_volume_l", "nominal volume (L)"),
    ("material", "material"),
    ("model", "model"),
    ("size", "size"),
    ("lot", "lot"),
    ("profile", "standard profile"),
)


def _plain(value: Any) -> str:
    """A value as a person writes it: 2.5, 160, "B"."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return html.escape(str(value))


def _identity_html(instrument: dict) -> str:
    """The instrument's identity (serial, type, Q3, R, class, nominal volume, material): those that are known."""
    cells = [
        f"<tr><th>{label}</th><td>{_plain(instrument[key])}</td></tr>"
        for key, label in _IDENTITY_FIELDS
        if instrument.get(key) not in (None, "")
    ]
    return f'<table class="identity">{"".join(cells)}</table>' if cells else ""


def _instrument_html(instrument: dict, figures: dict[str, str], categorical: bool) -> str:
    rows = []
    for point in instrument.get("points", []):
        cells = "".join(f"<td>{_fmt(point.get(key), digits)}</td>" for key, _, digits in _POINT_COLUMNS)
        rows.append(f'<tr class="{html.escape(str(point.get("verdict")))}">{cells}</tr>')
    header = "".join(f"<th>{label}</th>" for _, label, _ in _POINT_COLUMNS)
    images = "".join(
        f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}"/>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, src in figures.items()
    )
    budgets = "".join(_budget_html(p) for p in instrument.get("points", []))
    verdict = html.escape(str(instrument.get("verdict")))
    return (
        f"<section><h2>{html.escape(str(instrument.get('kind')))} {html.escape(str(instrument.get('id')))}: "
        f'<span class="{verdict}">{verdict}</span></h2>{_identity_html(instrument)}'
        f"<table><tr>{header}</tr>{''.join(rows)}</table>"
        f"{_error_plot_svg(instrument.get('points', []), categorical=categorical)}{images}{budgets}</section>"
    )


def _rig_checks_html(report: dict) -> str:
    """A helmet-impact run's rig checks (report.json ``rig_checks``): one row per day and a control chart."""
    checks = report.get("rig_checks")
    if not isinstance(checks, list) or not checks:
        return ""
    from meterbench.verify.helmet_plot import rig_check_svg

    rows = "".join(
        f'<tr class="{"pass" if c.get("certifiable") else "fail"}"><td>{html.escape(str(c.get("day")))}</td>'
        f"<td>{'certifiable' if c.get('certifiable') else 'NOT certifiable'}</td>"
        f"<td>{html.escape(str(c.get('reason')))}</td></tr>"
        for c in checks
    )
    window = (report.get("rig_check_limits") or {}).get("peak_window_g", (380.0, 425.0))
    return (
        "<section><h2>Rig checks (reference drops)</h2><table><tr><th>day</th><th>impacts</th><th>why</th></tr>"
        f"{rows}</table>{rig_check_svg(checks, window)}</section>"
    )


def _warnings_html(report: dict) -> str:
    """The warnings section: per scope (session, each instrument) the kinds, counted, with the first and last."""
    scoped = report_warning_groups(report)
    if not scoped:
        return '<section class="warnings"><h2>Warnings</h2><p>No warnings.</p></section>'
    total = sum(g.count for _, groups in scoped for g in groups)
    kinds = sum(len(groups) for _, groups in scoped)
    parts = [f'<section class="warnings"><h2>Warnings: {total} in {kinds} kind{"s" if kinds != 1 else ""}</h2>']
    for scope, groups in scoped:
        rows = "".join(
            f'<tr><td class="count">{g.count}</td><td>{html.escape(g.first)}</td>'
            f"<td>{html.escape(g.last) if g.count > 1 else ''}</td></tr>"
            for g in groups
        )
        parts.append(
            f'<h3>{html.escape(scope)}</h3><table class="warnings" data-scope="{html.escape(scope)}">'
            f"<tr><th>count</th><th>first of its kind</th><th>last of its kind</th></tr>{rows}</table>"
        )
    return "".join(parts) + "</section>"


_STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:4px 0}
td,th{border:1px solid #bbb;padding:3px 6px;font-size:13px}.pass{color:#070}.fail{color:#c00}
.inconclusive{color:#a60}tr.fail td{background:#fee}tr.inconclusive td{background:#ffe}
table.identity th{text-align:left;background:#f4f4f4}td.count{text-align:right}
figure{display:inline-block;margin:4px}code{font-size:11px}
.simulated-banner{background:#c00;color:#fff;font-weight:bold;text-align:center;padding:6px;letter-spacing:.2em}
@media print{body{margin:3em 1em 1em 1em}
.simulated-banner{position:fixed;top:0;left:0;right:0;-webkit-print-color-adjust:exact;print-color-adjust:exact}}"""

_SIMULATED_BANNER = (
    '<div class="simulated-banner">SIMULATED — a simulated session, not a verification of a real instrument</div>'
)


def render_report_html(
    report: dict, figures: dict[str, dict[str, str]] | None = None, provenance: list[str] | None = None
) -> str:
    """The text of report.html: identity and test date, verdicts, tables, plots, warnings, models, inputs."""
    figures = figures or {}
    simulated = is_simulated(report)
    categorical = report.get("bench_kind") == "tank"
    sections = "".join(
        _instrument_html(i, figures.get(i.get("id"), {}), categorical or i.get("kind") == "tank")
        for i in report.get("instruments", [])
    )
    inputs = "".join(
        f"<tr><td><code>{html.escape(path)}</code></td><td><code>{html.escape(str(digest))}</code></td></tr>"
        for path, digest in sorted((report.get("inputs") or {}).items())
        if path != _TRUTH_FILE
    )
    models = "".join(
        f"<li>{html.escape(k)}: <code>{html.escape(str(v))}</code></li>"
        for k, v in sorted((report.get("models") or {}).items())
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in (provenance or []))
    session = html.escape(str(report.get("session")))
    verdict = html.escape(str(report.get("verdict")))
    when = report.get("start_time_utc")
    date = f"<p>Test date: <b>{html.escape(str(when))}</b> (UTC, start of the session).</p>" if when else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{'SIMULATED — ' if simulated else ''}"
        f"meterbench report {session}</title><style>{_STYLE}</style></head><body>"
        f"{_SIMULATED_BANNER if simulated else ''}"
        f"<h1>Verification report — session {session}</h1>{date}"
        f"<p>Overall verdict: <b class='{verdict}'>{verdict}</b>. "
        f"Decision rule: {html.escape(str(report.get('decision_rule', 'simple')))}. "
        f"Uncertainties are expanded (k = 2). {html.escape(str(report.get('software', '')))}.</p>"
        f"{sections}{_rig_checks_html(report)}{_warnings_html(report)}<h2>Models</h2><ul>{models}</ul>"
        f"<h2>Metrological tables and their provenance</h2><ul>{notes}</ul>"
        f"<h2>Input files (SHA-256)</h2><table>{inputs}</table></body></html>\n"
    )
