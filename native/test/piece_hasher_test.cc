// The shared hashing scheduler (src/piece_hasher.h) on its own: random items of random
// pieces, hashed by 1-4 threads, handed over out of order across items and pieces from
// several threads (in place), or in order through two-slot rings whose slots are refilled
// once their pieces are hashed (as the loader's and the fetcher's workers do); each item's
// CRC32 and SHA-256 must equal those of its prefix and data in order. A corrupted piece is
// E_HASH_MISMATCH naming its item and exactly the stored hashes that fail; a cancelled run
// stops the hashers with pieces missing.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../src/piece_hasher.h"

#include "check.h"

namespace {

struct Model {
  std::vector<tz::Expect> expect;
  std::vector<std::vector<std::vector<uint8_t>>> data;  // [item][piece]
  std::vector<std::vector<uint64_t>> lens;
};

Model randomModel(std::mt19937_64& rng) {
  Model m;
  const int n = 1 + static_cast<int>(rng() % 24);
  for (int i = 0; i < n; i++) {
    tz::Expect e;
    const int kind = static_cast<int>(rng() % 5);  // 0: neither; 1: crc; 2: sha; 3, 4: both
    e.crc = kind == 1 || kind >= 3;
    e.sha = kind >= 2;
    e.prefix.resize(rng() % 200);
    for (auto& c : e.prefix) c = static_cast<char>(rng());
    const int pieces = rng() % 6 == 0 ? 0 : 1 + static_cast<int>(rng() % 7);
    std::vector<std::vector<uint8_t>> ps;
    std::vector<uint64_t> lens;
    tz::Sha256 sha;
    sha.update(e.prefix.data(), e.prefix.size());
    uint32_t crc = tz::crc32(0, e.prefix.data(), e.prefix.size());
    for (int k = 0; k < pieces; k++) {
      std::vector<uint8_t> p(1 + rng() % (rng() % 3 == 0 ? (3u << 20) : 70000u));
      for (auto& b : p) b = static_cast<uint8_t>(rng());
      sha.update(p.data(), p.size());
      crc = tz::crc32(crc, p.data(), p.size());
      lens.push_back(p.size());
      ps.push_back(std::move(p));
    }
    e.crc32 = crc;
    sha.final(e.sha256);
    m.expect.push_back(e);
    m.data.push_back(std::move(ps));
    m.lens.push_back(std::move(lens));
  }
  return m;
}

struct Ref {
  uint32_t item, idx;
};

// One round: `sources` threads hand every piece that needs hashing to a hasher of `threads`
// threads; in place in a random order (slots false) or copied into two-slot rings in file
// order. Piece `bad` (if any) is handed over with one byte flipped. Returns the items'
// check() results, and whether every item was called back once and hashed completely.
std::vector<tz::Error> round(const Model& m, int threads, int sources, bool slots, const Ref* bad, std::mt19937_64& rng, bool& whole) {
  tz::RunState run(nullptr, nullptr);
  const size_t n = m.expect.size();
  std::unique_ptr<std::atomic<int>[]> calls(new std::atomic<int>[n]);
  for (size_t i = 0; i < n; i++) calls[i].store(0);
  std::vector<tz::Error> results(n);
  std::unique_ptr<tz::PieceHasher> h;
  h.reset(new tz::PieceHasher(m.expect, m.lens, run, [&](uint32_t i) {
    calls[i]++;
    results[i] = h->check(i);
  }));
  std::vector<Ref> refs;
  for (uint32_t i = 0; i < n; i++)
    for (uint32_t k = 0; k < m.data[i].size(); k++)
      if (h->needs(i)) refs.push_back({i, k});
  if (!slots) std::shuffle(refs.begin(), refs.end(), rng);
  // The corrupted copy of the bad piece (in place: the hasher reads it where it is handed).
  std::vector<uint8_t> corrupt;
  if (bad) {
    corrupt = m.data[bad->item][bad->idx];
    corrupt[rng() % corrupt.size()] ^= 0x5a;
  }
  auto bytes = [&](const Ref& r) { return bad && r.item == bad->item && r.idx == bad->idx ? corrupt.data() : m.data[r.item][r.idx].data(); };
  h->start(threads);
  std::atomic<size_t> next{0};
  std::vector<tz::PendingHashes> counters(static_cast<size_t>(sources));
  std::vector<std::thread> ts;
  std::atomic<bool> ringOk{true};
  for (int s = 0; s < sources; s++)
    ts.emplace_back([&, s] {
      if (!slots) {
        // In place: some pieces count in this source's counter, checked at the end.
        for (size_t u; (u = next.fetch_add(1)) < refs.size();) {
          tz::PendingHashes* p = u % 2 ? &counters[s] : nullptr;
          if (p) p->add(1);
          h->arrived(refs[u].item, refs[u].idx, bytes(refs[u]), p);
        }
        return;
      }
      tz::StagingRing ring;
      std::vector<uint8_t> a(3u << 20), b(3u << 20);
      ring.useSlots(a.data(), b.data());
      for (size_t u; (u = next.fetch_add(1)) < refs.size();) {
        tz::Error e;
        const int k = ring.acquire(e, &run);
        if (k < 0 || !e.ok()) {
          ringOk = false;
          return;
        }
        const Ref& r = refs[u];
        std::memcpy(ring.slot(k), bytes(r), m.lens[r.item][r.idx]);
        ring.pending(k).set(1);
        h->arrived(r.item, r.idx, ring.slot(k), &ring.pending(k));
      }
      // The slots are freed here: wait for both.
      for (int k = 0; k < 2; k++)
        if (!ring.pending(k).wait(&run)) ringOk = false;
    });
  for (auto& t : ts) t.join();
  h->join();
  whole = ringOk.load();
  for (auto& c : counters) whole = whole && c.pending() == 0;
  for (uint32_t i = 0; i < n; i++) {
    const bool expectCall = h->needs(i) && !m.data[i].empty();
    whole = whole && (h->complete(i) || !h->needs(i)) && calls[i].load() == (expectCall ? 1 : 0);
    if (!expectCall) results[i] = h->check(i);  // no pieces: the prefix only
  }
  return results;
}

}  // namespace

