// CRC32 and SHA-256 for --verify. The implementations are the ones inside the Node
// executable (zlib's SIMD crc32 and OpenSSL's SHA-256, which use PCLMUL and SHA-NI),
// found at run time with dlsym, so the addon has no link-time dependency on them. A
// process that does not export them (e.g. the native test program) has no verify.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tz {

struct Sha256Ctx {
  // Layout of OpenSSL's SHA256_CTX.
  unsigned int h[8];
  unsigned int Nl, Nh;
  unsigned int data[16];
  unsigned int num, md_len;
};

struct HashFns {
  int (*sha_init)(Sha256Ctx*) = nullptr;
  int (*sha_update)(Sha256Ctx*, const void*, size_t) = nullptr;
  int (*sha_final)(unsigned char*, Sha256Ctx*) = nullptr;
  unsigned long (*crc32_z)(unsigned long, const unsigned char*, size_t) = nullptr;
  bool ok() const { return sha_init && sha_update && sha_final && crc32_z; }
};

// Resolved once; ok() is false when the process does not export the functions.
const HashFns& hashFns();

}  // namespace tz
