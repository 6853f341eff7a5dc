#include "loader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "copy.h"
#include "hash.h"
#include "io.h"
#include "pinned.h"

#ifdef TENSORIZE_HAVE_CUDA
#include "cuda_errors.h"
#endif

namespace tz {

namespace {


#ifdef TENSORIZE_HAVE_CUDA
#define CUDA_OK(call, what, errs)                        \
  do {                                                   \
    cudaError_t e_ = (call);                             \
    if (e_ != cudaSuccess) {                             \
      (errs).set(cudaCode(e_), cudaMsg(e_, what));       \
    }                                                    \
  } while (0)
#endif



// Empty when the computed hashes of a tensor match the stored ones; else every one that
// does not, as "CRC32 mismatch (stored x, computed y); SHA-256 mismatch (...)" (the
// TypeScript side reads this back to report it as verify does).
std::string hashMismatch(const Expect& e, uint32_t crc, const uint8_t* sha) {
  std::string why;
  if (e.crc && crc != e.crc32) {
    char buf[64];
    snprintf(buf, sizeof buf, "CRC32 mismatch (stored %08x, computed %08x)", e.crc32, crc);
    why = buf;
  }
  if (e.sha && std::memcmp(sha, e.sha256, 32) != 0) why += (why.empty() ? "" : "; ") + std::string("SHA-256 mismatch (stored ") + hex(e.sha256, 32) + ", computed " + hex(sha, 32) + ")";
  return why;
}

// Running CRC32 + SHA-256 of one tensor (prefix first, then its data in order).
class TensorHash {
 public:
  explicit TensorHash(const Expect& e) : e_(e) { update(e_.prefix.data(), e_.prefix.size()); }
  void update(const void* p, size_t n) {
    if (e_.crc) crc_ = crc32(crc_, p, n);
    if (e_.sha) sha_.update(p, n);
  }
  std::string check() {
    uint8_t got[32] = {};
    if (e_.sha) sha_.final(got);
    return hashMismatch(e_, crc_, got);
  }

 private:
  const Expect& e_;
  uint32_t crc_ = 0;
  Sha256 sha_;
};

struct Piece {
  uint32_t item;
  uint64_t off;  // within the item
  uint64_t len;
};

// Units of work handed to readers: single pieces, or (when hashing) whole tensors.
struct Unit {
  uint32_t item;
  uint64_t a, b;  // [first piece, end piece); empty for a zero-length tensor
};
struct Plan {
  std::vector<Piece> pieces;
  std::vector<Unit> units;
};

Plan makePlan(const Spec& s) {
  Plan p;
  const uint64_t chunk = s.chunk ? s.chunk : (16u << 20);
  for (uint32_t i = 0; i < s.items.size(); i++) {
    const uint64_t first = p.pieces.size();
    for (uint64_t off = 0; off < s.items[i].len; off += chunk) p.pieces.push_back({i, off, std::min(chunk, s.items[i].len - off)});
    if (s.verify) {
      p.units.push_back({i, first, p.pieces.size()});
    } else {
      for (uint64_t k = first; k < p.pieces.size(); k++) p.units.push_back({i, k, k + 1});
    }
  }
  return p;
}

class Run {
 public:
  Run(const Spec& s, int fd, Loaded& out) : s_(s), fd_(fd), out_(out), plan_(makePlan(s)), remaining_(s.items.size()) {
    // per-item count of pieces still in flight
    std::vector<uint64_t> counts(s.items.size(), 0);
    for (auto& pc : plan_.pieces) counts[pc.item]++;
    for (size_t i = 0; i < counts.size(); i++) remaining_[i].store(counts[i]);
    out_.stats.pieces = plan_.pieces.size();
  }

  ErrorSlot errs;

