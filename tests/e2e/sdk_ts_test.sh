#!/usr/bin/env bash
# e2e_sdk_typescript: Courier's official TypeScript SDK (npm @trycourier/courier) pointed
# at profiled by its baseURL option, against the real api, worker and stack
# (sdk_ts_test.mjs, plain JavaScript on node: the package ships compiled JS).
#
# The SDK is installed by this test with npm into <repo>/.cache/e2e/ and reused by
# later runs (a marker file names the installed version). When it cannot be installed
# (no network, no node/npm) the test FAILS, saying so.
#
# Usage (ctest): sdk_ts_test.sh <profiled-api> <profiled-worker> <repo>
# Knob: E2E_COURIER_NPM_VERSION (default below) picks the SDK version to test.
set -euo pipefail
E2E_API_BIN="$1"
E2E_WORKER_BIN="$2"
REPO="$3"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib.sh"

VERSION="${E2E_COURIER_NPM_VERSION:-7.10.2}"
CACHE="$REPO/.cache/e2e"
SDK_DIR="$CACHE/node-courier-$VERSION"

# Installs @trycourier/courier@VERSION into SDK_DIR once; later runs find the marker.
install_sdk() {
    command -v node >/dev/null 2>&1 || e2e_fail "node is not installed; the TypeScript SDK test needs node >= 18 and npm"
    command -v npm >/dev/null 2>&1 || e2e_fail "npm is not installed; the TypeScript SDK test needs it"
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    ((major >= 18)) || e2e_fail "node $(node --version) is too old: the SDK needs node >= 18 (global fetch)"
    mkdir -p "$CACHE"
    exec 9>"$CACHE/node.lock"
    flock -w 600 9 || e2e_fail "could not lock $CACHE/node.lock within 600s"
    if [[ -f "$SDK_DIR/.installed" && -f "$SDK_DIR/node_modules/@trycourier/courier/package.json" ]]; then
        e2e_log "@trycourier/courier $VERSION already installed in $SDK_DIR"
        exec 9>&-
        return 0
    fi
    rm -rf "$SDK_DIR"
    mkdir -p "$SDK_DIR"
    echo '{"name": "profiled-e2e-sdk", "private": true}' >"$SDK_DIR/package.json"
    e2e_log "installing @trycourier/courier@$VERSION from npm into $SDK_DIR"
    if ! (cd "$SDK_DIR" && timeout 600 npm install --no-audit --no-fund --no-update-notifier \
        "@trycourier/courier@$VERSION") >"$CACHE/node-npm.log" 2>&1; then
        rm -rf "$SDK_DIR"
        e2e_fail "npm could not install @trycourier/courier@$VERSION (no network, or the version is gone?);" \
            "the Courier TypeScript SDK test cannot run without it. npm said: $(tail -n 5 "$CACHE/node-npm.log")"
    fi
    echo "$VERSION" >"$SDK_DIR/.installed"
    exec 9>&-
}

e2e_require_env
install_sdk
e2e_start typescript

ids_file="$E2E_DIR/ids.jsonl"
E2E_SDK_DIR="$SDK_DIR" E2E_BASE_URL="$E2E_BASE_URL" E2E_KEY="$E2E_KEY" E2E_RUN="$E2E_RUN" \
    E2E_IDS_FILE="$ids_file" COURIER_API_KEY= COURIER_BASE_URL= \
    timeout 240 node "$HERE/sdk_ts_test.mjs" || e2e_fail "the TypeScript SDK cases failed (above)"

e2e_check_ids_stored "$ids_file"

e2e_stop || e2e_fail "the services did not stop cleanly"
echo "e2e_sdk_typescript: all checks passed"
