// Hash groups (loader.h HashGroup): whole-file SHA-256s checked while the data streams.
// Random files, each a "shard": its first bytes the group's prefix, then items that tile
// the rest of the file in order (some empty), the groups' items interleaved in the plan
// (each group's in its own order), plus items in no group. Every loader mode (host
// --plaid and simple, --mmap, GPU --plaid and simple when there is a device), small
// chunks so that groups span many pieces, several groups at once; every byte checked.
// Also: a wrong expected hash names its group (and the computed value), a group whose
// items are out of plan order, an item in two groups or out of range, verify with groups.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../src/hash.h"
#include "../src/loader.h"
#include "check.h"

namespace {

struct Shard {
  std::string path;
  std::vector<uint8_t> bytes;
  uint64_t prefix = 0;  // the group's prefix: bytes [0, prefix)
  uint8_t sha[32] = {};
  Shard(std::mt19937_64& rng, size_t size) {
    char p[] = "/tmp/tensorize-groups-test-XXXXXX";
    int fd = mkstemp(p);
    path = p;
    bytes.resize(size);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    if (fd >= 0) {
      if (write(fd, bytes.data(), size) != static_cast<ssize_t>(size)) path.clear();
      close(fd);
    }
    prefix = 8 + rng() % 600;
    tz::Sha256 h;
    h.update(bytes.data(), bytes.size());
    h.final(sha);
  }
  ~Shard() { unlink(path.c_str()); }
};

// Items tiling [from, to) of file f in order (about a third of them empty, some large).
std::vector<tz::Item> tiles(std::mt19937_64& rng, uint32_t f, uint64_t from, uint64_t to) {
  std::vector<tz::Item> out;
  for (uint64_t pos = from; pos < to;) {
    uint64_t len = rng() % 3 == 0 ? 0 : 1 + rng() % (rng() % 4 == 0 ? 200000 : 20000);
    len = std::min(len, to - pos);
    out.push_back({pos, len, 0, f});
    pos += len;
  }
  return out;
}

// A spec over the shards: groups over `grouped` of them (whole files), items of the others
// in no group; the items interleaved at random, each group's kept in file order.
// (Filled in place: a Spec, holding its crypt keys, is neither copied nor moved.)
void specOf(tz::Spec& s, std::mt19937_64& rng, const std::vector<Shard*>& shards, const std::vector<bool>& grouped) {
  std::vector<std::vector<tz::Item>> per;
  for (uint32_t f = 0; f < shards.size(); f++) {
    s.files.push_back({shards[f]->path, static_cast<int64_t>(shards[f]->bytes.size()), 0});
    per.push_back(tiles(rng, f, grouped[f] ? shards[f]->prefix : rng() % 1000, shards[f]->bytes.size()));
  }
  std::vector<size_t> next(shards.size(), 0);
  std::vector<int64_t> groupOf(shards.size(), -1);
  for (uint32_t f = 0; f < shards.size(); f++)
    if (grouped[f]) {
      groupOf[f] = static_cast<int64_t>(s.groups.size());
      tz::HashGroup g;
      std::memcpy(g.sha256, shards[f]->sha, 32);
      g.prefix.assign(reinterpret_cast<const char*>(shards[f]->bytes.data()), shards[f]->prefix);
      s.groups.push_back(std::move(g));
    }
  for (;;) {
    std::vector<uint32_t> open;
    for (uint32_t f = 0; f < shards.size(); f++)
      if (next[f] < per[f].size()) open.push_back(f);
    if (open.empty()) break;
    const uint32_t f = open[rng() % open.size()];
    const uint32_t n = static_cast<uint32_t>(1 + rng() % 4);
    for (uint32_t k = 0; k < n && next[f] < per[f].size(); k++) {
      tz::Item it = per[f][next[f]++];
      it.dst = s.total;
      s.total += (it.len + 63) / 64 * 64;
      if (groupOf[f] >= 0) s.groups[groupOf[f]].items.push_back(static_cast<uint32_t>(s.items.size()));
      s.items.push_back(it);
    }
  }
}

bool sameBytes(const tz::Loaded& l, const tz::Spec& s, const std::vector<Shard*>& shards) {
  for (const tz::Item& it : s.items) {
    std::vector<uint8_t> back(it.len);
    if (!l.read(it.dst, it.len, back.data()).ok()) return false;
    if (it.len && std::memcmp(back.data(), shards[it.file]->bytes.data() + it.src, it.len) != 0) return false;
  }
  return true;
}

struct Mode {
  const char* name;
  int device;
  bool plaid, mmap;
};

// --mmap: each file at its own page-aligned place, every item's dst its place in the mapping.
void mapSpec(tz::Spec& s) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t at = 0;
  for (auto& f : s.files) {
    f.mapAt = at;
    at += (static_cast<uint64_t>(f.expectSize) + page - 1) / page * page;
  }
  for (auto& it : s.items) it.dst = s.files[it.file].mapAt + it.src;
  s.total = at;
  s.mmap = true;
}

}  // namespace

