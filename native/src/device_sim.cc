// The simulated device backend: a CPU stand-in that behaves like a CUDA device in every way
// that can break the loader and the fetcher, so that the GPU orchestration runs (and is
// checked byte for byte, and under the sanitizers) on machines without a GPU.
//
// Device memory. Each device reserves a PROT_NONE region of its capacity; DevPtr values point
// into it, so host code that dereferences one faults as it would on a GPU pointer. The bytes
// live in a second mapping of the same size (MAP_NORESERVE: untouched pages cost nothing);
// copies translate a device address into an offset there. A first-fit allocator (256-byte
// granules, coalescing free) hands out offsets; one that does not fit is E_DEVICE_OOM. Every
// copy must lie inside one live allocation of the device it names (CUDA_ERROR_INVALID_VALUE
// otherwise, never a host crash).
//
// Threads. Each stream has a worker thread that runs its work in FIFO order. An async copy
// waits a seeded random delay (counted from when it was queued, so a backlog hides it), then
// takes a slot on its device's one copy engine (a timeline shared by every copy to that
// device: n bytes take n / bandwidth), reads its host source at the start of that slot and
// completes at its end. So a staging slot rewritten before the copy's event completed
// corrupts the copy, as DMA from pinned memory would. Host functions go to the device's one
// callback thread, run one at a time, and hold their stream until they return; a host
// function that calls the device layer gets CUDA_ERROR_NOT_PERMITTED and poisons its device.
// Threads wait on condition variables; none keeps the process from exiting (the process-wide
// simulator is never destroyed, so its threads are simply ended with the process).
//
// Sticky errors. A poisoned device ("the context is unusable") fails every later call that
// names it with the error that poisoned it; work already queued drains without running
// (copies are dropped, events complete, host functions are not called: CUDA does not call a
// cuLaunchHostFunc function after a context error), so syncs return instead of hanging. The
// calls that give things back (free, streamDestroy) still release them on a poisoned device
// and then return the sticky error, so leak counts can be checked after a failure. Host
// registrations and events are not tied to a device and are not affected by poisoning.
//
// Fault injection (TENSORIZE_SIM_FAIL=op@n): the n-th call of op, counted per simulator (the
// process-wide one: per process), 1-based, counting every call that reaches the simulator with
// valid handles, fails with what a driver says there (the backend's code; the layer's front,
// device.cc, then names the operation: E_DEVICE_FREE, E_DEVICE_STREAM, ...):
//   alloc     alloc                          E_DEVICE_OOM  CUDA_ERROR_OUT_OF_MEMORY
//   free      free (the memory is freed)     E_DEVICE      CUDA_ERROR_LAUNCH_FAILED, sticky
//             (as cuMemFree reports an earlier asynchronous failure: it synchronizes)
//   register  hostRegister, hostAlloc        E_HOST_OOM    CUDA_ERROR_OUT_OF_MEMORY
//   stream    streamCreate                   E_DEVICE_OOM  CUDA_ERROR_OUT_OF_MEMORY
//   event     eventCreate                    E_DEVICE_OOM  CUDA_ERROR_OUT_OF_MEMORY
//             eventRecord (nothing recorded) E_DEVICE      CUDA_ERROR_INVALID_HANDLE
//   copy      copyAsync, copyToDevice        E_DEVICE      CUDA_ERROR_LAUNCH_FAILED, sticky
//             (the call fails and nothing is queued)
//   sync      streamSync, eventSync, sync    E_DEVICE      CUDA_ERROR_LAUNCH_FAILED, sticky
//             (the device is poisoned, then the call waits for the queued work to drain)
//   callback  the n-th host function to come up for execution (not launchHostFn: its launch
//             cannot fail on a healthy device): it is not called and its device is poisoned
//             with CUDA_ERROR_LAUNCH_FAILED, reported by the next call on that device (the
//             stream's sync): what a context that dies under queued host functions does
//   read      copyToHost                     E_DEVICE      CUDA_ERROR_INVALID_VALUE
// Only free, copy, sync and callback poison (and a host function calling the device layer); a
// poisoned device stays so for the life of the simulator (the layer has no reset). Messages
// name the driver call and the fault, e.g.
// "cuMemcpyHtoDAsync (simulated, cuda:0): CUDA_ERROR_LAUNCH_FAILED (injected: copy@3)".
//
// Choices where CUDA leaves room: streamDestroy waits for the stream's queued work (CUDA
// returns at once and releases later; waiting keeps leak counts exact) and is cheap after a
// streamSync; free() waits for the work queued on the device's streams, as cudaFree
// synchronizes the device; hostUnregister/hostFree wait for queued copies that read the range
// (no copy ever reads unmapped memory). A host function that never returns blocks those
// waits, as it would block the real stream. Pageable copies are staged into a private buffer
// before copyAsync returns. copyToHost is not time-modelled (reads back are for checking) and,
// like cuMemcpyDtoH against non-blocking streams, does not wait for queued copies. A 0-byte
// copy is a no-op (counted as a copy). driverVersion is 0: there is no driver.
#include "device_sim.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

