#include "fetch_http.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace tz::fetchhttp {

namespace {

// The same words as src/sources/retry.ts TOO_SLOW_HINT (the JavaScript client's).
constexpr const char* kTooSlowHint = "the server or the link is slower than the low-speed limit: lower --speed-limit or raise --speed-time (--speed-limit 0 turns it off)";

std::string range(uint64_t first, uint64_t len, uint64_t got) { return "bytes " + std::to_string(first + got) + "-" + std::to_string(first + len - 1); }

// " (S3 Code: Message)" from an XML error body, when there is one.
std::string errorDetail(const char* b, size_t n) {
  std::string s(b, std::min<size_t>(n, 4096));
  auto tag = [&](const char* t) {
    std::string open = std::string("<") + t + ">", close = std::string("</") + t + ">";
    size_t i = s.find(open), j = s.find(close);
    return i == std::string::npos || j == std::string::npos || j < i ? std::string() : s.substr(i + open.size(), std::min<size_t>(j - i - open.size(), 200));
  };
  std::string code = tag("Code"), msg = tag("Message");
  if (code.empty()) return "";
  return " (" + code + (msg.empty() ? "" : ": " + msg) + ")";
}

}  // namespace

Attempt retry(bool cancelled, const std::string& why) {
  Attempt a;
  a.outcome = cancelled ? Outcome::Cancelled : Outcome::Retry;
  a.why = why;
  return a;
}

Attempt fatal(Code code, const std::string& why) {
  Attempt a;
  a.outcome = Outcome::Fatal;
  a.code = code;
  a.why = why;
  return a;
}