  bool cancelled() { return errs.failed() || (s_.cancel && s_.cancel->load(std::memory_order_relaxed)); }
  void progress(uint64_t n) {
    if (s_.progress) s_.progress->fetch_add(n, std::memory_order_relaxed);
  }
  // The first tensor to be complete in its destination sets the time to first tensor.
  void tensorDone() {
    bool expected = false;
    if (firstDone_.compare_exchange_strong(expected, true)) out_.stats.firstTensorMs = msSince(t0_);
  }
  // Called when a piece is on its destination.
  void pieceDone(uint32_t item) {
    if (remaining_[item].fetch_sub(1) == 1) tensorDone();
  }
  void start() { t0_ = Clock::now(); }

  void hostReader() {
    for (;;) {
      uint64_t u = next_.fetch_add(1);
      if (u >= plan_.units.size() || cancelled()) return;
      const Unit& un = plan_.units[u];
      const Item& it = s_.items[un.item];
      std::unique_ptr<TensorHash> h;
      if (s_.verify) h = std::make_unique<TensorHash>(s_.expect[un.item]);
      for (uint64_t k = un.a; k < un.b; k++) {
        const Piece& pc = plan_.pieces[k];
        if (cancelled()) return;
        uint8_t* dst = static_cast<uint8_t*>(out_.base) + it.dst + pc.off;
        prefault(dst, pc.len);
        if (!preadFully(fd_, dst, pc.len, it.src + pc.off, s_.path, errs, pc.item)) return;
        if (h) h->update(dst, pc.len);
        progress(pc.len);
        pieceDone(pc.item);
      }
      if (h) checkHash(*h, un.item);
    }
  }

  // --verify into host memory: the copy engine reads each tensor in place and hashes two
  // tensors per thread with the interleaved SHA-256, in 1 MiB steps that stay in cache.
  // Largest tensors first, so that lanes stay paired to the end (in file order a third of
  // the hashing ran single-stream); the first tensor to complete is then a large one.
  // `mapped` (--mmap --verify): the engine only hashes, reading with pread into its own
  // buffers (the same page-cache pages as the mapping, but a file truncated meanwhile is
  // then E_FILE_CHANGED, not SIGBUS), and each tensor's pages are mapped in once it is hashed.
  void runHostVerified(int readers, bool mapped) {
    CopySpec c;
    c.inputs = {s_.path};
    c.memory = mapped ? nullptr : static_cast<uint8_t*>(out_.base);
    c.threads = readers;
    c.chunk = std::max<uint64_t>(4096, std::min<uint64_t>(s_.chunk, 1 << 20) / 4096 * 4096);
    c.largestFirst = true;
    c.shortReadCode = "E_FILE_CHANGED";
    c.progress = s_.progress;
    c.cancel = s_.cancel;
    c.onJobDone = [this, mapped](size_t i) {
      if (mapped && !populate(s_.items[i].src, s_.items[i].len, static_cast<uint32_t>(i))) return;
      tensorDone();
    };
    c.jobs.resize(s_.items.size());
    for (size_t i = 0; i < s_.items.size(); i++) {
      const Item& it = s_.items[i];
      const Expect& e = s_.expect[i];
      CopyJob& j = c.jobs[i];
      j.ranges = {it.src, it.len};
      j.dst = mapped ? -1 : static_cast<int64_t>(it.dst);
      j.prefix = e.prefix;
      j.crc = e.crc;
      j.sha = e.sha;
    }
    out_.stats.pieces = c.jobs.size();
    Error err;
    if (!runCopy(c, err)) {
      if (err.code != "E_INTERRUPTED") errs.set(err.code, err.message, err.tensor);
      return;
    }
    if (errs.failed()) return;  // a mapping failed (onJobDone)
    for (size_t i = 0; i < c.jobs.size(); i++) {
      std::string why = hashMismatch(s_.expect[i], c.jobs[i].crc32, c.jobs[i].sha256);
      if (!why.empty()) return errs.set("E_HASH_MISMATCH", "tensor #" + std::to_string(i) + ": " + why, static_cast<int64_t>(i));
    }
  }

