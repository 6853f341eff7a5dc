#include "copy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <new>
#include <thread>

#include "hash.h"

namespace tz {
namespace {

void swapBytes(uint8_t* p, uint64_t n, int unit) {
  if (unit == 2) {
    for (uint64_t i = 0; i + 2 <= n; i += 2) std::swap(p[i], p[i + 1]);
  } else if (unit == 4) {
    for (uint64_t i = 0; i + 4 <= n; i += 4) {
      uint32_t v;
      std::memcpy(&v, p + i, 4);
      v = __builtin_bswap32(v);
      std::memcpy(p + i, &v, 4);
    }
  } else if (unit == 8) {
    for (uint64_t i = 0; i + 8 <= n; i += 8) {
      uint64_t v;
      std::memcpy(&v, p + i, 8);
      v = __builtin_bswap64(v);
      std::memcpy(p + i, &v, 8);
    }
  }
}

// One job in progress on a lane.
struct Lane {
  CopyJob* job = nullptr;
  int64_t index = -1;
  size_t range = 0;      // current range
  uint64_t inRange = 0;  // bytes of it done
  uint64_t left = 0;     // bytes of the job still to do
  uint64_t outPos = 0;
  uint32_t crc = 0;
  Sha256 sha;
  uint8_t* buf = nullptr;
  uint64_t most = 0;  // the longest read: the chunk, or whole crypt chunks of an encrypted job
  uint64_t unit = 1;  // reads but the last are multiples of this: the swap unit, or the crypt chunk
  const crypt::ItemCrypt* open = nullptr;  // decrypted after reading
  crypt::ItemCrypt* seal = nullptr;        // encrypted after hashing
};

// Writes go through one thread: buffered writes to one file serialize on its inode lock,
// and hashing threads that queue their chunks keep hashing instead of spinning on it.
// Chunk buffers come from a fixed pool and return to it once written.
class Writer {
 public:
  Writer(int fd, const std::string& path, ErrorSlot& errs) : fd_(fd), path_(path), errs_(errs) {}

  bool allocate(size_t count, uint64_t chunk) {
    for (size_t i = 0; i < count; i++) {
      auto* b = new (std::nothrow) uint8_t[chunk];
      if (!b) return false;
      owned_.emplace_back(b);
      free_.push_back(b);
    }
    return true;
  }
  // A free buffer, or nullptr once the copy failed or was stopped.
  uint8_t* acquire(const std::atomic<bool>* cancel) {
    std::unique_lock<std::mutex> g(m_);
    for (;;) {
      if (errs_.failed() || (cancel && cancel->load())) return nullptr;
      if (!free_.empty()) {
        uint8_t* b = free_.back();
        free_.pop_back();
        return b;
      }
      freed_.wait_for(g, std::chrono::milliseconds(50));
    }
  }
  void release(uint8_t* b) {
    {
      std::lock_guard<std::mutex> g(m_);
      free_.push_back(b);
    }
    freed_.notify_one();
  }
  void submit(uint8_t* b, uint64_t len, uint64_t off, int64_t job) {
    {
      std::lock_guard<std::mutex> g(m_);
      queue_.push_back({b, len, off, job});
    }
    queued_.notify_one();
  }
  void run() {
    for (;;) {
      Write w;
      {
        std::unique_lock<std::mutex> g(m_);
        queued_.wait(g, [&] { return !queue_.empty() || closing_; });
        if (queue_.empty()) return;
        w = queue_.front();
        queue_.pop_front();
      }
      if (!errs_.failed()) pwriteFully(fd_, w.buf, w.len, w.off, path_, errs_, w.job);
      release(w.buf);
    }
  }
  // Drain the queue and stop run().
  void close() {
    {
      std::lock_guard<std::mutex> g(m_);
      closing_ = true;
    }
    queued_.notify_all();
  }

 private:
  struct Write {
    uint8_t* buf;
    uint64_t len, off;
    int64_t job;
  };
  int fd_;
  const std::string& path_;
  ErrorSlot& errs_;
  std::mutex m_;
  std::condition_variable queued_, freed_;
  std::deque<Write> queue_;
  std::vector<uint8_t*> free_;
  std::vector<std::unique_ptr<uint8_t[]>> owned_;
  bool closing_ = false;
};

class Copy {
 public:
  Copy(CopySpec& s) : s_(s) {}

