#include "hash.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "config.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TZ_X86 1
#endif

namespace tz {
namespace {

alignas(16) const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

// ---- portable SHA-256 (FIPS 180-4) ----
inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void shaBlocksPortable(uint32_t st[8], const uint8_t* p, size_t blocks) {
  for (; blocks; blocks--, p += 64) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) w[i] = uint32_t(p[4 * i]) << 24 | uint32_t(p[4 * i + 1]) << 16 | uint32_t(p[4 * i + 2]) << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
    for (int i = 0; i < 64; i++) {
      uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    st[0] += a; st[1] += b; st[2] += c; st[3] += d; st[4] += e; st[5] += f; st[6] += g; st[7] += h;
  }
}

// ---- portable CRC32 (reflected 0xEDB88320), one byte at a time: used for short tails ----
struct CrcTable {
  uint32_t t[8][256];
  CrcTable() {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
      for (int k = 1; k < 8; k++) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
  }
};
const CrcTable kCrc;

// The raw CRC register (no pre/post inversion) over n bytes, slicing by 8.
uint32_t crcRegPortable(uint32_t reg, const uint8_t* p, size_t n) {
  for (; n >= 8; n -= 8, p += 8) {
    uint32_t lo = reg ^ (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
    reg = kCrc.t[7][lo & 0xff] ^ kCrc.t[6][(lo >> 8) & 0xff] ^ kCrc.t[5][(lo >> 16) & 0xff] ^ kCrc.t[4][lo >> 24] ^
          kCrc.t[3][p[4]] ^ kCrc.t[2][p[5]] ^ kCrc.t[1][p[6]] ^ kCrc.t[0][p[7]];
  }
  while (n--) reg = kCrc.t[0][(reg ^ *p++) & 0xff] ^ (reg >> 8);
  return reg;
}

#ifdef TZ_X86
// ---- SHA-NI ----
struct Lane {
  __m128i abef, cdgh;
};

__attribute__((target("sha,sse4.1,ssse3"))) inline Lane laneLoad(const uint32_t st[8]) {
  __m128i t = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(&st[0])), 0xB1);  // CDAB
  __m128i s = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(&st[4])), 0x1B);  // EFGH
  return {_mm_alignr_epi8(t, s, 8), _mm_blend_epi16(s, t, 0xF0)};
}

__attribute__((target("sha,sse4.1,ssse3"))) inline void laneStore(uint32_t st[8], Lane l) {
  __m128i t = _mm_shuffle_epi32(l.abef, 0x1B);  // FEBA
  __m128i s = _mm_shuffle_epi32(l.cdgh, 0xB1);  // DCHG
  _mm_storeu_si128(reinterpret_cast<__m128i*>(&st[0]), _mm_blend_epi16(t, s, 0xF0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(&st[4]), _mm_alignr_epi8(s, t, 8));
}

// Four rounds with message words W[g & 3] (rounds 4g..4g+3).
#define TZ_SHA_ROUNDS(L, W, g)                                                                          \
  do {                                                                                                  \
    __m128i m_ = _mm_add_epi32(W[(g) & 3], _mm_load_si128(reinterpret_cast<const __m128i*>(&K256[4 * (g)]))); \
    L.cdgh = _mm_sha256rnds2_epu32(L.cdgh, L.abef, m_);                                                 \
    L.abef = _mm_sha256rnds2_epu32(L.abef, L.cdgh, _mm_shuffle_epi32(m_, 0x0E));                        \
  } while (0)
// Message schedule, g >= 4: W[g] = msg2(msg1(W[g-4], W[g-3]) + (W[g-2], W[g-1]) >> 32 bits, W[g-1]).
#define TZ_SHA_SCHED(W, g)                                                                                    \
  W[(g) & 3] = _mm_sha256msg2_epu32(                                                                          \
      _mm_add_epi32(_mm_sha256msg1_epu32(W[(g) & 3], W[((g) + 1) & 3]), _mm_alignr_epi8(W[((g) + 3) & 3], W[((g) + 2) & 3], 4)), \
      W[((g) + 3) & 3])

__attribute__((target("sha,sse4.1,ssse3"))) void shaBlocksNi(uint32_t st[8], const uint8_t* p, size_t blocks) {
  const __m128i MASK = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  Lane L = laneLoad(st);
  for (; blocks; blocks--, p += 64) {
    Lane save = L;
    __m128i W[4];
    for (int i = 0; i < 4; i++) W[i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * i)), MASK);
    TZ_SHA_ROUNDS(L, W, 0); TZ_SHA_ROUNDS(L, W, 1); TZ_SHA_ROUNDS(L, W, 2); TZ_SHA_ROUNDS(L, W, 3);
#define G(g) TZ_SHA_SCHED(W, g); TZ_SHA_ROUNDS(L, W, g);
    G(4) G(5) G(6) G(7) G(8) G(9) G(10) G(11) G(12) G(13) G(14) G(15)
#undef G
    L.abef = _mm_add_epi32(L.abef, save.abef);
    L.cdgh = _mm_add_epi32(L.cdgh, save.cdgh);
  }
  laneStore(st, L);
}

