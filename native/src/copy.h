// The copy engine behind serialize, verify and export: each job reads byte ranges of an
// input file (concatenated in order), optionally byte-swaps them, computes CRC32 and
// SHA-256 over a prefix (the tensor header) followed by the data, and optionally writes the
// data at an offset of the output file.
//
// Each thread drives two jobs at once ("lanes"), in chunks (1 MiB by default): it reads a
// chunk for both, hashes both with the interleaved two-stream SHA-256, folds the CRC32s and
// queues both chunks for the one writer thread (concurrent buffered writes to one file
// serialize on its inode lock). Memory use is (4 x threads + 2) chunks.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io.h"

namespace tz {

struct CopyJob {
  uint32_t file = 0;  // index into CopySpec::inputs
  std::vector<uint64_t> ranges;  // (offset, length) pairs
  int swap = 1;       // byte-swap groups of this many bytes (1, 2, 4 or 8)
  int64_t dst = -1;   // output offset, or -1 to only hash
  std::string prefix;
  bool crc = true, sha = true;
  // results
  uint32_t crc32 = 0;
  uint8_t sha256[32] = {};
  uint64_t bytes = 0;
};

struct CopySpec {
  std::vector<std::string> inputs;
  std::string output;  // empty when no job writes
  // Instead of an output file: jobs' dst are offsets into this memory, and the data is read
  // straight into it (no buffers, no writer thread). Every job must then have a dst.
  uint8_t* memory = nullptr;
  std::vector<CopyJob> jobs;
  int threads = 2;
  uint64_t chunk = 1 << 20;
  bool largestFirst = true;                   // else in the given order
  Code shortReadCode = Code::E_IO;         // the code of a short read
  std::function<void(size_t job)> onJobDone;  // called on worker threads
  std::atomic<uint64_t>* progress = nullptr;
  std::atomic<bool>* cancel = nullptr;
};

// Runs every job; false with err set (err.tensor = the job index) on the first failure.
bool runCopy(CopySpec& spec, Error& err);

}  // namespace tz
