"""The human certificate: one list of blocks from a record, drawn as HTML and as a PDF (reportlab).

Both files are drawn from the same :func:`certificate_blocks`, so they state the same content.
The PDF embeds a TrueType font that renders Chinese as well as Latin (AR PL UMing from Debian's
fonts-arphic-uming, or another found by :func:`find_cjk_font`); the verification code is printed
as text and as a QR code (segno), drawn as vector squares.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from meterbench.errors import ConfigError

from ._canonical import canonical_json, sha256_hex

__all__ = [
    "FONT_ENV",
    "Block",
    "certificate_blocks",
    "check_renderers",
    "find_cjk_font",
    "input_rows",
    "render_html",
    "render_pdf",
]

FONT_ENV = "METERBENCH_CERT_FONT"
"""Environment variable: a TrueType font file (.ttf/.ttc) to use instead of the Debian ones."""
# (path, TTC face name wanted): TrueType outlines only (reportlab cannot embed CFF/OpenType-PS,
# so Noto Sans CJK's .ttc is not usable); the TW face for a Taiwanese lab's traditional characters.
_FONT_CANDIDATES = (
    ("/usr/share/fonts/truetype/arphic/uming.ttc", b"UMingTW"),
    ("/usr/share/fonts/truetype/arphic/ukai.ttc", b"UKaiTW"),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", None),
    ("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf", None),
)
_FONT_NAME = "MeterbenchCJK"


@dataclass(frozen=True)
class Block:
    """One part of a certificate: ``kind`` "pairs" (label, value rows), "table" (header + rows) or "text"."""

    kind: str
    title: str
    rows: tuple[tuple[str, ...], ...] = ()
    header: tuple[str, ...] = ()
    text: str = ""


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


_IDENTITY_LABELS = (
    ("kind", "kind"),
    ("type", "type"),
    ("serial", "serial number"),
    ("id", "position on the bench"),
    ("dn", "DN"),
    ("q3_m3h", "Q3 (m³/h)"),
    ("r", "R (Q3/Q1)"),
    ("q2_q1", "Q2/Q1"),
    ("accuracy_class", "accuracy class"),
    ("temperature_class", "temperature class"),
    ("nominal_volume_l", "nominal volume (L)"),
    ("material", "material"),
    ("manufacturer", "manufacturer"),
    ("model", "model"),
    ("size", "size"),
    ("lot", "lot"),
    ("profile", "standard profile"),
)
_PROVENANCE = {
    "SRC": "[SRC] from the standard's text",
    "MEM": "[MEM] recalled, not confirmed from the standard's text",
    "CFG": "[CFG] set by the session",
}
_LIMIT_LABELS = (
    ("peak_max_g", "peak acceleration (g)"),
    ("dwell_limits_ms", "cumulative time above a level (ms)"),
    ("hic_max", "HIC"),
    ("velocity_window_m_s", "impact velocity (m/s)"),
    ("cfc", "SAE J211 channel class"),
    ("max_minutes_out_of_chamber", "out of the conditioning chamber (min)"),
)


_GROUP_ABOVE = 3  # a folder with more input files than this is one row (an image-folder camera: hundreds)


def input_rows(inputs: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """(file, SHA-256) rows of the session's inputs; a folder of many files is one row whose hash is
    the SHA-256 of the canonical JSON of its {path: SHA-256} map (every file is in the signed record)."""
    folders: dict[str, dict[str, str]] = {}
    for path, digest in inputs.items():
        folders.setdefault(path.rpartition("/")[0], {})[path] = digest
    rows = []
    for folder, files in sorted(folders.items()):
        if len(files) > _GROUP_ABOVE:
            digest = sha256_hex(canonical_json(files))
            rows.append((f"{folder}/ ({len(files)} files)", f"{digest} (SHA-256 of the list of their SHA-256)"))
        else:
            rows += sorted(files.items())
    return tuple(rows)


def _limit_text(key: str, value: Any) -> str:
    if value is None:
        return "none (not a criterion of this standard)"
    if key == "dwell_limits_ms":
        return "; ".join(f"above {level} g: <= {_num(limit)} ms" for level, limit in sorted(value.items(), key=_level))
    if key == "velocity_window_m_s":
        return "; ".join(f"{anvil} anvil {_num(low)}-{_num(high)} m/s" for anvil, (low, high) in sorted(value.items()))
    return ("<= " if key in ("peak_max_g", "hic_max", "max_minutes_out_of_chamber") else "") + _num(value)


def _level(item: tuple[str, Any]) -> float:
    return float(item[0])


def _helmet_blocks(cert: Mapping[str, Any]) -> list[Block]:
    """A helmet's results: the profile's limits with provenance, per impact peak / dwell / HIC /
    velocity and verdict, the reasons, the day's rig checks and the model's verdict."""
    helmet = cert["helmet"]
    levels = sorted({str(k) for p in cert["points"] for k in p["dwell_ms"]}, key=float)
    limits = helmet["limits"]
    rows = tuple(
        (
            label,
            _limit_text(key, limits[key].get("value")),
            _PROVENANCE.get(limits[key].get("provenance"), "?"),
            str(limits[key].get("source", "")),
        )
        for key, label in _LIMIT_LABELS
        if key in limits
    )
    model = helmet.get("model")
    model_text = "not stated"
    if model is not None:
        model_text = (
            f"{model['model']}: {str(model['verdict']).upper()} over helmets {', '.join(model['helmets'])}: "
            f"{model['reason']}"
        )
        if model["programme_gaps"] and model["verdict"] != "fail":
            model_text += f" (programme: {'; '.join(model['programme_gaps'])})"
    checks = tuple(
        (
            str(c["day"]),
            *(
                f"{c[w]['reason']} (peaks {', '.join(_num(p) for p in c[w]['peaks_g']) or 'none'} g)"
                for w in ("before", "after")
            ),
            "yes" if c["certifiable"] else "NO",
        )
        for c in helmet["rig_checks"]
    )
    window = helmet.get("rig_check_limits", {}).get("peak_window_g")
    return [
        Block(
            "table",
            f"Limits of the standard profile {helmet['profile']}",
            rows,
            header=("criterion", "limit", "provenance", "source"),
        ),
        Block(
            "table",
            "Results per impact (peak and HIC of the CFC-filtered resultant; U: expanded uncertainty of peak, k = 2)",
            tuple(
                (
                    str(p["name"]),
                    str(p["site"]),
                    str(p["anvil"]),
                    _num(p["velocity_m_s"], 3),
                    str(p["conditioning"])
                    + (f" ({_num(p['out_of_chamber_s'], 3)} s out)" if p["out_of_chamber_s"] is not None else ""),
                    _num(p["peak_g"], 4),
                    *(_num(p["dwell_ms"].get(level), 3) for level in levels),
                    _num(p["hic"], 4),
                    _num(p["peak_u_rel_pct"], 2),
                    str(p["verdict"]).upper(),
                )
                for p in cert["points"]
            ),
            header=(
                "impact",
                "site",
                "anvil",
                "v (m/s)",
                "conditioning",
                "peak (g)",
                *(f"> {level} g (ms)" for level in levels),
                "HIC",
                "U (%)",
                "verdict",
            ),
        ),
        Block(
            "table",
            "Reasons",
            tuple((str(p["name"]), str(p["reason"])) for p in cert["points"]),
            header=("point", "reason"),
        ),
        Block(
            "table",
            "Rig checks (reference drops before and after the day's impacts"
            + (f"; accepted {_num(window[0])}-{_num(window[1])} g)" if window else ")"),
            checks or (("none", "-", "-", "NO"),),
            header=("day", "before", "after", "certifiable"),
        ),
        Block(
            "text",
            "Helmet model (all helmets of this model in the run)",
            text=model_text,
        ),
    ]


def _results_blocks(cert: Mapping[str, Any]) -> list[Block]:
    """A meter's or tank's results: per point E, MPE, U, verdict and the reasons."""
    return [
        Block(
            "table",
            "Results (E: error of indication; MPE: maximum permissible error; U: expanded uncertainty, k = 2)",
            tuple(
                (
                    str(p["name"]),
                    _num(p["flow_rate_m3h"]),
                    _num(p["water_temperature_c"], 3),
                    _num(p["water_pressure_bar"], 3),
                    _num(p["reference_volume_l"], 6),
                    _num(p["indicated_volume_l"], 6),
                    _num(p["error_pct"], 3),
                    _num(p["mpe_pct"], 3),
                    _num(p["uncertainty_pct"], 2),
                    str(p["verdict"]).upper(),
                )
                for p in cert["points"]
            ),
            header=(
                "point",
                "flow (m³/h)",
                "water (°C)",
                "p (bar)",
                "reference (L)",
                "indicated (L)",
                "E (%)",
                "MPE (%)",
                "U (%)",
                "verdict",
            ),
        ),
        Block(
            "table",
            "Reasons",
            tuple((str(p["name"]), str(p["reason"])) for p in cert["points"]),
            header=("point", "reason"),
        ),
    ]


def certificate_blocks(record: Mapping[str, Any]) -> list[Block]:
    """What a certificate shows, in order (both renderers draw exactly these)."""
    cert = record["certificate"]
    lab, session, software = cert["lab"], cert["session"], cert["software"]
    instrument = cert["instrument"]
    blocks = [
        Block(
            "pairs",
            "Certificate",
            (
                ("certificate number", str(cert["number"])),
                ("verification code", record["verification_code"]),
                ("issued (UTC)", cert["issued_utc"]),
                ("place", cert["place"]),
                ("laboratory", lab["name"]),
                ("address", lab["address"]),
                ("accreditation number", lab["accreditation_number"]),
                *((k, lab[k]) for k in ("phone", "email") if k in lab),
            ),
        ),
        Block(
            "pairs",
            "Instrument",
            tuple((label, _num(instrument[key])) for key, label in _IDENTITY_LABELS if key in instrument),
        ),
        Block(
            "pairs",
            "Test",
            (
                ("test started (UTC)", str(cert["test_start_utc"])),
                ("bench", " ".join(x for x in (cert["bench"]["id"], cert["bench"]["name"]) if x)),
                ("bench location", cert["bench"]["location"] or "-"),
                ("technician", f"{cert['technician']['name']} ({cert['technician']['id']})"),
                ("session", str(session["id"])),
                (
                    "simulated",
                    "YES: SIMULATED SESSION, NOT A TEST OF A REAL INSTRUMENT" if session["simulated"] else "no",
                ),
            ),
        ),
        Block(
            "table",
            "Reference standards",
            tuple(
                (
                    s["id"],
                    s["serial"],
                    s["calibration_certificate"] + (f" ({s['calibrated_by']})" if s.get("calibrated_by") else ""),
                    f"{_num(s['expanded_uncertainty_pct'])} % (k = {_num(s['coverage_factor'])})",
                    s["due_date"],
                )
                for s in cert["reference_standards"]
            ),
            header=("id", "serial", "calibration certificate", "U", "due date"),
        ),
        *(_helmet_blocks(cert) if "helmet" in cert else _results_blocks(cert)),
        Block("text", "Overall verdict", text=str(cert["verdict"]).upper()),
        Block("text", f"Decision rule ({cert['decision_rule']['name']})", text=cert["decision_rule"]["statement"]),
        Block(
            "pairs",
            "Software (OIML D 31)",
            (
                ("software", str(software.get("version"))),
                ("git revision", str(software.get("git_revision"))),
                *((f"model {name} (SHA-256)", digest) for name, digest in sorted(software.get("models", {}).items())),
                *((f"table {name} (SHA-256)", digest) for name, digest in sorted(software.get("tables", {}).items())),
            ),
        ),
        Block(
            "table",
            "Input files of the session (SHA-256)",
            input_rows(session["inputs"]) + (("report", f"{session['report_file']}: {record['report_sha256']}"),),
            header=("file", "SHA-256"),
        ),
        Block("table", "Warnings", tuple((w,) for w in cert["warnings"]) or (("none",),), header=("warning",)),
        Block(
            "pairs",
            "Verification",
            (
                ("verification code", record["verification_code"]),
                ("key fingerprint", record["key_fingerprint"]),
                ("how to check", "meterbench verify --code CODE; the signed record (.json) is the authority"),
            ),
        ),
    ]
    return blocks


def _title(record: Mapping[str, Any]) -> str:
    cert = record["certificate"]
    kind = "Test certificate (helmet impact)" if "helmet" in cert else "Verification certificate"
    return f"{kind} {cert['number']}"


def _qr(code: str):
    try:
        import segno
    except ImportError:
        raise ConfigError("certificates need the 'segno' package: pip install 'meterbench[cert]'") from None
    return segno.make(code, error="m", micro=False)


# ---------------------------------------------------------------- HTML


def render_html(record: Mapping[str, Any]) -> str:
    """The HTML certificate (UTF-8, self-contained, printable on A4)."""
    cert = record["certificate"]
    esc = html.escape
    simulated = cert["session"]["simulated"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta name='meterbench-verification-code' content='{esc(record['verification_code'])}'>",
        f"<title>{esc(_title(record))}</title><style>",
        "body{font-family:'Noto Sans CJK TC','AR PL UMing TW',sans-serif;max-width:60em;margin:2em auto}",
        "table{border-collapse:collapse;margin:.3em 0}td,th{border:1px solid #999;padding:2px 6px;font-size:90%}",
        ".sim{color:#b00;font-size:160%;font-weight:bold;border:3px solid #b00;padding:.3em;text-align:center}",
        ".verdict{font-size:220%;font-weight:bold}.pass{color:#060}.fail{color:#b00}.inconclusive{color:#a60}",
        "@page{size:A4}@media print{body{margin:3em 1em 1em 1em}",  # the banner on every printed page
        ".sim{position:fixed;top:0;left:0;right:0;background:#fff;print-color-adjust:exact}}</style></head><body>",
    ]
    if simulated:
        parts.append("<div class='sim'>SIMULATED SESSION — NOT A TEST OF A REAL INSTRUMENT</div>")
    verdict = str(cert["verdict"])
    parts.append(f"<h1>{esc(cert['lab']['name'])}</h1><h2>{esc(_title(record))}</h2>")
    parts.append(f"<p class='verdict {esc(verdict)}'>{esc(verdict.upper())}</p>")
    for block in certificate_blocks(record):
        parts.append(f"<h3>{esc(block.title)}</h3>")
        if block.kind == "text":
            parts.append(f"<p>{esc(block.text)}</p>")
        elif block.kind == "pairs":
            parts.append("<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in block.rows))
            parts.append("</table>")
        else:
            head = "".join(f"<th>{esc(h)}</th>" for h in block.header)
            body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
    parts.append(_qr(record["verification_code"]).svg_inline(scale=4, title="verification code"))
    parts.append(f"<p>{esc(record['verification_code'])}</p></body></html>\n")
    return "".join(parts)


# ---------------------------------------------------------------- PDF


def find_cjk_font() -> tuple[Path, int]:
    """(font file, TTC face index) of a TrueType font with Chinese and Latin glyphs; ConfigError if none."""
    override = os.environ.get(FONT_ENV)
    candidates = ((override, None),) if override else _FONT_CANDIDATES
    from reportlab.pdfbase.ttfonts import TTFError, TTFontFile

    for path, face in candidates:
        if not Path(path).is_file():
            continue
        for index in range(8 if path.lower().endswith(".ttc") else 1):
            try:
                font = TTFontFile(path, subfontIndex=index)
            except (TTFError, OSError, IndexError):
                break
            if face is None or font.name == face:
                return Path(path), index
    looked = override or ", ".join(p for p, _ in _FONT_CANDIDATES)
    raise ConfigError(
        f"no TrueType font with Chinese glyphs found (looked for {looked}): apt-get install -y fonts-arphic-uming, "
        f"or set {FONT_ENV} to a .ttf/.ttc file"
    )


@cache
def _register_font() -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    path, index = find_cjk_font()
    pdfmetrics.registerFont(TTFont(_FONT_NAME, str(path), subfontIndex=index))
    return _FONT_NAME


def check_renderers() -> None:
    """ConfigError now (before any number is reserved) if the PDF/QR libraries or a CJK font are missing."""
    _reportlab()
    _qr("0")
    find_cjk_font()


def _reportlab():
    try:
        import reportlab  # noqa: F401
    except ImportError:
        raise ConfigError("certificates need the 'reportlab' package: pip install 'meterbench[cert]'") from None


def render_pdf(record: Mapping[str, Any]) -> bytes:
    """The PDF certificate (A4), deterministic for the same record (reportlab invariant mode)."""
    _reportlab()
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    font = _register_font()
    cert = record["certificate"]
    simulated = cert["session"]["simulated"]
    base = ParagraphStyle("base", fontName=font, fontSize=7.0, leading=8.2, wordWrap="CJK")
    small = ParagraphStyle("small", parent=base, fontSize=5.6, leading=6.6)
    heading = ParagraphStyle("heading", parent=base, fontSize=8.6, leading=10.5, spaceBefore=1.5)
    big = ParagraphStyle("big", parent=base, fontSize=13, leading=16)
    verdict_colour = {"pass": colors.HexColor("#006600"), "fail": colors.HexColor("#bb0000")}.get(
        str(cert["verdict"]), colors.HexColor("#aa6600")
    )
    verdict_style = ParagraphStyle("verdict", parent=base, fontSize=22, leading=25, textColor=verdict_colour)
    verdict_line = ParagraphStyle("verdict_line", parent=base, fontSize=11, leading=13, textColor=verdict_colour)

    def para(text: str, style: ParagraphStyle = base) -> Paragraph:
        return Paragraph(html.escape(str(text)), style)

    class QrCode(Flowable):
        def __init__(self, code: str, size: float) -> None:
            super().__init__()
            self.matrix = _qr(code).matrix
            self.width = self.height = size

        def draw(self) -> None:
            modules = len(self.matrix) + 8  # 4-module quiet zone each side
            step = self.width / modules
            self.canv.setFillColor(colors.black)
            for y, row in enumerate(self.matrix):
                for x, dark in enumerate(row):
                    if dark:
                        self.canv.rect((x + 4) * step, self.height - (y + 5) * step, step, step, stroke=0, fill=1)

    width = A4[0] - 30 * mm
    grid = TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 2),
            ("RIGHTPADDING", (0, 0), (-1, -1), 2),
            ("TOPPADDING", (0, 0), (-1, -1), 1),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
        ]
    )
    story: list[Any] = []
    head = Table(
        [
            [
                [
                    para(cert["lab"]["name"], big),
                    para(_title(record), heading),
                    para(str(cert["verdict"]).upper(), verdict_style),
                ],
                QrCode(record["verification_code"], 24 * mm),
            ]
        ],
        colWidths=[width - 26 * mm, 26 * mm],
    )
    story.append(head)

    def flowables(block: Block, box: float) -> list[Any]:
        """A block as a heading and a table (or paragraph) ``box`` points wide."""
        out: list[Any] = [para(block.title, heading)]
        if block.kind == "text":
            return [*out, para(block.text, verdict_line if block.title == "Overall verdict" else base)]
        style = small if block.title.startswith(("Input files", "Software")) else base
        if block.kind == "pairs":
            label = min(40 * mm, box * 0.36)
            rows = [[para(k, style), para(v, style)] for k, v in block.rows]
            widths: Sequence[float] = [label, box - label]
        else:
            rows = [[para(h, style) for h in block.header]] + [[para(c, style) for c in row] for row in block.rows]
            widths = _column_widths(block, box)
        if rows:
            table = Table(rows, colWidths=widths, repeatRows=0 if block.kind == "pairs" else 1)
            table.setStyle(grid)
            out.append(table)
        return out

    blocks = certificate_blocks(record)
    half = (width - 4 * mm) / 2

    def side_by_side(left: list, right: list) -> Table:
        """Two columns of flowables, half the text width each, 4 mm apart, tops aligned."""
        return Table(
            [[left, right]],
            colWidths=[half + 4 * mm, half],
            style=TableStyle(
                [
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("RIGHTPADDING", (0, 0), (0, 0), 4 * mm),
                    ("RIGHTPADDING", (1, 0), (1, 0), 0),
                ]
            ),
        )

    # Certificate and Test on the left, Instrument on the right: the page's top half, side by side
    story.append(side_by_side(flowables(blocks[0], half) + flowables(blocks[2], half), flowables(blocks[1], half)))
    for block in blocks[3:-2]:
        story.extend(flowables(block, width))
        story.append(Spacer(1, 0.5 * mm))
    # Warnings and Verification side by side at the foot
    story.append(side_by_side(flowables(blocks[-2], half), flowables(blocks[-1], half)))

    def decorate(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont(font, 6.5)
        canvas.drawString(15 * mm, 8 * mm, f"{_title(record)} · {record['verification_code']} · page {doc.page}")
        if simulated:
            canvas.setFillColor(colors.HexColor("#bb0000"))
            canvas.setFont(font, 14)
            canvas.drawCentredString(A4[0] / 2, A4[1] - 9 * mm, "SIMULATED SESSION — NOT A TEST OF A REAL INSTRUMENT")
        canvas.restoreState()

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=13 * mm,
        bottomMargin=13 * mm,
        title=_title(record),
        author=cert["lab"]["name"],
        subject=f"meterbench certificate {record['verification_code']}",
        creator=f"{cert['software'].get('version')}",
        invariant=1,
    )
    doc.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()


def _column_widths(block: Block, width: float) -> list[float]:
    """Column widths (pt) of a table block: fixed shapes for the known tables, else equal."""
    n = len(block.header)
    if block.header[:2] == ("point", "reason"):
        return [18 * 2.835, width - 18 * 2.835]
    if block.header == ("file", "SHA-256"):
        return [width * 0.34, width * 0.66]
    if block.header == ("id", "serial", "calibration certificate", "U", "due date"):
        return [width * share for share in (0.15, 0.15, 0.42, 0.15, 0.13)]
    if block.header[:1] == ("impact",):  # name, site, anvil, v, conditioning, peak, dwell..., HIC, U, verdict
        fixed = [0.11, 0.07, 0.07, 0.06, 0.13, 0.07]
        rest = (1 - sum(fixed) - 0.07 - 0.05 - 0.08) / max(1, n - 9)
        return [width * s for s in (*fixed, *([rest] * (n - 9)), 0.07, 0.05, 0.08)]
    if block.header == ("criterion", "limit", "provenance", "source"):
        return [width * s for s in (0.2, 0.3, 0.17, 0.33)]
    if block.header == ("day", "before", "after", "certifiable"):
        return [width * s for s in (0.1, 0.39, 0.39, 0.12)]
    if block.header and block.header[0] == "point" and n == 10:
        share = [0.07, 0.09, 0.09, 0.1, 0.12, 0.12, 0.1, 0.09, 0.08, 0.14]
        return [width * s for s in share]
    return [width / n] * n
