// Node-API binding of the loader. Every error crosses into JS as an instance of the
// TensorizeError class handed to init(), with a stable .code.
#include <napi.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>

#include "addon_cache.h"
#include "copy.h"
#include "fetch.h"
#include "hash.h"
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

// Work in flight or done: the progress counter and the cancel flag JS polls and sets.
struct Ticket {
  std::atomic<uint64_t> progress{0};
  std::atomic<bool> cancel{false};
  virtual ~Ticket() = default;
};

// A load: also owns the result.
struct Handle : Ticket {
  // Shared with the Buffers view() hands out: free() drops this reference, and the memory
  // goes when the last view has been collected too.
  std::shared_ptr<tz::Loaded> loaded;
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
  o.Set("hashImplementation", r.hashImplementation);
  o.Set("populate", r.populate);
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

// o.items: a Float64Array of (src, len, dst) triples.
std::vector<tz::Item> parseItems(const Napi::Object& o) {
  Napi::Env env = o.Env();
  Napi::Float64Array items = o.Get("items").As<Napi::Float64Array>();
  if (items.ElementLength() % 3) throwError(env, "E_USAGE", "items must hold (src, len, dst) triples");
  std::vector<tz::Item> out;
  out.reserve(items.ElementLength() / 3);
  for (size_t i = 0; i < items.ElementLength(); i += 3) {
    double a = items[i], b = items[i + 1], c = items[i + 2];
    if (!(a >= 0 && b >= 0 && c >= 0) || a > 9007199254740991.0 || b > 9007199254740991.0 || c > 9007199254740991.0) throwError(env, "E_USAGE", "item out of range");
    out.push_back({static_cast<uint64_t>(a), static_cast<uint64_t>(b), static_cast<uint64_t>(c)});
  }
  return out;
}

class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, std::shared_ptr<Handle> h)
      : Napi::AsyncWorker(env), h_(std::move(h)), deferred_(Napi::Promise::Deferred::New(env)) {}
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
    o.Set("mappedBytes", static_cast<double>(s.mappedBytes));
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
  std::string code_, msg_;
  int64_t tensor_ = -1;
};

using TicketRef = std::shared_ptr<Ticket>;

Ticket& ticketOf(const Napi::Value& v) {
  if (!v.IsExternal()) throwError(v.Env(), "E_USAGE", "not a native handle");
  return **v.As<Napi::External<TicketRef>>().Data();
}

Handle& handleOf(const Napi::Value& v) {
  auto* h = dynamic_cast<Handle*>(&ticketOf(v));
  if (!h) throwError(v.Env(), "E_USAGE", "not a load handle");
  return *h;
}

// {handle, done}: the handle is an External that keeps the ticket alive.
Napi::Object ticketResult(Napi::Env env, const TicketRef& t, Napi::Promise done) {
  auto* holder = new TicketRef(t);
  Napi::Object result = Napi::Object::New(env);
  result.Set("handle", Napi::External<TicketRef>::New(env, holder, [](Napi::Env, TicketRef* p) { delete p; }));
  result.Set("done", done);
  return result;
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
  s.hugePages = !o.Get("hugePages").IsBoolean() || o.Get("hugePages").As<Napi::Boolean>().Value();
  s.mmap = o.Get("mmap").ToBoolean().Value();
  s.expectSize = o.Get("fileSize").IsUndefined() ? -1 : static_cast<int64_t>(u64(o, "fileSize", 0));
  s.items = parseItems(o);
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
  auto* w = new LoadWorker(env, h);
  Napi::Object result = ticketResult(env, h, w->promise());
  w->Queue();
  return result;
}

// A copy run (serialize, verify, export): owns the spec, whose jobs receive the results.
struct CopyTicket : Ticket {
  tz::CopySpec spec;
};