  // --mmap: map a range of the file's pages in from the page cache (reading them from disk
  // where they are not cached). Nothing is copied and no memory is zeroed.
  bool populate(uint64_t off, uint64_t len, uint32_t item) {
#ifndef MADV_POPULATE_READ
    constexpr int MADV_POPULATE_READ = 22;
#endif
    if (!len) return true;
    static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    const uint64_t a = off & ~(page - 1), b = std::min(out_.size, (off + len + page - 1) & ~(page - 1));
    uint8_t* base = static_cast<uint8_t*>(out_.base);
    int r;
    do r = madvise(base + a, b - a, MADV_POPULATE_READ);
    while (r != 0 && errno == EINTR);
    if (r == 0) return true;
    // Linux before 5.14 has no MADV_POPULATE_READ: the pages stay mapped but not yet in
    // place, and fault in on first use (touching them here could raise SIGBUS if the file
    // shrank meanwhile).
    if (errno == EINVAL || errno == ENOSYS) return true;
    if (errno == ENOMEM) {
      errs.set("E_HOST_OOM", s_.path + ": out of memory while mapping bytes " + std::to_string(a) + "-" + std::to_string(b) + " of the file", item);
      return false;
    }
    // EFAULT: an access would have raised SIGBUS: the pages lie past the end of the file
    // (it was truncated since it was mapped) or reading them failed.
    struct stat st {};
    if (fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) < b && static_cast<uint64_t>(st.st_size) < out_.size) {
      errs.set("E_FILE_CHANGED", s_.path + ": the file was truncated to " + std::to_string(st.st_size) + " bytes while it was being mapped", item);
    } else {
      errs.set("E_IO", s_.path + ": could not read bytes " + std::to_string(a) + "-" + std::to_string(b) + " of the file into its mapping: " + std::strerror(errno), item);
    }
    return false;
  }

  // --mmap without hashes: runs of pieces that lie close together in the file (small
  // tensors and the headers between them) are mapped in with one call, up to `chunk` bytes:
  // a model of 20,000 small tensors is then ~80 calls, not 20,000.
  struct MapRange {
    uint64_t from, len;
    size_t firstPiece, endPiece;
  };
  std::vector<MapRange> mapRanges() const {
    constexpr uint64_t kGap = 64 << 10;
    std::vector<MapRange> out;
    for (size_t k = 0; k < plan_.pieces.size(); k++) {
      const Piece& pc = plan_.pieces[k];
      const uint64_t from = s_.items[pc.item].src + pc.off;
      if (!out.empty()) {
        MapRange& r = out.back();
        const uint64_t end = r.from + r.len;
        if (from >= end && from - end <= kGap && from + pc.len - r.from <= s_.chunk) {
          r.len = from + pc.len - r.from;
          r.endPiece = k + 1;
          continue;
        }
      }
      out.push_back({from, pc.len, k, k + 1});
    }
    return out;
  }

  void mappedReader(const std::vector<MapRange>& ranges) {
    for (;;) {
      uint64_t u = next_.fetch_add(1);
      if (u >= ranges.size() || cancelled()) return;
      const MapRange& r = ranges[u];
      if (!populate(r.from, r.len, static_cast<uint32_t>(plan_.pieces[r.firstPiece].item))) return;
      for (size_t k = r.firstPiece; k < r.endPiece; k++) {
        progress(plan_.pieces[k].len);
        pieceDone(plan_.pieces[k].item);
      }
    }
  }

  void runHostMapped(int readers) {
    out_.stats.allocMs = msSince(t0_);
    if (s_.verify) return runHostVerified(readers, true);
    const std::vector<MapRange> ranges = mapRanges();
    std::vector<std::thread> ts;
    for (int i = 0; i < readers; i++) ts.emplace_back([&] { mappedReader(ranges); });
    for (auto& t : ts) t.join();
  }

