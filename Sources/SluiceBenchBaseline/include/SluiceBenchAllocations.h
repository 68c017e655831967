#ifndef SLUICE_BENCH_ALLOCATIONS_H
#define SLUICE_BENCH_ALLOCATIONS_H

#include <stdint.h>

/// The process's allocation requests so far (small and large, every arena, thread caches included as far as
/// jemalloc has merged their counts), from jemalloc's statistics: a count that does not depend on the machine's
/// speed, for comparing the allocations per message of two builds. -1 when the process does not allocate through
/// jemalloc (`mallctl` is looked up at run time, so nothing links against it).
int64_t sluice_bench_allocation_requests(void);

#endif
