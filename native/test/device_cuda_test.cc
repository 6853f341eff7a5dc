// Tests of the CUDA driver backend (device_cuda.cc). Two halves:
//  - the real driver: without libcuda.so.1 (this machine, CI), makeCudaBackend must say exactly
//    "no NVIDIA driver found (libcuda.so.1 is not installed)"; with one (a lent GPU machine), the
//    same functional checks as on the fake run on every device, byte-exact.
//  - the fake driver (fake_libcuda.cc, built beside this program), loaded by path (the
//    Config::libcuda handed to makeCudaBackend, what TENSORIZE_LIBCUDA sets): the reasons for
//    no backend (missing library, a driver too old, each cuInit failure, no devices), device
//    info, contexts (retained lazily, once per device, made current only when they are not),
//    the arguments every call reaches the driver with, the mapping of CUresult values onto
//    tensorize's codes and messages, many threads on two devices, and that nothing leaks. This is the only way the backend runs before a GPU is lent.
#include <dlfcn.h>
#include <limits.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../src/device_backend.h"
#include "../src/device_cuda_api.h"
#include "check.h"
#include "fake_libcuda.h"

namespace {

using tz::Error;
using namespace tz::dev;

// The backend is handed its settings (TENSORIZE_LIBCUDA and CUDA_VISIBLE_DEVICES as
// Config::libcuda and Config::cudaVisibleDevices): each test builds the Config it needs, and
// the environment, read once per process (config.h), is never changed here.
tz::Config withLib(const std::string& lib) {
  tz::Config c;
  c.libcuda = lib;
  return c;
}

template <typename F>
void onNewThread(F f) {
  std::thread t(f);
  t.join();
}

// The fake drivers are built beside this program (CMake), or found where CMake built them.
std::string fakePath(const char* file) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    std::string dir(exe);
    dir = dir.substr(0, dir.rfind('/'));
    std::string p = dir + "/" + file;
    if (access(p.c_str(), R_OK) == 0) return p;
  }
#ifdef TENSORIZE_FAKE_LIBCUDA_DIR
  std::string p = std::string(TENSORIZE_FAKE_LIBCUDA_DIR) + "/" + file;
  if (access(p.c_str(), R_OK) == 0) return p;
#endif
  return "";
}

// The fake's control functions, from the same loaded instance the backend uses.
struct Fake {
  void* h = nullptr;
  FakeCuResetFn reset = nullptr;
  FakeCuFailFn fail = nullptr;
  FakeCuLogSizeFn logSize = nullptr;
  FakeCuLogLineFn logLine = nullptr;
  FakeCuCallsFn calls = nullptr;
  FakeCuCountsFn countsFn = nullptr;

  bool open(const std::string& path) {
    h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) return false;
    reset = reinterpret_cast<FakeCuResetFn>(dlsym(h, "fakecu_reset"));
    fail = reinterpret_cast<FakeCuFailFn>(dlsym(h, "fakecu_fail"));
    logSize = reinterpret_cast<FakeCuLogSizeFn>(dlsym(h, "fakecu_log_size"));
    logLine = reinterpret_cast<FakeCuLogLineFn>(dlsym(h, "fakecu_log_line"));
    calls = reinterpret_cast<FakeCuCallsFn>(dlsym(h, "fakecu_calls"));
    countsFn = reinterpret_cast<FakeCuCountsFn>(dlsym(h, "fakecu_counts"));
    return reset && fail && logSize && logLine && calls && countsFn;
  }
  FakeCuCounts counts() const {
    FakeCuCounts c{};
    countsFn(&c);
    return c;
  }
  // The first log line at or after `from` that contains `needle`, or -1.
  int find(const std::string& needle, int from = 0) const {
    for (int i = from, n = logSize(); i < n; i++)
      if (std::string(logLine(i)).find(needle) != std::string::npos) return i;
    return -1;
  }
  // Each needle found, in this order, from `from` on.
  bool inOrder(int from, std::initializer_list<std::string> needles) const {
    int at = from;
    for (auto& n : needles) {
      at = find(n, at);
      if (at < 0) return false;
      at++;
    }
    return true;
  }
  void dump(int from) const {
    for (int i = from, n = logSize(); i < n; i++) std::fprintf(stderr, "  fake: %s\n", logLine(i));
  }
};

std::string ptr(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

std::string devPtr(DevPtr p) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(p));
  return b;
}

bool startsWith(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool contains(const std::string& s, const std::string& p) { return s.find(p) != std::string::npos; }

void fill(uint8_t* p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++) p[i] = static_cast<uint8_t>((i * 131 + seed * 7919) >> 3);
}

