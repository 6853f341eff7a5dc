// The streaming core: what the loader's pread readers (loader.cc) and the fetcher's HTTP
// receivers (fetch.cc) share on their way into device memory. A source only produces bytes
// into a slot; the core owns the rest, once:
//
//   RunState     first error (first wins), cancel, progress: what every worker of a run reads
//   FirstTensor  per-item count of pieces not yet at their destination; the first item to
//                reach zero sets the time to first tensor
//   StagingRing  one worker's two slots of staging and (for a GPU) its stream and one event
//                per slot: acquire() hands out the next slot once the copies last submitted
//                from it have read it; submit() queues copies out of a slot, a host function
//                marking their pieces done (only until the first tensor is complete), and the
//                slot's event; close() drains and releases everything
//
// Slots are pinned by the worker itself on its own thread (pin(): reading starts after one
// region is pinned, not every worker's), or carved by the caller out of one region it pinned
// for all workers (useSlots(): one pinning call instead of one per worker). A ring without a
// device (never opened) only alternates its slots: the fetcher's export and hash-only runs.
// Everything device-side goes through dev:: (device.h).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <memory>
#include <vector>

#include "device.h"
#include "io.h"
#include "pinned.h"

namespace tz {

// TENSORIZE_TEST_SKIP_SLOT_WAIT=1 (tests only): reuse a slot without waiting for its copy,
// the race the slot events prevent; the simulator's late reads then corrupt the result,
// which is how the tests show that their byte checks can fail.
bool skipSlotWait();

// What every worker of one run shares.
class RunState {
 public:
  RunState(std::atomic<uint64_t>* progress, std::atomic<bool>* cancel) : progress_(progress), cancel_(cancel) {}
  ErrorSlot errs;
  // A failure recorded, or the caller's cancel flag set.
  bool cancelled() const { return errs.failed() || (cancel_ && cancel_->load(std::memory_order_relaxed)); }
  void progress(uint64_t n) const {
    if (progress_ && n) progress_->fetch_add(n, std::memory_order_relaxed);
  }
  // Records `e` when it is a failure (naming `tensor` when >= 0); true when it is one.
  bool failed(const Error& e, int64_t tensor = -1) {
    if (e.ok()) return false;
    Error x = e;
    if (tensor >= 0) x.tensor = tensor;
    errs.set(x);
    return true;
  }

 private:
  std::atomic<uint64_t>* progress_;
  std::atomic<bool>* cancel_;
};

// Pieces handed over for hashing (piece_hasher.h) out of one staging slot and not hashed
// yet: the slot is refilled only once none is pending.
class PendingHashes {
 public:
  // Before the slot's pieces are handed over: how many.
  void set(int n) { n_.store(n); }
  // Or one more, while the hasher may be taking others off.
  void add(int n) { n_.fetch_add(n); }
  // One of them is hashed (the hasher's thread). Under the lock, which wait() takes too: a
  // waiter that sees none pending may free the slot (this object with it) at once.
  void done() {
    std::lock_guard<std::mutex> g(m_);
    if (n_.fetch_sub(1) == 1) cv_.notify_all();
  }
  // Waits until none is pending; false when `run` was cancelled meanwhile (checked every
  // 100 ms).
  bool wait(const RunState* run);
  int pending() const { return n_.load(); }

 private:
  std::atomic<int> n_{0};
  std::mutex m_;
  std::condition_variable cv_;
};

// The time to first tensor: the first item whose pieces are all at their destination.
class FirstTensor {
 public:
  // pieces[i]: how many pieces item i arrives in; the time (ms since start()) goes to *out.
  void init(const std::vector<uint64_t>& pieces, double* out);
  void start(Clock::time_point t0) { t0_ = t0; }
  // A piece of `item` is at its destination (from any thread, a host function included).
  void pieceDone(uint32_t item) {
    if (remaining_[item].fetch_sub(1) == 1) tensorDone();
  }
  // A whole item is (an item of no pieces never completes through pieceDone).
  void tensorDone() {
    bool expected = false;
    if (done_.compare_exchange_strong(expected, true)) *out_ = msSince(t0_);
  }
  bool done() const { return done_.load(std::memory_order_relaxed); }
  uint64_t remaining(uint32_t item) const { return remaining_[item].load(); }

 private:
  std::unique_ptr<std::atomic<uint64_t>[]> remaining_;
  std::atomic<bool> done_{false};
  double* out_ = nullptr;
  Clock::time_point t0_ = Clock::now();
};

// One worker's two staging slots and, for a GPU, its stream and slot events.
class StagingRing {
 public:
  StagingRing() = default;
  StagingRing(const StagingRing&) = delete;
  StagingRing& operator=(const StagingRing&) = delete;
  ~StagingRing();

  // The stream and the slots' events on `device` (`blocking`: a thread waiting on a slot
  // sleeps rather than spins). On failure what was created stays for close().
  Error open(int device, bool blocking);
  // The slots, `slotBytes` each, in one region pinned here on the calling thread; `what`
  // names it in errors. pinMs() is how long that took.
  bool pin(uint64_t slotBytes, const char* what, Error& err);
  // Or the slots in the caller's memory, which must outlive close().
  void useSlots(uint8_t* a, uint8_t* b) {
    buf_[0] = a;
    buf_[1] = b;
  }

  // The next slot in turn, once the copies last submitted from it have read it (unless
  // TENSORIZE_TEST_SKIP_SLOT_WAIT=1, which skips only that wait) and the pieces handed from
  // it to a hasher are hashed: its index (0 or 1); -1 with err set when the copy failed,
  // or -1 with err empty when `run` was cancelled while pieces were still to be hashed.
  int acquire(Error& err, const RunState* run = nullptr);
  uint8_t* slot(int k) const { return buf_[k]; }
  // What slot k waits on besides its copies: set() it before handing its pieces over.
  PendingHashes& pending(int k) { return pending_[k]; }

  // One copy out of a slot: `len` bytes at `at` in the slot to `dst`, a piece of `item`.
  struct Copy {
    dev::DevPtr dst;
    uint64_t at, len;
    uint32_t item;
  };
  // Queues the copies out of slot k; then, while `first` has no tensor done, a host function
  // marking their pieces done in it; then the slot's event. The error names the item of a
  // failed copy, and `tensor` for a failed host function or event.
  Error submit(int k, const Copy* copies, size_t n, FirstTensor* first, int64_t tensor);

  // Teardown (once no more work is submitted): waits for the stream (a sync that returns,
  // with an error or not, has drained it: the driver runs nothing more of it), destroys it
  // and the events, unpins a region pin() made. Failures go to errs (the first one wins).
  void close(ErrorSlot& errs);

  double pinMs() const { return pinMs_; }
  // What pin() pinned (counted until the run ends, after close() too).
  uint64_t pinnedBytes() const { return pinnedBytes_; }

 private:
  // The pieces one host function marks done; kept until the ring is closed.
  struct Done {
    FirstTensor* first;
    std::vector<uint32_t> items;
  };
  static void onCopied(void* p);

  dev::Stream stream_ = nullptr;
  dev::Event done_[2] = {nullptr, nullptr};
  bool used_[2] = {false, false};
  uint8_t* buf_[2] = {nullptr, nullptr};
  PendingHashes pending_[2];
  int next_ = 0;
  PinnedHost region_;
  double pinMs_ = 0;
  uint64_t pinnedBytes_ = 0;
  std::deque<Done> dones_;  // a deque: host functions hold pointers into it
};

}  // namespace tz
