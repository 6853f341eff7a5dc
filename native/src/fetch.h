// The native fetcher: a .tensors file's tensor data pulled from an HTTP(S) server (or S3
// through a presigned URL) by parallel ranged GETs, each connection on its own thread.
//
// The data region is cut into requests of at most `chunk` bytes, in file order; tensors
// separated by small gaps (their headers) share requests. Each connection takes the next
// request and receives its body:
//   - into host memory: straight into the destination with recv (the gaps into scratch);
//   - into a GPU: into one of the connection's two pinned slots, then cudaMemcpyAsync to
//     the tensors' places while the other slot receives (host RAM: 2 x connections x chunk);
//   - into a file (export): into plain slots, then pwrite at the items' dst offsets;
//   - hash only (verify): into plain slots, nothing copied.
// With hashing, each tensor's CRC32 and SHA-256 (over its header prefix, then its data in
// order) advance as its pieces arrive: hasher threads (half the cores) take the tensors
// whose next piece is in place, two at a time, with the interleaved two-stream SHA-256; a
// slot is reused only once its pieces are hashed. A failed request (reset, timeout, short
// body, 5xx, 429, 503 SlowDown, slower than the low-speed limit) is retried with backoff
// and resumed from the last byte received; an answer that does not fit the object
// (Content-Range total, ETag, 412, 416) is E_FILE_CHANGED, naming the object.
//
// Several objects (the shards of a checkpoint, on one host or several) can be read in one
// run into one destination: spec.objects lists them and each item's `file` names its
// object. Without objects the spec's own endpoint/head/name/objectSize/etag are the one
// object (object 0). Requests never span objects; the objects are read at once, their
// requests interleaved (fetch_plan.h). A connection keeps its keep-alive connection while
// its requests go to the same endpoint (host, port, TLS and CA, proxy); objects of
// different CAs are fine (one TLS context per distinct CA bundle).
//
// Encrypted items (spec.crypt, crypt.h): the requests cut an encrypted item only at its
// crypt chunks' boundaries (fetch_plan.h), and once a request is in whole (after any
// retries and resumes, so once) each of its encrypted pieces is decrypted in place, by the
// connection's thread, where it was received: in the host destination, or in the slot
// before it is copied to the GPU, written to the output file or hashed. Its bytes count as
// progress only then. A MAC that does not match fails the run with E_DECRYPT naming the item.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "crypt.h"
#include "io.h"
#include "loader.h"
#include "net.h"

namespace tz {

// One object to read from: where it is, how to ask for it, and what it must be.
struct FetchObject {
  Endpoint endpoint;
  std::string head;          // as FetchSpec::head
  std::string name;          // the URL, for messages
  uint64_t objectSize = 0;   // every Content-Range total must equal it
  std::string etag;          // when set, every answer's ETag must equal it
};

struct FetchSpec {
  // The objects to read, items[i].file indexing them; when empty, the fields below
  // (endpoint, head, name, objectSize, etag) are the only object, and every file is 0.
  std::vector<FetchObject> objects;
  Endpoint endpoint;
  // The request line and headers, each ending in CRLF, without Range and the blank line;
  // e.g. "GET /m.tensors HTTP/1.1\r\nHost: h\r\nIf-Match: \"e\"\r\n".
  std::string head;
  std::string name;     // the URL, for messages
  uint64_t objectSize = 0;  // every Content-Range total must equal it
  std::string etag;     // when set, every answer's ETag must equal it
  std::vector<Item> items;
  // One per item when hashing: which hashes to compute and the bytes hashed first.
  std::vector<Expect> hashes;
  // Or hash groups (loader.h HashGroup), checked here: E_HASH_MISMATCH naming the group.
  // Each group's items in one object, in file order. Not with `hashes`.
  std::vector<HashGroup> groups;
  // How each item is encrypted (none when crypt.items is empty; else one entry per item).
  // The keys are wiped when the spec goes. A spec is therefore neither copied nor moved.
  crypt::Plan crypt;
  // Without a destination: write each item's bytes into this (existing) file at its dst.
  std::string output;
  uint64_t chunk = 8 << 20;
  uint64_t maxGap = 1 << 20;  // gaps up to this many bytes are read rather than split
  int connections = 8;
  int retries = 5;
  double baseDelayMs = 200;
  double timeoutMs = 30000;  // no progress for this long: the attempt fails (and is retried)
  // The low-speed limit (as curl's --speed-limit/--speed-time): an attempt that receives
  // fewer than speedLimit bytes/s on average over a window of speedTimeMs (from its request
  // on, the wait for the answer included) fails and is retried like a timeout. 0: off.
  uint64_t speedLimit = 1024;
  double speedTimeMs = 30000;
  std::atomic<uint64_t>* progress = nullptr;
  std::atomic<bool>* cancel = nullptr;
};

struct FetchResult {
  std::vector<uint32_t> crc32;   // per item, when hashing
  std::vector<uint8_t> sha256;   // 32 bytes per item, when hashing
  double firstTensorMs = -1, transferMs = 0;
  uint64_t bytes = 0;      // tensor bytes delivered
  uint64_t wireBytes = 0;  // body bytes received, gaps and retried bytes included
  uint64_t requests = 0, retries = 0, connections = 0, pinnedBytes = 0;
  std::vector<std::string> retryLog;  // the first few retries, for --verbose
};

// Fetch every item into `dest` (host or device memory), or with dest == nullptr into
// spec.output, or only hash. On failure returns false with err set; `dest` is left to the
// caller to free.
bool fetch(const FetchSpec& spec, Loaded* dest, FetchResult& out, Error& err);

}  // namespace tz
