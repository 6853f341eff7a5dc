// What JS holds between calls: an External around a shared_ptr to a Ticket (work in flight
// or done), of which a load's Handle also owns the loaded memory. Plus the readers of the
// spec objects start(), copy(), fetch() and alloc() receive.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "addon_errors.h"
#include "loader.h"

namespace tz::addon {

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
  std::shared_ptr<Loaded> loaded;
  Spec spec;
  bool running = false;
};

using TicketRef = std::shared_ptr<Ticket>;

Ticket& ticketOf(const Napi::Value& v);
Handle& handleOf(const Napi::Value& v);
// The handle: an External that keeps the ticket alive until it is collected.
Napi::External<TicketRef> ticketExternal(Napi::Env env, const TicketRef& t);
// {handle, done}
Napi::Object ticketResult(Napi::Env env, const TicketRef& t, Napi::Promise done);

// o[key]: a whole number of at most 2^53 - 1, `dflt` when undefined.
inline uint64_t u64(const Napi::Object& o, const char* key, uint64_t dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return dflt;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0) throwError(o.Env(), Code::E_USAGE, std::string("native load: ") + key + " is out of range");
  return static_cast<uint64_t>(d);
}

// o.items: a Float64Array of (src, len, dst) triples.
inline std::vector<Item> parseItems(const Napi::Object& o) {
  Napi::Env env = o.Env();
  Napi::Float64Array items = o.Get("items").As<Napi::Float64Array>();
  if (items.ElementLength() % 3) throwError(env, Code::E_USAGE, "items must hold (src, len, dst) triples");
  std::vector<Item> out;
  out.reserve(items.ElementLength() / 3);
  for (size_t i = 0; i < items.ElementLength(); i += 3) {
    double a = items[i], b = items[i + 1], c = items[i + 2];
    if (!(a >= 0 && b >= 0 && c >= 0) || a > 9007199254740991.0 || b > 9007199254740991.0 || c > 9007199254740991.0) throwError(env, Code::E_USAGE, "item out of range");
    out.push_back({static_cast<uint64_t>(a), static_cast<uint64_t>(b), static_cast<uint64_t>(c)});
  }
  return out;
}

}  // namespace tz::addon
