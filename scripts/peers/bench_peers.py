#!/usr/bin/env python3
"""One timed load by a peer loader, for `tensorize bench --peers` (each run a fresh process).

    python bench_peers.py check
    python bench_peers.py run ID SOURCE [--device cpu|cuda|cuda:N]

`check` prints ONE JSON line (stdout) and always exits 0:
    {"python": sys.executable, "pythonVersion": "3.11.2", "torch": "1.13.1" | null,
     "cuda": bool (torch.cuda.is_available()),
     "peers": {ID: {"version": "x.y" | null, "why": null | "why it cannot run here",
                    "formats": ["tensors"] | ["safetensors"], "remote": ["s3", "http"] | ["s3"] | []}}}
for every ID of PEERS below. "version" is the installed one (also when it cannot run here);
"why" is null when the peer can load here (imported, torch new enough, a CUDA device where it
needs one). The imports happen in a child process, so a peer whose import crashes the
interpreter is reported as such instead of taking `check` down.

`run` times one load of SOURCE (a local file, s3://bucket/key or http(s)://URL where the peer's
"remote" lists the scheme) and prints ONE JSON line (stdout; anything the peer itself prints
goes to stderr):
    {"method": ID, "version": "x.y", "seconds": s, "bytes": tensor bytes, "gbPerSecond": GB/s
     (10^9 bytes/s), "tensors": n, "firstTensorMs": ms | null, "peakRssBytes": ru_maxrss,
     "baseRssBytes": RSS just before the clock}
torch, the peer's modules and (on a GPU) the CUDA context are set up before the clock; it stops
when every tensor is in the destination and owned by the caller (torch.cuda.synchronize() on a
GPU). "bytes" sums numel * element_size over the tensors handed out; for a local SOURCE their
count is checked against the file's own. "firstTensorMs" is the time until the first tensor was
in hand, for the peers that hand tensors out one by one (runai, instanttensor), else null.
Exit status: 0 done; 1 the load failed (message on stderr); 2 bad usage (unknown ID, a file of
the wrong format for the peer); 3 the peer cannot run here (not installed, torch too old, no
CUDA device, a source scheme it cannot read): the reason on stderr.

S3: endpoint and credentials from the standard environment (AWS_ENDPOINT_URL[_S3],
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION); a plain http:// endpoint is allowed.

How each peer loads (its defaults otherwise; no hash checks):
  tensorizer       TensorDeserializer(SOURCE, device=..., lazy_load=False); its own reader
                   threads: 8 for a local file, 2 for HTTP/S3, fewer on a GPU when host RAM is short
  safetensors      safetensors.torch.load_file(SOURCE, device=...); on the host (backend "mmap")
                   the tensors are views of the mapped file, so their pages are then faulted in
                   (MADV_POPULATE_READ, as tensorize --mmap does) before the clock stops
  runai            runai_model_streamer.SafetensorsStreamer: stream_file(SOURCE, device=...,
                   owned=True) then every tensor of get_tensors() (RUNAI_STREAMER_CONCURRENCY,
                   RUNAI_STREAMER_CHUNK_BYTESIZE, RUNAI_STREAMER_MEMORY_LIMIT pass through)
  fastsafetensors  SafeTensorsFileLoader(SingleGroup(), device=..., nogds=True),
                   add_filenames({0: [SOURCE]}), copy_files_to_device(), get_tensor(k) for each
  instanttensor    instanttensor.safe_open(SOURCE, framework="pt", device=...).tensors() (CUDA only)
  flashpack        flashpack's own format: a .safetensors SOURCE is packed once, before the clock,
                   into $TMPDIR/tensorize-flashpack-<inode>-<size>-<mtime>.flashpack (never beside
                   SOURCE; kept for the next runs), then read_flashpack_file(..., device=...) and every tensor of
                   iterate_from_flash_tensor() (CUDA only here: on the host it maps the file lazily)
"""
import json
import os
import resource
import struct
import subprocess
import sys
import time

