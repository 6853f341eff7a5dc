#!/usr/bin/env python3
"""Encrypted files written by the real tensorizer, with manifests of what they hold.

Usage (with the peers' python, scripts/peers/setup.sh):
    tensorizer_encrypted_models.py OUT_DIR [--seed S]

Writes, each with TensorSerializer(..., encryption=...).write_state_dict of a
random state dict (seed S; random dtypes, bfloat16, float16 and integer types
included; shapes including a 0-dim tensor and one tensor of more than two
2 MiB encryption chunks):
  OUT_DIR/random.tensors       EncryptionParams.random()
  OUT_DIR/key.tensors          EncryptionParams(key=<32 seeded bytes>)
  OUT_DIR/pass_min.tensors     EncryptionParams.from_string(pass, MIN, MIN)
  OUT_DIR/pass_interactive.tensors
                               from_string(pass, INTERACTIVE, INTERACTIVE)
  OUT_DIR/meta.tensors         a key, and a meta tensor (tensorizer writes data
                               version 4 with the encrypted flag)
No zero-element tensor: tensorizer (2.11 and 2.12 alike) cannot serialize one
with encryption (TypeError in its chunking).

OUT_DIR/manifest.json maps each file name to a manifest in the format of
scripts/peers/tensorizer_check.py: {"tensors": [...], "key_hex": ...} or
{"tensors": [...], "passphrase": ...}; each tensor: name, type, dtype, shape,
nbytes, sha256 of its contiguous bytes ("meta": true for the meta tensor).
Prints {"tensorizer": <version>, "files": [...], "data_versions": {...}}.
"""

import argparse
import hashlib
import json
import os
import random
import struct

import torch
import tensorizer
from tensorizer import EncryptionParams, TensorSerializer

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8,
          torch.int16, torch.int32, torch.int64, torch.bool]
PASSPHRASE = "tensorize interop: correct horse battery staple"


def tbytes(t):
    t = t.detach().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def entry(name, t, meta=False):
    e = {"name": name, "type": "state_dict", "dtype": str(t.dtype).removeprefix("torch."),
         "shape": list(t.shape), "nbytes": t.numel() * t.element_size()}
    if meta:
        e["meta"] = True
    else:
        e["sha256"] = hashlib.sha256(tbytes(t)).hexdigest()
    return e


def rand_tensor(rng, dt, shape):
    g = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    if dt == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dt.is_floating_point:
        return (torch.randn(shape, generator=g) * 10).to(dt)
    lo = 0 if dt == torch.uint8 else -100
    return torch.randint(lo, 100, shape, generator=g).to(dt)


def state_dict(rng):
    sd = {
        # 5 MiB + 6 bytes of bfloat16: three encryption chunks, the last one short.
        "model.big.weight": rand_tensor(rng, torch.bfloat16, [5 * 2 ** 19 + 3]),
        "model.scalar": rand_tensor(rng, torch.int64, []),
        "model.half": rand_tensor(rng, torch.float16, [3, 7]),
        # Not contiguous: tensorizer writes it contiguously.
        "model.t": rand_tensor(rng, torch.float32, [6, 5]).t(),
    }
    for k in range(rng.randint(4, 8)):
        dt = rng.choice(DTYPES)
        shape = [rng.choice([1, 2, 3, 5, 8, 17, 33]) for _ in range(rng.choice([1, 1, 2, 3]))]
        sd[f"layers.{k}.{rng.choice(['weight', 'bias', 'scale'])}"] = rand_tensor(rng, dt, shape)
    return sd


def write(path, sd, enc, meta_names=()):
    s = TensorSerializer(path, encryption=enc)
    s.write_state_dict(sd)
    s.close()
    with open(path, "rb") as f:
        version = struct.unpack("<I", f.read(9)[5:9])[0]
    return [entry(k, v, k in meta_names) for k, v in sd.items()], version


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    rng = random.Random(args.seed)
    sd = state_dict(rng)
    key = bytes(rng.randrange(256) for _ in range(32))
    O = EncryptionParams.OpsLimit
    M = EncryptionParams.MemLimit
    rnd = EncryptionParams.random()
    files = {
        "random.tensors": (rnd, {"key_hex": rnd.key.hex()}),
        "key.tensors": (EncryptionParams(key=key), {"key_hex": key.hex()}),
        "pass_min.tensors": (EncryptionParams.from_string(PASSPHRASE, O.MIN, M.MIN), {"passphrase": PASSPHRASE}),
        "pass_interactive.tensors": (EncryptionParams.from_string(PASSPHRASE, O.INTERACTIVE, M.INTERACTIVE), {"passphrase": PASSPHRASE}),
    }
    manifest, versions = {}, {}
    for name, (enc, secret) in files.items():
        tensors, versions[name] = write(os.path.join(args.out_dir, name), sd, enc)
        manifest[name] = {"tensors": tensors, **secret}
    meta_sd = dict(sd)
    meta_sd["model.meta"] = torch.empty(4, 3, device="meta")
    tensors, versions["meta.tensors"] = write(os.path.join(args.out_dir, "meta.tensors"), meta_sd,
                                              EncryptionParams(key=key), {"model.meta"})
    manifest["meta.tensors"] = {"tensors": tensors, "key_hex": key.hex()}
    with open(os.path.join(args.out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    print(json.dumps({"tensorizer": tensorizer.__version__, "files": sorted(manifest), "data_versions": versions}))


if __name__ == "__main__":
    main()
