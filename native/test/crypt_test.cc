// The crypt unit (crypt.h): seal and open in place over whole chunks, chunk by chunk in any
// split (as the engines' pieces cut an item), nonces incremented as little-endian numbers
// (the carry crosses bytes), a changed byte of data or MAC and a wrong key refused with the
// chunk zeroed, pieces that are not whole chunks refused, Plan::check, pieceStep, and
// Argon2id's determinism and limits. That the bytes are tensorizer's is checked against its
// files (test/encryption.test.ts).
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "../src/crypt.h"
#include "check.h"

namespace {

using tz::crypt::kMacBytes;

std::vector<uint8_t> randomVec(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

tz::crypt::ItemCrypt sealed(std::mt19937_64& rng, const uint8_t* key, uint64_t chunk, std::vector<uint8_t>& data) {
  tz::crypt::ItemCrypt c;
  c.key = 0;
  c.chunk = chunk;
  for (auto& b : c.nonce) b = static_cast<uint8_t>(rng());
  const uint64_t n = data.size(), chunks = (n + chunk - 1) / chunk;
  c.macs.assign(kMacBytes * chunks, '\0');
  tz::Error e = tz::crypt::seal(key, c.nonce, chunk, n, 0, data.data(), n, reinterpret_cast<uint8_t*>(&c.macs[0]));
  CHECK(e.ok(), "seal whole");
  return c;
}

}  // namespace

void cryptTests() {
  CHECK(tz::crypt::init().ok(), "libsodium initialises");
  CHECK(std::strcmp(tz::crypt::version(), "1.0.22") == 0, "the vendored libsodium is 1.0.22");
  std::mt19937_64 rng(17);
  uint8_t key[32], other[32];
  tz::crypt::randomBytes(key, 32);
  std::memcpy(other, key, 32);
  other[31] ^= 1;

  // Nonces: chunk i's is the first plus i, little-endian, with the carry crossing bytes.
  {
    uint8_t first[24] = {}, out[24];
    std::memset(first, 0xff, 3);
    tz::crypt::nonceAt(first, 1, out);
    CHECK(out[0] == 0 && out[1] == 0 && out[2] == 0 && out[3] == 1, "nonce + 1 carries through 0xff bytes");
    std::memset(first, 0, 24);
    first[0] = 0xfe;
    tz::crypt::nonceAt(first, 0x0102, out);
    CHECK(out[0] == 0x00 && out[1] == 0x02 && out[2] == 0, "nonce + 0x102 (0xfe + 0x02 carries once)");
    std::memset(first, 0xff, 24);
    tz::crypt::nonceAt(first, 1, out);
    bool zero = true;
    for (uint8_t b : out) zero = zero && b == 0;
    CHECK(zero, "the nonce wraps around at 2^192");
  }

  // Round trips over chunk sizes and lengths (a short last chunk, exactly one chunk, one byte, none).
  for (uint64_t chunk : {uint64_t{64}, uint64_t{1024}, uint64_t{4096}}) {
    for (uint64_t n : {uint64_t{0}, uint64_t{1}, chunk, chunk + 1, 5 * chunk - 7, 8 * chunk}) {
      std::vector<uint8_t> plain = randomVec(rng, n), data = plain;
      tz::crypt::ItemCrypt c = sealed(rng, key, chunk, data);
      CHECK(n < 32 || data != plain, "sealing changes the bytes");
      // Open in pieces of random whole-chunk lengths.
      for (uint64_t off = 0; off < n;) {
        uint64_t len = std::min<uint64_t>(n - off, chunk * (1 + rng() % 3));
        tz::Error e = tz::crypt::open(key, c, n, off, data.data() + off, len);
        CHECK(e.ok(), "open a piece of whole chunks");
        off += len;
      }
      CHECK(data == plain, "open(seal(x)) == x");
      // Sealing in pieces gives the same bytes and MACs as sealing whole.
      std::vector<uint8_t> parts = plain;
      std::string macs(c.macs.size(), '\0');
      for (uint64_t off = 0; off < n; off += 2 * chunk) {
        tz::Error e = tz::crypt::seal(key, c.nonce, chunk, n, off, parts.data() + off, std::min<uint64_t>(2 * chunk, n - off), reinterpret_cast<uint8_t*>(&macs[0]));
        CHECK(e.ok(), "seal a piece");
      }
      std::vector<uint8_t> whole = plain;
      tz::crypt::ItemCrypt c2 = c;
      tz::crypt::seal(key, c.nonce, chunk, n, 0, whole.data(), n, reinterpret_cast<uint8_t*>(&c2.macs[0]));
      CHECK(parts == whole && macs == c2.macs, "sealing piece by piece == sealing whole");
    }
  }

  // Every chunk uses its own nonce: two equal chunks of plaintext give different ciphertexts.
  {
    std::vector<uint8_t> data(2048, 0x5a);
    sealed(rng, key, 1024, data);
    CHECK(std::memcmp(data.data(), data.data() + 1024, 1024) != 0, "chunk 1's nonce differs from chunk 0's");
  }

  // Tampering and wrong keys: E_DECRYPT naming the chunk, and that chunk zeroed.
  {
    const uint64_t chunk = 1024, n = 3 * chunk + 100;
    std::vector<uint8_t> plain = randomVec(rng, n), data = plain;
    tz::crypt::ItemCrypt c = sealed(rng, key, chunk, data);
    std::vector<uint8_t> bad = data;
    bad[chunk + 5] ^= 0x01;  // one bit of chunk 1
    tz::Error e = tz::crypt::open(key, c, n, 0, bad.data(), n);
    CHECK(e.code == Code::E_DECRYPT && e.message.find("chunk 1") != std::string::npos, "a flipped data bit is E_DECRYPT at chunk 1");
    CHECK(std::all_of(bad.begin() + chunk, bad.begin() + 2 * chunk, [](uint8_t b) { return b == 0; }), "the failed chunk is zeroed");
    bad = data;
    tz::crypt::ItemCrypt cm = c;
    cm.macs[3 * kMacBytes + 2] ^= 0x40;  // the last chunk's MAC
    e = tz::crypt::open(key, cm, n, 3 * chunk, bad.data() + 3 * chunk, 100);
    CHECK(e.code == Code::E_DECRYPT && e.message.find("chunk 3") != std::string::npos, "a changed MAC is E_DECRYPT");
    bad = data;
    e = tz::crypt::open(other, c, n, 0, bad.data(), n);
    CHECK(e.code == Code::E_DECRYPT && e.message.find("chunk 0") != std::string::npos, "a wrong key is E_DECRYPT at chunk 0");
    bad = data;
    tz::crypt::ItemCrypt cn = c;
    cn.nonce[23] ^= 1;
    CHECK(tz::crypt::open(key, cn, n, 0, bad.data(), n).code == Code::E_DECRYPT, "a changed nonce is E_DECRYPT");
    // Chunks swapped: each authenticates only at its own index.
    bad = data;
    std::swap_ranges(bad.begin(), bad.begin() + chunk, bad.begin() + chunk);
    CHECK(tz::crypt::open(key, c, n, 0, bad.data(), n).code == Code::E_DECRYPT, "swapped chunks are refused");
    // Not whole chunks: refused before anything is decrypted.
    bad = data;
    CHECK(tz::crypt::open(key, c, n, 10, bad.data() + 10, chunk).code == Code::E_NATIVE, "a piece not at a chunk boundary");
    CHECK(tz::crypt::open(key, c, n, 0, bad.data(), chunk + 1).code == Code::E_NATIVE, "a piece ending inside a chunk");
    CHECK(bad == data, "nothing was touched");
    uint8_t macs[64];
    CHECK(tz::crypt::seal(key, c.nonce, chunk, n, 0, bad.data(), 7, macs).code == Code::E_NATIVE, "seal of part of a chunk");
  }

  // Plan::check and pieceStep.
  {
    tz::crypt::Plan p;
    p.keys.add(key);
    tz::crypt::ItemCrypt c;
    c.key = 0;
    c.chunk = 1024;
    c.macs.assign(2 * kMacBytes, '\0');
    p.items = {c, tz::crypt::ItemCrypt{}};
    CHECK(p.check({2000, 5}).ok(), "a valid plan");
    CHECK(p.check({2049, 5}).code == Code::E_USAGE, "too few MACs");
    CHECK(p.check({2000}).code == Code::E_USAGE, "one entry per item");
    p.items[0].key = 1;
    CHECK(p.check({2000, 5}).code == Code::E_USAGE, "an unknown key");
    p.items[0].key = 0;
    p.items[0].chunk = 1000;
    CHECK(p.check({2000, 5}).code == Code::E_USAGE, "a chunk size not a multiple of 64");
    CHECK(p.of(1) == nullptr && p.of(0) != nullptr, "Plan::of");
    CHECK(tz::crypt::pieceStep(16 << 20, nullptr) == (16u << 20), "pieceStep without encryption");
    c.chunk = 2 << 20;
    CHECK(tz::crypt::pieceStep((16 << 20) + 12345, &c) == (16u << 20), "pieceStep rounds down to whole chunks");
    CHECK(tz::crypt::pieceStep(4096, &c) == (2u << 20), "pieceStep is at least one chunk");
    p.keys.clear();
    CHECK(p.keys.size() == 0, "Keys::clear");
  }

  // Argon2id: deterministic, salted, limits refused.
  {
    uint8_t salt[16] = {1, 2, 3}, a[32], b[32], c[32];
    const char pass[] = "correct horse battery staple";
    CHECK(tz::crypt::deriveKey(pass, sizeof pass - 1, salt, 1, 8192, a).ok(), "Argon2id MIN");
    CHECK(tz::crypt::deriveKey(pass, sizeof pass - 1, salt, 1, 8192, b).ok() && std::memcmp(a, b, 32) == 0, "Argon2id is deterministic");
    salt[15] = 9;
    CHECK(tz::crypt::deriveKey(pass, sizeof pass - 1, salt, 1, 8192, c).ok() && std::memcmp(a, c, 32) != 0, "another salt, another key");
    CHECK(tz::crypt::deriveKey(pass, sizeof pass - 1, salt, 0, 8192, c).code == Code::E_KEY, "opslimit 0 is refused");
    CHECK(tz::crypt::deriveKey(pass, sizeof pass - 1, salt, 1, 100, c).code == Code::E_KEY, "memlimit below 8 KiB is refused");
  }
}
