#ifndef SLUICE_BENCH_BASELINE_H
#define SLUICE_BENCH_BASELINE_H

#include <stddef.h>

/// Raw-librdkafka baselines for `sluice-bench kafka`: the same work as SluiceKafka's producer and consumer,
/// written directly against librdkafka's C API with the same settings as Sluice's configuration defaults.
/// Both functions block the calling thread (call them from a Dispatch queue or a Thread, never from a Swift
/// cooperative thread), create and destroy their own client, and report failures as a negative return value
/// with a message in `errbuf`.

/// Produces `count` messages of `size` bytes (payload only, null key, partitioner's choice) to `topic` with
/// `rd_kafka_produce(..., RD_KAFKA_MSG_F_COPY, ...)`, polling for room whenever librdkafka's queue is full,
/// counting delivery reports in a `dr_msg_cb`, and flushing at the end.
///
/// Settings: KafkaProducerConfiguration's defaults (enable.idempotence=true, linger.ms=5, acks=all,
/// queue.buffering.max.messages=100000, queue.buffering.max.kbytes=1048576, message.timeout.ms=30000, ...).
///
/// @returns the seconds from the first produce call to the last delivery report, or a negative number on error
///          (any message not delivered is an error).
double sluice_baseline_produce(const char *bootstrap, const char *topic, long count, int size,
                               char *errbuf, size_t errlen);

/// Joins consumer group `group`, subscribes to `topic` and reads `count` messages with
/// `rd_kafka_consume_batch_queue` (batches of up to 1024), touching each payload (summing lengths and first
/// bytes) and destroying each message.
///
/// Settings: KafkaConsumerConfiguration's defaults (auto.offset.reset=earliest, enable.auto.commit=false,
/// enable.auto.offset.store=false, partition.assignment.strategy=cooperative-sticky,
/// queued.max.messages.kbytes=4096, queued.min.messages=10000) with session.timeout.ms=6000.
///
/// @param payload_bytes if not NULL, receives the sum of the payload lengths read.
/// @param fetch_queue_backoff_ms `fetch.queue.backoff.ms`, or negative for librdkafka's default (1000 ms).
/// @param stall_timeout_ms fail when no message arrives for this long (the group join included).
/// @returns the seconds from the first message received to the last (the group join is excluded), or a negative
///          number on error.
double sluice_baseline_consume(const char *bootstrap, const char *topic, const char *group, long count,
                               long long *payload_bytes, int fetch_queue_backoff_ms, int stall_timeout_ms,
                               char *errbuf, size_t errlen);

#include "SluiceBenchBridge.h"
#include "SluiceBenchAllocations.h"

/// The librdkafka configuration the baselines give their consumer (`consumer` non-zero, group `group`) or producer,
/// as an `rd_kafka_conf_t *` the caller destroys with `rd_kafka_conf_destroy`; NULL with the reason in `errbuf`.
/// For the test that checks the baselines against Sluice's own defaults.
void *sluice_baseline_conf(int consumer, const char *bootstrap, const char *group, char *errbuf, size_t errlen);

#endif