class CopyWorker : public Napi::AsyncWorker {
 public:
  CopyWorker(Napi::Env env, std::shared_ptr<CopyTicket> t)
      : Napi::AsyncWorker(env), t_(std::move(t)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    if (!tz::runCopy(t_->spec, err_)) return;
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (!err_.ok()) {
      Napi::Object e = makeError(env, err_.code, err_.message).As<Napi::Object>();
      if (err_.tensor >= 0) e.Set("jobIndex", static_cast<double>(err_.tensor));
      deferred_.Reject(e);
      return;
    }
    // {crc32: Uint32Array(n), sha256: Buffer(32 n), bytes: Float64Array(n)}
    const auto& jobs = t_->spec.jobs;
    Napi::Uint32Array crc = Napi::Uint32Array::New(env, jobs.size());
    Napi::Buffer<uint8_t> sha = Napi::Buffer<uint8_t>::New(env, 32 * jobs.size());
    Napi::Float64Array bytes = Napi::Float64Array::New(env, jobs.size());
    for (size_t i = 0; i < jobs.size(); i++) {
      crc[i] = jobs[i].crc32;
      std::memcpy(sha.Data() + 32 * i, jobs[i].sha256, 32);
      bytes[i] = static_cast<double>(jobs[i].bytes);
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("crc32", crc);
    o.Set("sha256", sha);
    o.Set("bytes", bytes);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(makeError(Env(), "E_NATIVE", e.Message())); }

 private:
  std::shared_ptr<CopyTicket> t_;
  Napi::Promise::Deferred deferred_;
  tz::Error err_;
};

double finite(Napi::Env env, double d, const char* what) {
  if (!(d >= 0) || d > 9007199254740991.0) throwError(env, "E_USAGE", std::string("copy: ") + what + " is out of range");
  return d;
}

// copy({inputs: string[], output?: string, threads, chunkSize, jobs: [{file, ranges: Float64Array
// (offset, length pairs), swap?, dst?, prefix?: Buffer, crc32: bool, sha256: bool}]}) -> {handle, done}
Napi::Value Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  auto t = std::make_shared<CopyTicket>();
  tz::CopySpec& s = t->spec;
  Napi::Array inputs = o.Get("inputs").As<Napi::Array>();
  for (uint32_t i = 0; i < inputs.Length(); i++) s.inputs.push_back(inputs.Get(i).As<Napi::String>().Utf8Value());
  if (o.Get("output").IsString()) s.output = o.Get("output").As<Napi::String>().Utf8Value();
  s.threads = static_cast<int>(u64(o, "threads", 2));
  s.chunk = u64(o, "chunkSize", 1 << 20);
  Napi::Array jobs = o.Get("jobs").As<Napi::Array>();
  s.jobs.resize(jobs.Length());
  for (uint32_t i = 0; i < jobs.Length(); i++) {
    Napi::Object j = jobs.Get(i).As<Napi::Object>();
    tz::CopyJob& c = s.jobs[i];
    c.file = static_cast<uint32_t>(u64(j, "file", 0));
    Napi::Float64Array r = j.Get("ranges").As<Napi::Float64Array>();
    c.ranges.reserve(r.ElementLength());
    for (size_t k = 0; k < r.ElementLength(); k++) c.ranges.push_back(static_cast<uint64_t>(finite(env, r[k], "a range")));
    c.swap = static_cast<int>(u64(j, "swap", 1));
    c.dst = j.Get("dst").IsUndefined() ? -1 : static_cast<int64_t>(u64(j, "dst", 0));
    if (j.Get("prefix").IsBuffer()) {
      Napi::Buffer<uint8_t> p = j.Get("prefix").As<Napi::Buffer<uint8_t>>();
      c.prefix.assign(reinterpret_cast<const char*>(p.Data()), p.Length());
    }
    c.crc = j.Get("crc32").ToBoolean().Value();
    c.sha = j.Get("sha256").ToBoolean().Value();
  }
  s.progress = &t->progress;
  s.cancel = &t->cancel;
  auto* w = new CopyWorker(env, t);
  Napi::Object result = ticketResult(env, t, w->promise());
  w->Queue();
  return result;
}

// fetch(spec) -> {handle, done}: tensor data pulled over HTTP(S) by the native fetcher
// (fetch.h) into a new destination (device >= 0, or -1 for host memory), or with device null
// into `output` (an existing file, at the items' dst offsets) or only hashed.
// spec: {host, port, tls, ca?, head, name, size, etag?, output?, items: Float64Array
// (src, len, dst triples), hashes?: [{crc32: bool, sha256: bool, prefix: Buffer}],
// chunkSize, maxGap, connections, retries, baseDelayMs, timeoutMs, speedLimit, speedTimeMs,
// total}. The handle works with read() and free() like a load's.
struct FetchTicket : Handle {
  tz::FetchSpec fetch;
  tz::FetchResult result;
  bool hashOnly = false;
  bool hugePages = true;
  int device = -1;
  uint64_t total = 0;
};

