#!/bin/bash
# The native test program built with AddressSanitizer + UndefinedBehaviorSanitizer and,
# separately, ThreadSanitizer, then run on two simulated GPUs (TENSORIZE_SIM_GPU=2): the
# loader, the copy engine, the hashes, the HTTP fetcher (its own fault-injecting server), the
# device layer and the CUDA driver backend (on fake drivers) under both. Exit 0 only when
# both runs pass and neither sanitizer reported anything. Used by test/sanitizers.test.ts.
#   bash scripts/sanitize.sh [asan|tsan]...   (default: both; builds in native/build/sanitize)
set -u
cd "$(dirname "$0")/../native"
OUT=build/sanitize
mkdir -p $OUT
# The same sources as the CMake test program (native/CMakeLists.txt), read from it so that
# a new unit cannot be left out here.
CORE=$(sed -n 's/^set(CORE_SOURCES \(.*\))$/\1/p' CMakeLists.txt)
TESTS=$(sed -n 's/^add_executable(tensorize_native_test \(.*\) ${CORE_SOURCES})$/\1/p' CMakeLists.txt)
if [ -z "$CORE" ] || [ -z "$TESTS" ]; then echo "sanitize.sh: cannot read the sources from native/CMakeLists.txt" >&2; exit 2; fi
SRC="$TESTS $CORE"
# libsodium (crypt.cc's) as CMake built it, uninstrumented: npm run build:native first.
SODIUM=build/libtzsodium.a
if [ ! -f $SODIUM ]; then echo "sanitize.sh: $SODIUM is missing: run npm run build:native first" >&2; exit 2; fi
kinds=("$@")
[ ${#kinds[@]} -eq 0 ] && kinds=(asan tsan)
build() {
  local k=$1 flags
  case $k in
    asan) flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined" ;;
    tsan) flags="-fsanitize=thread" ;;
    *) echo "unknown sanitizer $k" >&2; return 2 ;;
  esac
  g++ -std=c++17 -O1 -g -fno-omit-frame-pointer $flags -pthread -DTENSORIZE_NATIVE_SRC_DIR="\"$PWD/src\"" -DSODIUM_STATIC=1 -Ithird_party/libsodium/libsodium/include $SRC $SODIUM -ldl -o $OUT/${k}_test
}
# The fake CUDA drivers the CUDA backend's tests load, beside the test programs (uninstrumented:
# one set serves both sanitizers; the backend's side of every call is instrumented).
fakes() {
  local f
  for f in tzfakecuda=12080 tzfakecuda10=10020 tzfakecuda9=9020; do
    g++ -std=c++17 -O1 -g -fPIC -shared -pthread -DFAKE_CUDA_VERSION=${f#*=} test/fake_libcuda.cc -o $OUT/lib${f%=*}.so || return 1
  done
}
pids=()
fakes & pids+=($!)
for k in "${kinds[@]}"; do build "$k" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || { echo "sanitizer build failed" >&2; exit 2; }; done
status=0
for k in "${kinds[@]}"; do
  log=$OUT/$k.log
  # Two simulated devices: the GPU rounds run too, and TSan sees the simulator's stream and
  # callback threads touch the ring (races in the GPU orchestration show up).
  TENSORIZE_SIM_GPU=2 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1 \
    $OUT/${k}_test > "$log" 2>&1
  rc=$?
  reports=$(grep -cE "ERROR: (Address|Leak)Sanitizer|runtime error:|WARNING: ThreadSanitizer" "$log")
  echo "$k: exit $rc, $reports sanitizer report(s), $(grep -E '^[0-9]+ passed' "$log")"
  if [ $rc -ne 0 ] || [ "$reports" -ne 0 ]; then
    status=1
    grep -E -A12 "ERROR: (Address|Leak)Sanitizer|runtime error:|WARNING: ThreadSanitizer|FAIL" "$log" | head -60
  fi
done
exit $status
