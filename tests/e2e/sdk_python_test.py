"""Courier's official Python SDK (PyPI `trycourier`) against profiled.

Run by sdk_python_test.sh inside its venv, with the api and the worker already up:
  E2E_BASE_URL  the api, e.g. http://127.0.0.1:8123
  E2E_KEY       a key the api accepts
  E2E_RUN       a unique run id, put in every recipient id
  E2E_IDS_FILE  where to write the recipient ids used (one JSON string a line), so the
                shell can check PostgreSQL holds exactly those ids

The SDK is used as a Courier customer would: `Courier(api_key=..., base_url=...)` and
its `profiles.replace` / `profiles.retrieve` calls, nothing patched. A retrieve right
after a replace must return it, without polling (the api's default PROFILED_PUT_ACK=applied).
Every case runs even when an earlier one failed; the last line is "N passed, N failed".
"""

import asyncio
import json
import math
import os
import sys
import time
import traceback

import courier
from courier import APIStatusError, AsyncCourier, AuthenticationError, BadRequestError, Courier, NotFoundError

BASE_URL = os.environ["E2E_BASE_URL"]
KEY = os.environ["E2E_KEY"]
RUN = os.environ["E2E_RUN"]
IDS_FILE = os.environ["E2E_IDS_FILE"]

# Applies must not be retried behind the test's back: a retry would hide a 5xx.
client = Courier(api_key=KEY, base_url=BASE_URL, max_retries=0, timeout=20.0)
ids_used = []


def rid(name):
    value = f"e2e-py-{RUN}-{name}"
    ids_used.append(value)
    return value


