"""Signature checks against the vendors' published vectors, and fuzzed: only SignatureError ever escapes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from services.lead_router.source.signatures import (
    SignatureError,
    hash_token,
    hubspot_uri,
    sign_hubspot_v3,
    sign_mautic,
    sign_standard_webhooks,
    standard_webhooks_key,
    verify_header_token,
    verify_hubspot_v3,
    verify_mautic,
    verify_standard_webhooks,
)

# standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py (test_sign_function)
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TS = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# HubSpot/hubspot-api-python, tests/spec/utils/test_signature.py (test_get_signature__v3, two versions)
HS_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
HS_BODY = b"{'example_field':'example_value'}"
HS_URL = "https://www.example.com/webhook_uri"
HS_VECTORS = [("1693657560000", "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="),
              ("15000000", "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=")]


def sw_headers(signature: str = SW_SIGNATURE, ts: int | str = SW_TS, msg_id: str = SW_ID) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


# Standard Webhooks -------------------------------------------------------------------------------------------

def test_standard_webhooks_published_vector() -> None:
    assert sign_standard_webhooks(SW_SECRET, SW_ID, SW_TS, SW_BODY) == SW_SIGNATURE
    verify_standard_webhooks(SW_SECRET, SW_BODY, sw_headers(), now=SW_TS)
    verify_standard_webhooks(SW_SECRET.removeprefix("whsec_"), SW_BODY, sw_headers(), now=SW_TS)  # no prefix


def test_standard_webhooks_matches_the_reference_library() -> None:
    body = '{"lead": "ünïcode"}'
    reference = Webhook(SW_SECRET).sign(SW_ID, datetime.fromtimestamp(1_800_000_000, UTC), body)
    assert sign_standard_webhooks(SW_SECRET, SW_ID, 1_800_000_000, body.encode()) == reference
    verify_standard_webhooks(SW_SECRET, body.encode(), sw_headers(reference, 1_800_000_000), now=1_800_000_100)


def test_standard_webhooks_several_signatures_other_versions_ignored() -> None:
    header = " ".join(["v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", "v2,whatever", "v1a,x", SW_SIGNATURE])
    verify_standard_webhooks(SW_SECRET, SW_BODY, sw_headers(header), now=SW_TS)


def test_standard_webhooks_signed_non_utf8_body_verifies() -> None:
    body = b"\xff\xfe not utf-8"
    signature = sign_standard_webhooks(SW_SECRET, SW_ID, SW_TS, body)
    verify_standard_webhooks(SW_SECRET, body, sw_headers(signature), now=SW_TS)


def test_standard_webhooks_headers_case_insensitive() -> None:
    headers = {"Webhook-Id": SW_ID, "Webhook-Timestamp": str(SW_TS), "Webhook-Signature": SW_SIGNATURE}
    verify_standard_webhooks(SW_SECRET, SW_BODY, headers, now=SW_TS)


@pytest.mark.parametrize("now", [SW_TS + 301, SW_TS - 301])
def test_standard_webhooks_timestamp_outside_tolerance(now: int) -> None:
    with pytest.raises(SignatureError, match="too"):
        verify_standard_webhooks(SW_SECRET, SW_BODY, sw_headers(), now=now)
    verify_standard_webhooks(SW_SECRET, SW_BODY, sw_headers(), now=now, tolerance_s=302)


@pytest.mark.parametrize("headers", [
    {},
    sw_headers(signature=""),
    {k: v for k, v in sw_headers().items() if k != "webhook-id"},
    sw_headers(signature="v1"),                     # no comma
    sw_headers(signature="v1,"),                    # empty signature
    sw_headers(signature="v1,!!!notbase64"),
    sw_headers(signature="v2," + SW_SIGNATURE[3:]),  # unknown version only
    sw_headers(signature=SW_SIGNATURE[:-4]),        # truncated
    sw_headers(signature=SW_SIGNATURE + " "),       # still fine? no: see below
    sw_headers(ts="1e999"), sw_headers(ts="nan"), sw_headers(ts="-1"), sw_headers(ts="9" * 400),
    sw_headers(ts="1614265330.0"), sw_headers(ts="١٦١٤٢٦٥٣٣٠"),  # Arabic-Indic digits are not digits here
    sw_headers(msg_id="msg_other"),
])
def test_standard_webhooks_rejects(headers: dict[str, str]) -> None:
    if headers.get("webhook-signature") == SW_SIGNATURE + " ":
        verify_standard_webhooks(SW_SECRET, SW_BODY, headers, now=SW_TS)  # surrounding space is stripped
        return
    with pytest.raises(SignatureError):
        verify_standard_webhooks(SW_SECRET, SW_BODY, headers, now=SW_TS)


def test_standard_webhooks_tampered_body() -> None:
    with pytest.raises(SignatureError, match="matches"):
        verify_standard_webhooks(SW_SECRET, SW_BODY + b" ", sw_headers(), now=SW_TS)


def test_standard_webhooks_bad_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        standard_webhooks_key("whsec_not base64!")
    with pytest.raises(ValueError):
        standard_webhooks_key("whsec_")


# HubSpot v3 ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("timestamp", "signature"), HS_VECTORS)
def test_hubspot_v3_published_vectors(timestamp: str, signature: str) -> None:
    assert sign_hubspot_v3(HS_SECRET, "POST", HS_URL, HS_BODY, timestamp) == signature
    headers = {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp}
    verify_hubspot_v3(HS_SECRET, HS_BODY, headers, method="POST", url=HS_URL, now=int(timestamp) / 1000 + 10)


def test_hubspot_v3_is_the_documented_hmac() -> None:
    message = b"POST" + HS_URL.encode() + HS_BODY + b"1693657560000"
    expected = base64.b64encode(hmac.new(HS_SECRET.encode(), message, hashlib.sha256).digest()).decode()
    assert sign_hubspot_v3(HS_SECRET, "POST", HS_URL, HS_BODY, 1693657560000) == expected


def test_hubspot_uri_decodes_only_the_documented_escapes() -> None:
    url = "https://x.example/hook%3Fa%3Db?email=a%40b.com&q=%28x%29%2A%2c%3b%21%24%27%2F%3A&s=%20%26%3D%25"
    assert hubspot_uri(url) == "https://x.example/hook?a%3Db?email=a@b.com&q=(x)*,;!$'/:&s=%20%26%3D%25"
    signature = sign_hubspot_v3(HS_SECRET, "POST", hubspot_uri(url), HS_BODY, 1_800_000_000_000)
    verify_hubspot_v3(HS_SECRET, HS_BODY, {"x-hubspot-signature-v3": signature,
                                           "x-hubspot-request-timestamp": "1800000000000"},
                      method="POST", url=url, now=1_800_000_000)


@pytest.mark.parametrize(("ts_ms", "now"), [(1_800_000_000_000, 1_800_000_301), (1_800_000_302_000, 1_800_000_001)])
def test_hubspot_v3_stale_or_future_timestamp(ts_ms: int, now: int) -> None:
    signature = sign_hubspot_v3(HS_SECRET, "POST", HS_URL, HS_BODY, ts_ms)
    headers = {"x-hubspot-signature-v3": signature, "x-hubspot-request-timestamp": str(ts_ms)}
    with pytest.raises(SignatureError, match="too"):
        verify_hubspot_v3(HS_SECRET, HS_BODY, headers, method="POST", url=HS_URL, now=now)


@pytest.mark.parametrize("change", ["body", "url", "method", "secret"])
def test_hubspot_v3_rejects_any_change(change: str) -> None:
    signature = sign_hubspot_v3(HS_SECRET, "POST", HS_URL, HS_BODY, 1_800_000_000_000)
    headers = {"x-hubspot-signature-v3": signature, "x-hubspot-request-timestamp": "1800000000000"}
    kwargs = {"secret": HS_SECRET, "body": HS_BODY, "method": "POST", "url": HS_URL}
    kwargs[change] = {"body": HS_BODY + b"x", "url": HS_URL + "/", "method": "PUT", "secret": "other"}[change]
    with pytest.raises(SignatureError, match="does not match"):
        verify_hubspot_v3(kwargs.pop("secret"), kwargs.pop("body"), headers, now=1_800_000_000,  # type: ignore[arg-type]
                          **kwargs)  # type: ignore[arg-type]


# Mautic and header tokens -------------------------------------------------------------------------------------

def test_mautic_signature_is_base64_hmac_of_raw_body() -> None:
    body = b'{"mautic.lead_post_save_new":[],"timestamp":"2017-06-19T09:31:18+00:00"}'
    expected = base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha256).digest()).decode()
    assert sign_mautic("s3cret", body) == expected
    verify_mautic("s3cret", body, {"Webhook-Signature": expected})
    for headers in ({}, {"webhook-signature": ""}, {"webhook-signature": expected[:-2]},
                    {"webhook-signature": sign_mautic("other", body)}):
        with pytest.raises(SignatureError):
            verify_mautic("s3cret", body, headers)


def test_header_token() -> None:
    stored = hash_token("tok-123456")
    assert stored == hashlib.sha256(b"tok-123456").hexdigest()
    verify_header_token(stored, {"X-Leads-Token": "tok-123456"}, header="X-Leads-Token")
    verify_header_token(stored, {"authorization": "Bearer tok-123456"}, header="Authorization")
    for headers in ({}, {"x-leads-token": ""}, {"x-leads-token": "tok-12345"}, {"x-leads-token": "Bearer x"}):
        with pytest.raises(SignatureError):
            verify_header_token(stored, headers, header="X-Leads-Token")


# Fuzz: whatever arrives, only SignatureError ------------------------------------------------------------------

_header_values = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", " ", "v1", "v1,", "v1,=", "v1,AAAA", "1e999", "nan", "-1", "9" * 500, "0", "v1,v1,v1",
                     SW_SIGNATURE, str(SW_TS), "\x00", "ｖ１,ＡＡ"]),
    st.builds(lambda parts: " ".join(parts), st.lists(st.text(max_size=12).map(lambda t: "v1," + t), max_size=4)),
)
_names = ["webhook-id", "webhook-timestamp", "webhook-signature", "x-hubspot-signature-v3",
          "x-hubspot-request-timestamp", "x-token", "Webhook-Signature"]
_headers = st.dictionaries(st.sampled_from(_names) | st.text(max_size=10), _header_values, max_size=6)


@settings(max_examples=300, deadline=None)
@given(headers=_headers, body=st.binary(max_size=64), now=st.floats(allow_nan=False, allow_infinity=False,
                                                                    min_value=-1e12, max_value=1e12))
def test_fuzz_only_signature_error_escapes(headers: dict[str, str], body: bytes, now: float) -> None:
    checks = [
        lambda: verify_standard_webhooks(SW_SECRET, body, headers, now=now),
        lambda: verify_hubspot_v3(HS_SECRET, body, headers, method="POST", url=HS_URL, now=now),
        lambda: verify_mautic("secret", body, headers),
        lambda: verify_header_token(hash_token("t"), headers, header="X-Token"),
    ]
    for check in checks:
        try:
            check()
        except SignatureError:
            pass


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=64), msg_id=st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s),
       ts=st.integers(min_value=0, max_value=10**10))
def test_fuzz_what_is_signed_verifies(body: bytes, msg_id: str, ts: int) -> None:
    signature = sign_standard_webhooks(SW_SECRET, msg_id, ts, body)
    verify_standard_webhooks(SW_SECRET, body, sw_headers(signature, ts, msg_id), now=ts)
    hs = sign_hubspot_v3(HS_SECRET, "POST", HS_URL, body, ts * 1000)
    verify_hubspot_v3(HS_SECRET, body, {"x-hubspot-signature-v3": hs, "x-hubspot-request-timestamp": str(ts * 1000)},
                      method="POST", url=HS_URL, now=ts)
    verify_mautic("k", body, {"webhook-signature": sign_mautic("k", body)})
