// Loads from a local file: start (into a new Handle), and what describes the machine: info,
// probeH2D, simCounts.
#include <cstring>

#include "addon.h"
#include "addon_handle.h"
#include "addon_worker.h"
#include "device.h"

namespace tz::addon {

namespace {

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tz::RuntimeInfo r = tz::runtimeInfo();
  Napi::Object o = Napi::Object::New(env);
  o.Set("backend", r.backend);
  o.Set("driverVersion", r.driverVersion);
  o.Set("deviceCount", r.deviceCount);
  o.Set("noDeviceReason", r.cudaError);
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

// What the simulated device holds (all zero on a real one): tests check nothing leaks.
Napi::Value SimCounts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tz::dev::SimCounts c = tz::dev::simCounts();
  Napi::Object o = Napi::Object::New(env);
  o.Set("allocations", static_cast<double>(c.allocations));
  o.Set("registrations", static_cast<double>(c.registrations));
  o.Set("streams", static_cast<double>(c.streams));
  o.Set("events", static_cast<double>(c.events));
  o.Set("deviceBytes", static_cast<double>(c.deviceBytes));
  o.Set("copies", static_cast<double>(c.copies));
  o.Set("pageableCopies", static_cast<double>(c.pageableCopies));
  o.Set("reads", static_cast<double>(c.reads));
  o.Set("poisoned", c.poisoned);
  return o;
}

Napi::Value ProbeH2D(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tz::Error err;
  double bps = tz::probeH2D(info[0].As<Napi::Number>().Int32Value(), static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue()),
                            info[2].As<Napi::Number>().Int32Value(), err);
  if (bps < 0) throwError(env, err);
  return Napi::Number::New(env, bps);
}

// start(spec) -> {handle, done}: the handle is an External, done the promise of the load's stats.
Napi::Value Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  auto h = std::make_shared<Handle>();
  tz::Spec& s = h->spec;
  if (o.Get("files").IsArray()) {
    // files: [{path, size?, mapAt?}]: several input files (items name theirs in itemFiles).
    Napi::Array fs = o.Get("files").As<Napi::Array>();
    if (fs.Length() == 0 || fs.Length() > 1u << 20) throwError(env, Code::E_USAGE, "files must list between 1 and 2^20 files");
    for (uint32_t i = 0; i < fs.Length(); i++) {
      Napi::Object f = fs.Get(i).As<Napi::Object>();
      tz::FileIn x;
      x.path = f.Get("path").As<Napi::String>().Utf8Value();
      x.expectSize = f.Get("size").IsUndefined() ? -1 : static_cast<int64_t>(u64(f, "size", 0));
      x.mapAt = u64(f, "mapAt", 0);
      s.files.push_back(std::move(x));
    }
  } else {
    s.path = o.Get("path").As<Napi::String>().Utf8Value();
  }
  s.device = o.Get("device").As<Napi::Number>().Int32Value();
  s.plaid = o.Get("plaid").As<Napi::Boolean>().Value();
  s.readers = static_cast<int>(u64(o, "readers", 4));
  s.chunk = u64(o, "chunkSize", 16 << 20);
  if (s.chunk < 4096 || s.chunk > (1ull << 31)) throwError(env, Code::E_USAGE, "chunk size must be between 4 KiB and 2 GiB");
  s.verify = o.Get("verify").ToBoolean().Value();
  s.total = u64(o, "total", 0);
  s.hugePages = !o.Get("hugePages").IsBoolean() || o.Get("hugePages").As<Napi::Boolean>().Value();
  s.mmap = o.Get("mmap").ToBoolean().Value();
  s.expectSize = o.Get("fileSize").IsUndefined() ? -1 : static_cast<int64_t>(u64(o, "fileSize", 0));
  s.items = parseItems(o, s.files.empty() ? 1 : s.files.size());
  s.groups = parseGroups(o, s.items, GroupOrder::Plan);
  {
    std::vector<uint64_t> lens;
    lens.reserve(s.items.size());
    for (const tz::Item& it : s.items) lens.push_back(it.len);
    parseCrypt(o, lens, s.crypt);  // crypt: {keys, items} (addon_crypt.cc), or none
  }
  if (s.verify && !s.groups.empty()) throwError(env, Code::E_USAGE, "verify (per-tensor hashes) and hash groups do not go together");
  if (s.verify) {
    // expect: array of {crc32?: number, sha256?: Buffer(32), prefix: Buffer}
    Napi::Array ex = o.Get("expect").As<Napi::Array>();
    if (ex.Length() != s.items.size()) throwError(env, Code::E_USAGE, "expect must have one entry per item");
    for (uint32_t i = 0; i < ex.Length(); i++) {
      Napi::Object e = ex.Get(i).As<Napi::Object>();
      tz::Expect x;
      if (!e.Get("crc32").IsUndefined()) {
        x.crc = true;
        x.crc32 = e.Get("crc32").As<Napi::Number>().Uint32Value();
      }
      if (!e.Get("sha256").IsUndefined()) {
        Napi::Buffer<uint8_t> b = e.Get("sha256").As<Napi::Buffer<uint8_t>>();
        if (b.Length() != 32) throwError(env, Code::E_USAGE, "sha256 must be 32 bytes");
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
  Napi::Promise done = runAsync<NoResult>(
      env,
      [h](NoResult&) {
        tz::Error err;
        if (tz::Loaded* l = tz::load(h->spec, err)) h->loaded.reset(l);
        h->spec.crypt.keys.clear();  // wiped now: the handle (and its spec) may live long after the load
        return err;
      },
      [h](Napi::Env env, NoResult&) -> Napi::Value {
        const tz::Stats& s = h->loaded->stats;
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
        return o;
      },
      {[h] { h->running = false; }});
  return ticketResult(env, h, done);
}

}  // namespace

void registerLoad(Napi::Env env, Napi::Object exports) {
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("start", Napi::Function::New(env, Start));
  exports.Set("probeH2D", Napi::Function::New(env, ProbeH2D));
  exports.Set("simCounts", Napi::Function::New(env, SimCounts));
}

}  // namespace tz::addon
