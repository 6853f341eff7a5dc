#include "net.h"

#include "io.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace tz {

namespace {

constexpr int kSliceMs = 100;


// The OpenSSL 3 functions the TLS path uses, found in the process (Node exports its own
// statically linked OpenSSL). Signatures are OpenSSL's public ones.
struct Ssl {
  const void* (*TLS_client_method)();
  void* (*SSL_CTX_new)(const void*);
  void (*SSL_CTX_free)(void*);
  long (*SSL_CTX_ctrl)(void*, int, long, void*);
  void (*SSL_CTX_set_verify)(void*, int, void*);
  void* (*SSL_CTX_get_cert_store)(const void*);
  int (*X509_STORE_add_cert)(void*, void*);
  void* (*BIO_new_mem_buf)(const void*, int);
  int (*BIO_free)(void*);
  void* (*PEM_read_bio_X509)(void*, void**, void*, void*);
  void (*X509_free)(void*);
  void* (*SSL_new)(void*);
  void (*SSL_free)(void*);
  int (*SSL_set_fd)(void*, int);
  long (*SSL_ctrl)(void*, int, long, void*);
  int (*SSL_set1_host)(void*, const char*);
  void* (*SSL_get0_param)(void*);
  int (*X509_VERIFY_PARAM_set1_ip_asc)(void*, const char*);
  int (*SSL_connect)(void*);
  int (*SSL_read_ex)(void*, void*, size_t, size_t*);
  int (*SSL_write_ex)(void*, const void*, size_t, size_t*);
  int (*SSL_get_error)(const void*, int);
  long (*SSL_get_verify_result)(const void*);
  const char* (*X509_verify_cert_error_string)(long);
  unsigned long (*ERR_get_error)();
  void (*ERR_error_string_n)(unsigned long, char*, size_t);
  void (*ERR_clear_error)();
};

Ssl ssl;
std::string sslMissing;
std::once_flag sslOnce;

void loadSsl() {
  void* self = dlopen(nullptr, RTLD_NOW);
  auto get = [&](const char* name, auto& fn) {
    void* p = dlsym(self ? self : RTLD_DEFAULT, name);
    if (!p && sslMissing.empty()) sslMissing = name;
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
  };
#define TZ_SSL(n) get(#n, ssl.n)
  TZ_SSL(TLS_client_method);
  TZ_SSL(SSL_CTX_new);
  TZ_SSL(SSL_CTX_free);
  TZ_SSL(SSL_CTX_ctrl);
  TZ_SSL(SSL_CTX_set_verify);
  TZ_SSL(SSL_CTX_get_cert_store);
  TZ_SSL(X509_STORE_add_cert);
  TZ_SSL(BIO_new_mem_buf);
  TZ_SSL(BIO_free);
  TZ_SSL(PEM_read_bio_X509);
  TZ_SSL(X509_free);
  TZ_SSL(SSL_new);
  TZ_SSL(SSL_free);
  TZ_SSL(SSL_set_fd);
  TZ_SSL(SSL_ctrl);
  TZ_SSL(SSL_set1_host);
  TZ_SSL(SSL_get0_param);
  TZ_SSL(X509_VERIFY_PARAM_set1_ip_asc);
  TZ_SSL(SSL_connect);
  TZ_SSL(SSL_read_ex);
  TZ_SSL(SSL_write_ex);
  TZ_SSL(SSL_get_error);
  TZ_SSL(SSL_get_verify_result);
  TZ_SSL(X509_verify_cert_error_string);
  TZ_SSL(ERR_get_error);
  TZ_SSL(ERR_error_string_n);
  TZ_SSL(ERR_clear_error);
#undef TZ_SSL
}

constexpr int kSslErrorWantRead = 2, kSslErrorWantWrite = 3, kSslErrorSyscall = 5, kSslErrorZeroReturn = 6;
constexpr int kCtrlSetTlsextHostname = 55, kCtrlSetMinProtoVersion = 123, kTls12 = 0x0303, kVerifyPeer = 1;

std::string sslErrors() {
  std::string s;
  for (unsigned long e; (e = ssl.ERR_get_error()) != 0;) {
    char buf[256];
    ssl.ERR_error_string_n(e, buf, sizeof buf);
    if (!s.empty()) s += "; ";
    s += buf;
  }
  return s;
}

bool isIpLiteral(const std::string& h) {
  uint8_t b[16];
  return inet_pton(AF_INET, h.c_str(), b) == 1 || inet_pton(AF_INET6, h.c_str(), b) == 1;
}

// Wait until fd is readable/writable, in one slice; 1 ready, 0 not yet, -1 error.
int waitFd(int fd, short events, int ms) {
  pollfd p{fd, events, 0};
  int r = ::poll(&p, 1, ms);
  if (r < 0) return errno == EINTR ? 0 : -1;
  return r > 0 ? 1 : 0;
}

}  // namespace

