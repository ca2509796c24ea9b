"""Verification codes: bound to the hash, typeable, and the check character catches typos."""

from __future__ import annotations

import hashlib

import pytest

from meterbench.certificates import code_from_digest, parse_code

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _digest(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def test_code_is_ten_crockford_characters_and_a_check_character_from_the_first_50_bits():
    digest = "f" * 13 + "0" * 51  # first 50 bits: 13 hex f = 52 one-bits, so the 50 are all ones
    assert code_from_digest(digest) == "ZZZZZ-ZZZZZ-" + "0123456789ABCDEFGHJKMNPQRSTVWXYZ*~$=U"[(2**50 - 1) % 37]
    assert code_from_digest("0" * 64) == "00000-00000-0"
    code = code_from_digest(_digest(1))
    assert len(code.replace("-", "")) == 11 and all(c in ALPHABET for c in code.replace("-", "")[:10])


def test_parse_accepts_case_spaces_hyphens_and_crockford_aliases():
    code = code_from_digest("0" * 64)  # 00000-00000-0
    assert parse_code(" oooOO 0000i-0 ".replace("i", "0")) == code
    one = code_from_digest(format(1 << 14, "x").rjust(16, "0") + "0" * 48)  # value 1 in the last character
    assert one.startswith("00000-00001-")
    assert parse_code(one.lower().replace("1", "l")) == one
    assert parse_code(one.replace("1", "I").replace("-", " ")) == one


@pytest.mark.parametrize("i", range(20))
def test_every_single_mistyped_character_and_adjacent_swap_is_caught(i):
    code = code_from_digest(_digest(i)).replace("-", "")
    symbols = ALPHABET + "*~$=U"
    for position in range(11):
        for char in symbols if position == 10 else ALPHABET:
            if char == code[position]:
                continue
            typo = code[:position] + char + code[position + 1 :]
            with pytest.raises(ValueError, match="check character"):
                parse_code(typo)
    for position in range(10):
        if code[position] != code[position + 1]:
            swapped = code[:position] + code[position + 1] + code[position] + code[position + 2 :]
            with pytest.raises(ValueError, match="check character|not a Crockford"):  # a check symbol moved in
                parse_code(swapped)


@pytest.mark.parametrize(
    "text, message",
    [
        ("ABCDE-FGHJK", "expected 10 characters and a check character, got 10"),
        ("ABCDE-FGHJU-0", "character 10 'U' is not a Crockford"),
        ("ABCDE-FGHJK-#", "check character '#' is not one of"),
    ],
)
def test_malformed_codes_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_code(text)
