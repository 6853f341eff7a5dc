// Compiled by CMake (try_compile) only where a CUDA toolkit's cuda.h is found: static_asserts
// that tensorize's own declarations of the driver API (src/device_cuda_api.h) match it:
//  - each value (results, flags) equals cuda.h's;
//  - each symbol we dlsym is the one cuda.h maps the plain name to (cuMemAlloc -> cuMemAlloc_v2),
//    i.e. the entry point a program built with this toolkit would call;
//  - each function pointer type equals cuda.h's prototype for that symbol, and, with
//    cudaTypedefs.h (CUDA 11.3+), the PFN_<name>_v<version> typedef for the version we claim
//    added it (which sets the minimum driver).
// Nothing runs: compiling is the check.
#include <cuda.h>

#include <type_traits>

#include "../src/device_cuda_api.h"

#if __has_include(<cudaTypedefs.h>)
#include <cudaTypedefs.h>
#define TZ_HAVE_CUDA_TYPEDEFS 1
#endif

namespace {

namespace our = tz::cu;

// cuda.h's types rewritten as ours (its CUresult enum as our int, its opaque structs as ours),
// so that whole function types can be compared.
template <class T>
struct Map {
  using type = T;
};
template <>
struct Map<::CUresult> {
  using type = our::CUresult;
};
template <>
struct Map<::CUctx_st> {
  using type = our::CUctx_st;
};
template <>
struct Map<::CUstream_st> {
  using type = our::CUstream_st;
};
template <>
struct Map<::CUevent_st> {
  using type = our::CUevent_st;
};
template <class T>
struct Map<T*> {
  using type = typename Map<T>::type*;
};
template <class T>
struct Map<const T> {
  using type = const typename Map<T>::type;
};
template <class R, class... A>
struct Map<R(A...)> {
  using type = typename Map<R>::type(typename Map<A>::type...);
};
template <class T>
using Mapped = typename Map<T>::type;

constexpr bool same(const char* a, const char* b) { return *a == *b && (*a == 0 || same(a + 1, b + 1)); }

static_assert(sizeof(::CUresult) == sizeof(our::CUresult), "CUresult is int-sized");
static_assert(std::is_same<::CUdevice, our::CUdevice>::value, "CUdevice");
static_assert(std::is_same<::CUdeviceptr, our::CUdeviceptr>::value, "CUdeviceptr");
static_assert(std::is_same<Mapped<::CUhostFn>, our::CUhostFn>::value, "CUhostFn");

#define TZ_STR(x) #x
#define TZ_XSTR(x) TZ_STR(x)

// `name` is not expanded where it is stringified (#name) or pasted (##), and is expanded
// through cuda.h's #defines in TZ_XSTR(name): the symbol a call to `name` compiles to.
#define TZ_CHECK_FUNCTION(name, symbol, version, params)                                                \
  static_assert(same(TZ_XSTR(name), #symbol), "cuda.h maps " #name " to another symbol than " #symbol); \
  static_assert(std::is_same<Mapped<decltype(&::symbol)>, our::Fn_##symbol>::value,                      \
                #symbol ": device_cuda_api.h's parameters differ from cuda.h's");
TZ_CU_FUNCTIONS(TZ_CHECK_FUNCTION)
TZ_CU_OPTIONAL_FUNCTIONS(TZ_CHECK_FUNCTION)

#ifdef TZ_HAVE_CUDA_TYPEDEFS
#define TZ_CHECK_TYPEDEF(name, symbol, version, params)                                  \
  static_assert(std::is_same<Mapped<PFN_##name##_v##version>, our::Fn_##symbol>::value, \
                #symbol " is not the CUDA " #version " entry point (PFN_" #name "_v" #version ")");
TZ_CU_FUNCTIONS(TZ_CHECK_TYPEDEF)
TZ_CU_OPTIONAL_FUNCTIONS(TZ_CHECK_TYPEDEF)
#endif

#define TZ_CHECK_VALUE(ours, theirs) static_assert(static_cast<long long>(our::ours) == static_cast<long long>(theirs), #ours " != " #theirs);
TZ_CHECK_VALUE(SUCCESS, CUDA_SUCCESS)
TZ_CHECK_VALUE(ERROR_INVALID_VALUE, CUDA_ERROR_INVALID_VALUE)
TZ_CHECK_VALUE(ERROR_OUT_OF_MEMORY, CUDA_ERROR_OUT_OF_MEMORY)
TZ_CHECK_VALUE(ERROR_NOT_INITIALIZED, CUDA_ERROR_NOT_INITIALIZED)
TZ_CHECK_VALUE(ERROR_DEINITIALIZED, CUDA_ERROR_DEINITIALIZED)
TZ_CHECK_VALUE(ERROR_NO_DEVICE, CUDA_ERROR_NO_DEVICE)
TZ_CHECK_VALUE(ERROR_INVALID_DEVICE, CUDA_ERROR_INVALID_DEVICE)
TZ_CHECK_VALUE(ERROR_DEVICE_NOT_LICENSED, CUDA_ERROR_DEVICE_NOT_LICENSED)
TZ_CHECK_VALUE(ERROR_INVALID_CONTEXT, CUDA_ERROR_INVALID_CONTEXT)
TZ_CHECK_VALUE(ERROR_INVALID_HANDLE, CUDA_ERROR_INVALID_HANDLE)
TZ_CHECK_VALUE(ERROR_NOT_READY, CUDA_ERROR_NOT_READY)
TZ_CHECK_VALUE(ERROR_ILLEGAL_ADDRESS, CUDA_ERROR_ILLEGAL_ADDRESS)
TZ_CHECK_VALUE(ERROR_LAUNCH_TIMEOUT, CUDA_ERROR_LAUNCH_TIMEOUT)
TZ_CHECK_VALUE(ERROR_ASSERT, CUDA_ERROR_ASSERT)
TZ_CHECK_VALUE(ERROR_HOST_MEMORY_ALREADY_REGISTERED, CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED)
TZ_CHECK_VALUE(ERROR_HOST_MEMORY_NOT_REGISTERED, CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED)
TZ_CHECK_VALUE(ERROR_HARDWARE_STACK_ERROR, CUDA_ERROR_HARDWARE_STACK_ERROR)
TZ_CHECK_VALUE(ERROR_ILLEGAL_INSTRUCTION, CUDA_ERROR_ILLEGAL_INSTRUCTION)
TZ_CHECK_VALUE(ERROR_MISALIGNED_ADDRESS, CUDA_ERROR_MISALIGNED_ADDRESS)
TZ_CHECK_VALUE(ERROR_INVALID_ADDRESS_SPACE, CUDA_ERROR_INVALID_ADDRESS_SPACE)
TZ_CHECK_VALUE(ERROR_INVALID_PC, CUDA_ERROR_INVALID_PC)
TZ_CHECK_VALUE(ERROR_LAUNCH_FAILED, CUDA_ERROR_LAUNCH_FAILED)
TZ_CHECK_VALUE(ERROR_NOT_PERMITTED, CUDA_ERROR_NOT_PERMITTED)
TZ_CHECK_VALUE(ERROR_NOT_SUPPORTED, CUDA_ERROR_NOT_SUPPORTED)
TZ_CHECK_VALUE(ERROR_SYSTEM_NOT_READY, CUDA_ERROR_SYSTEM_NOT_READY)
TZ_CHECK_VALUE(ERROR_SYSTEM_DRIVER_MISMATCH, CUDA_ERROR_SYSTEM_DRIVER_MISMATCH)
TZ_CHECK_VALUE(ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE, CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE)
TZ_CHECK_VALUE(ERROR_UNKNOWN, CUDA_ERROR_UNKNOWN)
// Values newer than CUDA 11.0, each checked from a toolkit known to have it.
#if CUDA_VERSION >= 12010
TZ_CHECK_VALUE(ERROR_STUB_LIBRARY, CUDA_ERROR_STUB_LIBRARY)
TZ_CHECK_VALUE(ERROR_DEVICE_UNAVAILABLE, CUDA_ERROR_DEVICE_UNAVAILABLE)
TZ_CHECK_VALUE(ERROR_MPS_CLIENT_TERMINATED, CUDA_ERROR_MPS_CLIENT_TERMINATED)
TZ_CHECK_VALUE(ERROR_EXTERNAL_DEVICE, CUDA_ERROR_EXTERNAL_DEVICE)
#endif
#if CUDA_VERSION >= 13050
TZ_CHECK_VALUE(ERROR_CONTAINED, CUDA_ERROR_CONTAINED)
TZ_CHECK_VALUE(ERROR_TENSOR_MEMORY_LEAK, CUDA_ERROR_TENSOR_MEMORY_LEAK)
TZ_CHECK_VALUE(ERROR_FABRIC_NOT_READY, CUDA_ERROR_FABRIC_NOT_READY)
#endif
TZ_CHECK_VALUE(STREAM_NON_BLOCKING, CU_STREAM_NON_BLOCKING)
TZ_CHECK_VALUE(EVENT_BLOCKING_SYNC, CU_EVENT_BLOCKING_SYNC)
TZ_CHECK_VALUE(EVENT_DISABLE_TIMING, CU_EVENT_DISABLE_TIMING)
TZ_CHECK_VALUE(MEMHOSTREGISTER_PORTABLE, CU_MEMHOSTREGISTER_PORTABLE)
TZ_CHECK_VALUE(MEMHOSTALLOC_PORTABLE, CU_MEMHOSTALLOC_PORTABLE)

}  // namespace

int main() { return 0; }
