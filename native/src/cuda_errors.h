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
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice) return "E_NO_DEVICE";
  return "E_CUDA";
}

}  // namespace tz
