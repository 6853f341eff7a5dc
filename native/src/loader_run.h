// The loader's run (loader.h load()), shared by its two units: loader.cc (the plan, the
// --plaid readers into host memory and through the pinned ring to a GPU, the simple
// baseline, hashing) and loader_mmap.cc (--mmap). Internal to them.
//
// Encrypted items (Spec::crypt): every piece of one starts at a multiple of its crypt chunk
// size and holds whole chunks (crypt::pieceStep; a crypt chunk larger than Spec::chunk is one
// piece, so GPU staging slots are as large as the largest piece), and is decrypted in place
// on the thread that read it, as soon as its bytes are there and before anything hashes it,
// copies it to the device or counts it done: in the host destination (--plaid), in the
// staging slot before its copy is queued (GPU --plaid), in the tensor's buffer (simple), in
// the mapping's private pages (--mmap). A MAC that does not match fails the load naming the
// item (E_DECRYPT). Unencrypted items are cut and moved exactly as without encryption.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "hash_groups.h"
#include "io.h"
#include "loader.h"
#include "piece_hasher.h"
#include "stream_core.h"

namespace tz::loader {

// The plan: every tensor in pieces of at most `chunk` bytes (an encrypted one: whole crypt
// chunks, crypt::pieceStep), in file order; readers take one piece at a time (with --verify
// too: the hasher puts each tensor's pieces in order).
struct Piece {
  uint32_t item;
  uint32_t idx;  // position among the item's pieces
  uint64_t off;  // within the item
  uint64_t len;
};
struct PiecePlan {
  std::vector<Piece> pieces;
  uint64_t largest = 0;    // the longest piece
  bool encrypted = false;  // some item is encrypted
};
PiecePlan makePlan(const Spec& s);

class Run : public RunState {
 public:
  Run(const Spec& s, const std::vector<FileIn>& files, const std::vector<int>& fds, Loaded& out);
  void start();

  void runHostPlaid(int readers);
  void runHostSimple();
  void runDevice(int readers);
  void runDeviceSimple();
  void runHostMapped(int readers);  // loader_mmap.cc

 private:
  // The first tensor to be complete in its destination sets the time to first tensor.
  void tensorDone() { first_.tensorDone(); }
  // Called when a piece is on its destination.
  void pieceDone(uint32_t item) { first_.pieceDone(item); }

  void hostReader();
  void runHostVerified(int readers, bool mapped);
  void runHostHashed(int readers, bool mapped);
  void startHasher();
  void allHashed();
  void deviceReader(StagingRing& r);
  template <typename Copy>
  void runSimple(Copy copy);

  // `len` bytes of `it` from `off` on, out of its file.
  bool read(const Item& it, void* into, uint64_t len, uint64_t off, int64_t item);
  // Bytes [off, off + len) of item `item` (whole crypt chunks), at p, decrypted in place when
  // the item is encrypted; false (the run failed, naming the item) when a MAC does not match.
  bool decrypt(uint32_t item, uint64_t off, uint8_t* p, uint64_t len);

  // loader_mmap.cc
  struct MapRange {
    uint64_t from, len;
    size_t firstPiece, endPiece;
    bool encrypted;  // one piece of an encrypted item
  };
  bool populate(uint64_t off, uint64_t len, uint32_t item, bool write = false, bool* unsupported = nullptr);
  std::vector<MapRange> mapRanges() const;
  void mappedReader(const std::vector<MapRange>& ranges);
  void mappedHashedReader(StagingRing& r);
  bool decryptMapped(const Piece& pc);
  uint64_t privateBytes() const;

  const Spec& s_;
  const std::vector<FileIn>& files_;
  const std::vector<int>& fds_;
  Loaded& out_;
  PiecePlan plan_;
  uint64_t slotBytes_;  // a staging slot: the chunk size, or the largest piece when longer
  FirstTensor first_;
  std::unique_ptr<PieceHasher> hasher_;  // --verify on a GPU or of encrypted items; hash groups with --plaid or --mmap
  GroupUnits units_;                     // hash groups: the hasher's units
  std::atomic<uint64_t> next_{0};
  Clock::time_point t0_;
};

// Why an --mmap spec cannot be mapped as it asks, or nullptr (loader_mmap.cc).
const char* mmapProblem(const Spec& s, const std::vector<FileIn>& files);

}  // namespace tz::loader