void hashGroupsTests() {
  std::mt19937_64 rng(16);
  Shard a(rng, 1024 * 1024 + 17), b(rng, 300001), c(rng, 70001);
  const std::vector<Shard*> shards = {&a, &b, &c};
  CHECK(!a.path.empty() && !b.path.empty() && !c.path.empty(), "groups: temp files written");
  std::vector<Mode> modes = {{"host plaid", -1, true, false}, {"host simple", -1, false, false}, {"mmap", -1, true, true}};
  if (tz::runtimeInfo().deviceCount > 0) {
    modes.push_back({"device plaid", 0, true, false});
    modes.push_back({"device simple", 0, false, false});
  }
  for (int round = 0; round < 6; round++) {
    // Rounds 0-3: a and b grouped (c in no group); 4-5: all three.
    const std::vector<bool> grouped = {true, true, round >= 4};
    for (const Mode& m : modes) {
      tz::Spec s;
      specOf(s, rng, shards, grouped);
      if (m.mmap) mapSpec(s);
      s.device = m.device;
      s.plaid = m.plaid;
      s.readers = 1 + static_cast<int>(rng() % 4);
      s.chunk = round % 2 ? 4096 : (64 << 10);
      const std::string what = std::string("groups round ") + std::to_string(round) + " " + m.name + " chunk " + std::to_string(s.chunk);
      tz::Error err;
      tz::Loaded* l = tz::load(s, err);
      CHECK(l != nullptr, (what + ": " + tz::codeName(err.code) + " " + err.message).c_str());
      if (l) CHECK(sameBytes(*l, s, shards), (what + ": every item's bytes").c_str());
      delete l;

      // A wrong expected hash: E_HASH_MISMATCH naming the group, with both values.
      const uint32_t victim = static_cast<uint32_t>(rng() % s.groups.size());
      s.groups[victim].sha256[rng() % 32] ^= static_cast<uint8_t>(1 << (rng() % 8));
      err = {};
      l = tz::load(s, err);
      CHECK(l == nullptr && err.code == Code::E_HASH_MISMATCH && err.group && err.tensor == victim, (what + ": a wrong hash names its group: " + err.message).c_str());
      CHECK(err.message.find("hash group #" + std::to_string(victim)) != std::string::npos && err.message.find("computed " + tz::hex(shards[victim]->sha, 32)) != std::string::npos &&
                err.message.find("stored " + tz::hex(s.groups[victim].sha256, 32)) != std::string::npos,
            (what + ": the message says both hashes: " + err.message).c_str());
      delete l;
      std::memcpy(s.groups[victim].sha256, shards[victim]->sha, 32);

      // One byte of a shard's prefix wrong: the prefix is hashed first.
      s.groups[0].prefix[rng() % s.groups[0].prefix.size()] ^= 1;
      err = {};
      l = tz::load(s, err);
      CHECK(l == nullptr && err.code == Code::E_HASH_MISMATCH && err.group && err.tensor == 0, (what + ": the prefix counts").c_str());
      delete l;
      s.groups[0].prefix.assign(reinterpret_cast<const char*>(a.bytes.data()), a.prefix);

      // Two non-empty items of a group swapped in the group (out of plan order): E_USAGE.
      std::vector<uint32_t>& gi = s.groups[1].items;
      size_t x = 0, y = gi.size() - 1;
      while (x < y && !s.items[gi[x]].len) x++;
      while (y > x && !s.items[gi[y]].len) y--;
      if (x < y) {
        std::swap(gi[x], gi[y]);
        err = {};
        l = tz::load(s, err);
        CHECK(l == nullptr && err.code == Code::E_USAGE && err.message.find("hash group #1") != std::string::npos, (what + ": a group out of plan order: " + err.message).c_str());
        delete l;
        std::swap(gi[x], gi[y]);
      }
    }
  }

  // The groups' checks, once: an item in two groups, out of range, verify with groups.
  {
    tz::Spec s;
    specOf(s, rng, shards, {true, true, false});
    tz::Error err;
    s.groups[1].items.push_back(s.groups[0].items.back());
    CHECK(tz::load(s, err) == nullptr && err.code == Code::E_USAGE && err.message.find("already in hash group #0") != std::string::npos, ("an item in two groups: " + err.message).c_str());
    s.groups[1].items.back() = static_cast<uint32_t>(s.items.size());
    err = {};
    CHECK(tz::load(s, err) == nullptr && err.code == Code::E_USAGE && err.message.find("out of range") != std::string::npos, ("an item out of range: " + err.message).c_str());
    s.groups[1].items.pop_back();
    s.verify = true;
    s.expect.resize(s.items.size());
    err = {};
    CHECK(tz::load(s, err) == nullptr && err.code == Code::E_USAGE, "verify and groups together");
    s.verify = false;
    s.expect.clear();
    // A group of no items: its prefix alone (the SHA-256 of a.prefix's bytes).
    tz::HashGroup g;
    g.prefix = "only a prefix";
    tz::Sha256 h;
    h.update(g.prefix.data(), g.prefix.size());
    h.final(g.sha256);
    s.groups.push_back(g);
    for (const Mode& m : modes) {
      s.device = m.device;
      s.plaid = m.plaid;
      err = {};
      tz::Loaded* l = tz::load(s, err);
      CHECK(l != nullptr, (std::string("a group of no items, ") + m.name + ": " + err.message).c_str());
      delete l;
      s.groups.back().sha256[5] ^= 1;
      err = {};
      l = tz::load(s, err);
      CHECK(l == nullptr && err.code == Code::E_HASH_MISMATCH && err.group && err.tensor == 2, (std::string("a wrong group of no items, ") + m.name).c_str());
      delete l;
      s.groups.back().sha256[5] ^= 1;
    }
  }
}
