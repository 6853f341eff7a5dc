// Encryption (crypt.h) for JS: deriveKey (Argon2id, on a libuv thread), seal and open (in
// place, on the calling thread: the JavaScript paths that move bytes themselves), random
// bytes, libsodium's version; and parseCrypt, how the engines' specs take their crypt plan.
#include "addon.h"
#include "addon_handle.h"
#include "addon_worker.h"
#include <array>

#include "crypt.h"

namespace tz::addon {

namespace {

Napi::Uint8Array bytesArg(const Napi::CallbackInfo& info, size_t i, const char* what, size_t exact = 0) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throwError(info.Env(), Code::E_USAGE, std::string(what) + " must be a Uint8Array");
  Napi::Uint8Array a = info[i].As<Napi::Uint8Array>();
  if (exact && a.ByteLength() != exact) throwError(info.Env(), Code::E_USAGE, std::string(what) + " must be " + std::to_string(exact) + " bytes");
  return a;
}

uint64_t numArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (!info[i].IsNumber()) throwError(info.Env(), Code::E_USAGE, std::string(what) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<uint64_t>(d))) throwError(info.Env(), Code::E_USAGE, std::string(what) + " is out of range");
  return static_cast<uint64_t>(d);
}

struct Derived {
  uint8_t key[crypt::kKeyBytes] = {};
  ~Derived() { crypt::wipe(key, sizeof key); }
};

// deriveKey(passphrase: Uint8Array, salt: Uint8Array(16), opslimit, memlimit) -> Promise<Buffer(32)>
Napi::Value DeriveKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array pass = bytesArg(info, 0, "passphrase");
  Napi::Uint8Array saltA = bytesArg(info, 1, "salt", crypt::kSaltBytes);
  const uint64_t ops = numArg(info, 2, "opslimit"), mem = numArg(info, 3, "memlimit");
  auto salt = std::make_shared<std::array<uint8_t, crypt::kSaltBytes>>();
  std::memcpy(salt->data(), saltA.Data(), crypt::kSaltBytes);
  const uint8_t* p = pass.Data();
  const size_t n = pass.ByteLength();
  return runAsync<Derived>(
      env, [p, n, salt, ops, mem](Derived& d) { return crypt::deriveKey(p, n, salt->data(), ops, mem, d.key); },
      [](Napi::Env env, Derived& d) -> Napi::Value { return Napi::Buffer<uint8_t>::Copy(env, d.key, sizeof d.key); }, {nullptr, pass});
}

// seal(key, nonce, chunk, itemLen, off, data) -> Buffer of the MACs of data's chunks
// (data: whole chunks of the item from byte `off`, encrypted in place).
Napi::Value Seal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array key = bytesArg(info, 0, "key", crypt::kKeyBytes), nonce = bytesArg(info, 1, "nonce", crypt::kNonceBytes);
  const uint64_t chunk = numArg(info, 2, "chunk"), itemLen = numArg(info, 3, "itemLen"), off = numArg(info, 4, "off");
  Napi::Uint8Array data = bytesArg(info, 5, "data");
  if (chunk < 64 || chunk % 64) throwError(env, Code::E_USAGE, "chunk must be a positive multiple of 64");
  const uint64_t first = off / chunk, chunks = (data.ByteLength() + chunk - 1) / chunk;
  std::vector<uint8_t> macs(crypt::kMacBytes * (first + chunks));
  Error e = crypt::seal(key.Data(), nonce.Data(), chunk, itemLen, off, data.Data(), data.ByteLength(), macs.data());
  if (!e.ok()) throwError(env, e);
  return Napi::Buffer<uint8_t>::Copy(env, macs.data() + crypt::kMacBytes * first, crypt::kMacBytes * chunks);
}

// open(key, nonce, chunk, macs (the item's), itemLen, off, data): decrypts data (whole chunks
// of the item from byte `off`) in place; E_DECRYPT when a MAC does not match.
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array key = bytesArg(info, 0, "key", crypt::kKeyBytes), nonce = bytesArg(info, 1, "nonce", crypt::kNonceBytes);
  crypt::ItemCrypt c;
  c.key = 0;
  c.chunk = numArg(info, 2, "chunk");
  Napi::Uint8Array macs = bytesArg(info, 3, "macs");
  const uint64_t itemLen = numArg(info, 4, "itemLen"), off = numArg(info, 5, "off");
  Napi::Uint8Array data = bytesArg(info, 6, "data");
  if (c.chunk < 64 || c.chunk % 64 || macs.ByteLength() != crypt::kMacBytes * ((itemLen + c.chunk - 1) / c.chunk))
    throwError(env, Code::E_USAGE, "open: the chunk size and MACs do not fit the item");
  std::memcpy(c.nonce, nonce.Data(), crypt::kNonceBytes);
  c.macs.assign(reinterpret_cast<const char*>(macs.Data()), macs.ByteLength());
  Error e = crypt::open(key.Data(), c, itemLen, off, data.Data(), data.ByteLength());
  if (!e.ok()) throwError(env, e);
  return env.Undefined();
}