  void checkHash(TensorHash& h, uint32_t item) {
    std::string why = h.check();
    if (!why.empty()) errs.set("E_HASH_MISMATCH", "tensor #" + std::to_string(item) + ": " + why, item);
  }

#ifdef TENSORIZE_HAVE_CUDA
  struct Slot {
    void* host = nullptr;
    cudaEvent_t done = nullptr;
    bool used = false;
  };
  // One reader's pinned staging: its two slots in one region (pinned.h), pinned by the
  // reader itself on its own thread, so reading starts after one region is pinned, not the
  // whole ring.
  struct Reader {
    cudaStream_t stream = nullptr;
    Slot slots[2];
    PinnedHost region;
    double pinMs = 0;
  };

  struct Callback {
    Run* run;
    uint32_t item;
  };
  static void CUDART_CB onCopied(void* p) {
    auto* c = static_cast<Callback*>(p);
    c->run->pieceDone(c->item);
  }

  void cudaReader(Reader& r, std::vector<Callback>& cbs) {
    cudaError_t e = cudaSetDevice(s_.device);
    if (e != cudaSuccess) return errs.set(cudaCode(e), cudaMsg(e, "cudaSetDevice"));
    auto p0 = Clock::now();
    Error pe;
    if (!r.region.allocate(2 * s_.chunk, "the pinned ring", pe)) return errs.set(pe.code, pe.message);
    for (int k = 0; k < 2; k++) r.slots[k].host = r.region.data() + k * s_.chunk;
    r.pinMs = msSince(p0);
    int which = 0;
    for (;;) {
      uint64_t u = next_.fetch_add(1);
      if (u >= plan_.units.size() || cancelled()) break;
      const Unit& un = plan_.units[u];
      std::unique_ptr<TensorHash> h;
      if (s_.verify) h = std::make_unique<TensorHash>(s_.expect[un.item]);
      for (uint64_t k = un.a; k < un.b; k++) {
        const Piece& pc = plan_.pieces[k];
        const Item& it = s_.items[pc.item];
        Slot& slot = r.slots[which];
        which ^= 1;
        if (slot.used) {
          e = cudaEventSynchronize(slot.done);  // the slot's previous copy has finished
          if (e != cudaSuccess) return errs.set(cudaCode(e), cudaMsg(e, "cudaEventSynchronize"), pc.item);
        }
        if (cancelled()) return;
        if (!preadFully(fd_, slot.host, pc.len, it.src + pc.off, s_.path, errs, pc.item)) return;
        if (h) h->update(slot.host, pc.len);
        e = cudaMemcpyAsync(static_cast<uint8_t*>(out_.base) + it.dst + pc.off, slot.host, pc.len, cudaMemcpyHostToDevice, r.stream);
        if (e != cudaSuccess) return errs.set(cudaCode(e), cudaMsg(e, "cudaMemcpyAsync"), pc.item);
        // A host function per piece only until the first tensor is complete on the device
        // (all it is for: the time to first tensor). Host functions run one at a time on
        // CUDA's callback thread and hold their stream meanwhile: one per piece would cost
        // a model of 20,000 small tensors tens of milliseconds.
        if (!firstDone_.load(std::memory_order_relaxed)) {
          cbs[k] = {this, pc.item};
          e = cudaLaunchHostFunc(r.stream, onCopied, &cbs[k]);
          if (e != cudaSuccess) return errs.set(cudaCode(e), cudaMsg(e, "cudaLaunchHostFunc"), pc.item);
        }
        e = cudaEventRecord(slot.done, r.stream);
        if (e != cudaSuccess) return errs.set(cudaCode(e), cudaMsg(e, "cudaEventRecord"), pc.item);
        slot.used = true;
        progress(pc.len);
      }
      if (h) checkHash(*h, un.item);
    }
  }

