// Native tests of the fetcher (fetch.cc, net.cc) without Node: the response-head parser on
// good and bad input, and random plans fetched from a small HTTP/1.1 server on loopback
// (http_server.h: a thread per connection, ranges served from memory, faults injected) into host memory,
// into a file, into GPU 0 when there is one, and hash only; every byte and every hash is
// checked.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../src/fetch.h"
#include "../src/hash.h"
#include "check.h"
#include "http_server.h"

namespace {

using testhttp::Server;

void parserTests() {
  tz::ResponseHead h;
  std::string why;
  std::string ok = "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nContent-Range: bytes 5-14/100\r\nETag: \"abc\"\r\n\r\nBODY";
  CHECK(tz::parseResponseHead(ok.data(), ok.size(), h, why) == 1, "a complete head parses");
  CHECK(h.status == 206 && h.contentLength == 10 && h.hasContentRange && h.rangeFirst == 5 && h.rangeLast == 14 && h.rangeTotal == 100, "fields");
  CHECK(h.etag == "\"abc\"" && h.keepAlive && !h.chunked && h.headerBytes == ok.size() - 4, "etag, keep-alive, head length");
  for (size_t n = 0; n < ok.size() - 4; n++) CHECK(tz::parseResponseHead(ok.data(), n, h, why) == 0, "every prefix of a head is incomplete");
  std::string s = "HTTP/1.0 206 X\r\ncontent-range: bytes 0-0/*\r\nCONNECTION: close\r\nRetry-After: 7\r\n\r\n";
  CHECK(tz::parseResponseHead(s.data(), s.size(), h, why) == 1 && h.rangeTotal == -1 && !h.keepAlive && h.retryAfterS == 7, "case, * total, close, retry-after");
  s = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n";
  CHECK(tz::parseResponseHead(s.data(), s.size(), h, why) == 1 && h.keepAlive && h.chunked, "1.0 keep-alive, chunked");
  for (const char* bad : {"HELLO\r\n\r\n", "HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 2x6 OK\r\n\r\n", "HTTP/1.1 206 OK\r\nNoColon\r\n\r\n",
                          "HTTP/1.1 206 OK\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 206 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                          "HTTP/1.1 206 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "HTTP/1.1 206 OK\r\nContent-Range: bytes 9-3/10\r\n\r\n",
                          "HTTP/1.1 206 OK\r\nContent-Range: items 0-3/10\r\n\r\n", "HTTP/1.1 206 OK\r\nContent-Range: bytes 0-3\r\n\r\n"}) {
    std::string b = bad;
    CHECK(tz::parseResponseHead(b.data(), b.size(), h, why) == -1 && !why.empty(), (std::string("malformed: ") + bad).c_str());
  }
}

// Several objects in one run: three served by one server under different paths, a fourth
// by another server (another endpoint); items of all of them interleaved in the item list.
void multiObjectTests() {
  std::mt19937_64 rng(11);
  std::vector<std::vector<uint8_t>> data(4);
  const size_t sizes[] = {300000, 123457, 70001, 200003};
  for (size_t o = 0; o < data.size(); o++) {
    data[o].resize(sizes[o]);
    for (auto& b : data[o]) b = static_cast<uint8_t>(rng());
  }
  Server a({{"/a", &data[0]}, {"/b", &data[1]}, {"/c", &data[2]}});
  Server b({{"/d", &data[3]}});
  auto object = [&](size_t o) {
    tz::FetchObject x;
    const bool onB = o == 3;
    const std::string path = std::string("/") + static_cast<char>('a' + o);
    x.endpoint.host = "127.0.0.1";
    x.endpoint.port = onB ? b.port : a.port;
    x.head = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    x.name = "http://127.0.0.1" + path;
    x.objectSize = data[o].size();
    x.etag = "\"t\"";
    return x;
  };
  // (A spec holds its keys: it is neither copied nor moved, so it is filled in place.)
  auto specOf = [&](tz::FetchSpec& s, size_t objects) {
    for (size_t o = 0; o < objects; o++) s.objects.push_back(object(o));
    s.baseDelayMs = 1;
    s.timeoutMs = 5000;
  };
  for (int round = 0; round < 12; round++) {
    tz::FetchSpec s;
    specOf(s, round % 2 ? 4 : 3);
    uint64_t dst = 0;
    for (uint32_t o = 0; o < s.objects.size(); o++)
      for (uint64_t pos = rng() % 100; pos < data[o].size();) {
        uint64_t len = rng() % 6 == 0 ? 0 : rng() % 30000;
        if (pos + len > data[o].size()) break;
        tz::Item it{pos, len, dst};
        it.file = o;
        s.items.push_back(it);
        dst += (len + 255) / 256 * 256;
        pos += len + (rng() % 3 == 0 ? rng() % 3000 : 0);
      }
    std::shuffle(s.items.begin(), s.items.end(), rng);  // the objects' items interleaved
    for (size_t i = 0; i < s.items.size(); i++) {
      tz::Expect e;
      e.crc = rng() % 3 != 0;
      e.sha = rng() % 3 != 0;
      e.prefix = std::string(rng() % 20, 'q');
      s.hashes.push_back(e);
    }
    s.chunk = rng() % 2 ? 4096 : 16384 + rng() % 50000;
    s.maxGap = rng() % 2 ? 0 : 4096;
    s.connections = 1 + static_cast<int>(rng() % 6);
    if (round % 4 == 1) a.cutAfter = static_cast<int>(rng() % 3000);
    if (round % 4 == 2) b.unavailable = 1;
    for (int device : {-1, -2}) {
      tz::Error err;
      tz::FetchResult out;
      std::unique_ptr<tz::Loaded> dest;
      if (device == -1) dest.reset(tz::allocate(-1, dst, err));
      const std::string what = "several objects, round " + std::to_string(round) + (dest ? " (host memory)" : " (hash only)");
      bool ok = (device == -2 || dest) && tz::fetch(s, dest.get(), out, err);
      CHECK(ok, (what + ": " + tz::codeName(err.code) + " " + err.message).c_str());
      if (!ok) continue;
      bool same = true, hashes = true;
      for (size_t i = 0; i < s.items.size(); i++) {
        const tz::Item& it = s.items[i];
        const uint8_t* want = data[it.file].data() + it.src;
        std::vector<uint8_t> back(it.len);
        if (dest) same = same && dest->read(it.dst, it.len, back.data()).ok() && (it.len == 0 || std::memcmp(back.data(), want, it.len) == 0);
        const tz::Expect& e = s.hashes[i];
        tz::Sha256 sha;
        sha.update(e.prefix.data(), e.prefix.size());
        sha.update(want, it.len);
        uint8_t d[32];
        sha.final(d);
        if (e.crc) hashes = hashes && out.crc32[i] == tz::crc32(tz::crc32(0, e.prefix.data(), e.prefix.size()), want, it.len);
        if (e.sha) hashes = hashes && std::memcmp(&out.sha256[32 * i], d, 32) == 0;
      }
      CHECK(same, (what + ": every byte from its own object").c_str());
      CHECK(hashes, (what + ": every item's hashes").c_str());
    }
  }
  a.cutAfter = -1;
  b.unavailable = 0;

  // The connections spread over the objects at once: two connections, two objects of 20
  // requests each; both objects are asked for before either is finished. And over two
  // servers, each connection keeps to one server while it has requests there: a handful of
  // connections in all, not one per request.
  {
    tz::FetchSpec s;
    specOf(s, 2);  // /a and /b, both on server a
    s.chunk = 4096;
    s.connections = 2;
    tz::Item x{0, 20 * 4096, 0}, y{1000, 20 * 4096, 20 * 4096};
    y.file = 1;
    s.items = {x, y};
    {
      std::lock_guard<std::mutex> g(a.logM);
      a.paths.clear();
    }
    tz::Error err;
    tz::FetchResult out;
    std::unique_ptr<tz::Loaded> dest(tz::allocate(-1, 40 * 4096, err));
    CHECK(dest && tz::fetch(s, dest.get(), out, err), ("two objects, two connections: " + err.message).c_str());
    std::vector<std::string> log;
    {
      std::lock_guard<std::mutex> g(a.logM);
      log = a.paths;
    }
    auto first = [&](const char* p) { return std::find(log.begin(), log.end(), p) - log.begin(); };
    auto last = [&](const char* p) { return log.rend() - std::find(log.rbegin(), log.rend(), p) - 1; };
    CHECK(log.size() == 40 && std::max(first("/a"), first("/b")) < std::min(last("/a"), last("/b")) && std::max(first("/a"), first("/b")) <= 2,
          ("both objects are read from the start (first /a " + std::to_string(first("/a")) + ", first /b " + std::to_string(first("/b")) + " of " +
           std::to_string(log.size()) + " requests)").c_str());
    std::vector<uint8_t> back(20 * 4096);
    CHECK(dest->read(20 * 4096, back.size(), back.data()).ok() && std::memcmp(back.data(), data[1].data() + 1000, back.size()) == 0, "the second object's bytes");

    // Now /d on server b: the three connections split between the servers (a connection
    // may move once, when its server has no requests left).
    s.objects[1] = object(3);
    const int acceptedA = a.accepted, acceptedB = b.accepted;
    const int requestsB = b.requests;
    s.connections = 3;
    err = {};
    out = {};
    CHECK(tz::fetch(s, dest.get(), out, err), ("two servers: " + err.message).c_str());
    CHECK(dest->read(20 * 4096, back.size(), back.data()).ok() && std::memcmp(back.data(), data[3].data() + 1000, back.size()) == 0, "the other server's object's bytes");
    const int conns = a.accepted - acceptedA + b.accepted - acceptedB;
    CHECK(b.requests - requestsB == 20 && conns >= 2 && conns <= 6, ("connections are kept per server: " + std::to_string(conns) + " for 40 requests").c_str());
  }

  // Failures name the object: a total that is not the object's size, an item past its
  // object's end (within another's), an object that is not in the list.
  {
    tz::FetchSpec s;
    specOf(s, 3);
    tz::Item x{0, 1000, 0}, y{0, 1000, 1024};
    y.file = 2;
    s.items = {x, y};
    s.objects[2].objectSize += 1;
    tz::Error err;
    tz::FetchResult out;
    CHECK(!tz::fetch(s, nullptr, out, err) && err.code == Code::E_FILE_CHANGED && err.message.rfind("http://127.0.0.1/c: the object changed", 0) == 0 &&
              err.message.find("of " + std::to_string(data[2].size() + 1) + ", got bytes 0-999/" + std::to_string(data[2].size())) != std::string::npos,
          ("a changed object is named: " + err.message).c_str());
    s.objects[2].objectSize -= 1;
    s.items[1].src = data[2].size() - 10;  // inside /a and /b, past the end of /c
    err = {};
    CHECK(!tz::fetch(s, nullptr, out, err) && err.code == Code::E_USAGE && err.message.find("outside the object http://127.0.0.1/c") != std::string::npos,
          ("an item past its own object's end: " + err.message).c_str());
    s.items[1].src = 0;
    s.items[1].file = 3;
    err = {};
    CHECK(!tz::fetch(s, nullptr, out, err) && err.code == Code::E_USAGE && err.message.find("not in the list") != std::string::npos, "an item of no object");
    s.items[1].file = 1;
    s.items[1].src = 500;  // overlaps x, but in another object: fine
    err = {};
    CHECK(tz::fetch(s, nullptr, out, err), ("the same range of two objects does not overlap: " + err.message).c_str());
  }
}


// Hash groups over two objects (fetch.h FetchSpec::groups): each object's whole-file SHA-256
// over its first bytes (the prefix), then items tiling the rest in file order, the items of
// both interleaved in the item list; into host memory, hash only (receive slots that wait
// for the hashing) and a GPU when there is one; 4 KiB requests so each group spans many.
// A wrong hash names its group; a group out of file order or over two objects is E_USAGE.
void groupFetchTests() {
  std::mt19937_64 rng(21);
  std::vector<std::vector<uint8_t>> data = {std::vector<uint8_t>(300000), std::vector<uint8_t>(123457)};
  for (auto& d : data)
    for (auto& b : d) b = static_cast<uint8_t>(rng());
  Server srv({{"/a", &data[0]}, {"/b", &data[1]}});
  std::vector<int> devices = {-1, -2};
  if (tz::runtimeInfo().deviceCount > 0) devices.push_back(0);
  for (int round = 0; round < 8; round++) {
    tz::FetchSpec s;
    s.baseDelayMs = 1;
    s.timeoutMs = 5000;
    uint8_t real[2][32];
    for (uint32_t o = 0; o < 2; o++) {
      tz::FetchObject x;
      const std::string path = o ? "/b" : "/a";
      x.endpoint.host = "127.0.0.1";
      x.endpoint.port = srv.port;
      x.head = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
      x.name = "http://127.0.0.1" + path;
      x.objectSize = data[o].size();
      s.objects.push_back(x);
      tz::HashGroup g;
      const uint64_t prefix = 8 + rng() % 500;
      g.prefix.assign(reinterpret_cast<const char*>(data[o].data()), prefix);
      tz::Sha256 h;
      h.update(data[o].data(), data[o].size());
      h.final(real[o]);
      std::memcpy(g.sha256, real[o], 32);
      s.groups.push_back(g);
      for (uint64_t pos = prefix; pos < data[o].size();) {
        const uint64_t len = std::min<uint64_t>(data[o].size() - pos, rng() % 5 == 0 ? 0 : 1 + rng() % 30000);
        tz::Item it{pos, len, 0};
        it.file = o;
        s.items.push_back(it);
        pos += len;
      }
    }
    std::shuffle(s.items.begin(), s.items.end(), rng);  // the objects' items interleaved
    uint64_t dst = 0;
    std::vector<std::pair<uint64_t, uint32_t>> order;  // (object, src) -> item
    for (uint32_t i = 0; i < s.items.size(); i++) {
      s.items[i].dst = dst;
      dst += s.items[i].len;
      order.push_back({(static_cast<uint64_t>(s.items[i].file) << 40) | s.items[i].src, i});
    }
    std::sort(order.begin(), order.end());  // file order (empty items: any order among equals)
    for (auto& [key, i] : order) s.groups[key >> 40].items.push_back(i);
    s.chunk = round % 2 ? 4096 : 16384 + rng() % 50000;
    s.maxGap = 0;
    s.connections = 1 + static_cast<int>(rng() % 6);
    if (round % 4 == 3) srv.cutAfter = static_cast<int>(rng() % 3000);
    for (int device : devices) {
      const std::string what = "groups over two objects, round " + std::to_string(round) + " device " + std::to_string(device);
      for (int bad : {-1, 0, 1}) {
        if (bad >= 0) s.groups[bad].sha256[rng() % 32] ^= 1;
        tz::Error err;
        tz::FetchResult out;
        std::unique_ptr<tz::Loaded> dest;
        if (device != -2) dest.reset(tz::allocate(device, dst, err));
        const bool ok = (device == -2 || dest) && tz::fetch(s, dest.get(), out, err);
        if (bad >= 0) {
          CHECK(!ok && err.code == Code::E_HASH_MISMATCH && err.group && err.tensor == bad && err.message.find("computed " + tz::hex(real[bad], 32)) != std::string::npos,
                (what + ": a wrong hash names its group: " + err.message).c_str());
          std::memcpy(s.groups[bad].sha256, real[bad], 32);
          continue;
        }
        CHECK(ok, (what + ": " + tz::codeName(err.code) + " " + err.message).c_str());
        if (!ok || !dest) continue;
        bool same = true;
        for (const tz::Item& it : s.items) {
          std::vector<uint8_t> back(it.len);
          same = same && dest->read(it.dst, it.len, back.data()).ok() && (it.len == 0 || std::memcmp(back.data(), data[it.file].data() + it.src, it.len) == 0);
        }
        CHECK(same, (what + ": every byte from its own object").c_str());
      }
    }
    srv.cutAfter = -1;
    // Out of file order, and over two objects: E_USAGE.
    std::vector<uint32_t>& gi = s.groups[0].items;
    size_t x = 0, y = gi.size() - 1;
    while (x < y && !s.items[gi[x]].len) x++;
    while (y > x && !s.items[gi[y]].len) y--;
    std::swap(gi[x], gi[y]);
    tz::Error err;
    tz::FetchResult out;
    CHECK(!tz::fetch(s, nullptr, out, err) && err.code == Code::E_USAGE && err.message.find("file order") != std::string::npos, ("a group out of file order: " + err.message).c_str());
    std::swap(gi[x], gi[y]);
    gi.push_back(s.groups[1].items.back());
    s.groups[1].items.pop_back();
    err = {};
    CHECK(!tz::fetch(s, nullptr, out, err) && err.code == Code::E_USAGE && err.message.find("one object") != std::string::npos, ("a group over two objects: " + err.message).c_str());
  }
}

}  // namespace

