// Node-API binding of the loader. Every error crosses into JS as an instance of the
// TensorizeError class handed to init(), with a stable .code.
#include <napi.h>

#include <atomic>
#include <memory>

#include "loader.h"

namespace {

Napi::FunctionReference* errorClass = nullptr;

Napi::Value makeError(Napi::Env env, const std::string& code, const std::string& message) {
  if (errorClass && !errorClass->IsEmpty()) return errorClass->New({Napi::String::New(env, code), Napi::String::New(env, message)});
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e.Value();
}

[[noreturn]] void throwError(Napi::Env env, const std::string& code, const std::string& message) {
  throw Napi::Error(env, makeError(env, code, message).As<Napi::Object>());
}

// A load in flight or done: owns the progress counter, the cancel flag and the result.
struct Handle {
  std::atomic<uint64_t> progress{0};
  std::atomic<bool> cancel{false};
  std::unique_ptr<tz::Loaded> loaded;
  tz::Spec spec;
  bool running = false;
};

Napi::Value Init(const Napi::CallbackInfo& info) {
  if (!errorClass) errorClass = new Napi::FunctionReference();
  *errorClass = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tz::RuntimeInfo r = tz::runtimeInfo();
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiledWithCuda", r.compiledWithCuda);
  o.Set("cudaToolkit", r.cudaToolkit);
  o.Set("cudaRuntimeVersion", r.runtimeVersion);
  o.Set("driverVersion", r.driverVersion);
  o.Set("deviceCount", r.deviceCount);
  o.Set("cudaError", r.cudaError);
  o.Set("verifyAvailable", r.verifyAvailable);
  Napi::Array devs = Napi::Array::New(env, r.devices.size());
  for (size_t i = 0; i < r.devices.size(); i++) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("index", r.devices[i].index);
    d.Set("name", r.devices[i].name);
    d.Set("totalMemory", static_cast<double>(r.devices[i].totalMemory));
    d.Set("pciBusId", r.devices[i].pciBusId);
    devs.Set(i, d);
  }
  o.Set("devices", devs);
  return o;
}

uint64_t u64(const Napi::Object& o, const char* key, uint64_t dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return dflt;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0) throwError(o.Env(), "E_USAGE", std::string("native load: ") + key + " is out of range");
  return static_cast<uint64_t>(d);
}

class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, std::shared_ptr<Handle> h, Napi::Object owner)
      : Napi::AsyncWorker(env), h_(std::move(h)), deferred_(Napi::Promise::Deferred::New(env)) {
    owner_ = Napi::Persistent(owner);
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    tz::Error err;
    tz::Loaded* l = tz::load(h_->spec, err);
    if (!l) {
      code_ = err.code;
      msg_ = err.message;
      tensor_ = err.tensor;
      return;
    }
    h_->loaded.reset(l);
  }
  void OnOK() override {
    Napi::Env env = Env();
    h_->running = false;
    if (!code_.empty()) {
      Napi::Object e = makeError(env, code_, msg_).As<Napi::Object>();
      if (tensor_ >= 0) e.Set("tensorIndex", static_cast<double>(tensor_));
      deferred_.Reject(e);
      return;
    }
    const tz::Stats& s = h_->loaded->stats;
    Napi::Object o = Napi::Object::New(env);
    o.Set("allocMs", s.allocMs);
    o.Set("firstTensorMs", s.firstTensorMs);
    o.Set("transferMs", s.transferMs);
    o.Set("bytes", static_cast<double>(s.bytes));
    o.Set("pinnedBytes", static_cast<double>(s.pinnedBytes));
    o.Set("deviceBytes", static_cast<double>(s.deviceBytes));
    o.Set("hostBytes", static_cast<double>(s.hostBytes));
    o.Set("pieces", static_cast<double>(s.pieces));
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override {
    h_->running = false;
    deferred_.Reject(makeError(Env(), "E_NATIVE", e.Message()));
  }

 private:
  std::shared_ptr<Handle> h_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference owner_;
  std::string code_, msg_;
  int64_t tensor_ = -1;
};

std::shared_ptr<Handle>& handleOf(const Napi::Value& v) {
  auto* ext = v.As<Napi::External<std::shared_ptr<Handle>>>().Data();
  return *ext;
}