Napi::Value RandomBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint64_t n = numArg(info, 0, "n");
  if (n > (1u << 20)) throwError(env, Code::E_USAGE, "randomBytes: at most 1 MiB");
  Napi::Buffer<uint8_t> b = Napi::Buffer<uint8_t>::New(env, n);
  crypt::randomBytes(b.Data(), n);
  return b;
}

Napi::Value Wipe(const Napi::CallbackInfo& info) {
  Napi::Uint8Array a = bytesArg(info, 0, "buffer");
  crypt::wipe(a.Data(), a.ByteLength());
  return info.Env().Undefined();
}

}  // namespace

void parseCrypt(const Napi::Object& o, const std::vector<uint64_t>& itemLens, crypt::Plan& plan) {
  Napi::Env env = o.Env();
  Napi::Value v = o.Get("crypt");
  if (v.IsUndefined() || v.IsNull()) return;
  if (!v.IsObject()) throwError(env, Code::E_USAGE, "crypt must be an object");
  Error e = crypt::init();
  if (!e.ok()) throwError(env, e);
  Napi::Object c = v.As<Napi::Object>();
  if (!c.Get("keys").IsArray() || !c.Get("items").IsArray()) throwError(env, Code::E_USAGE, "crypt needs keys and items arrays");
  Napi::Array keys = c.Get("keys").As<Napi::Array>(), items = c.Get("items").As<Napi::Array>();
  for (uint32_t k = 0; k < keys.Length(); k++) {
    Napi::Value b = keys.Get(k);
    if (!b.IsBuffer() || b.As<Napi::Buffer<uint8_t>>().Length() != crypt::kKeyBytes) throwError(env, Code::E_USAGE, "crypt.keys: each key must be a 32-byte Buffer");
    plan.keys.add(b.As<Napi::Buffer<uint8_t>>().Data());
  }
  if (items.Length() != itemLens.size()) throwError(env, Code::E_USAGE, "crypt.items must have one entry per item");
  plan.items.resize(items.Length());
  for (uint32_t i = 0; i < items.Length(); i++) {
    Napi::Value x = items.Get(i);
    if (x.IsNull() || x.IsUndefined()) continue;
    if (!x.IsObject()) throwError(env, Code::E_USAGE, "crypt.items: an entry must be null or an object");
    Napi::Object it = x.As<Napi::Object>();
    crypt::ItemCrypt& ic = plan.items[i];
    ic.key = static_cast<int32_t>(u64(it, "key", 0));
    ic.chunk = u64(it, "chunk", 0);
    Napi::Value nonce = it.Get("nonce"), macs = it.Get("macs");
    if (!nonce.IsBuffer() || nonce.As<Napi::Buffer<uint8_t>>().Length() != crypt::kNonceBytes) throwError(env, Code::E_USAGE, "crypt.items: nonce must be a 24-byte Buffer");
    if (!macs.IsBuffer()) throwError(env, Code::E_USAGE, "crypt.items: macs must be a Buffer");
    std::memcpy(ic.nonce, nonce.As<Napi::Buffer<uint8_t>>().Data(), crypt::kNonceBytes);
    ic.macs.assign(reinterpret_cast<const char*>(macs.As<Napi::Buffer<uint8_t>>().Data()), macs.As<Napi::Buffer<uint8_t>>().Length());
  }
  e = plan.check(itemLens);
  if (!e.ok()) throwError(env, e);
}

void registerCrypt(Napi::Env env, Napi::Object exports) {
  exports.Set("deriveKey", Napi::Function::New(env, DeriveKey));
  exports.Set("seal", Napi::Function::New(env, Seal));
  exports.Set("open", Napi::Function::New(env, Open));
  exports.Set("randomBytes", Napi::Function::New(env, RandomBytes));
  exports.Set("wipe", Napi::Function::New(env, Wipe));
  exports.Set("sodiumVersion", Napi::String::New(env, crypt::version()));
}

}  // namespace tz::addon
