// Node-API functions for the page-cache tools of cache.h (benchmarks): evictFile,
// residency, readProbe. Registered by addon.cc's module init.
#pragma once
#include <napi.h>

#include <string>

namespace tz {

using MakeError = Napi::Value (*)(Napi::Env, const std::string& code, const std::string& message);

// Adds the functions to `exports`; errors are built with `makeError` (a TensorizeError).
void registerCacheFunctions(Napi::Env env, Napi::Object exports, MakeError makeError);

}  // namespace tz