  void runCuda(int readers) {
    Error tooBig;
    if (!stagingFits(2ull * static_cast<uint64_t>(readers) * s_.chunk, "the pinned ring (2 x readers x chunk size)", tooBig)) return errs.set(tooBig.code, tooBig.message);
    // (pinnedBytes counts the regions the readers pinned; allocMs the slowest pinning.)
    std::vector<Reader> rs(readers);
    // On the heap: if a stream fails to drain, its pending host functions may still point
    // here, so it is then left allocated (and the stream alive) rather than freed.
    auto cbs = std::make_unique<std::vector<Callback>>(plan_.pieces.size());
    for (size_t i = 0; i < rs.size() && !errs.failed(); i++) {
      Reader& r = rs[i];
      CUDA_OK(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking), "cudaStreamCreate", errs);
      // A reader waiting for its slot: by default CUDA's own choice (spin while the process
      // has fewer contexts than cores: microseconds per wait, which matters for models of
      // many small tensors); TENSORIZE_CUDA_SYNC=block sleeps instead (frees the core).
      const char* sync = getenv("TENSORIZE_CUDA_SYNC");
      const unsigned flags = cudaEventDisableTiming | (sync && std::string(sync) == "block" ? cudaEventBlockingSync : 0);
      for (int k = 0; k < 2 && !errs.failed(); k++) CUDA_OK(cudaEventCreateWithFlags(&r.slots[k].done, flags), "cudaEventCreate", errs);
    }
    const double setupMs = msSince(t0_);
    if (!errs.failed()) {
      std::vector<std::thread> ts;
      for (auto& r : rs) ts.emplace_back([this, &r, &cbs] { cudaReader(r, *cbs); });
      for (auto& t : ts) t.join();
    }
    double pinMs = 0;
    bool drained = true;
    for (auto& r : rs) {
      pinMs = std::max(pinMs, r.pinMs);
      if (r.region.pinned()) out_.stats.pinnedBytes += 2 * s_.chunk;
      bool ok = true;
      if (r.stream) {
        cudaError_t e = cudaStreamSynchronize(r.stream);
        // A stream that did not drain may still run host functions pointing into `cbs` and
        // copies reading its region: leave the stream, the region and `cbs` (the context is
        // broken anyway). Readers whose streams drained are cleaned up as usual.
        if (e != cudaSuccess) {
          errs.set(cudaCode(e), cudaMsg(e, "cudaStreamSynchronize"));
          ok = drained = false;
        } else {
          cudaStreamDestroy(r.stream);
        }
      }
      for (auto& sl : r.slots)
        if (sl.done) cudaEventDestroy(sl.done);
      if (ok) r.region.release();
      else r.region.abandon();
    }
    if (!drained) cbs.release();  // deliberately never freed (see above)
    // Readers pin their regions in parallel, each before its first read.
    out_.stats.allocMs = setupMs + pinMs;
  }

  // The baseline: each tensor read into pageable memory, then a synchronous copy.
  void runCudaSimple() {
    runSimple([this](size_t i, const uint8_t* buf) {
      const Item& it = s_.items[i];
      if (!it.len) return true;
      cudaError_t e = cudaMemcpy(static_cast<uint8_t*>(out_.base) + it.dst, buf, it.len, cudaMemcpyHostToDevice);
      if (e != cudaSuccess) errs.set(cudaCode(e), cudaMsg(e, "cudaMemcpy"), i);
      return e == cudaSuccess;
    });
    // A pageable cudaMemcpy returns once its source is staged: wait for the last DMA, so
    // the baseline's transfer time ends where --plaid's does (all copies on the device).
    if (!errs.failed()) {
      cudaError_t e = cudaDeviceSynchronize();
      if (e != cudaSuccess) errs.set(cudaCode(e), cudaMsg(e, "cudaDeviceSynchronize"));
    }
  }
#endif

  // Host baseline: each tensor read into its own buffer, then copied into place.
  void runHostSimple() {
    runSimple([this](size_t i, const uint8_t* buf) {
      std::memcpy(static_cast<uint8_t*>(out_.base) + s_.items[i].dst, buf, s_.items[i].len);
      return true;
    });
  }

