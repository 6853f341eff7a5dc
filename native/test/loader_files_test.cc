// The loader over several files at once (a sharded checkpoint): random plans whose items
// come from any of three files, loaded to host memory (and GPU 0 when there is one), with
// and without plaid and hashes, and --mmap with each file mapped at its own place in one
// region; every byte checked. Also: a missing file, a file of another size than its index
// said, an item naming no file, and mappings that do not fit.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../src/hash.h"
#include "../src/loader.h"
#include "check.h"

namespace {

struct TempFile {
  std::string path;
  std::vector<uint8_t> bytes;
  TempFile(std::mt19937_64& rng, size_t size) {
    char p[] = "/tmp/tensorize-files-test-XXXXXX";
    int fd = mkstemp(p);
    path = p;
    bytes.resize(size);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    if (fd >= 0) {
      if (write(fd, bytes.data(), size) != static_cast<ssize_t>(size)) path.clear();
      close(fd);
    }
  }
  ~TempFile() { unlink(path.c_str()); }
};

tz::Expect expectOf(const uint8_t* p, uint64_t len, std::mt19937_64& rng) {
  tz::Expect x;
  x.prefix = std::string(rng() % 50, 'p');
  x.crc = rng() % 3 != 0;
  x.sha = !x.crc || rng() % 2;
  x.crc32 = tz::crc32(tz::crc32(0, x.prefix.data(), x.prefix.size()), p, len);
  tz::Sha256 h;
  h.update(x.prefix.data(), x.prefix.size());
  h.update(p, len);
  h.final(x.sha256);
  return x;
}

}  // namespace

