// Host memory a GPU copies from by DMA: the staging of the loader's ring and of the
// fetcher's receive slots. Anonymous pages, prefaulted, then cudaHostRegister'ed: public
// measurements put a per-load cudaHostAlloc of a few hundred MiB at hundreds of ms, and
// register below it (docs/benchmarks.md). TENSORIZE_PINNED=alloc uses cudaHostAlloc instead.
#pragma once
#ifdef TENSORIZE_HAVE_CUDA
#include <sys/mman.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cuda_errors.h"
#include "io.h"

namespace tz {

class PinnedHost {
 public:
  PinnedHost() = default;
  PinnedHost(const PinnedHost&) = delete;
  PinnedHost& operator=(const PinnedHost&) = delete;
  ~PinnedHost() { release(); }

  // `what` names the memory in the error (e.g. "the pinned ring"); false with err set.
  bool allocate(uint64_t bytes, const char* what, Error& err) {
    release();
    const char* how = getenv("TENSORIZE_PINNED");
    hostAlloc_ = how && std::string(how) == "alloc";
    cudaError_t e;
    if (hostAlloc_) {
      e = cudaHostAlloc(reinterpret_cast<void**>(&p_), bytes, cudaHostAllocDefault);
      if (e != cudaSuccess) p_ = nullptr;
    } else {
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) {
        err.code = "E_HOST_OOM";
        err.message = "cannot map " + std::to_string(bytes) + " bytes of host memory for " + what + ": " + std::strerror(errno);
        return false;
      }
      prefault(p, bytes);
      e = cudaHostRegister(p, bytes, cudaHostRegisterDefault);
      if (e == cudaSuccess) p_ = static_cast<uint8_t*>(p);
      else munmap(p, bytes);
    }
    if (e != cudaSuccess) {
      err.code = e == cudaErrorMemoryAllocation ? "E_HOST_OOM" : cudaCode(e);
      err.message = cudaMsg(e, (std::string(hostAlloc_ ? "cudaHostAlloc" : "cudaHostRegister") + " (" + what + ", " + std::to_string(bytes) + " bytes)").c_str());
      return false;
    }
    bytes_ = bytes;
    return true;
  }

  // Only once no copy reads it any more.
  void release() {
    if (!p_) return;
    if (hostAlloc_) {
      cudaFreeHost(p_);
    } else {
      cudaHostUnregister(p_);
      munmap(p_, bytes_);
    }
    p_ = nullptr;
  }

  // Never free it: copies may still read it (a stream that did not drain, a broken context).
  void abandon() { p_ = nullptr; }

  uint8_t* data() const { return p_; }
  bool pinned() const { return p_ != nullptr; }

 private:
  uint8_t* p_ = nullptr;
  uint64_t bytes_ = 0;
  bool hostAlloc_ = false;
};

}  // namespace tz
#endif
