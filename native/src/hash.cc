#include "hash.h"

#include <dlfcn.h>

namespace tz {

const HashFns& hashFns() {
  static const HashFns fns = [] {
    HashFns f;
    f.sha_init = reinterpret_cast<int (*)(Sha256Ctx*)>(dlsym(RTLD_DEFAULT, "SHA256_Init"));
    f.sha_update = reinterpret_cast<int (*)(Sha256Ctx*, const void*, size_t)>(dlsym(RTLD_DEFAULT, "SHA256_Update"));
    f.sha_final = reinterpret_cast<int (*)(unsigned char*, Sha256Ctx*)>(dlsym(RTLD_DEFAULT, "SHA256_Final"));
    f.crc32_z = reinterpret_cast<unsigned long (*)(unsigned long, const unsigned char*, size_t)>(dlsym(RTLD_DEFAULT, "crc32_z"));
    // zlib's convention for "detect CPU features": Chromium's zlib (inside Node) enables
    // its PCLMUL CRC32 only after this call.
    if (f.crc32_z) f.crc32_z(0, nullptr, 0);
    return f;
  }();
  return fns;
}

}  // namespace tz
