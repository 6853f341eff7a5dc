#include "stream_core.h"

#include <chrono>
#include <string>

#include "config.h"

namespace tz {

bool skipSlotWait() { return config().testSkipSlotWait; }

void FirstTensor::init(const std::vector<uint64_t>& pieces, double* out) {
  remaining_.reset(new std::atomic<uint64_t>[pieces.size()]);
  for (size_t i = 0; i < pieces.size(); i++) remaining_[i].store(pieces[i]);
  out_ = out;
}

StagingRing::~StagingRing() {
  ErrorSlot ignored;
  close(ignored);
}

Error StagingRing::open(int device, bool blocking) {
  Error e = dev::streamCreate(device, &stream_);
  for (int k = 0; k < 2 && e.ok(); k++) e = dev::eventCreate(&done_[k], blocking);
  return e;
}

bool StagingRing::pin(uint64_t slotBytes, const char* what, Error& err) {
  auto t0 = Clock::now();
  if (!region_.allocate(2 * slotBytes, what, err)) return false;
  useSlots(region_.data(), region_.data() + slotBytes);
  pinMs_ = msSince(t0);
  pinnedBytes_ = 2 * slotBytes;
  return true;
}

bool PendingHashes::wait(const RunState* run) {
  std::unique_lock<std::mutex> lk(m_);
  while (n_.load() > 0) {
    if (run && run->cancelled()) return false;
    cv_.wait_for(lk, std::chrono::milliseconds(100));
  }
  return true;
}

int StagingRing::acquire(Error& err, const RunState* run) {
  const int k = next_;
  next_ ^= 1;
  if (used_[k] && !skipSlotWait()) {
    err = dev::eventSync(done_[k]);
    if (!err.ok()) return -1;
  }
  if (!pending_[k].wait(run)) return -1;
  return k;
}

void StagingRing::onCopied(void* p) {
  auto* d = static_cast<Done*>(p);
  for (uint32_t item : d->items) d->first->pieceDone(item);
}

Error StagingRing::submit(int k, const Copy* copies, size_t n, FirstTensor* first, int64_t tensor) {
  for (size_t i = 0; i < n; i++) {
    Error e = dev::copyAsync(copies[i].dst, buf_[k] + copies[i].at, copies[i].len, stream_);
    if (!e.ok()) {
      e.tensor = copies[i].item;
      return e;
    }
  }
  // A host function per submission only until the first tensor is complete on the device
  // (all it is for: the time to first tensor). Host functions run one at a time on the
  // device's callback thread and hold their stream meanwhile: one per piece would cost a
  // model of 20,000 small tensors tens of milliseconds.
  Error e;
  if (first && !first->done()) {
    dones_.push_back({first, {}});
    for (size_t i = 0; i < n; i++) dones_.back().items.push_back(copies[i].item);
    e = dev::launchHostFn(stream_, onCopied, &dones_.back());
  }
  if (e.ok()) e = dev::eventRecord(done_[k], stream_);
  if (!e.ok()) {
    if (tensor >= 0) e.tensor = tensor;
    return e;
  }
  used_[k] = true;
  return e;
}

void StagingRing::close(ErrorSlot& errs) {
  auto check = [&](const Error& e) {
    if (!e.ok()) errs.set(e);
  };
  if (stream_) {
    check(dev::streamSync(stream_));
    check(dev::streamDestroy(stream_));
    stream_ = nullptr;
  }
  for (auto& ev : done_) {
    if (ev) check(dev::eventDestroy(ev));
    ev = nullptr;
  }
  check(region_.release());
  dones_.clear();
}

}  // namespace tz