void fetchTests() {
  parserTests();
  std::mt19937_64 rng(7);
  std::vector<uint8_t> file(2 * 1024 * 1024 + 77);
  for (auto& b : file) b = static_cast<uint8_t>(rng());
  Server srv(file);
  tz::RuntimeInfo info = tz::runtimeInfo();
  std::vector<int> devices = {-1, -2, -3};  // host memory, hash only, a file
  if (info.deviceCount > 0) devices.push_back(0);
  // A fetch of the whole test object from the in-process server, fast retries.
  // (A spec holds its keys: it is neither copied nor moved, so it is filled in place.)
  auto specOf = [&](tz::FetchSpec& s, const char* name) {
    s.endpoint.host = "127.0.0.1";
    s.endpoint.port = srv.port;
    s.head = "GET /f HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    s.name = name;
    s.objectSize = file.size();
    s.baseDelayMs = 1;
  };

  for (int round = 0; round < 30; round++) {
    // Random non-overlapping tensors, in file order with random gaps, some empty.
    tz::FetchSpec s;
    specOf(s, "http://127.0.0.1/f");
    s.etag = "\"t\"";
    s.timeoutMs = 5000;
    uint64_t pos = rng() % 1000, dst = 0;
    while (pos < file.size()) {
      uint64_t len = rng() % 5 == 0 ? 0 : rng() % (rng() % 2 ? 200000 : 2000);
      if (pos + len > file.size()) break;
      s.items.push_back({pos, len, dst});
      dst += (len + 255) / 256 * 256;
      pos += len + (rng() % 3 == 0 ? rng() % 3000 : 0);
      if (s.items.size() > 40) break;
    }
    std::shuffle(s.items.begin(), s.items.end(), rng);  // the fetcher sorts them itself
    for (size_t i = 0; i < s.items.size(); i++) {
      tz::Expect e;
      e.crc = rng() % 4 != 0;
      e.sha = rng() % 4 != 0;
      e.prefix = std::string(rng() % 50, 'p');
      s.hashes.push_back(e);
    }
    for (int device : devices) {
      s.chunk = rng() % 2 ? 4096 : 65536 + rng() % 100000;
      s.maxGap = rng() % 2 ? 0 : 4096;
      s.connections = 1 + static_cast<int>(rng() % 6);
      if (round % 5 == 1) srv.cutAfter = static_cast<int>(rng() % 3000);
      if (round % 5 == 2) srv.unavailable = 2;
      srv.closeEach = round % 5 == 3;
      std::atomic<uint64_t> progress{0};
      s.progress = &progress;
      tz::Error err;
      tz::FetchResult out;
      std::unique_ptr<tz::Loaded> dest;
      if (device >= -1) dest.reset(tz::allocate(device, dst, err));
      char outPath[] = "/tmp/tensorize-fetch-test-XXXXXX";
      s.output.clear();
      if (device == -3) {
        int fd = mkstemp(outPath);
        if (fd < 0 || ftruncate(fd, static_cast<off_t>(dst)) != 0) std::abort();
        close(fd);
        s.output = outPath;
      }
      std::string what = "fetch round " + std::to_string(round) + " device " + std::to_string(device);
      bool ok = (device < -1 || dest) && tz::fetch(s, dest.get(), out, err);
      CHECK(ok, (what + ": " + tz::codeName(err.code) + " " + err.message).c_str());
      if (!ok) continue;
      bool same = true, hashes = true;
      uint64_t total = 0;
      for (size_t i = 0; i < s.items.size(); i++) {
        const tz::Item& it = s.items[i];
        total += it.len;
        std::vector<uint8_t> back(it.len);
        if (dest) {
          same = same && dest->read(it.dst, it.len, back.data()).ok() && (it.len == 0 || std::memcmp(back.data(), file.data() + it.src, it.len) == 0);
        } else if (device == -3) {
          int fd = open(outPath, O_RDONLY);
          same = same && pread(fd, back.data(), it.len, static_cast<off_t>(it.dst)) == static_cast<ssize_t>(it.len) && (it.len == 0 || std::memcmp(back.data(), file.data() + it.src, it.len) == 0);
          close(fd);
        }
        const tz::Expect& e = s.hashes[i];
        uint32_t crc = tz::crc32(tz::crc32(0, e.prefix.data(), e.prefix.size()), file.data() + it.src, it.len);
        tz::Sha256 sha;
        sha.update(e.prefix.data(), e.prefix.size());
        sha.update(file.data() + it.src, it.len);
        uint8_t d[32];
        sha.final(d);
        if (e.crc) hashes = hashes && out.crc32[i] == crc;
        if (e.sha) hashes = hashes && std::memcmp(&out.sha256[32 * i], d, 32) == 0;
      }
      CHECK(same, (what + ": bytes").c_str());
      CHECK(hashes, (what + ": hashes").c_str());
      CHECK(progress.load() == total && out.bytes == total, (what + ": progress and bytes").c_str());
      if (round % 5 == 2) CHECK(out.retries == 2, (what + ": two 503s retried").c_str());
      if (device == -3) unlink(outPath);
    }
  }
  srv.closeEach = false;

  // Failures: a plan past the object's end, a connection refused, 503s beyond the retries.
  tz::FetchSpec s;
  specOf(s, "u");
  s.items = {{file.size() - 10, 20, 0}};
  tz::FetchResult out;
  tz::Error err;
  CHECK(!tz::fetch(s, nullptr, out, err) && err.code == Code::E_USAGE, "bytes past the object's end are refused");
  s.items = {{0, 100, 0}};
  s.retries = 2;
  srv.unavailable = 10;
  err = {};
  CHECK(!tz::fetch(s, nullptr, out, err) && err.code == Code::E_IO && err.message.find("giving up after 3 attempts: HTTP 503") != std::string::npos, "503s beyond the retries");
  srv.unavailable = 0;
  s.objectSize = file.size() + 1;
  err = {};
  CHECK(!tz::fetch(s, nullptr, out, err) && err.code == Code::E_FILE_CHANGED, "another total size is a changed object");
  s.objectSize = file.size();

  // The low-speed limit: a body that trickles fails the attempt, which is retried; a retry
  // that is fast completes, and trickling beyond the retries ends with a clear error.
  s.items = {{1000, 100000, 0}};
  // 20 bytes/s against 1 KiB/s; a fast answer brings its 100000 bytes in one window.
  s.speedLimit = 1024;
  s.speedTimeMs = 500;
  s.retries = 1;
  srv.trickle = 1;
  {
    err = {};
    out = {};
    tz::Loaded* dest = tz::allocate(-1, 100000, err);
    bool ok = dest && tz::fetch(s, dest, out, err);
    std::vector<uint8_t> back(100000);
    CHECK(ok && out.retries == 1 && dest->read(0, back.size(), back.data()).ok() && std::memcmp(back.data(), file.data() + 1000, back.size()) == 0,
          ("a trickling first attempt, then a fast retry: every byte (" + err.message + ", " + std::to_string(out.retries) + " retries)").c_str());
    const std::string log = out.retryLog.empty() ? "no retry" : out.retryLog[0];
    CHECK(log.find("too slow: under 1024 bytes/s for 0.5 s") != std::string::npos, ("the retry says it was too slow: " + log).c_str());
    delete dest;
  }
  srv.trickle = 100;
  err = {};
  out = {};
  CHECK(!tz::fetch(s, nullptr, out, err) && err.code == Code::E_IO && err.message.find("u: bytes 1000..101000: giving up after 2 attempts: too slow: under 1024 bytes/s for 0.5 s") != std::string::npos,
        ("a body trickling beyond the retries: " + err.message).c_str());
  srv.trickle = 0;

  s.items = {{0, 100, 0}};
  s.endpoint.port = 1;
  s.retries = 1;
  err = {};
  CHECK(!tz::fetch(s, nullptr, out, err) && err.code == Code::E_IO && err.message.find("cannot connect") != std::string::npos, "nothing listening");
  s.endpoint.host = "no-such-host.invalid";
  err = {};
  CHECK(!tz::fetch(s, nullptr, out, err) && err.code == Code::E_IO && err.message.find("cannot resolve") != std::string::npos, "an unknown host");
  multiObjectTests();
  groupFetchTests();
}
