#!/usr/bin/env bash
# import_basic: profiled-import against the real stack and a real profiled-worker.
#
#   1. 100,000 NDJSON lines: exit 0, all acknowledged, every row equals its line.
#   2. A file with bad lines: each reported (rejects file and log) with its line number and
#      the api's message, exit 1; nothing produced from them (the topic holds only the good
#      lines' records), the good lines applied.
#   3. CSV with --map: quoted cells (commas, newlines, doubled quotes), a :json field, an
#      empty cell, a version column; a malformed record rejected by its first line.
#   4. Progress: JSON progress lines off a terminal; the live line on a pty (through script).
#
# Usage (ctest): basic_test.sh <profiled-import> <profiled-worker>
set -euo pipefail
IMP_BIN="$1"
E2E_WORKER_BIN="$2"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
imp_start basic
D="$E2E_DIR"

# ------------------------------------------------------------------ 1. 100,000 lines
imp_gen "$D/big.ndjson" 100000
imp_import --job basic-big --checkpoint "$D/big.ckpt" --summary-json "$D/big.summary" "$D/big.ndjson" \
    2>"$D/big.log"
((IMP_RC == 0)) || e2e_fail "import of 100,000 lines exited $IMP_RC: $(tail -n 3 "$D/big.log")"
jq -e '.status == "complete" and .lines_read == 100000 and .lines_acknowledged == 100000 and
       .lines_rejected == 0 and .lines_unacknowledged == 0' "$D/big.summary" >/dev/null ||
    e2e_fail "summary: $(cat "$D/big.summary")"
jq -e '.files[0].complete == true and .files[0].lines_done == 100000' "$D/big.ckpt" >/dev/null ||
    e2e_fail "checkpoint after a complete import: $(cat "$D/big.ckpt")"
imp_wait_rows 100000 180
imp_check_rows "$D/big.ndjson"
imp_check_written_once
# The commands carry the import's source tag and the deterministic ids (UUID v8).
got="$(imp_psql -c "select count(*) from profiles where substr(encode(command_id, 'hex'), 13, 1) = '8'")"
[[ "$got" == 100000 ]] || e2e_fail "$got of 100000 rows were written by a version-8 command id"

# ------------------------------------------------------------------ 2. bad lines
cat >"$D/bad.ndjson" <<'NDJSON'
{"recipient_id":"bad-ok-1","profile":{"email":"ok1@example.com"}}
{"recipient_id":"bad-1","profile":{"email":5}}
{"recipient_id":"bad-2","profile":{"name":"x"}
{"recipient_id":"bad-ok-2","profile":{"name":"two"},"version":3}

{"profile":{"email":"nobody@example.com"}}
{"recipient_id":"bad-3","profile":{"name":"x"},"version":-1}
{"recipient_id":"","profile":{}}
{"recipient_id":"bad-4","profile":[]}
NDJSON
imp_import --job basic-bad --rejects "$D/rejects.ndjson" --summary-json "$D/bad.summary" "$D/bad.ndjson" \
    2>"$D/bad.log"
((IMP_RC == 1)) || e2e_fail "an import with rejected lines exited $IMP_RC, expected 1"
jq -e '.lines_read == 9 and .lines_rejected == 6 and .lines_acknowledged == 2 and .lines_blank == 1' \
    "$D/bad.summary" >/dev/null || e2e_fail "summary of the bad file: $(cat "$D/bad.summary")"
expected='[[2,"profile.email must be a string"],
 [3,"body: invalid JSON: unexpected end of input, expected '"','"' or '"'}'"'"],
 [6,"recipient_id is required"],
 [7,"version must be an integer from 0 to 18446744073709551615"],
 [8,"recipient_id must not be empty"],
 [9,"profile must be an object"]]'
got="$(jq -s -c '[.[] | [.line, .message]]' "$D/rejects.ndjson")"
[[ "$got" == "$(jq -c . <<<"$expected")" ]] || e2e_fail "rejects file: $got"
jq -e -s --arg f "$D/bad.ndjson" 'all(.[]; .file == $f and (.input | type) == "string")' "$D/rejects.ndjson" \
    >/dev/null || e2e_fail "rejects must name the file and hold the input: $(cat "$D/rejects.ndjson")"
# The same reports on stderr, one JSON log line each.
n="$(jq -c 'select(.message == "line rejected") | [.line, .error]' "$D/bad.log" | wc -l)"
((n == 6)) || e2e_fail "$n 'line rejected' log lines, expected 6"
imp_wait_rows 100002
for rid in bad-1 bad-2 bad-3 bad-4; do
    [[ "$(imp_psql -v r="$rid" <<<"select count(*) from profiles where recipient_id = :'r'")" == 0 ]] ||
        e2e_fail "a row exists for the rejected recipient $rid"
done
[[ "$(imp_psql -c "select version from profiles where recipient_id = 'bad-ok-2'")" == 3 ]] ||
    e2e_fail "the version of line 4 was not stored"
