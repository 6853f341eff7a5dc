// The part of the CUDA driver API that tensorize calls, declared here rather than taken from
// cuda.h, so that building needs no CUDA toolkit. These types, values and symbols are a stable
// ABI: NVIDIA keeps every exported symbol with its signature, and a changed signature gets a
// new symbol (cuMemAlloc -> cuMemAlloc_v2), which is why we name the versioned symbols.
//
// Users: device_cuda.cc resolves the functions below by name from libcuda.so.1 with dlsym;
// test/fake_libcuda.cc implements them for the native tests; test/cuda_decls_check.cc compares
// each declaration with a real cuda.h (and cudaTypedefs.h) when the build finds one.
#pragma once
#include <cstddef>

namespace tz {
namespace cu {

// The names are cuda.h's, inside this namespace. Values are named without their CU_/CUDA_
// prefix because cuda.h #defines some of them (CU_MEMHOSTREGISTER_PORTABLE), which would break
// the declarations check that includes both headers.
using CUresult = int;                    // an enum in cuda.h, int-sized (checked)
using CUdevice = int;
using CUdeviceptr = unsigned long long;  // on 64-bit hosts, the only ones tensorize builds for
struct CUctx_st;
using CUcontext = CUctx_st*;
struct CUstream_st;
using CUstream = CUstream_st*;
struct CUevent_st;
using CUevent = CUevent_st*;
using CUhostFn = void (*)(void* userData);

// CUresult values tensorize classifies (device_cuda.cc) or the fake driver returns.
constexpr CUresult SUCCESS = 0;
constexpr CUresult ERROR_INVALID_VALUE = 1;
constexpr CUresult ERROR_OUT_OF_MEMORY = 2;
constexpr CUresult ERROR_NOT_INITIALIZED = 3;
constexpr CUresult ERROR_DEINITIALIZED = 4;
constexpr CUresult ERROR_STUB_LIBRARY = 34;
constexpr CUresult ERROR_DEVICE_UNAVAILABLE = 46;
constexpr CUresult ERROR_NO_DEVICE = 100;
constexpr CUresult ERROR_INVALID_DEVICE = 101;
constexpr CUresult ERROR_DEVICE_NOT_LICENSED = 102;
constexpr CUresult ERROR_INVALID_CONTEXT = 201;
constexpr CUresult ERROR_CONTAINED = 226;
constexpr CUresult ERROR_INVALID_HANDLE = 400;
constexpr CUresult ERROR_NOT_READY = 600;
constexpr CUresult ERROR_ILLEGAL_ADDRESS = 700;
constexpr CUresult ERROR_LAUNCH_TIMEOUT = 702;
constexpr CUresult ERROR_ASSERT = 710;
constexpr CUresult ERROR_HOST_MEMORY_ALREADY_REGISTERED = 712;
constexpr CUresult ERROR_HOST_MEMORY_NOT_REGISTERED = 713;
constexpr CUresult ERROR_HARDWARE_STACK_ERROR = 714;
constexpr CUresult ERROR_ILLEGAL_INSTRUCTION = 715;
constexpr CUresult ERROR_MISALIGNED_ADDRESS = 716;
constexpr CUresult ERROR_INVALID_ADDRESS_SPACE = 717;
constexpr CUresult ERROR_INVALID_PC = 718;
constexpr CUresult ERROR_LAUNCH_FAILED = 719;
constexpr CUresult ERROR_TENSOR_MEMORY_LEAK = 721;
constexpr CUresult ERROR_NOT_PERMITTED = 800;
constexpr CUresult ERROR_NOT_SUPPORTED = 801;
constexpr CUresult ERROR_SYSTEM_NOT_READY = 802;
constexpr CUresult ERROR_SYSTEM_DRIVER_MISMATCH = 803;
constexpr CUresult ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE = 804;
constexpr CUresult ERROR_MPS_CLIENT_TERMINATED = 810;
constexpr CUresult ERROR_EXTERNAL_DEVICE = 911;
constexpr CUresult ERROR_FABRIC_NOT_READY = 919;
constexpr CUresult ERROR_UNKNOWN = 999;

// Flags.
constexpr unsigned int STREAM_NON_BLOCKING = 0x1;       // no implicit sync with the legacy stream
constexpr unsigned int EVENT_BLOCKING_SYNC = 0x1;       // a waiting thread sleeps instead of spinning
constexpr unsigned int EVENT_DISABLE_TIMING = 0x2;      // cheaper record and sync
constexpr unsigned int MEMHOSTREGISTER_PORTABLE = 0x1;  // pinned for every context, not only the current
constexpr unsigned int MEMHOSTALLOC_PORTABLE = 0x1;     // the same for cuMemHostAlloc

// The functions: X(name as cuda.h spells it, symbol looked up in libcuda.so.1, CUDA version
// that added that symbol (1000 x major + 10 x minor, as cudaTypedefs.h's PFN_<name>_v<version>),
// parameter list). All return CUresult.
#define TZ_CU_FUNCTIONS(X)                                                                                  \
  X(cuDriverGetVersion, cuDriverGetVersion, 2020, (int* driverVersion))                                    \
  X(cuInit, cuInit, 2000, (unsigned int flags))                                                            \
  X(cuGetErrorName, cuGetErrorName, 6000, (CUresult error, const char** str))                              \
  X(cuGetErrorString, cuGetErrorString, 6000, (CUresult error, const char** str))                          \
  X(cuDeviceGetCount, cuDeviceGetCount, 2000, (int* count))                                                \
  X(cuDeviceGet, cuDeviceGet, 2000, (CUdevice * device, int ordinal))                                      \
  X(cuDeviceGetName, cuDeviceGetName, 2000, (char* name, int len, CUdevice dev))                           \
  X(cuDeviceTotalMem, cuDeviceTotalMem_v2, 3020, (size_t * bytes, CUdevice dev))                           \
  X(cuDeviceGetPCIBusId, cuDeviceGetPCIBusId, 4010, (char* pciBusId, int len, CUdevice dev))               \
  X(cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain, 7000, (CUcontext * ctx, CUdevice dev))             \
  X(cuCtxSetCurrent, cuCtxSetCurrent, 4000, (CUcontext ctx))                                               \
  X(cuCtxGetCurrent, cuCtxGetCurrent, 4000, (CUcontext * ctx))                                             \
  X(cuCtxSynchronize, cuCtxSynchronize, 2000, ())                                                          \
  X(cuMemAlloc, cuMemAlloc_v2, 3020, (CUdeviceptr * dptr, size_t bytes))                                   \
  X(cuMemFree, cuMemFree_v2, 3020, (CUdeviceptr dptr))                                                     \
  X(cuMemHostRegister, cuMemHostRegister_v2, 6050, (void* p, size_t bytes, unsigned int flags))            \
  X(cuMemHostUnregister, cuMemHostUnregister, 4000, (void* p))                                             \
  X(cuMemHostAlloc, cuMemHostAlloc, 2020, (void** pp, size_t bytes, unsigned int flags))                   \
  X(cuMemFreeHost, cuMemFreeHost, 2000, (void* p))                                                         \
  X(cuMemcpyHtoDAsync, cuMemcpyHtoDAsync_v2, 3020, (CUdeviceptr dst, const void* src, size_t n, CUstream s)) \
  X(cuMemcpyHtoD, cuMemcpyHtoD_v2, 3020, (CUdeviceptr dst, const void* src, size_t n))                     \
  X(cuMemcpyDtoH, cuMemcpyDtoH_v2, 3020, (void* dst, CUdeviceptr src, size_t n))                           \
  X(cuStreamCreate, cuStreamCreate, 2000, (CUstream * s, unsigned int flags))                              \
  X(cuStreamDestroy, cuStreamDestroy_v2, 4000, (CUstream s))                                               \
  X(cuStreamSynchronize, cuStreamSynchronize, 2000, (CUstream s))                                          \
  X(cuEventCreate, cuEventCreate, 2000, (CUevent * e, unsigned int flags))                                 \
  X(cuEventRecord, cuEventRecord, 2000, (CUevent e, CUstream s))                                           \
  X(cuEventSynchronize, cuEventSynchronize, 2000, (CUevent e))                                             \
  X(cuEventDestroy, cuEventDestroy_v2, 4000, (CUevent e))                                                  \
  X(cuLaunchHostFunc, cuLaunchHostFunc, 10000, (CUstream s, CUhostFn fn, void* userData))

// Looked up but not required: used only when a backend is destroyed (the tests; the process's
// backend lives until exit). The _v2 symbol came with CUDA 11.0; device_cuda.cc falls back to
// the CUDA 7.0 cuDevicePrimaryCtxRelease, which does the same for a plain retain/release pair,
// so that this call does not raise the minimum driver.
#define TZ_CU_OPTIONAL_FUNCTIONS(X) \
  X(cuDevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease_v2, 11000, (CUdevice dev))

#define TZ_CU_PFN(name, symbol, version, params) using Fn_##symbol = CUresult (*) params;
TZ_CU_FUNCTIONS(TZ_CU_PFN)
TZ_CU_OPTIONAL_FUNCTIONS(TZ_CU_PFN)
#undef TZ_CU_PFN

// The newest required symbol sets the oldest driver tensorize accepts.
#define TZ_CU_VERSION(name, symbol, version, params) version,
constexpr int kRequiredVersions[] = {TZ_CU_FUNCTIONS(TZ_CU_VERSION)};
#undef TZ_CU_VERSION
constexpr int newestRequired() {
  int m = 0;
  for (int v : kRequiredVersions) m = v > m ? v : m;
  return m;
}
constexpr int kMinCudaVersion = newestRequired();
// The Linux driver that first shipped that CUDA version (CUDA 10.0.130: 410.48, per NVIDIA's
// release notes). Keep the pair in step: the static_assert fails when a newer call is added.
constexpr const char* kMinDriver = "410.48";
static_assert(kMinCudaVersion == 10000, "a newer driver call was added: update kMinDriver (and device.h's note)");

}  // namespace cu
}  // namespace tz
