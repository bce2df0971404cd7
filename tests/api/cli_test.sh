#!/usr/bin/env bash
# profiled-api's command line: --help lists every setting, and each bad setting
# stops the binary with exit 1 and a message naming the variable. No services.
set -uo pipefail
API="$1"
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

help="$("$API" --help)" || fail "--help exited $?"
for name in PROFILED_HTTP_ADDR PROFILED_HTTP_PORT PROFILED_HTTP_THREADS PROFILED_HTTP_HEADER_TIMEOUT \
    PROFILED_HTTP_BODY_TIMEOUT PROFILED_HTTP_IDLE_TIMEOUT \
    PROFILED_HTTP_MAX_CONNECTIONS PROFILED_HTTP_MAX_HEADER_BYTES PROFILED_REQUEST_DEADLINE PROFILED_API_KEYS \
    PROFILED_API_KEYS_FILE PROFILED_SHUTDOWN_DEADLINE PROFILED_KAFKA_BROKERS PROFILED_KAFKA_TOPIC \
    PROFILED_KAFKA_PROPERTIES PROFILED_KAFKA_LINGER PROFILED_KAFKA_QUEUE_MAX PROFILED_PG_DSN \
    PROFILED_PG_CONNECT_TIMEOUT PROFILED_PG_CONNECTIONS_PER_LOOP PROFILED_LOG_LEVEL PROFILED_MAX_BODY_BYTES PROFILED_MAX_DEPTH \
    PROFILED_MAX_KEY_BYTES PROFILED_MAX_STRING_BYTES PROFILED_MAX_KEYS PROFILED_PUT_ACK PROFILED_APPLY_WAIT; do
    grep -q "^  $name " <<<"$help" || fail "--help does not list $name"
done

# expect_bad VAR=VALUE...: exits 1 within 10 s and names the last variable on stderr.
expect_bad() {
    local last="${*: -1}" name err status
    name="${last%%=*}"
    err="$(env -i PATH="$PATH" PROFILED_API_KEYS=k "$@" timeout 10 "$API" 2>&1 >/dev/null)"
    status=$?
    [[ $status == 1 ]] || fail "$*: exit $status, expected 1 ($err)"
    grep -q "$name" <<<"$err" || fail "$*: message does not name $name: $err"
}
expect_bad PROFILED_HTTP_PORT=0
expect_bad PROFILED_HTTP_PORT=http
expect_bad PROFILED_HTTP_THREADS=0
expect_bad PROFILED_REQUEST_DEADLINE=10parsecs
expect_bad PROFILED_HTTP_HEADER_TIMEOUT=10ms
expect_bad PROFILED_HTTP_BODY_TIMEOUT=2h
expect_bad PROFILED_HTTP_IDLE_TIMEOUT=0
expect_bad PROFILED_MAX_BODY_BYTES=1TiB
expect_bad PROFILED_LOG_LEVEL=loud
expect_bad PROFILED_HTTP_ADDR=not-an-address
expect_bad PROFILED_KAFKA_PROPERTIES=no-equals-sign
expect_bad PROFILED_KAFKA_PROPERTIES=no.such.property=1
expect_bad PROFILED_API_KEYS_FILE=/nonexistent/keys
expect_bad PROFILED_REQUEST_DEADLINE=1s PROFILED_KAFKA_LINGER=1s
expect_bad PROFILED_PUT_ACK=visible
expect_bad PROFILED_APPLY_WAIT=0
expect_bad PROFILED_APPLY_WAIT=2m
expect_bad PROFILED_PG_CONNECTIONS_PER_LOOP=0
expect_bad PROFILED_PG_CONNECTIONS_PER_LOOP=17

# No key at all is refused: an api without keys would be open or useless.
err="$(env -i PATH="$PATH" timeout 10 "$API" 2>&1 >/dev/null)"
status=$?
[[ $status == 1 ]] || fail "no API key: exit $status, expected 1"
grep -q PROFILED_API_KEYS <<<"$err" || fail "no API key: message does not name PROFILED_API_KEYS: $err"
# A secret is never echoed in an error.
err="$(env -i PATH="$PATH" PROFILED_API_KEYS="sec ret" timeout 10 "$API" 2>&1 >/dev/null)"
grep -q "sec ret" <<<"$err" && fail "a bad API key is echoed: $err"

if ((failures)); then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "cli: all checks passed"