bool tlsAvailable(std::string& why) {
  std::call_once(sslOnce, loadSsl);
  if (!sslMissing.empty()) {
    why = "TLS needs the OpenSSL that Node exports, and " + sslMissing + " was not found in this process";
    return false;
  }
  return true;
}

bool Endpoint::resolve(std::string& why) {
  addrs.clear();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const bool viaProxy = !proxyConnect.empty();
  const std::string& name = viaProxy ? proxyHost : host;
  std::string port_s = std::to_string(viaProxy ? proxyPort : port);
  int rc = getaddrinfo(name.c_str(), port_s.c_str(), &hints, &res);
  if (rc != 0) {
    why = "cannot resolve the host name " + name + (viaProxy ? " (the proxy)" : "") + ": " + gai_strerror(rc);
    return false;
  }
  for (addrinfo* a = res; a; a = a->ai_next) {
    auto* p = reinterpret_cast<const uint8_t*>(a->ai_addr);
    addrs.emplace_back(p, p + a->ai_addrlen);
  }
  freeaddrinfo(res);
  if (addrs.empty()) {
    why = "no address found for " + host;
    return false;
  }
  return true;
}

TlsContext::~TlsContext() {
  if (ctx) ssl.SSL_CTX_free(ctx);
}

bool TlsContext::init(const std::string& caPem, std::string& why) {
  if (!tlsAvailable(why)) return false;
  ssl.ERR_clear_error();
  ctx = ssl.SSL_CTX_new(ssl.TLS_client_method());
  if (!ctx) {
    why = "SSL_CTX_new failed: " + sslErrors();
    return false;
  }
  ssl.SSL_CTX_ctrl(ctx, kCtrlSetMinProtoVersion, kTls12, nullptr);
  ssl.SSL_CTX_set_verify(ctx, kVerifyPeer, nullptr);
  void* store = ssl.SSL_CTX_get_cert_store(ctx);
  void* bio = ssl.BIO_new_mem_buf(caPem.data(), static_cast<int>(caPem.size()));
  int added = 0;
  for (void* x; bio && (x = ssl.PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) != nullptr;) {
    if (ssl.X509_STORE_add_cert(store, x) == 1) added++;
    ssl.X509_free(x);
  }
  if (bio) ssl.BIO_free(bio);
  ssl.ERR_clear_error();  // the end of the PEM data reads as an error
  if (added == 0) {
    why = "no usable certificate authority was given for TLS";
    return false;
  }
  return true;
}

