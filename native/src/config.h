// Every setting the native side takes from the environment, in one struct, read once per
// process. config.cc is the only file of native/src that calls getenv (a check in
// native/test/config_test.cc fails otherwise); every other file reads tz::config().
//
// When: at the first call of config(). The addon calls it as it loads (addon.cc), so in Node
// the values are those of process.env when the addon was first required; the native test
// program reads them at its first use of a setting. Changing a variable later in the same
// process changes nothing on the native side (start a new process). Tests that need other
// settings build a Config with readConfig() and hand it to the code under test
// (dev::makeBackend, dev::makeCudaBackend); nothing rereads the environment.
//
// Values are parsed here, never later: a setting that does not parse is kept with the reason
// (the simulator's), or, for the switches, counts as unset (docs/environment.md).
#pragma once
#include <functional>
#include <optional>
#include <string>

#include "device_sim_config.h"

namespace tz {

struct Config {
  // ---- the device layer (device.cc, device_sim.cc) ----
  // TENSORIZE_SIM_GPU=N (1 to 16): N simulated devices replace the GPU. Set (not empty) makes
  // `simulate` true whatever the value; simDevices is then N, or 0 with simGpuError saying why
  // (the device layer's reason for having no device, E_NO_DEVICE).
  bool simulate = false;
  int simDevices = 0;
  std::string simGpuError;
  // TENSORIZE_SIM_GPU_MEM, _GBPS, _SEED, _DELAY_US, _FAIL over their defaults
  // (device_sim_config.h). Parsed whether or not the simulator is asked for; simError, naming
  // the variable, when one does not parse (used only when `simulate`: every call of the
  // device layer then fails with E_USAGE).
  dev::SimConfig sim;
  std::string simError;

  // TENSORIZE_LIBCUDA: the CUDA driver library to dlopen (device_cuda.cc). Empty: libcuda.so.1.
  std::string libcuda;
  // CUDA_VISIBLE_DEVICES: not tensorize's (the driver applies it at cuInit), kept only so that
  // "no CUDA device found" can quote it. nullopt: unset.
  std::optional<std::string> cudaVisibleDevices;

  // ---- the pipeline ----
  // TENSORIZE_HASH (hash.cc; x86-64 only): `portable` or `pclmul` narrows the instructions
  // the CPU offers for SHA-256 and CRC32; anything else is Best.
  enum class Hash { Best, Pclmul, Portable };
  Hash hash = Hash::Best;
  // TENSORIZE_PINNED=alloc (pinned.h): pinned staging from cuMemHostAlloc instead of mmap +
  // cuMemHostRegister.
  bool pinnedAlloc = false;
  // TENSORIZE_CUDA_SYNC=block (loader.cc): a GPU reader waiting for its slot's copy sleeps on
  // the event instead of the driver's default (spinning).
  bool cudaSyncBlock = false;
  // TENSORIZE_TEST_SKIP_SLOT_WAIT=1 (stream_core.cc; tests only): reuse a staging slot
  // without waiting for its copy, to show that the byte checks catch the race.
  bool testSkipSlotWait = false;
};

// How readConfig looks a variable up: its value, or nullptr when unset.
using EnvLookup = std::function<const char*(const char*)>;

// The settings that `env` gives (pure: no global state). config() is readConfig(getenv).
Config readConfig(const EnvLookup& env);

// This process's settings, read from the environment at the first call (thread-safe), the
// same object ever after.
const Config& config();

}  // namespace tz
