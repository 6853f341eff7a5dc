// What JS holds between calls: an External around a shared_ptr to a Ticket (work in flight
// or done), of which a load's Handle also owns the loaded memory. Plus the readers of the
// spec objects start(), copy(), fetch() and alloc() receive.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "addon_errors.h"
#include "crypt.h"
#include "hash_groups.h"
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

// o.items: a Float64Array of (src, len, dst) triples; o.itemFiles (optional): a Uint32Array
// of each item's file (or object) index, each below `files`.
inline std::vector<Item> parseItems(const Napi::Object& o, size_t files = 1) {
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
  Napi::Value f = o.Get("itemFiles");
  if (!f.IsUndefined()) {
    Napi::Uint32Array which = f.As<Napi::Uint32Array>();
    if (which.ElementLength() != out.size()) throwError(env, Code::E_USAGE, "itemFiles must have one entry per item");
    for (size_t i = 0; i < out.size(); i++) {
      if (which[i] >= files) throwError(env, Code::E_USAGE, "an item names a file that is not in the list");
      out[i].file = which[i];
    }
  }
  return out;
}

// o.groups (optional): [{sha256: Buffer(32), prefix?: Buffer, items: Uint32Array}], the hash
// groups (loader.h HashGroup) over `items`, checked (hash_groups.h checkGroups: in range,
// each item in at most one group, in `order`); E_USAGE otherwise.
inline std::vector<HashGroup> parseGroups(const Napi::Object& o, const std::vector<Item>& items, GroupOrder order) {
  Napi::Env env = o.Env();
  std::vector<HashGroup> out;
  Napi::Value v = o.Get("groups");
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) throwError(env, Code::E_USAGE, "groups must be an array");
  Napi::Array gs = v.As<Napi::Array>();
  for (uint32_t g = 0; g < gs.Length(); g++) {
    const std::string name = "hash group #" + std::to_string(g);
    if (!gs.Get(g).IsObject()) throwError(env, Code::E_USAGE, name + " must be an object");
    Napi::Object x = gs.Get(g).As<Napi::Object>();
    HashGroup h;
    Napi::Value sha = x.Get("sha256");
    if (!sha.IsBuffer() || sha.As<Napi::Buffer<uint8_t>>().Length() != 32) throwError(env, Code::E_USAGE, name + ": sha256 must be a 32-byte Buffer");
    std::memcpy(h.sha256, sha.As<Napi::Buffer<uint8_t>>().Data(), 32);
    Napi::Value pre = x.Get("prefix");
    if (pre.IsBuffer()) {
      Napi::Buffer<uint8_t> p = pre.As<Napi::Buffer<uint8_t>>();
      h.prefix.assign(reinterpret_cast<const char*>(p.Data()), p.Length());
    } else if (!pre.IsUndefined()) {
      throwError(env, Code::E_USAGE, name + ": prefix must be a Buffer");
    }
    Napi::Value its = x.Get("items");
    if (!its.IsTypedArray() || its.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) throwError(env, Code::E_USAGE, name + ": items must be a Uint32Array");
    Napi::Uint32Array a = its.As<Napi::Uint32Array>();
    h.items.assign(a.Data(), a.Data() + a.ElementLength());
    out.push_back(std::move(h));
  }
  Error err;
  if (!checkGroups(out, items, order, err)) throwError(env, err);
  return out;
}

// o.crypt (optional): {keys: Buffer[] (32 bytes each), items: (null | {key, chunk, nonce:
// Buffer(24), macs: Buffer})[]}, one entry per item: how each item is encrypted (crypt.h),
// into `plan`, checked against the items' lengths (Plan::check); E_USAGE otherwise. The
// caller should wipe the key Buffers once the call returns (the plan holds its own copy).
void parseCrypt(const Napi::Object& o, const std::vector<uint64_t>& itemLens, crypt::Plan& plan);

}  // namespace tz::addon
