#include "CRDKafka.h"
#include <string.h>

rd_kafka_resp_err_t sluice_produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int32_t partition,
                                   const void *key, size_t key_len, int has_key,
                                   const void *value, size_t value_len, int has_value,
                                   rd_kafka_headers_t *headers, int64_t timestamp, void *opaque) {
    // A NULL key or value is a null one; a present one of length 0 is empty, so it gets a non-NULL pointer.
    const void *key_bytes = has_key ? (key ? key : "") : NULL;
    const void *value_bytes = has_value ? (value ? value : "") : NULL;
    if (!headers && timestamp == 0) {
        // The common case, through the plain produce call: rd_kafka_produceva also parses the argument list and
        // takes and drops a reference on the topic handle (two atomic operations on a cache line the broker
        // threads share), per message. Same message either way: both end in rd_kafka_msg_new0 with these
        // arguments.
        if (rd_kafka_produce(rkt, partition, RD_KAFKA_MSG_F_COPY, (void *)value_bytes, has_value ? value_len : 0,
                             key_bytes, has_key ? key_len : 0, opaque) == 0)
            return RD_KAFKA_RESP_ERR_NO_ERROR;
        rd_kafka_resp_err_t code = rd_kafka_last_error();
        // rd_kafka_produceva reports the fatal error's own code; rd_kafka_produce only says "fatal".
        if (code == RD_KAFKA_RESP_ERR__FATAL) {
            rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(rk, NULL, 0);
            if (fatal != RD_KAFKA_RESP_ERR_NO_ERROR) return fatal;
        }
        return code;
    }
    rd_kafka_vu_t vus[7];
    size_t n = 0;
    vus[n].vtype = RD_KAFKA_VTYPE_RKT; vus[n].u.rkt = rkt; n++;
    vus[n].vtype = RD_KAFKA_VTYPE_PARTITION; vus[n].u.i32 = partition; n++;
    vus[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS; vus[n].u.i = RD_KAFKA_MSG_F_COPY; n++;
    vus[n].vtype = RD_KAFKA_VTYPE_OPAQUE; vus[n].u.ptr = opaque; n++;
    if (has_key) { vus[n].vtype = RD_KAFKA_VTYPE_KEY; vus[n].u.mem.ptr = (void *)key_bytes; vus[n].u.mem.size = key_len; n++; }
    if (has_value) { vus[n].vtype = RD_KAFKA_VTYPE_VALUE; vus[n].u.mem.ptr = (void *)value_bytes; vus[n].u.mem.size = value_len; n++; }
    if (timestamp != 0) { vus[n].vtype = RD_KAFKA_VTYPE_TIMESTAMP; vus[n].u.i64 = timestamp; n++; }
    rd_kafka_error_t *error;
    if (headers) {
        rd_kafka_vu_t all[8];
        memcpy(all, vus, n * sizeof(rd_kafka_vu_t));
        all[n].vtype = RD_KAFKA_VTYPE_HEADERS; all[n].u.headers = headers;
        error = rd_kafka_produceva(rk, all, n + 1);
    } else {
        error = rd_kafka_produceva(rk, vus, n);
    }
    if (!error) return RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    rd_kafka_error_destroy(error);
    return code;
}

int sluice_is_cooperative(rd_kafka_t *rk) {
    const char *protocol = rd_kafka_rebalance_protocol(rk);
    return protocol && strcmp(protocol, "COOPERATIVE") == 0;
}
