# tests/e2e/lib.sh — the end-to-end harness, sourced by the tests of tests/e2e and by
# tests/bench/e2e/run. It runs the built profiled-worker and profiled-api against the
# stack of `deploy/local/stack env`, each test on its own topics and consumer group:
#
#   e2e_require_env                 fail (not skip) unless the stack env is exported and up
#   e2e_start <name>                worker (creates fresh topics), then api; waits for /readyz
#   e2e_stop                        SIGTERM both, each must exit 0 within its deadline
#
# After e2e_start: E2E_BASE_URL, E2E_KEY (the api key), E2E_TOPIC, E2E_DLQ_TOPIC,
# E2E_GROUP, E2E_RUN (a unique run id to put in recipient ids), E2E_DIR (logs, scratch).
# Inputs: E2E_API_BIN and E2E_WORKER_BIN (ctest passes the CMake target paths);
# optional E2E_PARTITIONS (of the fresh topic, default 3), E2E_DELETE_TOPICS_BIN (deletes
# the run's topics after a pass) and E2E_EXIT_HOOK (a function the EXIT trap calls last).
# An EXIT trap stops whatever is still running, checks the exit codes, and on failure
# prints the tail of both logs; the test's exit code is non-zero if anything failed.
#
# Every wait is bounded (E2E_READY_TIMEOUT, E2E_STOP_TIMEOUT seconds); nothing here
# hangs on a dead service.

E2E_READY_TIMEOUT="${E2E_READY_TIMEOUT:-90}"
E2E_STOP_TIMEOUT="${E2E_STOP_TIMEOUT:-45}"
E2E_API_PID=""
E2E_WORKER_PID=""
E2E_DIR=""
E2E_FAILED=0
E2E_STOPPED=0

e2e_log() { echo "e2e: $*" >&2; }

# Ends the test now, with a reason; the EXIT trap still stops the services.
e2e_fail() {
    echo "e2e: FAIL: $*" >&2
    E2E_FAILED=1
    exit 1
}

# psql against the stack's database: unaligned, tuples only, stops on the first error.
# SQL on stdin, with psql variables given as -v name=value arguments.
e2e_psql() {
    timeout 30 psql "$PROFILED_PG_DSN" -X -A -t -q -v ON_ERROR_STOP=1 "$@"
}

# e2e_wait_until <seconds> <what> <command...>: runs the command every 100 ms until it
# succeeds; fails the test naming <what> when the deadline passes.
e2e_wait_until() {
    local seconds="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            e2e_fail "timed out after ${seconds}s waiting for $what"
        fi
        sleep 0.1
    done
}

