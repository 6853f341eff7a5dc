// The loader's destinations (loader.h: Loaded, mapFiles, allocate) and what describes the
// machine (runtimeInfo, probeH2D); the load itself is loader.cc.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "device.h"
#include "hash.h"
#include "loader.h"

namespace tz {
Loaded::~Loaded() { (void)free(); }

Error Loaded::free() {
  Error e;
  if (device >= 0) {
    if (dbase) e = dev::free(device, dbase);
    dbase = 0;
    return e;
  }
  if (!base) return e;
  munmap(base, size);
  base = nullptr;
  return e;
}

Loaded* mapFiles(const std::vector<MapIn>& files, uint64_t total, Error& err) {
  auto out = std::make_unique<Loaded>();
  out->size = total;
  if (!total) return out.release();
  auto fail = [&](const std::string& path, uint64_t size) -> Loaded* {
    const bool oom = errno == ENOMEM;
    err.code = oom ? Code::E_HOST_OOM : Code::E_IO;
    err.message = path + ": cannot map the file (" + std::to_string(size) + " bytes): " + std::strerror(errno) +
                  (oom ? " (with vm.overcommit_memory=2 a writable private mapping counts in full against the commit limit: load without --mmap)" : "");
    return nullptr;  // out (and the region, once set) unmapped by ~Loaded
  };
  // MAP_PRIVATE: writes to a tensor copy its page and never reach the file.
  // MAP_NORESERVE: those copies are not charged up front against overcommit, except under
  // strict overcommit (vm.overcommit_memory=2), which charges a writable private mapping
  // in full: there a mapping larger than what is left to commit fails with ENOMEM.
  if (files.size() == 1 && files[0].at == 0 && files[0].size == total) {
    void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, files[0].fd, 0);
    if (p == MAP_FAILED) return fail(*files[0].path, total);
    out->base = p;
  } else {
    // Several files: one region reserved (no access, no memory), each file mapped over its
    // part. The region starts at a 2 MiB boundary, so that a file placed at a multiple of
    // 2 MiB can have its page cache's large folios mapped whole (PMD-mapped), as the kernel
    // does for a single file it places itself: at 64 KiB places, mapping 1 GiB of cached
    // shards took 4x as long.
    constexpr uint64_t kAlign = 2 << 20;
    void* r = mmap(nullptr, total + kAlign, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) return fail(*files[0].path, total);
    const uintptr_t at = (reinterpret_cast<uintptr_t>(r) + kAlign - 1) & ~static_cast<uintptr_t>(kAlign - 1);
    const uint64_t head = at - reinterpret_cast<uintptr_t>(r);
    if (head) munmap(r, head);
    if (kAlign - head) munmap(reinterpret_cast<uint8_t*>(at) + total, kAlign - head);
    void* p = reinterpret_cast<void*>(at);
    out->base = p;
    for (const MapIn& f : files) {
      if (!f.size) continue;
      if (mmap(static_cast<uint8_t*>(p) + f.at, f.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE | MAP_FIXED, f.fd, 0) == MAP_FAILED) return fail(*f.path, f.size);
    }
  }
  for (const MapIn& f : files) out->stats.mappedBytes += f.size;
  return out.release();
}

Loaded* allocate(int device, uint64_t total, Error& err, bool hugePages) {
  auto out = std::make_unique<Loaded>();
  out->device = device;
  out->size = total;
  if (device >= 0) {
    if (total) {
      Error e = dev::alloc(device, total, &out->dbase);
      if (!e.ok()) {
        err = e;
        err.message += " (the tensor memory, " + std::to_string(total) + " bytes)";
        return nullptr;
      }
    }
    out->stats.deviceBytes = total;
  } else if (total) {
    void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      err.code = Code::E_HOST_OOM;
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
  if ((device >= 0 ? !dbase : !base) && len) {
    err.code = Code::E_USAGE;
    err.message = "the loaded model was closed";
    return err;
  }
  if (offset > size || len > size - offset) {
    err.code = Code::E_USAGE;
    err.message = in ? "write past the end of the allocation" : "read past the end of the loaded data";
    return err;
  }
  if (!len) return err;
  if (device >= 0) return in ? dev::copyToDevice(device, dbase + offset, host, len) : dev::copyToHost(device, host, dbase + offset, len);
  uint8_t* at = static_cast<uint8_t*>(base) + offset;
  if (in) std::memcpy(at, host, len);
  else std::memcpy(host, at, len);
  return err;
}

Error Loaded::write(uint64_t offset, const void* in, uint64_t len) { return transfer(offset, len, const_cast<void*>(in), true); }

Error Loaded::read(uint64_t offset, uint64_t len, void* out) const { return transfer(offset, len, out, false); }

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
  const dev::BackendInfo& d = dev::info();
  info.backend = d.backend;
  info.driverVersion = d.driverVersion;
  info.deviceCount = static_cast<int>(d.devices.size());
  info.cudaError = d.why;
  for (const auto& x : d.devices) info.devices.push_back({x.index, x.name, x.totalMemory, x.pciBusId});
  return info;
}

double probeH2D(int device, uint64_t bytes, int iters, Error& err) { return dev::probeH2D(device, bytes, iters, err); }

}  // namespace tz
