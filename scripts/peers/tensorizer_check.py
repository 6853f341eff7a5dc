#!/usr/bin/env python3
"""Check a .tensors file against a JSON manifest using the real tensorizer.

Usage:
    PYTHONPATH=/work/peers/tensorizer /usr/bin/python3 \
        scripts/peers/tensorizer_check.py FILE.tensors [FILE.tensors...] MANIFEST.json \
        [--num-readers 1,3] [--no-lazy]

The manifest looks like /work/shared/vectors/*.json:
    {"tensors": [{"name": str | [str|int, ...], "dtype": "float32",
                  "shape": [...], "sha256": "<hex>",
                  "type": "param"|"buffer"|"state_dict" (optional),
                  "meta": true (optional; no data, must load as zeros)}],
     "key_hex": "<64 hex>" | "passphrase": "..." (optional; encrypted files)}

Each file (all holding the manifest's tensors) is opened with TensorDeserializer(path, device="cpu",
verify_hash=True) once per configuration: eager loading with each
--num-readers value, then (unless --no-lazy) lazy loading with one reader.
Every tensor is fetched as a torch tensor through the Mapping API (d[key],
nested for structured paths); the lazy run also reads raw bytes through
read_numpy_arrays(allow_raw_data=True) and requires both to agree.

Prints one line per mismatch, then "OK <n> tensors" (exit 0) or
"FAIL <k> mismatches in <n> tensors" (exit 1). Notes go to stderr.
"""

import argparse
import hashlib
import json
import sys

import numpy
import torch

from tensorizer import DecryptionParams, TensorDeserializer
from tensorizer._NumpyTensor import _NumpyTensor

# Same-size integer types, used to get at the raw bytes of any dtype.
_INT_BY_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_NP_INT_BY_SIZE = {1: "<i1", 2: "<i2", 4: "<i4", 8: "<i8"}
_TYPE_NAMES = {0: "param", 1: "buffer", 2: "state_dict"}

# Torch dtype names this torch cannot represent (float8_*, uint16 on 1.13).
_UNREPRESENTABLE = set()


def _install_old_torch_shim():
    """Let the reader return raw integers for dtypes this torch lacks.

    tensorizer always converts each tensor with _NumpyTensor.to_tensor(),
    which raises for a dtype unknown to the installed torch (float8_* and
    uint16/32/64 on torch 1.13), even inside read_numpy_arrays. Hash
    verification happens before that call, so falling back to a same-size
    integer view keeps the real read + verify path and the exact bytes.
    Only dtypes that would otherwise fail are affected.
    """
    original = _NumpyTensor.to_tensor

    def to_tensor(self):
        try:
            return original(self)
        except (ValueError, TypeError):
            _UNREPRESENTABLE.add(
                self.torch_dtype.removeprefix("torch.")
                if self.torch_dtype
                else numpy.dtype(self.numpy_dtype).name
            )
            raw = self.data.view(_NP_INT_BY_SIZE[self.data.dtype.itemsize])
            return torch.from_numpy(raw)

    _NumpyTensor.to_tensor = to_tensor


def _key(name):
    """Manifest name -> the key tensorizer reports (str or tuple)."""
    if isinstance(name, list):
        if len(name) == 1 and isinstance(name[0], str):
            return name[0]
        return tuple(name)
    return name


def _show(key):
    return json.dumps(list(key) if isinstance(key, tuple) else key)


def _torch_dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _torch_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous()
    try:
        return t.numpy().tobytes()
    except TypeError:  # bfloat16 etc.: no numpy type, view as same-size int
        return t.view(_INT_BY_SIZE[t.element_size()]).numpy().tobytes()


def _walk(node, prefix=()):
    """Yield (key, tensor) for every leaf reachable through the Mapping API."""
    for k in node.keys():
        child = node[k]
        path = prefix + (k,)
        if isinstance(child, torch.Tensor):
            yield (path[0] if len(path) == 1 and isinstance(k, str) else path), child
        else:  # nested level of a structured path: a read-only mapping
            yield from _walk(child, path)


def _declared_dtype(dtype_str: str) -> str:
    """File dtype string ('<f4', '<V2\\0torch.bfloat16') -> torch dtype name."""
    np_part, _, torch_part = dtype_str.partition("\0")
    if torch_part:
        return torch_part.removeprefix("torch.")
    return numpy.dtype(np_part).name


def _decryption(manifest):
    """DecryptionParams from the manifest's key_hex / passphrase, if any."""
    if "key_hex" in manifest:
        return DecryptionParams.from_key(bytes.fromhex(manifest["key_hex"]))
    if "passphrase" in manifest:
        return DecryptionParams.from_string(manifest["passphrase"])
    return None


