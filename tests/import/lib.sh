# tests/import/lib.sh — the harness of the profiled-import integration tests, on top of
# tests/e2e/lib.sh (e2e_fail, e2e_psql, e2e_wait_until, the EXIT trap that stops the
# worker and deletes the topics of a passing run). Each test gets its own topic, consumer
# group and PostgreSQL schema, and one profiled-worker applying that topic:
#
#   imp_start <name>         schema + write-count trigger, worker (creates the topics), ready
#   imp_import <args...>     runs profiled-import on the test's topic; sets IMP_RC
#   imp_metric <name+labels> a counter of the worker's /metrics (0 when absent)
#   imp_wait_rows <n>        waits until the schema's profiles table holds n rows
#   imp_check_rows <ndjson>  every line's recipient has exactly that line's profile
#
# Inputs: IMP_BIN (profiled-import), E2E_WORKER_BIN (profiled-worker).

source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"

IMP_SCHEMA=""

imp_psql() {
    timeout 120 psql "$IMP_DSN" -X -A -t -q -v ON_ERROR_STOP=1 "$@"
}

imp_exit_hook() {
    if [[ -n "$IMP_SCHEMA" && "$E2E_FAILED" == 0 ]]; then
        e2e_psql -c "DROP SCHEMA IF EXISTS $IMP_SCHEMA CASCADE" >/dev/null 2>&1 || true
    fi
}

imp_start() {
    local name="$1"
    [[ -x "${IMP_BIN:-}" ]] || e2e_fail "IMP_BIN='${IMP_BIN:-}' is not an executable profiled-import"
    E2E_API_BIN=/bin/true
    e2e_require_env
    E2E_RUN="$name-$(date +%s)-$$"
    E2E_TOPIC="it.import.$E2E_RUN"
    E2E_DLQ_TOPIC="it.import.$E2E_RUN.dlq"
    E2E_GROUP="it-import-$E2E_RUN"
    E2E_DIR="$(mktemp -d "${TMPDIR:-/tmp}/profiled-import-$name.XXXXXX")"
    E2E_EXIT_HOOK=imp_exit_hook
    trap e2e_on_exit EXIT
    IMP_SCHEMA="it_import_${name}_$(date +%s)_$$"
    e2e_psql -c "CREATE SCHEMA $IMP_SCHEMA" >/dev/null || e2e_fail "cannot create schema $IMP_SCHEMA"
    IMP_DSN="$PROFILED_PG_DSN options='-csearch_path=$IMP_SCHEMA'"
    PROFILED_PG_DSN="$IMP_DSN" "$E2E_WORKER_BIN" migrate >"$E2E_DIR/migrate.log" 2>&1 ||
        e2e_fail "profiled-worker migrate failed: $(tail -n 5 "$E2E_DIR/migrate.log")"
    # Test only: counts every write of a (recipient, command) pair, to prove none is applied twice.
    imp_psql <<SQL || e2e_fail "cannot add the write-count trigger"
CREATE TABLE write_counts (recipient_id text, command_id bytea, writes int NOT NULL,
                           PRIMARY KEY (recipient_id, command_id));
CREATE FUNCTION count_write() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN
  INSERT INTO $IMP_SCHEMA.write_counts VALUES (NEW.recipient_id, NEW.command_id, 1)
  ON CONFLICT (recipient_id, command_id) DO UPDATE SET writes = $IMP_SCHEMA.write_counts.writes + 1;
  RETURN NEW; END \$\$;
CREATE TRIGGER count_writes AFTER INSERT OR UPDATE ON profiles FOR EACH ROW EXECUTE FUNCTION count_write();
SQL
    PROFILED_PG_DSN="$IMP_DSN" PROFILED_KAFKA_TOPIC="$E2E_TOPIC" PROFILED_KAFKA_DLQ_TOPIC="$E2E_DLQ_TOPIC" \
        PROFILED_WORKER_GROUP="$E2E_GROUP" PROFILED_CREATE_TOPICS=true PROFILED_TOPIC_PARTITIONS=6 \
        PROFILED_OPS_ADDR=127.0.0.1 PROFILED_OPS_PORT=0 PROFILED_RETRY_MAX_BACKOFF=1s \
        PROFILED_KAFKA_PROPERTIES=session.timeout.ms=6000,heartbeat.interval.ms=500 \
        "$E2E_WORKER_BIN" </dev/null >"$E2E_DIR/worker.out" 2>"$E2E_DIR/worker.log" &
    E2E_WORKER_PID=$!
    # The ops port is the kernel's choice (no race with another test); the worker logs it.
    local port="" deadline=$((SECONDS + 60))
    while [[ -z "$port" ]]; do
        kill -0 "$E2E_WORKER_PID" 2>/dev/null || e2e_fail "the worker exited at start: $(tail -n 3 "$E2E_DIR/worker.log")"
        ((SECONDS < deadline)) || e2e_fail "the worker did not log its ops port within 60 s"
        port="$(jq -r 'select(.message | startswith("ops listener up")) | .port' "$E2E_DIR/worker.log" 2>/dev/null | head -n 1)"
        [[ -n "$port" ]] || sleep 0.1
    done
    E2E_WORKER_OPS="http://127.0.0.1:$port"
    e2e_wait_ready worker "$E2E_WORKER_PID" "$E2E_WORKER_OPS/readyz"
    e2e_log "worker ready: topic $E2E_TOPIC, schema $IMP_SCHEMA (scratch in $E2E_DIR)"
}

