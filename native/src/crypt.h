// Encrypted tensor data as tensorizer writes it (../shared/reference/tensorizer-format.md §9),
// on libsodium (third_party/libsodium; this unit is its only user): each tensor's data is
// cut into chunks (2 MiB as tensorizer writes them; the last may be shorter), each sealed
// with XSalsa20-Poly1305 (crypto_secretbox_detached) under the tensor's key, with its own
// 16-byte MAC and the nonce of chunk 0 incremented i times as a little-endian number
// (sodium_increment) for chunk i. Ciphertext is as long as plaintext; the MACs and the first
// nonce live in the tensor's header. Keys are given as 32 bytes or derived from a passphrase
// with Argon2id v1.3 (crypto_pwhash, 16-byte salt).
//
// The engines (loader, fetcher, copy engine) decrypt a piece in place as soon as all its
// bytes are there and before anything hashes or copies it: a piece of an encrypted item
// starts at a multiple of the item's chunk size (pieceStep) so that it holds whole chunks.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io.h"

namespace tz::crypt {

constexpr size_t kKeyBytes = 32, kNonceBytes = 24, kMacBytes = 16, kSaltBytes = 16;

// libsodium initialised (once, from any thread); E_NATIVE when it cannot be.
Error init();

// How one item's bytes are encrypted.
struct ItemCrypt {
  int32_t key = -1;  // index into the run's Keys; -1: not encrypted
  uint64_t chunk = 0;  // bytes per chunk
  uint8_t nonce[kNonceBytes] = {};  // chunk 0's
  std::string macs;  // kMacBytes per chunk: ceil(item length / chunk) of them
  bool encrypted() const { return key >= 0; }
};

// The keys of one run, wiped when it ends.
class Keys {
 public:
  Keys() = default;
  Keys(const Keys&) = delete;
  Keys& operator=(const Keys&) = delete;
  ~Keys() { clear(); }
  void add(const uint8_t* key);  // kKeyBytes
  const uint8_t* get(size_t i) const { return bytes_.data() + i * kKeyBytes; }
  size_t size() const { return bytes_.size() / kKeyBytes; }
  void clear();

 private:
  std::vector<uint8_t> bytes_;
};

// The run's keys and one ItemCrypt per item (or none: nothing is encrypted), as the
// engines' specs carry them.
struct Plan {
  Keys keys;
  std::vector<ItemCrypt> items;
  const ItemCrypt* of(size_t item) const { return items.empty() || !items[item].encrypted() ? nullptr : &items[item]; }
  // E_USAGE unless every entry fits its item: a known key, a chunk size that is a multiple
  // of 64 and at least 64, as many MACs as chunks. `lens`: the items' lengths.
  Error check(const std::vector<uint64_t>& lens) const;
};

// The largest multiple of c's chunk size not above `want` (at least one chunk): how far
// apart piece boundaries of an encrypted item may be. `want` itself when c is null.
uint64_t pieceStep(uint64_t want, const ItemCrypt* c);

// Chunk `index`'s nonce: the first plus index, as a 192-bit little-endian number.
void nonceAt(const uint8_t first[kNonceBytes], uint64_t index, uint8_t out[kNonceBytes]);

// Decrypts in place bytes [off, off + len) of an item of `itemLen` bytes encrypted as `c`
// under `key`: off must be a multiple of the chunk size and the range must end at a chunk
// boundary or at the item's end (E_NATIVE otherwise). A MAC that does not match (a wrong
// key, changed data or a changed MAC) is E_DECRYPT, with the bytes of that chunk zeroed
// (nothing unauthenticated is left readable); the caller names the tensor.
Error open(const uint8_t* key, const ItemCrypt& c, uint64_t itemLen, uint64_t off, uint8_t* p, uint64_t len);

// Encrypts in place the chunks of bytes [off, off + len) of an item (the same rules for off
// and len) under key, nonce and chunk size `chunk`, writing each chunk's MAC at
// macs + kMacBytes * (its index in the item). E_NATIVE when the range is not whole chunks.
Error seal(const uint8_t* key, const uint8_t nonce[kNonceBytes], uint64_t chunk, uint64_t itemLen, uint64_t off, uint8_t* p, uint64_t len,
          uint8_t* macs);

// Argon2id v1.3 (crypto_pwhash, ALG_ARGON2ID13) of a passphrase: 32 bytes into out. E_KEY
// when libsodium refuses the parameters, E_HOST_OOM when it cannot allocate memlimit.
Error deriveKey(const void* pass, size_t passLen, const uint8_t salt[kSaltBytes], uint64_t opslimit, uint64_t memlimit, uint8_t out[kKeyBytes]);

// Bytes from the system's CSPRNG (randombytes_buf).
void randomBytes(void* p, size_t n);
// Zeroes memory in a way the compiler does not optimise away (sodium_memzero).
void wipe(void* p, size_t n);
// libsodium's version, e.g. "1.0.22".
const char* version();

}  // namespace tz::crypt
