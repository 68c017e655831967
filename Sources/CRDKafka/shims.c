#include "CRDKafka.h"
#include <string.h>

rd_kafka_resp_err_t sluice_produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int32_t partition,
                                   const void *key, size_t key_len, int has_key,
                                   const void *value, size_t value_len, int has_value,
                                   rd_kafka_headers_t *headers, int64_t timestamp, void *opaque) {
    rd_kafka_vu_t vus[7];
    size_t n = 0;
    vus[n].vtype = RD_KAFKA_VTYPE_RKT; vus[n].u.rkt = rkt; n++;
    vus[n].vtype = RD_KAFKA_VTYPE_PARTITION; vus[n].u.i32 = partition; n++;
    vus[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS; vus[n].u.i = RD_KAFKA_MSG_F_COPY; n++;
    vus[n].vtype = RD_KAFKA_VTYPE_OPAQUE; vus[n].u.ptr = opaque; n++;
    if (has_key) { vus[n].vtype = RD_KAFKA_VTYPE_KEY; vus[n].u.mem.ptr = (void *)(key ? key : ""); vus[n].u.mem.size = key_len; n++; }
    if (has_value) { vus[n].vtype = RD_KAFKA_VTYPE_VALUE; vus[n].u.mem.ptr = (void *)(value ? value : ""); vus[n].u.mem.size = value_len; n++; }
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