  bool open(Error& err) {
    for (const std::string& p : s_.inputs) {
      int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        err = {errno == ENOENT ? Code::E_NOT_FOUND : Code::E_IO, p + ": " + std::strerror(errno), -1};
        return false;
      }
      in_.push_back(fd);
    }
    if (!s_.output.empty() && s_.memory) {
      err = {Code::E_USAGE, "copy: an output file or memory, not both", -1};
      return false;
    }
    if (!s_.output.empty()) {
      out_ = ::open(s_.output.c_str(), O_WRONLY | O_CLOEXEC);
      if (out_ < 0) {
        err = {Code::E_IO, s_.output + ": " + std::strerror(errno), -1};
        return false;
      }
      // Allocate the output's blocks up front: running out of space fails now rather than
      // midway, and writes into allocated blocks cost the kernel about a third less than
      // delayed allocation (ext4). Filesystems without fallocate just skip this.
      struct stat st;
      if (fstat(out_, &st) == 0 && st.st_size > 0 && fallocate(out_, FALLOC_FL_KEEP_SIZE, 0, st.st_size) != 0 &&
          errno != EOPNOTSUPP && errno != ENOSYS) {
        err = {Code::E_IO, s_.output + ": cannot allocate " + std::to_string(st.st_size) + " bytes: " + std::strerror(errno), -1};
        return false;
      }
    }
    const bool sink = out_ >= 0 || s_.memory;
    for (const CopyJob& j : s_.jobs) {
      if (j.file >= in_.size() || j.ranges.size() % 2 || (j.dst >= 0 && !sink) || (s_.memory && j.dst < 0) ||
          (j.swap != 1 && j.swap != 2 && j.swap != 4 && j.swap != 8)) {
        err = {Code::E_USAGE, "copy: malformed job", -1};
        return false;
      }
    }
    return checkCrypt(err);
  }

  // The crypt and seal plans fit the jobs; each sealed job's MACs sized.
  bool checkCrypt(Error& err) {
    if (s_.crypt.items.empty() && s_.seal.items.empty()) return true;
    std::vector<uint64_t> lens(s_.jobs.size(), 0);
    for (size_t i = 0; i < lens.size(); i++)
      for (size_t r = 1; r < s_.jobs[i].ranges.size(); r += 2) lens[i] += s_.jobs[i].ranges[r];
    for (size_t i = 0; i < s_.seal.items.size() && i < lens.size(); i++) {
      crypt::ItemCrypt& c = s_.seal.items[i];
      if (c.encrypted() && c.chunk >= 64 && c.chunk % 64 == 0) c.macs.assign(crypt::kMacBytes * ((lens[i] + c.chunk - 1) / c.chunk), '\0');
    }
    for (const crypt::Plan* p : {&s_.crypt, &s_.seal}) {
      err = p->check(lens);
      if (!err.ok()) return false;
    }
    for (size_t i = 0; i < lens.size(); i++) {
      const bool dec = s_.crypt.of(i), enc = s_.seal.of(i);
      const char* why = dec && enc ? "is both decrypted and sealed" : nullptr;
      if ((dec || enc) && (s_.jobs[i].ranges.size() != 2 || s_.jobs[i].swap != 1)) why = "is encrypted or sealed: it must be one range, not byte-swapped";
      if (why) {
        err = {Code::E_USAGE, "copy: job " + std::to_string(i) + " " + why, static_cast<int64_t>(i)};
        return false;
      }
    }
    return true;
  }

  // The longest read of any job, which the buffers must hold: the chunk, or a crypt chunk
  // bigger than it (at most its job's length).
  uint64_t bufferBytes() const {
    uint64_t most = s_.chunk;
    for (const crypt::Plan* p : {&s_.crypt, &s_.seal})
      for (size_t i = 0; i < p->items.size(); i++)
        if (p->of(i) && p->items[i].chunk > s_.chunk) most = std::max(most, std::min(p->items[i].chunk, s_.jobs[i].ranges[1]));
    return most;
  }

  // Largest jobs first, so that the end of the run is not one thread hashing one big tensor.
  void plan() {
    std::vector<uint64_t> size(s_.jobs.size(), 0);
    for (size_t i = 0; i < s_.jobs.size(); i++)
      for (size_t r = 1; r < s_.jobs[i].ranges.size(); r += 2) size[i] += s_.jobs[i].ranges[r];
    order_.resize(s_.jobs.size());
    for (size_t i = 0; i < order_.size(); i++) order_[i] = i;
    if (s_.largestFirst) std::stable_sort(order_.begin(), order_.end(), [&](uint64_t a, uint64_t b) { return size[a] > size[b]; });
  }

