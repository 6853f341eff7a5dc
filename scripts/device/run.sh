#!/bin/bash
# Every GPU check and benchmark of the loader in one call on the GPU machine, which has no
# Node and no network: pack first with scripts/device/pack.sh, then
#   run(command="bash scripts/device/run.sh", carry=[".device"], timeout_s=540)
# What comes back in $OUT (8 files at most): log.txt (everything), doctor.json,
# native-test.txt, gpu-check.txt, bench-gpu.json + bench-gpu.svg (`tensorize bench --peers`:
# the tensorize methods, every peer loader there (tensorizer, safetensors, Run:ai,
# fastsafetensors, instanttensor, flashpack), the pinned H2D ceiling; 4 GiB, warm; the 1 GiB
# round after it, where time is left, is in log.txt), bench-cpu.json (host loads on that
# machine's cores), remote.txt (HTTP loads onto the GPU).
# Steps stop early when time runs short (BUDGET seconds, default 480), so that what ran
# still comes back. DRY=1 runs it here (no GPU): host memory instead, smaller sizes (64 MiB
# and 256 MiB), the peers of the local venv (scripts/peers/setup.sh; the kit's cp312 wheels are
# only checked to install).
set -u
ROOT=$PWD
OUT=${OUT:-/tmp/tz-device-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
T0=$(date +%s)
BUDGET=${BUDGET:-480}
el() { echo $(($(date +%s) - T0)); }
step() { echo "== [$(el)s] $*"; }
left() { [ $(($(date +%s) - T0)) -lt "$1" ]; }
DEV=cuda:0
[ "${DRY:-0}" = 1 ] && DEV=cpu
SIZE=${SIZE:-$([ "${DRY:-0}" = 1 ] && echo 256MiB || echo 4GiB)}
# the bench --peers rounds, SIZE first: its files come back, its model stays in $W/tzb for the
# steps after it; the others (1 GiB) then run while time is left, their tables in log.txt
SIZES=${SIZES:-$SIZE $([ "${DRY:-0}" = 1 ] && echo 64MiB || echo 1GiB)}
RUNS=${RUNS:-3}

step "unpacking .device"
W=/tmp/tzdev
mkdir -p $W
xz -dc .device/node.xz > $W/node && chmod +x $W/node || { echo "no .device/node.xz: run scripts/device/pack.sh and carry .device"; exit 2; }
export PATH=$W:$PATH
tar -xJf .device/runtime.tar.xz
tar -xJf .device/vectors.tar.xz -C $W
export TENSORIZE_VECTORS=$W/vectors
export TORCH_PYTHON=${TORCH_PYTHON:-python3}
# The peer loaders (pack.sh's wheels) for `tensorize bench --peers`: installed into a --target
# folder for that machine's python3 (torch, CUDA); PEER_PY runs it with that folder and
# scripts/device/pystubs (boto3, botocore, redis, libnacl: imported by tensorizer, never used by
# a local load) on its path.
PEER_PY=
PIP=(python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-index --no-deps --no-compile --no-cache-dir --upgrade)
if compgen -G ".device/wheels/*.whl" >/dev/null; then
  if [ "${DRY:-0}" = 1 ]; then
    # here: only check that the kit installs for cp312; the loads use the local peers venv
    "${PIP[@]}" --target $W/peer-site-cp312 --only-binary=:all: --python-version 3.12 --implementation cp \
      --abi cp312 --abi none --platform manylinux_2_30_x86_64 --platform manylinux_2_28_x86_64 --platform any .device/wheels/*.whl &&
      echo "peer wheels install for cp312: $(cd $W/peer-site-cp312 && ls -d *.dist-info | tr '\n' ' ')"
    PEER_PY=${TENSORIZE_PEER_PYTHON:-$HOME/.cache/tensorize/peers/bin/python}
    [ -x "$PEER_PY" ] || PEER_PY=
  elif "${PIP[@]}" --target $W/peer-site .device/wheels/*.whl; then
    printf '#!/bin/sh\nPYTHONPATH=%s:%s${PYTHONPATH:+:$PYTHONPATH} exec %s "$@"\n' \
      $W/peer-site "$ROOT/scripts/device/pystubs" "$(command -v python3)" > $W/peer-python
    chmod +x $W/peer-python
    PEER_PY=$W/peer-python
  else
    echo "the peer wheels did not install: the peers are skipped"
  fi
fi
if [ -n "$PEER_PY" ]; then
  "$PEER_PY" scripts/peers/bench_peers.py check
else
  echo "no peer loaders (pack with scripts/device/pack.sh): the benches run without them"
fi
node --version
nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.max,pcie.link.width.max --format=csv 2>&1 | head -3

step "doctor"
node bin/tensorize.js doctor --json > "$OUT/doctor.json"
cat "$OUT/doctor.json"

[ "$DEV" != cpu ] && export TENSORIZE_REQUIRE_GPU=1
step "native pipeline test (GPU rounds included when a device is usable)"
native/build/tensorize_native_test > "$OUT/native-test.txt" 2>&1
echo "exit $?"
grep -E '^(device backend|hashes|FAIL)|passed' "$OUT/native-test.txt" | head -20

step "GPU checks: vectors, errors, HTTP, leaks"
timeout 150 node scripts/device/gpu-check.mjs --device $DEV > "$OUT/gpu-check.txt" 2>&1
echo "exit $?"
grep -E '^(addon|vectors|FAIL)|passed' "$OUT/gpu-check.txt" | head -30

for size in $SIZES; do
  left $((BUDGET - 200)) || break
  step "bench --peers: $size synthetic model, warm, $RUNS runs, $DEV"
  if [ "$size" = "$SIZE" ]; then
    out=$OUT/bench-gpu.json dir=$W/tzb report=(--report "$OUT/bench-gpu.svg") limit=$((BUDGET - $(el) - 120))
  else
    out=$W/bench-$size.json dir=$W/tzb-$size report=() limit=$(((BUDGET - $(el)) / 2))
  fi
  timeout $limit node bin/tensorize.js bench --size $size --dir $dir --device $DEV --peers ${PEER_PY:+--python "$PEER_PY"} \
    --runs $RUNS --json "${report[@]}" > "$out"
  echo "exit $?"
  [ "$size" = "$SIZE" ] || rm -rf "$dir"
done

if left $((BUDGET - 120)) && [ -f $W/tzb/model.tensors ]; then
  # two fresh --plaid loads of the bench model with extra options (environment variables go
  # before the call): " GB/s of the whole load (ms allocating)" each
  twice() {
    for k in 1 2; do
      node bin/tensorize.js load $W/tzb/model.tensors --device $DEV --plaid "$@" --json 2>/dev/null |
        node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);process.stdout.write(` ${(j.bytes/j.totalMs/1e6).toFixed(2)} (${j.allocMs.toFixed(0)} ms)`)})'
    done
  }
  step "--plaid sweep onto $DEV: readers x chunk size, 2 fresh loads each (GB/s of the whole load; ms allocating)"
  for r in 4 8 16; do for c in 4MiB 16MiB 64MiB; do
    twice --readers $r --chunk-size $c; echo "  <- readers $r, chunk $c"
  done; done
  TENSORIZE_PINNED=alloc twice; echo "  <- defaults, ring from cudaHostAlloc instead of mmap + cudaHostRegister (TENSORIZE_PINNED=alloc)"
  TENSORIZE_CUDA_SYNC=block twice; echo "  <- defaults, readers sleep on their slot's event (TENSORIZE_CUDA_SYNC=block)"
fi

if left $((BUDGET - 100)); then
  step "many small tensors: 20,000 bf16 tensors of 64 KiB (1.3 GB), written by torch + safetensors, $DEV"
  timeout 60 ${TORCH_PYTHON} -c "import torch; from safetensors.torch import save_file; save_file({f'model.experts.{i}.w': torch.randn(128, 256).bfloat16() for i in range(20000)}, '$W/many.safetensors')" &&
    timeout 90 node bin/tensorize.js bench $W/many.safetensors --dir $W/many --runs 2 --device $DEV --methods plaid,simple 2>&1 | tail -8
  echo "exit $?"
fi

if left $((BUDGET - 80)) && [ -f $W/tzb/model.tensors ]; then
  step "host-memory bench on this machine ($(nproc) cores)"
  timeout 60 node bin/tensorize.js bench $W/tzb/model.tensors --device cpu --runs $RUNS --json > "$OUT/bench-cpu.json"
  echo "exit $?"
fi

if left $((BUDGET - 40)) && [ -f $W/tzb/model.tensors ]; then
  step "HTTP loads onto $DEV (node:http on loopback)"
  timeout $((BUDGET - $(el) - 10)) node scripts/bench-remote.mjs $W/tzb/model.tensors --runs 2 --server node \
    --device ${DEV%%:*} --methods raw-native,load,load-verify --fresh-only > "$OUT/remote.txt" 2>&1
  echo "exit $?"
  tail -15 "$OUT/remote.txt"
fi
step "done"