void pieceHasherTests() {
  std::mt19937_64 rng(1313);
  int clean = 0, detected = 0;
  for (int r = 0; r < 60; r++) {
    Model m = randomModel(rng);
    const int threads = 1 + static_cast<int>(rng() % 4), sources = 1 + static_cast<int>(rng() % 4);
    const bool slots = rng() % 2;
    std::vector<Ref> hashed;
    for (uint32_t i = 0; i < m.expect.size(); i++)
      for (uint32_t k = 0; k < m.data[i].size(); k++)
        if (m.expect[i].crc || m.expect[i].sha) hashed.push_back({i, k});
    const bool corrupt = r % 3 == 2 && !hashed.empty();
    Ref bad{};
    if (corrupt) bad = hashed[rng() % hashed.size()];
    bool whole = false;
    std::vector<tz::Error> res = round(m, threads, sources, slots, corrupt ? &bad : nullptr, rng, whole);
    const std::string what = "piece hasher round " + std::to_string(r) + " (" + std::to_string(m.expect.size()) + " items, " + std::to_string(threads) + " threads, " +
                             std::to_string(sources) + (slots ? " rings" : " sources in place") + ")";
    CHECK(whole, (what + ": every piece hashed, every item called back once, every slot released").c_str());
    bool ok = true;
    for (uint32_t i = 0; i < res.size(); i++) {
      if (corrupt && i == bad.item) {
        const tz::Expect& e = m.expect[i];
        std::vector<std::string> names;
        if (e.crc) names.push_back("crc32");
        if (e.sha) names.push_back("sha256");
        const bool right = res[i].code == Code::E_HASH_MISMATCH && res[i].tensor == static_cast<int64_t>(i) && res[i].hashes == names &&
                           res[i].message.find(e.sha ? "SHA-256 mismatch (stored " : "CRC32 mismatch (stored ") != std::string::npos;
        CHECK(right, (what + ": the corrupted piece is E_HASH_MISMATCH naming its item and hashes").c_str());
        detected += right;
      } else {
        ok = ok && res[i].ok();
      }
    }
    CHECK(ok, (what + ": the other items match").c_str());
    clean += ok;
  }
  CHECK(detected >= 15, "piece hasher: corrupted rounds ran");

  // A failed run stops the hashers although pieces are missing.
  {
    Model m;
    tz::Expect e;
    e.sha = true;
    m.expect = {e};
    m.lens = {{100, 100}};
    tz::RunState run(nullptr, nullptr);
    tz::PieceHasher h(m.expect, m.lens, run);
    std::vector<uint8_t> p(100, 1);
    tz::PendingHashes pend;
    h.start(2);
    pend.set(1);
    h.arrived(0, 1, p.data(), &pend);  // piece 0 never comes: piece 1 waits
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(pend.pending() == 1, "piece hasher: a piece waits for the one before it");
    run.errs.set(Code::E_IO, "stop");
    CHECK(!pend.wait(&run), "piece hasher: a slot's wait ends when the run fails");
    h.join();
    CHECK(!h.complete(0), "piece hasher: a failed run ends its hashers with pieces missing");
  }
}