Attempt get(Conn& conn, bool reused, const FetchObject& o, uint64_t first, uint64_t len, uint64_t& got, const FetchSpec& s, Body& body) {
  // What the attempt learns on the way (a hint, a stale connection, Retry-After) goes with
  // its failure.
  Attempt a;
  auto fail = [&](const std::string& why) {
    a.outcome = body.cancelled() ? Outcome::Cancelled : Outcome::Retry;
    a.why = why;
    return a;
  };
  auto fatal = [&](Code code, const std::string& why) {
    a.outcome = Outcome::Fatal;
    a.code = code;
    a.why = why;
    return a;
  };
  std::string why;
  const uint64_t from = first + got, to = first + len - 1;
  std::string req = o.head + "Range: bytes=" + std::to_string(from) + "-" + std::to_string(to) + "\r\n\r\n";
  // The low-speed limit, in consecutive windows of speedTimeMs from the request on: each
  // must bring speedLimit body bytes/s on average (the wait for the head counts as time
  // without bytes), else the attempt fails.
  uint64_t windowFrom = got;
  auto window = Clock::now();
  auto tooSlow = [&](std::string& msg) {
    if (s.speedLimit == 0) return false;
    const double ms = msSince(window);
    if (ms < s.speedTimeMs) return false;
    const uint64_t n = got - windowFrom;
    if (static_cast<double>(n) >= static_cast<double>(s.speedLimit) * ms / 1000) {
      window = Clock::now();
      windowFrom = got;
      return false;
    }
    char b[160];
    std::snprintf(b, sizeof b, "too slow: under %llu bytes/s for %g s (%llu bytes in %.1f s)", static_cast<unsigned long long>(s.speedLimit), s.speedTimeMs / 1000,
                  static_cast<unsigned long long>(n), ms / 1000);
    msg = b;
    a.hint = kTooSlowHint;
    return true;
  };
  std::string slow;
  if (!conn.writeAll(req.data(), req.size(), s.timeoutMs, s.cancel, why)) {
    a.stale = reused;
    return fail("sending the request failed: " + why);
  }
  // The response head (and whatever part of the body came with it).
  char hb[32 << 10];
  size_t hn = 0;
  ResponseHead h;
  auto idle = Clock::now();
  for (;;) {
    ssize_t k = conn.read(hb + hn, sizeof hb - hn, why, false);
    if (k > 0) {
      hn += static_cast<size_t>(k);
      idle = Clock::now();
      int pr = parseResponseHead(hb, hn, h, why);
      if (pr < 0) return fatal(Code::E_IO, "the server sent " + why);
      if (pr > 0) break;
      if (hn == sizeof hb) return fatal(Code::E_IO, "the server's response head is larger than 32 KiB");
      if (tooSlow(slow)) return fail(slow + ", waiting for the answer");
      continue;
    }
    if (k == -2) {
      if (body.cancelled()) return fail("cancelled");
      if (msSince(idle) > s.timeoutMs) return fail("no answer within " + std::to_string(static_cast<int>(s.timeoutMs / 1000)) + " s");
      if (tooSlow(slow)) return fail(slow + ", waiting for the answer");
      continue;
    }
    a.stale = reused && hn == 0;
    return fail(k == 0 ? "the connection was closed before an answer" : "the connection failed: " + why);
  }
  if (h.status != 206) {
    conn.close();
    const std::string st = "HTTP " + std::to_string(h.status);
    const std::string detail = errorDetail(hb + h.headerBytes, hn - h.headerBytes);
    if (h.status == 412 || h.status == 416) return fatal(Code::E_FILE_CHANGED, "the object changed while it was being read (" + st + " for " + range(first, len, got) + ")");
    if (h.status == 404) return fatal(Code::E_NOT_FOUND, "not found (HTTP 404)" + detail);
    if (h.status == 401 || h.status == 403) return fatal(Code::E_IO, "access denied (" + st + ")" + detail + " for " + range(first, len, got));
    if (h.status == 200) return fatal(Code::E_IO, "the server ignored the Range header (HTTP 200)");
    if (h.status == 408 || h.status == 425 || h.status == 429 || h.status >= 500) {
      if (h.retryAfterS >= 0) a.retryAfterMs = std::min(h.retryAfterS * 1000, 30000.0);
      return fail(st + detail);
    }
    return fatal(Code::E_IO, st + detail + " for " + range(first, len, got));
  }
  const uint64_t want = len - got;
  if (!h.hasContentRange || h.rangeFirst != from || h.rangeLast != to || (h.rangeTotal >= 0 && static_cast<uint64_t>(h.rangeTotal) != o.objectSize) ||
      (!o.etag.empty() && !h.etag.empty() && h.etag != o.etag)) {
    conn.close();
    std::string got_s = h.hasContentRange ? "bytes " + std::to_string(h.rangeFirst) + "-" + std::to_string(h.rangeLast) + "/" + (h.rangeTotal < 0 ? "*" : std::to_string(h.rangeTotal)) : "no Content-Range";
    std::string tag = !o.etag.empty() && !h.etag.empty() && h.etag != o.etag ? ", ETag " + h.etag + " instead of " + o.etag : "";
    return fatal(Code::E_FILE_CHANGED, "the object changed while it was being read (asked for bytes " + std::to_string(from) + "-" + std::to_string(to) + " of " + std::to_string(o.objectSize) + ", got " + got_s + tag + ")");
  }
  if (h.chunked) {
    conn.close();
    return fatal(Code::E_UNSUPPORTED, "the server sent a range with Transfer-Encoding (chunked); set TENSORIZE_NET=js to use the JavaScript client");
  }
  if (h.contentLength >= 0 && static_cast<uint64_t>(h.contentLength) != want) {
    conn.close();
    return fatal(Code::E_IO, "Content-Length " + std::to_string(h.contentLength) + " does not match the range (" + std::to_string(want) + " bytes)");
  }
  // Body bytes that came with the head.
  size_t extra = hn - h.headerBytes;
  if (extra > want) {
    conn.close();
    return fatal(Code::E_IO, "the server sent more bytes than the range it announced");
  }
  const uint64_t start = got;
  for (size_t off = h.headerBytes; off < hn;) {
    uint64_t n;
    bool counted;
    uint8_t* p = body.target(got, n, counted);
    size_t k = std::min<size_t>(n, hn - off);
    std::memcpy(p, hb + off, k);
    off += k;
    got += k;
    if (counted) body.progress(k);
  }
  // The rest straight into place.
  idle = Clock::now();
  while (got < len) {
    uint64_t n;
    bool counted;
    uint8_t* p = body.target(got, n, counted);
    ssize_t k = conn.read(p, n, why, true);
    if (k > 0) {
      got += static_cast<uint64_t>(k);
      if (counted) body.progress(static_cast<uint64_t>(k));
      idle = Clock::now();
    } else if (k == -2) {
      if (body.cancelled()) break;
      if (msSince(idle) > s.timeoutMs) {
        body.ended(start, got);
        return fail("no data for " + std::to_string(static_cast<int>(s.timeoutMs / 1000)) + " s after " + std::to_string(got) + " of " + std::to_string(len) + " bytes");
      }
    }
    if (k > 0 || k == -2) {
      if (got < len && tooSlow(slow)) {
        body.ended(start, got);
        return fail(slow + ", after " + std::to_string(got) + " of " + std::to_string(len) + " bytes");
      }
      continue;
    }
    body.ended(start, got);
    return fail((k == 0 ? std::string("the connection was closed") : "the connection failed (" + why + ")") + " after " + std::to_string(got) + " of " + std::to_string(len) + " bytes");
  }
  body.ended(start, got);
  if (got < len) return fail("cancelled");
  conn.used++;
  if (!h.keepAlive) conn.close();
  return a;
}

}  // namespace tz::fetchhttp