  // One thread: read each tensor into ordinary memory, check it, hand it to `copy`.
  template <typename Copy>
  void runSimple(Copy copy) {
    out_.stats.allocMs = msSince(t0_);
    for (size_t i = 0; i < s_.items.size() && !cancelled(); i++) {
      const Item& it = s_.items[i];
      std::unique_ptr<uint8_t[]> buf(new (std::nothrow) uint8_t[it.len ? it.len : 1]);
      if (!buf) return errs.set("E_HOST_OOM", "out of host memory for a " + std::to_string(it.len) + "-byte tensor", i);
      if (!preadFully(fd_, buf.get(), it.len, it.src, s_.path, errs, i)) return;
      if (s_.verify) {
        TensorHash h(s_.expect[i]);
        h.update(buf.get(), it.len);
        checkHash(h, i);
      }
      if (!copy(i, buf.get())) return;
      progress(it.len);
      uint64_t n = remaining_[i].load();
      for (uint64_t k = 0; k < n; k++) pieceDone(i);
    }
  }

  void runHostPlaid(int readers) {
    out_.stats.allocMs = msSince(t0_);
    if (s_.verify) return runHostVerified(readers, false);
    std::vector<std::thread> ts;
    for (int i = 0; i < readers; i++) ts.emplace_back([this] { hostReader(); });
    for (auto& t : ts) t.join();
  }

 private:
  const Spec& s_;
  int fd_;
  Loaded& out_;
  Plan plan_;
  std::vector<std::atomic<uint64_t>> remaining_;
  std::atomic<uint64_t> next_{0};
  std::atomic<bool> firstDone_{false};
  Clock::time_point t0_;
};

}  // namespace

Loaded::~Loaded() { free(); }

void Loaded::free() {
  if (!base) return;
#ifdef TENSORIZE_HAVE_CUDA
  if (device >= 0) {
    cudaSetDevice(device);
    cudaFree(base);
    base = nullptr;
    return;
  }
#endif
  munmap(base, size);
  base = nullptr;
}

Loaded* mapFile(int fd, uint64_t size, const std::string& path, Error& err) {
  auto out = std::make_unique<Loaded>();
  out->size = size;
  if (size) {
    // MAP_PRIVATE: writes to a tensor copy its page and never reach the file.
    // MAP_NORESERVE: those copies are not charged up front against overcommit, except under
    // strict overcommit (vm.overcommit_memory=2), which charges a writable private mapping
    // in full: there a mapping larger than what is left to commit fails with ENOMEM.
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
      const bool oom = errno == ENOMEM;
      err.code = oom ? "E_HOST_OOM" : "E_IO";
      err.message = path + ": cannot map the file (" + std::to_string(size) + " bytes): " + std::strerror(errno) +
                    (oom ? " (with vm.overcommit_memory=2 a writable private mapping counts in full against the commit limit: load without --mmap)" : "");
      return nullptr;
    }
    out->base = p;
    out->stats.mappedBytes = size;
  }
  return out.release();
}

Loaded* allocate(int device, uint64_t total, Error& err, bool hugePages) {
  auto out = std::make_unique<Loaded>();
  out->device = device;
  out->size = total;
  if (device >= 0) {
#ifdef TENSORIZE_HAVE_CUDA
    cudaError_t e = cudaSetDevice(device);
    const char* what = "cudaSetDevice";
    if (e == cudaSuccess && total) {
      what = "cudaMalloc of the tensor memory";
      e = cudaMalloc(&out->base, total);
    }
    if (e != cudaSuccess) {
      out->base = nullptr;
      err.code = cudaCode(e);
      err.message = cudaMsg(e, what) + (e == cudaErrorMemoryAllocation ? " (" + std::to_string(total) + " bytes)" : "");
      return nullptr;
    }
    out->stats.deviceBytes = total;
#else
    err.code = "E_NO_DEVICE";
    err.message = "this build of the native addon has no CUDA support (no CUDA toolkit was found when it was built)";
    return nullptr;
#endif
  } else if (total) {
    void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      err.code = "E_HOST_OOM";
      err.message = "cannot map " + std::to_string(total) + " bytes of host memory for the tensors: " + std::strerror(errno);
      return nullptr;
    }
    // Huge pages: a fresh destination costs one fault per 2 MiB instead of per 4 KiB.
    if (hugePages) madvise(p, total, MADV_HUGEPAGE);
    out->base = p;
    out->stats.hostBytes = total;
  }
  return out.release();
}

