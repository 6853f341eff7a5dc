#pragma once
#include <cstdio>
#include <initializer_list>
#include <utility>

#include "../src/config.h"
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
void fetchCryptTests();
void cacheTests();
void deviceCudaTests();
void deviceSimTests();
void deviceSimForkTests();
void streamCoreTests();
void pieceHasherTests();
void configTests();
void loaderFilesTests();
void hashGroupsTests();
void cryptTests();
void copyCryptTests();
void loaderCryptTests();

// The settings that these variables, and no others, give (tz::readConfig over them): how
// tests vary TENSORIZE_* without touching the environment (config_test.cc).
tz::Config configWith(std::initializer_list<std::pair<const char*, const char*>> vars);
