// jemalloc's options, compiled into Sluice's executables only (the targets that link jemalloc in Package.swift).
// jemalloc reads this string once at start-up; a MALLOC_CONF environment variable is applied after it and can
// override any option.
//
// percpu_arena:percpu: one arena per CPU instead of one per thread. Sluice's threads hand memory to each other all
// the time (a consumer's poll thread allocates each message's key and value, a stage on the cooperative pool frees
// them), and per-CPU arenas keep those frees local to the CPU doing them. Measured on the topic-to-topic bridge
// (sluice-bench streams --only sluice-bridge, 2 cores, 3 pairs of 3 rounds): 705,000-866,000 msgs/s against
// 547,000-706,000 with jemalloc's default (docs/benchmarks.md).

#include "SluiceAllocatorConfig.h"

const char *malloc_conf = "percpu_arena:percpu";