// Through a proxy: send the CONNECT request and read the proxy's answer head, up to its
// blank line and not a byte further (nothing can follow it before we speak again).
// A refusal (4xx: credentials, a denied host) sets `final`: retrying will not change it.
static bool openTunnel(int fd, const Endpoint& ep, double idleMs, const std::atomic<bool>* cancel, const std::string& where, std::string& why, bool& final) {
  auto t0 = Clock::now();
  for (size_t done = 0; done < ep.proxyConnect.size();) {
    if (cancel && cancel->load(std::memory_order_relaxed)) return (why = "cancelled", false);
    ssize_t w = ::send(fd, ep.proxyConnect.data() + done, ep.proxyConnect.size() - done, MSG_NOSIGNAL);
    if (w > 0) {
      done += static_cast<size_t>(w);
      t0 = Clock::now();
    } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return (why = "sending CONNECT to " + where + ": " + std::strerror(errno), false);
    } else if (msSince(t0) > idleMs) {
      return (why = "sending CONNECT to " + where + " timed out", false);
    }
  }
  std::string head;
  t0 = Clock::now();
  while (head.size() < 4 || head.compare(head.size() - 4, 4, "\r\n\r\n") != 0) {
    if (head.size() > 16384) return (why = where + " answered CONNECT with a head longer than 16 KiB", false);
    if (cancel && cancel->load(std::memory_order_relaxed)) return (why = "cancelled", false);
    char c;
    ssize_t r = ::recv(fd, &c, 1, 0);
    if (r == 1) {
      head += c;
      t0 = Clock::now();
    } else if (r == 0) {
      return (why = where + " closed the connection in answer to CONNECT", false);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return (why = "reading the answer to CONNECT from " + where + ": " + std::strerror(errno), false);
    } else if (msSince(t0) > idleMs) {
      return (why = where + " did not answer CONNECT in time", false);
    }
  }
  int status = 0;
  if (std::sscanf(head.c_str(), "HTTP/1.%*d %d", &status) != 1) return (why = where + " answered CONNECT with no HTTP status line", false);
  if (status < 200 || status > 299) {
    why = where + " refused a tunnel to " + ep.host + ":" + std::to_string(ep.port) + " (HTTP " + std::to_string(status) + ")" +
          (status == 407 ? ": proxy authentication required; put the user and password in the proxy URL" : "");
    final = status >= 400 && status < 500;
    return false;
  }
  return true;
}

bool Conn::open(const Endpoint& ep, TlsContext* tls, size_t which, double idleMs, const std::atomic<bool>* cancel, std::string& why) {
  close();
  failure_ = {};
  const auto& a = ep.addrs[which % ep.addrs.size()];
  auto* sa = reinterpret_cast<const sockaddr*>(a.data());
  int fd = ::socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    why = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  auto fail = [&](const std::string& w) {
    ::close(fd);
    why = w;
    return false;
  };
  char ip[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, ip, sizeof ip);
  else if (sa->sa_family == AF_INET6) inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, ip, sizeof ip);
  const bool viaProxy = !ep.proxyConnect.empty();
  std::string where = viaProxy ? "the proxy " + ep.proxyHost + " (" + ip + ":" + std::to_string(ep.proxyPort) + ") for " + ep.host : ep.host + " (" + ip + ":" + std::to_string(ep.port) + ")";
  if (::connect(fd, sa, static_cast<socklen_t>(a.size())) != 0 && errno != EINPROGRESS) return fail("cannot connect to " + where + ": " + std::strerror(errno));
  auto t0 = Clock::now();
  for (;;) {
    if (cancel && cancel->load(std::memory_order_relaxed)) return fail("cancelled");
    int r = waitFd(fd, POLLOUT, kSliceMs);
    if (r < 0) return fail(std::string("poll: ") + std::strerror(errno));
    if (r > 0) break;
    if (msSince(t0) > idleMs) return fail("connecting to " + where + " timed out");
  }
  int soerr = 0;
  socklen_t len = sizeof soerr;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
  if (soerr) return fail("cannot connect to " + where + ": " + std::strerror(soerr));
  // Blocking from here on, with short receive/send timeouts as the wait slices.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv{0, kSliceMs * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (viaProxy && !openTunnel(fd, ep, idleMs, cancel, where, why, failure_.final)) {
    ::close(fd);
    return false;
  }
  fd_ = fd;
  used = 0;
  if (!ep.tls) return true;
  if (!tls || !tls->ctx) {
    close();
    why = "TLS is not set up";
    return false;
  }
  ssl.ERR_clear_error();
  void* s = ssl.SSL_new(tls->ctx);
  if (!s) {
    close();
    why = "SSL_new failed: " + sslErrors();
    return false;
  }
  ssl_ = s;
  ssl.SSL_set_fd(s, fd);
  if (isIpLiteral(ep.host)) {
    ssl.X509_VERIFY_PARAM_set1_ip_asc(ssl.SSL_get0_param(s), ep.host.c_str());
  } else {
    ssl.SSL_ctrl(s, kCtrlSetTlsextHostname, 0, const_cast<char*>(ep.host.c_str()));
    ssl.SSL_set1_host(s, ep.host.c_str());
  }
  t0 = Clock::now();
  for (;;) {
    ssl.ERR_clear_error();
    int r = ssl.SSL_connect(s);
    if (r == 1) break;
    int e = ssl.SSL_get_error(s, r);
    if ((e == kSslErrorWantRead || e == kSslErrorWantWrite) && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == 0)) {
      if (cancel && cancel->load(std::memory_order_relaxed)) {
        close();
        why = "cancelled";
        return false;
      }
      if (msSince(t0) > idleMs) {
        close();
        why = "the TLS handshake with " + where + " timed out";
        return false;
      }
      continue;
    }
    long v = ssl.SSL_get_verify_result(s);
    std::string detail = v != 0 ? std::string("certificate verification failed: ") + ssl.X509_verify_cert_error_string(v) : sslErrors();
    // An untrusted certificate stays untrusted: no retry, and the fix.
    if (v != 0) failure_ = {true, "pass the server's CA with --ca-file"};
    if (detail.empty()) detail = errno ? std::strerror(errno) : "the connection was closed";
    close();
    why = "TLS handshake with " + where + " failed: " + detail;
    return false;
  }
  return true;
}

