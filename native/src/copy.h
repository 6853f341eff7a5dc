// The copy engine behind serialize, verify and export: each job reads byte ranges of an
// input file (concatenated in order), optionally byte-swaps them, computes CRC32 and
// SHA-256 over a prefix (the tensor header) followed by the data, and optionally writes the
// data at an offset of the output file.
//
// Each thread drives two jobs at once ("lanes"), in chunks (1 MiB by default): it reads a
// chunk for both, hashes both with the interleaved two-stream SHA-256, folds the CRC32s and
// queues both chunks for the one writer thread (concurrent buffered writes to one file
// serialize on its inode lock).
//
// Encrypted files (crypt.h): a job of `crypt` is decrypted in place as it is read (read ->
// open -> hash the plaintext -> write), a job of `seal` encrypted after hashing (read -> hash
// -> seal -> write the ciphertext), its MACs left in seal.items[job].macs. Such a job has one
// range and no byte swap (E_USAGE otherwise), and its reads hold whole crypt chunks:
// pieceStep(chunk, its crypt) bytes from the job's start, so one crypt chunk per read where
// the crypt chunk is bigger than `chunk`. A MAC that does not match is E_DECRYPT with
// err.tensor = the job, and stops the run like any failure.
//
// Memory use is (4 x threads + 2) buffers of B bytes, B = the longest read (`chunk`, or a
// crypt chunk above it, at most its job's length); where that would take more than a quarter
// of the machine's memory, threads + 1 buffers (E_HOST_OOM if even that is too much). None
// with `memory`.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "crypt.h"
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
  // Jobs to decrypt on the way: none, or one entry per job (Plan::check).
  crypt::Plan crypt;
  // Jobs to encrypt on the way: none, or one entry per job with its key, chunk size and first
  // nonce; runCopy sizes each entry's macs and the run fills them in (kMacBytes per chunk),
  // so that afterwards the entry says how the job's output is encrypted. A job is in crypt
  // or in seal, not both.
  crypt::Plan seal;
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
