#!/usr/bin/env bash
# e2e_kinds: POST (merge), PATCH (JSON Patch) and DELETE against the real api, worker and
# stack, next to PUT (replace), on one recipient, so that the kinds apply in order:
#
#   1. PUT, then POST merges (null removes a key, objects merge deeply): GET shows the merge.
#   2. PATCH with add/replace/remove/move/copy/test and ~0/~1 escapes: GET shows the result.
#   3. A PATCH whose test does not match: recorded as refused with a reason in
#      applied_commands, answered 400 with that reason (applied mode, the default), profile
#      unchanged, nothing dead-lettered.
#   4. A PATCH on a missing path is refused the same way; a later PUT still applies.
#   5. DELETE: 204; GET then 404; a POST after it starts again from {}.
#   6. Bad bodies are 400 in the api (bad op, bad pointer, missing value, no patch member),
#      other methods 405 with the new Allow list.
#
# Usage (ctest): kinds_test.sh <profiled-api> <profiled-worker> <repo>
set -euo pipefail
E2E_API_BIN="$1"
E2E_WORKER_BIN="$2"
REPO="$3"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_require_env
e2e_start kinds

rid="e2e kinds/$E2E_RUN"
path="/profiles/$(e2e_uri_segment "$rid")"

# The outcome of a command id (hex): "applied", "stale", "refused: <reason>" or "" (not yet).
outcome_of() {
    e2e_psql -v id="$1" <<<"select coalesce(outcome, 'applied') || coalesce(': ' || reason, '')
        from applied_commands where command_id = decode(:'id', 'hex')"
}
last_id() {
    local id
    id="$(e2e_header X-Command-Id)"
    echo "${id//-/}"
}
processed() { [[ -n "$(outcome_of "$1")" ]]; }
write() { # method body expected-status
    e2e_http "$1" "$path" -H 'Content-Type: application/json' --data-binary "$2"
    [[ "$HTTP_STATUS" == "$3" ]] || e2e_fail "$1 $path $2 answered $HTTP_STATUS, expected $3: $(cat "$HTTP_BODY")"
}
write_applied() { # method body: waits until the worker processed it; echoes the outcome
    write "$1" "$2" "${3:-200}"
    local id
    id="$(last_id)"
    e2e_wait_until 30 "the worker to process $1 $id" processed "$id"
    outcome_of "$id"
}
profile_is() {
    e2e_http GET "$path"
    [[ "$HTTP_STATUS" == 200 ]] || e2e_fail "GET $path answered $HTTP_STATUS: $(cat "$HTTP_BODY")"
    e2e_json_equal "$(jq -c .profile "$HTTP_BODY")" "$1" ||
        e2e_fail "GET returned $(jq -c .profile "$HTTP_BODY"), expected $1"
}

# ---------------------------------------------------------------- 1. merge
out="$(write_applied PUT '{"profile":{"email":"a@example.com","phone_number":"+1555","custom":{"plan":"free","seats":1}}}')"
[[ "$out" == applied ]] || e2e_fail "PUT: $out"
write POST '{"profile":{"phone_number":null,"locale":"en-GB","custom":{"plan":"pro"}}}' 200
jq -e '. == {"status":"SUCCESS"}' "$HTTP_BODY" >/dev/null || e2e_fail "POST body $(cat "$HTTP_BODY")"
id="$(last_id)"
e2e_wait_until 30 "the merge to apply" processed "$id"
profile_is '{"email":"a@example.com","custom":{"plan":"pro","seats":1},"locale":"en-GB"}'
e2e_log "POST merges: null removes phone_number, custom merges deeply"

# ---------------------------------------------------------------- 2. patch
out="$(write_applied PATCH '{"patch":[
  {"op":"test","path":"/email","value":"a@example.com"},
  {"op":"replace","path":"/email","value":"b@example.com"},
  {"op":"add","path":"/custom/a~1b~0c","value":[1,2]},
  {"op":"add","path":"/custom/a~1b~0c/1","value":9},
  {"op":"copy","from":"/locale","path":"/custom/lang"},
  {"op":"move","from":"/custom/seats","path":"/seats"},
  {"op":"remove","path":"/locale"}]}')"
