#!/usr/bin/env bash
# import_cli: profiled-import's command line, without services.
#   - --help documents every option of the option table in main.c, and every variable;
#   - usage errors exit 2 with a one-line message naming the problem;
#   - a dry run validates without Kafka (none is reachable here): exit 1 with rejects,
#     0 without, 4 past --max-rejects; nothing is written but the rejects and summary.
# Usage (ctest): cli_test.sh <profiled-import> <repo>
set -euo pipefail
BIN="$1"
REPO="$2"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fail() {
    echo "import_cli: FAIL: $*" >&2
    exit 1
}
export PROFILED_KAFKA_BROKERS=127.0.0.1:1

"$BIN" --help >"$T/help" || fail "--help exited non-zero"
options="$(sed -n '/long_options\[\] = {/,/{NULL, 0, NULL, 0}/p' "$REPO/services/import/main.c" |
    sed -n 's/^ *{"\([a-z-]*\)",.*/\1/p')"
[[ "$(wc -l <<<"$options")" -ge 17 ]] || fail "could not read the option table of main.c"
for option in $options; do
    grep -q -- "--$option\b" "$T/help" || fail "--help does not document --$option"
done
for variable in PROFILED_KAFKA_BROKERS PROFILED_KAFKA_TOPIC PROFILED_MAX_BODY_BYTES PROFILED_LOG_LEVEL; do
    grep -q "$variable" "$T/help" || fail "--help does not list $variable"
done
grep -q 'Exit status' "$T/help" || fail "--help does not list the exit statuses"

expect_usage() {
    local want="$1"
    shift
    local rc=0
    "$BIN" "$@" >"$T/out" 2>"$T/err" || rc=$?
    ((rc == 2)) || fail "profiled-import $* exited $rc, expected 2"
    grep -q -- "$want" "$T/err" || fail "profiled-import $*: message '$(cat "$T/err")' does not mention '$want'"
}
echo '{"recipient_id":"a","profile":{}}' >"$T/ok.ndjson"
expect_usage "--job is required" "$T/ok.ndjson"
expect_usage "expected 1 to 128" --job 'a b' "$T/ok.ndjson"
expect_usage "no input file" --job j
expect_usage "named twice" --job j "$T/ok.ndjson" "$T/ok.ndjson"
expect_usage "--map needs --csv" --job j --map a=b "$T/ok.ndjson"
expect_usage "--window" --job j --window 0 "$T/ok.ndjson"
expect_usage "must read field=Column\|is not field=Column" --job j --csv --map recipient_id "$T/ok.ndjson"
rc=0
"$BIN" --job j --dry-run "$T/missing.ndjson" 2>"$T/err" || rc=$?
((rc == 5)) || fail "a missing input exited $rc, expected 5"

# An unwritable checkpoint stops a fresh job before it sends anything (no broker is needed for that).
rc=0
"$BIN" --job j --checkpoint "$T/no/such/dir/ckpt" "$T/ok.ndjson" 2>"$T/err" || rc=$?
((rc == 5)) || fail "an unwritable checkpoint exited $rc, expected 5"
grep -q '"read":0' "$T/err" && grep -q "no/such/dir/ckpt" "$T/err" ||
    fail "an unwritable checkpoint: $(grep -v librdkafka "$T/err")"

cd "$T"
printf '%s\n' '{"recipient_id":"a","profile":{"email":"a@b"}}' '{"recipient_id":"b","profile":{"email":1}}' \
    '{"recipient_id":"c","profile":{}}' '{"recipient_id":"d"}' >"$T/mixed.ndjson"
rc=0
"$BIN" --job j --dry-run --rejects "$T/rej" --summary-json "$T/sum" "$T/mixed.ndjson" 2>"$T/err" || rc=$?
((rc == 1)) || fail "a dry run with rejected lines exited $rc, expected 1: $(cat "$T/err")"
[[ "$(jq -s -c '[.[] | [.line, .message]]' "$T/rej")" == '[[2,"profile.email must be a string"],[4,"profile is required"]]' ]] ||
    fail "dry-run rejects: $(cat "$T/rej")"
jq -e '.dry_run and .lines_valid == 2 and .lines_rejected == 2 and .lines_acknowledged == 0' "$T/sum" >/dev/null ||
    fail "dry-run summary: $(cat "$T/sum")"
[[ ! -e "$T/profiled-import.j.checkpoint" ]] || fail "a dry run wrote a checkpoint"
rc=0
"$BIN" --job j --dry-run --max-rejects 1 "$T/mixed.ndjson" 2>"$T/err" || rc=$?
((rc == 4)) || fail "--max-rejects 1 with 2 rejects exited $rc, expected 4"
rc=0
"$BIN" --job j --dry-run - <"$T/ok.ndjson" 2>"$T/err" || rc=$?
((rc == 0)) || fail "a clean dry run from stdin exited $rc"
# Every line on stderr is one JSON object.
jq -e . "$T/err" >/dev/null || fail "stderr holds a line that is not JSON: $(cat "$T/err")"
echo "import_cli: all checks passed"
