// The at-least-once bridge baseline for `sluice-bench streams`. See SluiceBenchBridge.h.
#define _POSIX_C_SOURCE 200809L
#include "SluiceBenchBridge.h"
#include "baseline_defaults.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double bridge_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum { max_partitions = 64 };

/// One partition's offsets in consumption order, with whether each was delivered downstream: a ring buffer.
struct partition_window {
    long long *offsets;
    unsigned char *delivered;
    long capacity, head, tail; // entries [head, tail)
    long long committable;     // next offset to commit (all below delivered), -1 when none yet
    long long committed;
};

struct bridge_state {
    struct partition_window windows[max_partitions];
    long delivered, failed, since_commit;
    char topic[256];
};

/// Per-message opaque: partition and slot in its window, packed.
static void *pack(int partition, long slot) { return (void *)(((uintptr_t)slot << 8) | (uintptr_t)partition); }

static void bridge_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque) {
    (void)rk;
    struct bridge_state *state = opaque;
    uintptr_t packed = (uintptr_t)message->_private;
    int partition = (int)(packed & 0xff);
    long slot = (long)(packed >> 8);
    if (message->err) {
        state->failed++;
        return;
    }
    struct partition_window *window = &state->windows[partition];
    window->delivered[slot % window->capacity] = 1;
    while (window->head < window->tail && window->delivered[window->head % window->capacity]) {
        window->committable = window->offsets[window->head % window->capacity] + 1;
        window->delivered[window->head % window->capacity] = 0;
        window->head++;
    }
    state->delivered++;
    state->since_commit++;
}

static void commit_delivered(rd_kafka_t *consumer, struct bridge_state *state) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(max_partitions);
    for (int partition = 0; partition < max_partitions; partition++) {
        struct partition_window *window = &state->windows[partition];
        if (window->capacity && window->committable > window->committed) {
            rd_kafka_topic_partition_list_add(list, state->topic, partition)->offset = window->committable;
            window->committed = window->committable;
        }
    }
    if (list->cnt > 0) rd_kafka_commit(consumer, list, 1 /* async */);
    rd_kafka_topic_partition_list_destroy(list);
    state->since_commit = 0;
}

double sluice_baseline_bridge(const char *bootstrap, const char *input, const char *output, const char *group,
                              long count, int commit_every, char *errbuf, size_t errlen) {
    static struct bridge_state state;
    memset(&state, 0, sizeof state);
    snprintf(state.topic, sizeof state.topic, "%s", input);
    long window_capacity = count + 1;
    for (int partition = 0; partition < max_partitions; partition++) {
        state.windows[partition].committable = -1;
        state.windows[partition].committed = -1;
    }
    char reason[512];

    // Producer and consumer: Sluice's defaults, as the Sluice bridge runs them.
    rd_kafka_conf_t *producer_conf = baseline_producer_conf(bootstrap, errbuf, errlen);
    if (!producer_conf) return -1;
    rd_kafka_conf_set_opaque(producer_conf, &state);
    rd_kafka_conf_set_dr_msg_cb(producer_conf, bridge_dr_cb);
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, producer_conf, reason, sizeof reason);
    if (!producer) {
        snprintf(errbuf, errlen, "producer: %s", reason);
        return -1;
    }
    rd_kafka_topic_t *output_topic = rd_kafka_topic_new(producer, output, NULL);

    rd_kafka_conf_t *consumer_conf = baseline_consumer_conf(bootstrap, group, errbuf, errlen);
    if (!consumer_conf) return -1;
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, consumer_conf, reason, sizeof reason);
    if (!consumer) {
        snprintf(errbuf, errlen, "consumer: %s", reason);
        return -1;
    }
    rd_kafka_poll_set_consumer(consumer);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, input, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    rd_kafka_queue_t *queue = rd_kafka_queue_get_consumer(consumer);

    enum { batch_size = 1024 };
    rd_kafka_message_t *batch[batch_size];
    long consumed = 0;
    double first = 0, last_message = bridge_now();
    double result = -1;
    while (consumed < count) {
        ssize_t n = rd_kafka_consume_batch_queue(queue, 100, batch, batch_size);
        rd_kafka_poll(producer, 0);
        if (state.since_commit >= commit_every) commit_delivered(consumer, &state);
        if (n <= 0) {
            if (bridge_now() - last_message > 30) {
                snprintf(errbuf, errlen, "no message for 30 s after %ld", consumed);
                goto done;
            }
            continue;
        }
        last_message = bridge_now();
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *message = batch[i];
            if (message->err) {
                rd_kafka_message_destroy(message);
                continue;
            }
            if (first == 0) first = bridge_now();
            int partition = message->partition;
            struct partition_window *window = &state.windows[partition];
            if (!window->capacity) {
                window->capacity = window_capacity;
                window->offsets = calloc((size_t)window_capacity, sizeof(long long));
                window->delivered = calloc((size_t)window_capacity, 1);
            }
            long slot = window->tail++;
            window->offsets[slot % window->capacity] = message->offset;
            while (rd_kafka_produce(output_topic, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, message->payload,
                                    message->len, message->key, message->key_len, pack(partition, slot)) == -1) {
                if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                    snprintf(errbuf, errlen, "produce: %s", rd_kafka_err2str(rd_kafka_last_error()));
                    rd_kafka_message_destroy(message);
                    goto done;
                }
                rd_kafka_poll(producer, 1);
            }
            consumed++;
            rd_kafka_message_destroy(message);
        }
    }
    while (state.delivered + state.failed < count) rd_kafka_poll(producer, 10);
    if (state.failed) {
        snprintf(errbuf, errlen, "%ld deliveries failed", state.failed);
        goto done;
    }
    commit_delivered(consumer, &state);
    rd_kafka_commit(consumer, NULL, 0); // wait for the outstanding async commits to be flushed
    result = bridge_now() - first;
done:
    rd_kafka_queue_destroy(queue);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    rd_kafka_topic_destroy(output_topic);
    rd_kafka_flush(producer, 10000);
    rd_kafka_destroy(producer);
    for (int partition = 0; partition < max_partitions; partition++) {
        free(state.windows[partition].offsets);
        free(state.windows[partition].delivered);
    }
    return result;
}
