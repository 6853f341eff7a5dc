// Client connections for the native fetcher: TCP with keep-alive, optionally TLS through
// the OpenSSL that Node itself links and exports (looked up with dlsym at run time, so the
// addon needs no OpenSSL of its own and uses the same library Node's https does), and the
// HTTP/1.1 response head parser. Every blocking call waits in short slices so that a
// cancel is seen within ~100 ms and a stalled peer is noticed after the idle timeout.
#pragma once
#include <netdb.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace tz {

struct Endpoint {
  std::string host;  // a DNS name or an IP literal
  int port = 80;
  bool tls = false;
  std::string caPem;  // trusted certificate authorities (PEM), for TLS
  // An HTTP proxy: connections go to proxyHost:proxyPort and send proxyConnect (a CONNECT
  // request for host:port) first; TLS, when asked for, then runs inside the tunnel.
  std::string proxyHost, proxyConnect;
  int proxyPort = 0;
  // Resolved once per fetch (the proxy's addresses when there is one); connections take
  // the addresses in turn.
  std::vector<std::vector<uint8_t>> addrs;  // sockaddr bytes
  bool resolve(std::string& why);
};

// Whether TLS can be used in this process (Node's OpenSSL found), and why not.
bool tlsAvailable(std::string& why);

class TlsContext;

class Conn {
 public:
  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() { close(); }

  // Connect to endpoint address `which` (modulo their count). `idleMs`: how long a connect,
  // a send or a receive may make no progress before it fails.
  bool open(const Endpoint& ep, TlsContext* tls, size_t which, double idleMs, const std::atomic<bool>* cancel, std::string& why);
  bool isOpen() const { return fd_ >= 0; }
  // Bytes read (> 0), 0 at end of stream, -1 on error (why set), -2 when nothing arrived
  // within one wait slice (~100 ms; call again). With `all` a plain TCP read waits for all
  // n bytes (or the end of the slice): one call per slice for large bodies.
  ssize_t read(void* p, size_t n, std::string& why, bool all);
  bool writeAll(const void* p, size_t n, double idleMs, const std::atomic<bool>* cancel, std::string& why);
  void close();
  // Requests answered on this connection so far (a stale keep-alive connection fails on
  // its first read: such a failure is retried at once).
  uint32_t used = 0;
  // Why the last open() failed, beyond its message: whether retrying cannot help (a TLS
  // certificate that failed verification, a proxy refusing the tunnel with a 4xx), and what
  // the user can do about it.
  struct Failure {
    bool final = false;
    std::string hint;
  };
  const Failure& lastFailure() const { return failure_; }

 private:
  int fd_ = -1;
  void* ssl_ = nullptr;
  Failure failure_;
};

// One TLS client configuration per fetch (CA store, verification on, TLS >= 1.2).
class TlsContext {
 public:
  ~TlsContext();
  bool init(const std::string& caPem, std::string& why);
  void* ctx = nullptr;
};

struct ResponseHead {
  int status = 0;
  bool keepAlive = true;
  bool chunked = false;
  int64_t contentLength = -1;
  bool hasContentRange = false;
  uint64_t rangeFirst = 0, rangeLast = 0;
  int64_t rangeTotal = -1;  // -1 when the total is "*"
  std::string etag;
  double retryAfterS = -1;
  size_t headerBytes = 0;  // length of the head including the blank line
};

// Parse a response head from buf[0..n) if it is complete; returns 1 when parsed, 0 when more
// bytes are needed, -1 when malformed (why set).
int parseResponseHead(const char* buf, size_t n, ResponseHead& h, std::string& why);

}  // namespace tz