// What every backend must do on a device: pinned (allocated and registered) and pageable
// copies, a stream, an event, a host function, read back byte for byte; nothing left over.
void exercise(Backend& b, int device, const std::string& label) {
  const uint64_t n = 1 << 20;
  DevPtr d = 0;
  void* pinned = nullptr;
  Stream s = nullptr;
  Event ev = nullptr;
  Error e = b.alloc(device, n, &d);
  CHECK(e.ok() && d != 0 && d % 256 == 0, (label + ": alloc, 256-aligned: " + e.message).c_str());
  e = b.hostAlloc(n, &pinned);
  CHECK(e.ok() && pinned, (label + ": hostAlloc: " + e.message).c_str());
  e = b.streamCreate(device, &s);
  CHECK(e.ok() && s, (label + ": streamCreate: " + e.message).c_str());
  e = b.eventCreate(&ev, true);
  CHECK(e.ok() && ev, (label + ": eventCreate: " + e.message).c_str());
  if (!d || !pinned || !s || !ev) return;

  auto* src = static_cast<uint8_t*>(pinned);
  fill(src, n, 1 + device);
  bool ok = true;
  for (int q = 0; q < 4; q++) ok = ok && b.copyAsync(d + q * (n / 4), src + q * (n / 4), n / 4, s).ok();
  ok = ok && b.eventRecord(ev, s).ok();
  std::atomic<int> ran{0};
  ok = ok && b.launchHostFn(s, [](void* a) { static_cast<std::atomic<int>*>(a)->fetch_add(1); }, &ran).ok();
  ok = ok && b.eventSync(ev).ok() && b.streamSync(s).ok();
  CHECK(ok && ran.load() == 1, (label + ": copies, an event and a host function on a stream").c_str());
  std::vector<uint8_t> back(n);
  e = b.copyToHost(device, back.data(), d, n);
  CHECK(e.ok() && std::memcmp(back.data(), src, n) == 0, (label + ": the pinned copies read back: " + e.message).c_str());

  // Registered memory (what the loader's ring is), 2 MiB page-aligned.
  const size_t rn = 2 << 20;
  void* reg = mmap(nullptr, rn, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(reg != MAP_FAILED, (label + ": mmap").c_str());
  if (reg != MAP_FAILED) {
    e = b.hostRegister(reg, rn);
    CHECK(e.ok(), (label + ": hostRegister: " + e.message).c_str());
    fill(static_cast<uint8_t*>(reg), n, 77 + device);
    ok = b.copyAsync(d, reg, n, s).ok() && b.streamSync(s).ok() && b.copyToHost(device, back.data(), d, n).ok();
    CHECK(ok && std::memcmp(back.data(), reg, n) == 0, (label + ": a copy from registered memory reads back").c_str());
    e = b.hostUnregister(reg);
    CHECK(e.ok(), (label + ": hostUnregister: " + e.message).c_str());
    munmap(reg, rn);
  }

  // Pageable memory, synchronous, at an unaligned offset.
  std::vector<uint8_t> page(5000);
  fill(page.data(), page.size(), 99);
  ok = b.copyToDevice(device, d + 100, page.data(), page.size()).ok() && b.sync(device).ok() &&
       b.copyToHost(device, back.data(), d + 100, page.size()).ok();
  CHECK(ok && std::memcmp(back.data(), page.data(), page.size()) == 0, (label + ": a pageable copy reads back").c_str());

  ok = b.eventDestroy(ev).ok() && b.streamDestroy(s).ok() && b.free(device, d).ok() && b.hostFree(pinned).ok();
  CHECK(ok, (label + ": everything given back").c_str());
}

// The loader's pattern from many threads at once: per thread a stream on its device and a
// two-slot pinned ring, each slot reused only after its event says the last copy from it is
// done. Every byte must land.
void ringTest(Backend& b, int devices, const std::string& label) {
  const int threads = 8, rounds = 64;
  const size_t chunk = 4096;
  std::vector<DevPtr> dst(threads, 0);
  bool ok = true;
  for (int t = 0; t < threads; t++) ok = ok && b.alloc(t % devices, chunk * rounds, &dst[t]).ok();
  CHECK(ok, (label + ": ring destinations").c_str());
  if (!ok) return;
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; t++) {
    ts.emplace_back([&, t] {
      int device = t % devices;
      Stream s = nullptr;
      void* slot[2] = {nullptr, nullptr};
      Event ev[2] = {nullptr, nullptr};
      bool good = b.streamCreate(device, &s).ok();
      for (int k = 0; k < 2; k++) good = good && b.hostAlloc(chunk, &slot[k]).ok() && b.eventCreate(&ev[k], t % 2 == 1).ok();
      for (int r = 0; r < rounds && good; r++) {
        int k = r % 2;
        good = b.eventSync(ev[k]).ok();
        fill(static_cast<uint8_t*>(slot[k]), chunk, static_cast<uint64_t>(t) * 1000 + r);
        good = good && b.copyAsync(dst[t] + r * chunk, slot[k], chunk, s).ok() && b.eventRecord(ev[k], s).ok();
      }
      good = good && b.streamSync(s).ok();
      for (int k = 0; k < 2; k++) good = b.eventDestroy(ev[k]).ok() && b.hostFree(slot[k]).ok() && good;
      good = b.streamDestroy(s).ok() && good;
      if (!good) errors++;
    });
  }
  for (auto& th : ts) th.join();
  CHECK(errors.load() == 0, (label + ": every ring thread's calls succeed").c_str());
  bool same = true;
  std::vector<uint8_t> back(chunk * rounds), want(chunk);
  for (int t = 0; t < threads; t++) {
    same = same && b.copyToHost(t % devices, back.data(), dst[t], back.size()).ok();
    for (int r = 0; r < rounds && same; r++) {
      fill(want.data(), chunk, static_cast<uint64_t>(t) * 1000 + r);
      same = std::memcmp(back.data() + r * chunk, want.data(), chunk) == 0;
    }
    same = b.free(t % devices, dst[t]).ok() && same;
  }
  CHECK(same, (label + ": every ring chunk lands byte-exact").c_str());
}