class FetchWorker : public Napi::AsyncWorker {
 public:
  FetchWorker(Napi::Env env, std::shared_ptr<FetchTicket> t)
      : Napi::AsyncWorker(env), t_(std::move(t)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    std::unique_ptr<tz::Loaded> dest;
    if (!t_->hashOnly) {
      auto t0 = std::chrono::steady_clock::now();
      dest.reset(tz::allocate(t_->device, t_->total, err_, t_->hugePages));
      if (!dest) return;
      allocMs_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
    if (!tz::fetch(t_->fetch, dest.get(), t_->result, err_)) return;
    t_->loaded = std::move(dest);
  }
  void OnOK() override {
    Napi::Env env = Env();
    t_->running = false;
    if (!err_.ok()) {
      Napi::Object e = makeError(env, err_.code, err_.message).As<Napi::Object>();
      if (err_.tensor >= 0) e.Set("tensorIndex", static_cast<double>(err_.tensor));
      deferred_.Reject(e);
      return;
    }
    const tz::FetchResult& r = t_->result;
    Napi::Object o = Napi::Object::New(env);
    Napi::Uint32Array crc = Napi::Uint32Array::New(env, r.crc32.size());
    for (size_t i = 0; i < r.crc32.size(); i++) crc[i] = r.crc32[i];
    o.Set("crc32", crc);
    o.Set("sha256", Napi::Buffer<uint8_t>::Copy(env, r.sha256.data(), r.sha256.size()));
    o.Set("allocMs", allocMs_);
    o.Set("firstTensorMs", r.firstTensorMs);
    o.Set("transferMs", r.transferMs);
    o.Set("bytes", static_cast<double>(r.bytes));
    o.Set("wireBytes", static_cast<double>(r.wireBytes));
    o.Set("requests", static_cast<double>(r.requests));
    o.Set("retries", static_cast<double>(r.retries));
    o.Set("connections", static_cast<double>(r.connections));
    o.Set("pinnedBytes", static_cast<double>(r.pinnedBytes));
    o.Set("deviceBytes", static_cast<double>(t_->loaded ? t_->loaded->stats.deviceBytes : 0));
    o.Set("hostBytes", static_cast<double>(t_->loaded ? t_->loaded->stats.hostBytes : 0));
    Napi::Array log = Napi::Array::New(env, r.retryLog.size());
    for (size_t i = 0; i < r.retryLog.size(); i++) log.Set(i, r.retryLog[i]);
    o.Set("retryLog", log);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override {
    t_->running = false;
    deferred_.Reject(makeError(Env(), "E_NATIVE", e.Message()));
  }

 private:
  std::shared_ptr<FetchTicket> t_;
  Napi::Promise::Deferred deferred_;
  tz::Error err_;
  double allocMs_ = 0;
};

Napi::Value Fetch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  auto t = std::make_shared<FetchTicket>();
  tz::FetchSpec& s = t->fetch;
  s.endpoint.host = o.Get("host").As<Napi::String>().Utf8Value();
  s.endpoint.port = static_cast<int>(u64(o, "port", 80));
  if (s.endpoint.port < 1 || s.endpoint.port > 65535) throwError(env, "E_USAGE", "fetch: port out of range");
  s.endpoint.tls = o.Get("tls").ToBoolean().Value();
  if (o.Get("proxyConnect").IsString()) {
    s.endpoint.proxyConnect = o.Get("proxyConnect").As<Napi::String>().Utf8Value();
    s.endpoint.proxyHost = o.Get("proxyHost").As<Napi::String>().Utf8Value();
    s.endpoint.proxyPort = static_cast<int>(u64(o, "proxyPort", 80));
    if (s.endpoint.proxyPort < 1 || s.endpoint.proxyPort > 65535) throwError(env, "E_USAGE", "fetch: proxy port out of range");
  }
  if (o.Get("ca").IsString()) s.endpoint.caPem = o.Get("ca").As<Napi::String>().Utf8Value();
  if (s.endpoint.tls) {
    std::string why;
    if (!tz::tlsAvailable(why)) throwError(env, "E_UNSUPPORTED", why);
  }
  s.head = o.Get("head").As<Napi::String>().Utf8Value();
  s.name = o.Get("name").As<Napi::String>().Utf8Value();
  s.objectSize = u64(o, "size", 0);
  if (o.Get("etag").IsString()) s.etag = o.Get("etag").As<Napi::String>().Utf8Value();
  if (o.Get("output").IsString()) s.output = o.Get("output").As<Napi::String>().Utf8Value();
  s.chunk = u64(o, "chunkSize", 8 << 20);
  if (s.chunk < 4096 || s.chunk > (1ull << 30)) throwError(env, "E_USAGE", "fetch: chunk size must be between 4 KiB and 1 GiB");
  s.maxGap = u64(o, "maxGap", 1 << 20);
  s.connections = static_cast<int>(u64(o, "connections", 8));
  s.retries = static_cast<int>(u64(o, "retries", 5));
  s.baseDelayMs = static_cast<double>(u64(o, "baseDelayMs", 200));
  s.timeoutMs = static_cast<double>(u64(o, "timeoutMs", 30000));
  s.speedLimit = u64(o, "speedLimit", 1024);
  s.speedTimeMs = static_cast<double>(u64(o, "speedTimeMs", 30000));
  s.items = parseItems(o);
  if (o.Get("hashes").IsArray()) {
    Napi::Array hs = o.Get("hashes").As<Napi::Array>();
    if (hs.Length() != s.items.size()) throwError(env, "E_USAGE", "hashes must have one entry per item");
    for (uint32_t i = 0; i < hs.Length(); i++) {
      Napi::Object h = hs.Get(i).As<Napi::Object>();
      tz::Expect x;
      x.crc = h.Get("crc32").ToBoolean().Value();
      x.sha = h.Get("sha256").ToBoolean().Value();
      if (h.Get("prefix").IsBuffer()) {
        Napi::Buffer<uint8_t> p = h.Get("prefix").As<Napi::Buffer<uint8_t>>();
        x.prefix.assign(reinterpret_cast<const char*>(p.Data()), p.Length());
      }
      s.hashes.push_back(std::move(x));
    }
  }
  t->hashOnly = o.Get("device").IsNull() || o.Get("device").IsUndefined();
  if (!t->hashOnly) t->device = o.Get("device").As<Napi::Number>().Int32Value();
  t->total = u64(o, "total", 0);
  t->hugePages = !o.Get("hugePages").IsBoolean() || o.Get("hugePages").As<Napi::Boolean>().Value();
  s.progress = &t->progress;
  s.cancel = &t->cancel;
  t->running = true;
  auto* w = new FetchWorker(env, t);
  Napi::Object result = ticketResult(env, t, w->promise());
  w->Queue();
  return result;
}

Napi::Value Progress(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(ticketOf(info[0]).progress.load()));
}

