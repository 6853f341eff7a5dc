#!/bin/bash
# The native test program built with AddressSanitizer + UndefinedBehaviorSanitizer and,
# separately, ThreadSanitizer (host-only: no CUDA), then run: the loader, the copy engine,
# the hashes and the HTTP fetcher (its own fault-injecting server) under both. Exit 0 only
# when both runs pass and neither sanitizer reported anything. Used by test/sanitizers.test.ts.
#   bash scripts/sanitize.sh [asan|tsan]...   (default: both; builds in native/build/sanitize)
set -u
cd "$(dirname "$0")/../native"
OUT=build/sanitize
mkdir -p $OUT
SRC="test/pipeline_test.cc test/copy_test.cc test/fetch_test.cc test/cache_test.cc src/loader.cc src/copy.cc src/hash.cc src/io.cc src/net.cc src/fetch.cc src/cache.cc"
kinds=("$@")
[ ${#kinds[@]} -eq 0 ] && kinds=(asan tsan)
build() {
  local k=$1 flags
  case $k in
    asan) flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined" ;;
    tsan) flags="-fsanitize=thread" ;;
    *) echo "unknown sanitizer $k" >&2; return 2 ;;
  esac
  g++ -std=c++17 -O1 -g -fno-omit-frame-pointer $flags -pthread $SRC -ldl -o $OUT/${k}_test
}
pids=()
for k in "${kinds[@]}"; do build "$k" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || { echo "sanitizer build failed" >&2; exit 2; }; done
status=0
for k in "${kinds[@]}"; do
  log=$OUT/$k.log
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1 \
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
