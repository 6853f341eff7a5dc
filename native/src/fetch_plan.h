// The native fetcher's plan (fetch.cc): which ranges of which objects it requests, what
// each request carries, and in which order the connections take the requests.
//
// Each object's items are cut into requests of at most `chunk` bytes in file order (items
// separated by gaps up to maxGap share requests); a request never spans two objects. Within
// an encrypted item (spec.crypt) a request ends only at a multiple of the item's crypt
// chunk size from the item's start, or at its end, so that each piece holds whole chunks
// (decrypted in place once it is in): a request that would end inside a chunk ends at the
// chunk's start instead, or, when that would leave it no chunk of the item (a crypt chunk
// larger than `chunk`), at the chunk's end, longer than `chunk` (maxRequest says how long).
//
// The order: objects reached through the same connection settings (host, port, TLS and CA,
// proxy: one endpoint) share one queue, in which their requests are interleaved by
// position weighted by size: request j of an object comes at the fraction of that object's
// bytes it reaches (its middle byte / the object's request bytes), so every object of the
// queue advances at the same relative pace: all are read from the start, a big one is not
// left to finish alone at the end, and two objects of equal size alternate request by
// request. Within one object the requests stay in file order (the hashing of an item's
// pieces in order relies on it). Each connection takes its requests from one queue while
// it has any, so its keep-alive connection is reused; the connections are spread over the
// queues (endpoints) by their bytes (fetch.cc).
#pragma once
#include <cstdint>
#include <vector>

#include "errors.h"
#include "fetch.h"

namespace tz::fetchplan {

// A contiguous part of one item that one request carries.
struct Piece {
  uint32_t item, idx;  // idx: position among the item's pieces (file order)
  uint64_t itemOff, reqOff, len;
};

struct Request {
  uint32_t obj;  // the object (index into the run's objects)
  uint64_t from, len;
  uint32_t p0, p1;  // its pieces, [p0, p1), by reqOff
};

// The requests of one endpoint's objects, in the order they are sent.
struct Queue {
  uint32_t endpoint = 0;
  std::vector<uint32_t> reqs;  // indexes into Plan::reqs
  uint64_t bytes = 0;
};

struct Plan {
  std::vector<Request> reqs;  // grouped by object, each object's in file order
  std::vector<Piece> pieces;  // by request; so each item's pieces are in file order
  std::vector<uint32_t> perItem;  // pieces per item
  std::vector<Queue> queues;      // one per endpoint with requests
  uint64_t maxRequest = 0;
};

// The objects a spec reads: spec.objects, or the spec's own endpoint/head/name/size/etag.
std::vector<FetchObject> objectsOf(const FetchSpec& s);

// Whether connections to a and b are interchangeable (host, port, TLS and its CAs, proxy).
bool sameEndpoint(const Endpoint& a, const Endpoint& b);

// Each object's endpoint index (objects with the same connection settings share one, the
// first such object's); returns the number of endpoints.
uint32_t groupEndpoints(const std::vector<FetchObject>& objs, std::vector<uint32_t>& endpointOf);

// The plan of s.items (each in objs[item.file]); false with err (E_USAGE) when an item
// names no object, lies outside its object or overlaps another in the same object.
bool makePlan(const FetchSpec& s, const std::vector<FetchObject>& objs, const std::vector<uint32_t>& endpointOf, Plan& p, Error& err);

}  // namespace tz::fetchplan
