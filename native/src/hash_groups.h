// Hash groups (loader.h HashGroup): one running SHA-256 over several items, checked while
// they stream. The loader and the fetcher check the groups (checkGroups), then either hand
// their pieces to the PieceHasher with a unit per group (groupUnits: the items' pieces one
// after the other) or, one item after the other on one thread, feed a GroupHashes.
#pragma once
#include <cstdint>
#include <vector>

#include "hash.h"
#include "loader.h"
#include "piece_hasher.h"

namespace tz {

// What a group's order must match: Plan (the loader): the items' order in Spec::items;
// File (the fetcher): one object, increasing offsets.
enum class GroupOrder { Plan, File };

// E_USAGE (false) when an item index is out of range, an item is in two groups, or a group's
// items are not in `order`.
bool checkGroups(const std::vector<HashGroup>& groups, const std::vector<Item>& items, GroupOrder order, Error& err);

// The PieceHasher's units for the groups: unit g is group g (SHA-256 only, the group's
// prefix first); lens[g] its items' pieces in the group's order; itemUnits per item.
struct GroupUnits {
  std::vector<Expect> expect;
  std::vector<std::vector<uint64_t>> lens;
  std::vector<UnitOf> itemUnits;
  std::vector<uint32_t> empty;  // the groups of no pieces: check them at the start
};
// itemPieceLens[i]: the lengths of item i's pieces, in order.
GroupUnits groupUnits(const std::vector<HashGroup>& groups, const std::vector<std::vector<uint64_t>>& itemPieceLens);

// The groups hashed on one thread, each item whole and in order (the loaders without --plaid).
class GroupHashes {
 public:
  GroupHashes(const std::vector<HashGroup>& groups, size_t items);
  // Mismatches of the groups that have no items (check once, before the rest).
  Error checkEmpty();
  // Item `item`'s bytes (all of them); the group's mismatch when it was the group's last item.
  Error add(uint32_t item, const uint8_t* p, uint64_t n);

 private:
  struct G {
    Sha256 sha;
    Expect expect;
    uint32_t last = 0;
    bool empty = true;
  };
  Error check(uint32_t g);
  std::vector<G> groups_;
  std::vector<uint32_t> groupOf_;  // per item, UnitOf::kNoUnit when none
};

}  // namespace tz
