#!/usr/bin/env bash
# stack_faults: deploy/local/stack meets each fault of issue 2 with a one-line
# message naming the cause and a non-zero exit, within a bounded time.
#
# Every case runs against a throwaway state folder and free ports, so the stack
# that tests/run started is never touched; only the "port taken" case borrows
# that stack's PostgreSQL port (read from PROFILED_PG_PORT), because a port in
# real use is the honest way to take one.
set -euo pipefail

STACK="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../deploy/local" && pwd)/stack"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/profiled-stack-faults.XXXXXX")"
PASSED=0
FAILED=0

cleanup() {
    # A case that went wrong may have left its fake broker: stop it by its pid file.
    if [[ -f "$WORK/state-deadline/run/kafka.pid" ]]; then
        kill -KILL -- "-$(cat "$WORK/state-deadline/run/kafka.pid")" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

: "${PROFILED_PG_PORT:?PROFILED_PG_PORT is not set: run through tests/run or eval \"\$(deploy/local/stack env)\"}"

# free_port: a port in 40000-59999 that nothing on 127.0.0.1 accepts on.
free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((40000 + RANDOM % 20000))
        if ! timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

# expect NAME PATTERN SECONDS -- COMMAND...: COMMAND fails within SECONDS, and its
# last stderr line starts with "stack: " and matches PATTERN.
expect() {
    local name="$1" pattern="$2" limit="$3" rc=0 last
    shift 4
    local t0=$SECONDS
    "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
    last="$(tail -n1 "$WORK/err")"
    if ((rc == 0)); then
        echo "not ok - $name: exited 0 (stderr: $last)"
        FAILED=$((FAILED + 1))
    elif ((SECONDS - t0 > limit)); then
        echo "not ok - $name: took $((SECONDS - t0))s, more than ${limit}s"
        FAILED=$((FAILED + 1))
    elif [[ "$last" != "stack: "* || ! "$last" =~ $pattern ]]; then
        echo "not ok - $name: last line '$last' does not match /$pattern/"
        FAILED=$((FAILED + 1))
    else
        echo "ok - $name: $last"
        PASSED=$((PASSED + 1))
    fi
}

# An isolated environment: its own state folder and free ports.
isolated() {
    local state="$1"
    shift
    env PROFILED_STATE_DIR="$WORK/$state" PROFILED_PG_PORT="$PG" PROFILED_KAFKA_PORT="$KAFKA" \
        PROFILED_KAFKA_CONTROLLER_PORT="$CTRL" "$@"
}

PG="$(free_port)"
KAFKA="$(free_port)"
CTRL="$(free_port)"

expect "unknown verb" "unknown verb 'frob'" 5 -- "$STACK" frob
expect "bad port knob" "PROFILED_KAFKA_PORT must be a port number" 5 -- \
    env PROFILED_KAFKA_PORT=99999 "$STACK" env
expect "bad partitions knob" "PROFILED_PARTITIONS must be an integer" 5 -- \
    env PROFILED_PARTITIONS=zero "$STACK" up

expect "port taken" "port $PROFILED_PG_PORT \\(PostgreSQL\\) is already taken" 10 -- \
    env PROFILED_STATE_DIR="$WORK/state-port" PROFILED_PG_PORT="$PROFILED_PG_PORT" \
    PROFILED_KAFKA_PORT="$KAFKA" PROFILED_KAFKA_CONTROLLER_PORT="$CTRL" "$STACK" start postgres

# A PATH with every program of the machine except java.
mkdir -p "$WORK/nojava"
for dir in /usr/local/bin /usr/bin /bin; do
    for program in "$dir"/*; do
        name="${program##*/}"
        [[ "$name" == java || -e "$WORK/nojava/$name" ]] || ln -s "$program" "$WORK/nojava/$name"
    done
done
expect "java missing" "java is missing" 10 -- isolated state-nojava env PATH="$WORK/nojava" bash "$STACK" start kafka

# A pid file whose process is gone: the stale file is named, removed, and the
# service reported down (status exits 1).
mkdir -p "$WORK/state-stale/run"
sleep 0 &
dead=$!
wait "$dead"
echo "$dead" >"$WORK/state-stale/run/kafka.pid"
expect "stale pid file" "kafka +down|stale pid file" 20 -- isolated state-stale "$STACK" status
if grep -q "stale pid file $WORK/state-stale/run/kafka.pid (pid $dead" "$WORK/err" &&
    [[ ! -e "$WORK/state-stale/run/kafka.pid" ]]; then
    echo "ok - stale pid file named and removed"
    PASSED=$((PASSED + 1))
else
    echo "not ok - stale pid file not named or not removed: $(cat "$WORK/err")"
    FAILED=$((FAILED + 1))
fi

# A broker that never answers: a fake java that formats nothing and then hangs.
mkdir -p "$WORK/fakejava"
cat >"$WORK/fakejava/java" <<'EOF'
#!/usr/bin/env bash
case " $* " in
*" kafka.Kafka "*) echo "fake broker: hanging on purpose" >&2; sleep 600 ;; # no exec: keep our command line
*) exit 0 ;;
esac
EOF
chmod +x "$WORK/fakejava/java"
expect "broker not up within deadline" "did not answer a metadata request .* within 3s" 40 -- \
    isolated state-deadline env PATH="$WORK/fakejava:$PATH" PROFILED_STACK_TIMEOUT=3 "$STACK" start kafka
if grep -q "fake broker: hanging on purpose" "$WORK/err" && [[ ! -e "$WORK/state-deadline/run/kafka.pid" ]]; then
    echo "ok - deadline shows the broker's log and leaves no pid file"
    PASSED=$((PASSED + 1))
else
    echo "not ok - deadline: log not shown or pid file left"
    FAILED=$((FAILED + 1))
fi

# Fresh Kafka cluster ids never begin with '-' (kafka-storage format would read one
# as an option: about one fresh `stack up` in 64 failed). 1000 draws: the old
# generator would have produced such an id with probability 1 - (63/64)^1000 > 0.9999.
ids="$(PROFILED_STATE_DIR="$WORK/state-ids" "$STACK" __cluster_id 1000)"
bad="$(grep -cvE '^[A-Za-z0-9_][A-Za-z0-9_-]{21}$' <<<"$ids" || true)"
if [[ "$(wc -l <<<"$ids")" == 1000 && "$bad" == 0 && "$(sort -u <<<"$ids" | wc -l)" == 1000 ]]; then
    echo "ok - 1000 fresh cluster ids: 22 URL-safe base64 characters, none starting with '-', all distinct"
    PASSED=$((PASSED + 1))
else
    echo "not ok - cluster ids: $bad of $(wc -l <<<"$ids") malformed or starting with '-'"
    FAILED=$((FAILED + 1))
fi

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
