// Host memory a GPU copies from by DMA: the staging of the loader's ring and of the
// fetcher's receive slots. Anonymous pages, prefaulted, then pinned (dev::hostRegister):
// public measurements put a per-load pinned allocation of a few hundred MiB at hundreds of
// ms, and registration below it (docs/benchmarks.md). TENSORIZE_PINNED=alloc allocates
// pinned memory instead (dev::hostAlloc).
#pragma once
#include <sys/mman.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "config.h"
#include "device.h"
#include "io.h"

namespace tz {

class PinnedHost {
 public:
  PinnedHost() = default;
  PinnedHost(const PinnedHost&) = delete;
  PinnedHost& operator=(const PinnedHost&) = delete;
  ~PinnedHost() { (void)release(); }

  // `what` names the memory in the error (e.g. "the pinned ring"); false with err set.
  bool allocate(uint64_t bytes, const char* what, Error& err) {
    release();
    hostAlloc_ = config().pinnedAlloc;  // TENSORIZE_PINNED=alloc
    Error e;
    if (hostAlloc_) {
      void* p = nullptr;
      e = dev::hostAlloc(bytes, &p);
      if (e.ok()) p_ = static_cast<uint8_t*>(p);
    } else {
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) {
        err.code = Code::E_HOST_OOM;
        err.message = "cannot map " + std::to_string(bytes) + " bytes of host memory for " + what + ": " + std::strerror(errno);
        return false;
      }
      prefault(p, bytes);
      e = dev::hostRegister(p, bytes);
      if (e.ok()) p_ = static_cast<uint8_t*>(p);
      else munmap(p, bytes);
    }
    if (!e.ok()) {
      err = e;
      err.message += " (" + std::string(what) + ", " + std::to_string(bytes) + " bytes)";
      return false;
    }
    bytes_ = bytes;
    return true;
  }

  // Only once no copy reads it any more (its streams synced). The memory is given back even
  // when the driver refuses to unpin it (a broken context); the refusal is returned.
  Error release() {
    if (!p_) return {};
    Error e;
    if (hostAlloc_) {
      e = dev::hostFree(p_);
    } else {
      e = dev::hostUnregister(p_);
      munmap(p_, bytes_);
    }
    p_ = nullptr;
    return e;
  }

  uint8_t* data() const { return p_; }
  bool pinned() const { return p_ != nullptr; }

 private:
  uint8_t* p_ = nullptr;
  uint64_t bytes_ = 0;
  bool hostAlloc_ = false;
};

}  // namespace tz
