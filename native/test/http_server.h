// The native tests' HTTP server (fetch_test.cc, fetch_crypt_test.cc): a tiny HTTP/1.1 server
// on loopback with Range support over objects in memory, a thread per connection, faults
// injected on demand (a body cut short, 503s, connections closed after each answer, a body
// that trickles).
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace testhttp {

// A tiny HTTP/1.1 server with Range support over `data` (at any path), or over several
// objects by path; one thread per connection.
class Server {
 public:
  explicit Server(const std::vector<uint8_t>& data) : Server(std::vector<std::pair<std::string, const std::vector<uint8_t>*>>{{"", &data}}) {}
  explicit Server(std::vector<std::pair<std::string, const std::vector<uint8_t>*>> objects) : objects_(std::move(objects)) {
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
  std::atomic<int> accepted{0};       // connections
  std::mutex logM;
  std::vector<std::string> paths;     // of the requests, in order

 private:
  // The object at the request line's path (any path with one unnamed object); null if none.
  const std::vector<uint8_t>* objectAt(const std::string& head) {
    const size_t sp = head.find(' '), sp2 = head.find(' ', sp + 1);
    const std::string path = sp == std::string::npos || sp2 == std::string::npos ? "" : head.substr(sp + 1, sp2 - sp - 1);
    {
      std::lock_guard<std::mutex> g(logM);
      paths.push_back(path);
    }
    for (const auto& [p, d] : objects_)
      if (p.empty() || p == path) return d;
    return nullptr;
  }

  void acceptLoop() {
    for (;;) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      if (stop_) {
        close(c);
        return;
      }
      accepted++;
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
      const std::vector<uint8_t>* obj = objectAt(head);
      if (!obj) {
        std::string r = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        send(c, r.data(), r.size(), MSG_NOSIGNAL);
        continue;
      }
      const std::vector<uint8_t>& data = *obj;
      if (unavailable.load() > 0) {
        unavailable--;
        std::string r = "HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n";
        send(c, r.data(), r.size(), MSG_NOSIGNAL);
        continue;
      }
      size_t p = head.find("Range: bytes=");
      unsigned long long a = 0, b = 0;
      if (p == std::string::npos || std::sscanf(head.c_str() + p, "Range: bytes=%llu-%llu", &a, &b) != 2 || b >= data.size() || a > b) {
        std::string r = "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n";
        send(c, r.data(), r.size(), MSG_NOSIGNAL);
        continue;
      }
      // Decided before the head goes out: once a client has its answer, later settings apply.
      const bool slow = trickle.load() > 0 && trickle-- > 0;
      std::string r = "HTTP/1.1 206 Partial Content\r\nContent-Length: " + std::to_string(b - a + 1) + "\r\nContent-Range: bytes " + std::to_string(a) + "-" +
                      std::to_string(b) + "/" + std::to_string(data.size()) + "\r\nETag: \"t\"\r\n\r\n";
      send(c, r.data(), r.size(), MSG_NOSIGNAL);
      size_t len = b - a + 1;
      if (slow) {
        for (size_t i = 0; i < len; i++) {
          if (stop_ || send(c, data.data() + a + i, 1, MSG_NOSIGNAL) != 1) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        close(c);
        return;
      }
      int cut = cutAfter.exchange(-1);
      if (cut >= 0 && static_cast<size_t>(cut) < len) {
        send(c, data.data() + a, static_cast<size_t>(cut), MSG_NOSIGNAL);
        close(c);
        return;
      }
      send(c, data.data() + a, len, MSG_NOSIGNAL);
      if (closeEach) {
        close(c);
        return;
      }
    }
  }
  std::vector<std::pair<std::string, const std::vector<uint8_t>*>> objects_;
  int fd_;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> conns_;
};

}  // namespace testhttp