namespace tz {
namespace dev {
namespace {

// Indexes into kSimOps (device_sim.h).
enum OpKind { kAlloc, kFree, kRegister, kStream, kCopy, kEvent, kSync, kCallback, kRead, kOpCount };
static_assert(kOpCount == sizeof kSimOps / sizeof kSimOps[0], "one OpKind per name in kSimOps");

constexpr uint64_t kGranule = kSimGranule;

// "api (simulated[, detail]): NAME[ (why)]": the driver call, then what the driver says.
Error cuError(Code code, const std::string& api, const std::string& detail, const char* name, const std::string& why) {
  std::string m = api + " (simulated" + (detail.empty() ? "" : ", " + detail) + "): " + name;
  if (!why.empty()) m += " (" + why + ")";
  return {code, m};
}

uint64_t pageSize() {
  static const uint64_t p = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return p;
}

// First-fit over the free blocks in address order; sizes rounded to 256 bytes so every
// offset stays 256-aligned; a freed block merges with free neighbours.
class Arena {
 public:
  explicit Arena(uint64_t cap) : cap_(cap) {
    if (cap) free_[0] = cap;
  }
  bool alloc(uint64_t bytes, uint64_t* off) {
    if (bytes > cap_) return false;
    const uint64_t need = (bytes + kGranule - 1) / kGranule * kGranule;
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < need) continue;
      *off = it->first;
      if (it->second > need) free_[it->first + need] = it->second - need;
      free_.erase(it);
      used_[*off] = {need, bytes};
      inUse_ += need;
      return true;
    }
    return false;
  }
  bool isBase(uint64_t off) const { return used_.count(off) != 0; }
  // Gives back the block at `off`; its rounded size in *size.
  bool release(uint64_t off, uint64_t* size) {
    auto u = used_.find(off);
    if (u == used_.end()) return false;
    uint64_t len = u->second.rounded;
    *size = len;
    used_.erase(u);
    inUse_ -= len;
    auto next = free_.lower_bound(off);
    if (next != free_.end() && off + len == next->first) {
      len += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        prev->second += len;
        return true;
      }
    }
    free_[off] = len;
    return true;
  }
  // [off, off + n) lies inside one live allocation (its requested size, so that an overrun
  // into the rounding is caught as CUDA's range checks would).
  bool contains(uint64_t off, uint64_t n) const {
    auto u = used_.upper_bound(off);
    if (u == used_.begin()) return false;
    --u;
    return off + n >= off && off + n <= u->first + u->second.requested;
  }
  uint64_t inUse() const { return inUse_; }
  int64_t live() const { return static_cast<int64_t>(used_.size()); }

 private:
  struct Block {
    uint64_t rounded, requested;
  };
  uint64_t cap_;
  uint64_t inUse_ = 0;
  std::map<uint64_t, uint64_t> free_;  // offset -> size
  std::map<uint64_t, Block> used_;     // offset -> block
};

class SimBackend;
struct SimDevice;

// Set on a callback thread while it runs a host function: the device layer refuses calls.
thread_local SimDevice* tl_callbackDevice = nullptr;

struct SimEvent {
  std::mutex m;
  std::condition_variable cv;
  uint64_t recorded = 0;       // eventRecord calls that queued a marker
  uint64_t completed = 0;      // highest marker number a stream has reached
  SimDevice* dev = nullptr;    // the device of the last record
};

// Host memory registered (hostRegister) or allocated pinned (hostAlloc).
struct Registration {
  uintptr_t base = 0;
  uint64_t len = 0;
  uint64_t mapLen = 0;  // hostAlloc: the mapping to unmap
  bool hostAlloc = false;
  int inflight = 0;     // queued copies that will read from it (guarded by SimBackend::m_)
};

struct StreamOp {
  enum Kind { Copy, Record, Fn } kind = Copy;
  Clock::time_point queued;
  // Copy: dst offset in the device's backing, the source (the caller's pinned memory, or
  // `staged` for a pageable copy) and its registration (to release when done).
  uint64_t off = 0, n = 0;
  const uint8_t* src = nullptr;
  std::unique_ptr<uint8_t[]> staged;
  std::shared_ptr<Registration> reg;
  // Record: the event and the number of this record.
  std::shared_ptr<SimEvent> ev;
  uint64_t gen = 0;
  // Fn
  HostFn fn = nullptr;
  void* arg = nullptr;
};

struct SimStream {
  SimBackend* b = nullptr;
  SimDevice* dev = nullptr;
  std::mutex m;
  std::condition_variable work, done;
  std::deque<StreamOp> q;
  uint64_t queued = 0, finished = 0;  // ops pushed, ops finished: a sync waits for finished >= queued-at-call
  bool stop = false;                  // no more pushes; the worker exits when the queue is empty
  std::thread worker;
  std::mt19937_64 rng;                // the worker's delays (only the worker touches it)
};

struct CallbackJob {
  HostFn fn;
  void* arg;
  bool done = false;
};

struct SimDevice {
  int index = 0;
  uint64_t cap = 0;
  uint8_t* reserve = nullptr;  // PROT_NONE: what DevPtr values point into
  uint8_t* backing = nullptr;  // the bytes
  uint64_t mapLen = 0;

  std::mutex m;  // arena, streams, poison message
  Arena arena{0};
  std::vector<std::shared_ptr<SimStream>> streams;
  std::atomic<bool> poisoned{false};
  std::string poisonName, poisonWhy;

  std::mutex engineM;  // the copy engine's timeline
  Clock::time_point busyUntil{};