// Copies between the destination and host memory: `in` copies host -> destination.
Error Loaded::transfer(uint64_t offset, uint64_t len, void* host, bool in) const {
  Error err;
  if (!base && len) {
    err.code = "E_USAGE";
    err.message = "the loaded model was closed";
    return err;
  }
  if (offset > size || len > size - offset) {
    err.code = "E_USAGE";
    err.message = in ? "write past the end of the allocation" : "read past the end of the loaded data";
    return err;
  }
  if (!len) return err;
  uint8_t* at = static_cast<uint8_t*>(base) + offset;
#ifdef TENSORIZE_HAVE_CUDA
  if (device >= 0) {
    cudaSetDevice(device);
    cudaError_t e = in ? cudaMemcpy(at, host, len, cudaMemcpyHostToDevice) : cudaMemcpy(host, at, len, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
      err.code = cudaCode(e);
      err.message = cudaMsg(e, in ? "cudaMemcpy (host to device)" : "cudaMemcpy (device to host)");
    }
    return err;
  }
#endif
  if (in) std::memcpy(at, host, len);
  else std::memcpy(host, at, len);
  return err;
}

Error Loaded::write(uint64_t offset, const void* in, uint64_t len) { return transfer(offset, len, const_cast<void*>(in), true); }

Error Loaded::read(uint64_t offset, uint64_t len, void* out) const { return transfer(offset, len, out, false); }

Loaded* load(const Spec& s, Error& err) {
  auto fail = [&](const std::string& code, const std::string& msg) -> Loaded* {
    err.code = code;
    err.message = msg;
    return nullptr;
  };
  if (s.verify && s.expect.size() != s.items.size()) return fail("E_USAGE", "verify needs one expected hash set per tensor");
  for (auto& it : s.items)
    if (it.dst > s.total || it.len > s.total - it.dst) return fail("E_USAGE", "a tensor's destination lies outside the allocation");
  if (s.readers < 1 || s.readers > 256) return fail("E_USAGE", "readers must be between 1 and 256");
#ifndef TENSORIZE_HAVE_CUDA
  if (s.device >= 0) return fail("E_NO_DEVICE", "this build of the native addon has no CUDA support (no CUDA toolkit was found when it was built)");
#endif
  int fd = ::open(s.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno == ENOENT ? "E_NOT_FOUND" : "E_IO", s.path + ": " + std::strerror(errno));
  struct stat st0 {};
  fstat(fd, &st0);
  if (s.expectSize >= 0 && st0.st_size != s.expectSize) {
    ::close(fd);
    return fail("E_FILE_CHANGED", s.path + ": the file is " + std::to_string(st0.st_size) + " bytes now, " + std::to_string(s.expectSize) + " when its index was read; it changed during the load");
  }
  if (s.mmap) {
    const char* why = s.device >= 0 ? "mmap loads into host memory only" : s.total != static_cast<uint64_t>(st0.st_size) ? "mmap: total must be the file size" : nullptr;
    for (auto& it : s.items)
      if (!why && it.dst != it.src) why = "mmap: every tensor's destination must be its offset in the file";
    if (why) {
      ::close(fd);
      return fail("E_USAGE", why);
    }
  }
  auto t0 = Clock::now();
  std::unique_ptr<Loaded> out(s.mmap ? mapFile(fd, s.total, s.path, err) : allocate(s.device, s.total, err, s.hugePages));
  if (!out) {
    ::close(fd);
    return nullptr;
  }
  const double destinationMs = msSince(t0);
  Run run(s, fd, *out);
  run.start();
  int readers = std::max(1, s.readers);
  if (s.device >= 0) {
#ifdef TENSORIZE_HAVE_CUDA
    if (s.plaid) run.runCuda(readers);
    else run.runCudaSimple();
#endif
  } else if (s.mmap) {
    run.runHostMapped(readers);
  } else if (s.plaid) {
    run.runHostPlaid(readers);
  } else {
    run.runHostSimple();
  }
  out->stats.transferMs = msSince(t0);
  out->stats.allocMs += destinationMs;
  if (!run.errs.failed() && s.cancel && s.cancel->load()) run.errs.set("E_INTERRUPTED", "the load was cancelled");
  struct stat st1 {};
  fstat(fd, &st1);
  ::close(fd);
  if (!run.errs.failed() && (st1.st_size != st0.st_size || st1.st_mtim.tv_sec != st0.st_mtim.tv_sec || st1.st_mtim.tv_nsec != st0.st_mtim.tv_nsec)) {
    run.errs.set("E_FILE_CHANGED", s.path + ": the file was modified during the load (size or modification time changed)");
  }
  if (run.errs.failed()) {
    err = run.errs.get();
    return nullptr;  // unique_ptr frees the destination
  }
  for (auto& it : s.items) out->stats.bytes += it.len;
  return out.release();
}

