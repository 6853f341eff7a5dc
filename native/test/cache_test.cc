// The page-cache tools of cache.h: the read probe reads every byte with any thread count
// and block size, residency counts the file's pages, eviction succeeds (whether the pages
// really went depends on the file system: the TypeScript test checks that on disk), and
// errors carry their codes.
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "../src/cache.h"

#include "check.h"

void cacheTests() {
  char path[] = "/tmp/tensorize-cache-test-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) {
    CHECK(false, "mkstemp");
    return;
  }
  std::vector<char> data(5 * 65536 + 17, 'x');
  CHECK(write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()), "write the test file");
  close(fd);

  for (int threads : {1, 3, 8}) {
    for (uint64_t block : {uint64_t(4096), uint64_t(65536), uint64_t(1) << 20}) {
      tz::ReadProbe r;
      tz::Error e = tz::readProbe(path, threads, block, r);
      CHECK(e.ok() && r.bytes == data.size() && r.seconds >= 0, "readProbe reads every byte");
    }
  }
  tz::ReadProbe r;
  CHECK(tz::readProbe(path, 0, 65536, r).code == Code::E_USAGE, "readProbe: 0 threads");
  CHECK(tz::readProbe(path, 1, 100, r).code == Code::E_USAGE, "readProbe: a block under 4 KiB");
  CHECK(tz::readProbe("/nonexistent/file", 1, 65536, r).code == Code::E_NOT_FOUND, "readProbe: a missing file");
  CHECK(tz::readProbe("/tmp", 1, 65536, r).code == Code::E_INPUT, "readProbe: a directory");

  tz::Residency res;
  tz::Error e = tz::pageCacheResidency(path, res);
  uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  CHECK(e.ok() && res.fileBytes == data.size() && res.pageSize == page && res.pages == (data.size() + page - 1) / page, "residency: pages of the file");
  CHECK(res.resident <= res.pages, "residency: resident <= pages");
  CHECK(tz::evictFromPageCache(path).ok(), "evict succeeds");
  CHECK(tz::pageCacheResidency(path, res).ok() && res.resident <= res.pages, "residency after eviction");
  CHECK(tz::evictFromPageCache("/nonexistent/file").code == Code::E_NOT_FOUND, "evict: a missing file");
  CHECK(tz::pageCacheResidency("/nonexistent/file", res).code == Code::E_NOT_FOUND, "residency: a missing file");

  char empty[] = "/tmp/tensorize-cache-test-empty-XXXXXX";
  int efd = mkstemp(empty);
  close(efd);
  CHECK(tz::pageCacheResidency(empty, res).ok() && res.pages == 0 && res.resident == 0, "residency of an empty file");
  CHECK(tz::readProbe(empty, 4, 65536, r).ok() && r.bytes == 0, "readProbe of an empty file");
  unlink(empty);
  unlink(path);
}
