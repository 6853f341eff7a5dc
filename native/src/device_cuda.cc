// The CUDA driver backend: libcuda.so.1, which ships with the NVIDIA driver (not with a
// toolkit), is loaded at run time and called through a table of function pointers resolved by
// their versioned symbol names (device_cuda_api.h). So the GPU path is always compiled, needs
// no toolkit to build, and runs on every driver that has each call used: CUDA 10.0 and later
// (driver >= 410.48), cuLaunchHostFunc being the newest.
//
// Why dlsym rather than cuGetProcAddress: the versioned names are exactly what cuda.h compiles
// a call to, they are exported by every driver since the version that added them, and dlsym
// needs nothing newer. cuGetProcAddress needs CUDA 11.3 (and changed its own signature in 12.0);
// what it adds, per-thread-default-stream variants, does not matter to calls that always name
// their stream.
//
// Contexts: all work runs in each device's primary context, the one the CUDA runtime (PyTorch)
// uses, so memory allocated here is theirs to use in the same process. A device's context is
// retained on its first use (not at start-up: creating a context takes time and device memory,
// and a load onto cuda:3 must not create one on cuda:0) and kept until the process exits. Each
// call makes its device's context current on the calling thread when it is not already: a
// cuCtxGetCurrent (a thread-local read in the driver, no lock) rather than a cached thread_local
// of ours, because the threads we are called on (libuv's pool, Node's main thread) are shared
// with other native code that may change the current context behind a cache's back.
//
// TENSORIZE_LIBCUDA=/path/to/lib.so loads that library instead of libcuda.so.1. It exists for
// tests (native/test/fake_libcuda.cc is a fake driver) and changes nothing else; anyone who can
// set it could as well set LD_PRELOAD, so it opens no new door.
#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "device_backend.h"
#include "device_cuda_api.h"

