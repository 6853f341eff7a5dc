// Native test program for the loader pipeline itself (and, in copy_test.cc, the hashes and
// the copy engine; in fetch_test.cc, the HTTP fetcher), without Node: random plans over a
// random file, loaded to host memory (and to GPU 0 when there is one) with and without
// plaid, several reader counts and chunk sizes, and as copy-on-write mappings of the file
// (--mmap, with and without hashes); every byte is checked. Also: truncated
// files, a file that changed size, and plans that do not fit. Exit 0 when all pass.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../src/hash.h"
#include "../src/loader.h"

#include "check.h"

int passed = 0, failed = 0;

int main() {
  deviceSimForkTests();
  char path[] = "/tmp/tensorize-native-test-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 2;
  std::mt19937_64 rng(42);
  std::vector<uint8_t> file(3 * 1024 * 1024 + 123);
  for (auto& b : file) b = static_cast<uint8_t>(rng());
  if (write(fd, file.data(), file.size()) != static_cast<ssize_t>(file.size())) return 2;
  close(fd);

  tz::RuntimeInfo info = tz::runtimeInfo();
  std::vector<int> devices = {-1};
  if (info.deviceCount > 0) devices.push_back(0);
  std::printf("device backend: %s, devices: %d%s\n", info.backend.c_str(), info.deviceCount, info.cudaError.empty() ? "" : (" (" + info.cudaError + ")").c_str());
  // On a GPU machine a missing device fails the run instead of skipping the GPU rounds.
  const char* require = getenv("TENSORIZE_REQUIRE_GPU");
  CHECK(!(require && std::string(require) == "1" && info.deviceCount == 0), "TENSORIZE_REQUIRE_GPU=1: a CUDA device is usable");

  for (int round = 0; round < 40; round++) {
    // A random plan: tensors at random file ranges, packed at 256-byte aligned destinations.
    tz::Spec s;
    s.path = path;
    uint64_t dst = 0;
    int n = 1 + rng() % 20;
    for (int i = 0; i < n; i++) {
      uint64_t len = rng() % 4 == 0 ? 0 : rng() % (rng() % 2 ? 300000 : 3000);
      uint64_t src = rng() % (file.size() - len + 1);
      s.items.push_back({src, len, dst});
      dst += (len + 255) / 256 * 256;
    }
    s.total = dst;
    s.expectSize = static_cast<int64_t>(file.size());
    for (int device : devices) {
      for (bool plaid : {true, false}) {
        s.device = device;
        s.plaid = plaid;
        s.readers = 1 + rng() % 4;
        s.chunk = (rng() % 3 == 0) ? 4096 : (64 << 10);
        std::atomic<uint64_t> progress{0};
        s.progress = &progress;
        tz::Error err;
        tz::Loaded* l = tz::load(s, err);
        std::string what = "round " + std::to_string(round) + " device " + std::to_string(device) + (plaid ? " plaid" : " simple");
        CHECK(l != nullptr, (what + ": " + tz::codeName(err.code) + " " + err.message).c_str());
        if (!l) continue;
        bool same = true;
        uint64_t total = 0;
        for (auto& it : s.items) {
          std::vector<uint8_t> back(it.len);
          tz::Error e = l->read(it.dst, it.len, back.data());
          same = same && e.ok() && (it.len == 0 || std::memcmp(back.data(), file.data() + it.src, it.len) == 0);
          total += it.len;
        }
        CHECK(same, (what + ": bytes").c_str());
        CHECK(progress.load() == total, (what + ": progress").c_str());
        CHECK(l->stats.bytes == total, (what + ": stats.bytes").c_str());
        delete l;
      }
    }
  }

  // --mmap: the file itself is the destination; tensors at their file offsets, hashed in place.
  for (int round = 0; round < 30; round++) {
    tz::Spec s;
    s.path = path;
    s.mmap = true;
    s.verify = round % 2 == 0;
    s.total = file.size();
    s.expectSize = static_cast<int64_t>(file.size());
    s.readers = 1 + rng() % 4;
    s.chunk = (rng() % 3 == 0) ? 4096 : (64 << 10);
    int n = 1 + rng() % 20;
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
      uint64_t len = rng() % 4 == 0 ? 0 : rng() % (rng() % 2 ? 300000 : 3000);
      uint64_t src = rng() % (file.size() - len + 1);
      s.items.push_back({src, len, src});
      total += len;
      if (s.verify) {
        tz::Expect x;
        x.prefix = std::string(rng() % 100, static_cast<char>('a' + i % 26));
        x.crc = rng() % 4 != 0;
        x.sha = !x.crc || rng() % 2;
        x.crc32 = tz::crc32(tz::crc32(0, x.prefix.data(), x.prefix.size()), file.data() + src, len);
        tz::Sha256 h;
        h.update(x.prefix.data(), x.prefix.size());
        h.update(file.data() + src, len);
        h.final(x.sha256);
        s.expect.push_back(std::move(x));
      }
    }
    std::atomic<uint64_t> progress{0};
    s.progress = &progress;
    std::string what = "mmap round " + std::to_string(round) + (s.verify ? " verify" : "");
    tz::Error err;
    tz::Loaded* l = tz::load(s, err);
    CHECK(l != nullptr, (what + ": " + tz::codeName(err.code) + " " + err.message).c_str());
    if (l) {
      CHECK(l->size == file.size() && std::memcmp(l->base, file.data(), file.size()) == 0, (what + ": the mapping is the file").c_str());
      CHECK(progress.load() == total && l->stats.bytes == total, (what + ": progress and bytes").c_str());
      CHECK(l->stats.mappedBytes == file.size() && l->stats.hostBytes == 0, (what + ": mapped, not allocated").c_str());
      static_cast<uint8_t*>(l->base)[0] ^= 1;  // copy-on-write: the file keeps its byte
      delete l;
    }
    if (s.verify) {
      size_t victim = rng() % s.items.size();
      s.expect[victim].sha256[rng() % 32] ^= 1;
      s.expect[victim].crc32 ^= 1;
      err = {};
      CHECK(tz::load(s, err) == nullptr && err.code == Code::E_HASH_MISMATCH && err.tensor == static_cast<int64_t>(victim), (what + ": a wrong hash names its tensor").c_str());
    }
  }
  {
    std::vector<uint8_t> back(file.size());
    int rfd = open(path, O_RDONLY);
    CHECK(rfd >= 0 && pread(rfd, back.data(), back.size(), 0) == static_cast<ssize_t>(back.size()) && back == file, "writes to a mapping never reach the file");
    if (rfd >= 0) close(rfd);
    tz::Spec s;
    s.path = path;
    s.mmap = true;
    s.total = file.size();
    s.items = {{100, 10, 0}};
    tz::Error err;
    CHECK(tz::load(s, err) == nullptr && err.code == Code::E_USAGE, "mmap: a destination other than the file offset is refused");
    s.items = {{file.size() - 5, 10, file.size() - 5}};
    err = {};
    CHECK(tz::load(s, err) == nullptr && err.code == Code::E_USAGE, "mmap: a range past the end of the file is refused");
    s.items = {{0, 10, 0}};
    s.total = file.size() + 4096;
    err = {};
    CHECK(tz::load(s, err) == nullptr && err.code == Code::E_USAGE, "mmap: total must be the file size");
    s.total = file.size();
    s.device = 0;
    err = {};
    CHECK(tz::load(s, err) == nullptr && (err.code == Code::E_USAGE || err.code == Code::E_NO_DEVICE), "mmap: host memory only");
  }

  for (int device : devices) {
    tz::Spec s;
    s.path = path;
    s.device = device;
    s.items = {{file.size() - 100, 200, 0}};  // runs past the end of the file
    s.total = 256;
    tz::Error err;
    CHECK(tz::load(s, err) == nullptr && err.code == Code::E_FILE_CHANGED, "a range past the end is a short read");
    s.items = {{0, 100, 0}};
    s.expectSize = 5;
    err = {};
    CHECK(tz::load(s, err) == nullptr && err.code == Code::E_FILE_CHANGED, "a size change is detected");
    s.expectSize = -1;
    s.items = {{0, 300, 0}};
    err = {};
    CHECK(tz::load(s, err) == nullptr && err.code == Code::E_USAGE, "a destination past the allocation is refused");
    s.path = "/nonexistent/file";
    s.items = {{0, 10, 0}};
    err = {};
    CHECK(tz::load(s, err) == nullptr && err.code == Code::E_NOT_FOUND, "a missing file");
  }
  if (info.deviceCount > 0) {
    tz::Spec s;
    s.path = path;
    s.device = 0;
    s.items = {{0, 10, 0}};
    s.total = (1ull << 50);  // a petabyte
    tz::Error err;
    CHECK(tz::load(s, err) == nullptr && err.code == Code::E_DEVICE_OOM, "out of device memory is E_DEVICE_OOM");
  }
  unlink(path);
  hashAndCopyTests();
  fetchTests();
  fetchCryptTests();
  cacheTests();
  deviceCudaTests();
  deviceSimTests();
  streamCoreTests();
  pieceHasherTests();
  configTests();
  loaderFilesTests();
  hashGroupsTests();
  cryptTests();
  copyCryptTests();
  loaderCryptTests();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
