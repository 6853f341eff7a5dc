#!/usr/bin/env bash
# Install the peers the interoperability tests and `tensorize bench --peers` compare tensorize
# against, pinned in requirements.txt beside this script: the real tensorizer (three versions),
# safetensors, Run:ai's model streamer (with its S3 backend) and fastsafetensors, in a virtual
# environment on top of Debian's Python and torch (1.13.1, CPU). Idempotent: when the venv
# already matches requirements.txt it only checks that (a few seconds). From scratch: 20-27 s
# and 157 MB, 88 MB of it the model (PyPI wheels only; nothing is built). instanttensor and
# flashpack need a newer torch (and CUDA): scripts/device/pack.sh carries them to the GPU
# machine instead.
#
#   apt-get install python3-venv python3-torch python3-numpy python3-psutil python3-redis \
#     python3-boto3 python3-libnacl python3-protobuf      # once, as root (or: setup.sh --apt)
#   scripts/peers/setup.sh                                 # prints the venv's python
#   export TENSORIZE_PEER_PYTHON=$(scripts/peers/setup.sh) # or let the tests find the default
#
# The venv: $TENSORIZE_PEERS_DIR, default ~/.cache/tensorize/peers (the path the tests look
# at when TENSORIZE_PEER_PYTHON is not set). Never installs torch from PyPI: every peer is
# installed with --no-deps (binary wheels only) and its imports are served by the Debian
# packages above or by a pin of requirements.txt (humanize, for Run:ai's streamer).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REQ="$HERE/requirements.txt"
DIR="${TENSORIZE_PEERS_DIR:-$HOME/.cache/tensorize/peers}"
SYS_PY=/usr/bin/python3
DEBS=(python3-venv python3-torch python3-numpy python3-psutil python3-redis python3-boto3 python3-libnacl python3-protobuf)

if [ "${1:-}" = "--apt" ]; then
  missing=()
  for p in "${DEBS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "peers: apt-get install ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if ! "$SYS_PY" -c 'import torch, numpy' 2>/dev/null; then
  echo "peers: $SYS_PY cannot import torch and numpy; install the Debian packages: apt-get install ${DEBS[*]} (or run $0 --apt as root)" >&2
  exit 1
fi

tz=($(grep -E '^tensorizer==' "$REQ"))
main="${tz[0]}"
pins=("${tz[@]}")   # main first, then the other tensorizer versions
others=($(grep -E '^[A-Za-z0-9_.-]+==' "$REQ" | grep -v '^tensorizer=='))
stamp="$DIR/.tensorize-peers"
want="$(cat "$REQ" "$0" | sha256sum | cut -d' ' -f1) $("$SYS_PY" -c 'import sys, torch; print(sys.version.split()[0], torch.__version__)')"

check() {
  local ok=0
  "$DIR/bin/python" -c 'import tensorizer, sys; assert tensorizer.__version__ == sys.argv[1], tensorizer.__version__' "${main#*==}" || ok=1
  # the other loaders, as scripts/peers/bench_peers.py imports them (S3 backend included)
  "$DIR/bin/python" -c 'import safetensors.torch
from runai_model_streamer import SafetensorsStreamer
import runai_model_streamer_s3.files.files
from fastsafetensors import SafeTensorsFileLoader, SingleGroup' || ok=1
  for pin in "${pins[@]:1}"; do
    PYTHONPATH="$DIR/tensorizer-${pin#*==}" "$DIR/bin/python" -c 'import tensorizer, sys; assert tensorizer.__version__ == sys.argv[1], tensorizer.__version__' "${pin#*==}" || ok=1
  done
  return $ok
}

installed() {
  local pin
  [ -x "$DIR/bin/python" ] || return 1
  for pin in "$main" "${others[@]}"; do
    compgen -G "$DIR/lib/python3*/site-packages/$(echo "${pin%%==*}" | tr - _)-${pin#*==}.dist-info" >/dev/null || return 1
  done
  for pin in "${pins[@]:1}"; do [ -d "$DIR/tensorizer-${pin#*==}/tensorizer-${pin#*==}.dist-info" ] || return 1; done
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && installed; then
  echo "$DIR/bin/python"
  exit 0
fi

echo "peers: creating $DIR (${pins[*]} ${others[*]})" >&2
if [ -e "$DIR" ] && [ ! -f "$DIR/pyvenv.cfg" ]; then
  echo "peers: $DIR exists and is not a virtual environment; not replacing it" >&2
  exit 1
fi
rm -rf "$DIR"
mkdir -p "$(dirname "$DIR")"
"$SYS_PY" -m venv --system-site-packages "$DIR"
PIP=("$DIR/bin/python" -m pip install -q --disable-pip-version-check --no-input --no-deps --only-binary=:all:)
"${PIP[@]}" "$main" "${others[@]}" >&2
for pin in "${pins[@]:1}"; do "${PIP[@]}" --target "$DIR/tensorizer-${pin#*==}" "$pin" >&2; done
# The imports the peers make when loaded (tensorizer: redis, boto3, libnacl, protobuf, psutil;
# Run:ai: numpy, boto3) come from Debian; fail here, with the reason, rather than in a test.
check >&2
echo "$want" > "$stamp"
echo "$DIR/bin/python"
