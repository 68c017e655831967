#ifndef SLUICE_BENCH_BRIDGE_H
#define SLUICE_BENCH_BRIDGE_H

#include <stddef.h>

/// The at-least-once topic-to-topic bridge written directly on librdkafka, the baseline of `sluice-bench streams`:
/// one consumer (group `group`, subscribed to `input`) and one idempotent producer, on the calling thread. Each
/// consumed message is produced to `output` (same key and value); a partition's offset is committed only once the
/// delivery reports of every message below it arrived (tracked per partition in consumption order), asynchronously,
/// every `commit_every` deliveries and at the end. Returns the seconds from the first message consumed to the last
/// commit of all `count` messages, or a negative number with a message in `errbuf`. Blocks the calling thread.
double sluice_baseline_bridge(const char *bootstrap, const char *input, const char *output, const char *group,
                              long count, int commit_every, char *errbuf, size_t errlen);

#endif