__attribute__((target("sha,sse4.1,ssse3"))) void shaBlocksNiX2(uint32_t sa[8], const uint8_t* pa, uint32_t sb[8], const uint8_t* pb, size_t blocks) {
  const __m128i MASK = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  Lane A = laneLoad(sa), B = laneLoad(sb);
  for (; blocks; blocks--, pa += 64, pb += 64) {
    Lane saveA = A, saveB = B;
    __m128i WA[4], WB[4];
    for (int i = 0; i < 4; i++) {
      WA[i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pa + 16 * i)), MASK);
      WB[i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pb + 16 * i)), MASK);
    }
    TZ_SHA_ROUNDS(A, WA, 0); TZ_SHA_ROUNDS(B, WB, 0); TZ_SHA_ROUNDS(A, WA, 1); TZ_SHA_ROUNDS(B, WB, 1);
    TZ_SHA_ROUNDS(A, WA, 2); TZ_SHA_ROUNDS(B, WB, 2); TZ_SHA_ROUNDS(A, WA, 3); TZ_SHA_ROUNDS(B, WB, 3);
#define G(g) TZ_SHA_SCHED(WA, g); TZ_SHA_SCHED(WB, g); TZ_SHA_ROUNDS(A, WA, g); TZ_SHA_ROUNDS(B, WB, g);
    G(4) G(5) G(6) G(7) G(8) G(9) G(10) G(11) G(12) G(13) G(14) G(15)
#undef G
    A.abef = _mm_add_epi32(A.abef, saveA.abef);
    A.cdgh = _mm_add_epi32(A.cdgh, saveA.cdgh);
    B.abef = _mm_add_epi32(B.abef, saveB.abef);
    B.cdgh = _mm_add_epi32(B.cdgh, saveB.cdgh);
  }
  laneStore(sa, A);
  laneStore(sb, B);
}
#undef TZ_SHA_ROUNDS
#undef TZ_SHA_SCHED

// ---- CRC32 by carry-less multiplication: four 128-bit accumulators fold 64 bytes per
// step (constants x^(512+-32) and x^(128+-32) mod P, bit-reflected); the 16-byte residue is
// congruent to the data folded so far, so its CRC register is finished byte-wise. ----
__attribute__((target("pclmul,sse4.1"))) inline __m128i fold(__m128i x, __m128i k, __m128i d) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), d);
}

__attribute__((target("pclmul,sse4.1"))) uint32_t crcRegPclmul(uint32_t reg, const uint8_t* p, size_t n) {
  if (n < 128) return crcRegPortable(reg, p, n);
  const __m128i K4 = _mm_set_epi64x(0x1c6e41596ULL, 0x154442bd4ULL);
  const __m128i K1 = _mm_set_epi64x(0x0ccaa009eULL, 0x1751997d0ULL);
  auto ld = [](const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); };
  __m128i x0 = _mm_xor_si128(ld(p), _mm_cvtsi32_si128(static_cast<int>(reg)));
  __m128i x1 = ld(p + 16), x2 = ld(p + 32), x3 = ld(p + 48);
  for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
    x0 = fold(x0, K4, ld(p));
    x1 = fold(x1, K4, ld(p + 16));
    x2 = fold(x2, K4, ld(p + 32));
    x3 = fold(x3, K4, ld(p + 48));
  }
  x0 = fold(fold(fold(x0, K1, x1), K1, x2), K1, x3);
  for (; n >= 16; p += 16, n -= 16) x0 = fold(x0, K1, ld(p));
  alignas(16) uint8_t r[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(r), x0);
  return crcRegPortable(crcRegPortable(0, r, 16), p, n);
}

