// The page cache, for benchmarks: drop a file's cached pages (cold-cache runs), count how
// many are cached (to check that the drop worked, and that a warm file really is warm), and
// read a file as fast as plain reads go (the read ceiling a loader is measured against).
// No root needed: posix_fadvise, mmap + mincore and pread only.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

#include "io.h"

namespace tz {

// fdatasync (so that freshly written, dirty pages can be dropped), then
// posix_fadvise(POSIX_FADV_DONTNEED) over the whole file. The kernel may keep pages it
// cannot drop (tmpfs, pages mapped by another process): check with pageCacheResidency().
Error evictFromPageCache(const std::string& path);

struct Residency {
  uint64_t fileBytes = 0;
  uint64_t pageSize = 0;
  uint64_t pages = 0;     // pages the file spans
  uint64_t resident = 0;  // of those, pages in the page cache
};

// mmap + mincore in windows of 1 GiB: touches no page, so it changes nothing it measures.
Error pageCacheResidency(const std::string& path, Residency& out);

struct ReadProbe {
  uint64_t bytes = 0;
  double seconds = 0;
};

// Read the whole file: `threads` threads take `block`-byte blocks in file order from a
// shared counter and pread each into their own buffer (allocated and touched before the
// clock starts; the bytes are dropped). One thread is a plain sequential read.
Error readProbe(const std::string& path, int threads, uint64_t block, ReadProbe& out, const std::atomic<bool>* cancel = nullptr);

}  // namespace tz
