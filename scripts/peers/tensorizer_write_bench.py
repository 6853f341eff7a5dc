#!/usr/bin/env python3
"""Time tensorizer's TensorSerializer on a synthetic bf16 transformer.

Usage:
    PYTHONPATH=/work/peers/tensorizer /usr/bin/python3 \
        scripts/peers/tensorizer_write_bench.py OUT_DIR [--size-gib 1.0] \
        [--runs 3] [--warmup 1] [--seed 0] \
        [--key-file KEY] [--passphrase-file PASS] [--encrypt key|passphrase]

Builds a seeded, Llama-like bf16 state dict of about --size-gib GiB in
memory (hidden 2048, intermediate 5632, 32 heads / 4 KV heads, layer count
chosen to reach the size), and writes:
  OUT_DIR/model.safetensors   the same tensors in safetensors format (hand
                              written here), so another tool can serialize
                              exactly these tensors;
  OUT_DIR/tensorizer.tensors  from the last timed run (kept for comparison).

After --warmup untimed runs, each timed run is the wall time of
  TensorSerializer(path); write_state_dict(sd); close()
The output is deleted between runs; os.sync() runs after each run, outside
the timing. The state dict is in safetensors file order (sorted by name),
so both files hold the tensors in the same order.

With --serve, the timed runs happen one per "run" line on stdin instead (see
--help); scripts/bench-serialize.mjs uses this to interleave tensorizer's runs
with tensorize's.

Encryption: --encrypt key writes with TensorSerializer(path,
encryption=EncryptionParams(key=...)), the key read from --key-file (32 raw
bytes or 64 hex characters); --encrypt passphrase with
EncryptionParams.from_string(<--passphrase-file, last line break dropped>),
tensorizer's default Argon2id parameters (MODERATE: 3 passes, 256 MiB). Making
the EncryptionParams (reading the key file, deriving the key) is inside the
timing, as it is inside tensorize serialize's. With --serve, a line "run key"
or "run passphrase" times one encrypted run (given the matching file), "run"
a plain one. The warm-up runs are plain.

Prints JSON: bytes (tensor data bytes), runs_s, best_gbps and median_gbps
(GB/s = 1e9 bytes per second of tensor data), sync_s (the untimed
os.sync() after each run), plus some context fields.
"""

import argparse
import json
import os
import pathlib
import statistics
import struct
import sys
import time

import torch

from tensorizer import EncryptionParams, TensorSerializer
from tensorizer._version import __version__ as TENSORIZER_VERSION

HIDDEN = 2048
INTERMEDIATE = 5632
HEADS, KV_HEADS = 32, 4
MAX_VOCAB = 32000


