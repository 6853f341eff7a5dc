// The handles: progress and cancel for any ticket; read, view, free for a load's or a fetch's
// memory; alloc, write, writeAsync for a destination JS fills (remote sources).
#include "addon_handle.h"

#include "addon.h"
#include "addon_worker.h"

namespace tz::addon {

Ticket& ticketOf(const Napi::Value& v) {
  if (!v.IsExternal()) throwError(v.Env(), Code::E_USAGE, "not a native handle");
  return **v.As<Napi::External<TicketRef>>().Data();
}

Handle& handleOf(const Napi::Value& v) {
  auto* h = dynamic_cast<Handle*>(&ticketOf(v));
  if (!h) throwError(v.Env(), Code::E_USAGE, "not a load handle");
  return *h;
}

Napi::External<TicketRef> ticketExternal(Napi::Env env, const TicketRef& t) {
  return Napi::External<TicketRef>::New(env, new TicketRef(t), [](Napi::Env, TicketRef* p) { delete p; });
}

Napi::Object ticketResult(Napi::Env env, const TicketRef& t, Napi::Promise done) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("handle", ticketExternal(env, t));
  result.Set("done", done);
  return result;
}

namespace {

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
  if (h.running) throwError(env, Code::E_USAGE, "the load is still running");
  if (!h.loaded) throwError(env, Code::E_USAGE, "nothing was loaded, or it was closed");
  uint64_t off = static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue());
  uint64_t len = static_cast<uint64_t>(info[2].As<Napi::Number>().DoubleValue());
  if (len > (1ull << 32)) throwError(env, Code::E_USAGE, "read at most 4 GiB at a time");
  Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, len);
  tz::Error e = h.loaded->read(off, len, out.Data());
  if (!e.ok()) throwError(env, e);
  return out;
}

// view(handle, offset, length) -> Buffer over the loaded bytes themselves (host loads only),
// keeping the allocation alive until it is garbage-collected, whatever free() does.
Napi::Value View(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle& h = handleOf(info[0]);
  if (h.running) throwError(env, Code::E_USAGE, "the load is still running");
  if (!h.loaded) throwError(env, Code::E_USAGE, "nothing was loaded, or it was closed");
  if (h.loaded->device >= 0) throwError(env, Code::E_USAGE, "view() needs host memory (--device cpu); read() copies from a GPU");
  const double offD = info[1].As<Napi::Number>().DoubleValue(), lenD = info[2].As<Napi::Number>().DoubleValue();
  const uint64_t size = h.loaded->size;
  if (!(offD >= 0 && lenD >= 0) || offD > static_cast<double>(size) || lenD > static_cast<double>(size) - offD) throwError(env, Code::E_USAGE, "view past the end of the loaded data");
  const uint64_t off = static_cast<uint64_t>(offD), len = static_cast<uint64_t>(lenD);
  if (!len || !h.loaded->base) return Napi::Buffer<uint8_t>::New(env, 0);
  // The reference is handed to the Buffer only once it exists (a failed creation must not keep the memory).
  auto keep = std::make_unique<std::shared_ptr<tz::Loaded>>(h.loaded);
  Napi::Buffer<uint8_t> b = Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(h.loaded->base) + off, len, [](Napi::Env, uint8_t*, std::shared_ptr<tz::Loaded>* k) { delete k; }, keep.get());
  keep.release();
  return b;
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  Handle& h = handleOf(info[0]);
  if (h.running) throwError(info.Env(), Code::E_USAGE, "the load is still running");
  // Device memory is given back here (host memory when the last view() Buffer goes too); a
  // driver that refuses says so (E_DEVICE_FREE), and the handle is closed all the same.
  tz::Error e = h.loaded && h.loaded->device >= 0 ? h.loaded->free() : tz::Error{};
  h.loaded.reset();
  if (!e.ok()) throwError(info.Env(), e);
  return info.Env().Undefined();
}

// alloc({device, total}) -> handle: a destination that JS fills with write() (remote sources).
Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  auto h = std::make_shared<Handle>();
  tz::Error err;
  const bool huge = !o.Get("hugePages").IsBoolean() || o.Get("hugePages").As<Napi::Boolean>().Value();
  tz::Loaded* l = tz::allocate(o.Get("device").As<Napi::Number>().Int32Value(), u64(o, "total", 0), err, huge);
  if (!l) throwError(env, err);
  h->loaded.reset(l);
  return ticketExternal(env, h);
}

// write(handle, offset, buffer): copy bytes into the destination (host memcpy or H2D copy).
Napi::Value Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle& h = handleOf(info[0]);
  if (h.running) throwError(env, Code::E_USAGE, "the load is still running");
  if (!h.loaded) throwError(env, Code::E_USAGE, "nothing was allocated, or it was closed");
  double off = info[1].As<Napi::Number>().DoubleValue();
  if (!(off >= 0) || off > 9007199254740991.0) throwError(env, Code::E_USAGE, "write: offset out of range");
  Napi::Uint8Array b = info[2].As<Napi::Uint8Array>();
  tz::Error e = h.loaded->write(static_cast<uint64_t>(off), b.Data(), b.ByteLength());
  if (!e.ok()) throwError(env, e);
  return env.Undefined();
}

// writeAsync(handle, offset, buffer) -> Promise: write() on a libuv thread, so the main
// thread keeps receiving while the bytes are copied (the buffer must stay untouched until
// the promise settles; a reference keeps it alive).
Napi::Value WriteAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle& h = handleOf(info[0]);
  if (!h.loaded) throwError(env, Code::E_USAGE, "nothing was allocated, or it was closed");
  double off = info[1].As<Napi::Number>().DoubleValue();
  if (!(off >= 0) || off > 9007199254740991.0) throwError(env, Code::E_USAGE, "write: offset out of range");
  Napi::Uint8Array b = info[2].As<Napi::Uint8Array>();
  // The work holds its own reference to the destination, taken here on the main thread: a
  // free() while it copies only drops the handle's (after a failed write, the others of the
  // same chunk may still be running when the load gives up and frees).
  std::shared_ptr<tz::Loaded> dest = h.loaded;
  const uint64_t at = static_cast<uint64_t>(off);
  const uint8_t* data = b.Data();
  const size_t len = b.ByteLength();
  return runAsync<NoResult>(
      env,
      [dest, at, data, len](NoResult&) { return dest->write(at, data, len); },
      nullptr, {nullptr, b});
}

}  // namespace

void registerHandle(Napi::Env env, Napi::Object exports) {
  exports.Set("alloc", Napi::Function::New(env, Alloc));
  exports.Set("write", Napi::Function::New(env, Write));
  exports.Set("writeAsync", Napi::Function::New(env, WriteAsync));
  exports.Set("progress", Napi::Function::New(env, Progress));
  exports.Set("cancel", Napi::Function::New(env, Cancel));
  exports.Set("read", Napi::Function::New(env, Read));
  exports.Set("view", Napi::Function::New(env, View));
  exports.Set("free", Napi::Function::New(env, Free));
}

}  // namespace tz::addon
