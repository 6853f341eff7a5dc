// The error codes: one list for the native side and src/errors.ts (test/error-codes.test.ts
// checks that the two name the same codes). An Error's code is one of these; JS receives its
// name as TensorizeError.code.
#pragma once
#include <cstdint>

#define TZ_ERROR_CODES(X)                                                                  \
  X(E_USAGE)                                                                               \
  X(E_NOT_FOUND)                                                                           \
  X(E_IO)                                                                                  \
  X(E_FORMAT)                                                                              \
  X(E_SAFETENSORS)                                                                         \
  X(E_INPUT)                                                                               \
  X(E_HASH_MISMATCH)                                                                       \
  X(E_UNSUPPORTED)                                                                         \
  X(E_INEXPRESSIBLE)                                                                       \
  X(E_PICKLE)                                                                              \
  X(E_PICKLE_GLOBAL)                                                                       \
  X(E_INTERRUPTED)                                                                         \
  X(E_NATIVE_UNAVAILABLE)                                                                  \
  X(E_NO_DEVICE)                                                                           \
  X(E_DEVICE_OOM)                                                                          \
  X(E_HOST_OOM)                                                                            \
  X(E_DEVICE_ALLOC)                                                                        \
  X(E_DEVICE_FREE)                                                                         \
  X(E_DEVICE_REGISTER)                                                                     \
  X(E_DEVICE_STREAM)                                                                       \
  X(E_DEVICE_COPY)                                                                         \
  X(E_DEVICE_EVENT)                                                                        \
  X(E_DEVICE_SYNC)                                                                         \
  X(E_DEVICE_CALLBACK)                                                                     \
  X(E_DEVICE_READ)                                                                         \
  X(E_DEVICE)                                                                              \
  X(E_FILE_CHANGED)                                                                        \
  X(E_DECRYPT)                                                                             \
  X(E_KEY)                                                                                 \
  X(E_NATIVE)

namespace tz {

enum class Code : uint8_t {
  none = 0,  // success
#define TZ_ERROR_ENUM(name) name,
  TZ_ERROR_CODES(TZ_ERROR_ENUM)
#undef TZ_ERROR_ENUM
};

// "E_IO" for Code::E_IO; "" for Code::none.
inline const char* codeName(Code c) {
  static const char* const names[] = {
      "",
#define TZ_ERROR_NAME(name) #name,
      TZ_ERROR_CODES(TZ_ERROR_NAME)
#undef TZ_ERROR_NAME
  };
  auto i = static_cast<unsigned>(c);
  return i < sizeof names / sizeof names[0] ? names[i] : "E_NATIVE";
}

constexpr unsigned kCodeCount = 0
#define TZ_ERROR_COUNT(name) +1
    TZ_ERROR_CODES(TZ_ERROR_COUNT)
#undef TZ_ERROR_COUNT
    ;

}  // namespace tz
