#pragma once
#include <cstdio>

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