# id: (distribution, pinned version (scripts/peers/requirements.txt), module, formats, remote,
#      minimum torch, CUDA only)
PEERS = {
    "tensorizer": ("tensorizer", "2.12.1", "tensorizer", ["tensors"], ["s3", "http"], None, False),
    "safetensors": ("safetensors", "0.8.0", "safetensors", ["safetensors"], [], None, False),
    "runai": ("runai-model-streamer", "0.17.0", "runai_model_streamer", ["safetensors"], ["s3"], (2, 0), False),
    "fastsafetensors": ("fastsafetensors", "0.5.0", "fastsafetensors", ["safetensors"], [], None, False),
    "instanttensor": ("instanttensor", "0.2.2", "instanttensor", ["safetensors"], [], (2, 8), True),
    "flashpack": ("flashpack", "0.4.5", "flashpack", ["safetensors"], [], (2, 3), True),
}
# runai's metadata asks for torch>=2.0, but its loader runs on Debian's torch 1.13.1 (checked
# here, on the host); only instanttensor's (_C, torch>=2.8) and flashpack's (accelerate, which
# imports torch.amp.GradScaler: torch>=2.3) minimums are enforced.
ENFORCED_MIN_TORCH = {"instanttensor", "flashpack"}
PIP_EXTRA = {"runai": " (and runai-model-streamer-s3==0.17.0 for s3://)"}
TZR_MAGIC = b"|TZR|"
STDOUT_FD = None  # main(): the real stdout, while fd 1 points at stderr


class CannotRun(Exception):
    """The peer cannot run here (exit 3)."""


class Usage(Exception):
    """Bad usage (exit 2)."""


class Failed(Exception):
    """The load failed, for a reason the message says in full (exit 1, no traceback)."""


def rss_now():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def torch_tuple(v):
    out = []
    for part in v.split("+")[0].split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def dist_version(dist):
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001
        return None


def import_peer(pid):
    """Import what `run` uses of the peer; returns its version. Raises on failure."""
    dist, pin, module, *_ = PEERS[pid]
    if pid == "tensorizer":
        import tensorizer
        from tensorizer import TensorDeserializer  # noqa: F401

        return tensorizer.__version__
    if pid == "safetensors":
        import safetensors
        import safetensors.torch  # noqa: F401

        return safetensors.__version__
    if pid == "runai":
        from runai_model_streamer import SafetensorsStreamer  # noqa: F401
    elif pid == "fastsafetensors":
        from fastsafetensors import SafeTensorsFileLoader, SingleGroup  # noqa: F401
    elif pid == "instanttensor":
        from instanttensor import safe_open  # noqa: F401
    elif pid == "flashpack":
        from flashpack import pack_to_file  # noqa: F401
        from flashpack.deserialization import iterate_from_flash_tensor, read_flashpack_file  # noqa: F401
    return dist_version(dist) or getattr(sys.modules.get(module), "__version__", None) or "unknown"


def why_not(pid, torch_version, cuda):
    """(version, why) for one peer in this process: imports it unless that is pointless."""
    dist, pin, module, _formats, _remote, min_torch, cuda_only = PEERS[pid]
    version = dist_version(dist)
    reasons = []
    if torch_version is None:
        reasons.append("needs torch, which cannot be imported here")
    elif pid in ENFORCED_MIN_TORCH and torch_tuple(torch_version) < min_torch:
        reasons.append(f"needs torch>={min_torch[0]}.{min_torch[1]}, this is {torch_version}")
    if cuda_only and not cuda:
        reasons.append("needs a CUDA device")
    if not reasons:
        try:
            version = import_peer(pid) or version
        except ImportError as e:
            if getattr(e, "name", None) and e.name.split(".")[0] == module and version is None:
                reasons.append(f"not installed: pip install {dist}=={pin}{PIP_EXTRA.get(pid, '')}")
            else:
                reasons.append(f"cannot be imported: {type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001
            reasons.append(f"cannot be imported: {type(e).__name__}: {e}")
    elif version is None:
        reasons.append(f"not installed: pip install {dist}=={pin}")
    return version, ("; ".join(reasons) or None)


def probe_torch():
    try:
        import torch

        try:
            cuda = bool(torch.cuda.is_available())
        except Exception:  # noqa: BLE001
            cuda = False
        return torch.__version__, cuda
    except Exception:  # noqa: BLE001
        return None, False


def remote_of(pid):
    """The schemes the peer reads here: runai's s3:// is a separate package."""
    remote = PEERS[pid][4]
    if pid == "runai" and "s3" in remote:
        import importlib.util

        try:
            if importlib.util.find_spec("runai_model_streamer_s3") is None:
                return [r for r in remote if r != "s3"]
        except (ImportError, ValueError):
            return [r for r in remote if r != "s3"]
    return list(remote)


def check_in_process(only=None):
    torch_version, cuda = probe_torch()
    peers = {}
    for pid, (_d, _p, _m, formats, _r, _t, _c) in PEERS.items():
        if only and pid != only:
            continue
        version, why = why_not(pid, torch_version, cuda)
        peers[pid] = {"version": version, "why": why, "formats": formats, "remote": remote_of(pid)}
    return {
        "python": sys.executable,
        "pythonVersion": sys.version.split()[0],
        "torch": torch_version,
        "cuda": cuda,
        "peers": peers,
    }


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def check():
    """Probe in a child (an import that crashes then costs only that child); one child per peer
    if the first one dies."""
    me = os.path.abspath(__file__)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, me, "_probe"], capture_output=True, text=True, env=env)
    doc = last_json(r.stdout) if r.returncode == 0 else None
    if doc is not None:
        return doc
    base = {"python": sys.executable, "pythonVersion": sys.version.split()[0], "torch": None, "cuda": False, "peers": {}}
    for pid, (_d, _p, _m, formats, remote, _t, _c) in PEERS.items():
        r = subprocess.run([sys.executable, me, "_probe", pid], capture_output=True, text=True, env=env)
        one = last_json(r.stdout) if r.returncode == 0 else None
        if one is not None:
            base["torch"], base["cuda"] = one["torch"], one["cuda"]
            base["peers"][pid] = one["peers"][pid]
        else:
            how = f"signal {-r.returncode}" if r.returncode < 0 else f"exit {r.returncode}"
            tail = (r.stderr.strip().splitlines() or [""])[-1][:200]
            base["peers"][pid] = {
                "version": dist_version(PEERS[pid][0]),
                "why": f"probing it crashed the interpreter ({how}) {tail}".strip(),
                "formats": formats,
                "remote": remote,
            }
    return base


