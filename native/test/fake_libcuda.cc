// A fake CUDA driver: a shared library exporting the driver calls tensorize uses (with the
// signatures of device_cuda_api.h, declared below from the same list, so a mismatch does not
// compile), for the native tests to load through TENSORIZE_LIBCUDA before any GPU is lent.
//
// It is strict where the real driver is, and stricter where a mistake would otherwise pass
// unseen: every call but cuDriverGetVersion and the error strings needs cuInit first; memory,
// stream and event calls need a current context, and a stream or event only works in the
// context that made it (the layer must switch contexts right, on every thread); device handles
// are not the ordinals (10 + ordinal), so a caller mixing them up fails; copies must land
// inside a live allocation of the current device; a driver call from inside a host function
// fails and is counted. Device memory is host memory (aligned_alloc), so copies really move
// bytes and a test can read them back.
//
// It runs every operation at once, host functions included (inline, on the launching thread):
// it checks calls and arguments, not timing (the simulator, device_sim.cc, models that).
//
// Variants, by FAKE_CUDA_VERSION (the CUDA version cuDriverGetVersion reports and the symbols
// such a driver exports): 12080 (default), 10020 (no cuDevicePrimaryCtxRelease_v2: the older
// name only), 9020 (no cuLaunchHostFunc either: too old for tensorize).
//
// Control: fake_libcuda.h (reset, fault injection, the call log, counts).
#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "../src/device_cuda_api.h"
#include "fake_libcuda.h"

#ifndef FAKE_CUDA_VERSION
#define FAKE_CUDA_VERSION 12080
#endif

using namespace tz::cu;

#define FAKE_EXPORT extern "C" __attribute__((visibility("default")))

// Every driver function, declared with our signatures: a definition below that differs does
// not compile (extern "C" functions cannot overload).
#define FAKE_DECLARE(name, symbol, version, params) FAKE_EXPORT CUresult symbol params;
TZ_CU_FUNCTIONS(FAKE_DECLARE)
TZ_CU_OPTIONAL_FUNCTIONS(FAKE_DECLARE)
FAKE_EXPORT CUresult cuDevicePrimaryCtxRelease(CUdevice dev);  // the CUDA 7.0 name
#undef FAKE_DECLARE

namespace {

constexpr int kMaxDevices = 8;
constexpr int kHandleBase = 10;

struct Ctx {
  int device;
  int refs;
};
// Fixed storage: a thread's current context may outlive a reset.
Ctx ctxs[kMaxDevices];
struct CtxInit {
  CtxInit() {
    for (int i = 0; i < kMaxDevices; i++) ctxs[i] = Ctx{i, 0};
  }
} ctxInit;

struct FakeStream {
  Ctx* ctx;
  unsigned flags;
  int id;
};
struct FakeEvent {
  Ctx* ctx;
  unsigned flags;
  int id;
};
struct Block {
  int device;
  size_t bytes;
};
struct Pin {
  size_t bytes;
  unsigned flags;
  bool allocated;  // cuMemHostAlloc (else cuMemHostRegister_v2)
};
struct Fault {
  CUresult result;
  int nth;
  int seen;
};

struct State {
  int devices = 2;
  int driverVersion = FAKE_CUDA_VERSION;
  CUresult initResult = SUCCESS;
  unsigned long long capacity = 1ull << 30;
  bool initialized = false;
  unsigned long long used[kMaxDevices] = {};
  std::map<uintptr_t, Block> blocks;
  std::map<uintptr_t, Pin> pins;
  std::set<FakeStream*> streams;
  std::set<FakeEvent*> events;
  int nextId = 1;
  std::vector<std::string> log;
  std::map<std::string, int> calls;
  std::map<std::string, Fault> faults;
  long pinnedCopies = 0, pageableCopies = 0, hostFns = 0;
  std::string line;
};

std::mutex mu;
State st;
std::atomic<long> violations{0};
thread_local Ctx* current = nullptr;
thread_local bool inHostFn = false;

// One driver call: holds the fake's lock, counts the call, and checks what every call needs.
class Call {
 public:
  explicit Call(const char* symbol, bool logged = true) : sym_(symbol), logged_(logged), g_(mu) {
    st.calls[sym_]++;
    dev_ = current ? current->device : -1;
  }

