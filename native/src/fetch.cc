#include "fetch.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "device.h"
#include "fetch_http.h"
#include "fetch_plan.h"
#include "hash.h"
#include "hash_groups.h"
#include "piece_hasher.h"
#include "pinned.h"
#include "stream_core.h"

namespace tz {

namespace {

using fetchplan::Piece;
using fetchplan::Plan;
using fetchplan::Request;
using fetchhttp::Attempt;
using fetchhttp::Outcome;

struct Worker {
  int id = 0;
  Conn conn;
  int endpoint = -1;  // where conn goes, while it is open
  int queue = -1;     // the plan's queue it takes requests from
  uint32_t connects = 0;
  StagingRing ring;  // its two receive slots (and, for a GPU, its stream: stream_core.h)
  std::vector<uint8_t> scratch;
};

class FetchRun : RunState {
 public:
  FetchRun(const FetchSpec& s, Loaded* dest, FetchResult& out) : RunState(s.progress, s.cancel), s_(s), dest_(dest), out_(out) {}

  bool run(Error& err) {
    t0_ = Clock::now();
    first_.start(t0_);
    objs_ = fetchplan::objectsOf(s_);
    std::vector<uint32_t> endpointOf;
    const uint32_t nEndpoints = fetchplan::groupEndpoints(objs_, endpointOf);
    if (!fetchplan::makePlan(s_, objs_, endpointOf, plan_, err)) return false;
    hashing_ = !s_.hashes.empty() || !s_.groups.empty();
    if (!s_.hashes.empty() && (s_.hashes.size() != s_.items.size() || !s_.groups.empty())) {
      err = {Code::E_USAGE, s_.groups.empty() ? "fetch: hashes must have one entry per item" : "fetch: per-item hashes and hash groups do not go together", -1};
      return false;
    }
    // A group's pieces arrive in its order: one object's requests are taken in file order.
    if (!checkGroups(s_.groups, s_.items, GroupOrder::File, err)) return false;
    device_ = dest_ ? dest_->device : -1;
    slots_ = !dest_ || device_ >= 0;
    first_.init(std::vector<uint64_t>(plan_.perItem.begin(), plan_.perItem.end()), &out_.firstTensorMs);
    if (hashing_) {
      // Each item's pieces in order (the plan lists them in file order, so by idx).
      std::vector<std::vector<uint64_t>> lens(s_.items.size());
      for (const Piece& pc : plan_.pieces) lens[pc.item].push_back(pc.len);
      if (s_.groups.empty()) {
        hasher_.reset(new PieceHasher(s_.hashes, std::move(lens), *this));
      } else {
        // Each group checked as soon as it is hashed whole (a mismatch stops the fetch); a
        // group of no pieces (only its prefix) here.
        units_ = groupUnits(s_.groups, lens);
        hasher_.reset(new PieceHasher(units_.expect, std::move(units_.lens), *this, [this](uint32_t g) { failed(hasher_->check(g)); }, units_.itemUnits));
        for (uint32_t g : units_.empty) failed(hasher_->check(g));
        if (errs.failed()) {
          err = errs.get();
          return false;
        }
      }
    }
    std::string why;
    if (!s_.output.empty() && !dest_) {
      outFd_ = ::open(s_.output.c_str(), O_WRONLY | O_CLOEXEC);
      if (outFd_ < 0) {
        err = {Code::E_IO, s_.output + ": " + std::strerror(errno), -1};
        return false;
      }
    }
    struct CloseOut {
      int& fd;
      ~CloseOut() {
        if (fd >= 0) ::close(fd);
        fd = -1;
      }
    } closeOut{outFd_};
    endpointOf_ = std::move(endpointOf);
    if (!openEndpoints(nEndpoints, err)) return false;
    const int n = plan_.reqs.empty() ? 0 : std::max(1, std::min<int>(s_.connections, static_cast<int>(plan_.reqs.size())));
    std::vector<std::unique_ptr<Worker>> ws;
    allocateRing(2 * static_cast<size_t>(n), plan_.maxRequest);
    taken_.reset(new std::atomic<uint32_t>[plan_.queues.size()]);
    for (size_t q = 0; q < plan_.queues.size(); q++) taken_[q] = 0;
    // Connections over the queues (endpoints) by their bytes: each next one to the queue
    // with the most bytes per connection so far (every queue gets one first).
    std::vector<uint32_t> onQueue(plan_.queues.size(), 0);
    auto better = [&](size_t q, size_t b) {
      if ((onQueue[q] == 0) != (onQueue[b] == 0)) return onQueue[q] == 0;
      return static_cast<double>(plan_.queues[q].bytes) * (onQueue[b] + 1) > static_cast<double>(plan_.queues[b].bytes) * (onQueue[q] + 1);
    };
    for (int i = 0; i < n && !errs.failed(); i++) {
      ws.emplace_back(new Worker);
      ws.back()->id = i;
      size_t best = 0;
      for (size_t q = 1; q < plan_.queues.size(); q++)
        if (better(q, best)) best = q;
      onQueue[best]++;
      ws.back()->queue = static_cast<int>(best);
      setupWorker(*ws.back());
    }
    out_.connections = static_cast<uint64_t>(n);
    if (!errs.failed()) {
      std::vector<std::thread> ts;
      for (auto& w : ws) ts.emplace_back([this, &w] { work(*w); });
      if (hasher_) hasher_->start(PieceHasher::defaultThreads());
      for (auto& t : ts) t.join();
      if (hasher_) hasher_->join();
    }
    // Each worker's ring drains its stream first, so the shared region can go after.
    for (auto& w : ws) teardownWorker(*w);
    freeRing();
    out_.transferMs = msSince(t0_);
    out_.requests = requests_.load();
    out_.retries = retries_.load();
    out_.wireBytes = wire_.load();
    if (!errs.failed() && s_.cancel && s_.cancel->load()) errs.set(Code::E_INTERRUPTED, "the load was cancelled");
    if (errs.failed()) {
      err = errs.get();
      return false;
    }
    for (const Item& it : s_.items) out_.bytes += it.len;
    for (uint32_t g = 0; g < s_.groups.size(); g++)
      if (!hasher_->complete(g)) {
        err = {Code::E_NATIVE, "fetch: hash group #" + std::to_string(g) + " was not hashed completely", -1};
        return false;
      }
    if (hashing_ && s_.groups.empty()) {
      out_.crc32.resize(s_.items.size());
      out_.sha256.resize(32 * s_.items.size());
      for (uint32_t i = 0; i < s_.items.size(); i++) {
        if (needsHash(i) && !hasher_->complete(i)) {
          err = {Code::E_NATIVE, "fetch: tensor #" + std::to_string(i) + " was not hashed completely", static_cast<int64_t>(i)};
          return false;
        }
        out_.crc32[i] = hasher_->crc32(i);
        hasher_->sha256(i, &out_.sha256[32 * i]);
      }
    }
    return true;
  }

