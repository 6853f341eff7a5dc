// The loader's --mmap mode (loader.h Spec::mmap): each file mapped copy-on-write in one
// region (loaded.cc mapFiles), the tensors' pages mapped in from the page cache by `readers`
// threads; nothing is copied. Encrypted items are the exception: the pages of each piece are
// made private (MADV_POPULATE_WRITE: the kernel copies them from the page cache, and a page
// past the end of a file truncated meanwhile is an error, not SIGBUS) and the piece is
// decrypted in place there: that replaces mapping its pages in. Those pages are then the
// process's own memory, not the page cache's: Stats::hostBytes counts them (page-rounded,
// within the files) and Stats::mappedBytes the rest of the files, so that the two add up to
// the files' sizes.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "loader_run.h"

namespace tz::loader {

namespace {
uint64_t pageSize() {
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return page;
}
}  // namespace

// Maps a range of the destination's pages (of the file holding `item`) in from the page
// cache (reading them from disk where they are not cached). Nothing is copied and no memory
// is zeroed. `write`: made private and writable instead (copied from the page cache).
// *unsupported is set when the kernel cannot populate (before 5.14): true is returned and
// the pages are left to fault in on first use.
bool Run::populate(uint64_t off, uint64_t len, uint32_t item, bool write, bool* unsupported) {
#ifndef MADV_POPULATE_READ
  constexpr int MADV_POPULATE_READ = 22;
#endif
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;
#endif
  if (unsupported) *unsupported = false;
  if (!len) return true;
  const uint64_t page = pageSize();
  const uint64_t a = off & ~(page - 1), b = std::min(out_.size, (off + len + page - 1) & ~(page - 1));
  uint8_t* base = static_cast<uint8_t*>(out_.base);
  int r;
  do r = madvise(base + a, b - a, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
  while (r != 0 && errno == EINTR);
  if (r == 0) return true;
  // Linux before 5.14 has no MADV_POPULATE_READ: the pages stay mapped but not yet in
  // place, and fault in on first use (touching them here could raise SIGBUS if the file
  // shrank meanwhile).
  if (errno == EINVAL || errno == ENOSYS) {
    if (unsupported) *unsupported = true;
    return true;
  }
  const FileIn& f = files_[s_.items[item].file];
  const uint64_t fa = a - std::min(a, f.mapAt), fb = b - std::min(b, f.mapAt);  // in the file
  if (errno == ENOMEM) {
    errs.set(Code::E_HOST_OOM, f.path + ": out of memory while mapping bytes " + std::to_string(fa) + "-" + std::to_string(fb) + " of the file", item);
    return false;
  }
  // EFAULT: an access would have raised SIGBUS: the pages lie past the end of the file
  // (it was truncated since it was mapped) or reading them failed.
  struct stat st {};
  if (fstat(fds_[s_.items[item].file], &st) == 0 && static_cast<uint64_t>(st.st_size) < fb && static_cast<int64_t>(st.st_size) < f.expectSize) {
    errs.set(Code::E_FILE_CHANGED, f.path + ": the file was truncated to " + std::to_string(st.st_size) + " bytes while it was being mapped", item);
  } else {
    errs.set(Code::E_IO, f.path + ": could not read bytes " + std::to_string(fa) + "-" + std::to_string(fb) + " of the file into its mapping: " + std::strerror(errno), item);
  }
  return false;
}

// A piece of an encrypted item: its pages made private, then decrypted in place. Where the
// kernel cannot populate, the ciphertext is pread into the mapping instead (the write faults
// copy the pages; a file truncated meanwhile is then a short read, not SIGBUS).
bool Run::decryptMapped(const Piece& pc) {
  const Item& it = s_.items[pc.item];
  uint8_t* p = static_cast<uint8_t*>(out_.base) + it.dst + pc.off;
  bool unsupported = false;
  if (!populate(it.dst + pc.off, pc.len, pc.item, true, &unsupported)) return false;
  if (unsupported && !read(it, p, pc.len, pc.off, pc.item)) return false;
  return decrypt(pc.item, pc.off, p, pc.len);
}

// --mmap without hashes: runs of pieces that lie close together in the file (small
// tensors and the headers between them) are mapped in with one call, up to `chunk` bytes:
// a model of 20,000 small tensors is then ~80 calls, not 20,000. A piece of an encrypted
// item is a run of its own (decryptMapped).
std::vector<Run::MapRange> Run::mapRanges() const {
  constexpr uint64_t kGap = 64 << 10;
  std::vector<MapRange> out;
  for (size_t k = 0; k < plan_.pieces.size(); k++) {
    const Piece& pc = plan_.pieces[k];
    const uint64_t from = s_.items[pc.item].dst + pc.off;  // where it is mapped
    const bool encrypted = s_.crypt.of(pc.item) != nullptr;
    if (!out.empty() && !encrypted && !out.back().encrypted) {
      MapRange& r = out.back();
      const uint64_t end = r.from + r.len;
      const bool sameFile = s_.items[plan_.pieces[r.firstPiece].item].file == s_.items[pc.item].file;
      if (sameFile && from >= end && from - end <= kGap && from + pc.len - r.from <= s_.chunk) {
        r.len = from + pc.len - r.from;
        r.endPiece = k + 1;
        continue;
      }
    }
    out.push_back({from, pc.len, k, k + 1, encrypted});
  }
  return out;
}

void Run::mappedReader(const std::vector<MapRange>& ranges) {
  for (;;) {
    uint64_t u = next_.fetch_add(1);
    if (u >= ranges.size() || cancelled()) return;
    const MapRange& r = ranges[u];
    if (r.encrypted) {
      if (!decryptMapped(plan_.pieces[r.firstPiece])) return;
    } else if (!populate(r.from, r.len, static_cast<uint32_t>(plan_.pieces[r.firstPiece].item))) {
      return;
    }
    for (size_t k = r.firstPiece; k < r.endPiece; k++) {
      progress(plan_.pieces[k].len);
      pieceDone(plan_.pieces[k].item);
    }
  }
}

// --mmap with hash groups (or --verify of encrypted items): the pieces of hashed items are
// read (pread, as runHostVerified does: a file truncated meanwhile is E_FILE_CHANGED, not
// SIGBUS) into the reader's two slots and handed to the hasher, their pages mapped in
// meanwhile; a slot is refilled only once its piece is hashed (the buffers outlive the
// hasher: freed by the caller). A piece of an encrypted item is decrypted in the mapping
// (decryptMapped) and handed to the hasher from there.
void Run::mappedHashedReader(StagingRing& r) {
  for (;;) {
    uint64_t u = next_.fetch_add(1);
    if (u >= plan_.pieces.size() || cancelled()) return;
    const Piece& pc = plan_.pieces[u];
    const Item& it = s_.items[pc.item];
    if (s_.crypt.of(pc.item)) {
      if (!decryptMapped(pc)) return;
      if (hasher_->needs(pc.item)) hasher_->arrived(pc.item, pc.idx, static_cast<const uint8_t*>(out_.base) + it.dst + pc.off, nullptr);
    } else {
      if (hasher_->needs(pc.item)) {
        Error we;
        const int slot = r.acquire(we, this);
        if (failed(we, pc.item) || slot < 0 || cancelled()) return;
        if (!read(it, r.slot(slot), pc.len, pc.off, pc.item)) return;
        r.pending(slot).set(1);
        hasher_->arrived(pc.item, pc.idx, r.slot(slot), &r.pending(slot));
      }
      if (!populate(it.dst + pc.off, pc.len, pc.item)) return;
    }
    progress(pc.len);
    pieceDone(pc.item);
  }
}

// The bytes of the files whose pages decryption made private: the encrypted items' pages,
// each span clamped to its file's end, overlaps counted once.
uint64_t Run::privateBytes() const {
  const uint64_t page = pageSize();
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (size_t i = 0; i < s_.items.size(); i++) {
    const Item& it = s_.items[i];
    if (!it.len || !s_.crypt.of(i)) continue;
    const FileIn& f = files_[it.file];
    const uint64_t end = f.mapAt + static_cast<uint64_t>(f.expectSize);
    spans.push_back({it.dst & ~(page - 1), std::min(end, (it.dst + it.len + page - 1) & ~(page - 1))});
  }
  std::sort(spans.begin(), spans.end());
  uint64_t n = 0, at = 0;
  for (auto& sp : spans) {
    const uint64_t a = std::max(at, sp.first);
    if (sp.second > a) n += sp.second - a;
    at = std::max(at, sp.second);
  }
  return n;
}

void Run::runHostMapped(int readers) {
  out_.stats.allocMs = msSince(t0_);
  if (s_.verify && !plan_.encrypted) return runHostVerified(readers, true);
  if (s_.verify || !s_.groups.empty()) {
    runHostHashed(readers, true);
  } else {
    const std::vector<MapRange> ranges = mapRanges();
    std::vector<std::thread> ts;
    for (int i = 0; i < readers; i++) ts.emplace_back([&] { mappedReader(ranges); });
    for (auto& t : ts) t.join();
  }
  const uint64_t priv = privateBytes();
  out_.stats.hostBytes = priv;
  out_.stats.mappedBytes -= std::min(out_.stats.mappedBytes, priv);
}

const char* mmapProblem(const Spec& s, const std::vector<FileIn>& files) {
  if (s.device >= 0) return "mmap loads into host memory only";
  const uint64_t page = pageSize();
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const FileIn& f : files) {
    const uint64_t size = static_cast<uint64_t>(f.expectSize);
    if (f.mapAt % page || f.mapAt > s.total || size > s.total - f.mapAt) return "mmap: a file's place must be page-aligned and inside the destination";
    spans.push_back({f.mapAt, f.mapAt + size});
  }
  std::sort(spans.begin(), spans.end());
  for (size_t k = 1; k < spans.size(); k++)
    if (spans[k].first < spans[k - 1].second) return "mmap: files overlap in the destination";
  if (files.size() == 1 && s.total != static_cast<uint64_t>(files[0].expectSize)) return "mmap: total must be the file size";
  for (auto& it : s.items)
    if (it.dst != files[it.file].mapAt + it.src) return "mmap: every tensor's destination must be its offset in its file's mapping";
  // An encrypted tensor is decrypted where it is mapped: no other tensor may share its bytes.
  if (!s.crypt.items.empty()) {
    std::vector<std::pair<uint64_t, size_t>> at;
    for (size_t i = 0; i < s.items.size(); i++)
      if (s.items[i].len) at.push_back({s.items[i].dst, i});
    std::sort(at.begin(), at.end());
    // Clusters of tensors that overlap one another: each member overlaps another one.
    uint64_t end = 0;
    size_t members = 0;
    bool encrypted = false;
    for (auto& [dst, i] : at) {
      if (dst >= end) members = 0, encrypted = false;
      members++;
      encrypted = encrypted || s.crypt.of(i);
      end = std::max(end, dst + s.items[i].len);
      if (members > 1 && encrypted) return "mmap: an encrypted tensor overlaps another tensor in the file";
    }
  }
  return nullptr;
}

}  // namespace tz::loader
