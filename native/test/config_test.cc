// The native settings (src/config.h): readConfig over given variables (defaults, every valid
// value, invalid ones and the reasons given for them), the simulator's settings turned into a
// backend as the device layer's front does (the errors a bad TENSORIZE_SIM_* gives, which the
// CLI shows), config() read once per process, and the rule that no file of native/src but
// config.cc calls getenv (the sources are read from TENSORIZE_NATIVE_SRC_DIR, set by CMake).
#include <dirent.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../src/config.h"
#include "../src/device_backend.h"
#include "check.h"

tz::Config configWith(std::initializer_list<std::pair<const char*, const char*>> vars) {
  std::map<std::string, std::string> m;
  for (auto& v : vars) m[v.first] = v.second;
  return tz::readConfig([&m](const char* k) -> const char* {
    auto it = m.find(k);
    return it == m.end() ? nullptr : it->second.c_str();
  });
}

namespace {

using tz::Config;
using tz::Error;

constexpr uint64_t MiB = 1ull << 20;

bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// ---- readConfig ----

void defaultTests() {
  const Config c = configWith({});
  CHECK(!c.simulate && c.simDevices == 0 && c.simGpuError.empty() && c.simError.empty(), "config defaults: no simulator, no errors");
  CHECK(c.sim.memBytes == 4ull << 30 && c.sim.gbps == 25 && c.sim.seed == 20240613 && c.sim.maxDelayUs == 200 && c.sim.faults.empty(),
        "config defaults: the simulator's (4GiB, 25 GB/s, seed 20240613, 200 us, no faults)");
  CHECK(c.libcuda.empty() && !c.cudaVisibleDevices, "config defaults: libcuda.so.1, CUDA_VISIBLE_DEVICES unset");
  CHECK(c.hash == Config::Hash::Best && !c.pinnedAlloc && !c.cudaSyncBlock && !c.testSkipSlotWait, "config defaults: best hashes, registered pinning, the driver's sync, slot waits");
  // Empty counts as unset where it did before (the simulator, the library path).
  const Config e = configWith({{"TENSORIZE_SIM_GPU", ""}, {"TENSORIZE_LIBCUDA", ""}, {"TENSORIZE_SIM_GPU_MEM", ""}, {"TENSORIZE_SIM_FAIL", "  "}});
  CHECK(!e.simulate && e.libcuda.empty() && e.simError.empty() && e.sim.memBytes == 4ull << 30, "config: empty values are unset");
}

void validTests() {
  Config c = configWith({{"TENSORIZE_SIM_GPU", "2"},
                         {"TENSORIZE_SIM_GPU_MEM", " 512MiB "},
                         {"TENSORIZE_SIM_GPU_GBPS", "2.5"},
                         {"TENSORIZE_SIM_SEED", "0x10"},
                         {"TENSORIZE_SIM_DELAY_US", "0"},
                         {"TENSORIZE_SIM_FAIL", "copy@3, alloc@1"},
                         {"TENSORIZE_LIBCUDA", "/opt/driver/libcuda.so.1"},
                         {"CUDA_VISIBLE_DEVICES", "1,0"},
                         {"TENSORIZE_HASH", "portable"},
                         {"TENSORIZE_PINNED", "alloc"},
                         {"TENSORIZE_CUDA_SYNC", "block"},
                         {"TENSORIZE_TEST_SKIP_SLOT_WAIT", "1"}});
  CHECK(c.simulate && c.simDevices == 2 && c.simGpuError.empty() && c.simError.empty(), "config: TENSORIZE_SIM_GPU=2");
  CHECK(c.sim.memBytes == 512 * MiB && c.sim.gbps == 2.5 && c.sim.seed == 16 && c.sim.maxDelayUs == 0, "config: the simulator's sizes, bandwidth, seed and delay (blanks trimmed)");
  CHECK(c.sim.faults.size() == 2 && c.sim.faults[0].op == "copy" && c.sim.faults[0].n == 3 && c.sim.faults[1].op == "alloc" && c.sim.faults[1].n == 1,
        "config: TENSORIZE_SIM_FAIL, in order");
  CHECK(c.libcuda == "/opt/driver/libcuda.so.1" && c.cudaVisibleDevices && *c.cudaVisibleDevices == "1,0", "config: TENSORIZE_LIBCUDA, CUDA_VISIBLE_DEVICES");
  CHECK(c.hash == Config::Hash::Portable && c.pinnedAlloc && c.cudaSyncBlock && c.testSkipSlotWait, "config: the switches");
  CHECK(configWith({{"TENSORIZE_HASH", "pclmul"}}).hash == Config::Hash::Pclmul, "config: TENSORIZE_HASH=pclmul");
  CHECK(configWith({{"TENSORIZE_SIM_GPU", "1"}}).simDevices == 1 && configWith({{"TENSORIZE_SIM_GPU", "16"}}).simDevices == 16, "config: 1 and 16 simulated devices");
  CHECK(configWith({{"CUDA_VISIBLE_DEVICES", ""}}).cudaVisibleDevices == std::optional<std::string>(""), "config: CUDA_VISIBLE_DEVICES set but empty is kept (the reason quotes it)");
  CHECK(configWith({{"TENSORIZE_SIM_GPU_MEM", "256"}}).sim.memBytes == 256 && configWith({{"TENSORIZE_SIM_GPU_MEM", "16TiB"}}).sim.memBytes == 1ull << 44 &&
            configWith({{"TENSORIZE_SIM_DELAY_US", "1000000"}}).sim.maxDelayUs == 1000000,
        "config: the bounds are allowed");
}

void invalidTests() {
  // TENSORIZE_SIM_GPU: set, so the simulator is asked for, but no count: no device.
  for (const char* v : {"lots", "0", "17", "-1", "2x", "1.5", " "}) {
    const Config c = configWith({{"TENSORIZE_SIM_GPU", v}});
    CHECK(c.simulate && c.simDevices == 0 && c.simGpuError == std::string("TENSORIZE_SIM_GPU=") + v + " is not a number of simulated devices (1 to 16)",
          (std::string("config: TENSORIZE_SIM_GPU=") + v + " is refused: " + c.simGpuError).c_str());
  }
  // The simulator's settings: refused with the reason, naming the variable and the value.
  struct Bad {
    const char* var;
    const char* value;
    const char* why;
  } bad[] = {
      {"TENSORIZE_SIM_GPU_MEM", "lots", "TENSORIZE_SIM_GPU_MEM=lots is not a device size between 256 bytes and 16TiB (bytes, or e.g. 4GiB, 512MiB, 2GB)"},
      {"TENSORIZE_SIM_GPU_MEM", "1.5GiB", "TENSORIZE_SIM_GPU_MEM=1.5GiB is not a device size between 256 bytes and 16TiB (bytes, or e.g. 4GiB, 512MiB, 2GB)"},
      {"TENSORIZE_SIM_GPU_MEM", "255", "TENSORIZE_SIM_GPU_MEM=255 is not a device size between 256 bytes and 16TiB (bytes, or e.g. 4GiB, 512MiB, 2GB)"},
      {"TENSORIZE_SIM_GPU_MEM", "17TiB", "TENSORIZE_SIM_GPU_MEM=17TiB is not a device size between 256 bytes and 16TiB (bytes, or e.g. 4GiB, 512MiB, 2GB)"},
      {"TENSORIZE_SIM_GPU_GBPS", "0", "TENSORIZE_SIM_GPU_GBPS=0 is not a bandwidth in GB/s (a number above 0, e.g. 25)"},
      {"TENSORIZE_SIM_GPU_GBPS", "fast", "TENSORIZE_SIM_GPU_GBPS=fast is not a bandwidth in GB/s (a number above 0, e.g. 25)"},
      {"TENSORIZE_SIM_GPU_GBPS", "inf", "TENSORIZE_SIM_GPU_GBPS=inf is not a bandwidth in GB/s (a number above 0, e.g. 25)"},
      {"TENSORIZE_SIM_SEED", "-1", "TENSORIZE_SIM_SEED=-1 is not a non-negative integer"},
      {"TENSORIZE_SIM_DELAY_US", "forever", "TENSORIZE_SIM_DELAY_US=forever is not a delay in microseconds (0 to 1000000)"},
      {"TENSORIZE_SIM_DELAY_US", "1000001", "TENSORIZE_SIM_DELAY_US=1000001 is not a delay in microseconds (0 to 1000000)"},
      {"TENSORIZE_SIM_FAIL", "copy@",
       "TENSORIZE_SIM_FAIL=copy@: 'copy@' is not op@n with n >= 1 and op one of alloc, free, register, stream, copy, event, sync, callback, read"},
      {"TENSORIZE_SIM_FAIL", "copy@1,melt@2",
       "TENSORIZE_SIM_FAIL=copy@1,melt@2: 'melt@2' is not op@n with n >= 1 and op one of alloc, free, register, stream, copy, event, sync, callback, read"},
      {"TENSORIZE_SIM_FAIL", "sync@0",
       "TENSORIZE_SIM_FAIL=sync@0: 'sync@0' is not op@n with n >= 1 and op one of alloc, free, register, stream, copy, event, sync, callback, read"},
  };
  for (const Bad& x : bad) {
    const Config c = configWith({{"TENSORIZE_SIM_GPU", "1"}, {x.var, x.value}});
    CHECK(c.simulate && c.simDevices == 1 && c.simError == x.why, (std::string("config: ") + x.var + "=" + x.value + " is refused: " + c.simError).c_str());
  }
  // The switches take one value each; anything else (case included) counts as unset.
  for (const char* v : {"", "PORTABLE", "portable ", "sha", "1"}) CHECK(configWith({{"TENSORIZE_HASH", v}}).hash == Config::Hash::Best, (std::string("config: TENSORIZE_HASH=") + v + " is the default").c_str());
  for (const char* v : {"", "ALLOC", "1", "host"}) CHECK(!configWith({{"TENSORIZE_PINNED", v}}).pinnedAlloc, (std::string("config: TENSORIZE_PINNED=") + v + " is the default").c_str());
  for (const char* v : {"", "BLOCK", "spin", "1"}) CHECK(!configWith({{"TENSORIZE_CUDA_SYNC", v}}).cudaSyncBlock, (std::string("config: TENSORIZE_CUDA_SYNC=") + v + " is the default").c_str());
  for (const char* v : {"", "0", "true", "yes", "01"}) CHECK(!configWith({{"TENSORIZE_TEST_SKIP_SLOT_WAIT", v}}).testSkipSlotWait, (std::string("config: TENSORIZE_TEST_SKIP_SLOT_WAIT=") + v + " is the default").c_str());
}

// ---- the settings made into a backend (dev::makeBackend, as the device layer's front) ----

void backendTests() {
  using namespace tz::dev;
  DevPtr p = 0;
  {
    auto b = makeBackend(configWith({{"TENSORIZE_SIM_GPU", "2"}, {"TENSORIZE_SIM_GPU_MEM", "1MiB"}}));
    CHECK(b->info.backend == "simulated" && b->info.devices.size() == 2 && b->info.devices[1].totalMemory == MiB && b->alloc(1, 256, &p).ok() && b->free(1, p).ok(),
          "config -> backend: TENSORIZE_SIM_GPU=2 with TENSORIZE_SIM_GPU_MEM=1MiB");
  }
  {
    // A bad count: no device, E_NO_DEVICE (the CLI: "no usable GPU", and with TENSORIZE_SIM_GPU
    // set, a load onto the GPU is a usage error quoting info.why).
    auto b = makeBackend(configWith({{"TENSORIZE_SIM_GPU", "lots"}, {"TENSORIZE_SIM_GPU_MEM", "lots"}}));
    Error e = b->alloc(0, 256, &p);
    CHECK(b->info.backend == "none" && b->info.devices.empty() && b->info.why == "TENSORIZE_SIM_GPU=lots is not a number of simulated devices (1 to 16)" &&
              e.code == Code::E_NO_DEVICE && e.message == "no usable GPU: TENSORIZE_SIM_GPU=lots is not a number of simulated devices (1 to 16)",
          ("config -> backend: TENSORIZE_SIM_GPU=lots (said before a bad TENSORIZE_SIM_GPU_MEM): " + e.message).c_str());
  }
  {
    // A bad simulator setting: no device, every call E_USAGE naming the variable.
    auto b = makeBackend(configWith({{"TENSORIZE_SIM_GPU", "1"}, {"TENSORIZE_SIM_GPU_MEM", "lots"}}));
    Error e = b->alloc(0, 256, &p);
    const std::string why = "TENSORIZE_SIM_GPU_MEM=lots is not a device size between 256 bytes and 16TiB (bytes, or e.g. 4GiB, 512MiB, 2GB)";
    CHECK(b->info.backend == "none" && b->info.devices.empty() && b->info.why == why && e.code == Code::E_USAGE && e.message == "simulated GPU: " + why,
          ("config -> backend: TENSORIZE_SIM_GPU_MEM=lots is a usage error: " + e.message).c_str());
  }
  {
    // Without TENSORIZE_SIM_GPU the simulator's settings are not used, bad or not: the driver.
    auto b = makeBackend(configWith({{"TENSORIZE_SIM_GPU_MEM", "lots"}, {"TENSORIZE_LIBCUDA", "/nonexistent/libcuda.so.1"}}));
    Error e = b->alloc(0, 256, &p);
    CHECK(b->info.backend == "none" && has(b->info.why, "TENSORIZE_LIBCUDA=/nonexistent/libcuda.so.1 could not be loaded") && !has(b->info.why, "SIM") &&
              e.code == Code::E_NO_DEVICE,
          ("config -> backend: no TENSORIZE_SIM_GPU, the driver (here none): " + b->info.why).c_str());
  }
}

// ---- config(): read once ----

void onceTests() {
  const Config& a = tz::config();
  const bool pinned = a.pinnedAlloc;
  const char* old = std::getenv("TENSORIZE_PINNED");
  const std::string saved = old ? old : "";
  setenv("TENSORIZE_PINNED", pinned ? "no" : "alloc", 1);
  const Config& b = tz::config();
  CHECK(&a == &b && b.pinnedAlloc == pinned, "config(): one object, read once: a later change of the environment is not seen");
  if (old) setenv("TENSORIZE_PINNED", saved.c_str(), 1);
  else unsetenv("TENSORIZE_PINNED");
  // And it is what the environment said (nothing in this program changes TENSORIZE_* in its
  // own process).
  const Config now = tz::readConfig([](const char* k) -> const char* { return std::getenv(k); });
  CHECK(now.simDevices == a.simDevices && now.simulate == a.simulate && now.hash == a.hash && now.pinnedAlloc == a.pinnedAlloc && now.libcuda == a.libcuda &&
            now.testSkipSlotWait == a.testSkipSlotWait,
        "config(): the environment's values");
}

// ---- only config.cc calls getenv ----

// The identifiers of `src` outside comments and string and character literals.
std::vector<std::string> identifiers(const std::string& src) {
  std::vector<std::string> out;
  size_t i = 0, n = src.size();
  while (i < n) {
    char ch = src[i];
    if (ch == '/' && i + 1 < n && src[i + 1] == '/') {
      while (i < n && src[i] != '\n') i++;
    } else if (ch == '/' && i + 1 < n && src[i + 1] == '*') {
      size_t end = src.find("*/", i + 2);
      i = end == std::string::npos ? n : end + 2;
    } else if (ch == 'R' && i + 1 < n && src[i + 1] == '"' && (i == 0 || !(std::isalnum(static_cast<unsigned char>(src[i - 1])) || src[i - 1] == '_'))) {
      size_t open = src.find('(', i + 2);
      if (open == std::string::npos) break;
      const std::string close = ")" + src.substr(i + 2, open - i - 2) + "\"";
      size_t end = src.find(close, open + 1);
      i = end == std::string::npos ? n : end + close.size();
    } else if (ch == '"' || ch == '\'') {
      i++;
      while (i < n && src[i] != ch) i += src[i] == '\\' ? 2 : 1;
      i++;
    } else if (std::isalpha(static_cast<unsigned char>(ch)) || ch == '_') {
      size_t start = i;
      while (i < n && (std::isalnum(static_cast<unsigned char>(src[i])) || src[i] == '_')) i++;
      out.push_back(src.substr(start, i - start));
    } else if (std::isdigit(static_cast<unsigned char>(ch))) {
      while (i < n && (std::isalnum(static_cast<unsigned char>(src[i])) || src[i] == '_' || src[i] == '.' || src[i] == '\'')) i++;
    } else {
      i++;
    }
  }
  return out;
}

// Whether `src` reads the environment: getenv, secure_getenv, or environ itself.
bool readsEnvironment(const std::string& src) {
  for (const std::string& id : identifiers(src))
    if (id == "getenv" || id == "secure_getenv" || id == "__secure_getenv" || id == "environ" || id == "__environ") return true;
  return false;
}

void getenvRuleTests() {
  // The scanner itself: each way of calling caught, comments and strings not.
  CHECK(readsEnvironment("const char* v = getenv(\"X\");") && readsEnvironment("auto v = std::getenv(k);") && readsEnvironment("x = ::secure_getenv(k);") &&
            readsEnvironment("for (char** e = environ; *e; e++) {}") && readsEnvironment("auto f = &getenv;"),
        "getenv rule: the scanner finds getenv, std::getenv, secure_getenv, environ");
  CHECK(!readsEnvironment("// getenv(\"X\")\nint a;") && !readsEnvironment("/* getenv(k) */ int a;") && !readsEnvironment("s = \"getenv(\\\"X\\\")\";") &&
            !readsEnvironment("s = R\"x(getenv(\")x\"; int b;") && !readsEnvironment("int mygetenv(); int getenv_count;") && !readsEnvironment("char q = '\"'; s = \"getenv\";"),
        "getenv rule: the scanner skips comments, strings, raw strings and other identifiers");
#ifdef TENSORIZE_NATIVE_SRC_DIR
  const std::string dir = TENSORIZE_NATIVE_SRC_DIR;
  DIR* d = opendir(dir.c_str());
  CHECK(d != nullptr, ("getenv rule: the sources are readable at " + dir).c_str());
  if (!d) return;
  std::vector<std::string> offenders;
  int files = 0;
  bool configReads = false;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    auto endsWith = [&](const char* s) { return name.size() > std::strlen(s) && name.compare(name.size() - std::strlen(s), std::string::npos, s) == 0; };
    if (!endsWith(".cc") && !endsWith(".h")) continue;
    std::ifstream in(dir + "/" + name);
    std::stringstream ss;
    ss << in.rdbuf();
    files++;
    const bool reads = readsEnvironment(ss.str());
    if (name == "config.cc") configReads = reads;
    else if (reads) offenders.push_back(name);
  }
  closedir(d);
  std::string list;
  for (auto& o : offenders) list += " " + o;
  CHECK(files > 20 && configReads, ("getenv rule: native/src read (" + std::to_string(files) + " files), config.cc's getenv found").c_str());
  CHECK(offenders.empty(), ("getenv rule: only config.cc reads the environment (config.h: read it once there, into tz::Config); also:" + list).c_str());
#else
  CHECK(false, "getenv rule: TENSORIZE_NATIVE_SRC_DIR is not defined (CMakeLists.txt defines it)");
#endif
}

}  // namespace

void configTests() {
  defaultTests();
  validTests();
  invalidTests();
  backendTests();
  onceTests();
  getenvRuleTests();
}
