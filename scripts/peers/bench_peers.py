#!/usr/bin/env python3
"""One timed load by a peer loader, for `tensorize bench` comparisons (scripts/bench-peers.mjs).

Usage:
    PYTHONPATH=/path/to/tensorizer python3 scripts/peers/bench_peers.py check
    PYTHONPATH=/path/to/tensorizer python3 scripts/peers/bench_peers.py tensorizer  FILE.tensors     [--device cpu|cuda:N]
    python3 scripts/peers/bench_peers.py                                 safetensors FILE.safetensors [--device cpu|cuda:N]

`check` prints which peers can be imported here, as one JSON line: {"torch": version,
"tensorizer": version or null, "safetensors": version or null, "why": {peer: reason}}.

`tensorizer` times TensorDeserializer(FILE, device=..., lazy_load=False) (tensorizer's
defaults otherwise: no hash checks, its own choice of reader threads); `safetensors`
times safetensors.torch.load_file(FILE, device=...). Both are one load in a fresh
process, like every tensorize method of the bench: torch (and the CUDA context, on a GPU)
is set up before the clock starts; the clock stops when every tensor is in place (after
torch.cuda.synchronize() on a GPU). Prints one JSON line: {"method", "version", "seconds",
"bytes", "gbPerSecond", "peakRssBytes", "baseRssBytes"}; GB/s are 10^9 bytes of tensor
data per second. Exit 3 when the peer is not installed (the message says why).
"""
import argparse
import json
import os
import resource
import sys
import time


def rss_now():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def versions():
    out = {"torch": None, "tensorizer": None, "safetensors": None, "why": {}}
    try:
        import torch

        out["torch"] = torch.__version__
    except Exception as e:  # noqa: BLE001
        out["why"]["torch"] = f"torch cannot be imported: {e}"
    for name in ("tensorizer", "safetensors"):
        try:
            mod = __import__(name)
            if name == "safetensors":
                import safetensors.torch  # noqa: F401
            out[name] = getattr(mod, "__version__", "unknown")
        except Exception as e:  # noqa: BLE001
            out["why"][name] = f"{name} cannot be imported: {e}"
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("method", choices=["check", "tensorizer", "safetensors"])
    ap.add_argument("file", nargs="?")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.method == "check":
        print(json.dumps(versions()))
        return 0
    if not a.file:
        ap.error("FILE is required")
    v = versions()
    if v[a.method] is None or v["torch"] is None:
        print(v["why"].get(a.method) or v["why"].get("torch"), file=sys.stderr)
        return 3
    import torch

    cuda = a.device.startswith("cuda")
    if cuda:
        torch.zeros(1, device=a.device)  # the CUDA context, before the clock
        torch.cuda.synchronize()
    if a.method == "tensorizer":
        from tensorizer import TensorDeserializer

        base = rss_now()
        t0 = time.perf_counter()
        d = TensorDeserializer(a.file, device=a.device, lazy_load=False)
        n = sum(t.numel() * t.element_size() for t in d.values())
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        d.close()
    else:
        from safetensors.torch import load_file

        base = rss_now()
        t0 = time.perf_counter()
        sd = load_file(a.file, device=a.device)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        n = sum(t.numel() * t.element_size() for t in sd.values())
    print(
        json.dumps(
            {
                "method": a.method,
                "version": v[a.method],
                "seconds": seconds,
                "bytes": n,
                "gbPerSecond": n / seconds / 1e9,
                "peakRssBytes": peak_rss(),
                "baseRssBytes": base,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
