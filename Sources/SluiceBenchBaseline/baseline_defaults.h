// Sluice's client defaults for the C baselines, in one place so that every baseline runs with the same librdkafka
// properties as the Sluice side it is compared with (internal to this target).
#ifndef SLUICE_BASELINE_DEFAULTS_H
#define SLUICE_BASELINE_DEFAULTS_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/// A configuration holding KafkaClientConfiguration + KafkaProducerConfiguration's defaults, property for property;
/// NULL with librdkafka's message in `errbuf` if one is rejected.
rd_kafka_conf_t *baseline_producer_conf(const char *bootstrap, char *errbuf, size_t errlen);

/// A configuration holding KafkaClientConfiguration + KafkaConsumerConfiguration's defaults, property for property,
/// with the session timeout the benchmarks use (6 s, as Sluice's side sets it); NULL with librdkafka's message in
/// `errbuf` if one is rejected.
rd_kafka_conf_t *baseline_consumer_conf(const char *bootstrap, const char *group, char *errbuf, size_t errlen);

/// Sets every property, failing with librdkafka's message (in `errbuf`) on the first one it rejects: 0 or -1.
int baseline_conf_set_all(rd_kafka_conf_t *conf, const char *const properties[][2], size_t n, char *errbuf,
                          size_t errlen);

#endif
