// One attempt at one request of the native fetcher (fetch.cc): a ranged GET on a
// connection's open keep-alive connection, the answer checked against the object (status,
// Content-Range and its total, ETag, Content-Length, no chunked body), then the body
// received into place under the idle timeout and the low-speed limit. What becomes of a
// failure (retry with backoff and resume, or fail the run) is the caller's.
#pragma once
#include <cstdint>
#include <string>

#include "errors.h"
#include "fetch.h"
#include "net.h"

namespace tz::fetchhttp {

enum class Outcome { Ok, Retry, Fatal, Cancelled };

struct Attempt {
  Outcome outcome = Outcome::Ok;
  std::string why, hint;
  Code code = Code::none;
  bool stale = false;  // a reused keep-alive connection that failed before any answer
  double retryAfterMs = -1;
};

// Where a request's body goes, and what the run hears of it.
class Body {
 public:
  virtual ~Body() = default;
  // Where body byte `pos` (from the request's first byte) goes, and how many bytes may go
  // there at once; `counted`: whether they are progress as soon as they land.
  virtual uint8_t* target(uint64_t pos, uint64_t& n, bool& counted) = 0;
  virtual void progress(uint64_t n) = 0;
  // The attempt is over (done or not): it received body bytes [start, got).
  virtual void ended(uint64_t start, uint64_t got) = 0;
  // A failure elsewhere in the run, or the caller's cancel.
  virtual bool cancelled() const = 0;
};

// A failure of the attempt: `why` (and the outcome) set.
Attempt retry(bool cancelled, const std::string& why);
Attempt fatal(Code code, const std::string& why);

// One GET of bytes [from + got, from + len) of object `o` on `conn` (open; `reused` when it
// has answered before), advancing `got` as the body arrives into `body`. The timeout, low-
// speed limit and cancel flag are the spec's. The connection is closed when it cannot be
// used again.
Attempt get(Conn& conn, bool reused, const FetchObject& o, uint64_t from, uint64_t len, uint64_t& got, const FetchSpec& s, Body& body);

}  // namespace tz::fetchhttp
