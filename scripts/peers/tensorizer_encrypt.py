#!/usr/bin/env python3
"""Write one seeded bf16 state dict with tensorizer twice: plain and encrypted.

Usage:
    python scripts/peers/tensorizer_encrypt.py DIR [--size-gib 1.0] [--seed 0] --key-hex HEX

Writes DIR/plain.tensors (write_state_dict) and DIR/encrypted.tensors (the same tensors,
EncryptionParams(key=...)), for the encrypted-load benchmark (scripts/bench-encrypted.mjs).
Tensors: 2048 x 5632 bf16 (22 MiB each) until --size-gib is reached.
"""
import argparse, os

import torch
from tensorizer import EncryptionParams, TensorSerializer

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--size-gib", type=float, default=1.0)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--key-hex", required=True)
a = ap.parse_args()
g = torch.Generator().manual_seed(a.seed)
shape = (2048, 5632)
per = shape[0] * shape[1] * 2
sd = {f"layers.{i}.weight": torch.randn(shape, generator=g, dtype=torch.float32).to(torch.bfloat16) for i in range(max(1, int(a.size_gib * 2**30 // per)))}
os.makedirs(a.dir, exist_ok=True)
for name, enc in (("plain", None), ("encrypted", EncryptionParams(key=bytes.fromhex(a.key_hex)))):
    s = TensorSerializer(os.path.join(a.dir, f"{name}.tensors"), **({"encryption": enc} if enc else {}))
    s.write_state_dict(sd)
    s.close()
print(sum(t.numel() * 2 for t in sd.values()))