# ---------------------------------------------------------------------------------------------
# run


def source_kind(src):
    low = src.lower()
    if low.startswith("s3://"):
        return "s3"
    if low.startswith("http://") or low.startswith("https://"):
        return "http"
    if "://" in src and not os.path.exists(src):
        raise Usage(f"{src}: unknown scheme (a local path, s3://bucket/key or http(s)://URL)")
    return "file"


def local_count(path, fmt):
    """The file's own tensor count (before the clock)."""
    with open(path, "rb") as f:
        if fmt == "tensors":
            head = f.read(65)
            # magic(5) version(4) flags(32) tensor_size(8) reserved(8) tensor_count(8)
            return struct.unpack_from("<Q", head, 57)[0]
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        return sum(1 for k in header if k != "__metadata__")


def sniff(path):
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(TZR_MAGIC):
        return "tensors"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return None


def populate(tensors):
    """Fault in the pages behind host tensors that are views of a mapped file
    (MADV_POPULATE_READ; where the kernel lacks it, one read per page)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = os.sysconf("SC_PAGE_SIZE")
    madv_populate_read = 22
    for t in tensors:
        n = t.numel() * t.element_size()
        if n == 0:
            continue
        p = t.data_ptr()
        start = p - p % page
        if libc.madvise(start, p + n - start, madv_populate_read) != 0:
            buf = (ctypes.c_char * n).from_address(p)
            bytes(memoryview(buf)[::page])


def flashpack_file(src):
    """A .flashpack of SOURCE, packed once, before the clock, into the temporary directory (never
    beside the user's file): $TMPDIR/tensorize-flashpack-<inode>-<size>-<mtime_ns>.flashpack,
    written under a temporary name and renamed into place, so a pack cut short is never reused.
    It stays there for the next runs (and is not evicted by --cold: a limit noted in bench.md)."""
    if not src.endswith(".safetensors"):
        return src
    import tempfile

    st = os.stat(src)
    out = os.path.join(tempfile.gettempdir(), f"tensorize-flashpack-{st.st_ino}-{st.st_size}-{st.st_mtime_ns}.flashpack")
    if os.path.exists(out):
        return out
    from flashpack import pack_to_file
    from safetensors.torch import load_file

    sd = load_file(src, device="cpu")
    part = f"{out}.part-{os.getpid()}"
    print(f"bench_peers: packing {src} into {out} (flashpack's own format; once, before the clock)", file=sys.stderr)
    try:
        pack_to_file(sd, part, target_dtype=None, silent=True)
        os.replace(part, out)
    finally:
        if os.path.exists(part):
            os.unlink(part)
    return out


def fastsafetensors_cudart():
    """fastsafetensors dlopens "libcudart.so" (unversioned) for a GPU target, a name only a CUDA
    toolkit provides. Where it does not resolve, re-run this process (before the clock; once)
    with a folder first on LD_LIBRARY_PATH where that name is the libcudart torch itself loaded
    (called after the CUDA context is made), else one found beside torch or in /usr/local/cuda."""
    import ctypes
    import glob
    import tempfile
    import zlib

    try:
        ctypes.CDLL("libcudart.so")
        return
    except OSError:
        pass
    if os.environ.get("BENCH_PEERS_CUDART"):
        return  # already re-run: fastsafetensors will say what it misses
    found = []
    with open("/proc/self/maps") as f:
        found += [line.split()[-1] for line in f if "/libcudart.so" in line]
    for d in sys.path:
        found += sorted(glob.glob(os.path.join(d, "nvidia", "*", "lib", "libcudart.so.*")))
    found += sorted(glob.glob("/usr/local/cuda*/lib64/libcudart.so.*"))
    found = [f for f in found if os.path.isfile(f)]
    if not found:
        return
    # One fixed folder per libcudart (not a new one per run, which nothing would remove).
    d = os.path.join(tempfile.gettempdir(), f"tensorize-cudart-{os.getuid()}-{zlib.crc32(found[0].encode()):08x}")
    os.makedirs(d, exist_ok=True)
    link = os.path.join(d, "libcudart.so")
    if os.path.realpath(link) != os.path.realpath(found[0]):
        tmp = f"{link}.{os.getpid()}"
        os.symlink(found[0], tmp)
        os.replace(tmp, link)
    print(f"bench_peers: fastsafetensors needs libcudart.so: using {found[0]}", file=sys.stderr)
    env = dict(os.environ, BENCH_PEERS_CUDART=d, LD_LIBRARY_PATH=":".join(x for x in (d, os.environ.get("LD_LIBRARY_PATH")) if x))
    sys.stderr.flush()
    if STDOUT_FD is not None:
        os.dup2(STDOUT_FD, 1)  # the real stdout again, for the process that replaces this one
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)


def load(pid, src, dev, cuda, clock):
    """The timed part: returns (tensors, seconds to the first tensor or None, cleanup)."""
    first = None
    if pid == "tensorizer":
        from tensorizer import TensorDeserializer

        d = TensorDeserializer(src, device=dev, lazy_load=False)
        return list(d.values()), None, d.close
    if pid == "safetensors":
        from safetensors.torch import load_file

        sd = load_file(src, device=dev)
        out = list(sd.values())
        if not cuda:
            populate(out)
        return out, None, None
    if pid == "runai":
        from runai_model_streamer import SafetensorsStreamer

        out = []
        with SafetensorsStreamer() as s:
            credentials = None
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            if src.startswith("s3://") and endpoint:
                from runai_model_streamer.s3_utils.s3_utils import S3Credentials

                credentials = S3Credentials(
                    access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
                    secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
                    session_token=os.environ.get("AWS_SESSION_TOKEN"),
                    region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
                    endpoint=endpoint,
                )
            # owned=True (0.17's default, said here): each tensor handed out has its own memory
            # (on the host the streamer gives each filled ring buffer away and allocates a new
            # one; on a GPU each is tensor.to(device)), so what is kept is what a user keeps, with
            # no .clone(). owned=False would yield views into reused buffers.
            s.stream_file(src, s3_credentials=credentials, device=dev, owned=True)
            for _name, t in s.get_tensors():
                if first is None:
                    first = clock()
                out.append(t)
        return out, first, None
    if pid == "fastsafetensors":
        from fastsafetensors import SafeTensorsFileLoader, SingleGroup

        loader = SafeTensorsFileLoader(SingleGroup(), device=dev, nogds=True)
        loader.add_filenames({0: [src]})
        fb = loader.copy_files_to_device()
        out = [fb.get_tensor(k) for k in loader.get_keys()]

        def close():
            fb.close()
            loader.close()

        return out, None, close
    if pid == "instanttensor":
        from instanttensor import safe_open

        out = []
        # copy=True (its default): every tensor owns its memory, none is a view of the ring.
        with safe_open(src, framework="pt", device=dev) as f:
            for _name, t in f.tensors():
                if first is None:
                    first = clock()
                out.append(t)
        return out, first, None
    if pid == "flashpack":
        from flashpack.deserialization import iterate_from_flash_tensor, read_flashpack_file

        storage, meta = read_flashpack_file(src, device=dev)
        # views of the few macroblocks read: the tensors a model would be assigned
        out = [t for _name, t in iterate_from_flash_tensor(storage, meta)]
        return out, None, None
    raise Usage(f"unknown peer {pid}")


def run(pid, src, device):
    if pid not in PEERS:
        raise Usage(f"unknown peer {pid!r}: one of {', '.join(PEERS)}")
    dist, pin, _module, formats, remote, _min_torch, cuda_only = PEERS[pid]
    kind = source_kind(src)
    if kind != "file" and kind not in remote_of(pid):
        if kind in remote:  # runai without its S3 package
            raise CannotRun(f"{pid} reads s3:// with runai-model-streamer-s3, which is not installed: pip install runai-model-streamer-s3==0.17.0")
        raise CannotRun(f"{pid} cannot read {kind}:// sources" + (f" (it reads {', '.join(remote)} and local files)" if remote else " (local files only)"))
    expected = None
    if kind == "file":
        if not os.path.isfile(src):
            raise Failed(f"{src}: no such file")
        fmt = sniff(src)
        if pid == "flashpack" and src.endswith(".flashpack"):
            fmt = "safetensors"  # its own format; counted after the load
        elif fmt not in formats:
            raise Usage(f"{pid} reads {' or '.join('.' + f for f in formats)} files; {src} is " + (f"a .{fmt} file" if fmt else "neither"))
        else:
            expected = local_count(src, fmt)
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        raise CannotRun(f"needs torch, which cannot be imported here: {e}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise Usage(f"--device {device}: {e} (cpu, cuda or cuda:N)")
    if dev.type not in ("cpu", "cuda"):
        raise Usage(f"--device {device}: cpu, cuda or cuda:N")
    cuda = dev.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise CannotRun(f"needs a CUDA device (--device {device}; torch.cuda.is_available() is False)")
    if cuda_only and not cuda:
        raise CannotRun(f"needs a CUDA device (bench_peers runs {pid} on CUDA only)")
    version, why = why_not(pid, torch.__version__, torch.cuda.is_available())
    if why:
        raise CannotRun(why)
    if pid == "flashpack" and kind == "file":
        src = flashpack_file(src)
    if cuda:
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
        torch.zeros(1, device=dev)  # the CUDA context, before the clock
        torch.cuda.synchronize(dev)
        if pid == "fastsafetensors":
            fastsafetensors_cudart()
    target = str(dev)
    import gc

    gc.collect()
    base = rss_now()
    t0 = time.perf_counter()
    tensors, first, cleanup = load(pid, src, target, cuda, lambda: time.perf_counter())
    if cuda:
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    if cuda and any(t.device != dev for t in tensors):
        raise Failed(f"{pid} left tensors off {dev}: {sorted({str(t.device) for t in tensors})}")
    if expected is not None and len(tensors) != expected:
        raise Failed(f"{pid} handed out {len(tensors)} tensors; {src} holds {expected}")
    result = {
        "method": pid,
        "version": version,
        "seconds": seconds,
        "bytes": nbytes,
        "gbPerSecond": nbytes / seconds / 1e9 if seconds > 0 else None,
        "tensors": len(tensors),
        "firstTensorMs": None if first is None else (first - t0) * 1e3,
        "peakRssBytes": peak_rss(),
        "baseRssBytes": base,
    }
    if cleanup:
        cleanup()
    return result


USAGE = "usage: bench_peers.py check | run ID SOURCE [--device cpu|cuda|cuda:N]   (ID: " + " ".join(PEERS) + ")"


def main(argv):
    # ONE JSON line on stdout: whatever a peer prints (Python or C++) goes to stderr instead.
    global STDOUT_FD
    STDOUT_FD = os.dup(1)
    out = os.fdopen(STDOUT_FD, "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(doc):
        out.write(json.dumps(doc) + "\n")
        out.flush()

    if argv[:1] == ["_probe"]:  # the child of `check`
        emit(check_in_process(argv[1] if len(argv) > 1 else None))
        return 0
    if argv[:1] == ["check"] and len(argv) == 1:
        try:
            emit(check())
        except Exception as e:  # noqa: BLE001  (never fails: every peer then says why)
            emit({"python": sys.executable, "pythonVersion": sys.version.split()[0], "torch": None, "cuda": False,
                  "peers": {p: {"version": None, "why": f"check failed: {e}", "formats": v[3], "remote": v[4]} for p, v in PEERS.items()}})
        return 0
    if argv[:1] != ["run"]:
        print(USAGE, file=sys.stderr)
        return 2
    args = argv[1:]
    device = "cpu"
    if "--device" in args:
        i = args.index("--device")
        if i + 1 >= len(args):
            print(USAGE, file=sys.stderr)
            return 2
        device = args[i + 1]
        del args[i : i + 2]
    if len(args) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    pid, src = args
    try:
        emit(run(pid, src, device))
        return 0
    except Usage as e:
        print(f"bench_peers: {e}", file=sys.stderr)
        return 2
    except CannotRun as e:
        print(f"bench_peers: {pid}: {e}", file=sys.stderr)
        return 3
    except Failed as e:
        print(f"bench_peers: {pid}: {e}", file=sys.stderr)
        return 1
    except BaseException as e:  # noqa: BLE001
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(f"bench_peers: {pid} failed on {src}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stderr.flush()
    # A peer's threads (or a C++ pool) must not hold the exit up once the JSON is out.
    os._exit(code)
