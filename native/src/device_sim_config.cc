// The simulated device's configuration: TENSORIZE_SIM_* (device_sim_config.h) parsed into a
// SimConfig, with the reason when a value does not parse. The values come from config.cc,
// which alone reads the environment.
#include "device_sim_config.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>

namespace tz {
namespace dev {
namespace {

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t"), z = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, z - a + 1);
}

bool parseU64(const std::string& s, uint64_t& out) {
  if (s.empty() || !(s[0] >= '0' && s[0] <= '9')) return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s.c_str(), &end, 0);
  if (errno || *end) return false;
  out = v;
  return true;
}

}  // namespace

bool parseSimSize(const std::string& in, uint64_t& out) {
  const std::string s = trim(in);
  size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') i++;
  uint64_t n;
  if (!parseU64(s.substr(0, i), n)) return false;
  static const std::pair<const char*, uint64_t> units[] = {
      {"", 1},           {"B", 1},           {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
      {"KB", 1000ull},   {"MB", 1000000ull}, {"GB", 1000000000ull}, {"TB", 1000000000000ull}};
  const std::string u = trim(s.substr(i));
  for (auto& un : units) {
    if (u != un.first) continue;
    if (n > UINT64_MAX / un.second) return false;
    out = n * un.second;
    return true;
  }
  return false;
}

bool parseSimFaults(const std::string& spec, std::vector<SimFault>& out, std::string& why) {
  out.clear();
  size_t at = 0;
  while (at <= spec.size()) {
    size_t comma = spec.find(',', at);
    if (comma == std::string::npos) comma = spec.size();
    const std::string item = trim(spec.substr(at, comma - at));
    at = comma + 1;
    if (item.empty()) continue;
    const size_t sep = item.find('@');
    SimFault f;
    f.op = sep == std::string::npos ? item : item.substr(0, sep);
    bool known = false;
    for (const char* op : kSimOps) known = known || f.op == op;
    if (!known || sep == std::string::npos || !parseU64(item.substr(sep + 1), f.n) || f.n == 0) {
      why = "'" + item + "' is not op@n with n >= 1 and op one of alloc, free, register, stream, copy, event, sync, callback, read";
      return false;
    }
    out.push_back(f);
  }
  return true;
}

bool parseSimConfig(const std::function<const char*(const char*)>& lookup, SimConfig& c, std::string& why) {
  auto env = [&](const char* k) -> std::string {
    const char* v = lookup(k);
    return v ? trim(v) : "";
  };
  std::string v = env("TENSORIZE_SIM_GPU_MEM");
  if (!v.empty() && (!parseSimSize(v, c.memBytes) || c.memBytes < kSimGranule || c.memBytes > (1ull << 44))) {
    why = "TENSORIZE_SIM_GPU_MEM=" + v + " is not a device size between 256 bytes and 16TiB (bytes, or e.g. 4GiB, 512MiB, 2GB)";
    return false;
  }
  v = env("TENSORIZE_SIM_GPU_GBPS");
  if (!v.empty()) {
    char* end = nullptr;
    errno = 0;
    double g = std::strtod(v.c_str(), &end);
    if (errno || *end || !std::isfinite(g) || g <= 0 || g > 1e6) {
      why = "TENSORIZE_SIM_GPU_GBPS=" + v + " is not a bandwidth in GB/s (a number above 0, e.g. 25)";
      return false;
    }
    c.gbps = g;
  }
  v = env("TENSORIZE_SIM_SEED");
  if (!v.empty() && !parseU64(v, c.seed)) {
    why = "TENSORIZE_SIM_SEED=" + v + " is not a non-negative integer";
    return false;
  }
  v = env("TENSORIZE_SIM_DELAY_US");
  if (!v.empty()) {
    uint64_t d;
    if (!parseU64(v, d) || d > 1000000) {
      why = "TENSORIZE_SIM_DELAY_US=" + v + " is not a delay in microseconds (0 to 1000000)";
      return false;
    }
    c.maxDelayUs = static_cast<uint32_t>(d);
  }
  v = env("TENSORIZE_SIM_FAIL");
  std::string fw;
  if (!v.empty() && !parseSimFaults(v, c.faults, fw)) {
    why = "TENSORIZE_SIM_FAIL=" + v + ": " + fw;
    return false;
  }
  return true;
}

}  // namespace dev
}  // namespace tz
