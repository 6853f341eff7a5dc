#!/bin/bash
# Packs .device/ (ignored by git): what one call on the GPU machine needs beside the repo,
# which has no Node and no network there. Then, from a session lent a device:
#   run(command="bash scripts/device/run.sh", carry=[".device"], timeout_s=540)
# Contents: this machine's node binary (xz), the built package (dist/, the addon, its native
# test and the fake CUDA drivers that test loads, the production node_modules), the reference
# vectors, and, when TENSORIZER_PATH (default /work/peers/tensorizer) holds a tensorizer
# checkout, its Python package as the reference peer (never committed; it only travels). A call
# carries at most 64 MiB: the sizes are printed at the end. The scripts themselves, and the
# files of the tree that gpu-check.mjs imports (test/helpers/manifest.mjs), travel with the
# tracked tree, not in .device: packing stops if one of those imports is not tracked.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
for dep in $(sed -nE "s|^import .* from '(\.[^']+)';$|\1|p" scripts/device/gpu-check.mjs); do
  f=$(realpath --relative-to=. "scripts/device/$dep")
  git ls-files --error-unmatch "$f" >/dev/null 2>&1 || { echo "$f (imported by scripts/device/gpu-check.mjs) is not tracked: it would not reach the GPU machine" >&2; exit 1; }
done
VECTORS=${TENSORIZE_VECTORS:-$ROOT/../shared/vectors}
TZ=${TENSORIZER_PATH:-/work/peers/tensorizer}
grep -qsx '/.device/' .git/info/exclude || { mkdir -p .git/info && echo '/.device/' >> .git/info/exclude; }
npm run build >/dev/null
npm run build:native >/dev/null
# (No CUDA toolkit is needed: the addon calls the GPU machine's libcuda.so.1 at run time.)
rm -rf .device && mkdir -p .device
xz -T0 -6 -c "$(command -v node)" > .device/node.xz
# production packages, without entries already inside another listed one
npm ls --omit=dev --parseable --all 2>/dev/null | sed "s|^$ROOT/||" | grep '^node_modules/' | sort -u |
  awk 'BEGIN{k=""} { if (k != "" && index($0, k "/") == 1) next; print; k=$0 }' > .device/packages.txt
tar -cJf .device/runtime.tar.xz dist native/build/Release/tensorize_native.node native/build/tensorize_native_test native/build/libtzfakecuda*.so -T .device/packages.txt
tar -cJf .device/vectors.tar.xz -C "$(dirname "$VECTORS")" "$(basename "$VECTORS")"
if [ -d "$TZ/tensorizer" ]; then tar -cJf .device/tensorizer.tar.xz -C "$TZ" tensorizer; else echo "no tensorizer at $TZ: the peer will be skipped" >&2; fi
du -b .device/* | awk '{printf "%-32s %6.1f MiB\n", $2, $1/1048576}'
tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
total=$(( $(du -cb .device/* | tail -1 | cut -f1) + tree ))
printf 'with the tracked tree: %.1f MiB of the 64 MiB a call carries\n' "$(echo "$total/1048576" | bc -l)"
