// CRC32 (zlib's polynomial and conventions) and SHA-256, as tensorizer's hashes need them.
// On x86-64 with the instructions for it, SHA-256 runs on SHA-NI and CRC32 folds with
// PCLMULQDQ; elsewhere portable code computes the same values. sha256UpdateX2 hashes two
// independent streams in one instruction stream: SHA-NI rounds have more latency than
// throughput, so two interleaved streams run about 1.75x faster than one.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tz {

// zlib-compatible: crc32(crc32(0, a), b) == crc32(0, a + b).
uint32_t crc32(uint32_t crc, const void* data, size_t n);

class Sha256 {
 public:
  Sha256() { reset(); }
  void reset();
  void update(const void* data, size_t n);
  void final(uint8_t out[32]);

 private:
  friend void sha256UpdateX2(Sha256& a, const void* pa, Sha256& b, const void* pb, size_t n);
  // Hashes buffered bytes of an incomplete block, taking them from p; returns how many it took.
  size_t fill(const uint8_t* p, size_t n);
  uint32_t h_[8];
  uint64_t total_;
  uint8_t buf_[64];
  size_t used_;
};

// a.update(pa, n) and b.update(pb, n), interleaved.
void sha256UpdateX2(Sha256& a, const void* pa, Sha256& b, const void* pb, size_t n);

// What the hashes run on here, e.g. "sha-ni x2, pclmul" or "portable".
const char* hashImplementation();

}  // namespace tz