  std::mutex cbM;  // the callback thread
  std::condition_variable cbWork, cbDone;
  std::deque<CallbackJob*> cbQ;
  std::thread cbThread;
  bool cbStarted = false, cbStop = false;

  std::string name() const { return "cuda:" + std::to_string(index); }
  bool owns(DevPtr p, uint64_t n, uint64_t* off) const {
    const uint64_t base = reinterpret_cast<uintptr_t>(reserve);
    if (p < base || p - base > cap || n > cap - (p - base)) return false;
    *off = p - base;
    return true;
  }
};

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class SimBackend : public Backend {
 public:
  SimBackend(int devices, const SimConfig& c) : cfg_(c) {
    for (const SimFault& f : c.faults)
      for (int k = 0; k < kOpCount; k++)
        if (f.op == kSimOps[k]) failAt_[k].push_back(f.n);
    const uint64_t cap = c.memBytes / kGranule * kGranule;
    const uint64_t mapLen = (cap + pageSize() - 1) / pageSize() * pageSize();
    info.backend = "simulated";
    info.driverVersion = 0;
    for (int i = 0; i < devices; i++) {
      auto d = std::make_unique<SimDevice>();
      d->index = i;
      d->cap = cap;
      d->mapLen = mapLen;
      void* r = mmap(nullptr, mapLen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      void* k = r == MAP_FAILED ? MAP_FAILED : mmap(nullptr, mapLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (r == MAP_FAILED || k == MAP_FAILED) {
        const int e = errno;
        if (r != MAP_FAILED) munmap(r, mapLen);
        info.backend = "none";
        info.why = "cannot map " + std::to_string(mapLen) + " bytes for simulated device " + std::to_string(i) + " (TENSORIZE_SIM_GPU_MEM): " + std::strerror(e);
        info.devices.clear();
        return;
      }
      d->reserve = static_cast<uint8_t*>(r);
      d->backing = static_cast<uint8_t*>(k);
      d->arena = Arena(cap);
      DeviceInfo di;
      di.index = i;
      di.name = "tensorize simulated GPU " + std::to_string(i);
      di.totalMemory = cap;
      char bus[32];
      std::snprintf(bus, sizeof bus, "0000:%02x:00.0", 0xa0 + i);
      di.pciBusId = bus;
      info.devices.push_back(di);
      devs_.push_back(std::move(d));
    }
  }

  // Tests only: stop every thread (queued work is dropped), unmap everything.
  ~SimBackend() override {
    for (auto& d : devs_) poison(d.get(), "CUDA_ERROR_DEINITIALIZED", "the simulator is being destroyed");
    std::vector<std::shared_ptr<SimStream>> sts;
    for (auto& d : devs_) {
      std::lock_guard<std::mutex> g(d->m);
      sts.insert(sts.end(), d->streams.begin(), d->streams.end());
    }
    for (auto& st : sts) stopStream(*st);
    for (auto& d : devs_) {
      {
        std::lock_guard<std::mutex> g(d->cbM);
        d->cbStop = true;
      }
      d->cbWork.notify_all();
      if (d->cbThread.joinable()) d->cbThread.join();
      if (d->reserve) munmap(d->reserve, d->mapLen);
      if (d->backing) munmap(d->backing, d->mapLen);
    }
    for (auto& r : regs_)
      if (r.second->hostAlloc) munmap(reinterpret_cast<void*>(r.second->base), r.second->mapLen);
  }

  // ---- device memory ----

  Error alloc(int device, uint64_t bytes, DevPtr* out) override {
    const char* api = "cuMemAlloc";
    SimDevice* d;
    if (Error e = enter(api, device, &d); !e.ok()) return e;
    const std::string detail = d->name() + ", " + std::to_string(bytes) + " bytes";
    if (std::string f = injected(kAlloc); !f.empty()) return cuError(Code::E_DEVICE_OOM, api, detail, "CUDA_ERROR_OUT_OF_MEMORY", "injected: " + f);
    if (d->poisoned) return sticky(d, api);
    if (bytes == 0) return cuError(Code::E_DEVICE, api, detail, "CUDA_ERROR_INVALID_VALUE", "0 bytes");
    std::lock_guard<std::mutex> g(d->m);
    uint64_t off;
    if (!d->arena.alloc(bytes, &off))
      return cuError(Code::E_DEVICE_OOM, api, detail, "CUDA_ERROR_OUT_OF_MEMORY",
                     std::to_string(d->arena.inUse()) + " of " + std::to_string(d->cap) + " bytes in use");
    *out = reinterpret_cast<uintptr_t>(d->reserve) + off;
    return {};
  }

  Error free(int device, DevPtr p) override {
    const char* api = "cuMemFree";
    SimDevice* d;
    if (Error e = enter(api, device, &d); !e.ok()) return e;
    const std::string fault = injected(kFree);
    uint64_t off;
    auto notOurs = [&] { return cuError(Code::E_DEVICE, api, d->name(), "CUDA_ERROR_INVALID_VALUE", "not an allocation of " + d->name()); };
    {
      std::lock_guard<std::mutex> g(d->m);
      if (!d->owns(p, 0, &off) || !d->arena.isBase(off)) return notOurs();
    }
    // As cudaFree synchronizes: nothing queued before this call still writes the block.
    drain(d);
    {
      std::lock_guard<std::mutex> g(d->m);
      uint64_t len;
      if (!d->arena.release(off, &len)) return notOurs();  // freed meanwhile by another thread
      // Give the pages back (whole pages inside the block only: neighbours may share the
      // ends), so a process that loads again and again does not grow. Still under the lock:
      // once it is released, another thread may allocate the block and copy into it.
      const uint64_t a = (off + pageSize() - 1) / pageSize() * pageSize(), z = (off + len) / pageSize() * pageSize();
      if (z > a) madvise(d->backing + a, z - a, MADV_DONTNEED);
    }
    if (!fault.empty()) return poisonNow(d, api, d->name(), fault);
    if (d->poisoned) return sticky(d, api);
    return {};
  }

  // ---- pinned host memory ----

  Error hostRegister(void* p, uint64_t bytes) override {
    const char* api = "cuMemHostRegister";
    if (Error e = enter(api); !e.ok()) return e;
    const std::string detail = std::to_string(bytes) + " bytes";
    if (std::string f = injected(kRegister); !f.empty()) return cuError(Code::E_HOST_OOM, api, detail, "CUDA_ERROR_OUT_OF_MEMORY", "injected: " + f);
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (!p || bytes == 0 || a + bytes < a) return cuError(Code::E_DEVICE, api, detail, "CUDA_ERROR_INVALID_VALUE", "");
    auto r = std::make_shared<Registration>();
    r->base = a;
    r->len = bytes;
    std::lock_guard<std::mutex> g(m_);
    if (overlaps(a, bytes)) return cuError(Code::E_DEVICE, api, detail, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED", "the range overlaps a registered one");
    regs_[a] = r;
    return {};
  }

  Error hostUnregister(void* p) override { return unregister("cuMemHostUnregister", p, false); }

  Error hostAlloc(uint64_t bytes, void** out) override {
    const char* api = "cuMemHostAlloc";
    if (Error e = enter(api); !e.ok()) return e;
    const std::string detail = std::to_string(bytes) + " bytes";
    if (std::string f = injected(kRegister); !f.empty()) return cuError(Code::E_HOST_OOM, api, detail, "CUDA_ERROR_OUT_OF_MEMORY", "injected: " + f);
    if (bytes == 0) return cuError(Code::E_DEVICE, api, detail, "CUDA_ERROR_INVALID_VALUE", "0 bytes");
    const uint64_t len = (bytes + pageSize() - 1) / pageSize() * pageSize();
    void* p = len < bytes ? MAP_FAILED : mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return cuError(Code::E_HOST_OOM, api, detail, "CUDA_ERROR_OUT_OF_MEMORY", std::strerror(errno));
    auto r = std::make_shared<Registration>();
    r->base = reinterpret_cast<uintptr_t>(p);
    r->len = bytes;
    r->mapLen = len;
    r->hostAlloc = true;
    {
      std::lock_guard<std::mutex> g(m_);
      regs_[r->base] = r;
    }
    *out = p;
    return {};
  }

  Error hostFree(void* p) override { return unregister("cuMemFreeHost", p, true); }

  // ---- streams ----

  Error streamCreate(int device, Stream* out) override {
    const char* api = "cuStreamCreate";
    SimDevice* d;
    if (Error e = enter(api, device, &d); !e.ok()) return e;
    if (std::string f = injected(kStream); !f.empty()) return cuError(Code::E_DEVICE_OOM, api, d->name(), "CUDA_ERROR_OUT_OF_MEMORY", "injected: " + f);
    if (d->poisoned) return sticky(d, api);
    auto st = std::make_shared<SimStream>();
    st->b = this;
    st->dev = d;
    // Each stream its own delays, fixed by the seed, the device and the creation order.
    st->rng.seed(splitmix(cfg_.seed ^ splitmix((static_cast<uint64_t>(d->index) << 32) | streamSerial_.fetch_add(1))));
    try {
      st->worker = std::thread([s = st.get()] { s->b->streamWorker(*s); });
    } catch (const std::system_error& e) {
      return cuError(Code::E_DEVICE, api, d->name(), "CUDA_ERROR_OUT_OF_MEMORY", std::string("cannot start the stream's thread: ") + e.what());
    }
    {
      std::lock_guard<std::mutex> g(d->m);
      d->streams.push_back(st);
    }
    std::lock_guard<std::mutex> g(m_);
    streams_[st.get()] = st;
    *out = reinterpret_cast<Stream>(st.get());
    return {};
  }

  Error streamDestroy(Stream s) override {
    const char* api = "cuStreamDestroy";
    if (Error e = enter(api); !e.ok()) return e;
    std::shared_ptr<SimStream> st;
    {
      std::lock_guard<std::mutex> g(m_);
      auto it = streams_.find(reinterpret_cast<SimStream*>(s));
      if (it == streams_.end()) return badHandle(api, "stream");
      st = it->second;
      streams_.erase(it);
    }
    SimDevice* d = st->dev;
    stopStream(*st);  // runs what is queued, then ends the worker
    {
      std::lock_guard<std::mutex> g(d->m);
      d->streams.erase(std::find(d->streams.begin(), d->streams.end(), st));
    }
    if (d->poisoned) return sticky(d, api);
    return {};
  }

  Error streamSync(Stream s) override {
    const char* api = "cuStreamSynchronize";
    if (Error e = enter(api); !e.ok()) return e;
    auto st = stream(s);
    if (!st) return badHandle(api, "stream");
    SimDevice* d = st->dev;
    if (std::string f = injected(kSync); !f.empty()) poison(d, "CUDA_ERROR_LAUNCH_FAILED", api + std::string(" (simulated, ") + d->name() + "): CUDA_ERROR_LAUNCH_FAILED (injected: " + f + ")");
    waitFor(*st);
    if (d->poisoned) return sticky(d, api);
    return {};
  }

  // What every host-to-device copy checks, in this order: an injected fault (which poisons
  // the device), a poisoned device, the destination range (not for n == 0). Counts the copy.
  static std::string copyDetail(SimDevice* d, uint64_t n) { return d->name() + ", " + std::to_string(n) + " bytes"; }

  Error beginCopyIn(SimDevice* d, const char* api, DevPtr dst, uint64_t n, uint64_t* off) {
    const std::string detail = copyDetail(d, n);
    if (std::string f = injected(kCopy); !f.empty()) return poisonNow(d, api, detail, f);
    if (d->poisoned) return sticky(d, api);
    if (n > 0) {
      if (Error e = checkRange(d, api, detail, dst, n, off); !e.ok()) return e;
    }
    copies_++;
    return {};
  }

  Error copyAsync(DevPtr dst, const void* src, uint64_t n, Stream s) override {
    const char* api = "cuMemcpyHtoDAsync";
    if (Error e = enter(api); !e.ok()) return e;
    auto st = stream(s);
    if (!st) return badHandle(api, "stream");
    uint64_t off = 0;
    if (Error e = beginCopyIn(st->dev, api, dst, n, &off); !e.ok() || n == 0) return e;
    StreamOp op;
    op.kind = StreamOp::Copy;
    op.off = off;
    op.n = n;
    op.reg = pin(src, n);  // counts a queued reader of the registration
    if (op.reg) {
      op.src = static_cast<const uint8_t*>(src);
    } else {
      // Pageable memory: CUDA stages it before the call returns; so does the simulator.
      op.staged.reset(new (std::nothrow) uint8_t[n]);
      if (!op.staged) return cuError(Code::E_HOST_OOM, api, copyDetail(st->dev, n), "CUDA_ERROR_OUT_OF_MEMORY", "no host memory to stage a pageable copy");
      std::memcpy(op.staged.get(), src, n);
      op.src = op.staged.get();
      pageable_++;
    }
    std::shared_ptr<Registration> reg = op.reg;
    if (!push(*st, std::move(op))) {
      unpin(reg);
      return badHandle(api, "stream");
    }
    return {};
  }

  // ---- events ----

  Error eventCreate(Event* out, bool /*blocking: the simulator's waits always sleep*/) override {
    const char* api = "cuEventCreate";
    if (Error e = enter(api); !e.ok()) return e;
    if (std::string f = injected(kEvent); !f.empty()) return cuError(Code::E_DEVICE_OOM, api, "", "CUDA_ERROR_OUT_OF_MEMORY", "injected: " + f);
    auto ev = std::make_shared<SimEvent>();
    std::lock_guard<std::mutex> g(m_);
    events_[ev.get()] = ev;
    *out = reinterpret_cast<Event>(ev.get());
    return {};
  }

  Error eventRecord(Event e, Stream s) override {
    const char* api = "cuEventRecord";
    if (Error err = enter(api); !err.ok()) return err;
    auto ev = event(e);
    if (!ev) return badHandle(api, "event");
    auto st = stream(s);
    if (!st) return badHandle(api, "stream");
    SimDevice* d = st->dev;
    if (std::string f = injected(kEvent); !f.empty()) return cuError(Code::E_DEVICE, api, d->name(), "CUDA_ERROR_INVALID_HANDLE", "injected: " + f);
    if (d->poisoned) return sticky(d, api);
    // Under the stream's lock, so that the marker is queued exactly when the count moves:
    // a record that is refused must not leave eventSync waiting for it.
    std::unique_lock<std::mutex> g(st->m);
    if (st->stop) return badHandle(api, "stream");
    StreamOp op;
    op.kind = StreamOp::Record;
    op.ev = ev;
    {
      std::lock_guard<std::mutex> ge(ev->m);
      op.gen = ++ev->recorded;
      ev->dev = d;
    }
    op.queued = Clock::now();
    st->q.push_back(std::move(op));
    st->queued++;
    g.unlock();
    st->work.notify_one();
    return {};
  }

  Error eventSync(Event e) override {
    const char* api = "cuEventSynchronize";
    if (Error err = enter(api); !err.ok()) return err;
    auto ev = event(e);
    if (!ev) return badHandle(api, "event");
    std::string f = injected(kSync);
    SimDevice* d;
    {
      std::unique_lock<std::mutex> g(ev->m);
      d = ev->dev;
      if (!f.empty() && d) {
        g.unlock();  // poison() must not nest inside the event's lock (the worker takes it)
        poison(d, "CUDA_ERROR_LAUNCH_FAILED", api + std::string(" (simulated, ") + d->name() + "): CUDA_ERROR_LAUNCH_FAILED (injected: " + f + ")");
        g.lock();
      }
      // The work queued before the last record: everything up to its marker.
      const uint64_t target = ev->recorded;
      ev->cv.wait(g, [&] { return ev->completed >= target; });
    }
    if (!f.empty() && !d) return cuError(Code::E_DEVICE, api, "", "CUDA_ERROR_LAUNCH_FAILED", "injected: " + f);
    if (d && d->poisoned) return sticky(d, api);
    return {};
  }

  Error eventDestroy(Event e) override {
    const char* api = "cuEventDestroy";
    if (Error err = enter(api); !err.ok()) return err;
    // Markers still queued hold their own reference: as in CUDA, destroying an event with a
    // pending record is allowed and its resources go when the record completes.
    std::lock_guard<std::mutex> g(m_);
    if (!events_.erase(reinterpret_cast<SimEvent*>(e))) return badHandle(api, "event");
    return {};
  }

  // ---- host functions ----

  Error launchHostFn(Stream s, HostFn fn, void* arg) override {
    const char* api = "cuLaunchHostFunc";
    if (Error e = enter(api); !e.ok()) return e;
    auto st = stream(s);
    if (!st) return badHandle(api, "stream");
    SimDevice* d = st->dev;
    if (d->poisoned) return sticky(d, api);
    if (!fn) return cuError(Code::E_DEVICE, api, d->name(), "CUDA_ERROR_INVALID_VALUE", "no function");
    {
      std::lock_guard<std::mutex> g(d->cbM);
      if (!d->cbStarted) {
        try {
          d->cbThread = std::thread([this, d] { callbackThread(*d); });
        } catch (const std::system_error& e) {
          return cuError(Code::E_DEVICE, api, d->name(), "CUDA_ERROR_OUT_OF_MEMORY", std::string("cannot start the callback thread: ") + e.what());
        }
        d->cbStarted = true;
      }
    }
    StreamOp op;
    op.kind = StreamOp::Fn;
    op.fn = fn;
    op.arg = arg;
    if (!push(*st, std::move(op))) return badHandle(api, "stream");
    return {};
  }

  // ---- synchronous copies ----

  Error copyToDevice(int device, DevPtr dst, const void* src, uint64_t n) override {
    const char* api = "cuMemcpyHtoD";
    SimDevice* d;
    if (Error e = enter(api, device, &d); !e.ok()) return e;
    uint64_t off = 0;
    if (Error e = beginCopyIn(d, api, dst, n, &off); !e.ok() || n == 0) return e;
    auto reg = pin(src, n);
    if (!reg) pageable_++;
    transfer(*d, off, static_cast<const uint8_t*>(src), n);
    unpin(reg);
    return {};
  }

  Error copyToHost(int device, void* dst, DevPtr src, uint64_t n) override {
    const char* api = "cuMemcpyDtoH";
    SimDevice* d;
    if (Error e = enter(api, device, &d); !e.ok()) return e;
    const std::string detail = copyDetail(d, n);
    if (std::string f = injected(kRead); !f.empty()) return cuError(Code::E_DEVICE, api, detail, "CUDA_ERROR_INVALID_VALUE", "injected: " + f);
    if (d->poisoned) return sticky(d, api);
    reads_++;
    if (n == 0) return {};
    uint64_t off;
    if (Error e = checkRange(d, api, detail, src, n, &off); !e.ok()) return e;
    std::memcpy(dst, d->backing + off, n);
    return {};
  }

  Error sync(int device) override {
    const char* api = "cuCtxSynchronize";
    SimDevice* d;
    if (Error e = enter(api, device, &d); !e.ok()) return e;
    if (std::string f = injected(kSync); !f.empty()) poison(d, "CUDA_ERROR_LAUNCH_FAILED", api + std::string(" (simulated, ") + d->name() + "): CUDA_ERROR_LAUNCH_FAILED (injected: " + f + ")");
    drain(d);
    if (d->poisoned) return sticky(d, api);
    return {};
  }

  SimCounts simCounts() override {
    SimCounts c;
    for (auto& d : devs_) {
      std::lock_guard<std::mutex> g(d->m);
      c.allocations += d->arena.live();
      c.deviceBytes += d->arena.inUse();
      c.poisoned = c.poisoned || d->poisoned;
    }
    std::lock_guard<std::mutex> g(m_);
    c.registrations = static_cast<int64_t>(regs_.size());
    c.streams = static_cast<int64_t>(streams_.size());
    c.events = static_cast<int64_t>(events_.size());
    c.copies = copies_;
    c.pageableCopies = pageable_;
    c.reads = reads_;
    return c;
  }

  // ---- threads ----

  void streamWorker(SimStream& st) {
    for (;;) {
      StreamOp op;
      {
        std::unique_lock<std::mutex> g(st.m);
        st.work.wait(g, [&] { return st.stop || !st.q.empty(); });
        if (st.q.empty()) return;  // stopped and drained
        op = std::move(st.q.front());
        st.q.pop_front();
      }
      run(st, op);
      {
        std::lock_guard<std::mutex> g(st.m);
        st.finished++;
      }
      st.done.notify_all();
    }
  }

  void callbackThread(SimDevice& d) {
    for (;;) {
      CallbackJob* job;
      {
        std::unique_lock<std::mutex> g(d.cbM);
        d.cbWork.wait(g, [&] { return d.cbStop || !d.cbQ.empty(); });
        if (d.cbQ.empty()) return;
        job = d.cbQ.front();
        d.cbQ.pop_front();
      }
      bool call = !d.poisoned;
      if (call) {
        if (std::string f = injected(kCallback); !f.empty()) {
          poison(&d, "CUDA_ERROR_LAUNCH_FAILED", "host function (simulated, " + d.name() + "): CUDA_ERROR_LAUNCH_FAILED (injected: " + f + ")");
          call = false;
        }
      }
      if (call) {
        tl_callbackDevice = &d;
        job->fn(job->arg);
        tl_callbackDevice = nullptr;
      }
      {
        std::lock_guard<std::mutex> g(d.cbM);
        job->done = true;
      }
      d.cbDone.notify_all();
    }
  }

 private:
  // Every call starts here: a host function calling the device layer is refused and poisons
  // the device whose callback thread it runs on (the load must fail, as CUDA may refuse).
  Error enter(const char* api) {
    SimDevice* cd = tl_callbackDevice;
    if (!cd) return {};
    const std::string why = "a host function called the device API";
    poison(cd, "CUDA_ERROR_NOT_PERMITTED", std::string(api) + " (simulated): CUDA_ERROR_NOT_PERMITTED (" + why + ")");
    return cuError(Code::E_DEVICE, api, "", "CUDA_ERROR_NOT_PERMITTED", why);
  }
  Error enter(const char* api, int device, SimDevice** d) {
    if (Error e = enter(api); !e.ok()) return e;
    if (device < 0 || device >= static_cast<int>(devs_.size()))
      return cuError(Code::E_NO_DEVICE, api, "", "CUDA_ERROR_INVALID_DEVICE",
                     "no device cuda:" + std::to_string(device) + " (" + std::to_string(devs_.size()) + " simulated)");
    *d = devs_[device].get();
    return {};
  }

  // "op@n" when this call is the one TENSORIZE_SIM_FAIL names, else "".
  std::string injected(OpKind op) {
    const uint64_t k = ++calls_[op];
    for (uint64_t n : failAt_[op])
      if (n == k) return std::string(kSimOps[op]) + "@" + std::to_string(n);
    return {};
  }

  void poison(SimDevice* d, const char* name, const std::string& why) {
    std::lock_guard<std::mutex> g(d->m);
    if (d->poisoned) return;  // the first error is the one every later call reports
    d->poisonName = name;
    d->poisonWhy = why;
    d->poisoned = true;
  }
  Error poisonNow(SimDevice* d, const char* api, const std::string& detail, const std::string& fault) {
    Error e = cuError(Code::E_DEVICE, api, detail, "CUDA_ERROR_LAUNCH_FAILED", "injected: " + fault);
    poison(d, "CUDA_ERROR_LAUNCH_FAILED", e.message);
    e.hint = kStickyHint;
    return e;
  }
  Error sticky(SimDevice* d, const char* api) {
    std::lock_guard<std::mutex> g(d->m);
    Error e = cuError(Code::E_DEVICE, api, d->name(), d->poisonName.c_str(), d->name() + " is unusable after an earlier error: " + d->poisonWhy);
    e.hint = kStickyHint;
    return e;
  }
  Error badHandle(const char* api, const char* what) {
    return cuError(Code::E_DEVICE, api, "", "CUDA_ERROR_INVALID_HANDLE", std::string("not a live ") + what + " of this simulator");
  }

  Error checkRange(SimDevice* d, const char* api, const std::string& detail, DevPtr p, uint64_t n, uint64_t* off) {
    std::lock_guard<std::mutex> g(d->m);
    if (d->owns(p, n, off) && d->arena.contains(*off, n)) return {};
    return cuError(Code::E_DEVICE, api, detail, "CUDA_ERROR_INVALID_VALUE", "the range is not inside an allocation of " + d->name());
  }

  std::shared_ptr<SimStream> stream(Stream s) {
    std::lock_guard<std::mutex> g(m_);
    auto it = streams_.find(reinterpret_cast<SimStream*>(s));
    return it == streams_.end() ? nullptr : it->second;
  }
  std::shared_ptr<SimEvent> event(Event e) {
    std::lock_guard<std::mutex> g(m_);
    auto it = events_.find(reinterpret_cast<SimEvent*>(e));
    return it == events_.end() ? nullptr : it->second;
  }

  bool overlaps(uintptr_t a, uint64_t n) const {  // under m_
    auto it = regs_.lower_bound(a + n);
    if (it == regs_.begin()) return false;
    --it;
    return it->second->base + it->second->len > a;
  }
  // The registration holding [p, p + n), counted as read by one more queued copy; null
  // when the range is not (wholly) pinned.
  std::shared_ptr<Registration> pin(const void* p, uint64_t n) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    std::lock_guard<std::mutex> g(m_);
    auto it = regs_.upper_bound(a);
    if (it == regs_.begin()) return nullptr;
    --it;
    const Registration& r = *it->second;
    if (a + n < a || a + n > r.base + r.len) return nullptr;
    it->second->inflight++;
    return it->second;
  }
  void unpin(const std::shared_ptr<Registration>& r) {
    if (!r) return;
    {
      std::lock_guard<std::mutex> g(m_);
      r->inflight--;
    }
    regDone_.notify_all();
  }

  Error unregister(const char* api, void* p, bool hostAllocated) {
    if (Error e = enter(api); !e.ok()) return e;
    std::shared_ptr<Registration> r;
    std::unique_lock<std::mutex> g(m_);
    auto it = regs_.find(reinterpret_cast<uintptr_t>(p));
    if (it == regs_.end() || it->second->hostAlloc != hostAllocated)
      return cuError(Code::E_DEVICE, api, "", hostAllocated ? "CUDA_ERROR_INVALID_VALUE" : "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED",
                     hostAllocated ? "not memory from cuMemHostAlloc" : "not the start of a registered range");
    r = it->second;
    regs_.erase(it);
    // Copies already queued from the range still read it: let them (no copy may read
    // memory that is about to be unmapped).
    regDone_.wait(g, [&] { return r->inflight == 0; });
    g.unlock();
    if (hostAllocated) munmap(p, r->mapLen);
    return {};
  }

  bool push(SimStream& st, StreamOp&& op) {
    op.queued = Clock::now();
    {
      std::lock_guard<std::mutex> g(st.m);
      if (st.stop) return false;
      st.q.push_back(std::move(op));
      st.queued++;
    }
    st.work.notify_one();
    return true;
  }

  // Wait for what was queued on the stream before now.
  void waitFor(SimStream& st) {
    std::unique_lock<std::mutex> g(st.m);
    const uint64_t target = st.queued;
    st.done.wait(g, [&] { return st.finished >= target; });
  }
  void drain(SimDevice* d) {
    std::vector<std::shared_ptr<SimStream>> sts;
    {
      std::lock_guard<std::mutex> g(d->m);
      sts = d->streams;
    }
    for (auto& st : sts) waitFor(*st);
  }
  void stopStream(SimStream& st) {
    {
      std::lock_guard<std::mutex> g(st.m);
      st.stop = true;
    }
    st.work.notify_all();
    if (st.worker.joinable()) st.worker.join();
  }

  // One copy on the device's engine: n bytes take n / bandwidth, one after another with every
  // other copy to the device; the source is read when the copy's turn starts.
  void transfer(SimDevice& d, uint64_t off, const uint8_t* src, uint64_t n) {
    const auto dur = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(static_cast<double>(n) / (cfg_.gbps * 1e9)));
    Clock::time_point start, end;
    {
      std::lock_guard<std::mutex> g(d.engineM);
      start = std::max(Clock::now(), d.busyUntil);
      end = start + dur;
      d.busyUntil = end;
    }
    std::this_thread::sleep_until(start);
    if (d.poisoned) return;
    std::memcpy(d.backing + off, src, n);
    std::this_thread::sleep_until(end);
  }

  void run(SimStream& st, StreamOp& op) {
    SimDevice& d = *st.dev;
    switch (op.kind) {
      case StreamOp::Copy:
        if (!d.poisoned) {
          if (cfg_.maxDelayUs) {
            std::uniform_int_distribution<uint32_t> delay(0, cfg_.maxDelayUs);
            std::this_thread::sleep_until(op.queued + std::chrono::microseconds(delay(st.rng)));
          }
          if (!d.poisoned) transfer(d, op.off, op.src, op.n);
        }
        unpin(op.reg);
        break;
      case StreamOp::Record: {
        std::lock_guard<std::mutex> g(op.ev->m);
        op.ev->completed = std::max(op.ev->completed, op.gen);
        op.ev->cv.notify_all();
        break;
      }
      case StreamOp::Fn: {
        if (d.poisoned) break;  // CUDA does not call a host function after a context error
        CallbackJob job{op.fn, op.arg};
        std::unique_lock<std::mutex> g(d.cbM);
        d.cbQ.push_back(&job);
        d.cbWork.notify_one();
        d.cbDone.wait(g, [&] { return job.done; });  // the stream is held until it returns
        break;
      }
    }
  }

  const SimConfig cfg_;
  std::vector<std::unique_ptr<SimDevice>> devs_;
  std::vector<uint64_t> failAt_[kOpCount];
  std::atomic<uint64_t> calls_[kOpCount] = {};
  std::atomic<uint64_t> streamSerial_{0}, copies_{0}, pageable_{0}, reads_{0};

  std::mutex m_;  // the handle tables and registrations
  std::condition_variable regDone_;
  std::unordered_map<SimStream*, std::shared_ptr<SimStream>> streams_;
  std::unordered_map<SimEvent*, std::shared_ptr<SimEvent>> events_;
  std::map<uintptr_t, std::shared_ptr<Registration>> regs_;
};

// A simulator that could not be configured: no devices, and every call says why.
std::unique_ptr<Backend> badSim(Code code, const std::string& why) {
  auto b = std::make_unique<FailingBackend>(Error{code, "simulated GPU: " + why});
  b->info.why = why;
  return b;
}

}  // namespace

std::unique_ptr<Backend> makeSimBackend(int devices, const SimConfig& c) {
  if (devices < 1 || devices > 16) return badSim(Code::E_USAGE, "the number of simulated devices must be 1 to 16");
  auto b = std::make_unique<SimBackend>(devices, c);
  if (b->info.backend != "simulated") return badSim(Code::E_NO_DEVICE, b->info.why);
  return b;
}

std::unique_ptr<Backend> makeSimBackend(const Config& c) {
  if (!c.simError.empty()) return badSim(Code::E_USAGE, c.simError);
  return makeSimBackend(c.simDevices, c.sim);
}

}  // namespace dev
}  // namespace tz