  // SUCCESS, or why the call fails before doing anything: made from a host function, an
  // injected fault, no cuInit, no (live) current context.
  CUresult begin(bool needInit = true, bool needContext = true) {
    if (inHostFn) {
      violations++;
      return ERROR_NOT_PERMITTED;
    }
    auto f = st.faults.find(sym_);
    if (f != st.faults.end() && (f->second.nth == 0 || ++f->second.seen == f->second.nth)) return f->second.result;
    if (needInit && !st.initialized) return ERROR_NOT_INITIALIZED;
    if (needContext && (!current || current->refs <= 0)) return ERROR_INVALID_CONTEXT;
    return SUCCESS;
  }

  CUresult end(CUresult r, const char* fmt, ...) __attribute__((format(printf, 3, 4))) {
    char args[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return record(r, args);
  }
  CUresult end(CUresult r) { return record(r, ""); }

  void unlock() { g_.unlock(); }

 private:
  CUresult record(CUresult r, const char* args) {
    if (logged_) {
      std::string dev = dev_ >= 0 ? std::to_string(dev_) : "-";
      st.log.push_back(std::string(sym_) + " dev=" + dev + (*args ? " " : "") + args + " -> " + std::to_string(r));
    }
    return r;
  }

  const char* sym_;
  bool logged_;
  int dev_;
  std::unique_lock<std::mutex> g_;
};

int ordinalOf(CUdevice d) {
  int i = d - kHandleBase;
  return i >= 0 && i < st.devices ? i : -1;
}

// The allocation of the current device that holds [p, p + n), or nullptr.
const Block* blockOf(uintptr_t p, size_t n) {
  auto it = st.blocks.upper_bound(p);
  if (it == st.blocks.begin()) return nullptr;
  --it;
  const Block& b = it->second;
  if (p + n > it->first + b.bytes || p + n < p) return nullptr;
  if (!current || b.device != current->device) return nullptr;
  return &b;
}

bool pinnedRange(const void* p, size_t n) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = st.pins.upper_bound(a);
  if (it == st.pins.begin()) return false;
  --it;
  return a + n <= it->first + it->second.bytes;
}

bool overlapsPin(uintptr_t a, size_t n) {
  for (auto& kv : st.pins)
    if (a < kv.first + kv.second.bytes && kv.first < a + n) return true;
  return false;
}

FakeStream* liveStream(CUstream s) {
  auto* fs = reinterpret_cast<FakeStream*>(s);
  return st.streams.count(fs) ? fs : nullptr;
}

FakeEvent* liveEvent(CUevent e) {
  auto* fe = reinterpret_cast<FakeEvent*>(e);
  return st.events.count(fe) ? fe : nullptr;
}

struct Name {
  CUresult r;
  const char* name;
  const char* text;
};
// The real driver's words for the values the tests use.
const Name kNames[] = {
    {SUCCESS, "CUDA_SUCCESS", "no error"},
    {ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {ERROR_STUB_LIBRARY, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {ERROR_DEVICE_UNAVAILABLE, "CUDA_ERROR_DEVICE_UNAVAILABLE", "CUDA-capable device(s) is/are busy or unavailable"},
    {ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {ERROR_HOST_MEMORY_ALREADY_REGISTERED, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED", "part or all of the requested memory range is already mapped"},
    {ERROR_HOST_MEMORY_NOT_REGISTERED, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED", "pointer does not correspond to a registered memory region"},
    {ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {ERROR_NOT_PERMITTED, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {ERROR_SYSTEM_NOT_READY, "CUDA_ERROR_SYSTEM_NOT_READY", "system not yet initialized"},
    {ERROR_SYSTEM_DRIVER_MISMATCH, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "system has unsupported display driver / cuda driver combination"},
    {ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE, "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE", "forward compatibility was attempted on non supported HW"},
    {ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

// Unknown values: CUDA_ERROR_INVALID_VALUE and a null string, as the real driver answers.
CUresult lookup(CUresult r, const char** out, bool text) {
  if (!out) return ERROR_INVALID_VALUE;
  for (auto& n : kNames)
    if (n.r == r) {
      *out = text ? n.text : n.name;
      return SUCCESS;
    }
  *out = nullptr;
  return ERROR_INVALID_VALUE;
}

void resetLocked(int devices, int driverVersion, CUresult initResult, unsigned long long capacity) {
  for (auto& kv : st.blocks) std::free(reinterpret_cast<void*>(kv.first));
  for (auto& kv : st.pins)
    if (kv.second.allocated) std::free(reinterpret_cast<void*>(kv.first));
  for (auto* s : st.streams) delete s;
  for (auto* e : st.events) delete e;
  st = State{};
  st.devices = devices < 0 ? 0 : devices > kMaxDevices ? kMaxDevices : devices;
  st.driverVersion = driverVersion;
  st.initResult = initResult;
  st.capacity = capacity;
  for (int i = 0; i < kMaxDevices; i++) ctxs[i] = Ctx{i, 0};
  violations = 0;
}

CUresult release(const char* symbol, CUdevice dev) {
  Call c(symbol);
  if (CUresult r = c.begin(true, false)) return c.end(r, "device=%d", dev);
  int i = ordinalOf(dev);
  if (i < 0) return c.end(ERROR_INVALID_DEVICE, "device=%d", dev);
  if (ctxs[i].refs <= 0) return c.end(ERROR_INVALID_CONTEXT, "device=%d", i);
  ctxs[i].refs--;
  return c.end(SUCCESS, "device=%d", i);
}

}  // namespace

// ---- the driver ----

CUresult cuDriverGetVersion(int* v) {
  Call c("cuDriverGetVersion");
  if (CUresult r = c.begin(false, false)) return c.end(r);
  if (!v) return c.end(ERROR_INVALID_VALUE);
  *v = st.driverVersion;
  return c.end(SUCCESS, "version=%d", *v);
}

CUresult cuInit(unsigned int flags) {
  Call c("cuInit");
  if (CUresult r = c.begin(false, false)) return c.end(r, "flags=%u", flags);
  if (flags != 0) return c.end(ERROR_INVALID_VALUE, "flags=%u", flags);
  if (st.initResult == SUCCESS) st.initialized = true;
  return c.end(st.initResult, "flags=%u", flags);
}

CUresult cuGetErrorName(CUresult error, const char** str) {
  Call c("cuGetErrorName", false);
  if (CUresult r = c.begin(false, false)) return r;
  return lookup(error, str, false);
}

CUresult cuGetErrorString(CUresult error, const char** str) {
  Call c("cuGetErrorString", false);
  if (CUresult r = c.begin(false, false)) return r;
  return lookup(error, str, true);
}

CUresult cuDeviceGetCount(int* count) {
  Call c("cuDeviceGetCount");
  if (CUresult r = c.begin(true, false)) return c.end(r);
  if (!count) return c.end(ERROR_INVALID_VALUE);
  *count = st.devices;
  return c.end(SUCCESS, "count=%d", *count);
}

CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  Call c("cuDeviceGet");
  if (CUresult r = c.begin(true, false)) return c.end(r, "ordinal=%d", ordinal);
  if (!device) return c.end(ERROR_INVALID_VALUE, "ordinal=%d", ordinal);
  if (ordinal < 0 || ordinal >= st.devices) return c.end(ERROR_INVALID_DEVICE, "ordinal=%d", ordinal);
  *device = kHandleBase + ordinal;
  return c.end(SUCCESS, "ordinal=%d", ordinal);
}

CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
  Call c("cuDeviceGetName");
  if (CUresult r = c.begin(true, false)) return c.end(r);
  int i = ordinalOf(dev);
  if (i < 0) return c.end(ERROR_INVALID_DEVICE, "device=%d", dev);
  if (!name || len <= 0) return c.end(ERROR_INVALID_VALUE, "device=%d", i);
  std::snprintf(name, static_cast<size_t>(len), "Fake GPU %d", i);
  return c.end(SUCCESS, "device=%d len=%d", i, len);
}

CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
  Call c("cuDeviceTotalMem_v2");
  if (CUresult r = c.begin(true, false)) return c.end(r);
  int i = ordinalOf(dev);
  if (i < 0) return c.end(ERROR_INVALID_DEVICE, "device=%d", dev);
  if (!bytes) return c.end(ERROR_INVALID_VALUE, "device=%d", i);
  *bytes = st.capacity;
  return c.end(SUCCESS, "device=%d", i);
}

CUresult cuDeviceGetPCIBusId(char* bus, int len, CUdevice dev) {
  Call c("cuDeviceGetPCIBusId");
  if (CUresult r = c.begin(true, false)) return c.end(r);
  int i = ordinalOf(dev);
  if (i < 0) return c.end(ERROR_INVALID_DEVICE, "device=%d", dev);
  if (!bus || len <= 0) return c.end(ERROR_INVALID_VALUE, "device=%d", i);
  std::snprintf(bus, static_cast<size_t>(len), "0000:%02X:00.0", 0x1A + 0x10 * i);
  return c.end(SUCCESS, "device=%d len=%d", i, len);
}

CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice dev) {
  Call c("cuDevicePrimaryCtxRetain");
  if (CUresult r = c.begin(true, false)) return c.end(r, "device=%d", ordinalOf(dev));
  int i = ordinalOf(dev);
  if (i < 0) return c.end(ERROR_INVALID_DEVICE, "device=%d", dev);
  if (!ctx) return c.end(ERROR_INVALID_VALUE, "device=%d", i);
  ctxs[i].refs++;
  *ctx = reinterpret_cast<CUcontext>(&ctxs[i]);
  return c.end(SUCCESS, "device=%d", i);
}

#if FAKE_CUDA_VERSION >= 11000
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) { return release("cuDevicePrimaryCtxRelease_v2", dev); }
#endif
CUresult cuDevicePrimaryCtxRelease(CUdevice dev) { return release("cuDevicePrimaryCtxRelease", dev); }

CUresult cuCtxSetCurrent(CUcontext ctx) {
  Call c("cuCtxSetCurrent");
  auto* want = reinterpret_cast<Ctx*>(ctx);
  int to = want ? static_cast<int>(want - ctxs) : -1;
  if (CUresult r = c.begin(true, false)) return c.end(r, "to=%d", to);
  if (want && (to < 0 || to >= st.devices || want->refs <= 0)) return c.end(ERROR_INVALID_CONTEXT, "to=%d", to);
  current = want;
  return c.end(SUCCESS, "to=%d", to);
}

CUresult cuCtxGetCurrent(CUcontext* ctx) {
  Call c("cuCtxGetCurrent", false);
  if (CUresult r = c.begin(true, false)) return r;
  if (!ctx) return ERROR_INVALID_VALUE;
  *ctx = reinterpret_cast<CUcontext>(current);
  return SUCCESS;
}

CUresult cuCtxSynchronize() {
  Call c("cuCtxSynchronize");
  return c.end(c.begin());
}

CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytes) {
  Call c("cuMemAlloc_v2");
  if (CUresult r = c.begin()) return c.end(r, "bytes=%zu", bytes);
  if (!dptr || bytes == 0) return c.end(ERROR_INVALID_VALUE, "bytes=%zu", bytes);
  int d = current->device;
  if (bytes > st.capacity - st.used[d]) return c.end(ERROR_OUT_OF_MEMORY, "bytes=%zu", bytes);
  size_t rounded = (bytes + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded);
  if (!p) return c.end(ERROR_OUT_OF_MEMORY, "bytes=%zu", bytes);
  st.blocks[reinterpret_cast<uintptr_t>(p)] = Block{d, bytes};
  st.used[d] += bytes;
  *dptr = reinterpret_cast<uintptr_t>(p);
  return c.end(SUCCESS, "bytes=%zu ptr=0x%llx", bytes, *dptr);
}

CUresult cuMemFree_v2(CUdeviceptr dptr) {
  Call c("cuMemFree_v2");
  if (CUresult r = c.begin()) return c.end(r, "ptr=0x%llx", dptr);
  auto it = st.blocks.find(static_cast<uintptr_t>(dptr));
  if (it == st.blocks.end()) return c.end(ERROR_INVALID_VALUE, "ptr=0x%llx", dptr);
  if (it->second.device != current->device) return c.end(ERROR_INVALID_CONTEXT, "ptr=0x%llx", dptr);
  st.used[it->second.device] -= it->second.bytes;
  std::free(reinterpret_cast<void*>(it->first));
  st.blocks.erase(it);
  return c.end(SUCCESS, "ptr=0x%llx", dptr);
}

CUresult cuMemHostRegister_v2(void* p, size_t bytes, unsigned int flags) {
  Call c("cuMemHostRegister_v2");
  if (CUresult r = c.begin()) return c.end(r, "p=%p bytes=%zu flags=%u", p, bytes, flags);
  if (!p || bytes == 0) return c.end(ERROR_INVALID_VALUE, "p=%p bytes=%zu flags=%u", p, bytes, flags);
  if (overlapsPin(reinterpret_cast<uintptr_t>(p), bytes)) return c.end(ERROR_HOST_MEMORY_ALREADY_REGISTERED, "p=%p bytes=%zu flags=%u", p, bytes, flags);
  st.pins[reinterpret_cast<uintptr_t>(p)] = Pin{bytes, flags, false};
  return c.end(SUCCESS, "p=%p bytes=%zu flags=%u", p, bytes, flags);
}

CUresult cuMemHostUnregister(void* p) {
  Call c("cuMemHostUnregister");
  if (CUresult r = c.begin()) return c.end(r, "p=%p", p);
  auto it = st.pins.find(reinterpret_cast<uintptr_t>(p));
  if (it == st.pins.end() || it->second.allocated) return c.end(ERROR_HOST_MEMORY_NOT_REGISTERED, "p=%p", p);
  st.pins.erase(it);
  return c.end(SUCCESS, "p=%p", p);
}

CUresult cuMemHostAlloc(void** pp, size_t bytes, unsigned int flags) {
  Call c("cuMemHostAlloc");
  if (CUresult r = c.begin()) return c.end(r, "bytes=%zu flags=%u", bytes, flags);
  if (!pp || bytes == 0) return c.end(ERROR_INVALID_VALUE, "bytes=%zu flags=%u", bytes, flags);
  void* p = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
  if (!p) return c.end(ERROR_OUT_OF_MEMORY, "bytes=%zu flags=%u", bytes, flags);
  st.pins[reinterpret_cast<uintptr_t>(p)] = Pin{bytes, flags, true};
  *pp = p;
  return c.end(SUCCESS, "bytes=%zu flags=%u ptr=%p", bytes, flags, p);
}

CUresult cuMemFreeHost(void* p) {
  Call c("cuMemFreeHost");
  if (CUresult r = c.begin()) return c.end(r, "p=%p", p);
  auto it = st.pins.find(reinterpret_cast<uintptr_t>(p));
  if (it == st.pins.end() || !it->second.allocated) return c.end(ERROR_INVALID_VALUE, "p=%p", p);
  c.end(SUCCESS, "p=%p", p);  // logged first: p is freed below
  std::free(p);
  st.pins.erase(it);
  return SUCCESS;
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream s) {
  Call c("cuMemcpyHtoDAsync_v2");
  FakeStream* fs = liveStream(s);
  int sid = fs ? fs->id : 0;
  if (CUresult r = c.begin()) return c.end(r, "dst=0x%llx src=%p n=%zu stream=S%d", dst, src, n, sid);
  if (!fs) return c.end(ERROR_INVALID_HANDLE, "dst=0x%llx src=%p n=%zu stream=?", dst, src, n);
  if (fs->ctx != current) return c.end(ERROR_INVALID_CONTEXT, "dst=0x%llx src=%p n=%zu stream=S%d", dst, src, n, sid);
  if (!src || !blockOf(dst, n)) return c.end(ERROR_INVALID_VALUE, "dst=0x%llx src=%p n=%zu stream=S%d", dst, src, n, sid);
  bool pinned = pinnedRange(src, n);
  (pinned ? st.pinnedCopies : st.pageableCopies)++;
  std::memcpy(reinterpret_cast<void*>(dst), src, n);
  return c.end(SUCCESS, "dst=0x%llx src=%p n=%zu stream=S%d pinned=%d", dst, src, n, sid, pinned ? 1 : 0);
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
  Call c("cuMemcpyHtoD_v2");
  if (CUresult r = c.begin()) return c.end(r, "dst=0x%llx src=%p n=%zu", dst, src, n);
  if (!src || !blockOf(dst, n)) return c.end(ERROR_INVALID_VALUE, "dst=0x%llx src=%p n=%zu", dst, src, n);
  bool pinned = pinnedRange(src, n);
  (pinned ? st.pinnedCopies : st.pageableCopies)++;
  std::memcpy(reinterpret_cast<void*>(dst), src, n);
  return c.end(SUCCESS, "dst=0x%llx src=%p n=%zu pinned=%d", dst, src, n, pinned ? 1 : 0);
}

CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
  Call c("cuMemcpyDtoH_v2");
  if (CUresult r = c.begin()) return c.end(r, "dst=%p src=0x%llx n=%zu", dst, src, n);
  if (!dst || !blockOf(src, n)) return c.end(ERROR_INVALID_VALUE, "dst=%p src=0x%llx n=%zu", dst, src, n);
  std::memcpy(dst, reinterpret_cast<const void*>(src), n);
  return c.end(SUCCESS, "dst=%p src=0x%llx n=%zu", dst, src, n);
}

CUresult cuStreamCreate(CUstream* s, unsigned int flags) {
  Call c("cuStreamCreate");
  if (CUresult r = c.begin()) return c.end(r, "flags=%u", flags);
  if (!s) return c.end(ERROR_INVALID_VALUE, "flags=%u", flags);
  auto* fs = new FakeStream{current, flags, st.nextId++};
  st.streams.insert(fs);
  *s = reinterpret_cast<CUstream>(fs);
  return c.end(SUCCESS, "flags=%u stream=S%d", flags, fs->id);
}

CUresult cuStreamDestroy_v2(CUstream s) {
  Call c("cuStreamDestroy_v2");
  FakeStream* fs = liveStream(s);
  int sid = fs ? fs->id : 0;
  if (CUresult r = c.begin()) return c.end(r, "stream=S%d", sid);
  if (!fs) return c.end(ERROR_INVALID_HANDLE, "stream=?");
  if (fs->ctx != current) return c.end(ERROR_INVALID_CONTEXT, "stream=S%d", sid);
  st.streams.erase(fs);
  delete fs;
  return c.end(SUCCESS, "stream=S%d", sid);
}

CUresult cuStreamSynchronize(CUstream s) {
  Call c("cuStreamSynchronize");
  FakeStream* fs = liveStream(s);
  int sid = fs ? fs->id : 0;
  if (CUresult r = c.begin()) return c.end(r, "stream=S%d", sid);
  if (!fs) return c.end(ERROR_INVALID_HANDLE, "stream=?");
  if (fs->ctx != current) return c.end(ERROR_INVALID_CONTEXT, "stream=S%d", sid);
  return c.end(SUCCESS, "stream=S%d", sid);
}

CUresult cuEventCreate(CUevent* e, unsigned int flags) {
  Call c("cuEventCreate");
  if (CUresult r = c.begin()) return c.end(r, "flags=%u", flags);
  if (!e) return c.end(ERROR_INVALID_VALUE, "flags=%u", flags);
  auto* fe = new FakeEvent{current, flags, st.nextId++};
  st.events.insert(fe);
  *e = reinterpret_cast<CUevent>(fe);
  return c.end(SUCCESS, "flags=%u event=E%d", flags, fe->id);
}

CUresult cuEventRecord(CUevent e, CUstream s) {
  Call c("cuEventRecord");
  FakeEvent* fe = liveEvent(e);
  FakeStream* fs = liveStream(s);
  int eid = fe ? fe->id : 0, sid = fs ? fs->id : 0;
  if (CUresult r = c.begin()) return c.end(r, "event=E%d stream=S%d", eid, sid);
  if (!fe || !fs) return c.end(ERROR_INVALID_HANDLE, "event=E%d stream=S%d", eid, sid);
  if (fe->ctx != fs->ctx || fs->ctx != current) return c.end(ERROR_INVALID_HANDLE, "event=E%d stream=S%d", eid, sid);
  return c.end(SUCCESS, "event=E%d stream=S%d", eid, sid);
}

CUresult cuEventSynchronize(CUevent e) {
  Call c("cuEventSynchronize");
  FakeEvent* fe = liveEvent(e);
  int eid = fe ? fe->id : 0;
  if (CUresult r = c.begin()) return c.end(r, "event=E%d", eid);
  if (!fe) return c.end(ERROR_INVALID_HANDLE, "event=?");
  if (fe->ctx != current) return c.end(ERROR_INVALID_CONTEXT, "event=E%d", eid);
  return c.end(SUCCESS, "event=E%d", eid);
}

CUresult cuEventDestroy_v2(CUevent e) {
  Call c("cuEventDestroy_v2");
  FakeEvent* fe = liveEvent(e);
  int eid = fe ? fe->id : 0;
  if (CUresult r = c.begin()) return c.end(r, "event=E%d", eid);
  if (!fe) return c.end(ERROR_INVALID_HANDLE, "event=?");
  if (fe->ctx != current) return c.end(ERROR_INVALID_CONTEXT, "event=E%d", eid);
  st.events.erase(fe);
  delete fe;
  return c.end(SUCCESS, "event=E%d", eid);
}

#if FAKE_CUDA_VERSION >= 10000
CUresult cuLaunchHostFunc(CUstream s, CUhostFn fn, void* userData) {
  Call c("cuLaunchHostFunc");
  FakeStream* fs = liveStream(s);
  int sid = fs ? fs->id : 0;
  if (CUresult r = c.begin()) return c.end(r, "stream=S%d arg=%p", sid, userData);
  if (!fs) return c.end(ERROR_INVALID_HANDLE, "stream=? arg=%p", userData);
  if (fs->ctx != current) return c.end(ERROR_INVALID_CONTEXT, "stream=S%d arg=%p", sid, userData);
  if (!fn) return c.end(ERROR_INVALID_VALUE, "stream=S%d arg=%p", sid, userData);
  st.hostFns++;
  c.end(SUCCESS, "stream=S%d arg=%p", sid, userData);
  c.unlock();  // fn runs unlocked: a driver call from it must fail, not deadlock
  inHostFn = true;
  fn(userData);
  inHostFn = false;
  return SUCCESS;
}
#endif

// ---- control (fake_libcuda.h) ----

FAKE_EXPORT void fakecu_reset(int devices, int driverVersion, int initResult, unsigned long long capacity) {
  std::lock_guard<std::mutex> g(mu);
  resetLocked(devices, driverVersion, initResult, capacity);
}

FAKE_EXPORT void fakecu_fail(const char* symbol, int result, int nth) {
  std::lock_guard<std::mutex> g(mu);
  st.faults[symbol] = Fault{result, nth, 0};
}

FAKE_EXPORT int fakecu_log_size() {
  std::lock_guard<std::mutex> g(mu);
  return static_cast<int>(st.log.size());
}

FAKE_EXPORT const char* fakecu_log_line(int i) {
  std::lock_guard<std::mutex> g(mu);
  st.line = i >= 0 && i < static_cast<int>(st.log.size()) ? st.log[i] : "";
  return st.line.c_str();
}

FAKE_EXPORT int fakecu_calls(const char* symbol) {
  std::lock_guard<std::mutex> g(mu);
  auto it = st.calls.find(symbol);
  return it == st.calls.end() ? 0 : it->second;
}

FAKE_EXPORT void fakecu_counts(FakeCuCounts* out) {
  std::lock_guard<std::mutex> g(mu);
  FakeCuCounts c{};
  for (int i = 0; i < kMaxDevices; i++) c.contexts += ctxs[i].refs;
  c.allocations = static_cast<int>(st.blocks.size());
  c.streams = static_cast<int>(st.streams.size());
  c.events = static_cast<int>(st.events.size());
  c.pinned = static_cast<int>(st.pins.size());
  c.pinnedCopies = st.pinnedCopies;
  c.pageableCopies = st.pageableCopies;
  c.hostFns = st.hostFns;
  c.violations = violations.load();
  *out = c;
}
