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

#include "hash.h"

#ifdef TENSORIZE_HAVE_CUDA
#include "cuda_errors.h"
#include "pinned.h"
#endif

namespace tz {

namespace {


// A contiguous part of one item that one request carries.
struct Piece {
  uint32_t item, idx;  // idx: position among the item's pieces (file order)
  uint32_t req;
  uint64_t itemOff, reqOff, len;
};

struct Request {
  uint64_t from, len;
  uint32_t p0, p1;  // its pieces, [p0, p1), by reqOff
};

struct Plan {
  std::vector<Request> reqs;
  std::vector<Piece> pieces;
  std::vector<uint32_t> perItem;  // pieces per item
  uint64_t maxRequest = 0;
};

bool makePlan(const FetchSpec& s, Plan& p, Error& err) {
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < s.items.size(); i++)
    if (s.items[i].len > 0) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return s.items[a].src < s.items[b].src; });
  p.perItem.assign(s.items.size(), 0);
  for (size_t k = 0; k < order.size(); k++) {
    const Item& it = s.items[order[k]];
    if (it.src > s.objectSize || it.len > s.objectSize - it.src) {
      err = {"E_USAGE", "fetch: a tensor's bytes lie outside the object", static_cast<int64_t>(order[k])};
      return false;
    }
    if (k > 0 && s.items[order[k - 1]].src + s.items[order[k - 1]].len > it.src) {
      err = {"E_USAGE", "fetch: tensors overlap in the file", static_cast<int64_t>(order[k])};
      return false;
    }
  }
  const uint64_t chunk = std::max<uint64_t>(s.chunk, 4096);
  // Spans of the file to read: tensors with small gaps between them are read together.
  std::vector<std::pair<uint64_t, uint64_t>> spans;  // [a, b)
  for (uint32_t i : order) {
    const Item& it = s.items[i];
    if (!spans.empty() && it.src - spans.back().second <= s.maxGap) spans.back().second = it.src + it.len;
    else spans.push_back({it.src, it.src + it.len});
  }
  size_t k = 0;  // first item (in order) that may overlap the current request
  for (auto [a, b] : spans) {
    for (uint64_t from = a; from < b; from += chunk) {
      Request r{from, std::min(chunk, b - from), static_cast<uint32_t>(p.pieces.size()), 0};
      const uint64_t end = r.from + r.len;
      while (k < order.size() && s.items[order[k]].src + s.items[order[k]].len <= r.from) k++;
      for (size_t j = k; j < order.size() && s.items[order[j]].src < end; j++) {
        const uint32_t i = order[j];
        const Item& it = s.items[i];
        uint64_t x = std::max(r.from, it.src), y = std::min(end, it.src + it.len);
        if (y <= x) continue;
        p.pieces.push_back({i, p.perItem[i]++, static_cast<uint32_t>(p.reqs.size()), x - it.src, x - r.from, y - x});
      }
      r.p1 = static_cast<uint32_t>(p.pieces.size());
      p.maxRequest = std::max(p.maxRequest, r.len);
      p.reqs.push_back(r);
    }
  }
  return true;
}

struct Slot {
  uint8_t* buf = nullptr;  // a part of the ring
  std::atomic<int> pendingHash{0};
  std::mutex m;
  std::condition_variable cv;
#ifdef TENSORIZE_HAVE_CUDA
  cudaEvent_t copied = nullptr;
  bool used = false;
#endif
};

struct Worker {
  int id = 0;
  Conn conn;
  uint32_t connects = 0;
  Slot slots[2];
  int which = 0;
  std::vector<uint8_t> scratch;
#ifdef TENSORIZE_HAVE_CUDA
  cudaStream_t stream = nullptr;
#endif
};

// Idle: waiting for its next piece; Queued: in the ready queue; Busy: a hasher has it.
enum class HashState : uint8_t { Idle, Queued, Busy };

struct ItemState {
  std::mutex m;
  std::vector<const uint8_t*> ptr;  // per piece, once it has arrived
  std::vector<Slot*> slot;          // the slot holding it (nullptr: in the destination)
  uint32_t cursor = 0;              // next piece to hash
  HashState state = HashState::Idle;
  Sha256 sha;
  uint32_t crc = 0;
  std::atomic<uint32_t> remaining{0};  // pieces not yet at their destination
};

