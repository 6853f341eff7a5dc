#include "hash_groups.h"

#include <cstring>
#include <string>

namespace tz {

bool checkGroups(const std::vector<HashGroup>& groups, const std::vector<Item>& items, GroupOrder order, Error& err) {
  auto fail = [&](const std::string& why) {
    err = {Code::E_USAGE, why, -1};
    return false;
  };
  std::vector<uint32_t> in(items.size(), UnitOf::kNoUnit);
  for (size_t g = 0; g < groups.size(); g++) {
    const std::string name = "hash group #" + std::to_string(g);
    const std::vector<uint32_t>& gi = groups[g].items;
    for (size_t k = 0; k < gi.size(); k++) {
      const uint32_t i = gi[k];
      if (i >= items.size()) return fail(name + ": item " + std::to_string(i) + " is out of range (" + std::to_string(items.size()) + " items)");
      if (in[i] != UnitOf::kNoUnit) return fail(name + ": item " + std::to_string(i) + " is already in hash group #" + std::to_string(in[i]));
      in[i] = static_cast<uint32_t>(g);
      if (!k) continue;
      const Item &a = items[gi[k - 1]], &b = items[i];
      if (order == GroupOrder::Plan && gi[k - 1] > i)
        return fail(name + ": its items must come in the order they are listed in the plan (item " + std::to_string(i) + " after item " + std::to_string(gi[k - 1]) + ")");
      if (order == GroupOrder::File && a.file != b.file) return fail(name + ": its items must all lie in one object");
      if (order == GroupOrder::File && a.src > b.src)
        return fail(name + ": its items must come in file order (item " + std::to_string(i) + " lies before item " + std::to_string(gi[k - 1]) + ")");
    }
  }
  return true;
}

GroupUnits groupUnits(const std::vector<HashGroup>& groups, const std::vector<std::vector<uint64_t>>& itemPieceLens) {
  GroupUnits u;
  u.itemUnits.assign(itemPieceLens.size(), UnitOf{});
  u.lens.resize(groups.size());
  for (uint32_t g = 0; g < groups.size(); g++) {
    Expect e;
    e.sha = true;
    std::memcpy(e.sha256, groups[g].sha256, 32);
    e.prefix = groups[g].prefix;
    u.expect.push_back(std::move(e));
    for (uint32_t i : groups[g].items) {
      u.itemUnits[i] = {g, static_cast<uint32_t>(u.lens[g].size())};
      u.lens[g].insert(u.lens[g].end(), itemPieceLens[i].begin(), itemPieceLens[i].end());
    }
    if (u.lens[g].empty()) u.empty.push_back(g);
  }
  return u;
}

GroupHashes::GroupHashes(const std::vector<HashGroup>& groups, size_t items) : groups_(groups.size()), groupOf_(items, UnitOf::kNoUnit) {
  for (size_t g = 0; g < groups.size(); g++) {
    G& x = groups_[g];
    x.expect.sha = true;
    std::memcpy(x.expect.sha256, groups[g].sha256, 32);
    x.sha.update(groups[g].prefix.data(), groups[g].prefix.size());
    x.empty = groups[g].items.empty();
    if (!x.empty) x.last = groups[g].items.back();
    for (uint32_t i : groups[g].items) groupOf_[i] = static_cast<uint32_t>(g);
  }
}

Error GroupHashes::check(uint32_t g) {
  uint8_t got[32];
  groups_[g].sha.final(got);
  return groupMismatch(groups_[g].expect, got, g);
}

Error GroupHashes::checkEmpty() {
  for (uint32_t g = 0; g < groups_.size(); g++)
    if (groups_[g].empty) {
      Error e = check(g);
      if (!e.ok()) return e;
    }
  return Error{};
}

Error GroupHashes::add(uint32_t item, const uint8_t* p, uint64_t n) {
  const uint32_t g = groupOf_[item];
  if (g == UnitOf::kNoUnit) return Error{};
  groups_[g].sha.update(p, n);
  return groups_[g].last == item ? check(g) : Error{};
}

}  // namespace tz