// start(spec) -> handle (an External); the promise is handle.done
Napi::Value Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  auto h = std::make_shared<Handle>();
  tz::Spec& s = h->spec;
  s.path = o.Get("path").As<Napi::String>().Utf8Value();
  s.device = o.Get("device").As<Napi::Number>().Int32Value();
  s.plaid = o.Get("plaid").As<Napi::Boolean>().Value();
  s.readers = static_cast<int>(u64(o, "readers", 4));
  s.chunk = u64(o, "chunkSize", 16 << 20);
  if (s.chunk < 4096 || s.chunk > (1ull << 31)) throwError(env, "E_USAGE", "chunk size must be between 4 KiB and 2 GiB");
  s.verify = o.Get("verify").ToBoolean().Value();
  s.total = u64(o, "total", 0);
  s.expectSize = o.Get("fileSize").IsUndefined() ? -1 : static_cast<int64_t>(u64(o, "fileSize", 0));
  // items: Float64Array [src, len, dst] * n
  Napi::Float64Array items = o.Get("items").As<Napi::Float64Array>();
  if (items.ElementLength() % 3) throwError(env, "E_USAGE", "items must hold (src, len, dst) triples");
  for (size_t i = 0; i < items.ElementLength(); i += 3) {
    double a = items[i], b = items[i + 1], c = items[i + 2];
    if (!(a >= 0 && b >= 0 && c >= 0) || a > 9007199254740991.0 || b > 9007199254740991.0 || c > 9007199254740991.0) throwError(env, "E_USAGE", "item out of range");
    s.items.push_back({static_cast<uint64_t>(a), static_cast<uint64_t>(b), static_cast<uint64_t>(c)});
  }
  if (s.verify) {
    // expect: array of {crc32?: number, sha256?: Buffer(32), prefix: Buffer}
    Napi::Array ex = o.Get("expect").As<Napi::Array>();
    if (ex.Length() != s.items.size()) throwError(env, "E_USAGE", "expect must have one entry per item");
    for (uint32_t i = 0; i < ex.Length(); i++) {
      Napi::Object e = ex.Get(i).As<Napi::Object>();
      tz::Expect x;
      if (!e.Get("crc32").IsUndefined()) {
        x.crc = true;
        x.crc32 = e.Get("crc32").As<Napi::Number>().Uint32Value();
      }
      if (!e.Get("sha256").IsUndefined()) {
        Napi::Buffer<uint8_t> b = e.Get("sha256").As<Napi::Buffer<uint8_t>>();
        if (b.Length() != 32) throwError(env, "E_USAGE", "sha256 must be 32 bytes");
        x.sha = true;
        std::memcpy(x.sha256, b.Data(), 32);
      }
      Napi::Buffer<uint8_t> p = e.Get("prefix").As<Napi::Buffer<uint8_t>>();
      x.prefix.assign(reinterpret_cast<const char*>(p.Data()), p.Length());
      s.expect.push_back(std::move(x));
    }
  }
  s.progress = &h->progress;
  s.cancel = &h->cancel;
  h->running = true;
  auto* holder = new std::shared_ptr<Handle>(h);
  auto ext = Napi::External<std::shared_ptr<Handle>>::New(env, holder, [](Napi::Env, std::shared_ptr<Handle>* p) { delete p; });
  Napi::Object result = Napi::Object::New(env);
  auto* w = new LoadWorker(env, h, result);
  result.Set("handle", ext);
  result.Set("done", w->promise());
  w->Queue();
  return result;
}

Napi::Value Progress(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(handleOf(info[0])->progress.load()));
}

Napi::Value Cancel(const Napi::CallbackInfo& info) {
  handleOf(info[0])->cancel.store(true);
  return info.Env().Undefined();
}

// read(handle, offset, length) -> Buffer with a copy of the loaded bytes
Napi::Value Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& h = handleOf(info[0]);
  if (h->running) throwError(env, "E_USAGE", "the load is still running");
  if (!h->loaded) throwError(env, "E_USAGE", "nothing was loaded, or it was closed");
  uint64_t off = static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue());
  uint64_t len = static_cast<uint64_t>(info[2].As<Napi::Number>().DoubleValue());
  if (len > (1ull << 32)) throwError(env, "E_USAGE", "read at most 4 GiB at a time");
  Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, len);
  tz::Error e = h->loaded->read(off, len, out.Data());
  if (!e.ok()) throwError(env, e.code, e.message);
  return out;
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  auto& h = handleOf(info[0]);
  if (h->running) throwError(info.Env(), "E_USAGE", "the load is still running");
  h->loaded.reset();
  return info.Env().Undefined();
}

Napi::Value ProbeH2D(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tz::Error err;
  double bps = tz::probeH2D(info[0].As<Napi::Number>().Int32Value(), static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue()),
                            info[2].As<Napi::Number>().Int32Value(), err);
  if (bps < 0) throwError(env, err.code, err.message);
  return Napi::Number::New(env, bps);
}

Napi::Object Module(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("start", Napi::Function::New(env, Start));
  exports.Set("progress", Napi::Function::New(env, Progress));
  exports.Set("cancel", Napi::Function::New(env, Cancel));
  exports.Set("read", Napi::Function::New(env, Read));
  exports.Set("free", Napi::Function::New(env, Free));
  exports.Set("probeH2D", Napi::Function::New(env, ProbeH2D));
  return exports;
}

}  // namespace

NODE_API_MODULE(tensorize_native, Module)
