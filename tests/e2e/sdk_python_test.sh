#!/usr/bin/env bash
# e2e_sdk_python: Courier's official Python SDK (PyPI trycourier) pointed at profiled by
# its base_url option, against the real api, worker and stack (sdk_python_test.py).
#
# The SDK is installed by this test with pip into a venv under <repo>/.cache/e2e/ and
# reused by later runs (a marker file names the installed version). When it cannot be
# installed (no network, no python3 venv module) the test FAILS, saying so.
#
# Usage (ctest): sdk_python_test.sh <profiled-api> <profiled-worker> <repo>
# Knob: E2E_TRYCOURIER_VERSION (default in lib.sh) picks the SDK version to test.
set -euo pipefail
E2E_API_BIN="$1"
E2E_WORKER_BIN="$2"
REPO="$3"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"

e2e_require_env
e2e_python_sdk_install "$REPO"
e2e_start python

ids_file="$E2E_DIR/ids.jsonl"
E2E_BASE_URL="$E2E_BASE_URL" E2E_KEY="$E2E_KEY" E2E_RUN="$E2E_RUN" E2E_IDS_FILE="$ids_file" \
    COURIER_API_KEY= COURIER_BASE_URL= timeout 240 "$E2E_PY" "$HERE/sdk_python_test.py" ||
    e2e_fail "the Python SDK cases failed (above)"

e2e_check_ids_stored "$ids_file"

e2e_stop || e2e_fail "the services did not stop cleanly"
echo "e2e_sdk_python: all checks passed"
