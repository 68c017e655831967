#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>

#include "SluiceBenchAllocations.h"

typedef int (*mallctl_function)(const char *, void *, size_t *, void *, size_t);

static int64_t read_counter(mallctl_function mallctl, const char *name) {
    uint64_t value = 0;
    size_t length = sizeof(value);
    if (mallctl(name, &value, &length, NULL, 0) != 0) return -1;
    return (int64_t)value;
}

int64_t sluice_bench_allocation_requests(void) {
    mallctl_function mallctl = (mallctl_function)dlsym(RTLD_DEFAULT, "mallctl");
    if (mallctl == NULL) return -1;
    // Statistics are a snapshot taken when the epoch advances; the calling thread's cache is flushed first so that
    // its requests are counted.
    mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    uint64_t epoch = 1;
    size_t length = sizeof(epoch);
    mallctl("epoch", &epoch, &length, &epoch, length);
    int64_t small = read_counter(mallctl, "stats.arenas.4096.small.nrequests");
    int64_t large = read_counter(mallctl, "stats.arenas.4096.large.nrequests");
    if (small < 0 || large < 0) return -1;
    return small + large;
}
