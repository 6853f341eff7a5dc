#pragma once
#include <cstdio>

#include "../src/errors.h"
using tz::Code;

extern int passed, failed;
#define CHECK(cond, what)                                          \
  do {                                                             \
    if (cond) {                                                    \
      passed++;                                                    \
    } else {                                                       \
      failed++;                                                    \
      std::fprintf(stderr, "FAIL %s (line %d)\n", what, __LINE__); \
    }                                                              \
  } while (0)

void hashAndCopyTests();
void fetchTests();
void cacheTests();
void deviceCudaTests();
void deviceSimTests();
void deviceSimForkTests();
void streamCoreTests();
void pieceHasherTests();