 private:
  // The receive slots of all connections: one allocation, pinned for a GPU (pinned.h; one
  // region instead of two per connection: each pinning call costs milliseconds).
  bool allocateRing(size_t slots, uint64_t size) {
    if (!slots_ || slots == 0) return true;
    const uint64_t ringBytes = slots * size;
    Error tooBig;
    if (!stagingFits(ringBytes, "the receive ring (2 x connections x range size)", tooBig)) {
      errs.set(tooBig);
      return false;
    }
    if (device_ >= 0) {
      Error pe;
      if (!pinnedRing_.allocate(ringBytes, "the receive ring", pe)) {
        errs.set(pe);
        return false;
      }
      ring_ = pinnedRing_.data();
      out_.pinnedBytes = ringBytes;
      return true;
    }
    ring_ = static_cast<uint8_t*>(std::malloc(ringBytes));
    if (!ring_) errs.set(Code::E_HOST_OOM, "out of host memory for the receive buffers (" + std::to_string(ringBytes) + " bytes)");
    return ring_ != nullptr;
  }

  void freeRing() {
    if (pinnedRing_.pinned()) {
      Error e = pinnedRing_.release();
      if (!e.ok()) errs.set(e);
    } else {
      std::free(ring_);
    }
    ring_ = nullptr;
  }

  // Resolve each endpoint that has requests and set up a TLS context per distinct CA bundle.
  bool openEndpoints(uint32_t n, Error& err) {
    endpoints_.resize(n);
    tlsOf_.assign(n, nullptr);
    std::vector<const std::string*> names(n, nullptr);
    for (size_t o = objs_.size(); o-- > 0;) {
      endpoints_[endpointOf_[o]] = objs_[o].endpoint;
      names[endpointOf_[o]] = &objs_[o].name;  // in the end the first object's
    }
    std::string why;
    for (const fetchplan::Queue& q : plan_.queues) {
      Endpoint& ep = endpoints_[q.endpoint];
      if (!ep.resolve(why)) {
        err = {Code::E_IO, *names[q.endpoint] + ": " + why, -1};
        return false;
      }
      if (!ep.tls) continue;
      for (uint32_t e = 0; e < n && !tlsOf_[q.endpoint]; e++)
        if (tlsOf_[e] && endpoints_[e].caPem == ep.caPem) tlsOf_[q.endpoint] = tlsOf_[e];
      if (tlsOf_[q.endpoint]) continue;
      tlsContexts_.emplace_back(new TlsContext);
      if (!tlsContexts_.back()->init(ep.caPem, why)) {
        err = {Code::E_IO, *names[q.endpoint] + ": " + why, -1};
        return false;
      }
      tlsOf_[q.endpoint] = tlsContexts_.back().get();
    }
    return true;
  }

