#!/usr/bin/env bash
# e2e_sdk_python: Courier's official Python SDK (PyPI trycourier) pointed at profiled by
# its base_url option, against the real api, worker and stack (sdk_python_test.py).
#
# The SDK is installed by this test with pip into a venv under <repo>/.cache/e2e/ and
# reused by later runs (a marker file names the installed version). When it cannot be
# installed (no network, no python3 venv module) the test FAILS, saying so.
#
# Usage (ctest): sdk_python_test.sh <profiled-api> <profiled-worker> <repo>
# Knob: E2E_TRYCOURIER_VERSION (default below) picks the SDK version to test.
set -euo pipefail
E2E_API_BIN="$1"
E2E_WORKER_BIN="$2"
REPO="$3"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"

VERSION="${E2E_TRYCOURIER_VERSION:-9.13.0}"
CACHE="$REPO/.cache/e2e"
VENV="$CACHE/python-trycourier-$VERSION"

# Installs trycourier==VERSION into VENV once; later runs find the marker and skip pip.
install_sdk() {
    mkdir -p "$CACHE"
    exec 9>"$CACHE/python.lock"
    flock -w 600 9 || e2e_fail "could not lock $CACHE/python.lock within 600s"
    if [[ -f "$VENV/.installed" ]] && "$VENV/bin/python" -c 'import courier' 2>/dev/null; then
        e2e_log "trycourier $VERSION already installed in $VENV"
        exec 9>&-
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || e2e_fail "python3 is not installed; the Python SDK test needs it (apt-get install python3 python3-venv)"
    rm -rf "$VENV"
    python3 -m venv "$VENV" >"$CACHE/python-venv.log" 2>&1 ||
        e2e_fail "python3 -m venv failed (is python3-venv installed? apt-get install python3-venv): $(tail -n 3 "$CACHE/python-venv.log")"
    e2e_log "installing trycourier==$VERSION from PyPI into $VENV"
    if ! timeout 600 "$VENV/bin/pip" install --disable-pip-version-check --no-input -q "trycourier==$VERSION" \
        >"$CACHE/python-pip.log" 2>&1; then
        rm -rf "$VENV"
        e2e_fail "pip could not install trycourier==$VERSION from PyPI (no network, or the version is gone?);" \
            "the Courier Python SDK test cannot run without it. pip said: $(tail -n 5 "$CACHE/python-pip.log")"
    fi
    "$VENV/bin/python" -c 'import courier' || e2e_fail "trycourier installed but 'import courier' fails"
    echo "$VERSION" >"$VENV/.installed"
    exec 9>&-
}

e2e_require_env
install_sdk
e2e_start python

ids_file="$E2E_DIR/ids.jsonl"
E2E_BASE_URL="$E2E_BASE_URL" E2E_KEY="$E2E_KEY" E2E_RUN="$E2E_RUN" E2E_IDS_FILE="$ids_file" \
    COURIER_API_KEY= COURIER_BASE_URL= timeout 240 "$VENV/bin/python" "$HERE/sdk_python_test.py" ||
    e2e_fail "the Python SDK cases failed (above)"

e2e_check_ids_stored "$ids_file"

e2e_stop || e2e_fail "the services did not stop cleanly"
echo "e2e_sdk_python: all checks passed"
