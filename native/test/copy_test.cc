// Hashes and the copy engine: SHA-256 against FIPS 180 test vectors and against itself
// split at random points and interleaved two at a time; CRC32 against a bit-at-a-time
// reference at every length and alignment near the folding thresholds; random copy jobs
// (ranges, prefixes, byte swaps, hash-only jobs) checked byte for byte; short reads,
// bad jobs and cancellation.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../src/copy.h"
#include "../src/hash.h"
#include "check.h"

namespace {

uint32_t crcBitwise(uint32_t crc, const uint8_t* p, size_t n) {
  crc = ~crc;
  while (n--) {
    crc ^= *p++;
    for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
  }
  return ~crc;
}

std::string shaHex(const void* p, size_t n) {
  tz::Sha256 s;
  s.update(p, n);
  uint8_t d[32];
  s.final(d);
  return tz::hex(d, 32);
}

void hashTests() {
  std::printf("hashes: %s\n", tz::hashImplementation());
  CHECK(shaHex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256('')");
  CHECK(shaHex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256('abc')");
  const char* m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(shaHex(m448, strlen(m448)) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", "sha256(448-bit message)");
  std::vector<uint8_t> million(1000000, 'a');
  CHECK(shaHex(million.data(), million.size()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", "sha256(a x 1e6)");

  std::mt19937_64 rng(7);
  std::vector<uint8_t> data(300000);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  bool splits = true, x2 = true;
  for (int round = 0; round < 200; round++) {
    size_t n = rng() % data.size();
    size_t off = rng() % (data.size() - n + 1);
    std::string want = shaHex(data.data() + off, n);
    tz::Sha256 s;
    for (size_t done = 0; done < n;) {
      size_t k = std::min<size_t>(n - done, rng() % 3 ? rng() % 200 : rng() % 70000);
      s.update(data.data() + off + done, k);
      done += k;
    }
    uint8_t d[32];
    s.final(d);
    splits = splits && tz::hex(d, 32) == want;
    // Two streams with different prefixes (so their partial blocks differ), interleaved.
    size_t pa = rng() % 130, pb = rng() % 130, len = rng() % 50000;
    if (pa + len > data.size() || pb + len + 77 > data.size()) continue;
    tz::Sha256 a, b;
    a.update(data.data(), pa);
    b.update(data.data() + 77, pb);
    tz::sha256UpdateX2(a, data.data() + pa, b, data.data() + 77 + pb, len);
    uint8_t da[32], db[32];
    a.final(da);
    b.final(db);
    x2 = x2 && tz::hex(da, 32) == shaHex(data.data(), pa + len) && tz::hex(db, 32) == shaHex(data.data() + 77, pb + len);
  }
  CHECK(splits, "sha256 of random splits equals one-shot");
  CHECK(x2, "two interleaved sha256 streams equal one-shot");

  bool crcOk = true;
  for (size_t n = 0; n < 600; n++)
    for (size_t off = 0; off < 4; off++) {
      uint32_t init = static_cast<uint32_t>(rng());
      crcOk = crcOk && tz::crc32(init, data.data() + off, n) == crcBitwise(init, data.data() + off, n);
    }
  CHECK(crcOk, "crc32 equals the bitwise reference at lengths 0-599");
  CHECK(tz::crc32(0, data.data(), data.size()) == crcBitwise(0, data.data(), data.size()), "crc32 of 300000 bytes");
  uint32_t c = 0;
  for (size_t done = 0; done < data.size();) {
    size_t k = std::min<size_t>(data.size() - done, rng() % 5000);
    c = tz::crc32(c, data.data() + done, k);
    done += k;
  }
  CHECK(c == crcBitwise(0, data.data(), data.size()), "chained crc32 equals one-shot");
  CHECK(tz::crc32(0, "123456789", 9) == 0xCBF43926u, "crc32 check value");
}

void copyTests() {
  char in[] = "/tmp/tensorize-copy-in-XXXXXX", out[] = "/tmp/tensorize-copy-out-XXXXXX";
  int fi = mkstemp(in), fo = mkstemp(out);
  if (fi < 0 || fo < 0) {
    CHECK(false, "temp files");
    return;
  }
  std::mt19937_64 rng(11);
  std::vector<uint8_t> file(2 * 1024 * 1024 + 77);
  for (auto& b : file) b = static_cast<uint8_t>(rng());
  CHECK(write(fi, file.data(), file.size()) == static_cast<ssize_t>(file.size()), "write input");
  close(fi);

  for (int round = 0; round < 40; round++) {
    tz::CopySpec s;
    s.inputs = {in};
    s.output = out;
    s.threads = 1 + rng() % 3;
    s.chunk = rng() % 2 ? 4096 : (64 << 10);
    int njobs = 1 + rng() % 12;
    uint64_t outPos = 0;
    std::vector<std::vector<uint8_t>> expect;
    for (int j = 0; j < njobs; j++) {
      tz::CopyJob job;
      std::vector<uint8_t> bytes;
      int nr = rng() % 4;
      for (int r = 0; r < nr; r++) {
        uint64_t len = rng() % 3 ? rng() % 200000 : rng() % 50;
        uint64_t off = rng() % (file.size() - len);
        job.ranges.push_back(off);
        job.ranges.push_back(len);
        bytes.insert(bytes.end(), file.begin() + off, file.begin() + off + len);
      }
      job.swap = (int[]){1, 2, 4, 8}[rng() % 4];
      uint64_t whole = bytes.size() / job.swap * job.swap;
      for (uint64_t i = 0; i < whole; i += job.swap) std::reverse(bytes.begin() + i, bytes.begin() + i + job.swap);
      job.prefix.assign(rng() % 300, 'h');
      for (auto& ch : job.prefix) ch = static_cast<char>(rng());
      if (rng() % 4) {
        job.dst = static_cast<int64_t>(outPos);
        outPos += bytes.size() + rng() % 100;
      }
      job.crc = rng() % 5 != 0;
      job.sha = rng() % 5 != 0;
      s.jobs.push_back(job);
      expect.push_back(std::move(bytes));
    }
    CHECK(ftruncate(fo, 0) == 0 && ftruncate(fo, static_cast<off_t>(outPos)) == 0, "truncate output");
    std::atomic<uint64_t> progress{0};
    s.progress = &progress;
    tz::Error err;
    bool ok = tz::runCopy(s, err);
    std::string what = "copy round " + std::to_string(round);
    CHECK(ok, (what + ": " + tz::codeName(err.code) + " " + err.message).c_str());
    if (!ok) continue;
    bool same = true, hashes = true;
    uint64_t total = 0;
    for (size_t j = 0; j < s.jobs.size(); j++) {
      const tz::CopyJob& job = s.jobs[j];
      const std::vector<uint8_t>& b = expect[j];
      total += b.size();
      std::vector<uint8_t> all(job.prefix.begin(), job.prefix.end());
      all.insert(all.end(), b.begin(), b.end());
      if (job.crc) hashes = hashes && job.crc32 == crcBitwise(0, all.data(), all.size());
      if (job.sha) hashes = hashes && tz::hex(job.sha256, 32) == shaHex(all.data(), all.size());
      hashes = hashes && job.bytes == b.size();
      if (job.dst >= 0) {
        std::vector<uint8_t> back(b.size());
        same = same && pread(fo, back.data(), back.size(), job.dst) == static_cast<ssize_t>(back.size()) && back == b;
      }
    }
    CHECK(same, (what + ": output bytes").c_str());
    CHECK(hashes, (what + ": hashes").c_str());
    CHECK(progress.load() == total, (what + ": progress").c_str());
  }

  {
    tz::CopySpec s;
    s.inputs = {in};
    tz::CopyJob ok, past;
    ok.ranges = {0, 1000};
    past.ranges = {file.size() - 10, 100};
    s.jobs = {ok, past};
    tz::Error err;
    CHECK(!tz::runCopy(s, err) && err.code == Code::E_IO && err.tensor == 1 && err.message.find("short read") != std::string::npos, "a range past the end is a short read naming the job");
  }
  {
    tz::CopySpec s;
    s.inputs = {"/nonexistent/input"};
    s.jobs.resize(1);
    tz::Error err;
    CHECK(!tz::runCopy(s, err) && err.code == Code::E_NOT_FOUND, "a missing input");
  }
  {
    tz::CopySpec s;
    s.inputs = {in};
    s.jobs.resize(1);
    s.jobs[0].dst = 0;  // no output file
    tz::Error err;
    CHECK(!tz::runCopy(s, err) && err.code == Code::E_USAGE, "a job writing without an output is refused");
  }
  {
    tz::CopySpec s;
    s.inputs = {in};
    s.jobs.resize(3);
    for (auto& j : s.jobs) j.ranges = {0, file.size()};
    std::atomic<bool> cancel{true};
    s.cancel = &cancel;
    tz::Error err;
    CHECK(!tz::runCopy(s, err) && err.code == Code::E_INTERRUPTED, "a cancelled copy is E_INTERRUPTED");
  }
  close(fo);
  unlink(in);
  unlink(out);
}

}  // namespace

void hashAndCopyTests() {
  hashTests();
  copyTests();
}
