#!/usr/bin/env python3
"""Write random PyTorch checkpoints with real torch, plus a manifest of what they hold.

Usage:
    /usr/bin/python3 scripts/peers/torch_random_checkpoints.py OUT_DIR [--count N] [--seed S]

Each checkpoint i (seed S+i) is a state dict of random tensors: every common dtype,
0-dim and empty tensors, slices, transposes, permutes, expands, tensors sharing one
storage and nn.Parameters; even-numbered ones use the zip format, odd ones the legacy
format. OUT_DIR/manifest.json maps each file to its tensors: name, dtype, shape and the
SHA-256 of the tensor's contiguous bytes as torch produces them. Used by
test/pytorch.test.ts when torch is importable, and by scripts/peers/pytorch_compat.mjs.
"""
import argparse, hashlib, json, os, random

import torch

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8, torch.int16,
          torch.int32, torch.int64, torch.bool, torch.complex64]


def tbytes(t):
    t = t.detach().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def rand_tensor(rng, dt, shape):
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    if dt == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dt.is_complex:
        return torch.randn(shape, dtype=dt, generator=g)
    if dt.is_floating_point:
        return torch.randn(shape, generator=g).to(dt)
    lo = 0 if dt == torch.uint8 else -100
    return torch.randint(lo, 100, shape, generator=g).to(dt)


def rand_view(rng, base):
    kind = rng.choice(["plain", "t", "slice", "step", "permute", "expand", "select", "narrow"])
    if base.dim() < 2 and kind in ("t", "permute"):
        kind = "plain"
    if kind == "t":
        return base.t() if base.dim() == 2 else base.transpose(0, base.dim() - 1)
    if kind == "permute":
        dims = list(range(base.dim()))
        rng.shuffle(dims)
        return base.permute(*dims)
    if kind == "slice" and base.dim() >= 1 and base.shape[-1] > 1:
        a = rng.randrange(base.shape[-1] - 1)
        return base[..., a:]
    if kind == "step" and base.dim() >= 1:
        return base[::2]
    if kind == "expand":
        return base.reshape(-1)[:1].expand(rng.randint(1, 5), rng.randint(1, 5))
    if kind == "select" and base.dim() >= 1 and base.shape[0] > 0:
        return base[rng.randrange(base.shape[0])]
    if kind == "narrow" and base.dim() >= 1 and base.shape[0] > 1:
        return base.narrow(0, 1, base.shape[0] - 1)
    return base


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    manifest = {}
    for n in range(a.count):
        rng = random.Random(a.seed + n)
        sd = {}
        for k in range(rng.randint(1, 12)):
            dt = rng.choice(DTYPES)
            nd = rng.choice([0, 1, 2, 2, 3, 4])
            shape = [rng.choice([0, 1, 2, 3, 5, 8, 17, 64]) if rng.random() < 0.1 else rng.choice([1, 2, 3, 5, 8, 17, 64]) for _ in range(nd)]
            base = rand_tensor(rng, dt, shape)
            sd[f"t{k}.base"] = base
            if rng.random() < 0.7:
                sd[f"t{k}.view"] = rand_view(rng, base)
            if rng.random() < 0.2:
                sd[f"t{k}.param"] = torch.nn.Parameter(base.clone().float() if dt.is_floating_point else base.clone().float(), requires_grad=False)
        name = f"ckpt{n}{'' if n % 2 == 0 else '_legacy'}.pt"
        torch.save(sd, os.path.join(a.out, name), _use_new_zipfile_serialization=(n % 2 == 0))
        manifest[name] = [{"name": k, "dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape),
                           "sha256": hashlib.sha256(tbytes(v)).hexdigest()} for k, v in sd.items()]
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
