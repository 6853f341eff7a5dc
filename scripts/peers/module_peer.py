#!/usr/bin/env python3
"""torch / tensorizer side of the peer tests (test/peers.test.ts).

Usage (with the peers' python, scripts/peers/setup.sh; an older tensorizer first on
PYTHONPATH to test that one):
    module_peer.py save-module OUT.pt
        A small torch.nn.Module with parameters and registered buffers (Linear,
        BatchNorm1d after a training step: running_mean, running_var,
        num_batches_tracked, and a custom buffer), its state_dict saved with torch.save.
        Prints {"params": [...], "buffers": [...]}.
    module_peer.py load-module REF.pt FILE.tensors...
        For each FILE, a fresh module of the same class (other initial values), filled by
        tensorizer's TensorDeserializer(FILE, verify_hash=True).load_into_module(); every
        tensor must equal REF.pt's (dtype, shape, values) and be registered as the same
        kind (parameter or buffer). Prints a list of {"ok": bool, "version", "loaded",
        "error", "mismatches"}, one per FILE.
    module_peer.py save-module-long OUT.pt / load-module-long REF.pt FILE.tensors...
        The same with LongNet: Net plus an empty buffer of shape [2^32, 0], which
        makes a data version 5 file (tensorizer 2.12 and later).
    module_peer.py save-mixed OUT.pt OUT.tensors
        A state dict of many dtypes and names of varying lengths, saved with torch.save
        and with tensorizer's own TensorSerializer.write_state_dict. Prints a manifest for
        tensorizer_check.py: {"tensors": [{"name", "dtype", "shape", "sha256"}]}.
Exit 0 when the command ran (a failed load is reported in the JSON), 1 on a crash.
"""

import hashlib
import json
import sys

import torch
import tensorizer
from tensorizer import TensorDeserializer, TensorSerializer


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(6, 8)
        self.norm = torch.nn.BatchNorm1d(8)
        self.register_buffer("scale", torch.linspace(0.5, 2.0, 8, dtype=torch.float64))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Sequential(Block(), Block())
        self.head = torch.nn.Linear(8, 3, bias=False)

    def forward(self, x):
        for b in self.encoder:
            x = torch.relu(b.norm(b.linear(x)) * b.scale.float())
            x = x[:, :6] if b is not self.encoder[-1] else x
        return self.head(x)


class LongNet(Net):
    def __init__(self):
        super().__init__()
        self.head.register_buffer("empty_long", torch.empty((2 ** 32, 0)))


def save_module(out, cls=Net):
    torch.manual_seed(1)
    net = cls()
    net.train()
    with torch.no_grad():
        for _ in range(3):  # move the running statistics away from their defaults
            net(torch.randn(16, 6))
    torch.save(net.state_dict(), out)
    print(json.dumps({
        "params": [n for n, _ in net.named_parameters()],
        "buffers": [n for n, _ in net.named_buffers()],
    }))


def load_modules(ref_path, *paths, cls=Net):
    print(json.dumps([load_module(p, torch.load(ref_path), cls) for p in paths]))


def load_module(path, ref, cls=Net):
    torch.manual_seed(2)
    net = cls()
    kinds_before = ({n for n, _ in net.named_parameters()}, {n for n, _ in net.named_buffers()})
    result = {"ok": False, "version": tensorizer.__version__, "loaded": 0, "error": None, "mismatches": []}
    try:
        d = TensorDeserializer(path, device="cpu", verify_hash=True)
        result["loaded"] = d.load_into_module(net)
    except Exception as e:  # the failure is the result
        result["error"] = f"{type(e).__name__}: {e}"
        return result
    got = net.state_dict()
    bad = result["mismatches"]
    if set(got) != set(ref):
        bad.append(f"names {sorted(set(got) ^ set(ref))}")
    for name, want in ref.items():
        t = got.get(name)
        if t is None:
            continue
        if t.dtype != want.dtype or t.shape != want.shape or not torch.equal(t, want):
            bad.append(f"{name}: {t.dtype} {list(t.shape)} != {want.dtype} {list(want.shape)} or values differ")
    kinds_after = ({n for n, _ in net.named_parameters()}, {n for n, _ in net.named_buffers()})
    if kinds_after != kinds_before:
        bad.append(f"parameters/buffers changed: {kinds_before} -> {kinds_after}")
    result["ok"] = not bad
    return result


def save_mixed(out_pt, out_tensors):
    g = torch.Generator().manual_seed(3)
    sd = {}
    dtypes = [torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.uint8,
              torch.bool, torch.float64, torch.int8, torch.int16, torch.int32]
    for i in range(24):
        dt = dtypes[i % len(dtypes)]
        shape = (1 + (i * 7) % 5, 1 + (i * 3) % 7)
        x = torch.randn(shape, generator=g) * 100
        t = (x > 0) if dt is torch.bool else x.to(dt)
        sd[f"layers.{i}.{'w' * (1 + i % 5)}"] = t
    sd["empty.bias"] = torch.zeros(0)
    torch.save(sd, out_pt)
    s = TensorSerializer(out_tensors)
    s.write_state_dict(sd)
    s.close()
    ints = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    print(json.dumps({"tensors": [
        {"name": k, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
         "sha256": hashlib.sha256(t.contiguous().view(ints[t.element_size()]).numpy().tobytes()).hexdigest()}
        for k, t in sd.items()
    ]}))


def main(argv):
    cmd, args = argv[0], argv[1:]
    {
        "save-module": save_module,
        "load-module": load_modules,
        "save-module-long": lambda out: save_module(out, LongNet),
        "load-module-long": lambda ref, *paths: load_modules(ref, *paths, cls=LongNet),
        "save-mixed": save_mixed,
    }[cmd](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
