// The streaming loader (loader.h): the plan, the --plaid readers (into host memory, or
// through pinned staging rings to a GPU), the simple baseline and the hashing. --mmap is
// loader_mmap.cc; what the two units share, and how encrypted items go, loader_run.h.
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

#include "config.h"
#include "copy.h"
#include "crypt.h"
#include "device.h"
#include "hash.h"
#include "hash_groups.h"
#include "io.h"
#include "loader_run.h"
#include "piece_hasher.h"
#include "stream_core.h"

namespace tz {

namespace loader {

namespace {

// Running CRC32 + SHA-256 of one tensor (prefix first, then its data in order).
class TensorHash {
 public:
  explicit TensorHash(const Expect& e) : e_(e) { update(e_.prefix.data(), e_.prefix.size()); }
  void update(const void* p, size_t n) {
    if (e_.crc) crc_ = crc32(crc_, p, n);
    if (e_.sha) sha_.update(p, n);
  }
  Error check(int64_t item) {
    uint8_t got[32] = {};
    if (e_.sha) sha_.final(got);
    return hashMismatch(e_, crc_, got, item);
  }

 private:
  const Expect& e_;
  uint32_t crc_ = 0;
  Sha256 sha_;
};

}  // namespace

PiecePlan makePlan(const Spec& s) {
  PiecePlan p;
  const uint64_t chunk = s.chunk ? s.chunk : (16u << 20);
  for (uint32_t i = 0; i < s.items.size(); i++) {
    const crypt::ItemCrypt* c = s.crypt.of(i);
    const uint64_t step = crypt::pieceStep(chunk, c);  // `chunk` itself when not encrypted
    p.encrypted = p.encrypted || c;
    uint32_t idx = 0;
    for (uint64_t off = 0; off < s.items[i].len; off += step) {
      p.pieces.push_back({i, idx++, off, std::min(step, s.items[i].len - off)});
      p.largest = std::max(p.largest, p.pieces.back().len);
    }
  }
  return p;
}

Run::Run(const Spec& s, const std::vector<FileIn>& files, const std::vector<int>& fds, Loaded& out)
    : RunState(s.progress, s.cancel), s_(s), files_(files), fds_(fds), out_(out), plan_(makePlan(s)), slotBytes_(std::max(s.chunk, plan_.largest)) {
  // per-item count of pieces still in flight
  std::vector<uint64_t> counts(s.items.size(), 0);
  for (auto& pc : plan_.pieces) counts[pc.item]++;
  first_.init(counts, &out_.stats.firstTensorMs);
  out_.stats.pieces = plan_.pieces.size();
}

void Run::start() {
  t0_ = Clock::now();
  first_.start(t0_);
}

bool Run::read(const Item& it, void* into, uint64_t len, uint64_t off, int64_t item) {
  return preadFully(fds_[it.file], into, len, it.src + off, files_[it.file].path, errs, item);
}

bool Run::decrypt(uint32_t item, uint64_t off, uint8_t* p, uint64_t len) {
  const crypt::ItemCrypt* c = s_.crypt.of(item);
  if (!c) return true;
  return !failed(crypt::open(s_.crypt.keys.get(static_cast<size_t>(c->key)), *c, s_.items[item].len, off, p, len), item);
}

// --plaid into host memory without --verify (which runHostVerified does when nothing is
// encrypted); with hash groups, or --verify of a plan with encrypted items, each piece goes
// from the destination to the hasher, decrypted first.
void Run::hostReader() {
  for (;;) {
    uint64_t u = next_.fetch_add(1);
    if (u >= plan_.pieces.size() || cancelled()) return;
    const Piece& pc = plan_.pieces[u];
    const Item& it = s_.items[pc.item];
    uint8_t* dst = static_cast<uint8_t*>(out_.base) + it.dst + pc.off;
    prefault(dst, pc.len);
    if (!read(it, dst, pc.len, pc.off, pc.item)) return;
    if (!decrypt(pc.item, pc.off, dst, pc.len)) return;
    if (hasher_ && hasher_->needs(pc.item)) hasher_->arrived(pc.item, pc.idx, dst, nullptr);
    progress(pc.len);
    pieceDone(pc.item);
  }
}

// --verify into host memory: the copy engine reads each tensor in place and hashes two
// tensors per thread with the interleaved SHA-256, in 1 MiB steps that stay in cache.
// Largest tensors first, so that lanes stay paired to the end (in file order a third of
// the hashing ran single-stream); the first tensor to complete is then a large one.
// `mapped` (--mmap --verify): the engine only hashes, reading with pread into its own
// buffers (the same page-cache pages as the mapping, but a file truncated meanwhile is
// then E_FILE_CHANGED, not SIGBUS), and each tensor's pages are mapped in once it is hashed.
// (Not the shared PieceHasher that GPU loads use: readers pread'ing pieces into place and
// handing them to it measured 1.84 GB/s against this engine's 1.94 GB/s, 1.88 GiB warm on
// 2 cores, median of 5.) Not for plans with encrypted items: the engine would hash the
// ciphertext; those take the readers and the PieceHasher (runHostHashed).
void Run::runHostVerified(int readers, bool mapped) {
  CopySpec c;
  for (const FileIn& f : files_) c.inputs.push_back(f.path);
  c.memory = mapped ? nullptr : static_cast<uint8_t*>(out_.base);
  c.threads = readers;
  c.chunk = std::max<uint64_t>(4096, std::min<uint64_t>(s_.chunk, 1 << 20) / 4096 * 4096);
  c.largestFirst = true;
  c.shortReadCode = Code::E_FILE_CHANGED;
  c.progress = s_.progress;
  c.cancel = s_.cancel;
  c.onJobDone = [this, mapped](size_t i) {
    if (mapped && !populate(s_.items[i].dst, s_.items[i].len, static_cast<uint32_t>(i))) return;
    tensorDone();
  };
  c.jobs.resize(s_.items.size());
  for (size_t i = 0; i < s_.items.size(); i++) {
    const Item& it = s_.items[i];
    const Expect& e = s_.expect[i];
    CopyJob& j = c.jobs[i];
    j.file = it.file;
    j.ranges = {it.src, it.len};
    j.dst = mapped ? -1 : static_cast<int64_t>(it.dst);
    j.prefix = e.prefix;
    j.crc = e.crc;
    j.sha = e.sha;
  }
  out_.stats.pieces = c.jobs.size();
  Error err;
  if (!runCopy(c, err)) {
    if (err.code != Code::E_INTERRUPTED) errs.set(err.code, err.message, err.tensor);
    return;
  }
  if (errs.failed()) return;  // a mapping failed (onJobDone)
  for (size_t i = 0; i < c.jobs.size(); i++) {
    Error bad = hashMismatch(s_.expect[i], c.jobs[i].crc32, c.jobs[i].sha256, static_cast<int64_t>(i));
    if (!bad.ok()) return errs.set(bad);
  }
}

// Hash groups, or --verify of a plan with encrypted items, on host memory: --plaid readers
// (hostReader), or with --mmap mappedHashedReader.
void Run::runHostHashed(int readers, bool mapped) {
  Error tooBig;
  if (mapped && !stagingFits(2ull * static_cast<uint64_t>(readers) * s_.chunk, "the read buffers (2 x readers x chunk size)", tooBig)) return errs.set(tooBig);
  std::vector<std::unique_ptr<uint8_t[]>> bufs;
  std::vector<std::unique_ptr<StagingRing>> rs;
  // (Only pieces of unencrypted items, at most `chunk` bytes, go through these slots.)
  for (int i = 0; mapped && i < readers; i++) {
    bufs.emplace_back(new (std::nothrow) uint8_t[2 * s_.chunk]);
    if (!bufs.back()) return errs.set(Code::E_HOST_OOM, "out of host memory for the read buffers");
    rs.emplace_back(new StagingRing);
    rs.back()->useSlots(bufs.back().get(), bufs.back().get() + s_.chunk);
  }
  startHasher();
  std::vector<std::thread> ts;
  for (int i = 0; i < readers && !errs.failed(); i++) {
    if (mapped) ts.emplace_back([this, &rs, i] { mappedHashedReader(*rs[i]); });
    else ts.emplace_back([this] { hostReader(); });
  }
  for (auto& t : ts) t.join();
  hasher_->join();
  for (auto& r : rs) r->close(errs);
  allHashed();
}

// --verify on a GPU (or of encrypted items), or hash groups: each tensor (group) is checked
// as soon as its last piece is hashed (on a hasher thread; a mismatch stops the load); a
// zero-length tensor (only its prefix), or a group of no pieces, here.
void Run::startHasher() {
  std::vector<std::vector<uint64_t>> lens(s_.items.size());
  for (const Piece& pc : plan_.pieces) lens[pc.item].push_back(pc.len);
  auto onUnit = [this](uint32_t u) { failed(hasher_->check(u)); };
  std::vector<uint32_t> empty;  // units of no pieces
  if (!s_.groups.empty()) {
    units_ = groupUnits(s_.groups, lens);
    empty = units_.empty;
    hasher_.reset(new PieceHasher(units_.expect, std::move(units_.lens), *this, onUnit, units_.itemUnits));
  } else {
    for (uint32_t i = 0; i < s_.items.size(); i++)
      if (lens[i].empty() && (s_.expect[i].crc || s_.expect[i].sha)) empty.push_back(i);
    hasher_.reset(new PieceHasher(s_.expect, std::move(lens), *this, onUnit));
  }
  for (uint32_t u : empty) failed(hasher_->check(u));
  // A hasher thread per core, up to 8 (not the fetcher's half: readers only pread, and on
  // 2 cores one hasher thread left the load hash-bound, 1.99 s instead of 1.5 s for 1.88 GiB).
  hasher_->start(std::max(1, std::min(8, static_cast<int>(std::thread::hardware_concurrency()))));
}

// After the hasher's join: a load that did not fail must have hashed every group whole.
void Run::allHashed() {
  if (errs.failed() || cancelled() || !hasher_ || s_.groups.empty()) return;
  for (uint32_t g = 0; g < s_.groups.size(); g++)
    if (!hasher_->complete(g)) return errs.set(Code::E_NATIVE, "hash group #" + std::to_string(g) + " was not hashed completely");
}

// GPU loads: each reader owns a staging ring (stream_core.h) of two pinned slots in one
// region, pinned by the reader itself on its own thread (reading starts after one region
// is pinned, not the whole ring), and a stream: it reads into one slot while the device
// copies the other. A piece of an encrypted item is decrypted in its slot before its copy is
// queued. With --verify it also hands each piece to the hasher (piece_hasher.h), and a slot
// is refilled only once its copy is done and its piece hashed.
void Run::deviceReader(StagingRing& r) {
  Error pe;
  if (!r.pin(slotBytes_, "the pinned ring", pe)) return errs.set(pe);
  for (;;) {
    uint64_t u = next_.fetch_add(1);
    if (u >= plan_.pieces.size() || cancelled()) break;
    const Piece& pc = plan_.pieces[u];
    const Item& it = s_.items[pc.item];
    Error we;
    const int slot = r.acquire(we, this);
    if (failed(we, pc.item)) return;
    if (slot < 0 || cancelled()) return;
    uint8_t* buf = r.slot(slot);
    if (!read(it, buf, pc.len, pc.off, pc.item)) return;
    if (!decrypt(pc.item, pc.off, buf, pc.len)) return;
    const StagingRing::Copy c{out_.dbase + it.dst + pc.off, 0, pc.len, pc.item};
    if (failed(r.submit(slot, &c, 1, &first_, pc.item))) return;
    if (hasher_ && hasher_->needs(pc.item)) {
      r.pending(slot).set(1);
      hasher_->arrived(pc.item, pc.idx, buf, &r.pending(slot));
    }
    progress(pc.len);
  }
}

void Run::runDevice(int readers) {
  Error tooBig;
  // A slot holds the largest piece: `chunk` bytes, or one crypt chunk when that is larger.
  if (!stagingFits(2ull * static_cast<uint64_t>(readers) * slotBytes_, "the pinned ring (2 x readers x chunk size)", tooBig)) return errs.set(tooBig);
  // (pinnedBytes counts the regions the readers pinned; allocMs the slowest pinning.)
  std::vector<std::unique_ptr<StagingRing>> rs;
  // A reader waiting for its slot: by default the driver's own choice (spin while the
  // process has fewer contexts than cores: microseconds per wait, which matters for models
  // of many small tensors); TENSORIZE_CUDA_SYNC=block sleeps instead (frees the core).
  const bool blocking = config().cudaSyncBlock;
  for (int i = 0; i < readers && !errs.failed(); i++) {
    rs.emplace_back(new StagingRing);
    failed(rs.back()->open(s_.device, blocking));
  }
  const double setupMs = msSince(t0_);
  if (s_.verify || !s_.groups.empty()) startHasher();
  if (!errs.failed()) {
    std::vector<std::thread> ts;
    for (auto& r : rs) ts.emplace_back([this, &r] { deviceReader(*r); });
    for (auto& t : ts) t.join();
  }
  if (hasher_) hasher_->join();
  allHashed();
  // Teardown: each ring drains its stream before anything it used goes.
  double pinMs = 0;
  for (auto& r : rs) {
    pinMs = std::max(pinMs, r->pinMs());
    out_.stats.pinnedBytes += r->pinnedBytes();
    r->close(errs);
  }
  // Readers pin their regions in parallel, each before its first read.
  out_.stats.allocMs = setupMs + pinMs;
}

// One thread: read each tensor into ordinary memory, decrypt it, check it, hand it to `copy`.
template <typename Copy>
void Run::runSimple(Copy copy) {
  out_.stats.allocMs = msSince(t0_);
  std::unique_ptr<GroupHashes> groups;
  if (!s_.groups.empty()) {
    groups.reset(new GroupHashes(s_.groups, s_.items.size()));
    if (failed(groups->checkEmpty())) return;
  }
  for (size_t i = 0; i < s_.items.size() && !cancelled(); i++) {
    const Item& it = s_.items[i];
    std::unique_ptr<uint8_t[]> buf(new (std::nothrow) uint8_t[it.len ? it.len : 1]);
    if (!buf) return errs.set(Code::E_HOST_OOM, "out of host memory for a " + std::to_string(it.len) + "-byte tensor", i);
    if (!read(it, buf.get(), it.len, 0, i)) return;
    if (!decrypt(static_cast<uint32_t>(i), 0, buf.get(), it.len)) return;
    if (s_.verify) {
      TensorHash h(s_.expect[i]);
      h.update(buf.get(), it.len);
      failed(h.check(static_cast<int64_t>(i)));
    }
    if (groups && failed(groups->add(static_cast<uint32_t>(i), buf.get(), it.len))) return;
    if (!copy(i, buf.get())) return;
    progress(it.len);
    uint64_t n = first_.remaining(static_cast<uint32_t>(i));
    for (uint64_t k = 0; k < n; k++) pieceDone(i);
  }
}

// The baseline: each tensor read into pageable memory, then a synchronous copy.
void Run::runDeviceSimple() {
  runSimple([this](size_t i, const uint8_t* buf) {
    const Item& it = s_.items[i];
    if (!it.len) return true;
    return !failed(dev::copyToDevice(s_.device, out_.dbase + it.dst, buf, it.len), static_cast<int64_t>(i));
  });
  // A pageable copy may return once its source is staged: wait for the last DMA, so the
  // baseline's transfer time ends where --plaid's does (all copies on the device).
  if (!errs.failed()) failed(dev::sync(s_.device));
}

// Host baseline: each tensor read into its own buffer, then copied into place.
void Run::runHostSimple() {
  runSimple([this](size_t i, const uint8_t* buf) {
    if (s_.items[i].len) std::memcpy(static_cast<uint8_t*>(out_.base) + s_.items[i].dst, buf, s_.items[i].len);
    return true;
  });
}

void Run::runHostPlaid(int readers) {
  out_.stats.allocMs = msSince(t0_);
  if (s_.verify && !plan_.encrypted) return runHostVerified(readers, false);
  if (s_.verify || !s_.groups.empty()) return runHostHashed(readers, false);
  std::vector<std::thread> ts;
  for (int i = 0; i < readers; i++) ts.emplace_back([this] { hostReader(); });
  for (auto& t : ts) t.join();
}

}  // namespace loader

namespace {

// The load's input files, open; closed (and checked unchanged) by finish().
struct OpenFiles {
  std::vector<FileIn> files;  // expectSize: the size at open
  std::vector<int> fds;
  std::vector<struct stat> at;  // fstat at open
  ~OpenFiles() {
    for (int fd : fds) ::close(fd);
  }
  bool open(const Spec& s, Error& err) {
    files = s.files.empty() ? std::vector<FileIn>{{s.path, s.expectSize, 0}} : s.files;
    for (FileIn& f : files) {
      int fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        err = {errno == ENOENT ? Code::E_NOT_FOUND : Code::E_IO, f.path + ": " + std::strerror(errno), -1};
        return false;
      }
      fds.push_back(fd);
      struct stat st {};
      fstat(fd, &st);
      at.push_back(st);
      if (f.expectSize >= 0 && st.st_size != f.expectSize) {
        err = {Code::E_FILE_CHANGED, f.path + ": the file is " + std::to_string(st.st_size) + " bytes now, " + std::to_string(f.expectSize) + " when its index was read; it changed during the load", -1};
        return false;
      }
      f.expectSize = st.st_size;
    }
    return true;
  }
  // Closes the files; a file whose size or modification time changed meanwhile is an error.
  void finish(ErrorSlot& errs) {
    for (size_t k = 0; k < fds.size(); k++) {
      struct stat st1 {};
      fstat(fds[k], &st1);
      const struct stat& st0 = at[k];
      if (!errs.failed() && (st1.st_size != st0.st_size || st1.st_mtim.tv_sec != st0.st_mtim.tv_sec || st1.st_mtim.tv_nsec != st0.st_mtim.tv_nsec)) {
        errs.set(Code::E_FILE_CHANGED, files[k].path + ": the file was modified during the load (size or modification time changed)");
      }
      ::close(fds[k]);
    }
    fds.clear();
  }
};

}  // namespace

