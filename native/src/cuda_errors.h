// CUDA failures as tensorize errors: a stable code and a message naming the call.
#pragma once
#include <cuda_runtime_api.h>

#include <string>

namespace tz {

inline std::string cudaMsg(cudaError_t e, const char* what) {
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

inline const char* cudaCode(cudaError_t e) {
  if (e == cudaErrorMemoryAllocation) return "E_DEVICE_OOM";
  // No usable GPU: none, a driver older than the runtime, a bad index, an HGX system whose
  // fabric manager is not running (802), kernel module and libcuda out of step (803), the
  // forward-compatibility package on a GPU it does not support (804), a GPU held by another
  // process in exclusive mode (46), or an initialisation failure.
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice || e == cudaErrorInitializationError ||
      e == cudaErrorDevicesUnavailable || e == cudaErrorSystemNotReady || e == cudaErrorSystemDriverMismatch ||
      e == cudaErrorCompatNotSupportedOnDevice)
    return "E_NO_DEVICE";
  return "E_CUDA";
}

}  // namespace tz
