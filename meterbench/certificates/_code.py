"""Verification codes: 10 Crockford base32 characters bound to a record's hash, and a check character.

Pure. The 10 characters are the first 50 bits of the SHA-256 of the certificate record
(without its code and signature), so the code names exactly one record; the check character
is Crockford's (the 50-bit value mod 37, symbols 0-9 A-Z without I L O U, then * ~ $ = U),
which catches every single mistyped character and every swap of two adjacent characters.
The code is a look-up key, not a proof: the signed record is the authority.
"""

from __future__ import annotations

__all__ = ["CODE_DATA_CHARS", "code_from_digest", "format_code", "parse_code"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CHECK_SYMBOLS = _ALPHABET + "*~$=U"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)} | {"O": 0, "I": 1, "L": 1}
CODE_DATA_CHARS = 10
"""Characters of the code before its check character (5 bits each: 50 bits of the record hash)."""


def _check_symbol(value: int) -> str:
    return _CHECK_SYMBOLS[value % 37]


def format_code(normalized: str) -> str:
    """``ABCDEFGHJKX`` -> ``ABCDE-FGHJK-X`` (the printed form)."""
    return f"{normalized[:5]}-{normalized[5:10]}-{normalized[10:]}"


def code_from_digest(sha256_hex: str) -> str:
    """The printed verification code (``XXXXX-XXXXX-C``) of a record whose SHA-256 is ``sha256_hex``."""
    value = int(sha256_hex[:16], 16) >> (64 - 5 * CODE_DATA_CHARS)
    chars = "".join(_ALPHABET[(value >> (5 * (CODE_DATA_CHARS - 1 - i))) & 31] for i in range(CODE_DATA_CHARS))
    return format_code(chars + _check_symbol(value))


def parse_code(text: str) -> str:
    """A typed code in its printed form; ValueError saying what is wrong (length, character, check).

    Case, hyphens and spaces are ignored; O reads as 0 and I, L as 1 (Crockford)."""
    compact = "".join(text.split()).replace("-", "").upper()
    if len(compact) != CODE_DATA_CHARS + 1:
        raise ValueError(f"expected {CODE_DATA_CHARS} characters and a check character, got {len(compact)}")
    value = 0
    for position, char in enumerate(compact[:CODE_DATA_CHARS], start=1):
        if char not in _DECODE:
            raise ValueError(f"character {position} {char!r} is not a Crockford base32 character")
        value = value * 32 + _DECODE[char]
    check = {"O": "0", "I": "1", "L": "1"}.get(compact[-1], compact[-1])
    if check not in _CHECK_SYMBOLS:
        raise ValueError(f"check character {check!r} is not one of 0-9, A-Z (no I, L, O), *, ~, $, =, U")
    if check != _check_symbol(value):
        raise ValueError("check character does not match (a mistyped character?)")
    chars = "".join(_ALPHABET[(value >> (5 * (CODE_DATA_CHARS - 1 - i))) & 31] for i in range(CODE_DATA_CHARS))
    return format_code(chars + check)
