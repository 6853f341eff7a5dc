// What a device backend provides (see device.h for the contract of each call). device.cc
// picks one backend per process and forwards every call of the device layer to it.
#pragma once
#include <memory>
#include <utility>

#include "config.h"
#include "device.h"

namespace tz {
namespace dev {

// The hint of a sticky error (a context that is unusable from then on).
inline constexpr const char* kStickyHint =
    "the GPU context of this process is unusable after this error: start a new process to load again (and check dmesg for Xid errors on a real GPU)";

class Backend {
 public:
  virtual ~Backend() = default;
  // Filled once when the backend is made; `backend` names it.
  BackendInfo info;

  virtual Error alloc(int device, uint64_t bytes, DevPtr* out) = 0;
  virtual Error free(int device, DevPtr p) = 0;
  virtual Error hostRegister(void* p, uint64_t bytes) = 0;
  virtual Error hostUnregister(void* p) = 0;
  virtual Error hostAlloc(uint64_t bytes, void** out) = 0;
  virtual Error hostFree(void* p) = 0;
  virtual Error streamCreate(int device, Stream* out) = 0;
  virtual Error streamDestroy(Stream s) = 0;
  virtual Error streamSync(Stream s) = 0;
  virtual Error copyAsync(DevPtr dst, const void* src, uint64_t n, Stream s) = 0;
  virtual Error eventCreate(Event* out, bool blocking) = 0;
  virtual Error eventRecord(Event e, Stream s) = 0;
  virtual Error eventSync(Event e) = 0;
  virtual Error eventDestroy(Event e) = 0;
  virtual Error launchHostFn(Stream s, HostFn fn, void* arg) = 0;
  virtual Error copyToDevice(int device, DevPtr dst, const void* src, uint64_t n) = 0;
  virtual Error copyToHost(int device, void* dst, DevPtr src, uint64_t n) = 0;
  virtual Error sync(int device) = 0;
  virtual SimCounts simCounts() { return {}; }
};

// A backend on which every call fails with one error: no usable device, or a simulator that
// could not be configured (`info.backend` stays "none").
class FailingBackend : public Backend {
 public:
  explicit FailingBackend(Error e) : e_(std::move(e)) {}
  Error alloc(int, uint64_t, DevPtr*) override { return e_; }
  Error free(int, DevPtr) override { return e_; }
  Error hostRegister(void*, uint64_t) override { return e_; }
  Error hostUnregister(void*) override { return e_; }
  Error hostAlloc(uint64_t, void**) override { return e_; }
  Error hostFree(void*) override { return e_; }
  Error streamCreate(int, Stream*) override { return e_; }
  Error streamDestroy(Stream) override { return e_; }
  Error streamSync(Stream) override { return e_; }
  Error copyAsync(DevPtr, const void*, uint64_t, Stream) override { return e_; }
  Error eventCreate(Event*, bool) override { return e_; }
  Error eventRecord(Event, Stream) override { return e_; }
  Error eventSync(Event) override { return e_; }
  Error eventDestroy(Event) override { return e_; }
  Error launchHostFn(Stream, HostFn, void*) override { return e_; }
  Error copyToDevice(int, DevPtr, const void*, uint64_t) override { return e_; }
  Error copyToHost(int, void*, DevPtr, uint64_t) override { return e_; }
  Error sync(int) override { return e_; }

 private:
  Error e_;
};

// The CUDA driver backend, or nullptr with `why` set (no libcuda.so.1, a driver without a
// call tensorize needs, cuInit failing, no device). `driverVersion` is set when known. From
// `c`: the library to load (libcuda) and, for the reason, cudaVisibleDevices.
std::unique_ptr<Backend> makeCudaBackend(const Config& c, std::string& why, int& driverVersion);

// The simulator that `c` asks for (c.simDevices devices, configured by c.sim); with
// c.simError set, a backend with no devices whose every call fails with E_USAGE saying why.
std::unique_ptr<Backend> makeSimBackend(const Config& c);

// The backend that `c` selects: the simulator when c.simulate (no device, E_NO_DEVICE, when
// c.simDevices is not a count), else the CUDA driver, else no device (every call fails with
// E_NO_DEVICE saying why). The device layer's front makes its one backend from config();
// tests make their own from any Config.
std::unique_ptr<Backend> makeBackend(const Config& c);

}  // namespace dev
}  // namespace tz