# Nothing was produced from the bad lines: the topic holds exactly the good records.
records="$(timeout 60 kcat -C -q -b "$PROFILED_KAFKA_BROKERS" -t "$E2E_TOPIC" -o beginning -e -f 'x\n' | wc -l)"
((records == 100002)) || e2e_fail "the topic holds $records records, expected 100002"
e2e_log "bad lines: rejected with their line numbers and the api's messages, nothing produced from them"

# A dry run validates only: same report, nothing produced, no checkpoint.
imp_import --job basic-dry --dry-run --checkpoint "$D/dry.ckpt" --max-rejects 1 "$D/bad.ndjson" 2>"$D/dry.log"
((IMP_RC == 4)) || e2e_fail "--max-rejects 1 with 2 bad lines exited $IMP_RC, expected 4"
[[ ! -e "$D/dry.ckpt" ]] || e2e_fail "a dry run wrote a checkpoint"

# ------------------------------------------------------------------ 3. CSV
printf '%s\r\n' 'Id,Mail,Verified,Notes,Ver,Plan' \
    'csv-1,one@example.com,true,"plain, with a comma",5,"{""tier"":""gold"",""seats"":3}"' \
    'csv-2,,false,"two ""quoted"" words",,' \
    'csv-3,three@example.com,true,"a note' 'over two lines",7,null' \
    'csv-4,four@example.com,"maybe",x,1,' \
    'csv-5,five@example.com,true,"unclosed"x,1,' >"$D/in.csv"
imp_import --job basic-csv --csv --map 'recipient_id=Id,email=Mail,email_verified:json=Verified,notes=Notes,version=Ver,plan:json=Plan' \
    --rejects "$D/csv.rejects" --summary-json "$D/csv.summary" "$D/in.csv" 2>"$D/csv.log"
((IMP_RC == 1)) || e2e_fail "CSV import exited $IMP_RC, expected 1: $(tail -n 3 "$D/csv.log")"
got="$(jq -s -c '[.[] | [.line, .message]]' "$D/csv.rejects")"
[[ "$got" == '[[6,"column Verified (field email_verified:json): value: invalid JSON at byte 0: expected a value"],[7,"cell 4: unexpected character after the closing quote at byte 39 (a quote inside a quoted cell is written \"\")"]]' ]] ||
    e2e_fail "CSV rejects: $got"
imp_wait_rows 100005
row() { imp_psql -v r="$1" <<<"select profile::text || ' ' || coalesce(version::text, '-') from profiles where recipient_id = :'r'"; }
want_row() {
    local got prof ver
    got="$(row "$1")"
    prof="${got% *}"
    ver="${got##* }"
    e2e_json_equal "$prof" "$2" && [[ "$ver" == "$3" ]] || e2e_fail "row $1 is '$got', expected $2 version $3"
}
want_row csv-1 '{"email":"one@example.com","email_verified":true,"notes":"plain, with a comma","plan":{"tier":"gold","seats":3}}' 5
want_row csv-2 '{"email_verified":false,"notes":"two \"quoted\" words"}' -
want_row csv-3 '{"email":"three@example.com","email_verified":true,"notes":"a note\r\nover two lines","plan":null}' 7
e2e_log "CSV: mapped, quoted and typed cells stored as expected; bad records rejected by line"

# ------------------------------------------------------------------ 4. progress
# Off a terminal: a JSON progress line every second (the input pauses for 2.5 s halfway).
imp_gen "$D/slow.ndjson" 200 200000
# (Not a pipeline into imp_import: that would run it in a subshell and lose IMP_RC.)
imp_import --job basic-slow --checkpoint "$D/slow.ckpt" --progress-interval 1 - 2>"$D/slow.log" \
    < <(head -n 100 "$D/slow.ndjson"; sleep 2.5; tail -n 100 "$D/slow.ndjson")
((IMP_RC == 0)) || e2e_fail "import from stdin exited $IMP_RC"
jq -e -s '[.[] | select(.message == "progress")] | length >= 2 and
          all(.[]; has("read") and has("acked") and has("rejected") and has("lines_per_s") and has("kb_per_s"))' \
    "$D/slow.log" >/dev/null || e2e_fail "no JSON progress lines off a terminal: $(grep progress "$D/slow.log" | head -3)"
# On a terminal: the live line, redrawn in place, with rates, share done and an ETA.
script -qfec "$(printf '%q ' "$IMP_BIN" --job basic-pty --dry-run "$D/big.ndjson")" /dev/null >"$D/pty.out" 2>&1 ||
    e2e_fail "the import on a pty failed: $(tail -c 300 "$D/pty.out")"
grep -q $'\r\033\[Kread [0-9]* *acked 0 *rejected 0 *[0-9.]* MB/s *[0-9]* lines/s *[0-9.]*% *ETA [0-9]*:[0-9][0-9]' "$D/pty.out" ||
    e2e_fail "no live progress line with MB/s, lines/s, share and ETA on the pty: $(head -c 400 "$D/pty.out" | od -c | head -10)"
grep -q '"message":"import finished"' "$D/pty.out" || e2e_fail "no final summary on the pty"
e2e_log "progress: JSON lines off a terminal, a live line on a pty"

e2e_stop || e2e_fail "the worker did not stop cleanly"
echo "import_basic: all checks passed"