Napi::Value Cancel(const Napi::CallbackInfo& info) {
  ticketOf(info[0]).cancel.store(true);
  return info.Env().Undefined();
}

// read(handle, offset, length) -> Buffer with a copy of the loaded bytes
Napi::Value Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle& h = handleOf(info[0]);
  if (h.running) throwError(env, "E_USAGE", "the load is still running");
  if (!h.loaded) throwError(env, "E_USAGE", "nothing was loaded, or it was closed");
  uint64_t off = static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue());
  uint64_t len = static_cast<uint64_t>(info[2].As<Napi::Number>().DoubleValue());
  if (len > (1ull << 32)) throwError(env, "E_USAGE", "read at most 4 GiB at a time");
  Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, len);
  tz::Error e = h.loaded->read(off, len, out.Data());
  if (!e.ok()) throwError(env, e.code, e.message);
  return out;
}

// view(handle, offset, length) -> Buffer over the loaded bytes themselves (host loads only),
// keeping the allocation alive until it is garbage-collected, whatever free() does.
Napi::Value View(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle& h = handleOf(info[0]);
  if (h.running) throwError(env, "E_USAGE", "the load is still running");
  if (!h.loaded) throwError(env, "E_USAGE", "nothing was loaded, or it was closed");
  if (h.loaded->device >= 0) throwError(env, "E_USAGE", "view() needs host memory (--device cpu); read() copies from a GPU");
  const double offD = info[1].As<Napi::Number>().DoubleValue(), lenD = info[2].As<Napi::Number>().DoubleValue();
  const uint64_t size = h.loaded->size;
  if (!(offD >= 0 && lenD >= 0) || offD > static_cast<double>(size) || lenD > static_cast<double>(size) - offD) throwError(env, "E_USAGE", "view past the end of the loaded data");
  const uint64_t off = static_cast<uint64_t>(offD), len = static_cast<uint64_t>(lenD);
  if (!len || !h.loaded->base) return Napi::Buffer<uint8_t>::New(env, 0);
  // The reference is handed to the Buffer only once it exists (a failed creation must not keep the memory).
  auto keep = std::make_unique<std::shared_ptr<tz::Loaded>>(h.loaded);
  Napi::Buffer<uint8_t> b = Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(h.loaded->base) + off, len, [](Napi::Env, uint8_t*, std::shared_ptr<tz::Loaded>* k) { delete k; }, keep.get());
  keep.release();
  return b;
}