std::string describe(const Backend& b) {
  std::string s = "driver CUDA " + std::to_string(b.info.driverVersion / 1000) + "." + std::to_string(b.info.driverVersion % 1000 / 10);
  for (auto& d : b.info.devices) s += "; cuda:" + std::to_string(d.index) + " " + d.name + " " + std::to_string(d.totalMemory >> 20) + " MiB " + d.pciBusId;
  return s;
}

void realDriverTests() {
  tz::Config c = tz::config();  // this process's CUDA_VISIBLE_DEVICES, for the reason
  c.libcuda.clear();            // the real libcuda.so.1, whatever TENSORIZE_LIBCUDA says
  void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);  // only to know whether one is here
  std::string why;
  int driverVersion = -1;
  auto b = makeCudaBackend(c, why, driverVersion);
  if (!h) {
    std::printf("cuda backend (real driver): none here: %s\n", why.c_str());
    CHECK(!b && why == "no NVIDIA driver found (libcuda.so.1 is not installed)" && driverVersion == 0,
          ("without libcuda.so.1: exactly 'no NVIDIA driver found (libcuda.so.1 is not installed)', got: " + why).c_str());
    return;
  }
  std::printf("cuda backend (real driver): %s\n", b ? describe(*b).c_str() : why.c_str());
  const char* require = getenv("TENSORIZE_REQUIRE_GPU");
  CHECK(b || !(require && std::string(require) == "1"), ("TENSORIZE_REQUIRE_GPU=1: the CUDA backend starts: " + why).c_str());
  if (!b) return;
  CHECK(b->info.backend == "cuda" && !b->info.devices.empty() && b->info.driverVersion >= tz::cu::kMinCudaVersion, "real driver: info");
  int devices = static_cast<int>(b->info.devices.size());
  for (int d = 0; d < devices && d < 2; d++) exercise(*b, d, "real cuda:" + std::to_string(d));
  ringTest(*b, devices < 2 ? devices : 2, "real driver");
  DevPtr p = 0;
  Error e = b->alloc(0, 1ull << 50, &p);
  CHECK(e.code == Code::E_DEVICE_OOM && startsWith(e.message, "cuMemAlloc_v2 (1125899906842624 bytes on cuda:0): CUDA_ERROR_OUT_OF_MEMORY"),
        ("real driver: a petabyte is E_DEVICE_OOM: " + e.message).c_str());
  e = b->alloc(devices, 16, &p);
  CHECK(e.code == Code::E_NO_DEVICE, "real driver: a device past the last is E_NO_DEVICE");
}

// Why no backend, for each way it can fail before the first call.
void failureReasons(Fake& f, const std::string& full, const std::string& old) {
  std::string why;
  int dv = -1;
  {
    auto b = makeCudaBackend(withLib("/nonexistent/libcuda.so.1"), why, dv);
    CHECK(!b && dv == 0 && startsWith(why, "no NVIDIA driver found (TENSORIZE_LIBCUDA=/nonexistent/libcuda.so.1 could not be loaded: "),
          ("a library that is not there: " + why).c_str());
  }
  {
    auto b = makeCudaBackend(withLib(old), why, dv);
    CHECK(!b && dv == 9020 &&
              why == "the NVIDIA driver is too old: it lacks cuLaunchHostFunc (tensorize needs CUDA 10.0 or later, driver >= 410.48; this driver supports CUDA 9.2)",
          ("a CUDA 9.2 driver is too old, naming the call: " + why).c_str());
  }
  const tz::Config c = withLib(full);  // CUDA_VISIBLE_DEVICES unset
  struct Case {
    int result;
    std::vector<std::string> parts;  // all in the reason; the first is its start
  };
  const Case cases[] = {
      {100, {"no CUDA device found (the driver reports none; check CUDA_VISIBLE_DEVICES)"}},
      {34, {"the libcuda.so.1 found (" + full + ") is the CUDA toolkit's stub, not the NVIDIA driver (CUDA_ERROR_STUB_LIBRARY)", "LD_LIBRARY_PATH"}},
      {803, {"the NVIDIA driver's library (" + full + ", CUDA 12.8) does not match its loaded kernel module (CUDA_ERROR_SYSTEM_DRIVER_MISMATCH)", "reboot"}},
      {804, {"the CUDA forward-compatibility driver library (" + full + ", CUDA 12.8) does not support this GPU (CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE)", "cuda-compat"}},
      {802, {"the GPUs are not ready (CUDA_ERROR_SYSTEM_NOT_READY)", "nvidia-fabricmanager"}},
      {46, {"no CUDA device is available (CUDA_ERROR_DEVICE_UNAVAILABLE)", "exclusive-process"}},
      {999, {"cuInit failed: CUDA_ERROR_UNKNOWN (unknown error)"}},
      {4242, {"cuInit failed: CUDA error 4242 (no description from the driver)"}},
  };
  for (auto& k : cases) {
    f.reset(2, 12080, k.result, 1 << 30);
    auto b = makeCudaBackend(c, why, dv);
    bool ok = !b && dv == 12080 && startsWith(why, k.parts[0]);
    for (auto& p : k.parts) ok = ok && contains(why, p);
    if (k.parts.size() == 1) ok = ok && why == k.parts[0];
    CHECK(ok, ("cuInit answering " + std::to_string(k.result) + ": " + why).c_str());
  }
  {
    // The toolkit's stub libcuda.so.1 answers every call with CUDA_ERROR_STUB_LIBRARY, the
    // version and the error names included.
    f.reset(2, 12080, 34, 1 << 30);
    f.fail("cuDriverGetVersion", 34, 0);
    f.fail("cuGetErrorName", 34, 0);
    f.fail("cuGetErrorString", 34, 0);
    auto b = makeCudaBackend(c, why, dv);
    CHECK(!b && dv == 0 && startsWith(why, "the libcuda.so.1 found (" + full + ") is the CUDA toolkit's stub, not the NVIDIA driver (CUDA_ERROR_STUB_LIBRARY)"),
          ("a stub that cannot even name its error: " + why).c_str());
  }
  {
    tz::Config vis = c;
    vis.cudaVisibleDevices = "";
    f.reset(2, 12080, 100, 1 << 30);
    auto b = makeCudaBackend(vis, why, dv);
    CHECK(!b && why == "no CUDA device found (the driver reports none; check CUDA_VISIBLE_DEVICES, which is \"\")",
          ("CUDA_VISIBLE_DEVICES set: its value in the reason: " + why).c_str());
  }
  f.reset(0, 12080, 0, 1 << 30);
  auto b = makeCudaBackend(c, why, dv);
  CHECK(!b && why == "no CUDA device found (the driver reports none; check CUDA_VISIBLE_DEVICES)", ("cuInit fine, no device: " + why).c_str());
  f.reset(2, 12080, 0, 1 << 30);
  f.fail("cuDeviceGetName", 999, 2);
  b = makeCudaBackend(c, why, dv);
  CHECK(!b && why == "cuDeviceGetName (cuda:1): CUDA_ERROR_UNKNOWN (unknown error)", ("a device query failing: " + why).c_str());
  f.reset(2, 12080, 0, 1 << 30);
  f.fail("cuDeviceGetCount", 3, 1);
  b = makeCudaBackend(c, why, dv);
  CHECK(!b && why == "cuDeviceGetCount: CUDA_ERROR_NOT_INITIALIZED (initialization error)", ("cuDeviceGetCount failing: " + why).c_str());
}