ssize_t Conn::read(void* p, size_t n, std::string& why, bool all) {
  if (fd_ < 0) {
    why = "not connected";
    return -1;
  }
  if (ssl_) {
    ssl.ERR_clear_error();
    size_t got = 0;
    errno = 0;
    if (ssl.SSL_read_ex(ssl_, p, n, &got) == 1) return static_cast<ssize_t>(got);
    int e = ssl.SSL_get_error(ssl_, 0);
    if (e == kSslErrorWantRead || e == kSslErrorWantWrite) return -2;
    if (e == kSslErrorZeroReturn) return 0;
    if (e == kSslErrorSyscall && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return -2;
    if (e == kSslErrorSyscall && errno == 0) return 0;  // EOF without close_notify
    std::string d = sslErrors();
    why = "TLS read failed: " + (d.empty() ? std::string(std::strerror(errno)) : d);
    return -1;
  }
  // MSG_WAITALL: one call per slice fills large buffers; a timeout returns what arrived.
  ssize_t r = ::recv(fd_, p, n, all ? MSG_WAITALL : 0);
  // ACK at once: a server that writes the head and the body separately (Nagle on its
  // side) would otherwise wait for our delayed ACK, 40 ms per small request.
  if (!all) {
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
  }
  if (r >= 0) return r;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return -2;
  why = std::strerror(errno);
  return -1;
}

bool Conn::writeAll(const void* p, size_t n, double idleMs, const std::atomic<bool>* cancel, std::string& why) {
  auto* b = static_cast<const uint8_t*>(p);
  auto last = Clock::now();
  while (n > 0) {
    ssize_t w;
    if (ssl_) {
      ssl.ERR_clear_error();
      size_t done = 0;
      errno = 0;
      if (ssl.SSL_write_ex(ssl_, b, n, &done) == 1) {
        w = static_cast<ssize_t>(done);
      } else {
        int e = ssl.SSL_get_error(ssl_, 0);
        if (e == kSslErrorWantRead || e == kSslErrorWantWrite || (e == kSslErrorSyscall && (errno == EAGAIN || errno == EINTR))) {
          w = -2;
        } else {
          std::string d = sslErrors();
          why = "TLS write failed: " + (d.empty() ? std::string(std::strerror(errno)) : d);
          return false;
        }
      }
    } else {
      w = ::send(fd_, b, n, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          why = std::strerror(errno);
          return false;
        }
        w = -2;
      }
    }
    if (w > 0) {
      b += w;
      n -= static_cast<size_t>(w);
      last = Clock::now();
      continue;
    }
    if (cancel && cancel->load(std::memory_order_relaxed)) {
      why = "cancelled";
      return false;
    }
    if (msSince(last) > idleMs) {
      why = "sending the request timed out";
      return false;
    }
  }
  return true;
}