def layer_shapes(i):
    """(name, shape) of one decoder layer, Llama naming."""
    kv = HIDDEN // HEADS * KV_HEADS
    p = f"model.layers.{i}."
    return [
        (p + "input_layernorm.weight", (HIDDEN,)),
        (p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
        (p + "self_attn.k_proj.weight", (kv, HIDDEN)),
        (p + "self_attn.v_proj.weight", (kv, HIDDEN)),
        (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
        (p + "post_attention_layernorm.weight", (HIDDEN,)),
        (p + "mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN)),
        (p + "mlp.up_proj.weight", (INTERMEDIATE, HIDDEN)),
        (p + "mlp.down_proj.weight", (HIDDEN, INTERMEDIATE)),
    ]


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def model_shapes(size_bytes):
    """Pick vocab and layer count so the bf16 total is close to size_bytes."""
    # Embeddings + lm_head take at most ~1/4 of the budget (small sizes).
    vocab = min(MAX_VOCAB, max(64, size_bytes // 8 // (HIDDEN * 2) // 64 * 64))
    fixed = (2 * vocab * HIDDEN + HIDDEN) * 2
    per_layer = sum(numel(s) for _, s in layer_shapes(0)) * 2
    layers = max(1, round((size_bytes - fixed) / per_layer))
    shapes = [("model.embed_tokens.weight", (vocab, HIDDEN))]
    for i in range(layers):
        shapes += layer_shapes(i)
    shapes += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (vocab, HIDDEN))]
    return shapes, layers, vocab


def build_state_dict(shapes, seed):
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in sorted(shapes):  # safetensors order: by name
        if name.endswith("norm.weight"):
            t = 1.0 + 0.01 * torch.randn(shape, generator=gen)
        else:
            t = 0.02 * torch.randn(shape, generator=gen)
        sd[name] = t.to(torch.bfloat16)
    return sd


def raw_bytes(t):
    """Contiguous little-endian bytes of a bf16 tensor, as a numpy buffer."""
    return t.contiguous().view(torch.int16).numpy()


def write_safetensors(path, sd):
    """Minimal safetensors writer: u64 header length, JSON header, data."""
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, t in sd.items():  # sd is already sorted by name
        n = t.numel() * t.element_size()
        header[name] = {
            "dtype": "BF16",
            "shape": list(t.shape),
            "data_offsets": [offset, offset + n],
        }
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # pad so data starts 8-aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in sd.values():
            f.write(raw_bytes(t))


def read_key(path):
    """32 raw bytes, or 64 hex characters (whitespace around them ignored)."""
    raw = pathlib.Path(path).read_bytes()
    if len(raw) == 32:
        return raw
    return bytes.fromhex(raw.decode("ascii").strip())


def read_passphrase(path):
    raw = pathlib.Path(path).read_bytes()
    return raw.removesuffix(b"\n").removesuffix(b"\r")


def encryption_params(mode, args):
    """EncryptionParams for `mode` (None, "key" or "passphrase"): made inside the timing."""
    if mode is None:
        return None
    if mode == "key":
        if not args.key_file:
            raise SystemExit("--encrypt key needs --key-file")
        return EncryptionParams(key=read_key(args.key_file))
    if not args.passphrase_file:
        raise SystemExit("--encrypt passphrase needs --passphrase-file")
    return EncryptionParams.from_string(read_passphrase(args.passphrase_file))


def write_once(out, sd, mode=None, args=None):
    """Seconds for TensorSerializer(out[, encryption]); write_state_dict(sd); close(), on a fresh file."""
    out.unlink(missing_ok=True)
    os.sync()
    start = time.perf_counter()
    enc = encryption_params(mode, args)
    serializer = TensorSerializer(str(out), encryption=enc)
    serializer.write_state_dict(sd)
    serializer.close()
    return time.perf_counter() - start


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=pathlib.Path)
    ap.add_argument("--size-gib", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--serve", action="store_true",
                    help="after the warm-up, time one run per line 'run' read on"
                         " stdin (printing {\"s\": seconds} per run) until EOF, so"
                         " that another tool's runs can be interleaved with these")
    ap.add_argument("--key-file", help="a 32-byte key (raw or hex) for --encrypt key / 'run key'")
    ap.add_argument("--passphrase-file", help="a passphrase for --encrypt passphrase / 'run passphrase'")
    ap.add_argument("--encrypt", choices=["key", "passphrase"],
                    help="time encrypted writes (without --serve)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed runs first (the first write of a run pays for"
                         " fresh page-cache memory; tensorize's bench skips one too)")
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    shapes, layers, vocab = model_shapes(int(args.size_gib * 2**30))
    t0 = time.perf_counter()
    sd = build_state_dict(shapes, args.seed)
    nbytes = sum(t.numel() * t.element_size() for t in sd.values())
    print(f"built {len(sd)} tensors, {nbytes} bytes, {layers} layers,"
          f" vocab {vocab} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    st_path = args.out_dir / "model.safetensors"
    write_safetensors(st_path, sd)
    os.sync()

    out = args.out_dir / "tensorizer.tensors"
    runs, syncs = [], []
    for i in range(args.warmup):
        print(f"warm-up {i + 1}: {write_once(out, sd):.3f}s (not counted)",
              file=sys.stderr)
    if args.serve:
        print(json.dumps({"ready": True, "bytes": nbytes, "tensors": len(sd),
                          "tensorizer": TENSORIZER_VERSION}), flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words or words[0] != "run":
                continue
            mode = words[1] if len(words) > 1 else None
            if mode not in (None, "key", "passphrase"):
                raise SystemExit(f"unknown run mode {mode!r}")
            took = write_once(out, sd, mode, args)
            out.unlink(missing_ok=True)
            os.sync()
            print(json.dumps({"s": round(took, 4)}), flush=True)
        return
    for i in range(args.runs):
        runs.append(write_once(out, sd, args.encrypt, args))
        start = time.perf_counter()
        os.sync()  # not part of the timing; reported separately
        syncs.append(time.perf_counter() - start)
        print(f"run {i + 1}: {runs[-1]:.3f}s (+ sync {syncs[-1]:.3f}s)",
              file=sys.stderr)

    gbps = [nbytes / s / 1e9 for s in runs]
    print(json.dumps({
        "bytes": nbytes,
        "runs_s": [round(s, 4) for s in runs],
        "best_gbps": round(max(gbps), 4),
        "median_gbps": round(nbytes / statistics.median(runs) / 1e9, 4),
        "sync_s": [round(s, 4) for s in syncs],
        "warmup_runs": args.warmup,
        "encrypt": args.encrypt,
        "tensors": len(sd),
        "layers": layers,
        "file_bytes": out.stat().st_size,
        "safetensors_bytes": st_path.stat().st_size,
        "tensorizer": TENSORIZER_VERSION,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