// Contexts: retained on first use of a device (not when listing), once per device, made current
// on a thread only when it is not already, and again when other code changed it.
void contextTests(Fake& f, Backend& b) {
  CHECK(f.calls("cuDevicePrimaryCtxRetain") == 0, "listing devices creates no context");
  onNewThread([&] {
    int mark = f.logSize();
    DevPtr p1 = 0, p0 = 0;
    Error e = b.alloc(1, 4096, &p1);
    CHECK(e.ok() && f.inOrder(mark, {"cuDevicePrimaryCtxRetain dev=- device=1 -> 0", "cuCtxSetCurrent dev=- to=1 -> 0",
                                     "cuMemAlloc_v2 dev=1 bytes=4096 ptr=" + devPtr(p1) + " -> 0"}),
          "first use of cuda:1 on a thread: retain its primary context, make it current, allocate there");
    int sets = f.calls("cuCtxSetCurrent");
    std::vector<uint8_t> buf(4096, 7);
    bool ok = true;
    for (int i = 0; i < 100; i++) ok = ok && b.copyToDevice(1, p1, buf.data(), buf.size()).ok() && b.copyToHost(1, buf.data(), p1, buf.size()).ok();
    CHECK(ok && f.calls("cuCtxSetCurrent") == sets, "200 more calls on cuda:1 from the same thread: no redundant cuCtxSetCurrent");
    mark = f.logSize();
    e = b.alloc(0, 4096, &p0);
    CHECK(e.ok() && f.inOrder(mark, {"cuDevicePrimaryCtxRetain dev=1 device=0 -> 0", "cuCtxSetCurrent dev=1 to=0 -> 0", "cuMemAlloc_v2 dev=0 bytes=4096"}),
          "switching to cuda:0 retains and makes current its context");
    mark = f.logSize();
    e = b.free(1, p1);
    CHECK(e.ok() && f.inOrder(mark, {"cuCtxSetCurrent dev=0 to=1 -> 0", "cuMemFree_v2 dev=1 ptr=" + devPtr(p1) + " -> 0"}) &&
              f.find("cuDevicePrimaryCtxRetain", mark) < 0,
          "back to cuda:1: made current again, not retained again");
    // Other code on this thread (a runtime, another addon) clears or changes the current context.
    auto setCurrent = reinterpret_cast<tz::cu::Fn_cuCtxSetCurrent>(dlsym(f.h, "cuCtxSetCurrent"));
    setCurrent(nullptr);
    e = b.free(0, p0);
    CHECK(e.ok(), ("a context changed behind the backend's back is made current again: " + e.message).c_str());
  });
  CHECK(f.calls("cuDevicePrimaryCtxRetain") == 2, "each device's primary context retained once");
  onNewThread([&] {
    DevPtr p = 0;
    int retains = f.calls("cuDevicePrimaryCtxRetain");
    Error e = b.alloc(1, 256, &p);
    CHECK(e.ok() && f.calls("cuDevicePrimaryCtxRetain") == retains && b.free(1, p).ok(), "another thread: the retained context is reused");
  });
}

