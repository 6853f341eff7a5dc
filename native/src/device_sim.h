// The simulated device backend's factory (internal: device.cc reaches the simulator through
// makeSimBackend(const Config&), with the settings config.cc read from TENSORIZE_SIM_*; tests
// make as many independent simulators as they like with makeSimBackend(int, const SimConfig&)).
// The settings, their defaults and their parsers: device_sim_config.h. A value that does not
// parse gives a backend with no devices whose every call fails with E_USAGE naming the
// variable: never a silent default.
#pragma once
#include <memory>

#include "device_backend.h"
#include "device_sim_config.h"

namespace tz {
namespace dev {

// A simulator with `devices` devices (1 to 16). Destroying it (tests only: the process-wide
// one lives until exit) stops its threads and unmaps its memory; work still queued is dropped.
std::unique_ptr<Backend> makeSimBackend(int devices, const SimConfig& c);

}  // namespace dev
}  // namespace tz
