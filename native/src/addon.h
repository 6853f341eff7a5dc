// The Node-API module, one file per exported object: each addon_*.cc adds its functions to
// `exports` with one of these, called by the module init in addon.cc.
#pragma once
#include <napi.h>

namespace tz::addon {

void registerErrors(Napi::Env env, Napi::Object exports);  // addon_errors.cc: init, errorCodes
void registerLoad(Napi::Env env, Napi::Object exports);    // addon_load.cc: info, start, probeH2D, simCounts
void registerHandle(Napi::Env env, Napi::Object exports);  // addon_handle.cc: progress, cancel, read, view, free, alloc, write, writeAsync
void registerCopy(Napi::Env env, Napi::Object exports);    // addon_copy.cc: copy
void registerFetch(Napi::Env env, Napi::Object exports);   // addon_fetch.cc: fetch
void registerHash(Napi::Env env, Napi::Object exports);    // addon_hash.cc: hasher, hashUpdate, hashDigest
void registerCache(Napi::Env env, Napi::Object exports);   // addon_cache.cc: evictFile, residency, readProbe
void registerCrypt(Napi::Env env, Napi::Object exports);   // addon_crypt.cc: deriveKey, seal, open, randomBytes, wipe, sodiumVersion

}  // namespace tz::addon
