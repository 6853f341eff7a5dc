// The copy engine on encrypted jobs (copy.h: CopySpec::crypt and ::seal): random rounds of
// encrypted jobs with random crypt chunk sizes (multiples of 64: small ones, ones that do not
// divide the engine's chunk, ones bigger than it, 2 MiB) mixed with plain and empty jobs,
//   decrypted into an output file, into memory and hash-only: every byte is the plaintext
//     and the hashes are the plaintext's (prefix + data);
//   sealed into an output file, into memory and hash-only: the output and the MACs are
//     exactly crypt::seal over the whole item, crypt::open gives the plaintext back, the
//     hashes are the plaintext's;
// and the failures: a flipped ciphertext bit, a flipped MAC, a wrong key (E_DECRYPT naming
// the job), a job with two ranges, byte-swapped, both decrypted and sealed, a plan that does
// not fit (E_USAGE).
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../src/copy.h"
#include "../src/crypt.h"
#include "../src/hash.h"
#include "check.h"

namespace {

using Bytes = std::vector<uint8_t>;

struct Item {
  Bytes plain, cipher;  // cipher: the plaintext sealed whole (crypt::seal), or plain when not encrypted
  tz::crypt::ItemCrypt c;  // key -1: a plain job
};

const uint8_t kKeys[2][tz::crypt::kKeyBytes] = {{1, 2, 3, 4, 5, 6, 7, 8, 9}, {200, 100, 50, 25}};

uint64_t randomChunk(std::mt19937_64& rng, uint64_t engineChunk) {
  switch (rng() % 5) {
    case 0: return 64 * (1 + rng() % 64);                          // small
    case 1: return 192;                                             // divides no power of two above 64
    case 2: return engineChunk + 64 * (1 + rng() % 1000);           // bigger than the engine's chunk
    case 3: return 2 << 20;                                         // tensorizer's
    default: return 64 * (1 + rng() % 2048);
  }
}

// Plaintext, and for an encrypted item its ciphertext and MACs under a random key and nonce.
Item makeItem(std::mt19937_64& rng, bool encrypted, uint64_t engineChunk) {
  Item it;
  uint64_t len = rng() % 6 == 0 ? 0 : rng() % 3 ? rng() % 400000 : rng() % 300;
  it.plain.resize(len);
  for (auto& b : it.plain) b = static_cast<uint8_t>(rng());
  it.cipher = it.plain;
  if (!encrypted) return it;
  it.c.key = static_cast<int32_t>(rng() % 2);
  it.c.chunk = randomChunk(rng, engineChunk);
  for (auto& b : it.c.nonce) b = static_cast<uint8_t>(rng());
  it.c.macs.assign(tz::crypt::kMacBytes * ((len + it.c.chunk - 1) / it.c.chunk), '\0');
  tz::Error e = tz::crypt::seal(kKeys[it.c.key], it.c.nonce, it.c.chunk, len, 0, it.cipher.data(), len, reinterpret_cast<uint8_t*>(&it.c.macs[0]));
  if (!e.ok()) CHECK(false, "reference seal");
  return it;
}

std::string shaHex(const std::string& prefix, const Bytes& data) {
  tz::Sha256 s;
  s.update(prefix.data(), prefix.size());
  if (!data.empty()) s.update(data.data(), data.size());
  uint8_t d[32];
  s.final(d);
  return tz::hex(d, 32);
}

void addKeys(tz::crypt::Plan& p) {
  for (const auto& k : kKeys) p.keys.add(k);
}

bool writeFile(int fd, const Bytes& b) { return ftruncate(fd, 0) == 0 && pwrite(fd, b.data(), b.size(), 0) == static_cast<ssize_t>(b.size()); }

Bytes readFile(int fd, uint64_t off, uint64_t len) {
  Bytes b(len);
  if (pread(fd, b.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len)) b.clear();
  return b;
}

// sink: 0 an output file, 1 memory, 2 hash only.
void rounds(const char* in, int fi, const char* out, int fo, bool sealing, int sink) {
  std::mt19937_64 rng(101 + 7 * sink + (sealing ? 1 : 0));
  const char* sinks[] = {"file", "memory", "hash"};
  for (int round = 0; round < 12; round++) {
    const std::string what = std::string(sealing ? "seal" : "open") + " to " + sinks[sink] + ", round " + std::to_string(round);
    tz::CopySpec s;
    s.inputs = {in};
    s.threads = 1 + rng() % 3;
    s.chunk = rng() % 2 ? 4096 : (64 << 10);
    const int n = 1 + rng() % 10;
    std::vector<Item> items;
    Bytes file;
    std::vector<uint64_t> dsts;
    uint64_t outLen = 0;
    for (int i = 0; i < n; i++) {
      items.push_back(makeItem(rng, rng() % 4 != 0, s.chunk));
      const Item& it = items.back();
      const Bytes& stored = sealing ? it.plain : it.cipher;
      tz::CopyJob j;
      file.resize(file.size() + rng() % 100);
      j.ranges = {file.size(), stored.size()};
      file.insert(file.end(), stored.begin(), stored.end());
      j.prefix.assign(rng() % 200, '\0');
      for (auto& ch : j.prefix) ch = static_cast<char>(rng());
      j.crc = rng() % 4 != 0;
      j.sha = rng() % 4 != 0;
      outLen += rng() % 64;
      dsts.push_back(outLen);
      if (sink != 2) j.dst = static_cast<int64_t>(outLen);
      outLen += stored.size();
      s.jobs.push_back(j);
    }
    tz::crypt::Plan& plan = sealing ? s.seal : s.crypt;
    addKeys(plan);
    for (const Item& it : items) {
      tz::crypt::ItemCrypt c = it.c;
      if (sealing) c.macs.clear();  // runCopy sizes them and the run fills them in
      plan.items.push_back(c);
    }
    CHECK(writeFile(fi, file), "write input");
    Bytes memory(sink == 1 ? outLen : 0, 0xEE);
    if (sink == 0) {
      s.output = out;
      CHECK(ftruncate(fo, 0) == 0 && ftruncate(fo, static_cast<off_t>(outLen)) == 0, "truncate output");
    }
    if (sink == 1) s.memory = memory.data();
    std::atomic<uint64_t> progress{0};
    s.progress = &progress;
    tz::Error err;
    const bool ok = tz::runCopy(s, err);
    CHECK(ok, (what + ": " + tz::codeName(err.code) + " " + err.message).c_str());
    if (!ok) continue;
    bool bytes = true, hashes = true, macs = true, reopened = true;
    uint64_t total = 0;
    for (size_t i = 0; i < items.size(); i++) {
      const Item& it = items[i];
      const tz::CopyJob& j = s.jobs[i];
      total += it.plain.size();
      // Decrypting writes the plaintext, sealing the reference ciphertext.
      const Bytes& want = sealing ? it.cipher : it.plain;
      Bytes got;
      if (sink == 0) got = readFile(fo, dsts[i], want.size());
      if (sink == 1) got.assign(memory.begin() + dsts[i], memory.begin() + dsts[i] + want.size());
      if (sink != 2) bytes = bytes && got == want;
      Bytes all(j.prefix.begin(), j.prefix.end());
      all.insert(all.end(), it.plain.begin(), it.plain.end());
      if (j.sha) hashes = hashes && tz::hex(j.sha256, 32) == shaHex(j.prefix, it.plain);
      if (j.crc) hashes = hashes && j.crc32 == (all.empty() ? 0 : tz::crc32(0, all.data(), all.size()));
      hashes = hashes && j.bytes == it.plain.size();
      if (sealing && it.c.encrypted()) {
        macs = macs && s.seal.items[i].macs == it.c.macs;
        if (sink != 2) {
          tz::crypt::ItemCrypt c = s.seal.items[i];
          Bytes back = got;
          reopened = reopened && tz::crypt::open(kKeys[c.key], c, back.size(), 0, back.data(), back.size()).ok() && back == it.plain;
        }
      }
      if (sealing && !it.c.encrypted()) macs = macs && s.seal.items[i].macs.empty();
    }
    CHECK(bytes, (what + ": output bytes").c_str());
    CHECK(hashes, (what + ": hashes are the plaintext's").c_str());
    if (sealing) CHECK(macs, (what + ": MACs equal crypt::seal over the whole item").c_str());
    if (sealing) CHECK(reopened, (what + ": crypt::open of the output gives the plaintext").c_str());
    CHECK(progress.load() == total, (what + ": progress").c_str());
  }
}

// Three jobs: a plain one, an encrypted one (job 1, chunk 1024) and another encrypted one
// (job 2, chunk 4096 + 64, bigger than the engine's chunk); runFixture decrypts them to
// hashes after `tweak` has broken something.
struct Fixture {
  std::vector<Item> items;
  Bytes file;
  std::vector<uint64_t> offs;
};

Fixture fixture() {
  std::mt19937_64 rng(5);
  Fixture f;
  for (int i = 0; i < 3; i++) {
    Item it = makeItem(rng, false, 4096);
    it.plain.resize(50000 + 1000 * i);
    for (auto& b : it.plain) b = static_cast<uint8_t>(rng());
    it.cipher = it.plain;
    if (i > 0) {
      it.c.key = i - 1;
      it.c.chunk = i == 1 ? 1024 : 4096 + 64;
      it.c.nonce[0] = static_cast<uint8_t>(i);
      it.c.macs.assign(tz::crypt::kMacBytes * ((it.plain.size() + it.c.chunk - 1) / it.c.chunk), '\0');
      tz::crypt::seal(kKeys[it.c.key], it.c.nonce, it.c.chunk, it.plain.size(), 0, it.cipher.data(), it.plain.size(), reinterpret_cast<uint8_t*>(&it.c.macs[0]));
    }
    f.offs.push_back(f.file.size());
    f.file.insert(f.file.end(), it.cipher.begin(), it.cipher.end());
    f.items.push_back(std::move(it));
  }
  return f;
}

tz::Error runFixture(const char* in, const Fixture& f, const std::function<void(tz::CopySpec&)>& tweak, int threads = 2) {
  tz::CopySpec s;
  s.inputs = {in};
  s.threads = threads;
  s.chunk = 4096;
  addKeys(s.crypt);
  for (size_t i = 0; i < f.items.size(); i++) {
    tz::CopyJob j;
    j.ranges = {f.offs[i], f.items[i].cipher.size()};
    s.jobs.push_back(j);
    s.crypt.items.push_back(f.items[i].c);
  }
  tweak(s);
  tz::Error err;
  if (tz::runCopy(s, err)) err = {};
  return err;
}

void failureTests(const char* in, int fi) {
  Fixture f = fixture();
  CHECK(writeFile(fi, f.file), "write input");
  tz::Error e = runFixture(in, f, [](tz::CopySpec&) {});
  CHECK(e.ok(), ("the fixture decrypts: " + e.message).c_str());
  for (int job = 1; job <= 2; job++) {
    const std::string n = " (job " + std::to_string(job) + ")";
    // A flipped bit of the ciphertext, in the last chunk.
    Bytes bad = f.file;
    bad[f.offs[job] + f.items[job].cipher.size() - 3] ^= 0x10;
    CHECK(writeFile(fi, bad), "write input");
    e = runFixture(in, f, [](tz::CopySpec&) {});
    CHECK(e.code == Code::E_DECRYPT && e.tensor == job && e.message.find("chunk") != std::string::npos, ("a flipped ciphertext bit is E_DECRYPT naming the job" + n).c_str());
    CHECK(writeFile(fi, f.file), "write input");
    // A flipped MAC bit.
    e = runFixture(in, f, [job](tz::CopySpec& s) { s.crypt.items[job].macs[16 * 2 + 5] ^= 1; });
    CHECK(e.code == Code::E_DECRYPT && e.tensor == job, ("a flipped MAC is E_DECRYPT naming the job" + n).c_str());
    // The other key.
    e = runFixture(in, f, [job](tz::CopySpec& s) { s.crypt.items[job].key ^= 1; });
    CHECK(e.code == Code::E_DECRYPT && e.tensor == job, ("a wrong key is E_DECRYPT naming the job" + n).c_str());
    // In memory too, and the chunk that failed is not left readable.
    Bytes mem(f.file.size(), 0);
    e = runFixture(in, f, [&](tz::CopySpec& s) {
      s.memory = mem.data();
      for (size_t i = 0; i < s.jobs.size(); i++) s.jobs[i].dst = static_cast<int64_t>(f.offs[i]);
      s.crypt.items[job].macs[0] ^= 1;
    }, 1);
    bool zeroed = true;
    for (uint64_t k = 0; k < f.items[job].c.chunk; k++) zeroed = zeroed && mem[f.offs[job] + k] == 0;
    CHECK(e.code == Code::E_DECRYPT && e.tensor == job && zeroed, ("into memory: E_DECRYPT, the failed chunk zeroed" + n).c_str());
  }
  e = runFixture(in, f, [](tz::CopySpec& s) {
    const uint64_t o = s.jobs[1].ranges[0], n = s.jobs[1].ranges[1];
    s.jobs[1].ranges = {o, 1000, o + 1000, n - 1000};
  });
  CHECK(e.code == Code::E_USAGE && e.tensor == 1, "an encrypted job of two ranges is E_USAGE");
  e = runFixture(in, f, [](tz::CopySpec& s) { s.jobs[2].swap = 2; });
  CHECK(e.code == Code::E_USAGE && e.tensor == 2, "a byte-swapped encrypted job is E_USAGE");
  e = runFixture(in, f, [](tz::CopySpec& s) {
    addKeys(s.seal);
    s.seal.items.resize(s.jobs.size());
    s.seal.items[1] = s.crypt.items[1];
  });
  CHECK(e.code == Code::E_USAGE && e.tensor == 1, "a job both decrypted and sealed is E_USAGE");
  e = runFixture(in, f, [](tz::CopySpec& s) {
    addKeys(s.seal);
    s.seal.items.resize(s.jobs.size());
    s.seal.items[0].key = 0;
    s.seal.items[0].chunk = 100;
  });
  CHECK(e.code == Code::E_USAGE && e.tensor == 0, "a seal chunk size that is not a multiple of 64 is E_USAGE");
  e = runFixture(in, f, [](tz::CopySpec& s) {
    addKeys(s.seal);
    s.seal.items.resize(s.jobs.size());
    s.seal.items[0].key = 2;
    s.seal.items[0].chunk = 64;
  });
  CHECK(e.code == Code::E_USAGE && e.tensor == 0, "a seal key that was not given is E_USAGE");
  e = runFixture(in, f, [](tz::CopySpec& s) { s.crypt.items[2].macs.resize(16); });
  CHECK(e.code == Code::E_USAGE && e.tensor == 2, "too few MACs is E_USAGE");
  e = runFixture(in, f, [](tz::CopySpec& s) { s.crypt.items.pop_back(); });
  CHECK(e.code == Code::E_USAGE, "a crypt plan without one entry per job is E_USAGE");
}

}  // namespace

void copyCryptTests() {
  CHECK(tz::crypt::init().ok(), "libsodium");
  char in[] = "/tmp/tensorize-ccrypt-in-XXXXXX", out[] = "/tmp/tensorize-ccrypt-out-XXXXXX";
  int fi = mkstemp(in), fo = mkstemp(out);
  if (fi < 0 || fo < 0) {
    CHECK(false, "temp files");
    return;
  }
  for (bool sealing : {false, true})
    for (int sink = 0; sink < 3; sink++) rounds(in, fi, out, fo, sealing, sink);
  failureTests(in, fi);
  close(fi);
  close(fo);
  unlink(in);
  unlink(out);
}