// Every call reaches the driver with the right arguments, in the right context.
void callTests(Fake& f, Backend& b) {
  onNewThread([&] {
    Stream s = nullptr, s0 = nullptr;
    DevPtr d = 0;
    void* h = nullptr;
    int mark = f.logSize();
    Error e = b.streamCreate(1, &s);
    CHECK(e.ok() && f.find("cuStreamCreate dev=1 flags=1 stream=S", mark) >= 0, "streamCreate: CU_STREAM_NON_BLOCKING on the device's context");
    CHECK(b.alloc(1, 1 << 20, &d).ok(), "alloc");
    mark = f.logSize();
    e = b.hostAlloc(1 << 20, &h);
    CHECK(e.ok() && f.find("cuMemHostAlloc dev=1 bytes=1048576 flags=1 ptr=" + ptr(h) + " -> 0", mark) >= 0,
          "hostAlloc: cuMemHostAlloc PORTABLE, in the thread's current context");
    auto* src = static_cast<uint8_t*>(h);
    fill(src, 1 << 20, 5);
    mark = f.logSize();
    e = b.copyAsync(d + 256, src + 64, 1000, s);
    CHECK(e.ok() && f.find("cuMemcpyHtoDAsync_v2 dev=1 dst=" + devPtr(d + 256) + " src=" + ptr(src + 64) + " n=1000 stream=S", mark) >= 0 &&
              f.find("pinned=1 -> 0", mark) >= 0,
          "copyAsync: destination, source, size and stream as given; the source is pinned");
    int before = f.calls("cuMemcpyHtoDAsync_v2");
    CHECK(b.copyAsync(d, src, 0, s).ok() && f.calls("cuMemcpyHtoDAsync_v2") == before, "an empty copy reaches no driver call");

    Event blocking = nullptr, spinning = nullptr;
    int creates = f.calls("cuEventCreate");
    CHECK(b.eventCreate(&blocking, true).ok() && b.eventCreate(&spinning, false).ok() && f.calls("cuEventCreate") == creates,
          "eventCreate makes no CUevent yet (it belongs to the context of the stream it is first recorded on)");
    int syncs = f.calls("cuEventSynchronize");
    CHECK(b.eventSync(blocking).ok() && f.calls("cuEventSynchronize") == syncs, "eventSync of a never-recorded event returns at once");
    mark = f.logSize();
    e = b.eventRecord(blocking, s);
    CHECK(e.ok() && f.inOrder(mark, {"cuEventCreate dev=1 flags=3 event=E", "cuEventRecord dev=1 event=E"}),
          "first record: the event made with DISABLE_TIMING|BLOCKING_SYNC on the stream's device, then recorded");
    mark = f.logSize();
    CHECK(b.eventRecord(spinning, s).ok() && f.find("cuEventCreate dev=1 flags=2 event=E", mark) >= 0, "a spinning event: DISABLE_TIMING only");
    creates = f.calls("cuEventCreate");
    CHECK(b.eventRecord(blocking, s).ok() && f.calls("cuEventCreate") == creates, "a second record reuses the event");
    mark = f.logSize();
    CHECK(b.eventSync(blocking).ok() && f.find("cuEventSynchronize dev=1 event=E", mark) >= 0, "eventSync waits on the event");

    static std::atomic<void*> got{nullptr};
    int token = 0;
    mark = f.logSize();
    e = b.launchHostFn(s, [](void* a) { got = a; }, &token);
    CHECK(e.ok() && got.load() == &token && f.find("cuLaunchHostFunc dev=1 stream=S", mark) >= 0 && f.find("arg=" + ptr(&token), mark) >= 0,
          "launchHostFn: cuLaunchHostFunc on the stream, the function called with its argument");
    mark = f.logSize();
    CHECK(b.streamSync(s).ok() && f.find("cuStreamSynchronize dev=1 stream=S", mark) >= 0, "streamSync");
    std::vector<uint8_t> back(1000);
    CHECK(b.copyToHost(1, back.data(), d + 256, 1000).ok() && std::memcmp(back.data(), src + 64, 1000) == 0, "the copy landed where it was sent");

    FakeCuCounts c0 = f.counts();
    std::vector<uint8_t> page(3000, 9);
    CHECK(b.copyToDevice(1, d, page.data(), page.size()).ok() && f.counts().pageableCopies == c0.pageableCopies + 1, "copyToDevice: a pageable cuMemcpyHtoD_v2");

    CHECK(b.streamCreate(0, &s0).ok(), "a stream on cuda:0");
    e = b.eventRecord(blocking, s0);
    CHECK(e.code == Code::E_DEVICE && e.message == "eventRecord: the event belongs to cuda:1 (its first record) and cannot be recorded on a stream of cuda:0",
          ("an event is bound to the device of its first record: " + e.message).c_str());

    mark = f.logSize();
    bool ok = b.eventDestroy(blocking).ok() && b.eventDestroy(spinning).ok() && b.streamDestroy(s).ok() && b.streamDestroy(s0).ok();
    CHECK(ok && f.inOrder(mark, {"cuEventDestroy_v2 dev=1", "cuEventDestroy_v2 dev=1", "cuStreamDestroy_v2 dev=1", "cuStreamDestroy_v2 dev=0"}),
          "events and streams destroyed in their own contexts");
    Event unused = nullptr;
    int destroys = f.calls("cuEventDestroy_v2");
    CHECK(b.eventCreate(&unused, false).ok() && b.eventDestroy(unused).ok() && f.calls("cuEventDestroy_v2") == destroys, "a never-recorded event is destroyed without a driver call");
    CHECK(b.free(1, d).ok() && b.hostFree(h).ok(), "free, hostFree");
  });

  // A stream made on one thread, used from threads that never touched a device.
  Stream s = nullptr;
  Event ev = nullptr;
  DevPtr d = 0;
  void* h = nullptr;
  onNewThread([&] { CHECK(b.streamCreate(1, &s).ok() && b.eventCreate(&ev, true).ok() && b.alloc(1, 4096, &d).ok(), "set up on one thread"); });
  onNewThread([&] { CHECK(b.hostAlloc(4096, &h).ok(), "hostAlloc on a fresh thread"); });
  onNewThread([&] {
    bool ok = b.copyAsync(d, h, 4096, s).ok() && b.eventRecord(ev, s).ok() && b.eventSync(ev).ok() && b.launchHostFn(s, [](void*) {}, nullptr).ok() &&
              b.streamSync(s).ok();
    CHECK(ok, "a fresh thread uses a stream made elsewhere: its context is made current first");
  });
  onNewThread([&] { CHECK(b.eventDestroy(ev).ok() && b.streamDestroy(s).ok() && b.free(1, d).ok() && b.hostFree(h).ok(), "torn down from yet another thread"); });
}

