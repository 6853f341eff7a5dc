// Native tests of the fetcher (fetch.cc, net.cc) without Node: the response-head parser on
// good and bad input, and random plans fetched from a small HTTP/1.1 server on loopback
// (a thread per connection, ranges served from memory, faults injected) into host memory,
// into a file, into GPU 0 when there is one, and hash only; every byte and every hash is
// checked.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../src/fetch.h"
#include "../src/hash.h"
#include "check.h"

namespace {

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

// A tiny HTTP/1.1 server with Range support over `data`, one thread per connection.
class Server {
 public:
  explicit Server(const std::vector<uint8_t>& data) : data_(data) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd_, 64);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { acceptLoop(); });
  }
  ~Server() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    acceptor_.join();
    for (auto& t : conns_) t.join();
  }
  int port = 0;
  std::atomic<int> cutAfter{-1};     // the next body is cut after this many bytes
  std::atomic<int> unavailable{0};   // answer this many requests with 503
  std::atomic<bool> closeEach{false};  // close every connection after its answer, silently
  std::atomic<int> trickle{0};       // send this many next bodies one byte every 50 ms
  std::atomic<int> requests{0};

 private:
  void acceptLoop() {
    for (;;) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      if (stop_) {
        close(c);
        return;
      }
      conns_.emplace_back([this, c] { serve(c); });
    }
  }
  void serve(int c) {
    std::string buf;
    char tmp[4096];
    for (;;) {
      size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = recv(c, tmp, sizeof tmp, 0);
        if (n <= 0 || stop_) {
          close(c);
          return;
        }
        buf.append(tmp, static_cast<size_t>(n));
      }
      std::string head = buf.substr(0, end);
      buf.erase(0, end + 4);
      requests++;
      if (unavailable.load() > 0) {
        unavailable--;
        std::string r = "HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n";
        send(c, r.data(), r.size(), MSG_NOSIGNAL);
        continue;
      }
      size_t p = head.find("Range: bytes=");
      unsigned long long a = 0, b = 0;
      if (p == std::string::npos || std::sscanf(head.c_str() + p, "Range: bytes=%llu-%llu", &a, &b) != 2 || b >= data_.size() || a > b) {
        std::string r = "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n";
        send(c, r.data(), r.size(), MSG_NOSIGNAL);
        continue;
      }
      // Decided before the head goes out: once a client has its answer, later settings apply.
      const bool slow = trickle.load() > 0 && trickle-- > 0;
      std::string r = "HTTP/1.1 206 Partial Content\r\nContent-Length: " + std::to_string(b - a + 1) + "\r\nContent-Range: bytes " + std::to_string(a) + "-" +
                      std::to_string(b) + "/" + std::to_string(data_.size()) + "\r\nETag: \"t\"\r\n\r\n";
      send(c, r.data(), r.size(), MSG_NOSIGNAL);
      size_t len = b - a + 1;
      if (slow) {
        for (size_t i = 0; i < len; i++) {
          if (stop_ || send(c, data_.data() + a + i, 1, MSG_NOSIGNAL) != 1) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        close(c);
        return;
      }
      int cut = cutAfter.exchange(-1);
      if (cut >= 0 && static_cast<size_t>(cut) < len) {
        send(c, data_.data() + a, static_cast<size_t>(cut), MSG_NOSIGNAL);
        close(c);
        return;
      }
      send(c, data_.data() + a, len, MSG_NOSIGNAL);
      if (closeEach) {
        close(c);
        return;
      }
    }
  }
  const std::vector<uint8_t>& data_;
  int fd_;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> conns_;
};

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
  auto specOf = [&](const char* name) {
    tz::FetchSpec s;
    s.endpoint.host = "127.0.0.1";
    s.endpoint.port = srv.port;
    s.head = "GET /f HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    s.name = name;
    s.objectSize = file.size();
    s.baseDelayMs = 1;
    return s;
  };

  for (int round = 0; round < 30; round++) {
    // Random non-overlapping tensors, in file order with random gaps, some empty.
    tz::FetchSpec s = specOf("http://127.0.0.1/f");
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
  tz::FetchSpec s = specOf("u");
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
}
