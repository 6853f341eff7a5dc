#include "addon_errors.h"

#include "addon.h"

namespace tz::addon {

namespace {

Napi::FunctionReference* errorClass = nullptr;

// init(TensorizeError): the class every error is built with.
Napi::Value Init(const Napi::CallbackInfo& info) {
  if (!errorClass) errorClass = new Napi::FunctionReference();
  *errorClass = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

}  // namespace

Napi::Value makeError(Napi::Env env, Code code, const std::string& message) {
  const char* name = codeName(code);
  if (errorClass && !errorClass->IsEmpty()) return errorClass->New({Napi::String::New(env, name), Napi::String::New(env, message)});
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, name));
  return e.Value();
}

Napi::Value makeError(Napi::Env env, const Error& err) {
  Napi::Object e = makeError(env, err.code, err.message).As<Napi::Object>();
  if (err.tensor >= 0) e.Set(err.group ? "group" : "item", static_cast<double>(err.tensor));
  if (!err.hashes.empty()) {
    Napi::Array hashes = Napi::Array::New(env, err.hashes.size());
    for (size_t i = 0; i < err.hashes.size(); i++) hashes.Set(static_cast<uint32_t>(i), Napi::String::New(env, err.hashes[i]));
    e.Set("hashes", hashes);
  }
  if (!err.hint.empty()) {
    Napi::Array hints = Napi::Array::New(env, 1);
    hints.Set(0u, Napi::String::New(env, err.hint));
    e.Set("hints", hints);
  }
  return e;
}

void throwError(Napi::Env env, Code code, const std::string& message) { throw Napi::Error(env, makeError(env, code, message).As<Napi::Object>()); }

void throwError(Napi::Env env, const Error& err) { throw Napi::Error(env, makeError(env, err).As<Napi::Object>()); }

void registerErrors(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init));
  // errorCodes: every code's name, in errors.h's order.
  Napi::Array codes = Napi::Array::New(env, kCodeCount);
  for (unsigned i = 0; i < kCodeCount; i++) codes.Set(i, Napi::String::New(env, codeName(static_cast<Code>(i + 1))));
  exports.Set("errorCodes", codes);
}

}  // namespace tz::addon
