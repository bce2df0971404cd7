#!/usr/bin/env bash
# import_outage: Kafka stopped during an import.
#
# Two imports run through one outage:
#   A, waiting: under a long --stall-timeout it waits for the broker, then finishes with
#      exit 0 once the broker is back.
#   B, stopping: under --stall-timeout 3 it stops with exit 3, a clear reason and a
#      checkpoint short of the end; after the broker is back, --resume completes it.
#   Then every row equals its line and nothing was written twice.
#
# Usage (ctest): outage_test.sh <profiled-import> <profiled-worker>
set -euo pipefail
IMP_BIN="$1"
E2E_WORKER_BIN="$2"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KAFKA_STOPPED=0
outage_hook() {
    # never leave an import frozen (below) behind a failure
    [[ -z "${pid_a:-}" ]] || kill -CONT "$pid_a" 2>/dev/null || true
    [[ -z "${pid_b:-}" ]] || kill -CONT "$pid_b" 2>/dev/null || true
    if ((KAFKA_STOPPED)); then
        "$PROFILED_STACK" start kafka >&2 || echo "import: FAIL: could not start Kafka again" >&2
    fi
    imp_exit_hook
}
imp_start outage
E2E_EXIT_HOOK=outage_hook
D="$E2E_DIR"
N=20000
imp_gen "$D/a.ndjson" "$N" 0
imp_gen "$D/b.ndjson" "$N" "$N"
lines_done() { jq -r '.files[0].lines_done' "$1" 2>/dev/null || echo 0; }
# Reconnect within a second of the broker's return (librdkafka backs off up to 10 s by default).
export PROFILED_KAFKA_PROPERTIES=reconnect.backoff.max.ms=1000
wait_progress() {
    local deadline=$((SECONDS + 60))
    until [[ "$(lines_done "$1")" -ge 2000 ]]; do
        kill -0 "$2" 2>/dev/null || e2e_fail "the import ended before Kafka was stopped"
        ((SECONDS < deadline)) || e2e_fail "no checkpoint progress within 60 s"
        sleep 0.05
    done
}

# Two imports run at once through one broker outage: A waits (long --stall-timeout),
# B stops (--stall-timeout 3).
PROFILED_KAFKA_TOPIC="$E2E_TOPIC" "$IMP_BIN" --job outage-a --checkpoint "$D/a.ckpt" --window 1000 \
    --stall-timeout 120 --summary-json "$D/a.summary" "$D/a.ndjson" 2>"$D/a.log" &
pid_a=$!
PROFILED_KAFKA_TOPIC="$E2E_TOPIC" "$IMP_BIN" --job outage-b --checkpoint "$D/b.ckpt" --window 1000 \
    --stall-timeout 3 --summary-json "$D/b.summary" "$D/b.ndjson" 2>"$D/b.log" &
pid_b=$!
wait_progress "$D/a.ckpt" "$pid_a"
wait_progress "$D/b.ckpt" "$pid_b"
# Both are frozen while the broker stops (its controlled shutdown takes seconds), so that
# neither can finish its file meanwhile on a fast box: they go on only once Kafka is down.
kill -STOP "$pid_a" "$pid_b"
KAFKA_STOPPED=1
"$PROFILED_STACK" stop kafka >&2 || e2e_fail "could not stop Kafka"
kill -CONT "$pid_a" "$pid_b"

# ------------------------------------------------------------------ B stops with a checkpoint
rc=0
timeout 60 tail --pid="$pid_b" -f /dev/null || true
wait "$pid_b" || rc=$?
((rc == 3)) || e2e_fail "with Kafka down the import exited $rc, expected 3: $(tail -n 2 "$D/b.log")"
jq -e '.status == "kafka_failed" and (.reason | test("acknowledged nothing")) and .lines_unacknowledged > 0' \
    "$D/b.summary" >/dev/null || e2e_fail "summary after the stall: $(cat "$D/b.summary")"
grep -q 're-run with --resume' "$D/b.log" || e2e_fail "the stop message does not say how to continue"
L="$(lines_done "$D/b.ckpt")"
((L > 0 && L < N)) || e2e_fail "checkpoint after the stall at line $L"
kill -0 "$pid_a" 2>/dev/null || e2e_fail "import A did not wait for Kafka: $(tail -n 2 "$D/a.log")"

"$PROFILED_STACK" start kafka >&2 || e2e_fail "could not start Kafka again"
KAFKA_STOPPED=0

# ------------------------------------------------------------------ A completes once Kafka is back
rc=0
wait "$pid_a" || rc=$?
((rc == 0)) || e2e_fail "the import that waited for Kafka exited $rc: $(tail -n 2 "$D/a.log")"
jq -e --argjson n "$N" '.lines_acknowledged == $n' "$D/a.summary" >/dev/null || e2e_fail "$(cat "$D/a.summary")"
grep -q 'Kafka is unreachable' "$D/a.log" || e2e_fail "import A did not say it was waiting for Kafka"
e2e_log "broker outage: import A waited and completed"

# ------------------------------------------------------------------ B resumes
imp_import --job outage-b --checkpoint "$D/b.ckpt" --resume --summary-json "$D/b2.summary" "$D/b.ndjson" \
    2>"$D/b2.log"
((IMP_RC == 0)) || e2e_fail "the resume after the outage exited $IMP_RC: $(tail -n 2 "$D/b2.log")"
jq -e --argjson l "$L" '.lines_skipped_by_resume == $l' "$D/b2.summary" >/dev/null ||
    e2e_fail "resume summary: $(cat "$D/b2.summary")"
e2e_log "import B: stopped with exit 3 and a checkpoint at line $L; the resume completed"

cat "$D/a.ndjson" "$D/b.ndjson" >"$D/all.ndjson"
imp_wait_rows "$((2 * N))" 180
imp_check_rows "$D/all.ndjson"
imp_check_written_once
e2e_stop || e2e_fail "the worker did not stop cleanly"
echo "import_outage: all checks passed"