def strict_equal(a, b, path="profile"):
    """Equality of JSON data that tells 1 from 1.0 and from True, with two allowances
    that come from storing profiles as PostgreSQL jsonb (numeric), not from the SDK:
    - jsonb has no negative zero: -0.0 reads back as 0.0;
    - jsonb writes a double such as 1e21 as plain digits (1000000000000000000000);
      profiled reads an integral number beyond uint64 as a double (proto §3.1), but
      Python's json module reads it as an int. Accepted when it is the same double.
    """
    if isinstance(a, int) and isinstance(b, float) and not isinstance(a, bool):
        if abs(a) > 2**64 - 1 and float(a) == b:
            return
    if type(a) is not type(b):
        raise AssertionError(f"{path}: {a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})")
    if isinstance(a, dict):
        if set(a) != set(b):
            raise AssertionError(f"{path}: keys {sorted(a)} != {sorted(b)}")
        for k in a:
            strict_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        if len(a) != len(b):
            raise AssertionError(f"{path}: {len(a)} elements != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            strict_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        if a != b or (a != 0.0 and math.copysign(1.0, a) != math.copysign(1.0, b)):
            raise AssertionError(f"{path}: {a!r} != {b!r}")
    elif a != b:
        raise AssertionError(f"{path}: {a!r} != {b!r}")


def retrieve_now(recipient_id, expected):
    """One retrieve, right after the replace: read-your-writes (the api answers a replace once
    the worker applied it, README "Read your writes"), so no polling. Returns the profile."""
    try:
        got = client.profiles.retrieve(recipient_id)
    except NotFoundError:
        raise AssertionError(f"retrieve({recipient_id!r}) right after replace: 404 not found")
    try:
        strict_equal(got.profile, expected)
    except AssertionError as e:
        raise AssertionError(f"retrieve({recipient_id!r}) right after replace: a different profile ({e})")
    return got


RICH_PROFILE = {
    "email": "ada@example.com",
    "email_verified": True,
    "phone_number": "+15555550123",
    "name": "Zoë Ünïcödé 日本語 🙂 \"quoted\" \\ back\tslash\n",
    "locale": "en-GB",
    "address": {
        "formatted": "12 St James's Square, London",
        "locality": "London",
        "postal_code": "SW1Y 4JH",
        "country": "GB",
    },
    "custom": {
        "ints": [0, 1, -1, 127, 128, -33, 65536, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1],
        "floats": [0.1, 0.875, -2.5, 1.0, 100.0, -0.0, 1e-7, 1e21, 5e-324, 1.7976931348623157e308, 123456.789],
        "nested": {"a": {"b": {"c": {"d": [{"e": None, "f": False}, [], {}]}}}},
        "emoji_key_🙂": "value",
        "empty_string": "",
    },
}


def case_replace_and_retrieve():
    r = rid("rich")
    result = client.profiles.replace(r, profile=RICH_PROFILE)
    assert result.status == "SUCCESS", f"replace returned status {result.status!r}"
    got = retrieve_now(r, RICH_PROFILE)
    assert got.preferences is None, f"preferences: {got.preferences!r}, expected None"


def case_replace_exposes_position_headers():
    # with_raw_response is the SDK's way to see headers: the api's command id and position.
    r = rid("raw")
    raw = client.profiles.with_raw_response.replace(r, profile={"email": "raw@example.com"})
    assert raw.http_request.method == "PUT", raw.http_request.method
    assert raw.status_code == 200, raw.status_code
    parsed = raw.parse()
    assert parsed.status == "SUCCESS", parsed
    for name in ("X-Command-Id", "X-Kafka-Partition", "X-Kafka-Offset"):
        assert raw.headers.get(name), f"response header {name} missing: {dict(raw.headers)}"
    retrieve_now(r, {"email": "raw@example.com"})


def case_replace_with_empty_clears():
    r = rid("clear")
    client.profiles.replace(r, profile={"email": "clear@example.com", "custom": {"x": 1}})
    retrieve_now(r, {"email": "clear@example.com", "custom": {"x": 1}})
    result = client.profiles.replace(r, profile={})
    assert result.status == "SUCCESS", result
    retrieve_now(r, {})


def case_replace_replaces_whole_profile():
    r = rid("whole")
    client.profiles.replace(r, profile={"email": "a@example.com", "name": "A", "custom": {"keep": "no"}})
    retrieve_now(r, {"email": "a@example.com", "name": "A", "custom": {"keep": "no"}})
    client.profiles.replace(r, profile={"phone_number": "+15555550100"})
    retrieve_now(r, {"phone_number": "+15555550100"})


def case_unknown_id_is_not_found():
    try:
        client.profiles.retrieve(f"e2e-py-{RUN}-never-written")
    except NotFoundError as e:
        assert e.status_code == 404, e.status_code
        assert isinstance(e.body, dict) and e.body.get("type") == "invalid_request_error", e.body
        return
    raise AssertionError("retrieve of an unknown id did not raise NotFoundError")


def case_wrong_key_is_authentication_error():
    bad = Courier(api_key="not-" + KEY, base_url=BASE_URL, max_retries=0, timeout=20.0)
    for call in (
        lambda: bad.profiles.replace(f"e2e-py-{RUN}-bad-key", profile={"email": "x@example.com"}),
        lambda: bad.profiles.retrieve(f"e2e-py-{RUN}-bad-key"),
    ):
        try:
            call()
        except AuthenticationError as e:
            assert e.status_code == 401, e.status_code
            assert isinstance(e.body, dict) and e.body.get("type") == "authentication_error", e.body
            continue
        raise AssertionError("a wrong API key did not raise AuthenticationError")


def case_invalid_profile_is_bad_request():
    cases = [
        ({"email": 42}, "email"),
        ({"email_verified": "yes"}, "email_verified"),
        ({"address": {"locality": 7}}, "address"),
    ]
    for profile, field in cases:
        try:
            client.profiles.replace(f"e2e-py-{RUN}-invalid", profile=profile)
        except BadRequestError as e:
            assert e.status_code == 400, e.status_code
            assert isinstance(e.body, dict), e.body
            assert e.body.get("type") == "invalid_request_error", e.body
            assert field in e.body.get("message", ""), f"the message does not name {field!r}: {e.body}"
            assert field in str(e), f"the SDK's error text does not name {field!r}: {e}"
            continue
        raise AssertionError(f"replace with {profile!r} did not raise BadRequestError")


def case_awkward_recipient_ids_round_trip():
    # The SDK percent-encodes the id as one path segment (keeping RFC 3986 sub-delims
    # such as + , ; = @ : as they are); the api must decode it back to exactly these bytes.
    names = [
        "slash/inside/id",
        "space inside id",
        "unicode Zoë ünïcödé 日本 🙂",
        "plus+sign@example.com",
        "percent%41literal?query#frag",
        "sub-delims!$&'()*,;=:@",
    ]
    for name in names:
        r = rid(name)
        profile = {"custom": {"id": r}}
        result = client.profiles.replace(r, profile=profile)
        assert result.status == "SUCCESS", result
        retrieve_now(r, profile)


def case_async_client():
    async def go():
        async with AsyncCourier(api_key=KEY, base_url=BASE_URL, max_retries=0, timeout=20.0) as ac:
            r = rid("async")
            result = await ac.profiles.replace(r, profile={"email": "async@example.com"})
            assert result.status == "SUCCESS", result
            got = await ac.profiles.retrieve(r)
            strict_equal(got.profile, {"email": "async@example.com"})

    asyncio.run(go())


def case_default_client_settings():
    # Exactly what a customer writes: only the key and the base URL, SDK defaults otherwise.
    plain = Courier(api_key=KEY, base_url=BASE_URL)
    r = rid("defaults")
    assert plain.profiles.replace(r, profile={"email": "d@example.com"}).status == "SUCCESS"
    strict_equal(plain.profiles.retrieve(r).profile, {"email": "d@example.com"})


def case_body_over_limit_is_413():
    try:
        client.profiles.replace(f"e2e-py-{RUN}-too-big", profile={"custom": {"s": "x" * 300_000}})
    except APIStatusError as e:
        assert e.status_code == 413, e.status_code
        assert isinstance(e.body, dict) and e.body.get("type") == "invalid_request_error", e.body
        return
    raise AssertionError("a 300 KB profile did not raise an APIStatusError (413)")


def case_unsupported_calls_fail_clearly():
    # profiled implements PUT and GET only (DESIGN §3): the SDK's POST (merge), PATCH and
    # DELETE calls must fail with a clear 405, not be taken for something else.
    r = f"e2e-py-{RUN}-unsupported"
    calls = {
        "create (POST)": lambda: client.profiles.create(r, profile={"email": "x@example.com"}),
        "update (PATCH)": lambda: client.profiles.update(r, patch=[{"op": "add", "path": "/a", "value": "1"}]),
        "delete (DELETE)": lambda: client.profiles.delete(r),
    }
    for name, call in calls.items():
        try:
            call()
        except APIStatusError as e:
            assert e.status_code == 405, f"{name}: status {e.status_code}"
            assert e.response.headers.get("Allow") == "GET, HEAD, PUT", f"{name}: Allow {e.response.headers.get('Allow')}"
            assert isinstance(e.body, dict) and "not allowed" in e.body.get("message", ""), f"{name}: {e.body}"
            continue
        raise AssertionError(f"{name} did not fail")
    try:
        client.profiles.retrieve(r)
    except NotFoundError:
        return
    raise AssertionError("an unsupported call wrote a profile")


CASES = [
    case_replace_and_retrieve,
    case_replace_exposes_position_headers,
    case_replace_with_empty_clears,
    case_replace_replaces_whole_profile,
    case_unknown_id_is_not_found,
    case_wrong_key_is_authentication_error,
    case_invalid_profile_is_bad_request,
    case_awkward_recipient_ids_round_trip,
    case_async_client,
    case_default_client_settings,
    case_body_over_limit_is_413,
    case_unsupported_calls_fail_clearly,
]


def main():
    print(f"trycourier {courier.__version__} against {BASE_URL}", flush=True)
    passed = failed = 0
    for case in CASES:
        t0 = time.monotonic()
        try:
            case()
        except Exception:
            failed += 1
            print(f"FAIL {case.__name__}:\n{traceback.format_exc()}", flush=True)
        else:
            passed += 1
            print(f"ok   {case.__name__} ({time.monotonic() - t0:.2f}s)", flush=True)
    with open(IDS_FILE, "w", encoding="utf-8") as f:
        for value in ids_used:
            f.write(json.dumps(value, ensure_ascii=False) + "\n")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
