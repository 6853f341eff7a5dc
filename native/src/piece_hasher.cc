#include "piece_hasher.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

namespace tz {

Error hashMismatch(const Expect& e, uint32_t crc, const uint8_t* sha, int64_t item) {
  Error err;
  std::string why;
  if (e.crc && crc != e.crc32) {
    char buf[64];
    snprintf(buf, sizeof buf, "CRC32 mismatch (stored %08x, computed %08x)", e.crc32, crc);
    why = buf;
    err.hashes.push_back("crc32");
  }
  if (e.sha && std::memcmp(sha, e.sha256, 32) != 0) {
    why += (why.empty() ? "" : "; ") + std::string("SHA-256 mismatch (stored ") + hex(e.sha256, 32) + ", computed " + hex(sha, 32) + ")";
    err.hashes.push_back("sha256");
  }
  if (!why.empty()) {
    err.code = Code::E_HASH_MISMATCH;
    err.message = why;  // the tensor is err.tensor (JS: item)
    err.tensor = item;
  }
  return err;
}

Error groupMismatch(const Expect& e, const uint8_t* sha, int64_t group) {
  Error err = hashMismatch(e, 0, sha, group);
  if (!err.ok()) {
    err.group = true;
    err.message = "hash group #" + std::to_string(group) + ": " + err.message;
  }
  return err;
}

PieceHasher::PieceHasher(const std::vector<Expect>& expect, std::vector<std::vector<uint64_t>> pieceLens, const RunState& run, ItemDone onItem,
                         std::vector<UnitOf> itemUnits)
    : expect_(expect), lens_(std::move(pieceLens)), run_(run), onItem_(std::move(onItem)), units_(std::move(itemUnits)), items_(new ItemState[expect.size()]) {
  for (size_t i = 0; i < expect.size(); i++) {
    ItemState& st = items_[i];
    const Expect& e = expect[i];
    const size_t n = i < lens_.size() ? lens_[i].size() : 0;
    st.ptr.assign(n, nullptr);
    st.pending.assign(n, nullptr);
    st.sha.update(e.prefix.data(), e.prefix.size());
    st.crc = tz::crc32(0, e.prefix.data(), e.prefix.size());
    if (e.crc || e.sha) total_ += n;
  }
  left_.store(total_);
}

void PieceHasher::arrived(uint32_t item, uint32_t idx, const uint8_t* p, PendingHashes* pending) {
  if (!units_.empty()) {
    idx += units_[item].first;
    item = units_[item].unit;
  }
  ItemState& st = items_[item];
  {
    std::lock_guard<std::mutex> lk(st.m);
    st.ptr[idx] = p;
    st.pending[idx] = pending;
    if (st.state != State::Idle || st.cursor >= st.ptr.size() || !st.ptr[st.cursor]) return;
    st.state = State::Queued;
  }
  {
    std::lock_guard<std::mutex> g(readyM_);
    ready_.push_back(item);
  }
  readyCv_.notify_one();
}

// The lane's item's next piece if it has arrived; else the item goes back to Idle (its next
// arrival queues it again) and the lane is free.
bool PieceHasher::nextPiece(Lane& l) {
  ItemState& st = items_[l.item];
  std::lock_guard<std::mutex> lk(st.m);
  if (st.cursor < st.ptr.size() && st.ptr[st.cursor]) {
    l.p = st.ptr[st.cursor];
    l.pending = st.pending[st.cursor];
    l.left = lens_[l.item][st.cursor];
    st.state = State::Busy;
    return true;
  }
  st.state = State::Idle;
  return false;
}

void PieceHasher::pieceHashed(Lane& l) {
  if (l.pending) l.pending->done();
  bool whole;
  {
    std::lock_guard<std::mutex> lk(items_[l.item].m);
    whole = ++items_[l.item].cursor == items_[l.item].ptr.size();
  }
  if (whole && onItem_) onItem_(l.item);
  if (left_.fetch_sub(1) == 1) {
    std::lock_guard<std::mutex> g(readyM_);
    readyCv_.notify_all();
  }
}

bool PieceHasher::popReady(uint32_t& item, bool wait) {
  std::unique_lock<std::mutex> g(readyM_);
  for (;;) {
    if (!ready_.empty()) {
      item = ready_.front();
      ready_.pop_front();
      return true;
    }
    if (!wait || left_.load() == 0 || run_.cancelled()) return false;
    readyCv_.wait_for(g, std::chrono::milliseconds(100));
  }
}

void PieceHasher::hashStep(Lane& l, uint64_t n) {
  ItemState& st = items_[l.item];
  const Expect& e = expect_[l.item];
  if (e.sha) st.sha.update(l.p, n);
  if (e.crc) st.crc = tz::crc32(st.crc, l.p, n);
  l.p += n;
  l.left -= n;
}

void PieceHasher::hashPair(Lane& a, Lane& b, uint64_t n) {
  ItemState &sa = items_[a.item], &sb = items_[b.item];
  const Expect &ea = expect_[a.item], &eb = expect_[b.item];
  if (!ea.sha || !eb.sha) {
    hashStep(a, n);
    hashStep(b, n);
    return;
  }
  sha256UpdateX2(sa.sha, a.p, sb.sha, b.p, n);
  if (ea.crc) sa.crc = tz::crc32(sa.crc, a.p, n);
  if (eb.crc) sb.crc = tz::crc32(sb.crc, b.p, n);
  a.p += n;
  a.left -= n;
  b.p += n;
  b.left -= n;
}

void PieceHasher::hasher() {
  Lane lanes[2];
  constexpr uint64_t kStep = 1 << 20;  // stays in cache for the CRC after the SHA
  for (;;) {
    if (run_.cancelled()) return;
    for (Lane& l : lanes) {
      if (l.active) continue;
      uint32_t item;
      // Block only when there is nothing to hash at all.
      if (!popReady(item, !lanes[0].active && !lanes[1].active)) continue;
      l.item = item;
      l.active = nextPiece(l);
    }
    if (!lanes[0].active && !lanes[1].active) {
      if (left_.load() == 0) return;
      continue;
    }
    if (lanes[0].active && lanes[1].active) hashPair(lanes[0], lanes[1], std::min({lanes[0].left, lanes[1].left, kStep}));
    else {
      Lane& l = lanes[0].active ? lanes[0] : lanes[1];
      hashStep(l, std::min(l.left, kStep));
    }
    for (Lane& l : lanes) {
      if (!l.active || l.left > 0) continue;
      pieceHashed(l);
      l.active = nextPiece(l);
    }
  }
}

void PieceHasher::start(int threads) {
  if (left_.load() == 0) return;
  for (int i = 0; i < threads; i++) threads_.emplace_back([this] { hasher(); });
}

void PieceHasher::join() {
  for (auto& t : threads_) t.join();
  threads_.clear();
}

int PieceHasher::defaultThreads() {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, std::min(8, cores / 2));
}

bool PieceHasher::complete(uint32_t item) const {
  ItemState& st = items_[item];
  std::lock_guard<std::mutex> lk(st.m);
  return st.cursor == st.ptr.size();
}

Error PieceHasher::check(uint32_t item) {
  uint8_t got[32] = {};
  if (expect_[item].sha) sha256(item, got);
  if (!units_.empty()) return groupMismatch(expect_[item], got, item);
  return hashMismatch(expect_[item], crc32(item), got, item);
}

}  // namespace tz
