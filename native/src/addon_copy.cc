// copy: the serialize / verify / export engine (copy.h) on native threads.
#include <cstring>

#include "addon.h"
#include "addon_handle.h"
#include "addon_worker.h"
#include "copy.h"

namespace tz::addon {

namespace {

// A copy run: owns the spec, whose jobs receive the results.
struct CopyTicket : Ticket {
  tz::CopySpec spec;
};

// o.seal (optional): {keys: Buffer[] (32 bytes each), items: (null | {key, chunk, nonce:
// Buffer(24)})[]}, one entry per job: the jobs to encrypt on the way (copy.h), into `plan`;
// E_USAGE when a key is not 32 bytes, a nonce not 24, a chunk size not a positive multiple
// of 64, or an entry names a key that is not there. (runCopy sizes the MACs.)
void parseSeal(const Napi::Object& o, size_t jobs, crypt::Plan& plan) {
  Napi::Env env = o.Env();
  Napi::Value v = o.Get("seal");
  if (v.IsUndefined() || v.IsNull()) return;
  Error e = crypt::init();
  if (!e.ok()) throwError(env, e);
  if (!v.IsObject() || !v.As<Napi::Object>().Get("keys").IsArray() || !v.As<Napi::Object>().Get("items").IsArray())
    throwError(env, Code::E_USAGE, "seal must be an object with keys and items arrays");
  Napi::Array keys = v.As<Napi::Object>().Get("keys").As<Napi::Array>(), items = v.As<Napi::Object>().Get("items").As<Napi::Array>();
  for (uint32_t k = 0; k < keys.Length(); k++) {
    Napi::Value b = keys.Get(k);
    if (!b.IsBuffer() || b.As<Napi::Buffer<uint8_t>>().Length() != crypt::kKeyBytes) throwError(env, Code::E_USAGE, "seal.keys: each key must be a 32-byte Buffer");
    plan.keys.add(b.As<Napi::Buffer<uint8_t>>().Data());
  }
  if (items.Length() != jobs) throwError(env, Code::E_USAGE, "seal.items must have one entry per job");
  plan.items.resize(jobs);
  for (uint32_t i = 0; i < items.Length(); i++) {
    Napi::Value x = items.Get(i);
    if (x.IsNull() || x.IsUndefined()) continue;
    const std::string what = "seal.items[" + std::to_string(i) + "]";
    if (!x.IsObject()) throwError(env, Code::E_USAGE, what + " must be null or an object");
    Napi::Object it = x.As<Napi::Object>();
    const uint64_t key = u64(it, "key", keys.Length()), chunk = u64(it, "chunk", 0);
    Napi::Value nonce = it.Get("nonce");
    if (key >= keys.Length()) throwError(env, Code::E_USAGE, what + " names a key that was not given");
    if (chunk < 64 || chunk % 64) throwError(env, Code::E_USAGE, what + ": chunk must be a positive multiple of 64");
    if (!nonce.IsBuffer() || nonce.As<Napi::Buffer<uint8_t>>().Length() != crypt::kNonceBytes) throwError(env, Code::E_USAGE, what + ": nonce must be a 24-byte Buffer");
    crypt::ItemCrypt& c = plan.items[i];
    c.key = static_cast<int32_t>(key);
    c.chunk = chunk;
    std::memcpy(c.nonce, nonce.As<Napi::Buffer<uint8_t>>().Data(), crypt::kNonceBytes);
  }
}

double finite(Napi::Env env, double d, const char* what) {
  if (!(d >= 0) || d > 9007199254740991.0) throwError(env, Code::E_USAGE, std::string("copy: ") + what + " is out of range");
  return d;
}

// copy({inputs: string[], output?: string, threads, chunkSize, jobs: [{file, ranges: Float64Array
// (offset, length pairs), swap?, dst?, prefix?: Buffer, crc32: bool, sha256: bool}], crypt?,
// seal?}) -> {handle, done} (crypt: addon_handle.h parseCrypt, one entry per job; seal:
// parseSeal above)
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
  std::vector<uint64_t> lens(s.jobs.size(), 0);
  for (size_t i = 0; i < lens.size(); i++)
    for (size_t r = 1; r < s.jobs[i].ranges.size(); r += 2) lens[i] += s.jobs[i].ranges[r];
  parseCrypt(o, lens, s.crypt);
  parseSeal(o, s.jobs.size(), s.seal);
  s.progress = &t->progress;
  s.cancel = &t->cancel;
  Napi::Promise done = runAsync<NoResult>(
      env,
      [t](NoResult&) {
        tz::Error err;
        tz::runCopy(t->spec, err);
        t->spec.crypt.keys.clear();  // wiped: nothing needs them once the run is over
        t->spec.seal.keys.clear();
        return err;
      },
      // {crc32: Uint32Array(n), sha256: Buffer(32 n), bytes: Float64Array(n), macs?: (Buffer | null)[n]}
      [t](Napi::Env env, NoResult&) -> Napi::Value {
        const auto& jobs = t->spec.jobs;
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
        const auto& seal = t->spec.seal;
        if (!seal.items.empty()) {
          Napi::Array macs = Napi::Array::New(env, jobs.size());
          for (size_t i = 0; i < jobs.size(); i++) {
            const std::string& m = seal.items[i].macs;
            macs.Set(static_cast<uint32_t>(i), seal.of(i) ? Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(m.data()), m.size()).As<Napi::Value>() : env.Null());
          }
          o.Set("macs", macs);
        }
        return o;
      });
  return ticketResult(env, t, done);
}

}  // namespace

void registerCopy(Napi::Env env, Napi::Object exports) { exports.Set("copy", Napi::Function::New(env, Copy)); }

}  // namespace tz::addon
