// The simulated device's settings (TENSORIZE_SIM_GPU_MEM, _GBPS, _SEED, _DELAY_US, _FAIL) and
// their parsers (device_sim_config.cc). config.cc reads the variables, once per process, and
// calls parseSimConfig; device_sim.cc builds a simulator from a SimConfig. No backend here, so
// config.h can hold a SimConfig without pulling in the device layer.
//   TENSORIZE_SIM_GPU_MEM    capacity of each device: bytes, or a number with KiB/MiB/GiB/TiB
//                            or KB/MB/GB/TB (default 4GiB)
//   TENSORIZE_SIM_GPU_GBPS   host-to-device bandwidth of each device's one copy engine, in
//                            GB/s (10^9 bytes/s; default 25)
//   TENSORIZE_SIM_SEED       seed of the random delays before async copies (default 20240613)
//   TENSORIZE_SIM_DELAY_US   the largest such delay, in microseconds (default 200)
//   TENSORIZE_SIM_FAIL       op@n[,op@n...]: the n-th call of op fails (see device_sim.cc)
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

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

// TENSORIZE_SIM_* as `env` gives them (nullptr: unset; surrounding blanks ignored), over the
// defaults in `c`; false with `why` naming the variable and its value when one does not parse.
bool parseSimConfig(const std::function<const char*(const char*)>& env, SimConfig& c, std::string& why);
// "op@n[,op@n...]"; false with `why` set.
bool parseSimFaults(const std::string& spec, std::vector<SimFault>& out, std::string& why);
// "4GiB", "512MiB", "1000000", "2GB"; false when it is not a size.
bool parseSimSize(const std::string& s, uint64_t& out);

}  // namespace dev
}  // namespace tz
