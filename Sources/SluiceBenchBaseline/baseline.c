// Raw-librdkafka baselines measured against SluiceKafka by `sluice-bench kafka`. See SluiceBenchBaseline.h.
#define _POSIX_C_SOURCE 200809L
#include "SluiceBenchBaseline.h"
#include "baseline_defaults.h"

#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_error(char *errbuf, size_t errlen, const char *format, ...) {
    if (!errbuf || errlen == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(errbuf, errlen, format, args);
    va_end(args);
}

/// What the callbacks record; they run on the thread calling rd_kafka_poll/flush/consume, which is the
/// benchmark's own thread, so no synchronisation is needed.
struct baseline_state {
    long delivered;
    long failed;
    rd_kafka_resp_err_t first_delivery_error;
    rd_kafka_resp_err_t fatal_error;
    char fatal_reason[256];
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque) {
    (void)rk;
    struct baseline_state *state = opaque;
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        state->delivered++;
    } else {
        if (state->failed++ == 0) state->first_delivery_error = message->err;
    }
}

static void error_cb(rd_kafka_t *rk, int code, const char *reason, void *opaque) {
    struct baseline_state *state = opaque;
    if (code == RD_KAFKA_RESP_ERR__FATAL && state->fatal_error == RD_KAFKA_RESP_ERR_NO_ERROR) {
        state->fatal_error = rd_kafka_fatal_error(rk, state->fatal_reason, sizeof state->fatal_reason);
        if (state->fatal_error == RD_KAFKA_RESP_ERR_NO_ERROR) state->fatal_error = RD_KAFKA_RESP_ERR__FATAL;
    }
    (void)reason; // transient errors (a dropped connection) are retried by librdkafka, as in Sluice
}

double sluice_baseline_produce(const char *bootstrap, const char *topic, long count, int size,
                               char *errbuf, size_t errlen) {
    if (count <= 0 || size < 0) {
        set_error(errbuf, errlen, "count must be positive and size non-negative");
        return -1;
    }
    struct baseline_state state;
    memset(&state, 0, sizeof state);
    rd_kafka_conf_t *conf = baseline_producer_conf(bootstrap, errbuf, errlen);
    if (!conf) return -1;
    rd_kafka_conf_set_opaque(conf, &state);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    char reason[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, reason, sizeof reason);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        set_error(errbuf, errlen, "rd_kafka_new: %s", reason);
        return -1;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    unsigned char *payload = malloc(size > 0 ? (size_t)size : 1);
    for (int i = 0; i < size; i++) payload[i] = (unsigned char)('a' + i % 26);

    double result = -1;
    double start = now_seconds();
    for (long i = 0; i < count; i++) {
        while (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, payload, (size_t)size, NULL, 0, NULL) != 0) {
            rd_kafka_resp_err_t err = rd_kafka_last_error();
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                set_error(errbuf, errlen, "produce #%ld to %s: %s", i, topic, rd_kafka_err2str(err));
                goto done;
            }
            rd_kafka_poll(rk, 100); // wait for deliveries to free room
            if (state.fatal_error) goto fatal;
        }
        rd_kafka_poll(rk, 0); // serve delivery reports as they come, as the canonical example does
    }
    rd_kafka_resp_err_t flushed = rd_kafka_flush(rk, 60000);
    double end = now_seconds();
    if (state.fatal_error) goto fatal;
    if (flushed != RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_error(errbuf, errlen, "flush: %s (%d messages outstanding)", rd_kafka_err2str(flushed), rd_kafka_outq_len(rk));
    } else if (state.delivered != count) {
        set_error(errbuf, errlen, "%ld of %ld messages delivered, %ld failed (first error: %s)", state.delivered, count,
                  state.failed, rd_kafka_err2str(state.first_delivery_error));
    } else {
        result = end - start;
    }
    goto done;
fatal:
    set_error(errbuf, errlen, "fatal producer error: %s: %s", rd_kafka_err2str(state.fatal_error), state.fatal_reason);
done:
    free(payload);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return result;
}

double sluice_baseline_consume(const char *bootstrap, const char *topic, const char *group, long count,
                               long long *payload_bytes, int fetch_queue_backoff_ms, int stall_timeout_ms,
                               char *errbuf, size_t errlen) {
    if (count <= 0) {
        set_error(errbuf, errlen, "count must be positive");
        return -1;
    }
    struct baseline_state state;
    memset(&state, 0, sizeof state);
    rd_kafka_conf_t *conf = baseline_consumer_conf(bootstrap, group, errbuf, errlen);
    if (!conf) return -1;
    if (fetch_queue_backoff_ms >= 0) {
        char value[32];
        snprintf(value, sizeof value, "%d", fetch_queue_backoff_ms);
        const char *const backoff[][2] = {{"fetch.queue.backoff.ms", value}};
        if (baseline_conf_set_all(conf, backoff, 1, errbuf, errlen) != 0) {
            rd_kafka_conf_destroy(conf);
            return -1;
        }
    }
    rd_kafka_conf_set_opaque(conf, &state);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    char reason[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, reason, sizeof reason);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        set_error(errbuf, errlen, "rd_kafka_new: %s", reason);
        return -1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t subscribed = rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (subscribed != RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_error(errbuf, errlen, "subscribe to %s: %s", topic, rd_kafka_err2str(subscribed));
        rd_kafka_destroy(rk);
        return -1;
    }
    rd_kafka_queue_t *queue = rd_kafka_queue_get_consumer(rk);

    enum { batch_size = 1024 };
    rd_kafka_message_t *batch[batch_size];
    long received = 0;
    long long bytes = 0;
    unsigned long checksum = 0; // sums the first byte of every payload: makes sure each payload is read
    double first = 0, last = 0, last_progress = now_seconds();
    double result = -1;
    while (received < count) {
        ssize_t n = rd_kafka_consume_batch_queue(queue, 100, batch, batch_size);
        double now = now_seconds();
        if (n < 0) {
            set_error(errbuf, errlen, "consume: %s", rd_kafka_err2str(rd_kafka_last_error()));
            goto done;
        }
        long before = received;
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *message = batch[i];
            if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                received++;
                bytes += (long long)message->len;
                if (message->len > 0) checksum += ((const unsigned char *)message->payload)[0];
            } else if (message->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && state.fatal_error == RD_KAFKA_RESP_ERR_NO_ERROR) {
                fprintf(stderr, "baseline consumer: %s\n", rd_kafka_message_errstr(message));
            }
            rd_kafka_message_destroy(message);
        }
        if (received > before) {
            if (before == 0) first = now;
            last = now_seconds();
            last_progress = last;
        } else if ((now - last_progress) * 1000 > stall_timeout_ms) {
            set_error(errbuf, errlen, "no message for %d ms after %ld of %ld", stall_timeout_ms, received, count);
            goto done;
        }
        if (state.fatal_error) {
            set_error(errbuf, errlen, "fatal consumer error: %s: %s", rd_kafka_err2str(state.fatal_error), state.fatal_reason);
            goto done;
        }
    }
    result = last - first;
    if (payload_bytes) *payload_bytes = bytes;
    if (checksum == 1) fprintf(stderr, "%lu\n", checksum); // keeps the payload reads from being optimised away
done:
    rd_kafka_queue_destroy(queue);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return result;
}
