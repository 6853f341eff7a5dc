// The one device layer: every GPU operation the loader and the fetcher use goes through
// here, and no other file knows CUDA. Two backends sit behind it (device_backend.h):
//
//   cuda       the CUDA driver API, loaded at run time with dlopen("libcuda.so.1") and called
//              through a table of function pointers (device_cuda.cc): no toolkit is needed
//              to build, the GPU path is always compiled, and any driver that has every call
//              used works (CUDA 10.0 and later: cuLaunchHostFunc is the newest call). Work
//              runs in each device's primary context, which a CUDA runtime (PyTorch) in the
//              same process shares.
//   simulated  a CPU stand-in (device_sim.cc), chosen only by TENSORIZE_SIM_GPU=N: device
//              memory the host cannot dereference, streams on worker threads, copies that read
//              their source late, a bandwidth model and fault injection. A test double, never
//              a fallback.
//
// The backend is chosen once per process, at the first call. Every call returns an Error
// (empty on success) whose code names the operation that failed (errors.h): E_DEVICE_ALLOC,
// _FREE, _REGISTER (pinning host memory), _STREAM, _COPY, _EVENT, _SYNC, _CALLBACK, _READ;
// except E_DEVICE_OOM when alloc runs out of device memory, E_HOST_OOM when pinning runs out
// of host memory, and E_NO_DEVICE when there is no usable device. The message names the
// driver call and what the device said.
// Calls that take a device make its context current on the calling thread first; threads
// may call from anywhere but from inside a host function (launchHostFn), which, as in CUDA,
// must not call back into the device layer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io.h"

namespace tz {
namespace dev {

// A device address (a CUdeviceptr on CUDA). Host code must never dereference it.
using DevPtr = uint64_t;
struct StreamT;
using Stream = StreamT*;
struct EventT;
using Event = EventT*;
using HostFn = void (*)(void*);

struct DeviceInfo {
  int index = 0;
  std::string name;
  uint64_t totalMemory = 0;
  std::string pciBusId;
};

struct BackendInfo {
  // "cuda", "simulated", or "none" (no usable device: `why` says why).
  std::string backend = "none";
  // The CUDA version the driver supports (1000 x major + 10 x minor; 0 without a driver).
  int driverVersion = 0;
  // Why no device is usable, in words: no NVIDIA driver found, a driver too old for a call
  // tensorize needs, no device, ... Empty when there is at least one device.
  std::string why;
  std::vector<DeviceInfo> devices;
};

// The backend in use and its devices (decided once, at the first call; thread-safe).
const BackendInfo& info();
inline int deviceCount() { return static_cast<int>(info().devices.size()); }

// Device memory (aligned to at least 256 bytes). E_DEVICE_OOM when it does not fit.
Error alloc(int device, uint64_t bytes, DevPtr* out);
Error free(int device, DevPtr p);

// Pinned host memory: pin an existing range (page-aligned), or allocate pinned memory.
Error hostRegister(void* p, uint64_t bytes);
Error hostUnregister(void* p);
Error hostAlloc(uint64_t bytes, void** out);
Error hostFree(void* p);

// Streams run their work in order; streams run concurrently with each other and the host.
Error streamCreate(int device, Stream* out);
Error streamDestroy(Stream s);
// Wait for everything queued on the stream.
Error streamSync(Stream s);

// Queue a host-to-device copy. From pinned memory it runs on the stream while the host goes
// on (the source must stay untouched until the copy is known done); from pageable memory it
// is staged before the call returns, as CUDA does.
Error copyAsync(DevPtr dst, const void* src, uint64_t n, Stream s);

// An event marks a point in a stream: eventSync() waits until the work queued before its
// last eventRecord() is done (at once when it was never recorded). `blocking`: the waiting
// thread sleeps rather than spins.
Error eventCreate(Event* out, bool blocking);
Error eventRecord(Event e, Stream s);
Error eventSync(Event e);
Error eventDestroy(Event e);

// Run fn(arg) on the device's callback thread once the work queued before it on `s` is
// done; host functions run one at a time, in stream order, and hold their stream meanwhile.
Error launchHostFn(Stream s, HostFn fn, void* arg);

// Synchronous copies (reads back, writes from sources the loader does not stream).
Error copyToDevice(int device, DevPtr dst, const void* src, uint64_t n);
Error copyToHost(int device, void* dst, DevPtr src, uint64_t n);
// Wait for all work on the device.
Error sync(int device);

// Pinned host-to-device bandwidth (bytes per second) over `iters` copies of `bytes` after a
// warm-up, or -1 with err set.
double probeH2D(int device, uint64_t bytes, int iters, Error& err);

// What the simulator holds (all zero on other backends): what a finished or failed load must
// have given back. `copies` counts every host-to-device copy (copyAsync, copyToDevice),
// `pageableCopies` those from unpinned memory, `reads` the copyToHost calls; `deviceBytes` is
// what the allocations hold (each rounded up to 256 bytes).
struct SimCounts {
  int64_t allocations = 0, registrations = 0, streams = 0, events = 0;
  uint64_t deviceBytes = 0, copies = 0, pageableCopies = 0, reads = 0;
  bool poisoned = false;  // a sticky error made the simulated context unusable
};
SimCounts simCounts();

}  // namespace dev
}  // namespace tz