Loaded* load(const Spec& s, Error& err) {
  auto fail = [&](Code code, const std::string& msg) -> Loaded* {
    err.code = code;
    err.message = msg;
    return nullptr;
  };
  if (s.verify && s.expect.size() != s.items.size()) return fail(Code::E_USAGE, "verify needs one expected hash set per tensor");
  if (s.verify && !s.groups.empty()) return fail(Code::E_USAGE, "verify (per-tensor hashes) and hash groups do not go together");
  if (!checkGroups(s.groups, s.items, GroupOrder::Plan, err)) return nullptr;
  const size_t nfiles = s.files.empty() ? 1 : s.files.size();
  for (auto& it : s.items) {
    if (it.dst > s.total || it.len > s.total - it.dst) return fail(Code::E_USAGE, "a tensor's destination lies outside the allocation");
    if (it.file >= nfiles) return fail(Code::E_USAGE, "a tensor names a file that is not in the list");
  }
  if (s.readers < 1 || s.readers > 256) return fail(Code::E_USAGE, "readers must be between 1 and 256");
  if (!s.crypt.items.empty()) {
    std::vector<uint64_t> lens;
    for (auto& it : s.items) lens.push_back(it.len);
    err = s.crypt.check(lens);
    if (err.ok()) err = crypt::init();
    if (!err.ok()) return nullptr;
  }
  if (s.device >= 0 && s.device >= dev::deviceCount()) {
    const dev::BackendInfo& d = dev::info();
    return fail(Code::E_NO_DEVICE, d.devices.empty() ? "no usable GPU: " + d.why : "there is no cuda:" + std::to_string(s.device) + " (" + std::to_string(d.devices.size()) + " device(s))");
  }
  OpenFiles in;
  if (!in.open(s, err)) return nullptr;
  if (s.mmap)
    if (const char* why = loader::mmapProblem(s, in.files)) return fail(Code::E_USAGE, why);
  auto t0 = Clock::now();
  std::unique_ptr<Loaded> out;
  if (s.mmap) {
    std::vector<MapIn> maps;
    for (size_t k = 0; k < in.files.size(); k++) maps.push_back({in.fds[k], static_cast<uint64_t>(in.files[k].expectSize), in.files[k].mapAt, &in.files[k].path});
    out.reset(mapFiles(maps, s.total, err));
  } else {
    out.reset(allocate(s.device, s.total, err, s.hugePages));
  }
  if (!out) return nullptr;
  const double destinationMs = msSince(t0);
  loader::Run run(s, in.files, in.fds, *out);
  run.start();
  int readers = std::max(1, s.readers);
  if (s.device >= 0) {
    if (s.plaid) run.runDevice(readers);
    else run.runDeviceSimple();
  } else if (s.mmap) {
    run.runHostMapped(readers);
  } else if (s.plaid) {
    run.runHostPlaid(readers);
  } else {
    run.runHostSimple();
  }
  out->stats.transferMs = msSince(t0);
  out->stats.allocMs += destinationMs;
  if (!run.errs.failed() && s.cancel && s.cancel->load()) run.errs.set(Code::E_INTERRUPTED, "the load was cancelled");
  in.finish(run.errs);
  if (run.errs.failed()) {
    err = run.errs.get();
    return nullptr;  // unique_ptr frees the destination
  }
  for (auto& it : s.items) out->stats.bytes += it.len;
  return out.release();
}

}  // namespace tz
