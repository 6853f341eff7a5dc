// Errors as TensorizeError instances (the JS class handed to init()), with a stable .code.
#pragma once
#include <napi.h>

#include <string>

#include "io.h"

namespace tz::addon {

Napi::Value makeError(Napi::Env env, Code code, const std::string& message);
// With the item it concerns (`item`), the failed `hashes` and what to do (`hints`), when known.
Napi::Value makeError(Napi::Env env, const Error& err);

[[noreturn]] void throwError(Napi::Env env, Code code, const std::string& message);
[[noreturn]] void throwError(Napi::Env env, const Error& err);

}  // namespace tz::addon