void Conn::close() {
  if (ssl_) {
    ssl.SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

namespace {

bool ieq(const char* a, size_t n, const char* b) {
  if (std::strlen(b) != n) return false;
  for (size_t i = 0; i < n; i++)
    if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
  return true;
}

std::string trim(const char* a, size_t n) {
  size_t s = 0, e = n;
  while (s < e && (a[s] == ' ' || a[s] == '\t')) s++;
  while (e > s && (a[e - 1] == ' ' || a[e - 1] == '\t')) e--;
  return std::string(a + s, e - s);
}

// A non-negative decimal that fits in 2^53; false otherwise.
bool parseU64(const std::string& s, uint64_t& v) {
  if (s.empty() || s.size() > 16) return false;
  v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return true;
}

}  // namespace

int parseResponseHead(const char* buf, size_t n, ResponseHead& h, std::string& why) {
  const char* end = nullptr;
  for (size_t i = 3; i < n; i++) {
    if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
      end = buf + i + 1;
      break;
    }
  }
  if (!end) return 0;
  h = ResponseHead{};
  h.headerBytes = static_cast<size_t>(end - buf);
  const char* line = buf;
  const char* eol = static_cast<const char*>(std::memchr(line, '\r', static_cast<size_t>(end - line)));
  // Status line: HTTP/1.x SP 3DIGIT SP reason
  std::string status(line, static_cast<size_t>(eol - line));
  if (status.size() < 12 || status.compare(0, 7, "HTTP/1.") != 0 || status[8] != ' ' || !std::isdigit(static_cast<unsigned char>(status[9])) ||
      !std::isdigit(static_cast<unsigned char>(status[10])) || !std::isdigit(static_cast<unsigned char>(status[11]))) {
    why = "not an HTTP/1.x response: \"" + status.substr(0, 40) + "\"";
    return -1;
  }
  h.keepAlive = status[7] == '1';  // HTTP/1.0 closes unless it says keep-alive
  h.status = std::stoi(status.substr(9, 3));
  for (line = eol + 2; line < end - 2; line = eol + 2) {
    eol = static_cast<const char*>(std::memchr(line, '\r', static_cast<size_t>(end - line)));
    const char* colon = static_cast<const char*>(std::memchr(line, ':', static_cast<size_t>(eol - line)));
    if (!colon) {
      why = "a malformed response header line";
      return -1;
    }
    size_t kn = static_cast<size_t>(colon - line);
    std::string v = trim(colon + 1, static_cast<size_t>(eol - colon - 1));
    if (ieq(line, kn, "content-length")) {
      uint64_t x;
      if (!parseU64(v, x) || (h.contentLength >= 0 && static_cast<uint64_t>(h.contentLength) != x)) {
        why = "an invalid Content-Length: " + v.substr(0, 40);
        return -1;
      }
      h.contentLength = static_cast<int64_t>(x);
    } else if (ieq(line, kn, "content-range")) {
      // bytes FIRST-LAST/TOTAL (TOTAL may be *)
      uint64_t a, b, t = 0;
      size_t dash = v.find('-'), slash = v.find('/');
      if (v.compare(0, 6, "bytes ") != 0 || dash == std::string::npos || slash == std::string::npos || slash < dash ||
          !parseU64(v.substr(6, dash - 6), a) || !parseU64(v.substr(dash + 1, slash - dash - 1), b) || b < a ||
          (v.substr(slash + 1) != "*" && !parseU64(v.substr(slash + 1), t))) {
        why = "an invalid Content-Range: " + v.substr(0, 60);
        return -1;
      }
      h.hasContentRange = true;
      h.rangeFirst = a;
      h.rangeLast = b;
      h.rangeTotal = v.substr(slash + 1) == "*" ? -1 : static_cast<int64_t>(t);
    } else if (ieq(line, kn, "etag")) {
      h.etag = v;
    } else if (ieq(line, kn, "connection")) {
      std::string lv;
      for (char c : v) lv += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lv.find("close") != std::string::npos) h.keepAlive = false;
      else if (lv.find("keep-alive") != std::string::npos) h.keepAlive = true;
    } else if (ieq(line, kn, "transfer-encoding")) {
      std::string lv;
      for (char c : v) lv += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lv != "identity") h.chunked = true;
    } else if (ieq(line, kn, "retry-after")) {
      uint64_t s;
      if (parseU64(v, s)) h.retryAfterS = static_cast<double>(s);
    }
  }
  return 1;
}

}  // namespace tz
