"""meterbench.certificates: certificates a lab can sign and anyone can verify.

The lab file (LAB.toml, schema-validated), the lab's Ed25519 keys, certificate records sealed with a
verification code and a signature, the PDF and HTML certificates drawn from them, the lab's register
(consecutive numbers under a lock, a hash-chained signed audit log) and verification. Pure parts
(_canonical, _code, _lab.parse_lab, _record, _render's blocks, _register.audit_problems) are apart
from the I/O (_keys, _certify, _verify, LabRegister). Needs the [cert] extra.
"""

from ._canonical import canonical_json, record_file_text, sha256_hex
from ._certify import IssuedCertificate, certify_run, check_lab_key, log_run_configuration, software_identity
from ._code import code_from_digest, format_code, parse_code
from ._keys import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    LabKey,
    PublicKey,
    generate_keys,
    load_private_key,
    load_public_key,
)
from ._lab import LAB_SCHEMA, Bench, Lab, ReferenceStandard, Technician, load_lab, normalize_fingerprint, parse_lab
from ._record import (
    RECORD_FORMAT,
    certificate_fields,
    check_record,
    decision_rule_statement,
    lab_traceability,
    mark_points_inconclusive,
    mark_untraceable_points,
    report_problems,
    report_test_date,
    seal_documents,
    seal_record,
    summary_line,
    traceability_problems,
)
from ._register import AUDIT_FILE, LabRegister, RegisterEntry, audit_problems, register_gaps
from ._render import (
    FONT_ENV,
    Block,
    certificate_blocks,
    check_renderers,
    find_cjk_font,
    input_rows,
    render_html,
    render_pdf,
)
from ._verify import Trust, Verdict, audit_verify, check_record_bytes, trusted_key, verify_code, verify_file

__all__ = [
    "AUDIT_FILE",
    "FONT_ENV",
    "LAB_SCHEMA",
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "RECORD_FORMAT",
    "Bench",
    "Block",
    "IssuedCertificate",
    "Lab",
    "LabKey",
    "LabRegister",
    "PublicKey",
    "ReferenceStandard",
    "RegisterEntry",
    "Technician",
    "Trust",
    "Verdict",
    "audit_problems",
    "audit_verify",
    "canonical_json",
    "certificate_blocks",
    "certificate_fields",
    "certify_run",
    "check_lab_key",
    "check_record",
    "check_record_bytes",
    "check_renderers",
    "code_from_digest",
    "decision_rule_statement",
    "find_cjk_font",
    "format_code",
    "generate_keys",
    "input_rows",
    "lab_traceability",
    "load_lab",
    "load_private_key",
    "load_public_key",
    "log_run_configuration",
    "mark_points_inconclusive",
    "mark_untraceable_points",
    "normalize_fingerprint",
    "parse_code",
    "parse_lab",
    "record_file_text",
    "register_gaps",
    "render_html",
    "render_pdf",
    "report_problems",
    "report_test_date",
    "seal_documents",
    "seal_record",
    "sha256_hex",
    "software_identity",
    "summary_line",
    "traceability_problems",
    "trusted_key",
    "verify_code",
    "verify_file",
]
