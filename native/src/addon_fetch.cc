// fetch(spec) -> {handle, done}: tensor data pulled over HTTP(S) by the native fetcher
// (fetch.h) into a new destination (device >= 0, or -1 for host memory), or with device null
// into `output` (an existing file, at the items' dst offsets) or only hashed.
// spec: {host, port, tls, ca?, head, name, size, etag?, proxyHost?, proxyPort?,
// proxyConnect?, output?, items: Float64Array (src, len, dst triples), hashes?: [{crc32:
// bool, sha256: bool, prefix: Buffer}], chunkSize, maxGap, connections, retries,
// baseDelayMs, timeoutMs, speedLimit, speedTimeMs, total, groups?: [{sha256: Buffer(32),
// prefix: Buffer, items: Uint32Array}] (hash groups, checked here: fetch.h)}. Several objects: objects: [{the
// same target fields, name, size}] and itemFiles: Uint32Array (each item's object); the
// top-level target is then not read. crypt?: how items are encrypted (parseCrypt,
// addon_handle.h): decrypted as they arrive. The handle works with read() and free() like a load's.
#include <chrono>

#include "addon.h"
#include "addon_handle.h"
#include "addon_worker.h"
#include "fetch.h"

namespace tz::addon {

namespace {

struct FetchTicket : Handle {
  tz::FetchSpec fetch;
  tz::FetchResult result;
  bool hashOnly = false;
  bool hugePages = true;
  int device = -1;
  uint64_t total = 0;
};

// On the libuv thread: allocate the destination (timed: allocMs), then fetch into it.
tz::Error runFetch(FetchTicket& t, double& allocMs) {
  tz::Error err;
  std::unique_ptr<tz::Loaded> dest;
  if (!t.hashOnly) {
    auto t0 = std::chrono::steady_clock::now();
    dest.reset(tz::allocate(t.device, t.total, err, t.hugePages));
    if (!dest) return err;
    allocMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  if (!tz::fetch(t.fetch, dest.get(), t.result, err)) return err;
  t.loaded = std::move(dest);
  return err;
}

Napi::Value fetchStats(Napi::Env env, const FetchTicket& t, double allocMs) {
  const tz::FetchResult& r = t.result;
  Napi::Object o = Napi::Object::New(env);
  Napi::Uint32Array crc = Napi::Uint32Array::New(env, r.crc32.size());
  for (size_t i = 0; i < r.crc32.size(); i++) crc[i] = r.crc32[i];
  o.Set("crc32", crc);
  o.Set("sha256", Napi::Buffer<uint8_t>::Copy(env, r.sha256.data(), r.sha256.size()));
  o.Set("allocMs", allocMs);
  o.Set("firstTensorMs", r.firstTensorMs);
  o.Set("transferMs", r.transferMs);
  o.Set("bytes", static_cast<double>(r.bytes));
  o.Set("wireBytes", static_cast<double>(r.wireBytes));
  o.Set("requests", static_cast<double>(r.requests));
  o.Set("retries", static_cast<double>(r.retries));
  o.Set("connections", static_cast<double>(r.connections));
  o.Set("pinnedBytes", static_cast<double>(r.pinnedBytes));
  o.Set("deviceBytes", static_cast<double>(t.loaded ? t.loaded->stats.deviceBytes : 0));
  o.Set("hostBytes", static_cast<double>(t.loaded ? t.loaded->stats.hostBytes : 0));
  Napi::Array log = Napi::Array::New(env, r.retryLog.size());
  for (size_t i = 0; i < r.retryLog.size(); i++) log.Set(i, r.retryLog[i]);
  o.Set("retryLog", log);
  return o;
}

// One object: {host, port, tls, ca?, head, etag?, proxyHost?, proxyPort?, proxyConnect?,
// name, size} (a NativeFetchTarget with the object's URL and size).
tz::FetchObject parseObject(const Napi::Object& o) {
  Napi::Env env = o.Env();
  tz::FetchObject x;
  x.endpoint.host = o.Get("host").As<Napi::String>().Utf8Value();
  x.endpoint.port = static_cast<int>(u64(o, "port", 80));
  if (x.endpoint.port < 1 || x.endpoint.port > 65535) throwError(env, Code::E_USAGE, "fetch: port out of range");
  x.endpoint.tls = o.Get("tls").ToBoolean().Value();
  if (o.Get("proxyConnect").IsString()) {
    x.endpoint.proxyConnect = o.Get("proxyConnect").As<Napi::String>().Utf8Value();
    x.endpoint.proxyHost = o.Get("proxyHost").As<Napi::String>().Utf8Value();
    x.endpoint.proxyPort = static_cast<int>(u64(o, "proxyPort", 80));
    if (x.endpoint.proxyPort < 1 || x.endpoint.proxyPort > 65535) throwError(env, Code::E_USAGE, "fetch: proxy port out of range");
  }
  if (o.Get("ca").IsString()) x.endpoint.caPem = o.Get("ca").As<Napi::String>().Utf8Value();
  if (x.endpoint.tls) {
    std::string why;
    if (!tz::tlsAvailable(why)) throwError(env, Code::E_UNSUPPORTED, why);
  }
  x.head = o.Get("head").As<Napi::String>().Utf8Value();
  x.name = o.Get("name").As<Napi::String>().Utf8Value();
  x.objectSize = u64(o, "size", 0);
  if (o.Get("etag").IsString()) x.etag = o.Get("etag").As<Napi::String>().Utf8Value();
  return x;
}

Napi::Value Fetch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  auto t = std::make_shared<FetchTicket>();
  tz::FetchSpec& s = t->fetch;
  if (o.Get("objects").IsArray()) {
    Napi::Array objs = o.Get("objects").As<Napi::Array>();
    if (objs.Length() == 0) throwError(env, Code::E_USAGE, "fetch: objects must not be empty");
    for (uint32_t i = 0; i < objs.Length(); i++) s.objects.push_back(parseObject(objs.Get(i).As<Napi::Object>()));
  } else {
    s.objects.push_back(parseObject(o));  // the one object
  }
  if (o.Get("output").IsString()) s.output = o.Get("output").As<Napi::String>().Utf8Value();
  s.chunk = u64(o, "chunkSize", 8 << 20);
  if (s.chunk < 4096 || s.chunk > (1ull << 30)) throwError(env, Code::E_USAGE, "fetch: chunk size must be between 4 KiB and 1 GiB");
  s.maxGap = u64(o, "maxGap", 1 << 20);
  s.connections = static_cast<int>(u64(o, "connections", 8));
  s.retries = static_cast<int>(u64(o, "retries", 5));
  s.baseDelayMs = static_cast<double>(u64(o, "baseDelayMs", 200));
  s.timeoutMs = static_cast<double>(u64(o, "timeoutMs", 30000));
  s.speedLimit = u64(o, "speedLimit", 1024);
  s.speedTimeMs = static_cast<double>(u64(o, "speedTimeMs", 30000));
  s.items = parseItems(o, s.objects.size());
  if (o.Get("hashes").IsArray()) {
    Napi::Array hs = o.Get("hashes").As<Napi::Array>();
    if (hs.Length() != s.items.size()) throwError(env, Code::E_USAGE, "hashes must have one entry per item");
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
  std::vector<uint64_t> lens;
  for (const tz::Item& it : s.items) lens.push_back(it.len);
  parseCrypt(o, lens, s.crypt);
  s.groups = parseGroups(o, s.items, GroupOrder::File);
  if (!s.hashes.empty() && !s.groups.empty()) throwError(env, Code::E_USAGE, "fetch: per-item hashes and hash groups do not go together");
  t->hashOnly = o.Get("device").IsNull() || o.Get("device").IsUndefined();
  if (!t->hashOnly) t->device = o.Get("device").As<Napi::Number>().Int32Value();
  t->total = u64(o, "total", 0);
  t->hugePages = !o.Get("hugePages").IsBoolean() || o.Get("hugePages").As<Napi::Boolean>().Value();
  s.progress = &t->progress;
  s.cancel = &t->cancel;
  t->running = true;
  Napi::Promise done = runAsync<double>(
      env, [t](double& allocMs) { return runFetch(*t, allocMs); }, [t](Napi::Env env, double& allocMs) { return fetchStats(env, *t, allocMs); },
      {[t] { t->running = false; }});
  return ticketResult(env, t, done);
}

}  // namespace

void registerFetch(Napi::Env env, Napi::Object exports) { exports.Set("fetch", Napi::Function::New(env, Fetch)); }

}  // namespace tz::addon