  // The next request for w: from its queue while that has any (its connection's endpoint),
  // then from the queue with the most requests left. False when none is left.
  bool nextRequest(Worker& w, uint32_t& ri) {
    for (;;) {
      if (w.queue >= 0) {
        const auto& reqs = plan_.queues[w.queue].reqs;
        const uint32_t k = taken_[w.queue].fetch_add(1);
        if (k < reqs.size()) {
          ri = reqs[k];
          return true;
        }
      }
      int best = -1;
      uint64_t most = 0;
      for (size_t q = 0; q < plan_.queues.size(); q++) {
        const uint64_t size = plan_.queues[q].reqs.size(), taken = taken_[q].load();
        if (taken < size && size - taken > most) {
          most = size - taken;
          best = static_cast<int>(q);
        }
      }
      if (best < 0) return false;
      w.queue = best;
    }
  }

  void setupWorker(Worker& w) {
    w.scratch.resize(64 << 10);
    if (!slots_) return;
    uint8_t* at = ring_ + 2 * static_cast<size_t>(w.id) * plan_.maxRequest;
    w.ring.useSlots(at, at + plan_.maxRequest);
    if (device_ >= 0) failed(w.ring.open(device_, true));
  }

  void teardownWorker(Worker& w) {
    w.conn.close();
    w.ring.close(errs);
  }

  // The next slot of w's ring once its last copy has finished and its pieces are hashed; -1
  // on a failure or cancel.
  int waitSlot(Worker& w) {
    Error e;
    const int k = w.ring.acquire(e, this);
    if (failed(e)) return -1;
    return k < 0 || cancelled() ? -1 : k;
  }

  bool needsHash(uint32_t item) const { return hashing_ && hasher_->needs(item); }

  // Where a piece goes: in a host destination, or (devOf) in device memory.
  uint8_t* destOf(const Piece& pc) const { return static_cast<uint8_t*>(dest_->base) + s_.items[pc.item].dst + pc.itemOff; }
  dev::DevPtr devOf(const Piece& pc) const { return dest_->dbase + s_.items[pc.item].dst + pc.itemOff; }

  // Where body byte `pos` of request r goes, and how many bytes may go there at once;
  // `counted`: they are progress as they land (a host destination's unencrypted pieces;
  // a slot's pieces count when the attempt ends, encrypted ones once decrypted).
  uint8_t* target(Worker& w, const Request& r, uint8_t* slotBuf, uint64_t pos, uint64_t& n, bool& counted) {
    counted = false;
    if (slotBuf) {
      n = r.len - pos;  // the gaps land in the slot too (it is contiguous)
      return slotBuf + pos;
    }
    // Host destination: find the piece holding pos (pieces are sorted by reqOff).
    const Piece* first = plan_.pieces.data() + r.p0;
    const Piece* last = plan_.pieces.data() + r.p1;
    const Piece* it = std::upper_bound(first, last, pos, [](uint64_t v, const Piece& p) { return v < p.reqOff; });
    if (it != first) {
      const Piece& pc = *(it - 1);
      if (pos < pc.reqOff + pc.len) {
        n = pc.reqOff + pc.len - pos;
        counted = !s_.crypt.of(pc.item);
        return destOf(pc) + (pos - pc.reqOff);
      }
    }
    const uint64_t gapEnd = it != last ? it->reqOff : r.len;
    n = std::min<uint64_t>(gapEnd - pos, w.scratch.size());
    return w.scratch.data();
  }

  // Progress from body bytes [a, b) of request r received into a slot: those of its
  // unencrypted pieces (not the gaps between them).
  uint64_t usefulIn(const Request& r, uint64_t a, uint64_t b) const {
    uint64_t n = 0;
    for (uint32_t k = r.p0; k < r.p1; k++) {
      const Piece& pc = plan_.pieces[k];
      uint64_t x = std::max(a, pc.reqOff), y = std::min(b, pc.reqOff + pc.len);
      if (y > x && !s_.crypt.of(pc.item)) n += y - x;
    }
    return n;
  }

