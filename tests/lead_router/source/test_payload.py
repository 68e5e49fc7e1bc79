"""Body decoding: every malformed input is a BadPayload (400), nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.lead_router.source.payload import (
    MAX_DEPTH,
    MAX_FORM_FIELDS,
    BadPayload,
    decode_text,
    parse_form,
    parse_json,
)


def test_bad_payload_is_a_400_problem() -> None:
    exc = BadPayload("x")
    assert (exc.status, exc.title, exc.type_slug) == (400, "Bad request", "bad-payload")


@pytest.mark.parametrize(("body", "detail"), [
    (b"", "The body is empty."),
    (b" \r\n\t ", "The body is empty."),
    (b"\xef\xbb\xbf{}", "byte-order mark"),
    (b'{"a": "\xff"}', "The body is not valid UTF-8."),
    (b"\xed\xa0\x80", "The body is not valid UTF-8."),  # an encoded surrogate
])
def test_decode_text_refuses(body: bytes, detail: str) -> None:
    with pytest.raises(BadPayload, match=detail.replace(".", r"\.")):
        decode_text(body)


def test_decode_text() -> None:
    assert decode_text('{"name": "Zoë"}'.encode()) == '{"name": "Zoë"}'


@pytest.mark.parametrize("text", [
    "{", "{} {}", '{"a": 1} x', "[1,]", "NaN", "[Infinity]", "[-Infinity]", "{'a': 1}",
    "1e400", "-1e400", "1" + "0" * 5000, "[" + "9" * 70 + "]", '{"a": 0.' + "0" * 400 + "1}",
    '"\\ud800"',
])
def test_parse_json_refuses(text: str) -> None:
    with pytest.raises(BadPayload):
        parse_json(text)


def test_parse_json_keeps_long_digit_runs_inside_strings() -> None:
    assert parse_json('{"id": "' + "7" * 200 + '", "n": 12}') == {"id": "7" * 200, "n": 12}
    assert parse_json('["\\"' + "1" * 80 + '", 1]') == ['"' + "1" * 80, 1]


def test_parse_json_depth_limit() -> None:
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    nested_objects = '{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH
    assert parse_json(nested_objects)["a"]["a"]
    for text in ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1),
                 "[" * 100_000 + "]" * 100_000):
        with pytest.raises(BadPayload, match="deeper|depth"):
            parse_json(text)


def test_parse_json_wide_but_shallow_is_fine() -> None:
    assert len(parse_json("[" + ",".join(["[1]"] * 5000) + "]")) == 5000


def test_parse_form_nests_dotted_keys() -> None:
    assert parse_form("email=a%40b.com&company.name=Acme+Inc&company.country=US&first_name=") == {
        "email": "a@b.com", "first_name": "", "company": {"name": "Acme Inc", "country": "US"}}


def test_parse_form_last_value_wins() -> None:
    assert parse_form("a=1&a=2&b.c=1&b.c=3") == {"a": "2", "b": {"c": "3"}}


@pytest.mark.parametrize("text", [
    "a=1&a.b=2", "a.b=2&a=1", "a.b.c=1&a.b=2",  # leaf and parent at once
    ".a=1", "a..b=1", "a.=1",                   # empty segments
    ".".join(["k"] * (MAX_DEPTH + 1)) + "=1",     # too deep
    "a", "a=1&&b=2", "=",                        # not name=value
    "a=%ff",                                     # not UTF-8 once decoded
    "&".join(f"f{i}=1" for i in range(MAX_FORM_FIELDS + 1)),
])
def test_parse_form_refuses(text: str) -> None:
    with pytest.raises(BadPayload):
        parse_form(text)


def test_parse_form_limits_are_inclusive() -> None:
    assert parse_form(".".join(["k"] * MAX_DEPTH) + "=1")
    assert len(parse_form("&".join(f"f{i}=1" for i in range(MAX_FORM_FIELDS)))) == MAX_FORM_FIELDS


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                      st.from_regex(r"[\[\]{}\"0-9eE.,:+\-a-z ]{0,80}", fullmatch=True).map(str.encode)))
def test_fuzz_only_bad_payload_escapes(body: bytes) -> None:
    try:
        text = decode_text(body)
    except BadPayload:
        return
    for parse in (parse_json, parse_form):
        try:
            parse(text)
        except BadPayload:
            pass


def test_parse_json_counts_digits_across_point_and_exponent() -> None:
    with pytest.raises(BadPayload, match="digits"):
        parse_json("[1." + "1" * 40 + "e-" + "0" * 30 + "1]")
    assert parse_json('["' + "-" * 200 + '", 1.5e-3]') == ["-" * 200, 1.5e-3]
