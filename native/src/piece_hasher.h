// The hashing scheduler that the fetcher's receivers (fetch.cc) and the loader's GPU readers
// (loader.cc, --plaid --verify) share. Sources hand over each piece of an item as soon as it
// is in place (a staging slot, or the destination), in any order across items and pieces;
// hasher threads take the items whose next piece has arrived, two at a time per thread, and
// advance their CRC32 and SHA-256 (the item's prefix first, then its pieces in order) with
// the interleaved two-stream SHA-256 (hash.h: about 1.75x one stream per core), in 1 MiB
// steps that stay in cache for the CRC after the SHA. A piece handed over from a staging
// slot counts in that slot's PendingHashes (stream_core.h) until it is hashed, so the slot is
// refilled only afterwards.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "hash.h"
#include "loader.h"
#include "stream_core.h"

namespace tz {

// An empty Error when the computed hashes of tensor `item` match the stored ones; else
// E_HASH_MISMATCH naming every one that does not (in `hashes`, and in the message with the
// stored and computed values).
Error hashMismatch(const Expect& e, uint32_t crc, const uint8_t* sha, int64_t item);
// The same for hash group `group`'s SHA-256 (hash_groups.h): Error::group set, the message
// "hash group #N: SHA-256 mismatch (stored <hex>, computed <hex>)".
Error groupMismatch(const Expect& e, const uint8_t* sha, int64_t group);

// Where an item's pieces go when the hasher's units are not the items (hash groups,
// hash_groups.h): unit `unit`, from piece `first` of the unit on. kNoUnit: not hashed.
struct UnitOf {
  static constexpr uint32_t kNoUnit = 0xffffffffu;
  uint32_t unit = kNoUnit;
  uint32_t first = 0;
};

//
// A "unit" is what one running hash covers: by default one item (its prefix, then its
// pieces); with a unit map (hash groups, hash_groups.h) several items, whose pieces are
// hashed one after the other as one stream: item -> (unit, the index of its first piece in
// the unit). The callers index arrived() and needs() by item either way; the rest
// (complete, crc32, sha256, check, onUnit) by unit. A unit is hashed strictly in order, so
// sources that wait for their pieces to be hashed (staging slots) must take a unit's pieces
// in the unit's order, or they can deadlock.
class PieceHasher {
 public:
  // Called on a hasher thread once all of a unit's pieces are hashed.
  using ItemDone = std::function<void(uint32_t unit)>;

  // expect[u]: unit u's hashes (a unit with neither CRC32 nor SHA-256 is not hashed: hand
  // none of its pieces over); pieceLens[u]: the lengths of its pieces, in order. `run`
  // stops the hashers when it fails or is cancelled. Both must outlive the hasher.
  // itemUnits: empty (unit i is item i), or one entry per item; with it a mismatch is a
  // hash group's (Error::group).
  PieceHasher(const std::vector<Expect>& expect, std::vector<std::vector<uint64_t>> pieceLens, const RunState& run, ItemDone onItem = nullptr,
              std::vector<UnitOf> itemUnits = {});
  ~PieceHasher() { join(); }
  PieceHasher(const PieceHasher&) = delete;
  PieceHasher& operator=(const PieceHasher&) = delete;

  bool needs(uint32_t item) const {
    const uint32_t u = unitOf(item);
    return u != UnitOf::kNoUnit && (expect_[u].crc || expect_[u].sha);
  }
  // Pieces to hash, in all.
  uint64_t pieces() const { return total_; }

  // Piece `idx` of `item` is at p (its length as given in pieceLens) and stays there until
  // it is hashed; then `pending`, if any, is told (done()). From any thread.
  void arrived(uint32_t item, uint32_t idx, const uint8_t* p, PendingHashes* pending);

  // `threads` hasher threads (none when there is nothing to hash); they end once every piece
  // is hashed or the run failed or was cancelled.
  void start(int threads);
  void join();
  // Half the cores (each thread hashes two items at once), 1 to 8.
  static int defaultThreads();

  // After join(): whether every piece of the unit was hashed, and its hashes.
  bool complete(uint32_t unit) const;
  uint32_t crc32(uint32_t unit) const { return items_[unit].crc; }
  void sha256(uint32_t unit, uint8_t out[32]) { items_[unit].sha.final(out); }
  // The unit's hashes against the expected ones (hashMismatch, naming the item, or with a
  // unit map the group: groupMismatch); once per unit (it finalizes the SHA-256), from
  // onItem or after join().
  Error check(uint32_t unit);

 private:
  // Idle: waiting for its next piece; Queued: in the ready queue; Busy: a hasher has it.
  enum class State : uint8_t { Idle, Queued, Busy };
  struct ItemState {
    std::mutex m;
    std::vector<const uint8_t*> ptr;      // per piece, once it has arrived
    std::vector<PendingHashes*> pending;  // the slot it is in (nullptr: in the destination)
    uint32_t cursor = 0;                  // next piece to hash
    State state = State::Idle;
    Sha256 sha;
    uint32_t crc = 0;
  };
  struct Lane {
    uint32_t item = 0;
    const uint8_t* p = nullptr;
    uint64_t left = 0;
    PendingHashes* pending = nullptr;
    bool active = false;
  };
  uint32_t unitOf(uint32_t item) const { return units_.empty() ? item : units_[item].unit; }
  bool nextPiece(Lane& l);
  void pieceHashed(Lane& l);
  bool popReady(uint32_t& item, bool wait);
  void hashStep(Lane& l, uint64_t n);
  void hashPair(Lane& a, Lane& b, uint64_t n);
  void hasher();

  const std::vector<Expect>& expect_;
  std::vector<std::vector<uint64_t>> lens_;
  const RunState& run_;
  ItemDone onItem_;
  std::vector<UnitOf> units_;  // per item, or empty: the identity
  std::unique_ptr<ItemState[]> items_;
  uint64_t total_ = 0;
  std::atomic<uint64_t> left_{0};  // pieces still to hash
  std::mutex readyM_;
  std::condition_variable readyCv_;
  std::deque<uint32_t> ready_;  // items whose next piece has arrived
  std::vector<std::thread> threads_;
};

}  // namespace tz