RuntimeInfo runtimeInfo() {
  RuntimeInfo info;
  info.hashImplementation = hashImplementation();
  {
#ifndef MADV_POPULATE_READ
    constexpr int MADV_POPULATE_READ = 22;
#endif
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* p = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      info.populate = madvise(p, page, MADV_POPULATE_READ) == 0;
      munmap(p, page);
    }
  }
#ifdef TENSORIZE_HAVE_CUDA
  info.compiledWithCuda = true;
  info.cudaToolkit = TENSORIZE_CUDA_VERSION;
  cudaRuntimeGetVersion(&info.runtimeVersion);
  cudaDriverGetVersion(&info.driverVersion);
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    info.cudaError = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    return info;
  }
  info.deviceCount = n;
  for (int i = 0; i < n; i++) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    char bus[32] = {};
    cudaDeviceGetPCIBusId(bus, sizeof bus, i);
    info.devices.push_back({i, p.name, static_cast<uint64_t>(p.totalGlobalMem), bus});
  }
#else
  info.cudaError = "built without CUDA";
#endif
  return info;
}

double probeH2D(int device, uint64_t bytes, int iters, Error& err) {
#ifdef TENSORIZE_HAVE_CUDA
  ErrorSlot errs;
  void *h = nullptr, *d = nullptr;
  cudaStream_t st = nullptr;
  double best = -1;
  CUDA_OK(cudaSetDevice(device), "cudaSetDevice", errs);
  if (!errs.failed()) CUDA_OK(cudaHostAlloc(&h, bytes, cudaHostAllocDefault), "cudaHostAlloc", errs);
  if (!errs.failed()) CUDA_OK(cudaMalloc(&d, bytes), "cudaMalloc", errs);
  if (!errs.failed()) CUDA_OK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "cudaStreamCreate", errs);
  if (!errs.failed()) {
    std::memset(h, 1, bytes);
    for (int i = 0; i <= iters && !errs.failed(); i++) {
      auto t0 = Clock::now();
      CUDA_OK(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, st), "cudaMemcpyAsync", errs);
      CUDA_OK(cudaStreamSynchronize(st), "cudaStreamSynchronize", errs);
      double s = msSince(t0) / 1000;
      if (i > 0 && s > 0) best = std::max(best, bytes / s);  // the first copy is a warm-up
    }
  }
  if (st) cudaStreamDestroy(st);
  if (d) cudaFree(d);
  if (h) cudaFreeHost(h);
  if (errs.failed()) {
    err = errs.get();
    return -1;
  }
  return best;
#else
  (void)device;
  (void)bytes;
  (void)iters;
  err.code = "E_NO_DEVICE";
  err.message = "built without CUDA";
  return -1;
#endif
}

}  // namespace tz
