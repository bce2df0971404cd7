"""Courier's Python SDK against profiled while Kafka is down (DESIGN §2.5), in phases
driven by sdk_outage_test.sh, which stops and starts the broker between them:

  before  a replace succeeds and is applied
  down    (broker stopped) a replace raises the SDK's InternalServerError: 503,
          type api_error, with Retry-After, within the api's deadline; the SDK with its
          default settings retries it (honouring Retry-After) before giving up; a
          retrieve of the profile written before still works (reads do not need Kafka)
  after   (broker started) a replace with the SDK's defaults succeeds again within a
          bounded time, and the worker applies it

Environment: E2E_BASE_URL, E2E_KEY, E2E_RUN, E2E_DEADLINE_S (the api's request
deadline, seconds). The last line is "N passed, N failed".
"""

import os
import sys
import time
import traceback

from courier import Courier, InternalServerError, NotFoundError

BASE_URL = os.environ["E2E_BASE_URL"]
KEY = os.environ["E2E_KEY"]
RUN = os.environ["E2E_RUN"]
DEADLINE_S = float(os.environ["E2E_DEADLINE_S"])
no_retry = Courier(api_key=KEY, base_url=BASE_URL, max_retries=0, timeout=30.0)
defaults = Courier(api_key=KEY, base_url=BASE_URL)

BEFORE = {"email": "before@example.com", "custom": {"phase": "before"}}
AFTER = {"email": "after@example.com", "custom": {"phase": "after"}}


def rid(name):
    return f"e2e-outage-{RUN}-{name}"


def wait_for_profile(client, recipient_id, expected, seconds=60.0):
    deadline = time.monotonic() + seconds
    last = "nothing yet"
    while time.monotonic() < deadline:
        try:
            got = client.profiles.retrieve(recipient_id).profile
            if got == expected:
                return
            last = repr(got)
        except NotFoundError:
            last = "404"
        time.sleep(0.2)
    raise AssertionError(f"{recipient_id}: not applied within {seconds:.0f}s; last: {last}")


def case_before():
    assert no_retry.profiles.replace(rid("before"), profile=BEFORE).status == "SUCCESS"
    wait_for_profile(no_retry, rid("before"), BEFORE)


def case_down_put_is_503_within_deadline():
    t0 = time.monotonic()
    try:
        no_retry.profiles.replace(rid("down"), profile={"email": "down@example.com"})
    except InternalServerError as e:
        elapsed = time.monotonic() - t0
        assert e.status_code == 503, e.status_code
        assert isinstance(e.body, dict) and e.body.get("type") == "api_error", e.body
        assert e.response.headers.get("Retry-After"), f"no Retry-After: {dict(e.response.headers)}"
        # by the 3 s deadline, not the 10 s default; 5 s of slack for a loaded ASan box
        assert elapsed <= DEADLINE_S + 5.0, f"the 503 took {elapsed:.1f}s, deadline {DEADLINE_S:.1f}s"
        print(f"     503 after {elapsed:.2f}s: {e.body.get('message')}", flush=True)
        return
    raise AssertionError("replace succeeded while the broker was stopped")


def case_down_sdk_retries_then_gives_up():
    # The SDK's defaults (2 retries) retry a 503 after Retry-After; three attempts, each
    # answered 503, and at least two Retry-After waits in between.
    t0 = time.monotonic()
    try:
        defaults.profiles.replace(rid("down-retried"), profile={"email": "down@example.com"})
    except InternalServerError as e:
        elapsed = time.monotonic() - t0
        assert e.status_code == 503, e.status_code
        retry_after = float(e.response.headers.get("Retry-After", "0"))
        assert elapsed >= 2 * retry_after, f"gave up after {elapsed:.1f}s: no retries honouring Retry-After"
        print(f"     gave up after {elapsed:.2f}s (Retry-After {retry_after:g}s, 3 attempts)", flush=True)
        return
    raise AssertionError("replace succeeded while the broker was stopped")


def case_down_reads_keep_working():
    got = no_retry.profiles.retrieve(rid("before"))
    assert got.profile == BEFORE, got.profile


def case_after_puts_succeed_again():
    deadline = time.monotonic() + 90.0
    attempts = 0
    while True:
        attempts += 1
        try:
            assert defaults.profiles.replace(rid("after"), profile=AFTER).status == "SUCCESS"
            break
        except InternalServerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)
    print(f"     replace succeeded after {attempts} SDK call(s)", flush=True)
    wait_for_profile(defaults, rid("after"), AFTER, seconds=90.0)


PHASES = {
    "before": [case_before],
    "down": [case_down_put_is_503_within_deadline, case_down_sdk_retries_then_gives_up, case_down_reads_keep_working],
    "after": [case_after_puts_succeed_again],
}


def main():
    passed = failed = 0
    for case in PHASES[sys.argv[1]]:
        t0 = time.monotonic()
        try:
            case()
        except Exception:
            failed += 1
            print(f"FAIL {case.__name__}:\n{traceback.format_exc()}", flush=True)
        else:
            passed += 1
            print(f"ok   {case.__name__} ({time.monotonic() - t0:.2f}s)", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
