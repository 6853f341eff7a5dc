// The streaming loader: a plan of byte ranges in a .tensors file and where each goes in
// one destination allocation (device memory, or host memory for --device cpu).
//
// --plaid: N reader threads pread pieces of at most `chunk` bytes. For a GPU each reader
// owns two pinned host slots (allocated once) and one CUDA stream: it reads into one slot
// while the copy engine drains the other, so host RAM in use is 2 x readers x chunk,
// whatever the model size. For host memory readers pread straight into the destination.
// Without --plaid: one thread reads each tensor into ordinary memory and copies it
// synchronously (the obviously-correct baseline).
// Encrypted tensors (Spec::crypt) are decrypted in place by the thread that read them, as
// soon as their bytes are there, before anything hashes or copies them (loader_run.h).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "crypt.h"
#include "io.h"

namespace tz {

struct Item {
  uint64_t src;  // byte offset of the tensor data in its file
  uint64_t len;  // bytes
  uint64_t dst;  // byte offset in the destination allocation
  uint32_t file = 0;  // which file (Spec::files) or object (FetchSpec::objects) holds it
};

struct Expect {
  bool crc = false, sha = false;
  uint32_t crc32 = 0;
  uint8_t sha256[32] = {};
  std::string prefix;  // bytes hashed before the data (the header with zeroed hash values)
};

// A hash group: one SHA-256 over `prefix`, then the bytes of `items` one after the other in
// this order (a safetensors shard's whole-file SHA-256: its header as prefix, then its
// tensors in file order to the end of the file). It is checked while the data streams;
// a mismatch is E_HASH_MISMATCH with Error::group set and Error::tensor the group's index.
// The items must appear in this order in Spec::items (the order readers take them: the
// hashing of a group is strictly sequential, and GPU staging slots wait for it; E_USAGE
// otherwise); for the fetcher (FetchSpec::groups) they must lie in one object, in file order.
// An item is in at most one group; items in none are not hashed.
struct HashGroup {
  uint8_t sha256[32] = {};
  std::string prefix;
  std::vector<uint32_t> items;
};

// One input file of a load.
struct FileIn {
  std::string path;
  int64_t expectSize = -1;  // its size when its index was read (-1: unchecked)
  uint64_t mapAt = 0;       // --mmap: where it is mapped in the destination (page-aligned)
};

struct Spec {
  // The input files (each item names its own: Item::file). Empty: one file, `path`, whose
  // size was `expectSize` when its index was read (-1: unchecked).
  std::vector<FileIn> files;
  std::string path;
  int device = -1;  // -1: host memory
  bool plaid = true;
  int readers = 4;
  uint64_t chunk = 16 << 20;
  bool verify = false;
  uint64_t total = 0;  // size of the destination allocation
  bool hugePages = true;  // host destinations: madvise(MADV_HUGEPAGE)
  // Host only: no copy. Each file is mapped copy-on-write (MAP_PRIVATE) at its mapAt in one
  // reserved region of `total` bytes, and the tensors' pages are mapped in from the page
  // cache (MADV_POPULATE_READ, `readers` threads); every item's dst must equal its file's
  // mapAt plus its src, mapAt must be page-aligned and the files must not overlap. One
  // file: mapAt 0 and `total` the file size.
  bool mmap = false;
  std::vector<Item> items;
  std::vector<Expect> expect;  // one per item when verify
  std::vector<HashGroup> groups;  // whole-file SHA-256s instead (not with verify)
  // Encrypted items (crypt.h): their keys (wiped with the Spec) and one entry per item, or
  // no entries: nothing is encrypted. The expected hashes (verify, groups) are the
  // plaintext's. A MAC that does not match fails the load, E_DECRYPT naming the item.
  crypt::Plan crypt;
  int64_t expectSize = -1;     // file size seen when the index was read
  std::atomic<uint64_t>* progress = nullptr;
  std::atomic<bool>* cancel = nullptr;
};

struct Stats {
  double allocMs = 0, firstTensorMs = -1, transferMs = 0;
  uint64_t bytes = 0, pinnedBytes = 0, deviceBytes = 0, hostBytes = 0;
  // --mmap: the bytes of the files mapped from the page cache (shared, not new memory). The
  // pages of encrypted tensors are decrypted into private copies: those bytes count in
  // hostBytes instead (page-rounded within the files), so mappedBytes + hostBytes is the
  // files' size.
  uint64_t mappedBytes = 0;
  uint64_t pieces = 0;
};


// The loaded tensors: owns the destination allocation until free().
struct Loaded {
  void* base = nullptr;  // host destinations (device -1)
  uint64_t dbase = 0;    // device destinations: a device address (dev::DevPtr), never dereferenced
  uint64_t size = 0;
  int device = -1;
  Stats stats;
  ~Loaded();
  // Gives the memory back; the device's refusal to free it, if any (the handle is dropped).
  Error free();
  // Copy bytes back to host memory (for checks and for reading host loads from JS).
  Error read(uint64_t offset, uint64_t len, void* out) const;
  // Copy bytes in (for sources the native side cannot read itself: HTTP, S3).
  Error write(uint64_t offset, const void* in, uint64_t len);

 private:
  Error transfer(uint64_t offset, uint64_t len, void* host, bool in) const;
};

// The destination for --mmap: one reserved region of `total` bytes with each file mapped
// whole, copy-on-write, at its offset `at` (page-aligned).
struct MapIn {
  int fd;
  uint64_t size, at;
  const std::string* path;
};
Loaded* mapFiles(const std::vector<MapIn>& files, uint64_t total, Error& err);

// Just the destination allocation (device memory, or host memory for device -1, advised
// to use huge pages unless hugePages is false: on VMs that hand free memory back to their
// host, fresh huge pages wait for the host and load 4x slower than 4 KiB pages).
Loaded* allocate(int device, uint64_t total, Error& err, bool hugePages = true);

// Runs the whole load; on failure everything allocated is freed and `err` says why.
Loaded* load(const Spec& spec, Error& err);

struct DeviceInfo {
  int index;
  std::string name;
  uint64_t totalMemory;
  std::string pciBusId;
};

struct RuntimeInfo {
  std::string backend;    // the device layer's backend: "cuda", "simulated" or "none"
  int driverVersion = 0;  // the CUDA version the driver supports (1000 x major + 10 x minor), 0 without one
  int deviceCount = 0;
  std::string cudaError;  // why no device, when none
  std::vector<DeviceInfo> devices;
  std::string hashImplementation;  // what CRC32 and SHA-256 run on
  bool populate = false;           // MADV_POPULATE_READ/WRITE work here (Linux >= 5.14)
};

RuntimeInfo runtimeInfo();

// Pinned host-to-device bandwidth probe (bytes per second), or -1 with err set.
double probeH2D(int device, uint64_t bytes, int iters, Error& err);

}  // namespace tz