enum class Outcome { Ok, Retry, Fatal, Cancelled };

struct Attempt {
  Outcome outcome = Outcome::Ok;
  std::string why, code;
  bool stale = false;  // a reused keep-alive connection that failed before any answer
  double retryAfterMs = -1;
};

class FetchRun {
 public:
  FetchRun(const FetchSpec& s, Loaded* dest, FetchResult& out) : s_(s), dest_(dest), out_(out) {}

  bool run(Error& err) {
    t0_ = Clock::now();
    if (!makePlan(s_, plan_, err)) return false;
    hashing_ = !s_.hashes.empty();
    if (hashing_ && s_.hashes.size() != s_.items.size()) {
      err = {"E_USAGE", "fetch: hashes must have one entry per item", -1};
      return false;
    }
    device_ = dest_ ? dest_->device : -1;
    slots_ = !dest_ || device_ >= 0;
    items_.reset(new ItemState[s_.items.size()]);
    if (hashing_) {
      byItem_.resize(s_.items.size());
      for (uint32_t k = 0; k < plan_.pieces.size(); k++) byItem_[plan_.pieces[k].item].push_back(k);
      for (const Piece& pc : plan_.pieces) hashLeft_ += needsHash(pc.item) ? 1 : 0;
    }
    for (size_t i = 0; i < s_.items.size(); i++) {
      ItemState& st = items_[i];
      st.ptr.assign(plan_.perItem[i], nullptr);
      st.slot.assign(plan_.perItem[i], nullptr);
      st.remaining.store(plan_.perItem[i]);
      if (hashing_) {
        const Expect& e = s_.hashes[i];
        st.sha.update(e.prefix.data(), e.prefix.size());
        st.crc = crc32(0, e.prefix.data(), e.prefix.size());
      }
    }
    std::string why;
    if (!s_.output.empty() && !dest_) {
      outFd_ = ::open(s_.output.c_str(), O_WRONLY | O_CLOEXEC);
      if (outFd_ < 0) {
        err = {"E_IO", s_.output + ": " + std::strerror(errno), -1};
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
    Endpoint ep = s_.endpoint;
    if (!plan_.reqs.empty() && !ep.resolve(why)) {
      err = {"E_IO", s_.name + ": " + why, -1};
      return false;
    }
    endpoint_ = &ep;
    if (ep.tls && !plan_.reqs.empty() && !tls_.init(ep.caPem, why)) {
      err = {"E_IO", s_.name + ": " + why, -1};
      return false;
    }
    const int n = plan_.reqs.empty() ? 0 : std::max(1, std::min<int>(s_.connections, static_cast<int>(plan_.reqs.size())));
    std::vector<std::unique_ptr<Worker>> ws;
    allocateRing(2 * static_cast<size_t>(n), plan_.maxRequest);
    for (int i = 0; i < n && !errs_.failed(); i++) {
      ws.emplace_back(new Worker);
      ws.back()->id = i;
      setupWorker(*ws.back());
    }
    out_.connections = static_cast<uint64_t>(n);
#ifdef TENSORIZE_HAVE_CUDA
    copied_.resize(plan_.reqs.size());
#endif
    if (!errs_.failed()) {
      std::vector<std::thread> ts, hs;
      for (auto& w : ws) ts.emplace_back([this, &w] { work(*w); });
      for (int i = 0; i < hashers(); i++) hs.emplace_back([this] { hasher(); });
      for (auto& t : ts) t.join();
      for (auto& t : hs) t.join();
    }
    for (auto& w : ws) teardownWorker(*w);
    freeRing();
    out_.transferMs = msSince(t0_);
    out_.requests = requests_.load();
    out_.retries = retries_.load();
    out_.wireBytes = wire_.load();
    if (!errs_.failed() && s_.cancel && s_.cancel->load()) errs_.set("E_INTERRUPTED", "the load was cancelled");
    if (errs_.failed()) {
      err = errs_.get();
      return false;
    }
    for (const Item& it : s_.items) out_.bytes += it.len;
    if (hashing_) {
      out_.crc32.resize(s_.items.size());
      out_.sha256.resize(32 * s_.items.size());
      for (size_t i = 0; i < s_.items.size(); i++) {
        ItemState& st = items_[i];
        if (needsHash(static_cast<uint32_t>(i)) && st.cursor != st.ptr.size()) {
          err = {"E_NATIVE", "fetch: tensor #" + std::to_string(i) + " was not hashed completely", static_cast<int64_t>(i)};
          return false;
        }
        out_.crc32[i] = st.crc;
        st.sha.final(&out_.sha256[32 * i]);
      }
    }
    return true;
  }

 private:
  bool cancelled() const { return errs_.failed() || (s_.cancel && s_.cancel->load(std::memory_order_relaxed)); }

  // The receive slots of all connections: one allocation, pinned for a GPU (pinned.h; one
  // region instead of two per connection: each pinning call costs milliseconds).
  bool allocateRing(size_t slots, uint64_t size) {
    if (!slots_ || slots == 0) return true;
    const uint64_t ringBytes = slots * size;
    Error tooBig;
    if (!stagingFits(ringBytes, "the receive ring (2 x connections x range size)", tooBig)) {
      errs_.set(tooBig.code, tooBig.message);
      return false;
    }
#ifdef TENSORIZE_HAVE_CUDA
    if (device_ >= 0) {
      cudaError_t e = cudaSetDevice(device_);
      if (e != cudaSuccess) {
        errs_.set(cudaCode(e), cudaMsg(e, "cudaSetDevice"));
        return false;
      }
      Error pe;
      if (!pinnedRing_.allocate(ringBytes, "the receive ring", pe)) {
        errs_.set(pe.code, pe.message);
        return false;
      }
      ring_ = pinnedRing_.data();
      out_.pinnedBytes = ringBytes;
      return true;
    }
#endif
    ring_ = static_cast<uint8_t*>(std::malloc(ringBytes));
    if (!ring_) errs_.set("E_HOST_OOM", "out of host memory for the receive buffers (" + std::to_string(ringBytes) + " bytes)");
    return ring_ != nullptr;
  }

  void freeRing() {
#ifdef TENSORIZE_HAVE_CUDA
    if (pinnedRing_.pinned()) pinnedRing_.release();
    else std::free(ring_);
#else
    std::free(ring_);
#endif
    ring_ = nullptr;
  }

  void setupWorker(Worker& w) {
    w.scratch.resize(64 << 10);
    if (!slots_) return;
    for (int k = 0; k < 2; k++) w.slots[k].buf = ring_ + (2 * static_cast<size_t>(w.id) + k) * plan_.maxRequest;
#ifdef TENSORIZE_HAVE_CUDA
    if (device_ >= 0) {
      cudaError_t e = cudaSetDevice(device_);
      if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&w.stream, cudaStreamNonBlocking);
      for (Slot& sl : w.slots)
        if (e == cudaSuccess) e = cudaEventCreateWithFlags(&sl.copied, cudaEventDisableTiming | cudaEventBlockingSync);
      if (e != cudaSuccess) errs_.set(cudaCode(e), cudaMsg(e, "setting up a CUDA stream"));
    }
#endif
  }

  void teardownWorker(Worker& w) {
    w.conn.close();
#ifdef TENSORIZE_HAVE_CUDA
    if (w.stream) {
      cudaError_t e = cudaStreamSynchronize(w.stream);
      // Not drained: host functions may still point into this run; leave the stream.
      if (e != cudaSuccess) errs_.set(cudaCode(e), cudaMsg(e, "cudaStreamSynchronize"));
      else cudaStreamDestroy(w.stream);
    }
    for (Slot& sl : w.slots)
      if (sl.copied) cudaEventDestroy(sl.copied);
#endif
  }

  // The slot's last copy has finished and its pieces are hashed.
  bool waitSlot(Slot& sl) {
#ifdef TENSORIZE_HAVE_CUDA
    if (sl.used) {
      cudaError_t e = cudaEventSynchronize(sl.copied);
      if (e != cudaSuccess) {
        errs_.set(cudaCode(e), cudaMsg(e, "cudaEventSynchronize"));
        return false;
      }
    }
#endif
    std::unique_lock<std::mutex> lk(sl.m);
    while (sl.pendingHash.load() > 0) {
      if (cancelled()) return false;
      sl.cv.wait_for(lk, std::chrono::milliseconds(100));
    }
    return !cancelled();
  }

  static void release(Slot* sl) {
    if (sl && sl->pendingHash.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> g(sl->m);
      sl->cv.notify_all();
    }
  }

  // Hashing. Receivers hand each piece over as it is in place (in a slot or in the
  // destination); hasher threads take the items whose next piece has arrived, two at a time,
  // and hash them in file order per item with the interleaved two-stream SHA-256 (about
  // 1.75x one stream per core). A slot is released as soon as its pieces are hashed.
  void arrived(const Piece& pc, const uint8_t* at, Slot* slot) {
    ItemState& st = items_[pc.item];
    {
      std::lock_guard<std::mutex> lk(st.m);
      st.ptr[pc.idx] = at;
      st.slot[pc.idx] = slot;
      if (st.state != HashState::Idle || st.cursor >= st.ptr.size() || !st.ptr[st.cursor]) return;
      st.state = HashState::Queued;
    }
    {
      std::lock_guard<std::mutex> g(readyM_);
      ready_.push_back(pc.item);
    }
    readyCv_.notify_one();
  }

  struct Lane {
    uint32_t item = 0;
    const uint8_t* p = nullptr;
    uint64_t left = 0;
    Slot* slot = nullptr;
    bool active = false;
  };

  // The lane's item's next piece if it has arrived; else the item goes back to Idle (its next
  // arrival queues it again) and the lane is free.
  bool nextPiece(Lane& l) {
    ItemState& st = items_[l.item];
    std::lock_guard<std::mutex> lk(st.m);
    if (st.cursor < st.ptr.size() && st.ptr[st.cursor]) {
      l.p = st.ptr[st.cursor];
      l.slot = st.slot[st.cursor];
      l.left = pieceLen(l.item, st.cursor);
      st.state = HashState::Busy;
      return true;
    }
    st.state = HashState::Idle;
    return false;
  }

  void pieceHashed(Lane& l) {
    release(l.slot);
    {
      std::lock_guard<std::mutex> lk(items_[l.item].m);
      items_[l.item].cursor++;
    }
    if (hashLeft_.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> g(readyM_);
      readyCv_.notify_all();
    }
  }

  bool popReady(uint32_t& item, bool wait) {
    std::unique_lock<std::mutex> g(readyM_);
    for (;;) {
      if (!ready_.empty()) {
        item = ready_.front();
        ready_.pop_front();
        return true;
      }
      if (!wait || hashLeft_.load() == 0 || cancelled()) return false;
      readyCv_.wait_for(g, std::chrono::milliseconds(100));
    }
  }

  void hashStep(Lane& l, uint64_t n) {
    ItemState& st = items_[l.item];
    const Expect& e = s_.hashes[l.item];
    if (e.sha) st.sha.update(l.p, n);
    if (e.crc) st.crc = crc32(st.crc, l.p, n);
    l.p += n;
    l.left -= n;
  }

  void hashPair(Lane& a, Lane& b, uint64_t n) {
    ItemState &sa = items_[a.item], &sb = items_[b.item];
    const Expect &ea = s_.hashes[a.item], &eb = s_.hashes[b.item];
    if (!ea.sha || !eb.sha) {
      hashStep(a, n);
      hashStep(b, n);
      return;
    }
    sha256UpdateX2(sa.sha, a.p, sb.sha, b.p, n);
    if (ea.crc) sa.crc = crc32(sa.crc, a.p, n);
    if (eb.crc) sb.crc = crc32(sb.crc, b.p, n);
    a.p += n;
    a.left -= n;
    b.p += n;
    b.left -= n;
  }

  void hasher() {
    Lane lanes[2];
    constexpr uint64_t kStep = 1 << 20;  // stays in cache for the CRC after the SHA
    for (;;) {
      if (cancelled()) return;
      for (Lane& l : lanes) {
        if (l.active) continue;
        uint32_t item;
        // Block only when there is nothing to hash at all.
        if (!popReady(item, !lanes[0].active && !lanes[1].active)) continue;
        l.item = item;
        l.active = nextPiece(l);
      }
      if (!lanes[0].active && !lanes[1].active) {
        if (hashLeft_.load() == 0) return;
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

  // Hasher threads: half the cores (each hashes two items at once), 1 to 8.
  int hashers() const {
    if (hashLeft_.load() == 0) return 0;
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    return std::max(1, std::min(8, cores / 2));
  }

  uint64_t pieceLen(uint32_t item, uint32_t idx) const { return plan_.pieces[byItem_[item][idx]].len; }

  bool needsHash(uint32_t item) const { return hashing_ && (s_.hashes[item].crc || s_.hashes[item].sha); }

  // Where a piece goes in the destination.
  uint8_t* destOf(const Piece& pc) const { return static_cast<uint8_t*>(dest_->base) + s_.items[pc.item].dst + pc.itemOff; }

  void pieceDone(uint32_t item) {
    if (items_[item].remaining.fetch_sub(1) == 1) {
      bool expected = false;
      if (firstDone_.compare_exchange_strong(expected, true)) out_.firstTensorMs = msSince(t0_);
    }
  }

#ifdef TENSORIZE_HAVE_CUDA
  struct Copied {
    FetchRun* run;
    uint32_t req;
  };
  static void CUDART_CB onCopied(void* p) {
    auto* c = static_cast<Copied*>(p);
    const Request& r = c->run->plan_.reqs[c->req];
    for (uint32_t k = r.p0; k < r.p1; k++) c->run->pieceDone(c->run->plan_.pieces[k].item);
  }
#endif

  // Where body byte `pos` of request r goes, and how many bytes may go there at once;
  // `useful` is false for the bytes between tensors.
  uint8_t* target(Worker& w, const Request& r, uint8_t* slotBuf, uint64_t pos, uint64_t& n, bool& useful) {
    if (slotBuf) {
      n = r.len - pos;
      // Only the pieces are useful; the gaps still land in the slot (it is contiguous).
      useful = true;
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
        useful = true;
        return destOf(pc) + (pos - pc.reqOff);
      }
    }
    const uint64_t gapEnd = it != last ? it->reqOff : r.len;
    n = std::min<uint64_t>(gapEnd - pos, w.scratch.size());
    useful = false;
    return w.scratch.data();
  }

  // Body bytes of request r received into a slot that fall between pieces are not progress.
  uint64_t usefulIn(const Request& r, uint64_t a, uint64_t b) const {
    uint64_t n = 0;
    for (uint32_t k = r.p0; k < r.p1; k++) {
      const Piece& pc = plan_.pieces[k];
      uint64_t x = std::max(a, pc.reqOff), y = std::min(b, pc.reqOff + pc.len);
      if (y > x) n += y - x;
    }
    return n;
  }

  void progress(uint64_t n) {
    if (s_.progress && n) s_.progress->fetch_add(n, std::memory_order_relaxed);
  }

  std::string range(const Request& r, uint64_t got) const {
    return "bytes " + std::to_string(r.from + got) + "-" + std::to_string(r.from + r.len - 1);
  }

  // One GET for the bytes of request r from `got` on; advances got as bytes arrive.
  Attempt attempt(Worker& w, const Request& r, uint8_t* slotBuf, uint64_t& got) {
    Attempt a;
    auto retry = [&](const std::string& why) {
      a.outcome = cancelled() ? Outcome::Cancelled : Outcome::Retry;
      a.why = why;
      return a;
    };
    auto fatal = [&](const char* code, const std::string& why) {
      a.outcome = Outcome::Fatal;
      a.code = code;
      a.why = why;
      return a;
    };
    std::string why;
    if (!w.conn.isOpen() && !w.conn.open(*endpoint_, &tls_, static_cast<size_t>(w.id) + w.connects++, s_.timeoutMs, s_.cancel, why)) {
      // A TLS verification failure will not heal by retrying.
      if (why.find("certificate verification failed") != std::string::npos) return fatal("E_IO", why);
      // Nor will a proxy that refused the tunnel with a 4xx (credentials, a denied host).
      if (why.find("refused a tunnel") != std::string::npos && why.find("(HTTP 4") != std::string::npos) return fatal("E_IO", why);
      return retry(why);
    }
    const bool reused = w.conn.used > 0;
    const uint64_t from = r.from + got, to = r.from + r.len - 1;
    std::string req = s_.head + "Range: bytes=" + std::to_string(from) + "-" + std::to_string(to) + "\r\n\r\n";
    requests_.fetch_add(1, std::memory_order_relaxed);
    // The low-speed limit, in consecutive windows of speedTimeMs from the request on: each
    // must bring speedLimit body bytes/s on average (the wait for the head counts as time
    // without bytes), else the attempt fails.
    uint64_t windowFrom = got;
    auto window = Clock::now();
    auto tooSlow = [&](std::string& msg) {
      if (s_.speedLimit == 0) return false;
      const double ms = msSince(window);
      if (ms < s_.speedTimeMs) return false;
      const uint64_t n = got - windowFrom;
      if (static_cast<double>(n) >= static_cast<double>(s_.speedLimit) * ms / 1000) {
        window = Clock::now();
        windowFrom = got;
        return false;
      }
      char b[160];
      std::snprintf(b, sizeof b, "too slow: under %llu bytes/s for %g s (%llu bytes in %.1f s)", static_cast<unsigned long long>(s_.speedLimit), s_.speedTimeMs / 1000,
                    static_cast<unsigned long long>(n), ms / 1000);
      msg = b;
      return true;
    };
    std::string slow;
    if (!w.conn.writeAll(req.data(), req.size(), s_.timeoutMs, s_.cancel, why)) {
      a.stale = reused;
      return retry("sending the request failed: " + why);
    }
    // The response head (and whatever part of the body came with it).
    char hb[32 << 10];
    size_t hn = 0;
    ResponseHead h;
    auto idle = Clock::now();
    for (;;) {
      ssize_t k = w.conn.read(hb + hn, sizeof hb - hn, why, false);
      if (k > 0) {
        hn += static_cast<size_t>(k);
        idle = Clock::now();
        int pr = parseResponseHead(hb, hn, h, why);
        if (pr < 0) return fatal("E_IO", "the server sent " + why);
        if (pr > 0) break;
        if (hn == sizeof hb) return fatal("E_IO", "the server's response head is larger than 32 KiB");
        if (tooSlow(slow)) return retry(slow + ", waiting for the answer");
        continue;
      }
      if (k == -2) {
        if (cancelled()) return retry("cancelled");
        if (msSince(idle) > s_.timeoutMs) return retry("no answer within " + std::to_string(static_cast<int>(s_.timeoutMs / 1000)) + " s");
        if (tooSlow(slow)) return retry(slow + ", waiting for the answer");
        continue;
      }
      a.stale = reused && hn == 0;
      return retry(k == 0 ? "the connection was closed before an answer" : "the connection failed: " + why);
    }
    if (h.status != 206) {
      w.conn.close();
      const std::string st = "HTTP " + std::to_string(h.status);
      const std::string detail = errorDetail(hb + h.headerBytes, hn - h.headerBytes);
      if (h.status == 412 || h.status == 416) return fatal("E_FILE_CHANGED", "the object changed while it was being read (" + st + " for " + range(r, got) + ")");
      if (h.status == 404) return fatal("E_NOT_FOUND", "not found (HTTP 404)" + detail);
      if (h.status == 401 || h.status == 403) return fatal("E_IO", "access denied (" + st + ")" + detail + " for " + range(r, got));
      if (h.status == 200) return fatal("E_IO", "the server ignored the Range header (HTTP 200)");
      if (h.status == 408 || h.status == 425 || h.status == 429 || h.status >= 500) {
        if (h.retryAfterS >= 0) a.retryAfterMs = std::min(h.retryAfterS * 1000, 30000.0);
        return retry(st + detail);
      }
      return fatal("E_IO", st + detail + " for " + range(r, got));
    }
    const uint64_t want = r.len - got;
    if (!h.hasContentRange || h.rangeFirst != from || h.rangeLast != to || (h.rangeTotal >= 0 && static_cast<uint64_t>(h.rangeTotal) != s_.objectSize) ||
        (!s_.etag.empty() && !h.etag.empty() && h.etag != s_.etag)) {
      w.conn.close();
      std::string got_s = h.hasContentRange ? "bytes " + std::to_string(h.rangeFirst) + "-" + std::to_string(h.rangeLast) + "/" + (h.rangeTotal < 0 ? "*" : std::to_string(h.rangeTotal)) : "no Content-Range";
      std::string tag = !s_.etag.empty() && !h.etag.empty() && h.etag != s_.etag ? ", ETag " + h.etag + " instead of " + s_.etag : "";
      return fatal("E_FILE_CHANGED", "the object changed while it was being read (asked for bytes " + std::to_string(from) + "-" + std::to_string(to) + " of " + std::to_string(s_.objectSize) + ", got " + got_s + tag + ")");
    }
    if (h.chunked) {
      w.conn.close();
      return fatal("E_UNSUPPORTED", "the server sent a range with Transfer-Encoding (chunked); set TENSORIZE_NET=js to use the JavaScript client");
    }
    if (h.contentLength >= 0 && static_cast<uint64_t>(h.contentLength) != want) {
      w.conn.close();
      return fatal("E_IO", "Content-Length " + std::to_string(h.contentLength) + " does not match the range (" + std::to_string(want) + " bytes)");
    }
    // Body bytes that came with the head.
    size_t extra = hn - h.headerBytes;
    if (extra > want) {
      w.conn.close();
      return fatal("E_IO", "the server sent more bytes than the range it announced");
    }
    const uint64_t start = got;
    for (size_t off = h.headerBytes; off < hn;) {
      uint64_t n;
      bool useful;
      uint8_t* p = target(w, r, slotBuf, got, n, useful);
      size_t k = std::min<size_t>(n, hn - off);
      std::memcpy(p, hb + off, k);
      off += k;
      got += k;
      if (!slotBuf && useful) progress(k);
    }
    // The rest straight into place.
    idle = Clock::now();
    while (got < r.len) {
      uint64_t n;
      bool useful;
      uint8_t* p = target(w, r, slotBuf, got, n, useful);
      ssize_t k = w.conn.read(p, n, why, true);
      if (k > 0) {
        got += static_cast<uint64_t>(k);
        if (!slotBuf && useful) progress(static_cast<uint64_t>(k));
        idle = Clock::now();
      } else if (k == -2) {
        if (cancelled()) break;
        if (msSince(idle) > s_.timeoutMs) {
          wire_.fetch_add(got - start, std::memory_order_relaxed);
          if (slotBuf) progress(usefulIn(r, start, got));
          return retry("no data for " + std::to_string(static_cast<int>(s_.timeoutMs / 1000)) + " s after " + std::to_string(got) + " of " + std::to_string(r.len) + " bytes");
        }
      }
      if (k > 0 || k == -2) {
        if (got < r.len && tooSlow(slow)) {
          wire_.fetch_add(got - start, std::memory_order_relaxed);
          if (slotBuf) progress(usefulIn(r, start, got));
          return retry(slow + ", after " + std::to_string(got) + " of " + std::to_string(r.len) + " bytes");
        }
        continue;
      }
      wire_.fetch_add(got - start, std::memory_order_relaxed);
      if (slotBuf) progress(usefulIn(r, start, got));
      return retry((k == 0 ? std::string("the connection was closed") : "the connection failed (" + why + ")") + " after " + std::to_string(got) + " of " + std::to_string(r.len) + " bytes");
    }
    wire_.fetch_add(got - start, std::memory_order_relaxed);
    if (slotBuf) progress(usefulIn(r, start, got));
    if (got < r.len) return retry("cancelled");
    w.conn.used++;
    if (!h.keepAlive) w.conn.close();
    return a;
  }

  // " (S3 Code: Message)" from an XML error body, when there is one.
  static std::string errorDetail(const char* b, size_t n) {
    std::string s(b, std::min<size_t>(n, 4096));
    auto tag = [&](const char* t) {
      std::string open = std::string("<") + t + ">", close = std::string("</") + t + ">";
      size_t i = s.find(open), j = s.find(close);
      return i == std::string::npos || j == std::string::npos || j < i ? std::string() : s.substr(i + open.size(), std::min<size_t>(j - i - open.size(), 200));
    };
    std::string code = tag("Code"), msg = tag("Message");
    if (code.empty()) return "";
    return " (" + code + (msg.empty() ? "" : ": " + msg) + ")";
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
        errs_.set(a.code, s_.name + ": " + a.why);
        return false;
      }
      w.conn.close();
      // A keep-alive connection the server had already closed: once, at once, uncounted.
      if (a.stale && freeRetry) {
        freeRetry = false;
        continue;
      }
      const std::string what = s_.name + ": bytes " + std::to_string(r.from) + ".." + std::to_string(r.from + r.len);
      if (failures >= s_.retries) {
        errs_.set("E_IO", what + ": giving up after " + std::to_string(failures + 1) + " attempts: " + a.why);
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
#ifdef TENSORIZE_HAVE_CUDA
    if (device_ >= 0) {
      cudaError_t e = cudaSetDevice(device_);
      if (e != cudaSuccess) return errs_.set(cudaCode(e), cudaMsg(e, "cudaSetDevice"));
    }
#endif
    for (;;) {
      Slot* slot = nullptr;
      if (slots_) {
        slot = &w.slots[w.which];
        w.which ^= 1;
        if (!waitSlot(*slot)) return;
      }
      const uint32_t ri = next_.fetch_add(1);
      if (ri >= plan_.reqs.size() || cancelled()) return;
      const Request& r = plan_.reqs[ri];
      if (!slot)
        for (uint32_t k = r.p0; k < r.p1; k++) prefault(destOf(plan_.pieces[k]), plan_.pieces[k].len);
      if (!fetchRequest(w, ri, slot ? slot->buf : nullptr)) return;
#ifdef TENSORIZE_HAVE_CUDA
      if (device_ >= 0) {
        for (uint32_t k = r.p0; k < r.p1; k++) {
          const Piece& pc = plan_.pieces[k];
          cudaError_t e = cudaMemcpyAsync(destOf(pc), slot->buf + pc.reqOff, pc.len, cudaMemcpyHostToDevice, w.stream);
          if (e != cudaSuccess) return errs_.set(cudaCode(e), cudaMsg(e, "cudaMemcpyAsync"), pc.item);
        }
        copied_[ri] = {this, ri};
        cudaError_t e = cudaLaunchHostFunc(w.stream, onCopied, &copied_[ri]);
        if (e == cudaSuccess) e = cudaEventRecord(slot->copied, w.stream);
        if (e != cudaSuccess) return errs_.set(cudaCode(e), cudaMsg(e, "queueing the copy"));
        slot->used = true;
      }
#endif
      if (dest_ && device_ < 0)
        for (uint32_t k = r.p0; k < r.p1; k++) pieceDone(plan_.pieces[k].item);
      if (outFd_ >= 0)
        for (uint32_t k = r.p0; k < r.p1; k++) {
          const Piece& pc = plan_.pieces[k];
          if (!pwriteFully(outFd_, slot->buf + pc.reqOff, pc.len, s_.items[pc.item].dst + pc.itemOff, s_.output, errs_, pc.item)) return;
        }
      if (hashing_) {
        int n = 0;
        for (uint32_t k = r.p0; k < r.p1; k++) n += needsHash(plan_.pieces[k].item) ? 1 : 0;
        if (slot) slot->pendingHash.store(n);
        for (uint32_t k = r.p0; k < r.p1; k++) {
          const Piece& pc = plan_.pieces[k];
          if (needsHash(pc.item)) arrived(pc, slot ? slot->buf + pc.reqOff : destOf(pc), slot);
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
  std::unique_ptr<ItemState[]> items_;
  int outFd_ = -1;
  uint8_t* ring_ = nullptr;
#ifdef TENSORIZE_HAVE_CUDA
  PinnedHost pinnedRing_;  // ring_ points into it for a GPU destination
#endif
  std::vector<std::vector<uint32_t>> byItem_;  // piece indices of each item, in order (hashing)
  const Endpoint* endpoint_ = nullptr;
  TlsContext tls_;
  ErrorSlot errs_;
  std::atomic<uint32_t> next_{0};
  std::mutex readyM_;
  std::condition_variable readyCv_;
  std::deque<uint32_t> ready_;      // items whose next piece has arrived
  std::atomic<uint64_t> hashLeft_{0};  // pieces still to hash
  std::atomic<uint64_t> requests_{0}, retries_{0}, wire_{0};
  std::atomic<bool> firstDone_{false};
  std::mutex logM_;
  Clock::time_point t0_;
#ifdef TENSORIZE_HAVE_CUDA
  std::vector<Copied> copied_;  // one per request, for the host functions that count copies
#endif
};

}  // namespace

bool fetch(const FetchSpec& spec, Loaded* dest, FetchResult& out, Error& err) {
  if (spec.connections < 1 || spec.connections > 1024) {
    err = {"E_USAGE", "connections must be between 1 and 1024", -1};
    return false;
  }
  if (dest)
    for (const Item& it : spec.items)
      if (it.dst > dest->size || it.len > dest->size - it.dst) {
        err = {"E_USAGE", "a tensor's destination lies outside the allocation", -1};
        return false;
      }
  FetchRun run(spec, dest, out);
  return run.run(err);
}

}  // namespace tz
