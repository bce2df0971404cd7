#!/usr/bin/env bash
# import_crash: exactly once across re-runs, with a real worker and a write-count trigger.
#
#   1. An import is SIGKILLed while commands are in flight (window 2,000).
#   2. Re-run with --resume: it skips what the checkpoint covers and re-sends at most the
#      window of commands that had already reached Kafka; the worker skips each of those
#      as a duplicate (its duplicate count equals exactly the records the killed run left
#      in the topic beyond the checkpoint).
#   3. Re-run without --resume: every line is sent again, every one skipped as a duplicate.
#   Then: every row equals its line, every (recipient, command) pair was written once, and
#   the worker applied exactly one command per line.
#
# Usage (ctest): crash_test.sh <profiled-import> <profiled-worker>
set -euo pipefail
IMP_BIN="$1"
E2E_WORKER_BIN="$2"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
imp_start crash
D="$E2E_DIR"
N=30000
WINDOW=2000
DUP='profiled_worker_commands_skipped_total{reason="duplicate"}'
imp_gen "$D/in.ndjson" "$N"
topic_records() {
    timeout 60 kcat -C -q -b "$PROFILED_KAFKA_BROKERS" -t "$E2E_TOPIC" -o beginning -e -f 'x\n' | wc -l
}
lines_done() { jq -r '.files[0].lines_done' "$D/ckpt" 2>/dev/null || echo 0; }

# ------------------------------------------------------------------ 1. SIGKILL mid-import
PROFILED_KAFKA_TOPIC="$E2E_TOPIC" "$IMP_BIN" --job crash --checkpoint "$D/ckpt" --window "$WINDOW" \
    "$D/in.ndjson" 2>"$D/run1.log" &
pid=$!
deadline=$((SECONDS + 60))
until [[ "$(lines_done)" -ge 5000 ]]; do
    kill -0 "$pid" 2>/dev/null || e2e_fail "the import ended before it could be killed: $(tail -n 2 "$D/run1.log")"
    ((SECONDS < deadline)) || e2e_fail "no checkpoint progress within 60 s"
    sleep 0.05
done
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
L="$(lines_done)"
jq -e '.files[0].complete == false' "$D/ckpt" >/dev/null || e2e_fail "the killed import's checkpoint says complete"
((L < N)) || e2e_fail "the import finished before the kill (checkpoint at $L)"
K="$(topic_records)"
e2e_log "killed: checkpoint at line $L, $K records in the topic"
((K >= L)) || e2e_fail "the checkpoint ($L) is past what Kafka holds ($K): it covered unacknowledged lines"
((K - L <= WINDOW)) || e2e_fail "$((K - L)) records beyond the checkpoint, more than the window $WINDOW"

# ------------------------------------------------------------------ 2. --resume
imp_import --job crash --checkpoint "$D/ckpt" --window "$WINDOW" --resume --summary-json "$D/resume.summary" \
    "$D/in.ndjson" 2>"$D/run2.log"
((IMP_RC == 0)) || e2e_fail "the resumed import exited $IMP_RC: $(tail -n 2 "$D/run2.log")"
jq -e --argjson l "$L" --argjson n "$N" '.lines_skipped_by_resume == $l and .lines_read == $n - $l and
       .lines_acknowledged == $n - $l' "$D/resume.summary" >/dev/null ||
    e2e_fail "resume summary (checkpoint $L): $(cat "$D/resume.summary")"
imp_wait_caught_up "$((K + N - L))" 180
imp_wait_rows "$N"
dups="$(imp_metric "$DUP" | sed 's/\..*//')"
((dups == K - L)) || e2e_fail "the worker skipped $dups duplicates after the resume, expected $((K - L))"
e2e_log "resume: $((N - L)) lines sent, of which $dups replays skipped by the worker"

# ------------------------------------------------------------------ 3. the same job again, without --resume
imp_import --job crash --checkpoint "$D/ckpt2" --summary-json "$D/again.summary" "$D/in.ndjson" 2>"$D/run3.log"
((IMP_RC == 0)) || e2e_fail "the re-run exited $IMP_RC"
jq -e --argjson n "$N" '.lines_acknowledged == $n' "$D/again.summary" >/dev/null ||
    e2e_fail "re-run summary: $(cat "$D/again.summary")"
imp_wait_caught_up "$((K + 2 * N - L))" 180
dups="$(imp_metric "$DUP" | sed 's/\..*//')"
((dups == K - L + N)) || e2e_fail "after a full re-run the worker skipped $dups duplicates, expected $((K - L + N))"
applied="$(imp_metric profiled_worker_commands_applied_total | sed 's/\..*//')"
((applied == N)) || e2e_fail "the worker applied $applied commands for $N lines"
imp_check_rows "$D/in.ndjson"
imp_check_written_once
e2e_log "re-run: all $N lines skipped as duplicates; nothing applied twice"

e2e_stop || e2e_fail "the worker did not stop cleanly"
echo "import_crash: all checks passed"
