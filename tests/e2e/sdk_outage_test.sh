#!/usr/bin/env bash
# e2e_sdk_outage: what Courier's Python SDK sees while Kafka is down (sdk_outage_test.py):
# a 503 api_error with Retry-After within the api's deadline, retried by the SDK's
# defaults; reads still served; after the broker is back, writes succeed and are applied.
# The broker is stopped with "$PROFILED_STACK" stop kafka and always started again on
# the way out.
#
# Usage (ctest): sdk_outage_test.sh <profiled-api> <profiled-worker> <repo>
set -euo pipefail
E2E_API_BIN="$1"
E2E_WORKER_BIN="$2"
REPO="$3"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"

KAFKA_STOPPED=0
restart_kafka() {
    if ((KAFKA_STOPPED)); then
        e2e_log "starting Kafka again"
        "$PROFILED_STACK" start kafka >&2 || echo "e2e: FAIL: could not start Kafka again" >&2
        KAFKA_STOPPED=0
    fi
}
E2E_EXIT_HOOK=restart_kafka

e2e_require_env
e2e_python_sdk_install "$REPO"
# A short request deadline, so that a PUT with the broker down is answered 503 quickly.
export PROFILED_REQUEST_DEADLINE=3s
e2e_start outage

phase() {
    E2E_BASE_URL="$E2E_BASE_URL" E2E_KEY="$E2E_KEY" E2E_RUN="$E2E_RUN" E2E_DEADLINE_S=3 \
        COURIER_API_KEY= COURIER_BASE_URL= timeout 240 "$E2E_PY" "$HERE/sdk_outage_test.py" "$1" ||
        e2e_fail "outage phase '$1' failed (above)"
}

phase before
e2e_log "stopping Kafka"
KAFKA_STOPPED=1
"$PROFILED_STACK" stop kafka >&2 || e2e_fail "could not stop Kafka"
phase down
e2e_log "starting Kafka"
"$PROFILED_STACK" start kafka >&2 || e2e_fail "could not start Kafka again"
KAFKA_STOPPED=0
phase after

e2e_stop || e2e_fail "the services did not stop cleanly"
echo "e2e_sdk_outage: all checks passed"