  // Request r is in whole: each of its encrypted pieces decrypted in place (in the slot or
  // the host destination), then counted as progress. False (E_DECRYPT naming the item, the
  // run stopped) when a MAC does not match.
  bool openPieces(const Request& r, uint8_t* slotBuf) {
    for (uint32_t k = r.p0; k < r.p1; k++) {
      const Piece& pc = plan_.pieces[k];
      const crypt::ItemCrypt* c = s_.crypt.of(pc.item);
      if (!c) continue;
      uint8_t* p = slotBuf ? slotBuf + pc.reqOff : destOf(pc);
      Error e = crypt::open(s_.crypt.keys.get(static_cast<size_t>(c->key)), *c, s_.items[pc.item].len, pc.itemOff, p, pc.len);
      if (!e.ok()) {
        e.message = objs_[r.obj].name + ": " + e.message;  // the tensor is e.tensor (JS: item)
        failed(e, pc.item);
        return false;
      }
      progress(pc.len);
    }
    return true;
  }

  // Where a request's body goes (target) and what the run hears of it (fetch_http.h).
  struct Into : fetchhttp::Body {
    FetchRun& run;
    Worker& w;
    const Request& r;
    uint8_t* slot;
    Into(FetchRun& run, Worker& w, const Request& r, uint8_t* slot) : run(run), w(w), r(r), slot(slot) {}
    uint8_t* target(uint64_t pos, uint64_t& n, bool& counted) override { return run.target(w, r, slot, pos, n, counted); }
    void progress(uint64_t n) override { run.progress(n); }
    void ended(uint64_t start, uint64_t got) override {
      run.wire_.fetch_add(got - start, std::memory_order_relaxed);
      if (slot) run.progress(run.usefulIn(r, start, got));
    }
    bool cancelled() const override { return run.cancelled(); }
  };

  // One GET for the bytes of request r from `got` on, on w's connection (opened to the
  // request's endpoint when it is not); advances got as bytes arrive.
  Attempt attempt(Worker& w, const Request& r, uint8_t* slotBuf, uint64_t& got) {
    const int ep = static_cast<int>(endpointOf_[r.obj]);
    // Another endpoint than the open connection's: that connection is of no use.
    if (w.conn.isOpen() && w.endpoint != ep) w.conn.close();
    std::string why;
    w.endpoint = ep;
    if (!w.conn.isOpen() && !w.conn.open(endpoints_[ep], tlsOf_[ep], static_cast<size_t>(w.id) + w.connects++, s_.timeoutMs, s_.cancel, why)) {
      // An untrusted certificate, a proxy that refused the tunnel with a 4xx: retrying cannot help.
      if (w.conn.lastFailure().final) {
        Attempt a = fetchhttp::fatal(Code::E_IO, why);
        a.hint = w.conn.lastFailure().hint;
        return a;
      }
      return fetchhttp::retry(cancelled(), why);
    }
    requests_.fetch_add(1, std::memory_order_relaxed);
    Into body(*this, w, r, slotBuf);
    return fetchhttp::get(w.conn, w.conn.used > 0, objs_[r.obj], r.from, r.len, got, s_, body);
  }

