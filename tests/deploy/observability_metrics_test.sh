#!/usr/bin/env bash
# ctest deploy_observability_metrics: runs the built api and worker against the stack
# (tests/e2e/lib.sh: fresh topics and group), makes one PUT applied, reads both
# /metrics, and checks that every metric the dashboard and the alert rules name,
# with the labels and label values they select, is exported
# (check_observability.py metrics; --selftest breaks copies on purpose).
#   observability_metrics_test.sh REPO API_BIN WORKER_BIN PYTHON
set -euo pipefail
REPO="$1"
E2E_API_BIN="$2"
E2E_WORKER_BIN="$3"
PYTHON="$4"
# shellcheck source=../e2e/lib.sh
source "$REPO/tests/e2e/lib.sh"
e2e_require_env
E2E_PARTITIONS=2
e2e_start observability

id="observability-$E2E_RUN"
status="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 15 -X PUT "$E2E_BASE_URL/profiles/$id" \
    -H "Authorization: Bearer $E2E_KEY" -H 'Content-Type: application/json' -d '{"profile":{"a":1}}')"
[[ "$status" == 200 ]] || e2e_fail "PUT answered $status"
# Applied, and the lag gauge present for the assigned partitions.
applied() {
    curl -fsS --max-time 5 "$E2E_WORKER_OPS/metrics" >"$E2E_DIR/worker.metrics" &&
        grep -q '^profiled_worker_commands_applied_total [1-9]' "$E2E_DIR/worker.metrics" &&
        grep -q '^profiled_worker_lag{' "$E2E_DIR/worker.metrics"
}
e2e_wait_until 30 "the worker to apply the PUT and report its lag" applied
curl -fsS --max-time 5 "$E2E_BASE_URL/metrics" >"$E2E_DIR/api.metrics" || e2e_fail "GET /metrics of the api failed"

"$PYTHON" "$REPO/tests/deploy/check_observability.py" --repo "$REPO" --selftest metrics \
    --api-metrics "$E2E_DIR/api.metrics" --worker-metrics "$E2E_DIR/worker.metrics" ||
    e2e_fail "the dashboard or the rules name metrics the binaries do not export"
e2e_stop