e2e_require_env() {
    local name missing=()
    for name in PROFILED_KAFKA_BROKERS PROFILED_PG_DSN PROFILED_STACK; do
        [[ -n "${!name:-}" ]] || missing+=("$name")
    done
    if ((${#missing[@]})); then
        e2e_fail "${missing[*]} not set: run the tests through tests/run, or start a stack and" \
            "export its environment: deploy/local/stack up && eval \"\$(deploy/local/stack env)\""
    fi
    local tool
    for tool in curl jq kcat psql timeout; do
        command -v "$tool" >/dev/null 2>&1 || e2e_fail "$tool is not installed (deploy/local/deps installs it)"
    done
    [[ -x "${E2E_API_BIN:-}" ]] || e2e_fail "E2E_API_BIN='${E2E_API_BIN:-}' is not an executable profiled-api"
    [[ -x "${E2E_WORKER_BIN:-}" ]] || e2e_fail "E2E_WORKER_BIN='${E2E_WORKER_BIN:-}' is not an executable profiled-worker"
    if ! e2e_psql -c 'select 1' >/dev/null 2>"${TMPDIR:-/tmp}/e2e-psql-$$.err"; then
        local err
        err="$(cat "${TMPDIR:-/tmp}/e2e-psql-$$.err")"
        rm -f "${TMPDIR:-/tmp}/e2e-psql-$$.err"
        e2e_fail "PostgreSQL at PROFILED_PG_DSN='$PROFILED_PG_DSN' does not answer ($err); is the stack up? ($PROFILED_STACK status)"
    fi
    rm -f "${TMPDIR:-/tmp}/e2e-psql-$$.err"
    if ! timeout 20 kcat -b "$PROFILED_KAFKA_BROKERS" -L -m 5 >/dev/null 2>&1; then
        e2e_fail "Kafka at PROFILED_KAFKA_BROKERS=$PROFILED_KAFKA_BROKERS does not answer; is the stack up? ($PROFILED_STACK status)"
    fi
}

# A TCP port on 127.0.0.1 that nothing listens on now (nothing answers a connect),
# below the kernel's ephemeral range: a port inside it can be the local end of any
# outgoing connection (a client of the stack, of another test) and the bind fails,
# which a connect cannot detect. A race with another process remains possible;
# e2e_start then tries another port.
e2e_free_port() {
    local port tries=0 ephemeral_low span
    ephemeral_low="$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
    ((ephemeral_low > 21000)) || ephemeral_low=32768
    span=$((ephemeral_low - 20000))
    while ((tries++ < 200)); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % span))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    e2e_fail "no free TCP port found on 127.0.0.1"
}

e2e_tail_logs() {
    local f
    for f in "$E2E_DIR/worker.log" "$E2E_DIR/api.log"; do
        [[ -s "$f" ]] || continue
        echo "---- last lines of $f" >&2
        tail -n 25 "$f" >&2
    done
}

# e2e_wait_ready <name> <pid> <url>: /readyz answers 200 before the deadline, and the
# process is alive all along. Returns 2 when it exited because its port was taken
# meanwhile (the caller picks another); any other exit fails the test.
e2e_wait_ready() {
    local name="$1" pid="$2" url="$3"
    local deadline=$((SECONDS + E2E_READY_TIMEOUT))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            local rc=0
            wait "$pid" || rc=$?
            [[ "$name" == api ]] && E2E_API_PID="" || E2E_WORKER_PID=""
            if grep -q "Address already in use" "$E2E_DIR/$name.log" 2>/dev/null; then
                e2e_log "$name: its port was taken before it could listen; trying another"
                return 2
            fi
            e2e_fail "$name exited (status $rc) before it was ready; its log: $E2E_DIR/$name.log"
        fi
        if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            e2e_fail "$name not ready: $url did not answer 200 within ${E2E_READY_TIMEOUT}s"
        fi
        sleep 0.2
    done
}

# e2e_start <name>: fresh topics and group named after <name> and this run, then the
# worker (which creates the topics, PROFILED_CREATE_TOPICS) and the api.
e2e_start() {
    local name="$1"
    E2E_RUN="$name-$(date +%s)-$$"
    E2E_TOPIC="e2e.$E2E_RUN.commands"
    E2E_DLQ_TOPIC="e2e.$E2E_RUN.dlq"
    E2E_GROUP="e2e-$E2E_RUN"
    E2E_KEY="e2e-key-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    E2E_DIR="$(mktemp -d "${TMPDIR:-/tmp}/profiled-e2e-$name.XXXXXX")"
    trap e2e_on_exit EXIT

    local worker_port api_port attempt rc
    for attempt in 1 2 3; do
        worker_port="$(e2e_free_port)"
        e2e_log "worker: topic $E2E_TOPIC, group $E2E_GROUP, ops port $worker_port"
        PROFILED_KAFKA_TOPIC="$E2E_TOPIC" PROFILED_KAFKA_DLQ_TOPIC="$E2E_DLQ_TOPIC" \
            PROFILED_WORKER_GROUP="$E2E_GROUP" PROFILED_CREATE_TOPICS=true \
            PROFILED_TOPIC_PARTITIONS="${E2E_PARTITIONS:-3}" \
            PROFILED_OPS_ADDR=127.0.0.1 PROFILED_OPS_PORT="$worker_port" \
            "$E2E_WORKER_BIN" </dev/null >"$E2E_DIR/worker.out" 2>"$E2E_DIR/worker.log" &
        E2E_WORKER_PID=$!
        rc=0
        e2e_wait_ready worker "$E2E_WORKER_PID" "http://127.0.0.1:$worker_port/readyz" || rc=$?
        ((rc == 0)) && break
        ((attempt < 3)) || e2e_fail "worker: no free ops port after 3 tries; its log: $E2E_DIR/worker.log"
    done
    E2E_WORKER_OPS="http://127.0.0.1:$worker_port"

    for attempt in 1 2 3; do
        api_port="$(e2e_free_port)"
        e2e_log "api: port $api_port"
        # The SDK tests read right after each write, without polling: that holds for a PUT
        # answered visible, and a worker stalled past the default 2 s wait on a loaded box
        # would make it pending instead. 10 s stays under the SDK clients' 20 s timeout.
        PROFILED_KAFKA_TOPIC="$E2E_TOPIC" PROFILED_API_KEYS="$E2E_KEY" PROFILED_API_KEYS_FILE= \
            PROFILED_APPLY_WAIT="${PROFILED_APPLY_WAIT:-10s}" \
            PROFILED_HTTP_ADDR=127.0.0.1 PROFILED_HTTP_PORT="$api_port" \
            "$E2E_API_BIN" </dev/null >"$E2E_DIR/api.out" 2>"$E2E_DIR/api.log" &
        E2E_API_PID=$!
        E2E_BASE_URL="http://127.0.0.1:$api_port"
        rc=0
        e2e_wait_ready api "$E2E_API_PID" "$E2E_BASE_URL/readyz" || rc=$?
        ((rc == 0)) && break
        ((attempt < 3)) || e2e_fail "api: no free port after 3 tries; its log: $E2E_DIR/api.log"
    done
    e2e_log "api and worker ready (logs in $E2E_DIR)"
}

# e2e_stop_one <name> <pid>: SIGTERM, then the exit status must be 0 within
# E2E_STOP_TIMEOUT seconds; otherwise SIGKILL and report. Returns 1 on any failure.
e2e_stop_one() {
    local name="$1" pid="$2"
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + E2E_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            echo "e2e: FAIL: $name (pid $pid) did not exit within ${E2E_STOP_TIMEOUT}s of SIGTERM; killed" >&2
            return 1
        fi
        sleep 0.1
    done
    local rc=0
    wait "$pid" || rc=$?
    if ((rc != 0)); then
        echo "e2e: FAIL: $name exited with status $rc after SIGTERM (expected 0); its log: $E2E_DIR/$name.log" >&2
        return 1
    fi
    e2e_log "$name stopped (exit 0)"
    return 0
}

# Stops the api first (it drains its in-flight PUTs), then the worker.
e2e_stop() {
    local rc=0
    e2e_stop_one api "$E2E_API_PID" || rc=1
    E2E_API_PID=""
    e2e_stop_one worker "$E2E_WORKER_PID" || rc=1
    E2E_WORKER_PID=""
    E2E_STOPPED=1
    if ((rc)); then
        E2E_FAILED=1
        e2e_tail_logs
        return 1
    fi
    return 0
}

e2e_on_exit() {
    local rc=$?
    if [[ -n "$E2E_API_PID$E2E_WORKER_PID" ]]; then
        e2e_stop || rc=1
    fi
    if ((rc != 0 || E2E_FAILED)); then
        ((rc != 0)) || rc=1
        e2e_tail_logs
        [[ -n "$E2E_DIR" ]] && echo "e2e: logs kept in $E2E_DIR" >&2
    else
        [[ -n "$E2E_DIR" && -d "$E2E_DIR" ]] && rm -rf "$E2E_DIR"
        # A passing run's topics are of no further use; a failing run's stay for a look.
        if [[ -n "${E2E_TOPIC:-}" && -x "${E2E_DELETE_TOPICS_BIN:-}" ]]; then
            timeout 60 "$E2E_DELETE_TOPICS_BIN" "$PROFILED_KAFKA_BROKERS" "$E2E_TOPIC" "$E2E_DLQ_TOPIC" ||
                echo "e2e: warning: could not delete the topics $E2E_TOPIC and $E2E_DLQ_TOPIC" >&2
        fi
    fi
    if [[ -n "${E2E_EXIT_HOOK:-}" ]]; then
        "$E2E_EXIT_HOOK" || true
    fi
    exit "$rc"
}

# e2e_uri_segment <text>: the text percent-encoded as one path segment.
e2e_uri_segment() {
    jq -rn --arg s "$1" '$s | @uri'
}

# e2e_http <method> <path> [curl args...]: one request to the api with the test key;
# sets HTTP_STATUS, HTTP_BODY (file) and HTTP_HEADERS (file).
e2e_http() {
    local method="$1" path="$2"
    shift 2
    HTTP_BODY="$E2E_DIR/body"
    HTTP_HEADERS="$E2E_DIR/headers"
    HTTP_STATUS="$(curl -sS --max-time 20 -X "$method" -H "Authorization: Bearer $E2E_KEY" \
        -D "$HTTP_HEADERS" -o "$HTTP_BODY" -w '%{http_code}' "$@" "$E2E_BASE_URL$path")" ||
        e2e_fail "curl $method $path failed"
}

# e2e_header <name>: a response header of the last e2e_http (case-insensitive), or "".
e2e_header() {
    awk -v want="$(echo "$1" | tr '[:upper:]' '[:lower:]')" -F': ' '
        { name = tolower($1); sub(/\r$/, "", $2) }
        name == want { print $2; exit }' "$HTTP_HEADERS"
}

# e2e_json_equal <a> <b>: the two JSON texts hold the same data (key order aside).
e2e_json_equal() {
    [[ "$(jq -cS . <<<"$1")" == "$(jq -cS . <<<"$2")" ]]
}

# e2e_check_ids_stored <file>: every recipient id in <file> (one JSON string a line, as
# an SDK test was given them) has its row in PostgreSQL, byte for byte. An SDK
# percent-encodes ids; a '+' read as a space or a '%41' decoded twice would show here.
e2e_check_ids_stored() {
    local file="$1" line id n missing=0
    [[ -s "$file" ]] || e2e_fail "no recipient ids were written to $file"
    while IFS= read -r line; do
        id="$(jq -r . <<<"$line")"
        n="$(e2e_psql -v rid="$id" <<<"select count(*) from profiles where recipient_id = :'rid'")"
        if [[ "$n" != 1 ]]; then
            echo "e2e: no row for recipient id $line in PostgreSQL" >&2
            missing=$((missing + 1))
        fi
    done <"$file"
    ((missing == 0)) || e2e_fail "$missing recipient ids sent through the SDK are not stored as given"
    e2e_log "PostgreSQL holds all $(wc -l <"$file") recipient ids exactly as the SDK was given them"
}

# e2e_python_sdk_install <repo>: Courier's Python SDK (PyPI trycourier, version
# E2E_TRYCOURIER_VERSION, default 9.13.0) in a venv under <repo>/.cache/e2e, installed
# with pip once and reused (a marker file names the version); sets E2E_PY to its
# python. Fails, saying why, when it cannot be installed (no network, no venv module).
e2e_python_sdk_install() {
    local repo="$1"
    local version="${E2E_TRYCOURIER_VERSION:-9.13.0}"
    local cache="$repo/.cache/e2e"
    local venv="$cache/python-trycourier-$version"
    E2E_PY="$venv/bin/python"
    mkdir -p "$cache"
    exec 9>"$cache/python.lock"
    flock -w 600 9 || e2e_fail "could not lock $cache/python.lock within 600s"
    if [[ -f "$venv/.installed" ]] && "$E2E_PY" -c 'import courier' 2>/dev/null; then
        e2e_log "trycourier $version already installed in $venv"
        exec 9>&-
        return 0
    fi
    command -v python3 >/dev/null 2>&1 ||
        e2e_fail "python3 is not installed; the Python SDK tests need it (apt-get install python3 python3-venv)"
    rm -rf "$venv"
    python3 -m venv "$venv" >"$cache/python-venv.log" 2>&1 ||
        e2e_fail "python3 -m venv failed (is python3-venv installed? apt-get install python3-venv):" \
            "$(tail -n 3 "$cache/python-venv.log")"
    e2e_log "installing trycourier==$version from PyPI into $venv"
    if ! timeout 600 "$venv/bin/pip" install --disable-pip-version-check --no-input -q "trycourier==$version" \
        >"$cache/python-pip.log" 2>&1; then
        rm -rf "$venv"
        e2e_fail "pip could not install trycourier==$version from PyPI (no network, or the version is gone?);" \
            "the Courier Python SDK tests cannot run without it. pip said: $(tail -n 5 "$cache/python-pip.log")"
    fi
    "$E2E_PY" -c 'import courier' || e2e_fail "trycourier installed but 'import courier' fails"
    echo "$version" >"$venv/.installed"
    exec 9>&-
}