[[ "$out" == applied ]] || e2e_fail "PATCH: $out"
profile_is '{"email":"b@example.com","custom":{"plan":"pro","a/b~c":[1,9,2],"lang":"en-GB"},"seats":1}'
e2e_log "PATCH applies the six operations with ~0/~1 escapes"

# ---------------------------------------------------------------- 3, 4. refusals
out="$(write_applied PATCH '{"patch":[{"op":"replace","path":"/seats","value":5},{"op":"test","path":"/email","value":"x@example.com"}]}' 400)"
[[ "$out" == "refused: patch[1] (test /email): the value differs" ]] || e2e_fail "failing test: outcome '$out'"
jq -e '.type == "invalid_request_error" and (.message | contains("patch[1] (test /email): the value differs"))' \
    "$HTTP_BODY" >/dev/null || e2e_fail "failing test answered $(cat "$HTTP_BODY")"
profile_is '{"email":"b@example.com","custom":{"plan":"pro","a/b~c":[1,9,2],"lang":"en-GB"},"seats":1}'
out="$(write_applied PATCH '{"patch":[{"op":"remove","path":"/nothing/here"}]}' 400)"
[[ "$out" == refused:*"patch[0] (remove /nothing/here)"* ]] || e2e_fail "missing path: outcome '$out'"
dlq="$(timeout 20 kcat -C -q -b "$PROFILED_KAFKA_BROKERS" -t "$E2E_DLQ_TOPIC" -o beginning -e -f '%k\n' 2>/dev/null | grep -cF "$rid" || true)"
[[ "$dlq" == 0 ]] || e2e_fail "a refused patch was dead-lettered"
e2e_log "refused patches: recorded with their reason, profile unchanged, not dead-lettered"

# ---------------------------------------------------------------- 5. delete
write DELETE '' 204
[[ ! -s "$HTTP_BODY" ]] || e2e_fail "DELETE answered a body: $(cat "$HTTP_BODY")"
id="$(last_id)"
e2e_wait_until 30 "the delete to apply" processed "$id"
e2e_http GET "$path"
[[ "$HTTP_STATUS" == 404 ]] || e2e_fail "GET after DELETE answered $HTTP_STATUS"
out="$(write_applied POST '{"profile":{"name":"again"}}')"
[[ "$out" == applied ]] || e2e_fail "POST after DELETE: $out"
profile_is '{"name":"again"}'
e2e_log "DELETE is 204, GET then 404, a POST starts again from {}"

# ---------------------------------------------------------------- 6. rejected in the api
for body in '{"patch":[{"op":"increment","path":"/a"}]}' '{"patch":[{"op":"remove","path":"a"}]}' \
    '{"patch":[{"op":"remove","path":"/a~2"}]}' '{"patch":[{"op":"add","path":"/a"}]}' '{"patch":{}}' \
    '{"ops":[]}' '{"patch":[{"op":"move","from":"/a","path":"/a/b"}]}'; do
    write PATCH "$body" 400
    jq -e '.type == "invalid_request_error" and (.message | test("patch"))' "$HTTP_BODY" >/dev/null ||
        e2e_fail "PATCH $body: $(cat "$HTTP_BODY")"
done
write POST '{"profile":[1]}' 400
e2e_http OPTIONS "$path"
[[ "$HTTP_STATUS" == 405 && "$(e2e_header Allow)" == "GET, HEAD, PUT, POST, PATCH, DELETE" ]] ||
    e2e_fail "OPTIONS answered $HTTP_STATUS Allow '$(e2e_header Allow)'"
e2e_log "bad patches are 400 naming the operation; other methods 405"
e2e_log "passed"