// Pinning: PORTABLE, in the thread's current context (no switch), else the first device the
// process used (no context on cuda:0 for a process that only uses cuda:1); undone in the
// context that pinned, whichever thread undoes it.
void hostMemoryTests(Fake& f, Backend& b) {
  const size_t n = 64 << 10;
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(p != MAP_FAILED, "mmap");
  if (p == MAP_FAILED) return;
  onNewThread([&] {
    DevPtr d = 0;
    CHECK(b.alloc(1, 256, &d).ok() && b.free(1, d).ok(), "cuda:1 current on this thread");
    int mark = f.logSize();
    Error e = b.hostRegister(p, n);
    CHECK(e.ok() && f.find("cuMemHostRegister_v2 dev=1 p=" + ptr(p) + " bytes=65536 flags=1 -> 0", mark) >= 0,
          "hostRegister: PORTABLE, in the thread's current context");
    mark = f.logSize();
    e = b.hostRegister(p, n);
    CHECK(e.code == Code::E_DEVICE && contains(e.message, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED"), ("registering twice: " + e.message).c_str());
  });
  onNewThread([&] {
    DevPtr d = 0;
    CHECK(b.alloc(0, 256, &d).ok() && b.free(0, d).ok(), "cuda:0 current on this thread");
    int mark = f.logSize();
    Error e = b.hostUnregister(p);
    CHECK(e.ok() && f.inOrder(mark, {"cuCtxSetCurrent dev=0 to=1 -> 0", "cuMemHostUnregister dev=1 p=" + ptr(p) + " -> 0"}),
          "hostUnregister from a thread on cuda:0 runs in cuda:1's context, which pinned it");
    e = b.hostUnregister(p);
    CHECK(e.code == Code::E_DEVICE && contains(e.message, "cuMemHostUnregister (" + ptr(p) + "): CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED"),
          ("unregistering what is not registered: " + e.message).c_str());
  });
  munmap(p, n);
}

void hostContextChoiceTests(Fake& f, const tz::Config& c) {
  std::string why;
  int dv = 0;
  f.reset(2, 12080, 0, 64 << 20);
  auto b = makeCudaBackend(c, why, dv);
  CHECK(b != nullptr, ("fresh backend: " + why).c_str());
  if (!b) return;
  onNewThread([&] {
    DevPtr d = 0;
    CHECK(b->alloc(1, 256, &d).ok() && b->free(1, d).ok(), "a process that uses cuda:1 only");
  });
  onNewThread([&] {
    void* h = nullptr;
    int mark = f.logSize();
    CHECK(b->hostAlloc(4096, &h).ok() && f.find("cuMemHostAlloc dev=1 ", mark) >= 0 && b->hostFree(h).ok(),
          "pinning on a thread with no current context: the first device used (cuda:1)");
  });
  bool onZero = false;
  for (int i = f.find("cuDevicePrimaryCtxRetain"); i >= 0; i = f.find("cuDevicePrimaryCtxRetain", i + 1)) onZero = onZero || contains(f.logLine(i), "device=0");
  CHECK(f.find("cuDevicePrimaryCtxRetain") >= 0 && !onZero, "no context was ever made on cuda:0");
  b.reset();
  f.reset(2, 12080, 0, 64 << 20);
  b = makeCudaBackend(c, why, dv);
  onNewThread([&] {
    void* h = nullptr;
    int mark = f.logSize();
    CHECK(b && b->hostAlloc(4096, &h).ok() && f.inOrder(mark, {"cuDevicePrimaryCtxRetain dev=- device=0", "cuMemHostAlloc dev=0 "}) && b->hostFree(h).ok(),
          "pinning before any device was used: cuda:0");
  });
}

// CUresult values onto tensorize's codes and messages.
void errorTests(Fake& f, Backend& b) {
  onNewThread([&] {
    DevPtr p = 0;
    f.fail("cuMemAlloc_v2", 2, 1);
    Error e = b.alloc(0, 4096, &p);
    CHECK(e.code == Code::E_DEVICE_OOM && e.message == "cuMemAlloc_v2 (4096 bytes on cuda:0): CUDA_ERROR_OUT_OF_MEMORY (out of memory)" && p == 0,
          (std::string("device OOM: ") + tz::codeName(e.code) + " " + e.message).c_str());
    e = b.alloc(0, 4096, &p);
    CHECK(e.ok() && p != 0 && b.free(0, p).ok(), "the next allocation succeeds");
    e = b.alloc(0, 1ull << 40, &p);
    CHECK(e.code == Code::E_DEVICE_OOM && startsWith(e.message, "cuMemAlloc_v2 (1099511627776 bytes on cuda:0): CUDA_ERROR_OUT_OF_MEMORY"),
          ("more than the device holds: " + e.message).c_str());

    const size_t n = 64 << 10;
    void* m = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    f.fail("cuMemHostRegister_v2", 2, 1);
    e = b.hostRegister(m, n);
    CHECK(e.code == Code::E_HOST_OOM && e.message == "cuMemHostRegister_v2 (65536 bytes at " + ptr(m) + "): CUDA_ERROR_OUT_OF_MEMORY (out of memory)",
          (std::string("host registration OOM: ") + tz::codeName(e.code) + " " + e.message).c_str());
    munmap(m, n);
    void* h = nullptr;
    f.fail("cuMemHostAlloc", 2, 1);
    e = b.hostAlloc(4096, &h);
    CHECK(e.code == Code::E_HOST_OOM && e.message == "cuMemHostAlloc (4096 bytes of pinned host memory): CUDA_ERROR_OUT_OF_MEMORY (out of memory)" && !h,
          (std::string("pinned allocation OOM: ") + tz::codeName(e.code) + " " + e.message).c_str());

    Stream s = nullptr;
    Event ev = nullptr;
    CHECK(b.streamCreate(0, &s).ok() && b.eventCreate(&ev, false).ok() && b.eventRecord(ev, s).ok(), "a stream and an event");
    f.fail("cuStreamSynchronize", 700, 1);
    e = b.streamSync(s);
    CHECK(e.code == Code::E_DEVICE &&
              e.message == "cuStreamSynchronize (on cuda:0): CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was encountered) [sticky: the GPU context is unusable until this process exits]",
          ("sticky 700: " + e.message).c_str());
    f.fail("cuEventSynchronize", 719, 1);
    e = b.eventSync(ev);
    CHECK(e.code == Code::E_DEVICE && e.message == "cuEventSynchronize (on cuda:0): CUDA_ERROR_LAUNCH_FAILED (unspecified launch failure) [sticky: the GPU context is unusable until this process exits]",
          ("sticky 719: " + e.message).c_str());
    f.fail("cuMemcpyHtoDAsync_v2", 12345, 1);
    char src[16] = {0};
    e = b.copyAsync(0x1000, src, sizeof src, s);
    CHECK(e.code == Code::E_DEVICE && e.message == "cuMemcpyHtoDAsync_v2 (16 bytes from " + ptr(src) + " to cuda:0): CUDA error 12345 (no description from the driver)",
          ("a value the driver cannot name: " + e.message).c_str());
    f.fail("cuLaunchHostFunc", 1, 1);
    e = b.launchHostFn(s, [](void*) {}, nullptr);
    CHECK(e.code == Code::E_DEVICE && e.message == "cuLaunchHostFunc (on cuda:0): CUDA_ERROR_INVALID_VALUE (invalid argument)", ("launchHostFn failing: " + e.message).c_str());
    CHECK(b.eventDestroy(ev).ok() && b.streamDestroy(s).ok(), "teardown");

    e = b.alloc(2, 16, &p);
    Error e2 = b.alloc(-1, 16, &p);
    CHECK(e.code == Code::E_NO_DEVICE && e.message == "cuda:2 does not exist: the driver reports 2 CUDA devices" && e2.code == Code::E_NO_DEVICE,
          ("a device that does not exist: " + e.message).c_str());
    int logged = f.logSize();
    CHECK(b.alloc(0, 0, &p).ok() && p == 0 && b.free(0, 0).ok() && b.hostAlloc(0, &h).ok() && !h && b.hostFree(nullptr).ok() && f.logSize() == logged,
          "zero bytes and null pointers: success, no driver call");
    CHECK(b.streamSync(nullptr).code == Code::E_DEVICE && b.copyAsync(0, src, 1, nullptr).code == Code::E_DEVICE && b.eventSync(nullptr).code == Code::E_DEVICE &&
              b.streamDestroy(nullptr).ok() && b.eventDestroy(nullptr).ok(),
          "null handles are refused (destroying one is a no-op)");
  });
  onNewThread([&] {
    f.fail("cuCtxSetCurrent", 201, 1);
    DevPtr p = 0;
    Error e = b.alloc(1, 16, &p);
    CHECK(e.code == Code::E_DEVICE && e.message == "cuCtxSetCurrent (cuda:1): CUDA_ERROR_INVALID_CONTEXT (invalid device context)", ("cuCtxSetCurrent failing: " + e.message).c_str());
    CHECK(b.alloc(1, 16, &p).ok() && b.free(1, p).ok(), "and then working");
  });
}

// A context that cannot be made (a GPU busy in exclusive-process mode) is tried again later.
void retainFailureTests(Fake& f, const tz::Config& c) {
  std::string why;
  int dv = 0;
  f.reset(2, 12080, 0, 64 << 20);
  auto fresh = makeCudaBackend(c, why, dv);
  CHECK(fresh != nullptr, ("fresh backend: " + why).c_str());
  if (!fresh) return;
  onNewThread([&] {
    f.fail("cuDevicePrimaryCtxRetain", 46, 1);
    DevPtr p = 0;
    Error e = fresh->alloc(0, 16, &p);
    CHECK(e.code == Code::E_NO_DEVICE && e.message == "cuDevicePrimaryCtxRetain (cuda:0): CUDA_ERROR_DEVICE_UNAVAILABLE (CUDA-capable device(s) is/are busy or unavailable)",
          ("a context that cannot be made: " + e.message).c_str());
    CHECK(fresh->alloc(0, 16, &p).ok() && fresh->free(0, p).ok(), "is tried again on the next call");
  });
  fresh.reset();
  CHECK(f.counts().contexts == 0, "a destroyed backend gives back its contexts");
}

void fakeTests() {
  std::string full = fakePath("libtzfakecuda.so"), v10 = fakePath("libtzfakecuda10.so"), v9 = fakePath("libtzfakecuda9.so");
  CHECK(!full.empty() && !v10.empty() && !v9.empty(), "the fake drivers are built beside the test program (libtzfakecuda*.so)");
  if (full.empty() || v10.empty() || v9.empty()) return;
  Fake f;
  CHECK(f.open(full), "the fake driver's controls");
  if (!f.h) return;

  failureReasons(f, full, v9);

  const tz::Config cfg = withLib(full);  // CUDA_VISIBLE_DEVICES unset
  f.reset(2, 12080, 0, 64 << 20);
  std::string why = "x";
  int dv = 0;
  auto b = makeCudaBackend(cfg, why, dv);
  CHECK(b != nullptr && why.empty() && dv == 12080, ("the fake with two devices: a backend: " + why).c_str());
  if (!b) return;
  const BackendInfo& in = b->info;
  CHECK(in.backend == "cuda" && in.driverVersion == 12080 && in.why.empty() && in.devices.size() == 2, "info: cuda, driver version, two devices");
  if (in.devices.size() == 2) {
    CHECK(in.devices[0].index == 0 && in.devices[0].name == "Fake GPU 0" && in.devices[0].totalMemory == (64u << 20) && in.devices[0].pciBusId == "0000:1A:00.0" &&
              in.devices[1].index == 1 && in.devices[1].name == "Fake GPU 1" && in.devices[1].pciBusId == "0000:2A:00.0",
          "info: names, memory and PCI bus ids");
  }
  CHECK(f.inOrder(0, {"cuDriverGetVersion dev=- version=12080 -> 0", "cuInit dev=- flags=0 -> 0", "cuDeviceGetCount"}), "the driver version is asked before cuInit(0)");

  contextTests(f, *b);
  callTests(f, *b);
  hostMemoryTests(f, *b);
  exercise(*b, 0, "fake cuda:0");
  exercise(*b, 1, "fake cuda:1");
  ringTest(*b, 2, "fake");
  FakeCuCounts c = f.counts();
  CHECK(c.pinnedCopies > 8 * 64 && c.violations == 0, "the ring's copies came from pinned memory; no driver call from a host function");
  errorTests(f, *b);
  c = f.counts();
  CHECK(c.allocations == 0 && c.streams == 0 && c.events == 0 && c.pinned == 0, "nothing leaked on the fake");
  CHECK(c.contexts == 2, "two primary contexts held while the backend lives");
  b.reset();
  CHECK(f.counts().contexts == 0 && f.calls("cuDevicePrimaryCtxRelease_v2") == 2, "destroying the backend releases its two primary contexts (_v2)");

  retainFailureTests(f, cfg);

  // The fake catches what CUDA forbids: a host function calling the driver.
  f.reset(1, 12080, 0, 64 << 20);
  b = makeCudaBackend(cfg, why, dv);
  onNewThread([&] {
    Stream s = nullptr;
    static Backend* self = nullptr;
    static Error inner;
    self = b.get();
    CHECK(b->streamCreate(0, &s).ok(), "stream");
    b->launchHostFn(s, [](void*) {
      DevPtr p = 0;
      inner = self->alloc(0, 16, &p);
    }, nullptr);
    CHECK(!inner.ok() && f.counts().violations >= 1, "a host function calling back into the driver fails and is counted (fake)");
    b->streamDestroy(s);
  });
  b.reset();

  hostContextChoiceTests(f, cfg);

  // A CUDA 10.2 driver: enough for tensorize; contexts released under the older name.
  {
    Fake f10;
    CHECK(f10.open(v10), "the CUDA 10.2 fake's controls");
    auto b10 = makeCudaBackend(withLib(v10), why, dv);
    CHECK(b10 && dv == 10020, ("a CUDA 10.2 driver is enough: " + why).c_str());
    if (b10) {
      exercise(*b10, 0, "fake CUDA 10.2");
      b10.reset();
      CHECK(f10.h && f10.counts().contexts == 0 && f10.calls("cuDevicePrimaryCtxRelease") >= 1, "without cuDevicePrimaryCtxRelease_v2: released through cuDevicePrimaryCtxRelease");
    }
  }
}

}  // namespace

void deviceCudaTests() {
#ifdef TENSORIZE_CUDA_DECLS_CHECK
  std::printf("cuda declarations check: %s\n", TENSORIZE_CUDA_DECLS_CHECK);
  CHECK(std::strncmp(TENSORIZE_CUDA_DECLS_CHECK, "FAILED", 6) != 0, "device_cuda_api.h matches the toolkit's cuda.h (see the CMake output)");
  // CI installs a cuda.h (PyPI's nvidia-cuda-runtime-cu12, headers only) and sets this: there
  // the check must have run, not been skipped.
  const char* require = getenv("TENSORIZE_REQUIRE_CUDA_DECLS");
  if (require && std::string(require) == "1") CHECK(std::strncmp(TENSORIZE_CUDA_DECLS_CHECK, "passed", 6) == 0, "TENSORIZE_REQUIRE_CUDA_DECLS=1: the declarations check ran against a cuda.h and passed");
#endif
  realDriverTests();
  fakeTests();
}
