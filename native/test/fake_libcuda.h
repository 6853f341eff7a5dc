// The control side of the fake CUDA driver (fake_libcuda.cc), which the native tests load in
// place of libcuda.so.1 through TENSORIZE_LIBCUDA. The test reaches these functions with
// dlopen of the same path (the same loaded instance) and dlsym.
#pragma once

extern "C" {

struct FakeCuCounts {
  int contexts;      // primary-context references held (retains minus releases)
  int allocations;   // live cuMemAlloc_v2 blocks
  int streams;       // live streams
  int events;        // live events
  int pinned;        // live registrations and cuMemHostAlloc blocks
  long pinnedCopies;    // host-to-device copies whose source lay in pinned memory
  long pageableCopies;  // ... and those whose source did not
  long hostFns;         // host functions run
  long violations;      // driver calls made from inside a host function (CUDA forbids them)
};

// Start afresh: `devices` devices of `capacity` bytes each, cuDriverGetVersion answering
// `driverVersion`, cuInit answering `initResult`. Clears the log, the faults and the counts.
// Memory still allocated is dropped (the tests free everything first and check that they did).
typedef void (*FakeCuResetFn)(int devices, int driverVersion, int initResult, unsigned long long capacity);
// The nth call (1-based, counted from now) of `symbol` fails with `result` and does nothing;
// nth = 0: every call from now on.
typedef void (*FakeCuFailFn)(const char* symbol, int result, int nth);
// The log: one line per driver call but cuCtxGetCurrent and the error-string calls, as
// "<symbol> dev=<device of the current context, or -> <arguments> -> <result>".
typedef int (*FakeCuLogSizeFn)();
typedef const char* (*FakeCuLogLineFn)(int i);  // valid until the next call into the fake
// How many times `symbol` was called (all calls, logged or not).
typedef int (*FakeCuCallsFn)(const char* symbol);
typedef void (*FakeCuCountsFn)(FakeCuCounts* out);

}
