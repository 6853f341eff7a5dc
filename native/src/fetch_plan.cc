#include "fetch_plan.h"

#include <algorithm>
#include <string>

namespace tz::fetchplan {

std::vector<FetchObject> objectsOf(const FetchSpec& s) {
  if (!s.objects.empty()) return s.objects;
  return {FetchObject{s.endpoint, s.head, s.name, s.objectSize, s.etag}};
}

bool sameEndpoint(const Endpoint& a, const Endpoint& b) {
  return a.host == b.host && a.port == b.port && a.tls == b.tls && (!a.tls || a.caPem == b.caPem) && a.proxyHost == b.proxyHost && a.proxyPort == b.proxyPort &&
         a.proxyConnect == b.proxyConnect;
}

uint32_t groupEndpoints(const std::vector<FetchObject>& objs, std::vector<uint32_t>& endpointOf) {
  std::vector<uint32_t> firsts;  // the first object of each endpoint
  endpointOf.assign(objs.size(), 0);
  for (uint32_t o = 0; o < objs.size(); o++) {
    uint32_t e = 0;
    while (e < firsts.size() && !sameEndpoint(objs[firsts[e]].endpoint, objs[o].endpoint)) e++;
    if (e == firsts.size()) firsts.push_back(o);
    endpointOf[o] = e;
  }
  return static_cast<uint32_t>(firsts.size());
}

bool makePlan(const FetchSpec& s, const std::vector<FetchObject>& objs, const std::vector<uint32_t>& endpointOf, Plan& p, Error& err) {
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < s.items.size(); i++) {
    if (s.items[i].file >= objs.size()) {
      err = {Code::E_USAGE, "fetch: a tensor names an object that is not in the list", static_cast<int64_t>(i)};
      return false;
    }
    if (s.items[i].len > 0) order.push_back(i);
  }
  auto file = [&](uint32_t i) { return s.items[i].file; };
  auto end = [&](uint32_t i) { return s.items[i].src + s.items[i].len; };
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return file(a) != file(b) ? file(a) < file(b) : s.items[a].src < s.items[b].src; });
  p.perItem.assign(s.items.size(), 0);
  for (size_t k = 0; k < order.size(); k++) {
    const Item& it = s.items[order[k]];
    const FetchObject& o = objs[it.file];
    if (it.src > o.objectSize || it.len > o.objectSize - it.src) {
      err = {Code::E_USAGE, "fetch: a tensor's bytes lie outside the object " + o.name, static_cast<int64_t>(order[k])};
      return false;
    }
    if (k > 0 && file(order[k - 1]) == it.file && end(order[k - 1]) > it.src) {
      err = {Code::E_USAGE, "fetch: tensors overlap in the object " + o.name, static_cast<int64_t>(order[k])};
      return false;
    }
  }
  if (!s.crypt.items.empty() && s.crypt.items.size() != s.items.size()) {
    err = {Code::E_USAGE, "fetch: the encryption plan must have one entry per item", -1};
    return false;
  }
  const uint64_t chunk = std::max<uint64_t>(s.chunk, 4096);
  // Spans of an object to read: tensors with small gaps between them are read together.
  struct Span {
    uint32_t obj;
    uint64_t a, b;  // [a, b)
  };
  std::vector<Span> spans;
  for (uint32_t i : order) {
    const Item& it = s.items[i];
    if (!spans.empty() && spans.back().obj == it.file && it.src - spans.back().b <= s.maxGap) spans.back().b = end(i);
    else spans.push_back({it.file, it.src, end(i)});
  }
  size_t k = 0;  // first item (in order) that may overlap the current request
  size_t c = 0;  // first item (in order) that may hold the current request's end
  for (const Span& sp : spans) {
    for (uint64_t from = sp.a, to; from < sp.b; from = to) {
      to = std::min(from + chunk, sp.b);
      // An end inside an encrypted item moves to one of its chunk boundaries: back to the
      // last one after `from`, or, when the request would then hold none of its chunks (a
      // chunk larger than the request size), on to the end of the one chunk from `from`.
      while (c < order.size() && (file(order[c]) < sp.obj || (file(order[c]) == sp.obj && end(order[c]) <= to))) c++;
      const crypt::ItemCrypt* ic = c < order.size() && file(order[c]) == sp.obj && s.items[order[c]].src < to ? s.crypt.of(order[c]) : nullptr;
      if (ic) {
        const uint64_t src = s.items[order[c]].src, down = to - (to - src) % ic->chunk;
        to = down > from ? down : std::min(from + ic->chunk, end(order[c]));
      }
      Request r{sp.obj, from, to - from, static_cast<uint32_t>(p.pieces.size()), 0};
      const uint64_t rend = r.from + r.len;
      while (k < order.size() && (file(order[k]) < sp.obj || end(order[k]) <= r.from)) k++;
      for (size_t j = k; j < order.size() && file(order[j]) == sp.obj && s.items[order[j]].src < rend; j++) {
        const uint32_t i = order[j];
        const Item& it = s.items[i];
        uint64_t x = std::max(r.from, it.src), y = std::min(rend, end(i));
        if (y <= x) continue;
        p.pieces.push_back({i, p.perItem[i]++, x - it.src, x - r.from, y - x});
      }
      r.p1 = static_cast<uint32_t>(p.pieces.size());
      p.maxRequest = std::max(p.maxRequest, r.len);
      p.reqs.push_back(r);
    }
  }
  // The queues: per endpoint, its objects' requests interleaved by relative position.
  std::vector<uint64_t> objBytes(objs.size(), 0), before(objs.size(), 0);
  for (const Request& r : p.reqs) objBytes[r.obj] += r.len;
  struct Key {
    double at;
    uint32_t obj, req;
  };
  std::vector<std::vector<Key>> keys;
  for (uint32_t i = 0; i < p.reqs.size(); i++) {
    const Request& r = p.reqs[i];
    const double at = (static_cast<double>(before[r.obj]) + static_cast<double>(r.len) / 2) / static_cast<double>(objBytes[r.obj]);
    before[r.obj] += r.len;
    const uint32_t e = endpointOf[r.obj];
    if (keys.size() <= e) keys.resize(e + 1);
    keys[e].push_back({at, r.obj, i});
  }
  for (uint32_t e = 0; e < keys.size(); e++) {
    if (keys[e].empty()) continue;
    // Within an object `at` grows with file order, so the sort keeps each object's order.
    std::sort(keys[e].begin(), keys[e].end(), [](const Key& a, const Key& b) { return a.at != b.at ? a.at < b.at : a.obj != b.obj ? a.obj < b.obj : a.req < b.req; });
    Queue q;
    q.endpoint = e;
    for (const Key& x : keys[e]) {
      q.reqs.push_back(x.req);
      q.bytes += p.reqs[x.req].len;
    }
    p.queues.push_back(std::move(q));
  }
  return true;
}

}  // namespace tz::fetchplan
