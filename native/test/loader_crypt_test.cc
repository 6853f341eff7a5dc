// Encrypted items in the loader (loader_run.h): random files whose items are sealed in place
// (crypt::seal) at random chunk sizes (multiples of 64 from 1 KiB to ~64 KiB: larger than
// the load's chunk size, smaller, not dividing it), mixed with plain and zero-length items,
// loaded in every mode (host --plaid and simple, --mmap, GPU --plaid and simple when there is
// a device), with and without --verify (SHA-256/CRC32 over prefix + plaintext) and with a hash
// group, several readers and small chunk sizes so that items span many pieces: every byte of
// every item checked against its plaintext (with --mmap the rest of the file too), progress
// and the mapping's stats. Failures: a flipped ciphertext bit, a flipped MAC, a wrong key ->
// E_DECRYPT naming that item in every mode, nothing left allocated on the simulated device;
// a plan that does not fit its items (E_USAGE); --mmap with an encrypted item overlapping
// another (E_USAGE).
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../src/crypt.h"
#include "../src/device.h"
#include "../src/hash.h"
#include "../src/loader.h"
#include "check.h"

namespace {

using tz::crypt::kMacBytes;

struct Sealed {
  uint64_t src = 0, len = 0;
  std::vector<uint8_t> plain;
  int32_t key = -1;  // -1: not encrypted
  uint64_t chunk = 0;
  uint8_t nonce[24] = {};
  std::string macs;
};

// A file of items at random places (random bytes between them), about two thirds of them
// encrypted under one of `keys`.
struct CryptFile {
  std::string path;
  std::vector<uint8_t> bytes;  // as on disk: ciphertext for the encrypted items
  std::vector<Sealed> items;
  CryptFile(std::mt19937_64& rng, const std::vector<std::array<uint8_t, 32>>& keys, int n, uint64_t maxLen) {
    auto rand = [&](uint64_t k) { return rng() % k; };
    std::vector<uint8_t> gap;
    for (int i = 0; i < n; i++) {
      for (uint64_t g = rand(3) == 0 ? 0 : rand(700); g > 0; g--) bytes.push_back(static_cast<uint8_t>(rng()));
      Sealed s;
      s.src = bytes.size();
      s.len = rand(6) == 0 ? 0 : 1 + rand(rand(3) == 0 ? 3000 : maxLen);
      s.plain.resize(s.len);
      for (auto& b : s.plain) b = static_cast<uint8_t>(rng());
      std::vector<uint8_t> data = s.plain;
      if (rand(3) != 0) {
        s.key = static_cast<int32_t>(rand(keys.size()));
        s.chunk = 64 * (16 + rand(1009));  // 1 KiB to 65,536 + 960 bytes
        for (auto& b : s.nonce) b = static_cast<uint8_t>(rng());
        s.macs.assign(kMacBytes * ((s.len + s.chunk - 1) / s.chunk), '\0');
        tz::Error e = tz::crypt::seal(keys[s.key].data(), s.nonce, s.chunk, s.len, 0, data.data(), s.len, reinterpret_cast<uint8_t*>(&s.macs[0]));
        CHECK(e.ok(), "crypt loader: seal");
      }
      bytes.insert(bytes.end(), data.begin(), data.end());
      items.push_back(std::move(s));
    }
    for (uint64_t g = rand(5000); g > 0; g--) bytes.push_back(static_cast<uint8_t>(rng()));
    write(bytes);
  }
  ~CryptFile() {
    if (!path.empty()) unlink(path.c_str());
  }
  // (Re)writes the file with these bytes.
  void write(const std::vector<uint8_t>& b) {
    if (path.empty()) {
      char p[] = "/tmp/tensorize-crypt-loader-test-XXXXXX";
      int fd = mkstemp(p);
      if (fd < 0) return;
      close(fd);
      path = p;
    }
    int fd = open(path.c_str(), O_WRONLY | O_TRUNC);
    bool ok = fd >= 0 && ::write(fd, b.data(), b.size()) == static_cast<ssize_t>(b.size());
    if (fd >= 0) close(fd);
    CHECK(ok, "crypt loader: temp file written");
  }
};

struct Mode {
  const char* name;
  int device;
  bool plaid, mmap;
};

// The spec of a load of every item of f (filled in place: a Spec is neither copied nor moved).
void fill(tz::Spec& s, const CryptFile& f, const std::vector<std::array<uint8_t, 32>>& keys, const Mode& m, std::mt19937_64& rng, bool verify) {
  s.path = f.path;
  s.expectSize = static_cast<int64_t>(f.bytes.size());
  s.device = m.device;
  s.plaid = m.plaid;
  s.mmap = m.mmap;
  s.verify = verify;
  s.readers = 1 + static_cast<int>(rng() % 4);
  const uint64_t chunks[] = {4096, 5000, 12288, 64 << 10};
  s.chunk = chunks[rng() % 4];
  uint64_t dst = 0;
  for (const Sealed& it : f.items) {
    s.items.push_back({it.src, it.len, m.mmap ? it.src : dst});
    dst += (it.len + 255) / 256 * 256;
    if (verify) {
      tz::Expect x;
      x.prefix = std::string(rng() % 40, 'h');
      x.crc = rng() % 3 != 0;
      x.sha = !x.crc || rng() % 2;
      x.crc32 = tz::crc32(0, x.prefix.data(), x.prefix.size());
      if (it.len) x.crc32 = tz::crc32(x.crc32, it.plain.data(), it.len);  // (no null pointers, even for 0 bytes)
      tz::Sha256 h;
      h.update(x.prefix.data(), x.prefix.size());
      if (it.len) h.update(it.plain.data(), it.len);
      h.final(x.sha256);
      s.expect.push_back(std::move(x));
    }
  }
  s.total = m.mmap ? f.bytes.size() : dst;
  for (auto& k : keys) s.crypt.keys.add(k.data());
  s.crypt.items.resize(f.items.size());
  for (size_t i = 0; i < f.items.size(); i++) {
    const Sealed& it = f.items[i];
    tz::crypt::ItemCrypt& c = s.crypt.items[i];
    if (it.key < 0) continue;
    c.key = it.key;
    c.chunk = it.chunk;
    std::memcpy(c.nonce, it.nonce, sizeof c.nonce);
    c.macs = it.macs;
  }
}

// Nothing held on the simulated device (always true on a real one: its counts are zero).
bool nothingHeld() {
  tz::dev::SimCounts c = tz::dev::simCounts();
  return c.allocations == 0 && c.registrations == 0 && c.streams == 0 && c.events == 0 && c.deviceBytes == 0;
}

}  // namespace

