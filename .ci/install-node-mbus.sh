#!/usr/bin/env bash
# Install node-mbus (the Node.js binding of libmbus) into tests/interop/node_modules for the
# libmbus interop tests (tests/test_interop_libmbus.py).
#
# node-mbus compiles libmbus and its binding with node-gyp at install time, so this needs the
# machine's node and npm, python3, make and a C/C++ compiler (g++), and node's headers. Where
# the distribution ships the headers (/usr/include/node) they are used, so nothing is downloaded
# besides the npm packages. Idempotent: a second run with a working build does nothing.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
interop="$here/tests/interop"
binding="$interop/node_modules/node-mbus/build/Release/mbus.node"

for tool in node npm python3 make g++; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-node-mbus: '$tool' is missing; node-mbus needs node, npm, python3, make and g++" >&2
        exit 1
    fi
done

works() {
    (cd "$interop" && node -e "require('node-mbus')" >/dev/null 2>&1)
}

if [ -f "$binding" ] && works; then
    echo "install-node-mbus: node-mbus already installed in $interop/node_modules"
    exit 0
fi

nodedir_args=()
prefix="$(dirname "$(dirname "$(command -v node)")")"
if [ -f "$prefix/include/node/node.h" ]; then
    nodedir_args=(--nodedir="$prefix")
fi

cd "$interop"
# npm >= 11 skips dependency install scripts unless package.json's allowScripts approves them
# (ours approves node-mbus; older npm runs them anyway). node-gyp rebuild is its install script.
npm install --no-audit --no-fund "${nodedir_args[@]}"
if [ ! -f "$binding" ]; then
    npm rebuild node-mbus "${nodedir_args[@]}"
fi
if ! works; then
    echo "install-node-mbus: node-mbus installed but require('node-mbus') fails" >&2
    exit 1
fi
echo "install-node-mbus: node-mbus ready in $interop/node_modules"
