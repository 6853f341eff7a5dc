// Node-API functions for the page-cache tools of cache.h (benchmarks): evictFile,
// residency, readProbe.
#include "addon.h"
#include "addon_worker.h"
#include "cache.h"

namespace tz::addon {

namespace {

std::string pathArg(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throwError(info.Env(), Code::E_USAGE, "expected a file path");
  return info[0].As<Napi::String>().Utf8Value();
}

// evictFile(path): fdatasync + posix_fadvise(DONTNEED).
Napi::Value EvictFile(const Napi::CallbackInfo& info) {
  Error e = evictFromPageCache(pathArg(info));
  if (!e.ok()) throwError(info.Env(), e);
  return info.Env().Undefined();
}

// residency(path) -> {fileBytes, pageSize, pages, resident}
Napi::Value ResidencyOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Residency r;
  Error e = pageCacheResidency(pathArg(info), r);
  if (!e.ok()) throwError(env, e);
  Napi::Object o = Napi::Object::New(env);
  o.Set("fileBytes", static_cast<double>(r.fileBytes));
  o.Set("pageSize", static_cast<double>(r.pageSize));
  o.Set("pages", static_cast<double>(r.pages));
  o.Set("resident", static_cast<double>(r.resident));
  return o;
}

// readProbe(path, threads, block) -> Promise<{bytes, seconds}>, on a libuv thread.
Napi::Value ReadProbeFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = pathArg(info);
  double threads = info[1].As<Napi::Number>().DoubleValue();
  double block = info[2].As<Napi::Number>().DoubleValue();
  if (!(threads >= 1 && threads <= 256)) throwError(env, Code::E_USAGE, "readProbe: threads must be between 1 and 256");
  if (!(block >= 4096 && block <= 1073741824.0)) throwError(env, Code::E_USAGE, "readProbe: block must be between 4 KiB and 1 GiB");
  return runAsync<ReadProbe>(
      env, [path, n = static_cast<int>(threads), b = static_cast<uint64_t>(block)](ReadProbe& out) { return readProbe(path, n, b, out); },
      [](Napi::Env env, ReadProbe& out) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("bytes", static_cast<double>(out.bytes));
        o.Set("seconds", out.seconds);
        return o;
      });
}

}  // namespace

void registerCache(Napi::Env env, Napi::Object exports) {
  exports.Set("evictFile", Napi::Function::New(env, EvictFile));
  exports.Set("residency", Napi::Function::New(env, ResidencyOf));
  exports.Set("readProbe", Napi::Function::New(env, ReadProbeFn));
}

}  // namespace tz::addon