  std::unique_ptr<Writer> writer_;
  int outFd() const { return out_; }

  ~Copy() {
    for (int fd : in_) ::close(fd);
    if (out_ >= 0) ::close(out_);
  }

  void worker() {
    Lane lanes[2];
    struct Release {
      Lane* lanes;
      Writer& w;
      bool inPlace;
      ~Release() {
        for (int i = 0; i < 2; i++)
          if (lanes[i].buf && !inPlace) w.release(lanes[i].buf);
      }
    } release{lanes, *writer_, s_.memory != nullptr};
    for (;;) {
      for (Lane& l : lanes)
        if (!l.job) take(l);
      Lane* act[2];
      int n = 0;
      for (Lane& l : lanes)
        if (l.job) act[n++] = &l;
      if (n == 0 || stopped()) return;
      // Equal-sized steps keep the two SHA-256 streams in lockstep. A byte-swapped job
      // needs steps that are whole swap units, else each lane steps on its own.
      // An encrypted job's steps are whole crypt chunks (its `unit`) but the last.
      uint64_t step = act[0]->most;
      for (int i = 0; i < n; i++) step = std::min({step, act[i]->most, act[i]->left});
      bool lockstep = n == 2;
      for (int i = 0; i < n; i++) lockstep = lockstep && (step == act[i]->left || step % act[i]->unit == 0);
      if (lockstep) {
        if (!readStep(*act[0], step) || !readStep(*act[1], step)) return;
        if (act[0]->job->sha && act[1]->job->sha) {
          sha256UpdateX2(act[0]->sha, act[0]->buf, act[1]->sha, act[1]->buf, step);
        } else {
          for (int i = 0; i < 2; i++)
            if (act[i]->job->sha) act[i]->sha.update(act[i]->buf, step);
        }
        for (int i = 0; i < 2; i++)
          if (!endStep(*act[i], step)) return;
      } else {
        for (int i = 0; i < n; i++) {
          Lane& l = *act[i];
          uint64_t own = std::min(l.most, l.left);
          if (!readStep(l, own)) return;
          if (l.job->sha) l.sha.update(l.buf, own);
          if (!endStep(l, own)) return;
        }
      }
    }
  }

  ErrorSlot errs_;

 private:
  bool stopped() const { return errs_.failed() || (s_.cancel && s_.cancel->load(std::memory_order_relaxed)); }

  void take(Lane& l) {
    for (;;) {
      uint64_t k = next_.fetch_add(1);
      if (k >= order_.size()) return;
      uint64_t i = order_[k];
      CopyJob& j = s_.jobs[i];
      l.job = &j;
      l.index = static_cast<int64_t>(i);
      l.range = 0;
      l.inRange = 0;
      l.left = 0;
      for (size_t r = 1; r < j.ranges.size(); r += 2) l.left += j.ranges[r];
      j.bytes = l.left;
      l.outPos = j.dst >= 0 ? static_cast<uint64_t>(j.dst) : 0;
      l.open = s_.crypt.of(i);
      l.seal = s_.seal.of(i) ? &s_.seal.items[i] : nullptr;
      const crypt::ItemCrypt* c = l.open ? l.open : l.seal;
      l.most = crypt::pieceStep(s_.chunk, c);
      l.unit = c ? c->chunk : static_cast<uint64_t>(j.swap);
      l.crc = j.crc ? crc32(0, j.prefix.data(), j.prefix.size()) : 0;
      l.sha.reset();
      if (j.sha) l.sha.update(j.prefix.data(), j.prefix.size());
      if (l.left > 0) return;
      finish(l);  // an empty job: hashes of the prefix alone
    }
  }

  // CRC32, write-out and bookkeeping for a step whose SHA-256 is done.
  bool endStep(Lane& l, uint64_t step) {
    if (l.job->crc) l.crc = crc32(l.crc, l.buf, step);
    if (l.seal) {
      const crypt::ItemCrypt& c = *l.seal;
      Error e = crypt::seal(s_.seal.keys.get(c.key), c.nonce, c.chunk, l.job->bytes, l.job->bytes - l.left, l.buf, step,
                            reinterpret_cast<uint8_t*>(&l.seal->macs[0]));
      if (!e.ok()) return fail(e, l);
    }
    if (l.job->dst >= 0) {
      if (!s_.memory) {
        writer_->submit(l.buf, step, l.outPos, l.index);
        l.buf = nullptr;
      }
      l.outPos += step;
    }
    l.left -= step;
    if (s_.progress) s_.progress->fetch_add(step, std::memory_order_relaxed);
    if (l.left == 0) finish(l);
    return true;
  }