void loaderFilesTests() {
  std::mt19937_64 rng(7);
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  TempFile a(rng, 1024 * 1024 + 17), b(rng, 3 * page), c(rng, 250000);
  const std::vector<TempFile*> fs = {&a, &b, &c};
  CHECK(!a.path.empty() && !b.path.empty() && !c.path.empty(), "files: temp files written");
  std::vector<tz::FileIn> files;
  for (auto* f : fs) files.push_back({f->path, static_cast<int64_t>(f->bytes.size()), 0});
  std::vector<int> devices = {-1};
  if (tz::runtimeInfo().deviceCount > 0) devices.push_back(0);

  for (int round = 0; round < 24; round++) {
    tz::Spec s;
    s.files = files;
    s.verify = round % 3 == 0;
    uint64_t dst = 0;
    int n = 1 + rng() % 24;
    for (int i = 0; i < n; i++) {
      const uint32_t f = static_cast<uint32_t>(rng() % fs.size());
      const std::vector<uint8_t>& bytes = fs[f]->bytes;
      uint64_t len = rng() % 5 == 0 ? 0 : rng() % std::min<uint64_t>(bytes.size(), rng() % 2 ? 200000 : 3000);
      uint64_t src = rng() % (bytes.size() - len + 1);
      s.items.push_back({src, len, dst, f});
      if (s.verify) s.expect.push_back(expectOf(bytes.data() + src, len, rng));
      dst += (len + 255) / 256 * 256;
    }
    s.total = dst;
    for (int device : devices) {
      for (bool plaid : {true, false}) {
        s.device = device;
        s.plaid = plaid;
        s.readers = 1 + rng() % 4;
        s.chunk = rng() % 2 ? 4096 : (64 << 10);
        const std::string what = "files round " + std::to_string(round) + " device " + std::to_string(device) + (plaid ? " plaid" : " simple") + (s.verify ? " verify" : "");
        tz::Error err;
        tz::Loaded* l = tz::load(s, err);
        CHECK(l != nullptr, (what + ": " + tz::codeName(err.code) + " " + err.message).c_str());
        if (!l) continue;
        bool same = true;
        for (const tz::Item& it : s.items) {
          std::vector<uint8_t> back(it.len);
          same = same && l->read(it.dst, it.len, back.data()).ok() && (it.len == 0 || std::memcmp(back.data(), fs[it.file]->bytes.data() + it.src, it.len) == 0);
        }
        CHECK(same, (what + ": every item's bytes from its own file").c_str());
        delete l;
      }
    }
    if (s.verify && !s.items.empty()) {
      // A wrong hash names its item, whichever file it is in.
      size_t victim = rng() % s.items.size();
      s.expect[victim].sha256[0] ^= 1;
      s.expect[victim].crc32 ^= 1;
      s.device = -1;
      s.plaid = true;
      tz::Error err;
      CHECK(tz::load(s, err) == nullptr && err.code == Code::E_HASH_MISMATCH && err.tensor == static_cast<int64_t>(victim), "files: a wrong hash names its tensor");
    }
  }

  // --mmap: the three files side by side in one region, each at a page-aligned place.
  std::vector<tz::FileIn> mapped = files;
  uint64_t at = 0;
  for (auto& f : mapped) {
    f.mapAt = at;
    at += (static_cast<uint64_t>(f.expectSize) + page - 1) / page * page;
  }
  for (int round = 0; round < 12; round++) {
    tz::Spec s;
    s.files = mapped;
    s.mmap = true;
    s.verify = round % 2 == 1;
    s.total = at;
    s.readers = 1 + rng() % 3;
    s.chunk = rng() % 2 ? 4096 : (64 << 10);
    int n = 1 + rng() % 16;
    for (int i = 0; i < n; i++) {
      const uint32_t f = static_cast<uint32_t>(rng() % fs.size());
      const std::vector<uint8_t>& bytes = fs[f]->bytes;
      uint64_t len = rng() % std::min<uint64_t>(bytes.size(), 100000);
      uint64_t src = rng() % (bytes.size() - len + 1);
      s.items.push_back({src, len, mapped[f].mapAt + src, f});
      if (s.verify) s.expect.push_back(expectOf(bytes.data() + src, len, rng));
    }
    const std::string what = "files mmap round " + std::to_string(round) + (s.verify ? " verify" : "");
    tz::Error err;
    tz::Loaded* l = tz::load(s, err);
    CHECK(l != nullptr, (what + ": " + tz::codeName(err.code) + " " + err.message).c_str());
    if (!l) continue;
    bool same = true;
    for (size_t k = 0; k < fs.size(); k++) same = same && std::memcmp(static_cast<uint8_t*>(l->base) + mapped[k].mapAt, fs[k]->bytes.data(), fs[k]->bytes.size()) == 0;
    CHECK(same, (what + ": each file is mapped at its place").c_str());
    CHECK(l->stats.mappedBytes == a.bytes.size() + b.bytes.size() + c.bytes.size() && l->stats.hostBytes == 0, (what + ": mapped bytes").c_str());
    static_cast<uint8_t*>(l->base)[mapped[2].mapAt] ^= 1;  // copy-on-write
    delete l;
  }
  {
    int fd = open(c.path.c_str(), O_RDONLY);
    uint8_t first = 0;
    CHECK(fd >= 0 && pread(fd, &first, 1, 0) == 1 && first == c.bytes[0], "files mmap: a write to the mapping never reaches the file");
    if (fd >= 0) close(fd);
  }

  // Bad plans and files: a clear error, nothing loaded. (Each spec built in place: a Spec,
  // holding its crypt keys, is neither copied nor moved.)
  auto fails = [&](const tz::Spec& s, Code code, const std::string& needle, const char* what) {
    tz::Error err;
    tz::Loaded* l = tz::load(s, err);
    CHECK(l == nullptr && err.code == code && err.message.find(needle) != std::string::npos, (std::string(what) + ": " + tz::codeName(err.code) + " " + err.message).c_str());
    delete l;
  };
  auto base = [&](tz::Spec& s) {
    s.files = files;
    s.items = {{0, 100, 0, 0}, {0, 100, 256, 2}};
    s.total = 512;
  };
  {
    tz::Spec s;
    base(s);
    s.files[1].path = "/nonexistent/shard-2.safetensors";
    fails(s, Code::E_NOT_FOUND, "/nonexistent/shard-2.safetensors", "files: a missing file is named");
  }
  {
    tz::Spec s;
    base(s);
    s.files[2].expectSize += 1;
    fails(s, Code::E_FILE_CHANGED, c.path, "files: a file of another size than its index said is named");
  }
  {
    tz::Spec s;
    base(s);
    s.items.push_back({0, 1, 0, 3});
    fails(s, Code::E_USAGE, "not in the list", "files: an item naming no file");
  }
  auto m = [&](tz::Spec& s) {
    base(s);
    s.files = mapped;
    s.mmap = true;
    s.total = at;
    s.items = {{5, 10, mapped[1].mapAt + 5, 1}};
  };
  {
    tz::Spec s;
    m(s);
    s.files[2].mapAt = mapped[1].mapAt;
    fails(s, Code::E_USAGE, "overlap", "files mmap: overlapping files");
  }
  {
    tz::Spec s;
    m(s);
    s.files[2].mapAt += 1;
    fails(s, Code::E_USAGE, "page-aligned", "files mmap: a misaligned place");
  }
  {
    tz::Spec s;
    m(s);
    s.items[0].dst += 1;
    fails(s, Code::E_USAGE, "its offset in its file's mapping", "files mmap: an item away from its file's place");
  }
}
