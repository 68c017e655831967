#include "baseline_defaults.h"
#include "SluiceBenchBaseline.h"

#include <stdio.h>

int baseline_conf_set_all(rd_kafka_conf_t *conf, const char *const properties[][2], size_t n, char *errbuf,
                          size_t errlen) {
    char reason[512];
    for (size_t i = 0; i < n; i++) {
        if (rd_kafka_conf_set(conf, properties[i][0], properties[i][1], reason, sizeof reason) != RD_KAFKA_CONF_OK) {
            if (errbuf && errlen > 0) snprintf(errbuf, errlen, "property %s=%s: %s", properties[i][0], properties[i][1], reason);
            return -1;
        }
    }
    return 0;
}

/// A new configuration with `properties` set, or NULL (destroyed) if one is rejected.
static rd_kafka_conf_t *conf_with(const char *const properties[][2], size_t n, char *errbuf, size_t errlen) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (baseline_conf_set_all(conf, properties, n, errbuf, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

rd_kafka_conf_t *baseline_producer_conf(const char *bootstrap, char *errbuf, size_t errlen) {
    const char *const properties[][2] = {
        {"bootstrap.servers", bootstrap},
        {"client.id", "sluice"},
        {"security.protocol", "plaintext"},
        {"enable.idempotence", "true"},
        {"linger.ms", "5"},
        {"message.timeout.ms", "30000"},
        {"queue.buffering.max.messages", "100000"},
        {"queue.buffering.max.kbytes", "1048576"},
        {"compression.codec", "none"},
        {"partitioner", "consistent_random"},
        {"acks", "all"},
        {"allow.auto.create.topics", "false"},
        {"topic.metadata.propagation.max.ms", "5000"},
    };
    return conf_with(properties, sizeof properties / sizeof properties[0], errbuf, errlen);
}

rd_kafka_conf_t *baseline_consumer_conf(const char *bootstrap, const char *group, char *errbuf, size_t errlen) {
    const char *const properties[][2] = {
        {"bootstrap.servers", bootstrap},
        {"client.id", "sluice"},
        {"security.protocol", "plaintext"},
        {"group.id", group},
        {"auto.offset.reset", "earliest"},
        {"session.timeout.ms", "6000"},
        {"partition.assignment.strategy", "cooperative-sticky"},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"queued.max.messages.kbytes", "4096"},
        {"queued.min.messages", "10000"},
        {"fetch.queue.backoff.ms", "10"},
        {"fetch.wait.max.ms", "50"},
    };
    return conf_with(properties, sizeof properties / sizeof properties[0], errbuf, errlen);
}

void *sluice_baseline_conf(int consumer, const char *bootstrap, const char *group, char *errbuf, size_t errlen) {
    return consumer ? baseline_consumer_conf(bootstrap, group, errbuf, errlen)
                    : baseline_producer_conf(bootstrap, errbuf, errlen);
}