def check_once(path, manifest, num_readers, lazy, problems):
    label = f"[num_readers={num_readers} {'lazy' if lazy else 'eager'}]"

    def bad(msg):
        problems.append(f"{label} {msg}")

    try:
        d = TensorDeserializer(
            path,
            device="cpu",
            verify_hash=True,
            num_readers=num_readers,
            lazy_load=lazy,
            encryption=_decryption(manifest),
        )
    except Exception as e:  # includes HashMismatchError
        bad(f"open failed: {type(e).__name__}: {e}")
        return
    try:
        # Parsed file index (private attribute): tensor type and dtype string.
        index = {p.normalize_(): e for p, e in d._metadata.items()}

        # Raw path (lazy only: read_numpy_arrays()/read_tensors() resume after
        # the last yielded tensor, so after an eager load they yield nothing).
        raw = {}
        if lazy:
            for _, _, name, arr, opaque, tdtype in d.read_numpy_arrays(
                allow_raw_data=True
            ):
                dtype = tdtype.removeprefix("torch.") if opaque else arr.dtype.name
                raw[name] = (dtype, list(arr.shape), arr.tobytes())

        # Torch path: every leaf tensor through d[...] (nested for structures).
        found = dict(_walk(d))

        expected = {_key(t["name"]): t for t in manifest["tensors"]}
        for key, want in expected.items():
            t, entry = found.get(key), index.get(key)
            if t is None or entry is None:
                bad(f"missing tensor {_show(key)}")
                continue
            name = _show(key)
            dtype = _declared_dtype(entry.dtype)
            shape = list(t.shape)
            data = _torch_bytes(t)
            if "type" in want and _TYPE_NAMES.get(int(entry.type)) != want["type"]:
                bad(f"{name}: type {_TYPE_NAMES.get(int(entry.type), entry.type)} != {want['type']}")
            if dtype != want["dtype"]:
                bad(f"{name}: dtype {dtype} != {want['dtype']}")
            if dtype not in _UNREPRESENTABLE and _torch_dtype_name(t) != dtype:
                bad(f"{name}: loaded as {_torch_dtype_name(t)}, file says {dtype}")
            if shape != list(want["shape"]):
                bad(f"{name}: shape {shape} != {want['shape']}")
            if "nbytes" in want and len(data) != want["nbytes"]:
                bad(f"{name}: nbytes {len(data)} != {want['nbytes']}")
            if want.get("meta"):
                if any(data):
                    bad(f"{name}: meta tensor did not load as zeros")
            elif "sha256" in want:
                digest = hashlib.sha256(data).hexdigest()
                if digest != want["sha256"]:
                    bad(f"{name}: sha256 {digest} != {want['sha256']}")
            if lazy and raw.get(key) != (dtype, shape, data):
                bad(f"{name}: read_numpy_arrays disagrees with d[...]")

        for key in (found.keys() | index.keys()) - expected.keys():
            bad(f"unexpected tensor {_show(key)}")
        for key in raw.keys() - expected.keys() - found.keys() - index.keys():
            bad(f"unexpected tensor {_show(key)} from read_numpy_arrays")
    except Exception as e:
        bad(f"read failed: {type(e).__name__}: {e}")
    finally:
        d.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", nargs="+")
    ap.add_argument("manifest")
    ap.add_argument(
        "--num-readers",
        default="1,3",
        help="comma-separated num_readers values for eager runs (default 1,3)",
    )
    ap.add_argument("--no-lazy", action="store_true", help="skip the lazy_load run")
    args = ap.parse_args(argv)

    with open(args.manifest, encoding="utf-8") as f:
        manifest = json.load(f)
    _install_old_torch_shim()

    configs = [(int(n), False) for n in args.num_readers.split(",") if n]
    if not args.no_lazy:
        configs.append((1, True))

    problems = []
    for file in args.file:
        found = []
        for num_readers, lazy in configs:
            check_once(file, manifest, num_readers, lazy, found)
        problems += [f"{file}: {p}" if len(args.file) > 1 else p for p in found]

    if _UNREPRESENTABLE:
        print(
            f"note: torch {torch.__version__} cannot represent"
            f" {sorted(_UNREPRESENTABLE)}; compared raw bytes only",
            file=sys.stderr,
        )
    for p in problems:
        print(p)
    n = len(manifest["tensors"])
    if problems:
        print(f"FAIL {len(problems)} mismatches in {n} tensors")
        return 1
    print(f"OK {n} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