  // Request r, retried with backoff until it is complete; false on a fatal error or cancel.
  bool fetchRequest(Worker& w, uint32_t ri, uint8_t* slotBuf) {
    const Request& r = plan_.reqs[ri];
    uint64_t got = 0;
    int failures = 0;
    bool freeRetry = true;
    thread_local std::mt19937 rng(std::random_device{}());
    for (;;) {
      if (cancelled()) return false;
      Attempt a = attempt(w, r, slotBuf, got);
      if (a.outcome == Outcome::Ok) return true;
      if (a.outcome == Outcome::Cancelled) return false;
      if (a.outcome == Outcome::Fatal) {
        errs.set(a.code, objs_[r.obj].name + ": " + a.why, -1, a.hint);
        return false;
      }
      w.conn.close();
      // A keep-alive connection the server had already closed: once, at once, uncounted.
      if (a.stale && freeRetry) {
        freeRetry = false;
        continue;
      }
      const std::string what = objs_[r.obj].name + ": bytes " + std::to_string(r.from) + ".." + std::to_string(r.from + r.len);
      if (failures >= s_.retries) {
        errs.set(Code::E_IO, what + ": giving up after " + std::to_string(failures + 1) + " attempts: " + a.why, -1,
                  a.hint.empty() ? "check the network and the server, then run again" : a.hint);
        return false;
      }
      double delay = s_.baseDelayMs * std::pow(2.0, failures) * std::uniform_real_distribution<double>(0.5, 1.5)(rng);
      delay = std::min(delay, 20000.0);
      if (a.retryAfterMs >= 0) delay = std::max(delay, a.retryAfterMs);
      failures++;
      retries_.fetch_add(1, std::memory_order_relaxed);
      {
        std::lock_guard<std::mutex> g(logM_);
        if (out_.retryLog.size() < 50)
          out_.retryLog.push_back(what + ": " + a.why + "; retry " + std::to_string(failures) + " of " + std::to_string(s_.retries) + " in " + std::to_string(static_cast<int>(delay)) + " ms");
      }
      for (auto until = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(delay * 1000)); Clock::now() < until;) {
        if (cancelled()) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  }

  void work(Worker& w) {
    std::vector<StagingRing::Copy> copies;
    for (;;) {
      PendingHashes* slot = nullptr;
      uint8_t* buf = nullptr;
      int si = -1;  // the slot's index in w's ring
      if (slots_) {
        if ((si = waitSlot(w)) < 0) return;
        slot = &w.ring.pending(si);
        buf = w.ring.slot(si);
      }
      uint32_t ri;
      if (!nextRequest(w, ri) || cancelled()) return;
      const Request& r = plan_.reqs[ri];
      if (!slot)
        for (uint32_t k = r.p0; k < r.p1; k++) prefault(destOf(plan_.pieces[k]), plan_.pieces[k].len);
      if (!fetchRequest(w, ri, buf) || !openPieces(r, buf)) return;
      if (device_ >= 0) {
        copies.clear();
        for (uint32_t p = r.p0; p < r.p1; p++) {
          const Piece& pc = plan_.pieces[p];
          copies.push_back({devOf(pc), pc.reqOff, pc.len, pc.item});
        }
        if (failed(w.ring.submit(si, copies.data(), copies.size(), &first_, -1))) return;
      }
      if (dest_ && device_ < 0)
        for (uint32_t k = r.p0; k < r.p1; k++) first_.pieceDone(plan_.pieces[k].item);
      if (outFd_ >= 0)
        for (uint32_t k = r.p0; k < r.p1; k++) {
          const Piece& pc = plan_.pieces[k];
          if (!pwriteFully(outFd_, buf + pc.reqOff, pc.len, s_.items[pc.item].dst + pc.itemOff, s_.output, errs, pc.item)) return;
        }
      if (hashing_) {
        int n = 0;
        for (uint32_t k = r.p0; k < r.p1; k++) n += needsHash(plan_.pieces[k].item) ? 1 : 0;
        if (slot) slot->set(n);
        for (uint32_t k = r.p0; k < r.p1; k++) {
          const Piece& pc = plan_.pieces[k];
          if (needsHash(pc.item)) hasher_->arrived(pc.item, pc.idx, slot ? buf + pc.reqOff : destOf(pc), slot);
        }
      }
    }
  }

  const FetchSpec& s_;
  Loaded* dest_;
  FetchResult& out_;
  Plan plan_;
  bool hashing_ = false, slots_ = false;
  int device_ = -1;
  int outFd_ = -1;
  uint8_t* ring_ = nullptr;
  PinnedHost pinnedRing_;  // ring_ points into it for a GPU destination
  std::vector<FetchObject> objs_;
  std::vector<uint32_t> endpointOf_;  // per object
  std::vector<Endpoint> endpoints_;   // resolved, one per distinct endpoint
  std::vector<std::unique_ptr<TlsContext>> tlsContexts_;  // one per distinct CA bundle
  std::vector<TlsContext*> tlsOf_;    // per endpoint (null without TLS)
  std::unique_ptr<std::atomic<uint32_t>[]> taken_;  // per queue: requests taken
  std::atomic<uint64_t> requests_{0}, retries_{0}, wire_{0};
  std::mutex logM_;
  Clock::time_point t0_;
  FirstTensor first_;
  std::unique_ptr<PieceHasher> hasher_;  // when hashing
  GroupUnits units_;                     // hash groups: the hasher's units
};

}  // namespace

bool fetch(const FetchSpec& spec, Loaded* dest, FetchResult& out, Error& err) {
  if (spec.connections < 1 || spec.connections > 1024) {
    err = {Code::E_USAGE, "connections must be between 1 and 1024", -1};
    return false;
  }
  if (dest)
    for (const Item& it : spec.items)
      if (it.dst > dest->size || it.len > dest->size - it.dst) {
        err = {Code::E_USAGE, "a tensor's destination lies outside the allocation", -1};
        return false;
      }
  std::vector<uint64_t> lens;
  for (const Item& it : spec.items) lens.push_back(it.len);
  if (!(err = spec.crypt.check(lens)).ok()) return false;
  FetchRun run(spec, dest, out);
  return run.run(err);
}

}  // namespace tz
