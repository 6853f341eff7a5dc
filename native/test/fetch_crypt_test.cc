// Native tests of decryption in the fetcher (fetch.h, fetch_plan.h): objects whose items are
// encrypted (XSalsa20-Poly1305 per chunk, crypt.h) with random chunk sizes (multiples of
// 64: some dividing the request size, some not, some larger than it), mixed with plain and
// empty items over several objects on two servers (http_server.h), fetched into host
// memory, a file, GPU 0 when there is one (the simulator: TENSORIZE_SIM_GPU) and hash only,
// with bodies cut mid-piece (resumed), 503s and closed connections; every byte is compared
// with the plaintext and every hash is the plaintext's. The plan cuts encrypted items only
// at their chunks' boundaries and plain ones as before. A flipped ciphertext bit, a flipped
// MAC and a wrong key are E_DECRYPT naming the item, with nothing left held.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../src/crypt.h"
#include "../src/device.h"
#include "../src/fetch.h"
#include "../src/fetch_plan.h"
#include "../src/hash.h"
#include "check.h"
#include "http_server.h"

namespace {

using testhttp::Server;
using tz::crypt::ItemCrypt;

constexpr int kKeys = 3;

// The objects as they should arrive (plain) and as they are served (items encrypted).
struct Objects {
  std::vector<std::vector<uint8_t>> plain, served;
  uint8_t keys[kKeys][32];
};

// The spec's objects: /a and /b on server a, /c on server b.
void addObjects(tz::FetchSpec& s, const Objects& w, const Server& a, const Server& b) {
  for (uint32_t o = 0; o < w.served.size(); o++) {
    tz::FetchObject x;
    const std::string path = std::string("/") + static_cast<char>('a' + o);
    x.endpoint.host = "127.0.0.1";
    x.endpoint.port = o == 2 ? b.port : a.port;
    x.head = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    x.name = "http://127.0.0.1" + path;
    x.objectSize = w.served[o].size();
    x.etag = "\"t\"";
    s.objects.push_back(x);
  }
  for (int k = 0; k < kKeys; k++) s.crypt.keys.add(w.keys[k]);
  s.baseDelayMs = 1;
  s.timeoutMs = 5000;
}

// Item i's bytes encrypted in w.served under a random key, nonce and chunk size `chunk`.
ItemCrypt seal(std::mt19937_64& rng, Objects& w, const tz::Item& it, uint64_t chunk) {
  ItemCrypt c;
  c.key = static_cast<int32_t>(rng() % kKeys);
  c.chunk = chunk;
  tz::crypt::randomBytes(c.nonce, sizeof c.nonce);
  c.macs.assign(tz::crypt::kMacBytes * ((it.len + chunk - 1) / chunk), '\0');
  tz::Error e = tz::crypt::seal(w.keys[c.key], c.nonce, chunk, it.len, 0, w.served[it.file].data() + it.src, it.len, reinterpret_cast<uint8_t*>(&c.macs[0]));
  if (!e.ok()) std::abort();
  return c;
}

// Random items tiling parts of every object (gaps between some, some empty), interleaved in
// the item list; with `mixed`, about half of the non-empty ones encrypted with a chunk size
// of 64 to 16 KiB (so below, around and above the request size), else none of them; the
// empty ones sometimes "encrypted" too. Returns the destination size.
uint64_t randomItems(std::mt19937_64& rng, Objects& w, tz::FetchSpec& s, bool mixed = true) {
  w.served = w.plain;
  std::vector<tz::Item> items;
  for (uint32_t o = 0; o < w.plain.size(); o++)
    for (uint64_t pos = rng() % 100; pos < w.plain[o].size();) {
      const uint64_t len = rng() % 6 == 0 ? 0 : rng() % 3 == 0 ? 1 + rng() % 2000 : 1 + rng() % 60000;
      if (pos + len > w.plain[o].size()) break;
      tz::Item it{pos, len, 0};
      it.file = o;
      items.push_back(it);
      pos += len + (rng() % 3 == 0 ? rng() % 3000 : 0);
    }
  std::shuffle(items.begin(), items.end(), rng);
  uint64_t dst = 0;
  for (tz::Item& it : items) {
    it.dst = dst;
    dst += (it.len + 255) / 256 * 256;
    s.items.push_back(it);
    ItemCrypt c;
    if (rng() % 2 == 0 && (mixed || it.len == 0)) c = seal(rng, w, it, 64 * (1 + rng() % 256));
    s.crypt.items.push_back(c);
  }
  return dst;
}

// The plan cuts each encrypted item only at its chunks' boundaries (a request that starts
// inside one holds pieceStep(chunk) bytes of it, or one chunk when chunks are larger than
// requests), and cuts plain items as it did without any encryption.
void checkPlan(tz::FetchSpec& s, const std::string& what) {
  std::vector<tz::FetchObject> objs = tz::fetchplan::objectsOf(s);
  std::vector<uint32_t> endpointOf;
  tz::fetchplan::groupEndpoints(objs, endpointOf);
  tz::fetchplan::Plan p;
  tz::Error err;
  if (!tz::fetchplan::makePlan(s, objs, endpointOf, p, err)) {
    CHECK(false, (what + ": plan: " + err.message).c_str());
    return;
  }
  const uint64_t chunk = std::max<uint64_t>(s.chunk, 4096);
  bool whole = true, sizes = true, covered = true;
  uint64_t largest = 0;
  std::vector<uint64_t> sum(s.items.size(), 0);
  for (const tz::fetchplan::Request& r : p.reqs) {
    largest = std::max(largest, r.len);
    for (uint32_t k = r.p0; k < r.p1; k++) {
      const tz::fetchplan::Piece& pc = p.pieces[k];
      sum[pc.item] += pc.len;
      const ItemCrypt* c = s.crypt.of(pc.item);
      if (!c) continue;
      const uint64_t n = s.items[pc.item].len;
      whole = whole && pc.itemOff % c->chunk == 0 && (pc.len % c->chunk == 0 || pc.itemOff + pc.len == n);
      // A request that starts inside the item (not at its start, which may share a request).
      if (pc.reqOff == 0 && pc.itemOff > 0 && pc.itemOff + pc.len < n)
        sizes = sizes && pc.len == (c->chunk > chunk ? c->chunk : tz::crypt::pieceStep(chunk, c)) && r.len == pc.len;
    }
  }
  for (size_t i = 0; i < s.items.size(); i++) covered = covered && sum[i] == s.items[i].len;
  CHECK(whole, (what + ": every piece of an encrypted item is whole chunks").c_str());
  CHECK(sizes, (what + ": requests within an encrypted item are pieceStep(chunk), or one chunk").c_str());
  CHECK(covered && largest == p.maxRequest, (what + ": the pieces cover every item; maxRequest is the longest request").c_str());
  // Plain items are cut as before: in each object, up to the first request that holds a
  // piece of an encrypted item (in either plan: a request may also end early at the start
  // of one), the requests are those of the plan without encryption.
  std::vector<ItemCrypt> saved = s.crypt.items;
  for (ItemCrypt& c : s.crypt.items) c.key = -1;
  tz::fetchplan::Plan q;
  const bool ok = tz::fetchplan::makePlan(s, objs, endpointOf, q, err);
  s.crypt.items = saved;
  bool same = ok, plainOnly = true;
  size_t compared = 0;
  for (uint32_t o = 0; same && o < objs.size(); o++) {
    std::vector<const tz::fetchplan::Request*> x, y;
    for (const auto& r : p.reqs)
      if (r.obj == o) x.push_back(&r);
    for (const auto& r : q.reqs)
      if (r.obj == o) y.push_back(&r);
    for (size_t k = 0; same && k < x.size(); k++) {
      bool enc = false;
      for (uint32_t j = x[k]->p0; j < x[k]->p1; j++) enc = enc || s.crypt.of(p.pieces[j].item);
      for (uint32_t j = k < y.size() ? y[k]->p0 : 0; k < y.size() && j < y[k]->p1; j++) enc = enc || s.crypt.of(q.pieces[j].item);
      if (enc) {
        plainOnly = false;
        break;
      }
      same = k < y.size() && x[k]->from == y[k]->from && x[k]->len == y[k]->len && x[k]->p1 - x[k]->p0 == y[k]->p1 - y[k]->p0;
      compared++;
    }
  }
  if (plainOnly) same = same && p.reqs.size() == q.reqs.size() && p.pieces.size() == q.pieces.size();
  CHECK(same, (what + ": plain items are cut as without encryption (" + std::to_string(compared) + " requests compared)").c_str());
}

// Reads item `it` back from wherever device `device` put it (-1 host, >= 0 a GPU, -3 a file).
bool readBack(int device, tz::Loaded* dest, const std::string& path, const tz::Item& it, std::vector<uint8_t>& back) {
  back.resize(it.len);
  if (it.len == 0) return true;
  if (device >= -1) return dest->read(it.dst, it.len, back.data()).ok();
  const int fd = open(path.c_str(), O_RDONLY);
  const bool ok = pread(fd, back.data(), it.len, static_cast<off_t>(it.dst)) == static_cast<ssize_t>(it.len);
  close(fd);
  return ok;
}

// The sinks: host memory, hash only, a file, and GPU 0 when there is one.
std::vector<int> sinks() {
  std::vector<int> d = {-1, -2, -3};
  if (tz::runtimeInfo().deviceCount > 0) d.push_back(0);
  return d;
}

// One fetch of s into `device`'s sink; `ok` false with err set on failure. The file sink's
// file is made here and removed by the caller (path).
struct Run {
  bool ok = false;
  tz::Error err;
  tz::FetchResult out;
  std::unique_ptr<tz::Loaded> dest;
  std::string path;
  uint64_t progress = 0;
  ~Run() {
    if (!path.empty()) unlink(path.c_str());
  }
};

void fetchInto(tz::FetchSpec& s, int device, uint64_t total, Run& r) {
  std::atomic<uint64_t> progress{0};
  s.progress = &progress;
  s.output.clear();
  if (device >= -1) {
    r.dest.reset(tz::allocate(device, total, r.err));
    if (!r.dest) return;
  }
  if (device == -3) {
    char p[] = "/tmp/tensorize-fetch-crypt-XXXXXX";
    const int fd = mkstemp(p);
    if (fd < 0 || ftruncate(fd, static_cast<off_t>(total)) != 0) std::abort();
    close(fd);
    r.path = s.output = p;
  }
  r.ok = tz::fetch(s, r.dest.get(), r.out, r.err);
  r.progress = progress.load();
  s.progress = nullptr;
}

// Every byte of every item is the plaintext's, and so are the hashes.
void checkRun(const Objects& w, const tz::FetchSpec& s, int device, Run& r, const std::string& what) {
  CHECK(r.ok, (what + ": " + tz::codeName(r.err.code) + " " + r.err.message).c_str());
  if (!r.ok) return;
  bool same = true, hashes = true;
  uint64_t total = 0;
  std::vector<uint8_t> back;
  for (size_t i = 0; i < s.items.size(); i++) {
    const tz::Item& it = s.items[i];
    const uint8_t* want = w.plain[it.file].data() + it.src;
    total += it.len;
    if (device != -2) same = same && readBack(device, r.dest.get(), r.path, it, back) && (it.len == 0 || std::memcmp(back.data(), want, it.len) == 0);
    if (s.hashes.empty()) continue;
    const tz::Expect& e = s.hashes[i];
    tz::Sha256 sha;
    sha.update(e.prefix.data(), e.prefix.size());
    sha.update(want, it.len);
    uint8_t d[32];
    sha.final(d);
    if (e.crc) hashes = hashes && r.out.crc32[i] == tz::crc32(tz::crc32(0, e.prefix.data(), e.prefix.size()), want, it.len);
    if (e.sha) hashes = hashes && std::memcmp(&r.out.sha256[32 * i], d, 32) == 0;
  }
  if (device != -2) CHECK(same, (what + ": every byte is the plaintext").c_str());
  CHECK(hashes, (what + ": the hashes are the plaintext's").c_str());
  CHECK(r.progress == total && r.out.bytes == total, (what + ": progress and bytes (" + std::to_string(r.progress) + " of " + std::to_string(total) + ")").c_str());
}

bool sameCounts(const tz::dev::SimCounts& a, const tz::dev::SimCounts& b) {
  return a.allocations == b.allocations && a.registrations == b.registrations && a.streams == b.streams && a.events == b.events && a.deviceBytes == b.deviceBytes;
}

// Random rounds over three objects on two servers, with faults.
void randomRounds(std::mt19937_64& rng, Objects& w) {
  for (int round = 0; round < 16; round++) {
    tz::FetchSpec s;
    const uint64_t total = randomItems(rng, w, s, round % 8 != 5);
    Server a({{"/a", &w.served[0]}, {"/b", &w.served[1]}});
    Server b({{"/c", &w.served[2]}});
    addObjects(s, w, a, b);
    for (size_t i = 0; i < s.items.size(); i++) {
      tz::Expect e;
      e.crc = rng() % 3 != 0;
      e.sha = rng() % 3 != 0;
      e.prefix = std::string(rng() % 20, 'q');
      s.hashes.push_back(e);
    }
    for (int device : sinks()) {
      // Requests of 4 KiB (below most chunk sizes), or 16 to 40 KiB (most chunks divide
      // them or not; some are larger).
      s.chunk = rng() % 3 == 0 ? 4096 : 16384 + 64 * (rng() % 400);
      s.maxGap = rng() % 2 ? 0 : 4096;
      s.connections = 1 + static_cast<int>(rng() % 6);
      const std::string what = "encrypted fetch round " + std::to_string(round) + " device " + std::to_string(device) + " chunk " + std::to_string(s.chunk);
      checkPlan(s, what);
      // Faults: a body cut after up to 3000 bytes (mostly inside a chunk, so the resumed
      // attempt completes a piece the first began), 503s, connections closed after each answer.
      if (round % 4 == 1) (rng() % 2 ? a : b).cutAfter = static_cast<int>(rng() % 3000);
      if (round % 4 == 2) a.unavailable = 2;
      a.closeEach = b.closeEach = round % 4 == 3;
      const tz::dev::SimCounts before = tz::dev::simCounts();
      {
        Run r;
        fetchInto(s, device, total, r);
        checkRun(w, s, device, r, what);
        if (round % 4 == 2 && r.ok) CHECK(r.out.retries == 2, (what + ": two 503s retried").c_str());
      }
      a.cutAfter = b.cutAfter = -1;
      a.unavailable = 0;
      CHECK(sameCounts(before, tz::dev::simCounts()), (what + ": the device holds what it held before").c_str());
    }
  }
}

// Cuts mid-piece, placed: one object holding one large encrypted item (and a plain one
// after it), requests of 64 KiB; crypt chunks of 12 KiB (five to a request) and of 200000 +
// 64 bytes (larger than a request: one chunk per request). Each body is cut once, inside a
// chunk; the retry resumes it, the piece is decrypted once when it is whole.
void resumeTests(std::mt19937_64& rng) {
  Objects w;
  for (auto& k : w.keys) tz::crypt::randomBytes(k, 32);
  w.plain.assign(1, std::vector<uint8_t>(700000));
  for (auto& b : w.plain[0]) b = static_cast<uint8_t>(rng());
  for (uint64_t cc : {uint64_t{12288}, uint64_t{200064}}) {
    for (int cut : {5000, 70000, 150000}) {
      w.served = w.plain;
      tz::FetchSpec s;
      s.items = {{1000, 600000, 0}, {601000, 50000, 600064}};
      s.crypt.items.resize(2);
      s.crypt.items[0] = seal(rng, w, s.items[0], cc);
      Server a({{"/a", &w.served[0]}});
      addObjects(s, w, a, a);
      s.chunk = 65536;
      s.connections = 2;
      s.hashes.resize(2);
      s.hashes[0].sha = s.hashes[1].crc = true;
      for (int device : sinks()) {
        const std::string what = "resume inside a chunk (crypt chunk " + std::to_string(cc) + ", cut after " + std::to_string(cut) + ", device " + std::to_string(device) + ")";
        checkPlan(s, what);
        a.cutAfter = cut;
        Run r;
        fetchInto(s, device, 650064, r);
        checkRun(w, s, device, r, what);
        CHECK(!r.ok || r.out.retries == (cut < 65536 || cc > 65536 ? 1u : 0u), (what + ": retried once where the cut fell in a body (" + std::to_string(r.out.retries) + ")").c_str());
        a.cutAfter = -1;
      }
    }
  }
}

// Failures: a flipped ciphertext bit (served), a flipped MAC, a wrong key: E_DECRYPT naming
// the item, on every sink, and the device holds nothing more once the caller has freed the
// destination.
void failureTests(std::mt19937_64& rng, Objects& w) {
  for (int kind = 0; kind < 3; kind++) {
    for (int device : sinks()) {
      tz::FetchSpec s;
      const uint64_t total = randomItems(rng, w, s);
      // The item to break: a non-empty encrypted one.
      std::vector<uint32_t> enc;
      for (uint32_t i = 0; i < s.items.size(); i++)
        if (s.crypt.of(i) && s.items[i].len > 0) enc.push_back(i);
      const uint32_t bad = enc[rng() % enc.size()];
      const tz::Item& it = s.items[bad];
      ItemCrypt& c = s.crypt.items[bad];
      const char* how = kind == 0 ? "a flipped ciphertext bit" : kind == 1 ? "a flipped MAC" : "a wrong key";
      if (kind == 0) w.served[it.file][it.src + rng() % it.len] ^= static_cast<uint8_t>(1u << (rng() % 8));
      if (kind == 1) c.macs[rng() % c.macs.size()] ^= 0x10;
      Server a({{"/a", &w.served[0]}, {"/b", &w.served[1]}});
      Server b({{"/c", &w.served[2]}});
      addObjects(s, w, a, b);
      if (kind == 2) {
        // The bad item's own key, wrong; the other items keep theirs.
        uint8_t wrong[32];
        std::memcpy(wrong, w.keys[c.key], 32);
        wrong[rng() % 32] ^= 1;
        s.crypt.keys.add(wrong);
        c.key = kKeys;
      }
      s.chunk = 16384 + 64 * (rng() % 400);
      s.connections = 1 + static_cast<int>(rng() % 6);
      if (rng() % 2) {
        s.hashes.resize(s.items.size());
        for (tz::Expect& e : s.hashes) e.sha = true;
      }
      const std::string what = std::string(how) + ", device " + std::to_string(device);
      const tz::dev::SimCounts before = tz::dev::simCounts();
      {
        Run r;
        fetchInto(s, device, total, r);
        CHECK(!r.ok && r.err.code == Code::E_DECRYPT && r.err.tensor == static_cast<int64_t>(bad) &&
                  r.err.message.rfind(s.objects[it.file].name + ": decryption failed at chunk ", 0) == 0,
              (what + ": E_DECRYPT naming item " + std::to_string(bad) + ": " + tz::codeName(r.err.code) + " item " + std::to_string(r.err.tensor) + " " + r.err.message).c_str());
      }
      CHECK(sameCounts(before, tz::dev::simCounts()), (what + ": nothing left held on the device").c_str());
    }
  }
  // A crypt plan that does not fit the items: E_USAGE before anything is read.
  tz::FetchSpec s;
  randomItems(rng, w, s);
  Server a({{"/a", &w.served[0]}, {"/b", &w.served[1]}});
  addObjects(s, w, a, a);
  s.crypt.items.pop_back();
  tz::Error err;
  tz::FetchResult out;
  CHECK(!tz::fetch(s, nullptr, out, err) && err.code == Code::E_USAGE && a.requests == 0, ("a crypt plan of the wrong length: " + err.message).c_str());
}

}  // namespace

void fetchCryptTests() {
  std::mt19937_64 rng(31);
  Objects w;
  for (auto& k : w.keys) tz::crypt::randomBytes(k, 32);
  const size_t sizes[] = {400000, 123457, 250003};
  for (size_t n : sizes) {
    w.plain.emplace_back(n);
    for (auto& b : w.plain.back()) b = static_cast<uint8_t>(rng());
  }
  randomRounds(rng, w);
  resumeTests(rng);
  failureTests(rng, w);
}
