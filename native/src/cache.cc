#include "cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace tz {

namespace {

Error sysError(const std::string& path, const char* what, int e) {
  return {e == ENOENT ? Code::E_NOT_FOUND : Code::E_IO, path + ": " + what + ": " + std::strerror(e), -1};
}

// An fd that closes itself.
struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

Error openRegular(const std::string& path, Fd& fd, uint64_t& size) {
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd.fd < 0) return sysError(path, "open", errno);
  struct stat st {};
  if (fstat(fd.fd, &st) != 0) return sysError(path, "fstat", errno);
  if (!S_ISREG(st.st_mode)) return {Code::E_INPUT, path + " is not a regular file", -1};
  size = static_cast<uint64_t>(st.st_size);
  return {};
}

}  // namespace

Error evictFromPageCache(const std::string& path) {
  Fd fd(-1);
  uint64_t size = 0;
  Error e = openRegular(path, fd, size);
  if (!e.ok()) return e;
  // Dirty pages cannot be dropped; a read-only fd may be synced on Linux. Failure here
  // (EINVAL on special file systems) only means there was nothing the kernel could write.
  if (fdatasync(fd.fd) != 0 && errno != EINVAL && errno != EROFS) return sysError(path, "fdatasync", errno);
  int r = posix_fadvise(fd.fd, 0, 0, POSIX_FADV_DONTNEED);
  if (r != 0) return sysError(path, "posix_fadvise(DONTNEED)", r);
  return {};
}

Error pageCacheResidency(const std::string& path, Residency& out) {
  Fd fd(-1);
  uint64_t size = 0;
  Error e = openRegular(path, fd, size);
  if (!e.ok()) return e;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  out = {};
  out.fileBytes = size;
  out.pageSize = page;
  out.pages = (size + page - 1) / page;
  const uint64_t window = uint64_t(1) << 30;  // a multiple of every page size
  std::vector<unsigned char> vec(window / page);
  for (uint64_t off = 0; off < size; off += window) {
    uint64_t len = std::min(window, size - off);
    void* p = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd.fd, static_cast<off_t>(off));
    if (p == MAP_FAILED) return sysError(path, "mmap", errno);
    int r = mincore(p, len, vec.data());
    int err = errno;
    munmap(p, len);
    if (r != 0) return sysError(path, "mincore", err);
    uint64_t n = (len + page - 1) / page;
    for (uint64_t i = 0; i < n; i++) out.resident += vec[i] & 1;
  }
  return {};
}

Error readProbe(const std::string& path, int threads, uint64_t block, ReadProbe& out, const std::atomic<bool>* cancel) {
  if (threads < 1 || threads > 256) return {Code::E_USAGE, "readProbe: threads must be between 1 and 256", -1};
  if (block < 4096 || block > (uint64_t(1) << 30)) return {Code::E_USAGE, "readProbe: block must be between 4 KiB and 1 GiB", -1};
  Fd fd(-1);
  uint64_t size = 0;
  Error e = openRegular(path, fd, size);
  if (!e.ok()) return e;
  const uint64_t blocks = (size + block - 1) / block;
  threads = static_cast<int>(std::min<uint64_t>(threads, std::max<uint64_t>(blocks, 1)));
  std::vector<void*> bufs(threads, nullptr);
  auto freeAll = [&] {
    for (void* b : bufs) std::free(b);
  };
  for (auto& b : bufs) {
    b = std::aligned_alloc(4096, (block + 4095) / 4096 * 4096);
    if (!b) {
      freeAll();
      return {Code::E_HOST_OOM, "readProbe: cannot allocate " + std::to_string(block) + " bytes per thread", -1};
    }
    std::memset(b, 0, block);  // fault the pages in now, not inside the timed reads
  }
  ErrorSlot errs;
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> done{0};
  auto worker = [&](int k) {
    for (;;) {
      if (errs.failed() || (cancel && cancel->load(std::memory_order_relaxed))) return;
      uint64_t i = next.fetch_add(1);
      if (i >= blocks) return;
      uint64_t off = i * block;
      uint64_t len = std::min(block, size - off);
      if (!preadFully(fd.fd, bufs[k], len, off, path, errs, -1, Code::E_FILE_CHANGED)) return;
      done.fetch_add(len, std::memory_order_relaxed);
    }
  };
  auto t0 = std::chrono::steady_clock::now();
  if (threads == 1) {
    worker(0);
  } else {
    std::vector<std::thread> ts;
    for (int k = 0; k < threads; k++) ts.emplace_back(worker, k);
    for (auto& t : ts) t.join();
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.bytes = done.load();
  freeAll();
  if (errs.failed()) return errs.get();
  if (cancel && cancel->load()) return {Code::E_INTERRUPTED, "the read was cancelled", -1};
  return {};
}

}  // namespace tz