void loaderCryptTests() {
  CHECK(tz::crypt::init().ok(), "crypt loader: libsodium");
  std::mt19937_64 rng(2024);
  std::vector<std::array<uint8_t, 32>> keys(3);
  for (auto& k : keys)
    for (auto& b : k) b = static_cast<uint8_t>(rng());
  std::vector<Mode> modes = {{"host plaid", -1, true, false}, {"host simple", -1, false, false}, {"mmap", -1, true, true}};
  if (tz::runtimeInfo().deviceCount > 0) {
    modes.push_back({"device plaid", 0, true, false});
    modes.push_back({"device simple", 0, false, false});
  }
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

  // Every byte in every mode.
  for (int round = 0; round < 8; round++) {
    CryptFile f(rng, keys, 4 + static_cast<int>(rng() % 14), round % 2 ? 300000 : 40000);
    uint64_t encryptedBytes = 0;
    for (auto& it : f.items) encryptedBytes += it.key >= 0 ? it.len : 0;
    for (const Mode& m : modes) {
      for (int v = 0; v < 3; v++) {
        // v: 0 plain, 1 --verify, 2 a hash group over every item (prefix + plaintexts in order)
        tz::Spec s;
        fill(s, f, keys, m, rng, v == 1);
        if (v == 2) {
          tz::HashGroup g;
          g.prefix = "group prefix";
          tz::Sha256 h;
          h.update(g.prefix.data(), g.prefix.size());
          for (uint32_t i = 0; i < f.items.size(); i++) {
            g.items.push_back(i);
            if (f.items[i].len) h.update(f.items[i].plain.data(), f.items[i].len);
          }
          h.final(g.sha256);
          s.groups.push_back(std::move(g));
        }
        std::atomic<uint64_t> progress{0};
        s.progress = &progress;
        const std::string what = "crypt loader round " + std::to_string(round) + " " + m.name + (v == 1 ? " verify" : v == 2 ? " group" : "") +
                                 " readers " + std::to_string(s.readers) + " chunk " + std::to_string(s.chunk);
        tz::Error err;
        tz::Loaded* l = tz::load(s, err);
        CHECK(l != nullptr, (what + ": " + tz::codeName(err.code) + " " + err.message).c_str());
        if (!l) continue;
        bool same = true;
        uint64_t total = 0;
        for (size_t i = 0; i < f.items.size(); i++) {
          const tz::Item& it = s.items[i];
          std::vector<uint8_t> back(it.len);
          same = same && l->read(it.dst, it.len, back.data()).ok() && (it.len == 0 || std::memcmp(back.data(), f.items[i].plain.data(), it.len) == 0);
          total += it.len;
        }
        CHECK(same, (what + ": every item's plaintext").c_str());
        CHECK(progress.load() == total && l->stats.bytes == total, (what + ": progress and bytes").c_str());
        if (m.mmap) {
          // The rest of the file as it is; the encrypted items' pages private, the rest mapped.
          std::vector<uint8_t> want = f.bytes;
          for (auto& it : f.items) std::copy(it.plain.begin(), it.plain.end(), want.begin() + static_cast<long>(it.src));
          CHECK(std::memcmp(l->base, want.data(), want.size()) == 0, (what + ": the whole mapping").c_str());
          const uint64_t mapped = l->stats.mappedBytes, host = l->stats.hostBytes;
          size_t encrypted = 0;
          for (auto& it : f.items) encrypted += it.key >= 0 && it.len > 0;
          CHECK(mapped + host == f.bytes.size() && host >= encryptedBytes && host <= encryptedBytes + 2 * page * encrypted,
                (what + ": mappedBytes " + std::to_string(mapped) + " + hostBytes " + std::to_string(host) + " = the file").c_str());
          CHECK((encryptedBytes == 0) == (host == 0), (what + ": private bytes only for encrypted items").c_str());
        }
        delete l;
        CHECK(nothingHeld(), (what + ": nothing left on the device").c_str());
      }
    }

    // The file itself is untouched (MAP_PRIVATE).
    {
      std::vector<uint8_t> back(f.bytes.size());
      int fd = open(f.path.c_str(), O_RDONLY);
      CHECK(fd >= 0 && pread(fd, back.data(), back.size(), 0) == static_cast<ssize_t>(back.size()) && back == f.bytes, "crypt loader: the file is unchanged");
      if (fd >= 0) close(fd);
    }

    // Failures: the victim, an encrypted item with data; a flipped ciphertext bit (in the
    // file), a flipped MAC byte, a wrong key.
    std::vector<size_t> victims;
    for (size_t i = 0; i < f.items.size(); i++)
      if (f.items[i].key >= 0 && f.items[i].len > 0) victims.push_back(i);
    if (victims.empty()) continue;
    for (int kind = 0; kind < 3; kind++) {
      const size_t victim = victims[rng() % victims.size()];
      const Sealed& vi = f.items[victim];
      const uint64_t at = rng() % vi.len;  // a byte of the item
      if (kind == 0) {
        std::vector<uint8_t> bad = f.bytes;
        bad[vi.src + at] ^= static_cast<uint8_t>(1u << (rng() % 8));
        f.write(bad);
      }
      const char* kinds[] = {"a flipped ciphertext bit", "a flipped MAC", "a wrong key"};
      for (const Mode& m : modes) {
        for (bool verify : {false, true}) {
          tz::Spec s;
          fill(s, f, keys, m, rng, verify);
          if (kind == 0) s.expectSize = static_cast<int64_t>(f.bytes.size());
          if (kind == 1) s.crypt.items[victim].macs[kMacBytes * (at / vi.chunk) + rng() % kMacBytes] ^= 0x10;
          if (kind == 2) s.crypt.items[victim].key = (vi.key + 1) % 3;
          const std::string what = std::string("crypt loader round ") + std::to_string(round) + " " + m.name + (verify ? " verify" : "") + ": " + kinds[kind];
          tz::Error err;
          tz::Loaded* l = tz::load(s, err);
          CHECK(l == nullptr && err.code == Code::E_DECRYPT && err.tensor == static_cast<int64_t>(victim) && err.message.find("decryption failed at chunk") != std::string::npos,
                (what + " is E_DECRYPT naming item " + std::to_string(victim) + ": " + tz::codeName(err.code) + " item " + std::to_string(err.tensor) + " " + err.message).c_str());
          delete l;
          CHECK(nothingHeld(), (what + ": the destination freed").c_str());
        }
      }
      if (kind == 0) f.write(f.bytes);
    }
  }

  // Plans that do not fit their items, and --mmap with an encrypted item overlapping another.
  {
    CryptFile f(rng, keys, 6, 20000);
    size_t victim = f.items.size();
    for (size_t i = 0; i < f.items.size(); i++)
      if (f.items[i].key >= 0 && f.items[i].len > 0) victim = i;
    if (victim < f.items.size()) {
      {
        tz::Spec s;
        fill(s, f, keys, modes[0], rng, false);
        s.crypt.items[victim].macs.pop_back();
        tz::Error err;
        CHECK(tz::load(s, err) == nullptr && err.code == Code::E_USAGE && err.tensor == static_cast<int64_t>(victim), ("crypt loader: MACs that do not fit: " + err.message).c_str());
      }
      {
        tz::Spec s;
        fill(s, f, keys, modes[0], rng, false);
        s.crypt.items.pop_back();
        tz::Error err;
        CHECK(tz::load(s, err) == nullptr && err.code == Code::E_USAGE, ("crypt loader: one crypt entry per item: " + err.message).c_str());
      }
      {
        tz::Spec s;
        fill(s, f, keys, modes[2], rng, false);
        const tz::Item& v = s.items[victim];
        s.items.push_back({v.src + v.len / 2, 1, v.dst + v.len / 2});
        s.crypt.items.emplace_back();
        tz::Error err;
        CHECK(tz::load(s, err) == nullptr && err.code == Code::E_USAGE && err.message.find("overlaps") != std::string::npos, ("crypt loader: mmap overlap: " + err.message).c_str());
      }
    }
  }
}
