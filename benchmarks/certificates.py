"""Certificates: verification throughput (records/s, one core), time to write a certificate PDF, tamper detection.

    python benchmarks/certificates.py [--records 2000] [--pdfs 20]

Runs the README's sample session (meterbench run), makes a lab key and certifies the run into a
temporary folder, then measures, all in this one process (one thread):

- verifying a record (JSON parse, code, two Ed25519 signatures, canonical-bytes check), against
  the baseline of only parsing the same JSON (ratio = how much dearer verification is);
- drawing a certificate PDF (reportlab, embedded CJK subset, QR), against drawing its HTML;
- tamper detection: every byte of a record flipped, every 97th byte of its PDF flipped, every
  audit-log line edited: the share caught (target 100 %).
Targets (issue 12): >= 1,000 records/s on one core; a PDF in <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meterbench.certificates import (  # noqa: E402
    audit_problems,
    certify_run,
    check_record_bytes,
    generate_keys,
    load_public_key,
    render_html,
    render_pdf,
    verify_file,
)
from meterbench.verify import run_session  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _rate(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000, help="record verifications timed")
    parser.add_argument("--pdfs", type=int, default=20, help="PDFs drawn")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        run = tmp_path / "run"
        run_session(REPO / "samples" / "water-meter-short", run)
        fingerprint = generate_keys(tmp_path / "keys").fingerprint
        lab = tmp_path / "LAB.toml"
        lab.write_text(
            (REPO / "samples" / "LAB.toml").read_text(encoding="utf-8").replace("0" * 32, fingerprint),
            encoding="utf-8",
        )
        start = time.perf_counter()
        issued = certify_run(run, tmp_path / "keys" / "lab.key", lab, technician_id="tech-01")
        certify_s = time.perf_counter() - start
        key = load_public_key(tmp_path / "keys" / "lab.pub")
        raw = (run / "certificate-1.json").read_bytes()
        record = json.loads(raw)

        parse_rate = _rate(lambda: json.loads(raw), args.records)
        verify_rate = _rate(lambda: check_record_bytes(raw, key), args.records)
        print(f"record: {len(raw)} bytes")
        print(
            f"verify record: {verify_rate:,.0f} records/s (target >= 1,000); parse only: {parse_rate:,.0f}/s; "
            f"ratio verify/parse time = {parse_rate / verify_rate:.1f}"
        )

        html_times, pdf_times = [], []
        for _ in range(args.pdfs):
            t = time.perf_counter()
            render_html(record)
            html_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            pdf = render_pdf(record)
            pdf_times.append(time.perf_counter() - t)
        pdf_s, html_s = statistics.median(pdf_times), statistics.median(html_times)
        print(
            f"write PDF: median {pdf_s * 1000:.0f} ms, max {max(pdf_times) * 1000:.0f} ms (target <= 1 s), "
            f"{len(pdf) / 1024:.0f} KiB; HTML median {html_s * 1000:.1f} ms; ratio PDF/HTML = {pdf_s / html_s:.0f}"
        )
        print(f"certify (2 instruments, first call: font loading, git, register): {certify_s:.2f} s")

        caught = sum(
            bool(check_record_bytes(raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :], key)[1]) for i in range(len(raw))
        )
        print(f"tamper: record bytes flipped caught {caught}/{len(raw)} = {100 * caught / len(raw):.1f} %")
        pdf_path = run / "certificate-1.pdf"
        original = pdf_path.read_bytes()
        positions = range(0, len(original), 97)
        caught_pdf = 0
        for i in positions:
            pdf_path.write_bytes(original[:i] + bytes([original[i] ^ 0xFF]) + original[i + 1 :])
            caught_pdf += not verify_file(pdf_path, tmp_path / "keys" / "lab.pub")[0].valid
        pdf_path.write_bytes(original)
        print(
            f"tamper: PDF every 97th byte flipped caught {caught_pdf}/{len(positions)} = "
            f"{100 * caught_pdf / len(positions):.1f} %"
        )
        log = (tmp_path / "LAB-records" / "audit.jsonl").read_bytes()
        lines = log.splitlines(keepends=True)
        caught_log = 0
        for i, line in enumerate(lines):
            edited = line.replace(b'"who":"tech-01', b'"who":"tech-02')
            caught_log += bool(audit_problems(b"".join(lines[:i] + [edited] + lines[i + 1 :]), key.verify))
        print(f"tamper: audit lines edited caught {caught_log}/{len(lines)} = {100 * caught_log / len(lines):.1f} %")
        print(f"codes: {', '.join(c.verification_code for c in issued)}")


if __name__ == "__main__":
    main()
