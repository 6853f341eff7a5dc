#!/usr/bin/env python3
"""Random models written by the real tensorizer, with manifests of what they hold.

Usage (with the peers' python, scripts/peers/setup.sh):
    tensorizer_random_models.py OUT_DIR [--count N] [--seed S]

For each i in 0..N-1 (seed S+i), two files:
  OUT_DIR/sd<i>.tensors   TensorSerializer.write_state_dict of a random state dict:
                          random dtypes (bfloat16 included), shapes (0-dim and
                          zero-element ones included) and names (dotted, non-ASCII);
                          odd i nest part of it in dicts and lists (structured paths).
                          Also saved with torch.save as OUT_DIR/sd<i>.pt.
  OUT_DIR/mod<i>.tensors  TensorSerializer.write_module of a random torch.nn.Module:
                          nested submodules with parameters and buffers of random
                          dtypes (tensorizer names them "<module path>.<attribute>").
Model 0 also holds tensors with a dimension of 2^32 (shapes [2^32, 0] and
[0, 2^32, 3] in the state dict, [2^32, 0] as a module buffer), so tensorizer
writes both of its files as data version 5. No bfloat16 tensor has zero elements:
tensorizer cannot open such files, its own included.

OUT_DIR/manifest.json maps each file name to {"tensors": [...]}, one entry per
tensor in the manifest format of test/helpers/manifest.mjs: name (a string, or a
list for a structured path), type ("state_dict", "param" or "buffer"), dtype
(torch's name), shape, nbytes and the SHA-256 of the tensor's contiguous bytes.
Prints {"tensorizer": <version>, "files": [...]}.
"""

import argparse
import hashlib
import json
import os
import random

import torch
import tensorizer
from tensorizer import TensorSerializer

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8,
          torch.int16, torch.int32, torch.int64, torch.bool, torch.complex64]
FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
LONG = 2 ** 32


def tbytes(t):
    t = t.detach().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def entry(name, t, kind):
    return {"name": name, "type": kind, "dtype": str(t.dtype).removeprefix("torch."),
            "shape": list(t.shape), "nbytes": t.numel() * t.element_size(),
            "sha256": hashlib.sha256(tbytes(t)).hexdigest()}


def rand_shape(rng):
    nd = rng.choice([0, 1, 1, 2, 2, 3, 4])
    return [rng.choice([0, 1, 2, 3, 5, 8]) if rng.random() < 0.12 else rng.choice([1, 2, 3, 5, 8, 17, 33]) for _ in range(nd)]


def rand_tensor(rng, dt, shape):
    g = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    if dt == torch.bfloat16 and 0 in shape:
        # tensorizer (2.11 and 2.12.1 alike) cannot open a file holding a zero-element
        # tensor of an opaque dtype, not even its own (numpy is asked to parse the string).
        dt = torch.float16
    if dt == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dt.is_complex:
        return torch.randn(shape, dtype=dt, generator=g)
    if dt.is_floating_point:
        return (torch.randn(shape, generator=g) * 10).to(dt)
    lo = 0 if dt == torch.uint8 else -100
    return torch.randint(lo, 100, shape, generator=g).to(dt)


def rand_name(rng, k):
    parts = [rng.choice(["model", "layers", "encoder", "attn", "mlp", "norm", "emb", "名前", "é"]) for _ in range(rng.randint(1, 4))]
    return ".".join(parts + [f"t{k}", rng.choice(["weight", "bias", "scale", "x"])])


def state_dict(rng, i):
    flat = {}
    for k in range(rng.randint(3, 14)):
        dt = rng.choice(DTYPES)
        flat[rand_name(rng, k)] = rand_tensor(rng, dt, rand_shape(rng))
    if i == 0:
        flat["long.empty"] = torch.empty((LONG, 0), dtype=torch.float32)
        flat["long.i16"] = torch.empty((0, LONG, 3), dtype=torch.int16)
    if i % 2 == 0:
        return flat, [(name, t) for name, t in flat.items()]
    # Part of it nested: {"nested": {"a": t, "list": [t, t]}} -> structured paths.
    items = list(flat.items())
    half = len(items) // 2
    tree = dict(items[:half])
    rest = [t for _, t in items[half:]]
    tree["nested"] = {"a": rest[0], "list": rest[1:]}
    leaves = [(name, t) for name, t in items[:half]]
    leaves.append((["nested", "a"], rest[0]))
    leaves += [(["nested", "list", j], t) for j, t in enumerate(rest[1:])]
    return tree, leaves


class Leaf(torch.nn.Module):
    pass


def module(rng, i):
    root = Leaf()
    mods = [("", root)]
    for k in range(rng.randint(1, 4)):
        parent_name, parent = rng.choice(mods)
        child = Leaf()
        name = f"m{k}"
        parent.add_module(name, child)
        mods.append((f"{parent_name}.{name}" if parent_name else name, child))
    for k in range(rng.randint(3, 10)):
        _, m = rng.choice(mods)
        shape = rand_shape(rng)
        if rng.random() < 0.5:
            t = rand_tensor(rng, rng.choice(FLOATS), shape)
            m.register_parameter(f"p{k}", torch.nn.Parameter(t, requires_grad=False))
        else:
            m.register_buffer(f"b{k}", rand_tensor(rng, rng.choice(DTYPES), shape))
    if i == 0:
        mods[-1][1].register_buffer("long_empty", torch.empty((LONG, 0), dtype=torch.int16))
    # write_module's order and names: modules in named_modules() order, each one's own
    # parameters then its own buffers, named "<module path>.<attribute>".
    leaves = []
    for path, m in root.named_modules():
        leaves += [(f"{path}.{n}", t, "param") for n, t in m.named_parameters(recurse=False)]
        leaves += [(f"{path}.{n}", t, "buffer") for n, t in m.named_buffers(recurse=False)]
    return root, leaves


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    manifest = {}
    for i in range(a.count):
        rng = random.Random(a.seed + i)
        tree, leaves = state_dict(rng, i)
        s = TensorSerializer(os.path.join(a.out, f"sd{i}.tensors"))
        s.write_state_dict(tree)
        s.close()
        torch.save(tree, os.path.join(a.out, f"sd{i}.pt"))
        manifest[f"sd{i}.tensors"] = {"tensors": [entry(n, t, "state_dict") for n, t in leaves]}
        root, mleaves = module(rng, i)
        s = TensorSerializer(os.path.join(a.out, f"mod{i}.tensors"))
        s.write_module(root)
        s.close()
        manifest[f"mod{i}.tensors"] = {"tensors": [entry(n, t, kind) for n, t, kind in mleaves]}
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
    print(json.dumps({"tensorizer": tensorizer.__version__, "files": list(manifest)}))


if __name__ == "__main__":
    main()
