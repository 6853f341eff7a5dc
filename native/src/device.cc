// The device layer's front: picks the backend once per process and forwards every call to
// it; the H2D probe is written once, on top of the calls.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "device_backend.h"

namespace tz {
namespace dev {
namespace {

// No usable device: every call says why.
std::unique_ptr<Backend> noDevice(const std::string& why, int driverVersion) {
  auto b = std::make_unique<FailingBackend>(Error{Code::E_NO_DEVICE, "no usable GPU: " + why});
  b->info.why = why;
  b->info.driverVersion = driverVersion;
  return b;
}

Backend& backend() {
  // Never destroyed: streams and callbacks may outlive static destruction at exit.
  static Backend* b = makeBackend(config()).release();
  return *b;
}

}  // namespace

std::unique_ptr<Backend> makeBackend(const Config& c) {
  if (c.simulate) return c.simDevices ? makeSimBackend(c) : noDevice(c.simGpuError, 0);
  std::string why;
  int driverVersion = 0;
  if (auto b = makeCudaBackend(c, why, driverVersion)) return b;
  return noDevice(why, driverVersion);
}

const BackendInfo& info() { return backend().info; }

// A failure's code names the operation (errors.h): E_DEVICE_ALLOC ... E_DEVICE_READ, whatever
// the backend said; out-of-memory keeps its own code where memory is what the call is for
// (E_DEVICE_OOM from alloc, E_HOST_OOM from pinning), and E_NO_DEVICE stays.
static Error as(Code op, Error e) {
  if (e.ok() || e.code == Code::E_NO_DEVICE) return e;
  if (e.code == Code::E_DEVICE_OOM && op == Code::E_DEVICE_ALLOC) return e;
  if (e.code == Code::E_HOST_OOM && op == Code::E_DEVICE_REGISTER) return e;
  e.code = op;
  return e;
}

Error alloc(int device, uint64_t bytes, DevPtr* out) { return as(Code::E_DEVICE_ALLOC, backend().alloc(device, bytes, out)); }
Error free(int device, DevPtr p) { return as(Code::E_DEVICE_FREE, backend().free(device, p)); }
Error hostRegister(void* p, uint64_t bytes) { return as(Code::E_DEVICE_REGISTER, backend().hostRegister(p, bytes)); }
Error hostUnregister(void* p) { return as(Code::E_DEVICE_REGISTER, backend().hostUnregister(p)); }
Error hostAlloc(uint64_t bytes, void** out) { return as(Code::E_DEVICE_REGISTER, backend().hostAlloc(bytes, out)); }
Error hostFree(void* p) { return as(Code::E_DEVICE_REGISTER, backend().hostFree(p)); }
Error streamCreate(int device, Stream* out) { return as(Code::E_DEVICE_STREAM, backend().streamCreate(device, out)); }
Error streamDestroy(Stream s) { return as(Code::E_DEVICE_STREAM, backend().streamDestroy(s)); }
Error streamSync(Stream s) { return as(Code::E_DEVICE_SYNC, backend().streamSync(s)); }
Error copyAsync(DevPtr dst, const void* src, uint64_t n, Stream s) { return as(Code::E_DEVICE_COPY, backend().copyAsync(dst, src, n, s)); }
Error eventCreate(Event* out, bool blocking) { return as(Code::E_DEVICE_EVENT, backend().eventCreate(out, blocking)); }
Error eventRecord(Event e, Stream s) { return as(Code::E_DEVICE_EVENT, backend().eventRecord(e, s)); }
Error eventSync(Event e) { return as(Code::E_DEVICE_SYNC, backend().eventSync(e)); }
Error eventDestroy(Event e) { return as(Code::E_DEVICE_EVENT, backend().eventDestroy(e)); }
Error launchHostFn(Stream s, HostFn fn, void* arg) { return as(Code::E_DEVICE_CALLBACK, backend().launchHostFn(s, fn, arg)); }
Error copyToDevice(int device, DevPtr dst, const void* src, uint64_t n) { return as(Code::E_DEVICE_COPY, backend().copyToDevice(device, dst, src, n)); }
Error copyToHost(int device, void* dst, DevPtr src, uint64_t n) { return as(Code::E_DEVICE_READ, backend().copyToHost(device, dst, src, n)); }
Error sync(int device) { return as(Code::E_DEVICE_SYNC, backend().sync(device)); }
SimCounts simCounts() { return backend().simCounts(); }

double probeH2D(int device, uint64_t bytes, int iters, Error& err) {
  void* h = nullptr;
  DevPtr d = 0;
  Stream st = nullptr;
  double best = -1;
  Error e = hostAlloc(bytes, &h);
  if (e.ok()) e = alloc(device, bytes, &d);
  if (e.ok()) e = streamCreate(device, &st);
  if (e.ok()) {
    std::memset(h, 1, bytes);
    for (int i = 0; i <= iters && e.ok(); i++) {
      auto t0 = Clock::now();
      e = copyAsync(d, h, bytes, st);
      if (e.ok()) e = streamSync(st);
      double s = msSince(t0) / 1000;
      if (e.ok() && i > 0 && s > 0) best = std::max(best, bytes / s);  // the first copy is a warm-up
    }
  }
  // A returned sync has drained the stream (with an error or not): all can go. The first
  // failure wins, those of the cleanup included.
  auto keep = [&e](const Error& x) {
    if (e.ok() && !x.ok()) e = x;
  };
  if (st) {
    keep(streamSync(st));
    keep(streamDestroy(st));
  }
  if (d) keep(free(device, d));
  if (h) keep(hostFree(h));
  if (!e.ok()) {
    err = e;
    return -1;
  }
  return best;
}

}  // namespace dev
}  // namespace tz
