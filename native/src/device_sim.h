// The simulated device backend's configuration and factory (internal: device.cc reaches the
// simulator through makeSimBackend(int), which reads the environment; tests make as many
// independent simulators as they like with makeSimBackend(int, const SimConfig&)).
//
// Environment (read once, when TENSORIZE_SIM_GPU=N selects the simulator):
//   TENSORIZE_SIM_GPU_MEM    capacity of each device: bytes, or a number with KiB/MiB/GiB/TiB
//                            or KB/MB/GB/TB (default 4GiB)
//   TENSORIZE_SIM_GPU_GBPS   host-to-device bandwidth of each device's one copy engine, in
//                            GB/s (10^9 bytes/s; default 25)
//   TENSORIZE_SIM_SEED       seed of the random delays before async copies (default 20240613)
//   TENSORIZE_SIM_DELAY_US   the largest such delay, in microseconds (default 200)
//   TENSORIZE_SIM_FAIL       op@n[,op@n...]: the n-th call of op fails (see device_sim.cc)
// A value that does not parse gives a backend with no devices whose every call fails with
// E_USAGE naming the variable: never a silent default.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "device_backend.h"

namespace tz {
namespace dev {

// The operations TENSORIZE_SIM_FAIL names, in device_sim.cc's order.
inline constexpr const char* kSimOps[] = {"alloc", "free", "register", "stream", "copy", "event", "sync", "callback", "read"};
// Device memory is handed out in multiples of this (and so aligned to it).
inline constexpr uint64_t kSimGranule = 256;

struct SimFault {
  std::string op;  // alloc, free, register, stream, copy, event, sync, callback, read
  uint64_t n = 0;  // 1-based: the n-th call of op (per simulator instance) fails
};

struct SimConfig {
  uint64_t memBytes = 4ull << 30;
  double gbps = 25;
  uint64_t seed = 20240613;
  uint32_t maxDelayUs = 200;
  std::vector<SimFault> faults;
};

// TENSORIZE_SIM_* over the defaults; false with `why` naming the variable when one is bad
// (device_sim_config.cc, as are the two parsers below).
bool simConfigFromEnv(SimConfig& c, std::string& why);
// "op@n[,op@n...]"; false with `why` set.
bool parseSimFaults(const std::string& spec, std::vector<SimFault>& out, std::string& why);
// "4GiB", "512MiB", "1000000", "2GB"; false when it is not a size.
bool parseSimSize(const std::string& s, uint64_t& out);

// A simulator with `devices` devices (1 to 16). Destroying it (tests only: the process-wide
// one lives until exit) stops its threads and unmaps its memory; work still queued is dropped.
std::unique_ptr<Backend> makeSimBackend(int devices, const SimConfig& c);

}  // namespace dev
}  // namespace tz