  // Reads the next `step` bytes of the lane's job into its buffer, across ranges.
  bool readStep(Lane& l, uint64_t step) {
    if (s_.memory) {
      l.buf = s_.memory + l.outPos;  // read in place
      prefault(l.buf, step);
    } else if (!l.buf && !(l.buf = writer_->acquire(s_.cancel))) {
      return false;
    }
    const CopyJob& j = *l.job;
    uint64_t got = 0;
    while (got < step) {
      while (l.inRange == j.ranges[2 * l.range + 1]) {
        l.range++;
        l.inRange = 0;
      }
      uint64_t n = std::min(step - got, j.ranges[2 * l.range + 1] - l.inRange);
      if (!preadFully(in_[j.file], l.buf + got, n, j.ranges[2 * l.range] + l.inRange, s_.inputs[j.file], errs_, l.index, s_.shortReadCode)) return false;
      l.inRange += n;
      got += n;
    }
    if (j.swap > 1) swapBytes(l.buf, step, j.swap);
    if (l.open) {
      Error e = crypt::open(s_.crypt.keys.get(l.open->key), *l.open, j.bytes, j.bytes - l.left, l.buf, step);
      if (!e.ok()) return fail(e, l);
    }
    return true;
  }

  bool fail(Error& e, const Lane& l) {
    e.tensor = l.index;
    errs_.set(e);
    return false;
  }

  void finish(Lane& l) {
    CopyJob& j = *l.job;
    j.crc32 = l.crc;
    if (j.sha) l.sha.final(j.sha256);
    l.job = nullptr;
    if (s_.memory) l.buf = nullptr;
    if (s_.onJobDone) s_.onJobDone(static_cast<size_t>(l.index));
  }

  CopySpec& s_;
  std::vector<uint64_t> order_;
  std::vector<int> in_;
  int out_ = -1;
  std::atomic<uint64_t> next_{0};
};

}  // namespace

bool runCopy(CopySpec& spec, Error& err) {
  if (spec.chunk < 4096 || spec.chunk > (64u << 20) || spec.chunk % 4096) {
    err = {Code::E_USAGE, "copy: the chunk size must be a multiple of 4 KiB between 4 KiB and 64 MiB", -1};
    return false;
  }
  Copy c(spec);
  if (!c.open(err)) return false;
  c.plan();
  int threads = std::max(1, std::min(spec.threads, 64));
  // Two lanes per thread, each with one buffer being filled and one being written. Big crypt
  // chunks make big buffers: then as few as threads + 1 (a thread holds at most two, and
  // one more than threads lets one of them go on).
  c.writer_ = std::make_unique<Writer>(c.outFd(), spec.output, c.errs_);
  const uint64_t bytes = c.bufferBytes();
  int buffers = spec.memory ? 0 : 4 * threads + 2;
  if (buffers && bytes > spec.chunk) {
    Error big;
    if (!stagingFits(buffers * bytes, "copy buffers", big)) buffers = threads + 1;
    if (!stagingFits(buffers * bytes, "copy buffers for encrypted chunks", err)) return false;
  }
  if (!c.writer_->allocate(buffers, bytes)) {
    err = {Code::E_HOST_OOM, "copy: cannot allocate " + std::to_string(buffers) + " buffers of " + std::to_string(bytes) + " bytes", -1};
    return false;
  }
  std::thread writer;
  if (!spec.output.empty()) writer = std::thread([&c] { c.writer_->run(); });
  std::vector<std::thread> ts;
  for (int i = 1; i < threads; i++) ts.emplace_back([&c] { c.worker(); });
  c.worker();
  for (auto& t : ts) t.join();
  c.writer_->close();
  if (writer.joinable()) writer.join();
  if (c.errs_.failed()) {
    err = c.errs_.get();
    return false;
  }
  if (spec.cancel && spec.cancel->load()) {
    err = {Code::E_INTERRUPTED, "interrupted", -1};
    return false;
  }
  return true;
}

}  // namespace tz
