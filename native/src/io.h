// Pieces shared by the loader and the copy engine: the error type that crosses into JS, a
// first-error-wins slot for worker threads, and checked positional I/O.
#pragma once
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "errors.h"

namespace tz {

using Clock = std::chrono::steady_clock;
inline double msSince(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

struct Error {
  Code code = Code::none;  // stable (errors.h); none on success
  std::string message;
  int64_t tensor = -1;  // item index the error concerns, if any (JS: `item`)
  std::string hint;     // what the user can do about it, when there is something (JS: `hints`)
  std::vector<std::string> hashes;  // E_HASH_MISMATCH: which stored hashes failed ("crc32", "sha256")
  bool group = false;  // `tensor` is a hash group's index, not an item's (JS: `group`, no `item`)
  bool ok() const { return code == Code::none; }
};

// First error wins; later ones (usually consequences of the cancel) are dropped.
class ErrorSlot {
 public:
  void set(Code code, const std::string& msg, int64_t tensor = -1, const std::string& hint = "") {
    std::lock_guard<std::mutex> g(m_);
    if (err_.ok()) {
      err_.code = code;
      err_.message = msg;
      err_.tensor = tensor;
      err_.hint = hint;
    }
    failed_.store(true);
  }
  void set(const Error& e) {
    std::lock_guard<std::mutex> g(m_);
    if (err_.ok()) err_ = e;
    failed_.store(true);
  }
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  Error get() {
    std::lock_guard<std::mutex> g(m_);
    return err_;
  }

 private:
  std::mutex m_;
  Error err_;
  std::atomic<bool> failed_{false};
};

// Read exactly len bytes at off; false with the error recorded otherwise. A short read (the
// file was truncated or changed while being read) is reported with shortReadCode: the loader
// says E_FILE_CHANGED, the copy engine E_IO like the rest of serialize/verify/export.
bool preadFully(int fd, void* buf, uint64_t len, uint64_t off, const std::string& path, ErrorSlot& errs, int64_t tensor,
                Code shortReadCode = Code::E_FILE_CHANGED);
// Write exactly len bytes at off; false with the error recorded otherwise.
bool pwriteFully(int fd, const void* buf, uint64_t len, uint64_t off, const std::string& path, ErrorSlot& errs, int64_t tensor);

std::string hex(const uint8_t* b, size_t n);

// Fault in fresh anonymous memory that is about to be written (MADV_POPULATE_WRITE, Linux
// 5.14+; a no-op elsewhere): the kernel allocates and zeroes the pages in one call instead
// of one page fault per 4 KiB inside the following read (a 1.08 GB host load: 3.7 -> 4.5
// GB/s on the 2-vCPU reference VM). Readers call it on their own pieces, so it runs in
// parallel.
void prefault(void* p, uint64_t len);

// Staging buffers (pinned rings, receive slots) may take at most a quarter of the
// machine's memory: false with err set (E_HOST_OOM, naming the options to lower) otherwise.
bool stagingFits(uint64_t bytes, const char* what, Error& err);

}  // namespace tz
