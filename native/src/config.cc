// The native side's settings, read from the environment once (config.h). The only getenv
// calls of native/src are here.
#include "config.h"

#include <cstdlib>
#include <cstring>

namespace tz {

namespace {

bool is(const char* v, const char* want) { return v && std::strcmp(v, want) == 0; }

}  // namespace

Config readConfig(const EnvLookup& env) {
  Config c;
  const char* sim = env("TENSORIZE_SIM_GPU");
  if (sim && *sim) {
    c.simulate = true;
    char* end = nullptr;
    long n = std::strtol(sim, &end, 10);
    if (*end == '\0' && n >= 1 && n <= 16) c.simDevices = static_cast<int>(n);
    else c.simGpuError = std::string("TENSORIZE_SIM_GPU=") + sim + " is not a number of simulated devices (1 to 16)";
  }
  if (!dev::parseSimConfig(env, c.sim, c.simError)) c.sim = dev::SimConfig();  // not used: simError says why

  const char* lib = env("TENSORIZE_LIBCUDA");
  if (lib) c.libcuda = lib;
  if (const char* vis = env("CUDA_VISIBLE_DEVICES")) c.cudaVisibleDevices = std::string(vis);

  const char* hash = env("TENSORIZE_HASH");
  c.hash = is(hash, "portable") ? Config::Hash::Portable : is(hash, "pclmul") ? Config::Hash::Pclmul : Config::Hash::Best;
  c.pinnedAlloc = is(env("TENSORIZE_PINNED"), "alloc");
  c.cudaSyncBlock = is(env("TENSORIZE_CUDA_SYNC"), "block");
  c.testSkipSlotWait = is(env("TENSORIZE_TEST_SKIP_SLOT_WAIT"), "1");
  return c;
}

const Config& config() {
  static const Config c = readConfig([](const char* name) -> const char* { return std::getenv(name); });
  return c;
}

}  // namespace tz