// alloc({device, total}) -> handle: a destination that JS fills with write() (remote sources).
Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  auto h = std::make_shared<Handle>();
  tz::Error err;
  const bool huge = !o.Get("hugePages").IsBoolean() || o.Get("hugePages").As<Napi::Boolean>().Value();
  tz::Loaded* l = tz::allocate(o.Get("device").As<Napi::Number>().Int32Value(), u64(o, "total", 0), err, huge);
  if (!l) throwError(env, err.code, err.message);
  h->loaded.reset(l);
  auto* holder = new TicketRef(h);
  return Napi::External<TicketRef>::New(env, holder, [](Napi::Env, TicketRef* p) { delete p; });
}

// write(handle, offset, buffer): copy bytes into the destination (host memcpy or H2D copy).
Napi::Value Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle& h = handleOf(info[0]);
  if (h.running) throwError(env, "E_USAGE", "the load is still running");
  if (!h.loaded) throwError(env, "E_USAGE", "nothing was allocated, or it was closed");
  double off = info[1].As<Napi::Number>().DoubleValue();
  if (!(off >= 0) || off > 9007199254740991.0) throwError(env, "E_USAGE", "write: offset out of range");
  Napi::Uint8Array b = info[2].As<Napi::Uint8Array>();
  tz::Error e = h.loaded->write(static_cast<uint64_t>(off), b.Data(), b.ByteLength());
  if (!e.ok()) throwError(env, e.code, e.message);
  return env.Undefined();
}

// writeAsync(handle, offset, buffer) -> Promise: write() on a libuv thread, so the main
// thread keeps receiving while the bytes are copied (the buffer must stay untouched until
// the promise settles; a reference keeps it alive).
class WriteWorker : public Napi::AsyncWorker {
 public:
  // The worker holds its own reference to the destination, taken here on the main thread:
  // a free() while it copies only drops the handle's (after a failed write, the others of
  // the same chunk may still be running when the load gives up and frees).
  WriteWorker(Napi::Env env, std::shared_ptr<tz::Loaded> dest, uint64_t off, Napi::Uint8Array b)
      : Napi::AsyncWorker(env), dest_(std::move(dest)), off_(off), data_(b.Data()), len_(b.ByteLength()), deferred_(Napi::Promise::Deferred::New(env)) {
    keep_ = Napi::Persistent(b);
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    err_ = dest_->write(off_, data_, len_);
  }
  void OnOK() override {
    if (err_.ok()) deferred_.Resolve(Env().Undefined());
    else deferred_.Reject(makeError(Env(), err_.code, err_.message));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(makeError(Env(), "E_NATIVE", e.Message())); }

 private:
  std::shared_ptr<tz::Loaded> dest_;
  uint64_t off_;
  const uint8_t* data_;
  size_t len_;
  Napi::Reference<Napi::Uint8Array> keep_;
  Napi::Promise::Deferred deferred_;
  tz::Error err_;
};

