#ifndef SLUICE_CRDKAFKA_H
#define SLUICE_CRDKAFKA_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdint.h>
#include <stddef.h>

/// Produces one message (payload and key copied) without the variadic `rd_kafka_producev`, which Swift cannot call:
/// through `rd_kafka_produce` when there are no headers and no timestamp, else through `rd_kafka_produceva`.
/// `headers` (may be NULL) is owned by librdkafka on success and must be destroyed by the caller on failure.
/// `timestamp` of 0 means "now". `partition` of RD_KAFKA_PARTITION_UA lets the partitioner choose.
rd_kafka_resp_err_t sluice_produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int32_t partition,
                                   const void *key, size_t key_len, int has_key,
                                   const void *value, size_t value_len, int has_value,
                                   rd_kafka_headers_t *headers, int64_t timestamp, void *opaque);

/// The consumer-group rebalance protocol in use: 1 for COOPERATIVE, 0 for EAGER or none.
int sluice_is_cooperative(rd_kafka_t *rk);

#endif
