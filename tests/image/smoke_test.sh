#!/usr/bin/env bash
# ctest image_smoke: `make -f Makefile.docker smoke` against the stack that tests/run
# exported. Exit 77 (skipped) names a missing tool; deploy/docker/smoke checks the rest.
set -euo pipefail
REPO="$1"
for tool in make buildah podman curl jq; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "image_smoke: SKIPPED: '$tool' not found (deploy/local/deps installs it from Debian's packages)" >&2
        exit 77
    fi
done
if [[ -z "${PROFILED_PG_DSN:-}" || -z "${PROFILED_KAFKA_BROKERS:-}" ]]; then
    echo "image_smoke: PROFILED_PG_DSN and PROFILED_KAFKA_BROKERS are not set: run it through tests/run" \
        "(or eval \"\$(deploy/local/stack env)\" with a stack up)" >&2
    exit 1
fi
# make turns the script's exit 77 (skipped) into its own 2: tell them apart by the
# script's SKIPPED line.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
rc=0
make --no-print-directory -C "$REPO" -f Makefile.docker smoke 2> >(tee "$log" >&2) || rc=$?
wait
if ((rc != 0)) && grep -q '^smoke: SKIPPED' "$log"; then
    exit 77
fi
exit "$rc"