imp_import() {
    IMP_RC=0
    PROFILED_KAFKA_TOPIC="$E2E_TOPIC" "$IMP_BIN" "$@" || IMP_RC=$?
}

imp_metric() {
    local value
    value="$(curl -fsS --max-time 5 "$E2E_WORKER_OPS/metrics" | awk -v want="$1" '$1 == want { print $2 }')"
    echo "${value:-0}"
}

imp_rows() { imp_psql -c "select count(*) from profiles"; }

imp_wait_rows() {
    local want="$1" deadline=$((SECONDS + ${2:-120}))
    while [[ "$(imp_rows)" != "$want" ]]; do
        ((SECONDS < deadline)) || e2e_fail "the worker wrote $(imp_rows) rows, expected $want"
        sleep 0.3
    done
}

# The worker has applied every record of the topic: its committed positions equal the end offsets.
imp_wait_caught_up() {
    local want="$1" deadline=$((SECONDS + ${2:-120})) got
    while :; do
        got="$(imp_metric 'profiled_worker_commands_applied_total')"
        got=$((${got%.*} + $(imp_metric 'profiled_worker_commands_skipped_total{reason="duplicate"}' | sed 's/\..*//')))
        ((got >= want)) && return 0
        ((SECONDS < deadline)) || e2e_fail "the worker processed $got commands, expected at least $want"
        sleep 0.3
    done
}

# Every line of the NDJSON file: its recipient's row holds exactly its profile (jsonb equality),
# and there is no other row.
imp_check_rows() {
    local file="$1" n
    n="$(grep -c . "$file")"
    imp_psql <<SQL >"$E2E_DIR/check.out" || e2e_fail "comparing rows with $file failed"
CREATE TEMP TABLE lines (line text);
\\copy lines from '$file' with (format csv, quote e'\\x01', delimiter e'\\x02')
SELECT count(*) FROM lines l JOIN profiles p ON p.recipient_id = (l.line::jsonb)->>'recipient_id'
 WHERE p.profile = (l.line::jsonb)->'profile';
SELECT count(*) FROM profiles;
SQL
    local same rows
    same="$(sed -n 1p "$E2E_DIR/check.out")"
    rows="$(sed -n 2p "$E2E_DIR/check.out")"
    [[ "$same" == "$n" && "$rows" == "$n" ]] ||
        e2e_fail "$same of $n lines of $file have their row equal to the line ($rows rows in all)"
    e2e_log "all $n rows equal their lines"
}

# Every (recipient, command) pair was written once: nothing applied twice.
imp_check_written_once() {
    local twice
    twice="$(imp_psql -c "select count(*) from write_counts where writes <> 1")"
    [[ "$twice" == 0 ]] || e2e_fail "$twice (recipient, command) pairs were written more than once"
}

# imp_gen <file> <count> [first]: NDJSON lines for recipients imp-<first>.. with ~200-byte profiles.
# Doubles are multiples of 1/8: their shortest text is unique. (i/7 is not: for 58/7 the worker
# writes 8.285714285714287, Python 8.285714285714286, the same double but another jsonb numeric;
# common/wire/json_write.c's fast path picks a 16-digit form that reads back, not the nearest one.)
imp_gen() {
    python3 - "$1" "$2" "${3:-0}" <<'PY'
import json, sys
path, count, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "w") as f:
    for i in range(first, first + count):
        profile = {"email": f"user{i}@example.com", "email_verified": i % 2 == 0,
                   "name": f"Zoë {i} 🙂", "custom": {"n": i, "ratio": i / 8, "tags": ["a", "b", str(i)]}}
        f.write(json.dumps({"recipient_id": f"imp-{i}", "profile": profile}, ensure_ascii=False) + "\n")
PY
}