namespace tz {
namespace dev {
namespace {

static_assert(sizeof(void*) == 8 && sizeof(DevPtr) == sizeof(cu::CUdeviceptr), "the driver ABI declared here is the 64-bit one");

using cu::CUcontext;
using cu::CUdevice;
using cu::CUdeviceptr;
using cu::CUevent;
using cu::CUresult;
using cu::CUstream;

// The function table, one member per symbol (named by the symbol, so code and messages say
// exactly what was called). Filled once, read-only afterwards: no lock on any call.
struct Api {
#define TZ_CU_MEMBER(name, symbol, version, params) cu::Fn_##symbol symbol = nullptr;
  TZ_CU_FUNCTIONS(TZ_CU_MEMBER)
  TZ_CU_OPTIONAL_FUNCTIONS(TZ_CU_MEMBER)
#undef TZ_CU_MEMBER
};

std::string cudaVersion(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

// The names of the values tensorize acts on, for when the driver cannot say them: the
// toolkit's stub libcuda answers every call, cuGetErrorName included, with
// CUDA_ERROR_STUB_LIBRARY.
const char* knownName(CUresult r) {
  switch (r) {
    case cu::ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case cu::ERROR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case cu::ERROR_STUB_LIBRARY: return "CUDA_ERROR_STUB_LIBRARY";
    case cu::ERROR_DEVICE_UNAVAILABLE: return "CUDA_ERROR_DEVICE_UNAVAILABLE";
    case cu::ERROR_NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
    case cu::ERROR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
    case cu::ERROR_ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
    case cu::ERROR_LAUNCH_FAILED: return "CUDA_ERROR_LAUNCH_FAILED";
    case cu::ERROR_SYSTEM_NOT_READY: return "CUDA_ERROR_SYSTEM_NOT_READY";
    case cu::ERROR_SYSTEM_DRIVER_MISMATCH: return "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH";
    case cu::ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE: return "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE";
    case cu::ERROR_FABRIC_NOT_READY: return "CUDA_ERROR_FABRIC_NOT_READY";
    default: return nullptr;
  }
}

// cuGetErrorName/String answer CUDA_ERROR_INVALID_VALUE and a null string for a value they do
// not know (a newer driver's error, or garbage): never print a null.
std::string resultName(const Api& a, CUresult r) {
  const char* s = nullptr;
  if (a.cuGetErrorName && a.cuGetErrorName(r, &s) == cu::SUCCESS && s) return s;
  if (const char* k = knownName(r)) return k;
  return "CUDA error " + std::to_string(r);
}

std::string resultText(const Api& a, CUresult r) {
  const char* s = nullptr;
  if (a.cuGetErrorString && a.cuGetErrorString(r, &s) == cu::SUCCESS && s) return s;
  return "no description from the driver";
}

// Errors after which the context, and so every later call in this process, fails ("the process
// must be terminated and relaunched", cuda.h): said in the message, so that a user does not
// retry in the same process and a report shows that an earlier failure poisoned the device.
bool sticky(CUresult r) {
  switch (r) {
    case cu::ERROR_CONTAINED:
    case cu::ERROR_ILLEGAL_ADDRESS:
    case cu::ERROR_LAUNCH_TIMEOUT:
    case cu::ERROR_ASSERT:
    case cu::ERROR_HARDWARE_STACK_ERROR:
    case cu::ERROR_ILLEGAL_INSTRUCTION:
    case cu::ERROR_MISALIGNED_ADDRESS:
    case cu::ERROR_INVALID_ADDRESS_SPACE:
    case cu::ERROR_INVALID_PC:
    case cu::ERROR_LAUNCH_FAILED:
    case cu::ERROR_TENSOR_MEMORY_LEAK:
    case cu::ERROR_MPS_CLIENT_TERMINATED:
    case cu::ERROR_EXTERNAL_DEVICE:
      return true;
    default:
      return false;
  }
}

// What memory a call allocates or pins: an out-of-memory there is the device's or the host's.
enum class Mem { device, host };

Code codeOf(CUresult r, Mem m) {
  if (r == cu::ERROR_OUT_OF_MEMORY) return m == Mem::host ? Code::E_HOST_OOM : Code::E_DEVICE_OOM;
  switch (r) {
    // No usable GPU: none (or all hidden), a bad ordinal, the toolkit's stub instead of a
    // driver (34), GPUs busy in exclusive-process mode (46), an unlicensed vGPU (102), an HGX
    // system whose fabric manager is not running (802, 919), kernel module and libcuda out of
    // step (803), the forward-compatibility package on a GPU it does not support (804), or a
    // driver that could not initialise.
    case cu::ERROR_NOT_INITIALIZED:
    case cu::ERROR_STUB_LIBRARY:
    case cu::ERROR_DEVICE_UNAVAILABLE:
    case cu::ERROR_NO_DEVICE:
    case cu::ERROR_INVALID_DEVICE:
    case cu::ERROR_DEVICE_NOT_LICENSED:
    case cu::ERROR_SYSTEM_NOT_READY:
    case cu::ERROR_SYSTEM_DRIVER_MISMATCH:
    case cu::ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE:
    case cu::ERROR_FABRIC_NOT_READY:
      return Code::E_NO_DEVICE;
    default:
      return Code::E_DEVICE;
  }
}

// "<call> (<what>): CUDA_ERROR_X (driver's words)", plus a note for sticky errors.
Error cudaError(const Api& a, CUresult r, Mem m, const std::string& what) {
  Error e;
  e.code = codeOf(r, m);
  e.message = what + ": " + resultName(a, r) + " (" + resultText(a, r) + ")";
  if (sticky(r)) {
    e.message += " [sticky: the GPU context is unusable until this process exits]";
    e.hint = kStickyHint;
  }
  return e;
}

std::string hexPtr(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

std::string onDevice(int device) { return "cuda:" + std::to_string(device); }

// The device layer's opaque Stream and Event handles point at these (reinterpret_cast: the
// handle types are only declared in device.h, so each backend keeps its own layout without
// defining tz::dev::StreamT twice in one program).
struct CuStream {
  CUstream s;
  int device;
};

// cuEventCreate makes the event in the calling thread's current context, and CUDA refuses to
// record it on another context's stream; device.h's eventCreate names no device. So the CUevent
// is made at the first eventRecord, in the stream's context, and the event is bound to that
// device from then on (never-recorded events need no CUevent: eventSync returns at once).
struct CuEvent {
  unsigned int flags;
  std::atomic<int> device{-1};
  std::atomic<CUevent> e{nullptr};
};

CuStream* cuStream(Stream s) { return reinterpret_cast<CuStream*>(s); }
CuEvent* cuEvent(Event e) { return reinterpret_cast<CuEvent*>(e); }

class CudaBackend : public Backend {
 public:
  CudaBackend(const Api& api, std::vector<CUdevice> handles) : api_(api), count_(static_cast<int>(handles.size())), devs_(new Dev[handles.size()]) {
    for (int i = 0; i < count_; i++) devs_[i].handle = handles[i];
  }

  // Only tests destroy a backend (device.cc keeps its one until exit): everything made on it
  // must be gone by then. Gives back the primary contexts it retained; libcuda stays loaded.
  ~CudaBackend() override {
    CUcontext cur = nullptr;
    bool ours = false;
    if (api_.cuCtxGetCurrent(&cur) == cu::SUCCESS && cur)
      for (int i = 0; i < count_; i++) ours = ours || devs_[i].ctx.load() == cur;
    if (ours) api_.cuCtxSetCurrent(nullptr);
    for (int i = 0; i < count_; i++)
      if (devs_[i].ctx.load() && api_.cuDevicePrimaryCtxRelease_v2) api_.cuDevicePrimaryCtxRelease_v2(devs_[i].handle);
  }

  Error alloc(int device, uint64_t bytes, DevPtr* out) override {
    *out = 0;
    if (bytes == 0) return {};  // like cudaMalloc(0): nothing to allocate, a null pointer
    Error e = enter(device);
    if (!e.ok()) return e;
    CUdeviceptr p = 0;
    CUresult r = api_.cuMemAlloc_v2(&p, bytes);
    if (r != cu::SUCCESS) return fail(r, Mem::device, "cuMemAlloc_v2 (" + std::to_string(bytes) + " bytes on " + onDevice(device) + ")");
    *out = p;
    return {};
  }

  Error free(int device, DevPtr p) override {
    if (!p) return {};
    Error e = enter(device);
    if (!e.ok()) return e;
    CUresult r = api_.cuMemFree_v2(p);
    return r == cu::SUCCESS ? Error{} : fail(r, Mem::device, "cuMemFree_v2 (on " + onDevice(device) + ")");
  }

  // Pinned memory is registered PORTABLE: device.h's host calls name no device, so they run in
  // some context (hostDevice()), and PORTABLE makes the pages pinned for every context, so that a
  // copy onto another device is still a DMA and not a silent pageable copy. Unregistering runs
  // in the context that registered, remembered per pointer (a lock here is fine: once per ring).
  Error hostRegister(void* p, uint64_t bytes) override {
    int device = hostDevice();
    Error e = enter(device);
    if (!e.ok()) return e;
    CUresult r = api_.cuMemHostRegister_v2(p, bytes, cu::MEMHOSTREGISTER_PORTABLE);
    if (r != cu::SUCCESS) return fail(r, Mem::host, "cuMemHostRegister_v2 (" + std::to_string(bytes) + " bytes at " + hexPtr(p) + ")");
    remember(p, device);
    return {};
  }

  Error hostUnregister(void* p) override {
    int device = forget(p);
    Error e = enter(device);
    if (!e.ok()) return e;
    CUresult r = api_.cuMemHostUnregister(p);
    return r == cu::SUCCESS ? Error{} : fail(r, Mem::host, "cuMemHostUnregister (" + hexPtr(p) + ")");
  }

  // cuMemHostAlloc rather than cuMemAllocHost_v2: the same call with flags, so the memory can be
  // PORTABLE like registered memory (cuMemAllocHost's is pinned for the current context only).
  Error hostAlloc(uint64_t bytes, void** out) override {
    *out = nullptr;
    if (bytes == 0) return {};
    int device = hostDevice();
    Error e = enter(device);
    if (!e.ok()) return e;
    void* p = nullptr;
    CUresult r = api_.cuMemHostAlloc(&p, bytes, cu::MEMHOSTALLOC_PORTABLE);
    if (r != cu::SUCCESS) return fail(r, Mem::host, "cuMemHostAlloc (" + std::to_string(bytes) + " bytes of pinned host memory)");
    remember(p, device);
    *out = p;
    return {};
  }

  Error hostFree(void* p) override {
    if (!p) return {};
    int device = forget(p);
    Error e = enter(device);
    if (!e.ok()) return e;
    CUresult r = api_.cuMemFreeHost(p);
    return r == cu::SUCCESS ? Error{} : fail(r, Mem::host, "cuMemFreeHost (" + hexPtr(p) + ")");
  }

  Error streamCreate(int device, Stream* out) override {
    *out = nullptr;
    Error e = enter(device);
    if (!e.ok()) return e;
    CUstream s = nullptr;
    // Non-blocking: no implicit synchronisation with the legacy default stream, which other
    // code in the process (a runtime's synchronous calls) may be using.
    CUresult r = api_.cuStreamCreate(&s, cu::STREAM_NON_BLOCKING);
    if (r != cu::SUCCESS) return fail(r, Mem::device, "cuStreamCreate (on " + onDevice(device) + ")");
    *out = reinterpret_cast<Stream>(new CuStream{s, device});
    return {};
  }

  Error streamDestroy(Stream s) override {
    if (!s) return {};
    std::unique_ptr<CuStream> cs(cuStream(s));  // the handle is gone whatever the driver says
    Error e = enter(cs->device);
    if (!e.ok()) return e;
    CUresult r = api_.cuStreamDestroy_v2(cs->s);
    return r == cu::SUCCESS ? Error{} : fail(r, Mem::device, "cuStreamDestroy_v2 (on " + onDevice(cs->device) + ")");
  }

  Error streamSync(Stream s) override {
    if (!s) return noHandle("streamSync", "stream");
    CuStream* cs = cuStream(s);
    Error e = enter(cs->device);
    if (!e.ok()) return e;
    CUresult r = api_.cuStreamSynchronize(cs->s);
    return r == cu::SUCCESS ? Error{} : fail(r, Mem::device, "cuStreamSynchronize (on " + onDevice(cs->device) + ")");
  }

  // The hot path: no lock, no allocation, no string unless it failed.
  Error copyAsync(DevPtr dst, const void* src, uint64_t n, Stream s) override {
    if (!s) return noHandle("copyAsync", "stream");
    if (n == 0) return {};
    CuStream* cs = cuStream(s);
    Error e = enter(cs->device);
    if (!e.ok()) return e;
    CUresult r = api_.cuMemcpyHtoDAsync_v2(dst, src, n, cs->s);
    if (r == cu::SUCCESS) return {};
    return fail(r, Mem::device, "cuMemcpyHtoDAsync_v2 (" + std::to_string(n) + " bytes from " + hexPtr(src) + " to " + onDevice(cs->device) + ")");
  }

  Error eventCreate(Event* out, bool blocking) override {
    // Timing off (cheaper records); a blocking-sync event makes its waiter sleep, not spin.
    *out = reinterpret_cast<Event>(new CuEvent{cu::EVENT_DISABLE_TIMING | (blocking ? cu::EVENT_BLOCKING_SYNC : 0u)});
    return {};
  }

  Error eventRecord(Event ev, Stream s) override {
    if (!ev) return noHandle("eventRecord", "event");
    if (!s) return noHandle("eventRecord", "stream");
    CuEvent* ce = cuEvent(ev);
    CuStream* cs = cuStream(s);
    int bound = -1;
    if (!ce->device.compare_exchange_strong(bound, cs->device) && bound != cs->device) {
      Error e;
      e.code = Code::E_DEVICE;
      e.message = "eventRecord: the event belongs to " + onDevice(bound) + " (its first record) and cannot be recorded on a stream of " + onDevice(cs->device);
      return e;
    }
    Error e = enter(cs->device);
    if (!e.ok()) return e;
    CUevent h = ce->e.load(std::memory_order_acquire);
    if (!h) {
      CUresult r = api_.cuEventCreate(&h, ce->flags);
      if (r != cu::SUCCESS) return fail(r, Mem::device, "cuEventCreate (on " + onDevice(cs->device) + ")");
      CUevent none = nullptr;
      if (!ce->e.compare_exchange_strong(none, h, std::memory_order_acq_rel)) {  // another thread made it first
        api_.cuEventDestroy_v2(h);
        h = none;
      }
    }
    CUresult r = api_.cuEventRecord(h, cs->s);
    return r == cu::SUCCESS ? Error{} : fail(r, Mem::device, "cuEventRecord (on " + onDevice(cs->device) + ")");
  }

  Error eventSync(Event ev) override {
    if (!ev) return noHandle("eventSync", "event");
    CuEvent* ce = cuEvent(ev);
    CUevent h = ce->e.load(std::memory_order_acquire);
    if (!h) return {};  // never recorded: nothing to wait for
    int device = ce->device.load();
    Error e = enter(device);
    if (!e.ok()) return e;
    CUresult r = api_.cuEventSynchronize(h);
    return r == cu::SUCCESS ? Error{} : fail(r, Mem::device, "cuEventSynchronize (on " + onDevice(device) + ")");
  }

  Error eventDestroy(Event ev) override {
    if (!ev) return {};
    std::unique_ptr<CuEvent> ce(cuEvent(ev));
    CUevent h = ce->e.load(std::memory_order_acquire);
    if (!h) return {};
    int device = ce->device.load();
    Error e = enter(device);
    if (!e.ok()) return e;
    CUresult r = api_.cuEventDestroy_v2(h);
    return r == cu::SUCCESS ? Error{} : fail(r, Mem::device, "cuEventDestroy_v2 (on " + onDevice(device) + ")");
  }

  // HostFn and CUhostFn are the same type: void (*)(void*). The driver runs fn on its own
  // thread, in stream order; fn must not call back into the device layer (device.h).
  Error launchHostFn(Stream s, HostFn fn, void* arg) override {
    if (!s) return noHandle("launchHostFn", "stream");
    CuStream* cs = cuStream(s);
    Error e = enter(cs->device);
    if (!e.ok()) return e;
    CUresult r = api_.cuLaunchHostFunc(cs->s, fn, arg);
    return r == cu::SUCCESS ? Error{} : fail(r, Mem::device, "cuLaunchHostFunc (on " + onDevice(cs->device) + ")");
  }

  // CUDA's synchronous copies, on the legacy default stream. As with cudaMemcpy, one from
  // pageable memory returns once the source is staged and may reuse it; its DMA may still be
  // in flight, and any later synchronous call on the device (copyToHost, sync) comes after it.
  Error copyToDevice(int device, DevPtr dst, const void* src, uint64_t n) override {
    if (n == 0) return {};
    Error e = enter(device);
    if (!e.ok()) return e;
    CUresult r = api_.cuMemcpyHtoD_v2(dst, src, n);
    return r == cu::SUCCESS ? Error{} : fail(r, Mem::device, "cuMemcpyHtoD_v2 (" + std::to_string(n) + " bytes to " + onDevice(device) + ")");
  }

  Error copyToHost(int device, void* dst, DevPtr src, uint64_t n) override {
    if (n == 0) return {};
    Error e = enter(device);
    if (!e.ok()) return e;
    CUresult r = api_.cuMemcpyDtoH_v2(dst, src, n);
    return r == cu::SUCCESS ? Error{} : fail(r, Mem::device, "cuMemcpyDtoH_v2 (" + std::to_string(n) + " bytes from " + onDevice(device) + ")");
  }

  Error sync(int device) override {
    Error e = enter(device);
    if (!e.ok()) return e;
    CUresult r = api_.cuCtxSynchronize();
    return r == cu::SUCCESS ? Error{} : fail(r, Mem::device, "cuCtxSynchronize (" + onDevice(device) + ")");
  }

 private:
  struct Dev {
    CUdevice handle = 0;
    std::atomic<CUcontext> ctx{nullptr};  // the retained primary context, once made
    std::mutex retain;                    // held only while making it
  };

  Error fail(CUresult r, Mem m, const std::string& what) const { return cudaError(api_, r, m, what); }

  Error noHandle(const char* op, const char* what) const {
    Error e;
    e.code = Code::E_DEVICE;
    e.message = std::string(op) + ": no " + what + " (a null handle)";
    return e;
  }

  // Make `device`'s primary context current on this thread, retaining it on first use.
  Error enter(int device) {
    if (device < 0 || device >= count_) {
      Error e;
      e.code = Code::E_NO_DEVICE;
      e.message = onDevice(device) + " does not exist: the driver reports " + std::to_string(count_) + " CUDA device" + (count_ == 1 ? "" : "s");
      return e;
    }
    Dev& d = devs_[device];
    CUcontext ctx = d.ctx.load(std::memory_order_acquire);
    if (!ctx) {
      std::lock_guard<std::mutex> g(d.retain);
      ctx = d.ctx.load(std::memory_order_acquire);
      if (!ctx) {
        // A failure is not remembered: a later call tries again (the device may have been
        // busy in exclusive mode, or short of memory for the context).
        CUresult r = api_.cuDevicePrimaryCtxRetain(&ctx, d.handle);
        if (r != cu::SUCCESS) return fail(r, Mem::device, "cuDevicePrimaryCtxRetain (" + onDevice(device) + ")");
        d.ctx.store(ctx, std::memory_order_release);
        int none = -1;
        firstDevice_.compare_exchange_strong(none, device);
      }
    }
    CUcontext cur = nullptr;
    if (api_.cuCtxGetCurrent(&cur) == cu::SUCCESS && cur == ctx) return {};
    CUresult r = api_.cuCtxSetCurrent(ctx);
    return r == cu::SUCCESS ? Error{} : fail(r, Mem::device, "cuCtxSetCurrent (" + onDevice(device) + ")");
  }

  // The context host-memory calls run in: the thread's current one when it is one of ours (no
  // switch), else the first device this process used, else device 0. Never a context on a
  // device the process has no other use for, when it has used one.
  int hostDevice() const {
    CUcontext cur = nullptr;
    if (api_.cuCtxGetCurrent(&cur) == cu::SUCCESS && cur)
      for (int i = 0; i < count_; i++)
        if (devs_[i].ctx.load(std::memory_order_acquire) == cur) return i;
    int first = firstDevice_.load();
    return first >= 0 ? first : 0;
  }

  void remember(void* p, int device) {
    std::lock_guard<std::mutex> g(hostMu_);
    hostDevice_[p] = device;
  }

  // The device whose context pinned p (hostDevice() for a pointer we did not pin: the driver
  // then says it is not registered).
  int forget(void* p) {
    {
      std::lock_guard<std::mutex> g(hostMu_);
      auto it = hostDevice_.find(p);
      if (it != hostDevice_.end()) {
        int device = it->second;
        hostDevice_.erase(it);
        return device;
      }
    }
    return hostDevice();
  }

  const Api api_;
  const int count_;
  std::unique_ptr<Dev[]> devs_;
  std::atomic<int> firstDevice_{-1};
  std::mutex hostMu_;
  std::unordered_map<void*, int> hostDevice_;
};

// Why cuInit failed, in words a user can act on.
std::string initFailure(const Config& c, const Api& a, CUresult r, const std::string& lib, int driverVersion) {
  std::string name = resultName(a, r);
  std::string ver = driverVersion ? ", CUDA " + cudaVersion(driverVersion) : "";
  switch (r) {
    case cu::ERROR_NO_DEVICE: {
      if (c.cudaVisibleDevices)
        return "no CUDA device found (the driver reports none; check CUDA_VISIBLE_DEVICES, which is \"" + *c.cudaVisibleDevices + "\")";
      return "no CUDA device found (the driver reports none; check CUDA_VISIBLE_DEVICES)";
    }
    case cu::ERROR_STUB_LIBRARY:
      return "the libcuda.so.1 found (" + lib + ") is the CUDA toolkit's stub, not the NVIDIA driver (" + name +
             "): remove its folder from LD_LIBRARY_PATH, or install the driver";
    case cu::ERROR_SYSTEM_DRIVER_MISMATCH:
      return "the NVIDIA driver's library (" + lib + ver + ") does not match its loaded kernel module (" + name +
             "): reboot after a driver upgrade, and do not mount another driver's libcuda into a container";
    case cu::ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE:
      return "the CUDA forward-compatibility driver library (" + lib + ver + ") does not support this GPU (" + name +
             "): remove the cuda-compat folder from LD_LIBRARY_PATH, or upgrade the NVIDIA driver";
    case cu::ERROR_SYSTEM_NOT_READY:
    case cu::ERROR_FABRIC_NOT_READY:
      return "the GPUs are not ready (" + name + "): on NVSwitch systems (HGX), start nvidia-fabricmanager";
    case cu::ERROR_DEVICE_UNAVAILABLE:
      return "no CUDA device is available (" + name + "): the GPUs are busy in exclusive-process or prohibited compute mode (nvidia-smi -q -d COMPUTE)";
    default:
      return "cuInit failed: " + name + " (" + resultText(a, r) + ")";
  }
}

}  // namespace

std::unique_ptr<Backend> makeCudaBackend(const Config& c, std::string& why, int& driverVersion) {
  driverVersion = 0;
  const bool overridden = !c.libcuda.empty();
  const char* path = overridden ? c.libcuda.c_str() : "libcuda.so.1";
  // RTLD_LOCAL: the driver's symbols stay out of the global namespace, so they cannot satisfy
  // (or clash with) another library's references. The library is never unloaded: once one of
  // its calls has run it may have started threads of its own.
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* err = dlerror();
    std::string detail = err ? err : "unknown dlopen error";
    if (overridden) {
      why = "no NVIDIA driver found (TENSORIZE_LIBCUDA=" + c.libcuda + " could not be loaded: " + detail + ")";
    } else if (detail.find("No such file") != std::string::npos) {
      // Only the wording depends on dlerror's text: absent is the common case and gets the
      // short sentence; anything else (a broken install, a wrong architecture) is quoted.
      why = "no NVIDIA driver found (libcuda.so.1 is not installed)";
    } else {
      why = "the NVIDIA driver library libcuda.so.1 could not be loaded: " + detail;
    }
    return nullptr;
  }

  Api api;
  std::vector<std::string> missing;
#define TZ_CU_RESOLVE(name, symbol, version, params)                          \
  api.symbol = reinterpret_cast<cu::Fn_##symbol>(dlsym(lib, #symbol)); \
  if (!api.symbol) missing.push_back(#symbol);
  TZ_CU_FUNCTIONS(TZ_CU_RESOLVE)
#undef TZ_CU_RESOLVE
  api.cuDevicePrimaryCtxRelease_v2 = reinterpret_cast<cu::Fn_cuDevicePrimaryCtxRelease_v2>(dlsym(lib, "cuDevicePrimaryCtxRelease_v2"));
  if (!api.cuDevicePrimaryCtxRelease_v2)  // drivers before CUDA 11.0: the same call, older name
    api.cuDevicePrimaryCtxRelease_v2 = reinterpret_cast<cu::Fn_cuDevicePrimaryCtxRelease_v2>(dlsym(lib, "cuDevicePrimaryCtxRelease"));

  // Works before cuInit, and on any driver: said in every later failure.
  if (api.cuDriverGetVersion && api.cuDriverGetVersion(&driverVersion) != cu::SUCCESS) driverVersion = 0;

  if (!missing.empty()) {
    std::string list;
    for (auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    why = "the NVIDIA driver is too old: it lacks " + list + " (tensorize needs CUDA " + cudaVersion(cu::kMinCudaVersion) +
          " or later, driver >= " + cu::kMinDriver + (driverVersion ? "; this driver supports CUDA " + cudaVersion(driverVersion) : std::string()) + ")";
    return nullptr;
  }

  CUresult r = api.cuInit(0);
  if (r != cu::SUCCESS) {
    Dl_info dl{};
    std::string where = dladdr(reinterpret_cast<void*>(api.cuInit), &dl) && dl.dli_fname ? dl.dli_fname : path;
    why = initFailure(c, api, r, where, driverVersion);
    return nullptr;
  }

  int n = 0;
  r = api.cuDeviceGetCount(&n);
  if (r != cu::SUCCESS) {
    why = cudaError(api, r, Mem::device, "cuDeviceGetCount").message;
    return nullptr;
  }
  if (n <= 0) {
    why = initFailure(c, api, cu::ERROR_NO_DEVICE, path, driverVersion);
    return nullptr;
  }

  // Name, memory and PCI address need no context: listing devices creates none.
  BackendInfo info;
  info.backend = "cuda";
  info.driverVersion = driverVersion;
  std::vector<CUdevice> handles;
  for (int i = 0; i < n; i++) {
    CUdevice d = 0;
    char name[256] = {0};
    char bus[64] = {0};
    size_t total = 0;
    const char* call = "cuDeviceGet";
    r = api.cuDeviceGet(&d, i);
    if (r == cu::SUCCESS) {
      call = "cuDeviceGetName";
      r = api.cuDeviceGetName(name, sizeof name - 1, d);
    }
    if (r == cu::SUCCESS) {
      call = "cuDeviceTotalMem_v2";
      r = api.cuDeviceTotalMem_v2(&total, d);
    }
    if (r == cu::SUCCESS) {
      call = "cuDeviceGetPCIBusId";
      r = api.cuDeviceGetPCIBusId(bus, sizeof bus - 1, d);
    }
    if (r != cu::SUCCESS) {
      why = cudaError(api, r, Mem::device, std::string(call) + " (" + onDevice(i) + ")").message;
      return nullptr;
    }
    DeviceInfo di;
    di.index = i;
    di.name = name;
    di.totalMemory = total;
    di.pciBusId = bus;
    info.devices.push_back(std::move(di));
    handles.push_back(d);
  }
  auto b = std::make_unique<CudaBackend>(api, std::move(handles));
  b->info = std::move(info);
  why.clear();
  return b;
}

}  // namespace dev
}  // namespace tz
