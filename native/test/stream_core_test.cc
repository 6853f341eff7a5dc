// The streaming core (src/stream_core.h) on its own: first-tensor tracking, a ring without a
// device, and, on the process's devices (TENSORIZE_SIM_GPU=2 runs them on two simulated
// GPUs, whose copies read their source late), rings of worker threads that fill slots and
// submit copies: each slot pinned by its worker, and slots carved from one shared region
// with several copies per submission. Every byte is read back; the device layer must hold
// nothing more afterwards.
#include <atomic>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../src/stream_core.h"

#include "check.h"

namespace {

using tz::StagingRing;

void firstTensorTests() {
  tz::FirstTensor f;
  double ms = -1;
  f.init({2, 0, 1}, &ms);
  f.start(tz::Clock::now());
  f.pieceDone(0);
  CHECK(!f.done() && ms < 0 && f.remaining(0) == 1, "first tensor: not done while a piece is missing");
  f.pieceDone(2);
  CHECK(f.done() && ms >= 0 && f.remaining(2) == 0, "first tensor: the first complete item sets the time");
  const double was = ms;
  f.pieceDone(0);
  f.tensorDone();
  CHECK(ms == was, "first tensor: set once");
}

void hostRingTests() {
  // No device: the ring only alternates its slots (the fetcher's export and hash-only runs).
  StagingRing r;
  uint8_t a[16], b[16];
  r.useSlots(a, b);
  tz::Error e;
  int k0 = r.acquire(e), k1 = r.acquire(e), k2 = r.acquire(e);
  CHECK(e.ok() && k0 == 0 && k1 == 1 && k2 == 0 && r.slot(0) == a && r.slot(1) == b, "ring without a device: slots in turn");
  tz::ErrorSlot errs;
  r.close(errs);
  CHECK(!errs.failed() && r.pinnedBytes() == 0, "ring without a device: closes cleanly");
}

struct Piece {
  uint64_t off, len;  // in the data
  uint32_t item;
};

// `workers` threads stream `data` onto `device` in pieces of at most `slot` bytes; with
// `shared`, every ring's slots lie in one region pinned up front and a submission carries up
// to four pieces. Returns whether every byte arrived.
bool stream(int device, int workers, uint64_t slot, bool shared, uint64_t seed, std::string& why) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> data(1 + rng() % (2 << 20));
  for (auto& x : data) x = static_cast<uint8_t>(rng());
  // Items of random sizes, cut into pieces.
  std::vector<Piece> pieces;
  std::vector<uint64_t> perItem;
  for (uint64_t off = 0; off < data.size();) {
    const uint64_t itemLen = std::min<uint64_t>(data.size() - off, 1 + rng() % (3 * slot));
    perItem.push_back(0);
    for (uint64_t a = 0; a < itemLen; a += slot) {
      pieces.push_back({off + a, std::min(slot, itemLen - a), static_cast<uint32_t>(perItem.size() - 1)});
      perItem.back()++;
    }
    off += itemLen;
  }
  tz::dev::DevPtr d = 0;
  tz::Error e = tz::dev::alloc(device, data.size(), &d);
  if (!e.ok()) {
    why = "alloc: " + e.message;
    return false;
  }
  tz::RunState run(nullptr, nullptr);
  tz::FirstTensor first;
  double firstMs = -1;
  first.init(perItem, &firstMs);
  tz::PinnedHost region;
  std::vector<std::unique_ptr<StagingRing>> rings;
  if (shared && !region.allocate(2 * workers * slot, "the test ring", e)) run.failed(e);
  for (int i = 0; i < workers && !run.errs.failed(); i++) {
    rings.emplace_back(new StagingRing);
    run.failed(rings.back()->open(device, i % 2 == 0));
    if (shared) rings.back()->useSlots(region.data() + 2 * i * slot, region.data() + (2 * i + 1) * slot);
  }
  std::atomic<size_t> next{0};
  auto worker = [&](StagingRing& r) {
    tz::Error pe;
    if (!shared && !r.pin(slot, "the test ring", pe)) return run.errs.set(pe);
    const size_t per = shared ? 4 : 1;
    for (;;) {
      // A run of consecutive pieces that fits one slot.
      const size_t p0 = next.fetch_add(per);
      if (p0 >= pieces.size() || run.cancelled()) return;
      tz::Error we;
      const int k = r.acquire(we);
      if (run.failed(we)) return;
      std::vector<StagingRing::Copy> cs;
      uint64_t at = 0;
      for (size_t p = p0; p < std::min(pieces.size(), p0 + per) && at + pieces[p].len <= slot; p++) {
        std::memcpy(r.slot(k) + at, data.data() + pieces[p].off, pieces[p].len);
        cs.push_back({d + pieces[p].off, at, pieces[p].len, pieces[p].item});
        at += pieces[p].len;
      }
      // Pieces that did not fit go through the slot alone, one after the other.
      for (size_t p = p0 + cs.size(); p < std::min(pieces.size(), p0 + per); p++) {
        if (!cs.empty() && run.failed(r.submit(k, cs.data(), cs.size(), &first, -1))) return;
        cs.clear();
        const int k2 = r.acquire(we);
        if (run.failed(we)) return;
        std::memcpy(r.slot(k2), data.data() + pieces[p].off, pieces[p].len);
        const StagingRing::Copy c{d + pieces[p].off, 0, pieces[p].len, pieces[p].item};
        if (run.failed(r.submit(k2, &c, 1, &first, -1))) return;
      }
      if (!cs.empty() && run.failed(r.submit(k, cs.data(), cs.size(), &first, -1))) return;
      run.progress(at);
    }
  };
  if (!run.errs.failed()) {
    std::vector<std::thread> ts;
    for (auto& r : rings) ts.emplace_back([&worker, &r] { worker(*r); });
    for (auto& t : ts) t.join();
  }
  uint64_t pinned = 0;
  for (auto& r : rings) {
    pinned += r->pinnedBytes();
    r->close(run.errs);
  }
  run.failed(region.release());
  std::vector<uint8_t> back(data.size());
  if (!run.errs.failed()) run.failed(tz::dev::copyToHost(device, back.data(), d, data.size()));
  run.failed(tz::dev::free(device, d));
  if (run.errs.failed()) {
    why = tz::codeName(run.errs.get().code) + std::string(" ") + run.errs.get().message;
    return false;
  }
  if (pinned != (shared ? 0 : 2 * workers * slot)) why = "pinnedBytes " + std::to_string(pinned);
  else if (firstMs < 0) why = "no first tensor";
  else if (back != data) why = "bytes differ";
  return why.empty();
}

void deviceRingTests() {
  const int devices = tz::dev::deviceCount();
  if (devices == 0) return;
  const tz::dev::SimCounts before = tz::dev::simCounts();
  for (int seed = 1; seed <= 6; seed++) {
    const int device = seed % devices;
    const bool shared = seed % 2 == 0;
    const uint64_t slot = seed % 3 == 0 ? 4096 : 64 << 10;
    std::string why;
    const std::string what = "stream core seed " + std::to_string(seed) + " on cuda:" + std::to_string(device) + (shared ? " (shared region)" : " (own regions)");
    CHECK(stream(device, 1 + seed % 4, slot, shared, seed, why), (what + ": " + why).c_str());
  }
  const tz::dev::SimCounts after = tz::dev::simCounts();
  CHECK(after.allocations == before.allocations && after.registrations == before.registrations && after.streams == before.streams && after.events == before.events,
        "stream core: nothing left held on the device");
}

}  // namespace

void streamCoreTests() {
  firstTensorTests();
  hostRingTests();
  deviceRingTests();
}
