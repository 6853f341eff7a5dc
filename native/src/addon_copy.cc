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

double finite(Napi::Env env, double d, const char* what) {
  if (!(d >= 0) || d > 9007199254740991.0) throwError(env, Code::E_USAGE, std::string("copy: ") + what + " is out of range");
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
  Napi::Promise done = runAsync<NoResult>(
      env,
      [t](NoResult&) {
        tz::Error err;
        tz::runCopy(t->spec, err);
        return err;
      },
      // {crc32: Uint32Array(n), sha256: Buffer(32 n), bytes: Float64Array(n)}
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
        return o;
      });
  return ticketResult(env, t, done);
}

}  // namespace

void registerCopy(Napi::Env env, Napi::Object exports) { exports.Set("copy", Napi::Function::New(env, Copy)); }

}  // namespace tz::addon
