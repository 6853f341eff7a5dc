#!/usr/bin/env python3
"""Time tensorizer 2.11 loading a .tensors file (the reference peer for `tensorize load`).

Usage:
    PYTHONPATH=/work/peers/tensorizer /usr/bin/python3 scripts/peers/tensorizer_load_bench.py \
        FILE.tensors [--device cpu|cuda] [--runs 3] [--verify] [--num-readers 1] \
        [--key-hex HEX | --passphrase TEXT]

Each run opens TensorDeserializer(FILE, device=..., verify_hash=..., num_readers=...,
lazy_load=False) (which reads every tensor into memory) and closes it; an encrypted file
with encryption=DecryptionParams.from_key / from_string (--num-readers 0: tensorizer's own
default). Prints one JSON
line: {"gbps": [per run], "bytes": N}. GB/s are 10^9 bytes of tensor data per second.
"""
import argparse, json, time

import torch
from tensorizer import DecryptionParams, TensorDeserializer

ap = argparse.ArgumentParser()
ap.add_argument("file")
ap.add_argument("--device", default="cpu")
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--verify", action="store_true")
ap.add_argument("--num-readers", type=int, default=1)
ap.add_argument("--key-hex")
ap.add_argument("--passphrase")
a = ap.parse_args()
enc = DecryptionParams.from_key(bytes.fromhex(a.key_hex)) if a.key_hex else DecryptionParams.from_string(a.passphrase) if a.passphrase else None
extra = {"encryption": enc} if enc else {}
if a.num_readers > 0:
    extra["num_readers"] = a.num_readers
out = []
n = 0
for _ in range(a.runs):
    t0 = time.perf_counter()
    d = TensorDeserializer(a.file, device=a.device, verify_hash=a.verify, lazy_load=False, **extra)
    n = sum(t.numel() * t.element_size() for t in d.values())
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    out.append(n / (time.perf_counter() - t0) / 1e9)
    d.close()
    del d
print(json.dumps({"gbps": out, "bytes": n}))
