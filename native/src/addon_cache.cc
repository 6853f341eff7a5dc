#include "addon_cache.h"

#include "cache.h"

namespace tz {

namespace {

MakeError makeErr = nullptr;

[[noreturn]] void fail(Napi::Env env, const Error& e) { throw Napi::Error(env, makeErr(env, e.code, e.message).As<Napi::Object>()); }

std::string pathArg(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) fail(info.Env(), {"E_USAGE", "expected a file path", -1});
  return info[0].As<Napi::String>().Utf8Value();
}

// evictFile(path): fdatasync + posix_fadvise(DONTNEED).
Napi::Value EvictFile(const Napi::CallbackInfo& info) {
  Error e = evictFromPageCache(pathArg(info));
  if (!e.ok()) fail(info.Env(), e);
  return info.Env().Undefined();
}

// residency(path) -> {fileBytes, pageSize, pages, resident}
Napi::Value ResidencyOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Residency r;
  Error e = pageCacheResidency(pathArg(info), r);
  if (!e.ok()) fail(env, e);
  Napi::Object o = Napi::Object::New(env);
  o.Set("fileBytes", static_cast<double>(r.fileBytes));
  o.Set("pageSize", static_cast<double>(r.pageSize));
  o.Set("pages", static_cast<double>(r.pages));
  o.Set("resident", static_cast<double>(r.resident));
  return o;
}

class ReadProbeWorker : public Napi::AsyncWorker {
 public:
  ReadProbeWorker(Napi::Env env, std::string path, int threads, uint64_t block)
      : Napi::AsyncWorker(env), path_(std::move(path)), threads_(threads), block_(block), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override { err_ = readProbe(path_, threads_, block_, out_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (!err_.ok()) {
      deferred_.Reject(makeErr(env, err_.code, err_.message));
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("bytes", static_cast<double>(out_.bytes));
    o.Set("seconds", out_.seconds);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(makeErr(Env(), "E_NATIVE", e.Message())); }

 private:
  std::string path_;
  int threads_;
  uint64_t block_;
  ReadProbe out_;
  Error err_;
  Napi::Promise::Deferred deferred_;
};

// readProbe(path, threads, block) -> Promise<{bytes, seconds}>, on a libuv thread.
Napi::Value ReadProbeFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = pathArg(info);
  double threads = info[1].As<Napi::Number>().DoubleValue();
  double block = info[2].As<Napi::Number>().DoubleValue();
  if (!(threads >= 1 && threads <= 256)) fail(env, {"E_USAGE", "readProbe: threads must be between 1 and 256", -1});
  if (!(block >= 4096 && block <= 1073741824.0)) fail(env, {"E_USAGE", "readProbe: block must be between 4 KiB and 1 GiB", -1});
  auto* w = new ReadProbeWorker(env, std::move(path), static_cast<int>(threads), static_cast<uint64_t>(block));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

}  // namespace

void registerCacheFunctions(Napi::Env env, Napi::Object exports, MakeError makeError) {
  makeErr = makeError;
  exports.Set("evictFile", Napi::Function::New(env, EvictFile));
  exports.Set("residency", Napi::Function::New(env, ResidencyOf));
  exports.Set("readProbe", Napi::Function::New(env, ReadProbeFn));
}

}  // namespace tz
