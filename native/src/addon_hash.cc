// Streaming CRC32 + SHA-256 for bytes that arrive in JS (remote sources): hasher(prefix)
// -> handle; hashUpdate(handle, buffer) -> Promise, run on a libuv thread (calls for one
// hasher must be chained by the caller); hashDigest(handle) -> {crc32, sha256}.
#include "addon.h"
#include "addon_handle.h"
#include "addon_worker.h"
#include "hash.h"

namespace tz::addon {

namespace {

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
  return ticketExternal(env, h);
}

Hasher& hasherOf(const Napi::Value& v) {
  auto* h = dynamic_cast<Hasher*>(&ticketOf(v));
  if (!h) throwError(v.Env(), Code::E_USAGE, "not a hasher");
  return *h;
}

Napi::Value HashUpdate(const Napi::CallbackInfo& info) {
  hasherOf(info[0]);
  auto h = std::static_pointer_cast<Hasher>(*info[0].As<Napi::External<TicketRef>>().Data());
  Napi::Uint8Array b = info[1].As<Napi::Uint8Array>();
  const uint8_t* data = b.Data();
  const size_t len = b.ByteLength();
  return runAsync<NoResult>(
      info.Env(),
      [h, data, len](NoResult&) {
        h->sha.update(data, len);
        h->crc = tz::crc32(h->crc, data, len);
        return tz::Error{};
      },
      nullptr, {nullptr, b});
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

}  // namespace

void registerHash(Napi::Env env, Napi::Object exports) {
  exports.Set("hasher", Napi::Function::New(env, NewHasher));
  exports.Set("hashUpdate", Napi::Function::New(env, HashUpdate));
  exports.Set("hashDigest", Napi::Function::New(env, HashDigest));
}

}  // namespace tz::addon