// The same with VPCLMULQDQ on 256-bit registers: eight 128-bit lanes (four ymm) fold 128
// bytes per step (constants x^(1024+-32) mod P), then the lanes fold into one.
__attribute__((target("vpclmulqdq,pclmul,avx2,sse4.1"))) uint32_t crcRegVpclmul(uint32_t reg, const uint8_t* p, size_t n) {
  if (n < 256) return crcRegPclmul(reg, p, n);
  const __m256i K8 = _mm256_set_epi64x(0x14a7fe880LL, 0x1e88ef372LL, 0x14a7fe880LL, 0x1e88ef372LL);
  const __m128i K1 = _mm_set_epi64x(0x0ccaa009eULL, 0x1751997d0ULL);
#define ld(q) _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q))
#define fold8(x, d) _mm256_xor_si256(_mm256_xor_si256(_mm256_clmulepi64_epi128(x, K8, 0x00), _mm256_clmulepi64_epi128(x, K8, 0x11)), d)
  __m256i y0 = _mm256_xor_si256(ld(p), _mm256_zextsi128_si256(_mm_cvtsi32_si128(static_cast<int>(reg))));
  __m256i y1 = ld(p + 32), y2 = ld(p + 64), y3 = ld(p + 96);
  for (p += 128, n -= 128; n >= 128; p += 128, n -= 128) {
    y0 = fold8(y0, ld(p));
    y1 = fold8(y1, ld(p + 32));
    y2 = fold8(y2, ld(p + 64));
    y3 = fold8(y3, ld(p + 96));
  }
#undef ld
#undef fold8
  __m128i x = _mm256_castsi256_si128(y0);
  x = fold(x, K1, _mm256_extracti128_si256(y0, 1));
  x = fold(x, K1, _mm256_castsi256_si128(y1));
  x = fold(x, K1, _mm256_extracti128_si256(y1, 1));
  x = fold(x, K1, _mm256_castsi256_si128(y2));
  x = fold(x, K1, _mm256_extracti128_si256(y2, 1));
  x = fold(x, K1, _mm256_castsi256_si128(y3));
  x = fold(x, K1, _mm256_extracti128_si256(y3, 1));
  for (; n >= 16; p += 16, n -= 16) x = fold(x, K1, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  alignas(16) uint8_t r[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(r), x);
  return crcRegPortable(crcRegPortable(0, r, 16), p, n);
}
#endif

struct Impl {
  void (*blocks)(uint32_t*, const uint8_t*, size_t) = shaBlocksPortable;
  void (*blocksX2)(uint32_t*, const uint8_t*, uint32_t*, const uint8_t*, size_t) = nullptr;
  uint32_t (*crcReg)(uint32_t, const uint8_t*, size_t) = crcRegPortable;
  const char* name = "portable";
  char nameBuf[64] = {};
  Impl() {
#ifdef TZ_X86
    __builtin_cpu_init();
    bool sha = __builtin_cpu_supports("sha") && __builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("ssse3");
    bool clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    bool vclmul = clmul && __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("avx2");
    const Config::Hash force = config().hash;  // TENSORIZE_HASH: for tests and comparisons
    if (force == Config::Hash::Portable) sha = clmul = vclmul = false;
    if (force == Config::Hash::Pclmul) vclmul = false;
    if (sha) {
      blocks = shaBlocksNi;
      blocksX2 = shaBlocksNiX2;
    }
    if (clmul) crcReg = vclmul ? crcRegVpclmul : crcRegPclmul;
    const char* crcName = vclmul ? "vpclmul" : clmul ? "pclmul" : "portable crc32";
    snprintf(nameBuf, sizeof nameBuf, "%s, %s", sha ? "sha-ni x2" : "portable sha-256", crcName);
    name = sha || clmul ? nameBuf : "portable";
#endif
  }
};

const Impl& impl() {
  static const Impl i;
  return i;
}

}  // namespace

uint32_t crc32(uint32_t crc, const void* data, size_t n) {
  return ~impl().crcReg(~crc, static_cast<const uint8_t*>(data), n);
}

void Sha256::reset() {
  std::memcpy(h_, H0, sizeof h_);
  total_ = 0;
  used_ = 0;
}

size_t Sha256::fill(const uint8_t* p, size_t n) {
  if (used_ == 0) return 0;
  size_t k = 64 - used_ < n ? 64 - used_ : n;
  std::memcpy(buf_ + used_, p, k);
  used_ += k;
  if (used_ == 64) {
    impl().blocks(h_, buf_, 1);
    used_ = 0;
  }
  return k;
}

void Sha256::update(const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  total_ += n;
  size_t k = fill(p, n);
  p += k;
  n -= k;
  if (n >= 64) {
    impl().blocks(h_, p, n / 64);
    p += n / 64 * 64;
    n %= 64;
  }
  if (n) {
    std::memcpy(buf_, p, n);
    used_ = n;
  }
}

void sha256UpdateX2(Sha256& a, const void* pa, Sha256& b, const void* pb, size_t n) {
  const Impl& I = impl();
  if (!I.blocksX2) {
    a.update(pa, n);
    b.update(pb, n);
    return;
  }
  const uint8_t* p = static_cast<const uint8_t*>(pa);
  const uint8_t* q = static_cast<const uint8_t*>(pb);
  size_t ka = a.fill(p, n), kb = b.fill(q, n);
  a.total_ += ka;
  b.total_ += kb;
  size_t na = n - ka, nb = n - kb;
  size_t both = (na < nb ? na : nb) / 64;
  if (both) {
    I.blocksX2(a.h_, p + ka, b.h_, q + kb, both);
    a.total_ += both * 64;
    b.total_ += both * 64;
  }
  a.update(p + ka + both * 64, na - both * 64);
  b.update(q + kb + both * 64, nb - both * 64);
}

void Sha256::final(uint8_t out[32]) {
  uint64_t bits = total_ * 8;
  uint8_t pad[72] = {0x80};
  size_t padLen = (used_ < 56 ? 56 : 120) - used_;
  for (int i = 0; i < 8; i++) pad[padLen + i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
  update(pad, padLen + 8);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = static_cast<uint8_t>(h_[i] >> 24);
    out[4 * i + 1] = static_cast<uint8_t>(h_[i] >> 16);
    out[4 * i + 2] = static_cast<uint8_t>(h_[i] >> 8);
    out[4 * i + 3] = static_cast<uint8_t>(h_[i]);
  }
}

const char* hashImplementation() { return impl().name; }

}  // namespace tz
