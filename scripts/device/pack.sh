#!/bin/bash
# Packs .device/ (ignored by git): what one call on the GPU machine needs beside the repo,
# which has no Node and no network there. Then, from a session lent a device:
#   run(command="bash scripts/device/run.sh", carry=[".device"], timeout_s=540)
# Contents: this machine's node binary (xz), the built package (dist/, the addon, its native
# test and the fake CUDA drivers that test loads, the production node_modules), the reference
# vectors, and the peer loaders `tensorize bench --peers` times there, as wheels for its Python
# (cp312, manylinux x86_64; never committed, they only travel; run.sh installs them with pip
# --no-index): the pins of scripts/peers/requirements.txt (tensorizer's first, Run:ai's
# streamer, fastsafetensors, and its "#gpu" lines: instanttensor, flashpack), without their
# dependencies: torch, numpy, safetensors, humanize, accelerate, click, tqdm, psutil and protobuf
# are in that machine's image, and scripts/device/pystubs stands in for boto3, botocore, redis
# and libnacl, which a local load never uses. The wheels are downloaded once into
# $TENSORIZE_WHEELS (default ~/.cache/tensorize/gpu-wheels). A call carries at most 64 MiB
# (KIT_LIMIT_MIB, default 63, leaves room for untracked files): each wheel, in this order, goes
# in if it still fits, and what does not is named: tensorizer, instanttensor, fastsafetensors,
# Run:ai, flashpack, Run:ai's S3 backend (no S3 there); the sizes are printed at the end. The
# scripts themselves, and the files of the tree that gpu-check.mjs imports
# (test/helpers/manifest.mjs), travel with the tracked tree, not in .device: packing stops if
# one of those imports is not tracked.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
for dep in $(sed -nE "s|^import .* from '(\.[^']+)';$|\1|p" scripts/device/gpu-check.mjs); do
  f=$(realpath --relative-to=. "scripts/device/$dep")
  git ls-files --error-unmatch "$f" >/dev/null 2>&1 || { echo "$f (imported by scripts/device/gpu-check.mjs) is not tracked: it would not reach the GPU machine" >&2; exit 1; }
done
VECTORS=${TENSORIZE_VECTORS:-$ROOT/../shared/vectors}
WHEELS=${TENSORIZE_WHEELS:-$HOME/.cache/tensorize/gpu-wheels}
LIMIT=$(( ${KIT_LIMIT_MIB:-63} * 1048576 ))
REQ=scripts/peers/requirements.txt
pin() { sed -nE "s/^(#gpu )?($1==[^ ]+).*/\2/p" "$REQ" | head -1; }
PEER_WHEELS=("$(pin tensorizer)" "$(pin instanttensor)" "$(pin fastsafetensors)" "$(pin runai-model-streamer)" "$(pin flashpack)" "$(pin runai-model-streamer-s3)")
EXCLUDE=$(git rev-parse --git-path info/exclude)   # the main checkout's, in a worktree
grep -qsx '/.device/' "$EXCLUDE" || { mkdir -p "$(dirname "$EXCLUDE")" && echo '/.device/' >> "$EXCLUDE"; }
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

# the peers' wheels: downloaded once (pip matches each manylinux tag exactly, so name them all)
mkdir -p "$WHEELS"
wheel_of() { local n=${1%%==*} v=${1#*==}; compgen -G "$WHEELS/${n//-/_}-$v-*.whl" | head -1; }
for p in "${PEER_WHEELS[@]}"; do
  [ -n "$p" ] || { echo "a peer pin is missing from $REQ" >&2; exit 1; }
  [ -n "$(wheel_of "$p")" ] && continue
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$WHEELS" \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_30_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any "$p" >&2 ||
    { echo "pip download $p failed (no network? the wheels are cached in $WHEELS once fetched)" >&2; exit 1; }
done
mkdir -p .device/wheels
size() { du -cb "$@" | tail -1 | cut -f1; }
tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
total=$(( $(size .device/*.xz .device/*.txt) + tree ))
left_out=()
for p in "${PEER_WHEELS[@]}"; do
  w=$(wheel_of "$p")
  if [ $(( total + $(size "$w") )) -le "$LIMIT" ]; then cp "$w" .device/wheels/; total=$(( total + $(size "$w") )); else left_out+=("$p"); fi
done
du -b .device/*.* .device/wheels/* | awk '{printf "%-72s %6.1f MiB\n", $2, $1/1048576}'
[ ${#left_out[@]} -eq 0 ] || echo "left out (over ${LIMIT} bytes with them): ${left_out[*]}" >&2
total=$(( $(size .device) + tree ))
printf 'with the tracked tree: %.1f MiB of the 64 MiB a call carries\n' "$(echo "$total/1048576" | bc -l)"
