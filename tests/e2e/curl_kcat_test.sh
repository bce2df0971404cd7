#!/usr/bin/env bash
# e2e_curl_kcat: the whole path with plain tools, against the real api, worker and stack.
#
#   1. curl -X PUT with the key and a body: 200 {"status":"SUCCESS"} with X-Command-Id,
#      X-Kafka-Partition and X-Kafka-Offset.
#   2. kcat reads the record at that position: key = recipient id, value = a replace
#      command (decoded by the codec) with that id and the profile that was sent.
#   3. psql: the row appears, written by that command at that position, profile equal.
#   4. GET returns it; a second PUT of {} clears it; an unknown id is 404.
#   5. Golden vectors from proto/vectors/valid/, produced by hand with kcat -P -k, are
#      applied by the worker: rows visible through GET, with the vectors' command ids.
#
# Usage (ctest): curl_kcat_test.sh <profiled-api> <profiled-worker> <e2e_decode> <repo>
set -euo pipefail
E2E_API_BIN="$1"
E2E_WORKER_BIN="$2"
DECODE="$3"
REPO="$4"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_require_env
e2e_start curl

# ---------------------------------------------------------------- 1. PUT with curl
rid="e2e curl/$E2E_RUN/Zoë 🙂"
path="/profiles/$(e2e_uri_segment "$rid")"
profile='{"email":"ada@example.com","email_verified":true,"phone_number":"+15555550123",
  "address":{"formatted":"12 St James'"'"'s Square","locality":"London","country":"GB"},
  "custom":{"plan":"pro","seats":25,"negative":-7,"big":9007199254740991,"ratio":0.875,
            "tiny":1e-7,"nested":{"deeper":[1,2.5,"three",null,false,{"k":"v"}]}},
  "name":"Zoë Ünïcödé 日本語 🙂","empty_obj":{},"empty_arr":[]}'
e2e_http PUT "$path" -H 'Content-Type: application/json' --data-binary "{\"profile\": $profile}"
[[ "$HTTP_STATUS" == 200 ]] || e2e_fail "PUT $path answered $HTTP_STATUS: $(cat "$HTTP_BODY")"
jq -e '. == {"status":"SUCCESS"}' "$HTTP_BODY" >/dev/null ||
    e2e_fail "PUT answered 200 with body $(cat "$HTTP_BODY"), expected {\"status\":\"SUCCESS\"}"