Napi::Value WriteAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle& h = handleOf(info[0]);
  if (!h.loaded) throwError(env, "E_USAGE", "nothing was allocated, or it was closed");
  double off = info[1].As<Napi::Number>().DoubleValue();
  if (!(off >= 0) || off > 9007199254740991.0) throwError(env, "E_USAGE", "write: offset out of range");
  auto* w = new WriteWorker(env, h.loaded, static_cast<uint64_t>(off), info[2].As<Napi::Uint8Array>());
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// Streaming CRC32 + SHA-256 for bytes that arrive in JS (remote sources): hasher(prefix)
// -> handle; hashUpdate(handle, buffer) -> Promise, run on a libuv thread (calls for one
// hasher must be chained by the caller); hashDigest(handle) -> {crc32, sha256}.
struct Hasher : Ticket {
  tz::Sha256 sha;
  uint32_t crc = 0;
};

Napi::Value NewHasher(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto h = std::make_shared<Hasher>();
  if (info.Length() > 0 && info[0].IsTypedArray()) {
    Napi::Uint8Array p = info[0].As<Napi::Uint8Array>();
    h->sha.update(p.Data(), p.ByteLength());
    h->crc = tz::crc32(0, p.Data(), p.ByteLength());
  }
  return Napi::External<TicketRef>::New(env, new TicketRef(h), [](Napi::Env, TicketRef* p) { delete p; });
}

Hasher& hasherOf(const Napi::Value& v) {
  auto* h = dynamic_cast<Hasher*>(&ticketOf(v));
  if (!h) throwError(v.Env(), "E_USAGE", "not a hasher");
  return *h;
}

class HashWorker : public Napi::AsyncWorker {
 public:
  HashWorker(Napi::Env env, std::shared_ptr<Hasher> h, Napi::Uint8Array b)
      : Napi::AsyncWorker(env), h_(std::move(h)), data_(b.Data()), len_(b.ByteLength()), deferred_(Napi::Promise::Deferred::New(env)) {
    keep_ = Napi::Persistent(b);
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    h_->sha.update(data_, len_);
    h_->crc = tz::crc32(h_->crc, data_, len_);
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(makeError(Env(), "E_NATIVE", e.Message())); }

 private:
  std::shared_ptr<Hasher> h_;
  const uint8_t* data_;
  size_t len_;
  Napi::Reference<Napi::Uint8Array> keep_;
  Napi::Promise::Deferred deferred_;
};

Napi::Value HashUpdate(const Napi::CallbackInfo& info) {
  hasherOf(info[0]);
  auto ref = std::static_pointer_cast<Hasher>(*info[0].As<Napi::External<TicketRef>>().Data());
  auto* w = new HashWorker(info.Env(), ref, info[1].As<Napi::Uint8Array>());
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value HashDigest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Hasher& h = hasherOf(info[0]);
  uint8_t d[32];
  h.sha.final(d);
  Napi::Object o = Napi::Object::New(env);
  o.Set("crc32", Napi::Number::New(env, h.crc));
  o.Set("sha256", Napi::Buffer<uint8_t>::Copy(env, d, 32));
  return o;
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  Handle& h = handleOf(info[0]);
  if (h.running) throwError(info.Env(), "E_USAGE", "the load is still running");
  h.loaded.reset();
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
  exports.Set("copy", Napi::Function::New(env, Copy));
  exports.Set("fetch", Napi::Function::New(env, Fetch));
  exports.Set("alloc", Napi::Function::New(env, Alloc));
  exports.Set("write", Napi::Function::New(env, Write));
  exports.Set("writeAsync", Napi::Function::New(env, WriteAsync));
  exports.Set("hasher", Napi::Function::New(env, NewHasher));
  exports.Set("hashUpdate", Napi::Function::New(env, HashUpdate));
  exports.Set("hashDigest", Napi::Function::New(env, HashDigest));
  exports.Set("progress", Napi::Function::New(env, Progress));
  exports.Set("cancel", Napi::Function::New(env, Cancel));
  exports.Set("read", Napi::Function::New(env, Read));
  exports.Set("view", Napi::Function::New(env, View));
  exports.Set("free", Napi::Function::New(env, Free));
  exports.Set("probeH2D", Napi::Function::New(env, ProbeH2D));
  tz::registerCacheFunctions(env, exports, makeError);
  return exports;
}

}  // namespace

NODE_API_MODULE(tensorize_native, Module)
