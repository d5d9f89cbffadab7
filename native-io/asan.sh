#!/usr/bin/env bash
# Builds the native-io addon with AddressSanitizer in native-io/asan-build/ (a copy, so
# that the normal build in native-io/build/ stays in place for everyone else)
# and runs the native-io tests against that build. Node itself is not
# instrumented, so libasan is preloaded, and leak detection is off because
# Node does not free everything at exit. Usage: native-io/asan.sh [jest args]
# (benchsub's addon lives apart: see bench/loadgen/README.md.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
rm -rf "$here/asan-build"
mkdir -p "$here/asan-build"
cp -r "$here/binding.gyp" "$here/src" "$here/asan-build/"
prefix="$(cd "$(dirname "$(command -v node)")/.." && pwd)"
nodedir_arg=()
[ -f "$prefix/include/node/node_api.h" ] && nodedir_arg=(--nodedir="$prefix")
(cd "$here/asan-build" && C10M_ASAN=1 node "$root/node_modules/node-gyp/bin/node-gyp.js" rebuild "${nodedir_arg[@]}" >build.log 2>&1) \
  || { tail -30 "$here/asan-build/build.log"; exit 1; }
echo "asan: built $here/asan-build/build/Release/*.node"
cd "$root"
npm run build >/dev/null 2>&1 || echo "asan: npm run build reported errors; running on the dist/ it emitted"
export LD_PRELOAD="$(g++ -print-file-name=libasan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:print_summary=1"
export C10M_NATIVE_ADDON="$here/asan-build/build/Release/c10m_native.node"
exec npx jest test/native-io "$@"
