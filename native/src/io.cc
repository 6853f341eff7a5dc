#include "io.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tz {

bool preadFully(int fd, void* buf, uint64_t len, uint64_t off, const std::string& path, ErrorSlot& errs, int64_t tensor,
                Code shortReadCode) {
  auto* p = static_cast<uint8_t*>(buf);
  uint64_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, p + done, len - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      errs.set(Code::E_IO, path + ": read failed at byte " + std::to_string(off + done) + ": " + std::strerror(errno), tensor);
      return false;
    }
    if (n == 0) {
      errs.set(shortReadCode, path + ": short read at byte " + std::to_string(off + done) + "; the file was truncated or changed while being read", tensor);
      return false;
    }
    done += static_cast<uint64_t>(n);
  }
  return true;
}

bool pwriteFully(int fd, const void* buf, uint64_t len, uint64_t off, const std::string& path, ErrorSlot& errs, int64_t tensor) {
  auto* p = static_cast<const uint8_t*>(buf);
  uint64_t done = 0;
  while (done < len) {
    ssize_t n = ::pwrite(fd, p + done, len - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      errs.set(Code::E_IO, path + ": write failed at byte " + std::to_string(off + done) + ": " + std::strerror(errno), tensor);
      return false;
    }
    done += static_cast<uint64_t>(n);
  }
  return true;
}

void prefault(void* p, uint64_t len) {
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;
#endif
  if (!len) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + len + page - 1) & ~(page - 1);
  madvise(reinterpret_cast<void*>(a), b - a, MADV_POPULATE_WRITE);  // failure: the read faults the pages in
}

bool stagingFits(uint64_t bytes, const char* what, Error& err) {
  const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || size <= 0) return true;
  const uint64_t limit = static_cast<uint64_t>(pages) * static_cast<uint64_t>(size) / 4;
  if (bytes <= limit) return true;
  err.code = Code::E_HOST_OOM;
  err.message = std::string(what) + " would take " + std::to_string(bytes >> 20) + " MiB, more than a quarter of this machine's memory (" +
                std::to_string(limit >> 20) + " MiB); lower --chunk-size, or --readers / --concurrency";
  return false;
}

std::string hex(const uint8_t* b, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; i++) {
    s += d[b[i] >> 4];
    s += d[b[i] & 15];
  }
  return s;
}

}  // namespace tz