command_id="$(e2e_header X-Command-Id)"
partition="$(e2e_header X-Kafka-Partition)"
offset="$(e2e_header X-Kafka-Offset)"
# The api writes the 16-byte id as a UUID (8-4-4-4-12 hex); the row and the codec as 32 hex digits.
[[ "$command_id" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] ||
    e2e_fail "X-Command-Id is '$command_id', expected a UUID"
command_id="${command_id//-/}"
[[ "$partition" =~ ^[0-9]+$ && "$offset" =~ ^[0-9]+$ ]] ||
    e2e_fail "X-Kafka-Partition '$partition' / X-Kafka-Offset '$offset' are not numbers"
e2e_log "PUT 200: command $command_id at $E2E_TOPIC/$partition/$offset"

# ---------------------------------------------------------------- 2. the record in Kafka
timeout 30 kcat -C -q -b "$PROFILED_KAFKA_BROKERS" -t "$E2E_TOPIC" -p "$partition" -o "$offset" -c 1 -e \
    -f '%k' >"$E2E_DIR/record.key" || e2e_fail "kcat could not read $E2E_TOPIC/$partition/$offset"
timeout 30 kcat -C -q -b "$PROFILED_KAFKA_BROKERS" -t "$E2E_TOPIC" -p "$partition" -o "$offset" -c 1 -e \
    -f '%s' >"$E2E_DIR/record.value" || e2e_fail "kcat could not read $E2E_TOPIC/$partition/$offset"
[[ "$(cat "$E2E_DIR/record.key")" == "$rid" ]] ||
    e2e_fail "the record's key is '$(cat "$E2E_DIR/record.key")', expected the recipient id '$rid'"
decoded="$("$DECODE" "$E2E_DIR/record.value" "$rid")" ||
    e2e_fail "the record at $E2E_TOPIC/$partition/$offset is not a valid replace command"
# source is optional (proto/README.md §1); accepted_at_us must be now, give or take a minute.
now_us="$(($(date +%s) * 1000000))"
jq -e --arg id "$command_id" --arg rid "$rid" --argjson now "$now_us" \
    '.command_id == $id and .recipient_id == $rid and .version == null and
     (.source == null or .source == "api") and (.accepted_at_us - $now | fabs) < 60000000' \
    <<<"$decoded" >/dev/null || e2e_fail "the command in Kafka does not match the PUT: $decoded"
e2e_json_equal "$(jq -c .profile <<<"$decoded")" "$profile" ||
    e2e_fail "the profile in Kafka differs from the one sent: $(jq -c .profile <<<"$decoded")"
e2e_log "Kafka holds the command: key, id, source and profile match"

# ---------------------------------------------------------------- 3. the row in PostgreSQL
row_written_by() {
    local got
    got="$(e2e_psql -v rid="$rid" <<<"select encode(command_id, 'hex') from profiles where recipient_id = :'rid'")"
    [[ "$got" == "$1" ]]
}
e2e_wait_until 30 "the worker to write the row of '$rid'" row_written_by "$command_id"
row="$(e2e_psql -v rid="$rid" <<<"select json_build_object('topic', kafka_topic, 'partition', kafka_partition,
    'offset', kafka_offset, 'version', version, 'profile', profile)
    from profiles where recipient_id = :'rid'")"
jq -e --arg t "$E2E_TOPIC" --argjson p "$partition" --argjson o "$offset" \
    '.topic == $t and .partition == $p and .offset == $o and .version == null' <<<"$row" >/dev/null ||
    e2e_fail "the row's position is not the PUT's ($E2E_TOPIC/$partition/$offset): $row"
e2e_json_equal "$(jq -c .profile <<<"$row")" "$profile" ||
    e2e_fail "the row's profile differs from the one sent: $(jq -c .profile <<<"$row")"
e2e_log "PostgreSQL holds the row, written by that command at that position"

# ---------------------------------------------------------------- 4. GET, clear, 404
e2e_http GET "$path"
[[ "$HTTP_STATUS" == 200 ]] || e2e_fail "GET $path answered $HTTP_STATUS: $(cat "$HTTP_BODY")"
jq -e '.preferences == null and (keys | sort) == ["preferences", "profile"]' "$HTTP_BODY" >/dev/null ||
    e2e_fail "GET body is not {\"profile\":…,\"preferences\":null}: $(cat "$HTTP_BODY")"
e2e_json_equal "$(jq -c .profile "$HTTP_BODY")" "$profile" ||
    e2e_fail "GET returned a different profile: $(jq -c .profile "$HTTP_BODY")"

e2e_http PUT "$path" -H 'Content-Type: application/json' --data-binary '{"profile": {}}'
[[ "$HTTP_STATUS" == 200 ]] || e2e_fail "PUT {} answered $HTTP_STATUS: $(cat "$HTTP_BODY")"
clear_id="$(e2e_header X-Command-Id)"
clear_id="${clear_id//-/}"
e2e_wait_until 30 "the worker to apply the clearing PUT" row_written_by "$clear_id"
e2e_http GET "$path"
[[ "$HTTP_STATUS" == 200 ]] && jq -e '.profile == {}' "$HTTP_BODY" >/dev/null ||
    e2e_fail "after PUT {}, GET answered $HTTP_STATUS $(cat "$HTTP_BODY"), expected an empty profile"

e2e_http GET "/profiles/$(e2e_uri_segment "e2e-unknown-$E2E_RUN")"
[[ "$HTTP_STATUS" == 404 ]] && jq -e '.type == "invalid_request_error" and (.message | type) == "string"' \
    "$HTTP_BODY" >/dev/null || e2e_fail "GET of an unknown id answered $HTTP_STATUS $(cat "$HTTP_BODY"), expected 404"
e2e_log "GET returns the profile; PUT {} clears it; an unknown id is 404"

# ---------------------------------------------------------------- 5. golden vectors by hand
# Each vector has a fixed command id, and the worker skips an id it applied before (in an
# earlier run on this database): forget the id and the recipient's row first, so the
# vector must really be applied by this run's worker from this run's topic.
for name in typical recipient_unicode; do
    meaning="$REPO/proto/vectors/valid/$name.json"
    bytes="$REPO/proto/vectors/valid/$name.msgpack"
    [[ -f "$meaning" && -f "$bytes" ]] || e2e_fail "golden vector $name not found under $REPO/proto/vectors/valid"
    key="$(jq -r .key "$meaning")"
    vector_id="$(jq -r .command.command_id "$meaning")"
    e2e_psql -v rid="$key" -v id="$vector_id" <<<"delete from applied_commands where command_id = decode(:'id', 'hex');
        delete from profiles where recipient_id = :'rid';" || e2e_fail "could not reset the row of vector $name"
    timeout 30 kcat -P -q -b "$PROFILED_KAFKA_BROKERS" -t "$E2E_TOPIC" -k "$key" \
        -X topic.partitioner=murmur2_random -X acks=all -X enable.idempotence=true "$bytes" ||
        e2e_fail "kcat could not produce $bytes"
    vector_path="/profiles/$(e2e_uri_segment "$key")"
    vector_applied() {
        e2e_http GET "$vector_path"
        [[ "$HTTP_STATUS" == 200 ]]
    }
    e2e_wait_until 30 "the worker to apply golden vector $name (GET $vector_path)" vector_applied
    e2e_json_equal "$(jq -c .profile "$HTTP_BODY")" "$(jq -r .profile_json "$meaning")" ||
        e2e_fail "vector $name: GET returned $(jq -c .profile "$HTTP_BODY"), expected $(jq -r .profile_json "$meaning")"
    got="$(e2e_psql -v rid="$key" <<<"select encode(command_id, 'hex') || ' ' || kafka_topic from profiles where recipient_id = :'rid'")"
    [[ "$got" == "$vector_id $E2E_TOPIC" ]] ||
        e2e_fail "vector $name: the row was written by '$got', expected command $vector_id from $E2E_TOPIC"
    e2e_log "golden vector $name (key '$key') produced with kcat is applied and readable"
done

e2e_stop || e2e_fail "the services did not stop cleanly"
echo "e2e_curl_kcat: all checks passed"
