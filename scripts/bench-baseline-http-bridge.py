#!/usr/bin/env python3
"""Python baselines of `sluice-bench sidecar` (confluent-kafka, the standard library only otherwise).

  http BOOTSTRAP TOPIC GROUP COUNT URL BATCH
      A naive HTTP "sidecar": a confluent-kafka Consumer loop that POSTs the messages of TOPIC to URL over one
      keep-alive http.client connection, one request at a time, and commits (asynchronously) once every message it
      consumed was acknowledged (at-least-once). BATCH 1 posts one JSON envelope per message; BATCH > 1 posts
      {"messages": [...]} of up to BATCH envelopes (a partial batch goes when a poll finds nothing more). The
      envelope is Sluice's: topic, partition, offset, timestamp, key, headers, value (embedded when it is JSON),
      value_encoding. Stops after COUNT messages; prints messages/s from the first message to the last acknowledged.

  produce BOOTSTRAP TOPIC COUNT SIZE INFLIGHT
      A confluent-kafka Producer writing COUNT JSON values of about SIZE bytes ({"id":N,"pad":"xx…"}, keys k0..k999) with the sidecar
      producer's settings (enable.idempotence, acks=all, linger.ms=5). INFLIGHT 0: produce as fast as librdkafka takes
      them, then flush; INFLIGHT n: at most n messages awaiting their delivery report (like n synchronous
      publishers). Prints messages/s from the first produce call to the last delivery report.
"""
import base64
import http.client
import json
import sys
import time
import urllib.parse

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer


def value_of(text_id, size):
    # {"id":N,"pad":"xx…"} of exactly `size` bytes (when size allows), as the Swift side writes it.
    return f'{{"id":{text_id},"pad":"{"x" * max(0, size - 17 - len(str(text_id)))}"}}'.encode()


def envelope(message):
    timestamp_type, timestamp = message.timestamp()
    key = message.key()
    value = message.value()
    item = {
        "topic": message.topic(), "partition": message.partition(), "offset": message.offset(),
        "timestamp": timestamp if timestamp_type != 0 else None,
        "key": None, "headers": {}, "value": None,
    }
    if key is not None:
        try:
            item["key"] = key.decode()
        except UnicodeDecodeError:
            item["key"] = base64.b64encode(key).decode()
    for name, header in message.headers() or []:
        item["headers"][name] = header.decode(errors="replace") if header is not None else None
    if value is not None:
        try:
            item["value"] = json.loads(value)
            item["value_encoding"] = "json"
        except ValueError:
            try:
                item["value"] = value.decode()
                item["value_encoding"] = "utf8"
            except UnicodeDecodeError:
                item["value"] = base64.b64encode(value).decode()
                item["value_encoding"] = "base64"
    return item


def http_bridge(bootstrap, topic, group, count, url, batch):
    target = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    headers = {"Content-Type": "application/json", "Sluice-Connector": "python-baseline"}

    def post(body):
        while True:
            try:
                connection.request("POST", target.path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                if 200 <= response.status < 300:
                    return
                time.sleep(0.01)  # not expected from the benchmark's application
            except (http.client.HTTPException, OSError):
                connection.close()
                time.sleep(0.01)

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000, "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    done = 0
    first = None
    pending = []
    while done < count:
        messages = consumer.consume(batch if batch > 1 else 1000, 0.1)
        messages = [m for m in messages if not m.error()]
        if messages and first is None:
            first = time.monotonic()
        if batch == 1:
            for message in messages:
                post(json.dumps(envelope(message), separators=(",", ":")).encode())
                done += 1
            if messages:
                consumer.commit(asynchronous=True)
            continue
        pending.extend(messages)
        while len(pending) >= batch or (pending and not messages):
            chunk, pending = pending[:batch], pending[batch:]
            post(json.dumps({"messages": [envelope(m) for m in chunk]}, separators=(",", ":")).encode())
            done += len(chunk)
            if not pending:
                consumer.commit(asynchronous=True)
    elapsed = time.monotonic() - first
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as error:  # _NO_OFFSET: the last asynchronous commit already covered everything
        if error.args[0].code() != KafkaError._NO_OFFSET:
            raise
    consumer.close()
    connection.close()
    print(f"{count / elapsed:.0f}")


def produce(bootstrap, topic, count, size, inflight):
    producer = Producer({
        "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
        "queue.buffering.max.messages": 100000,
    })
    state = {"delivered": 0, "failed": 0}

    def on_delivery(error, _message):
        if error is not None:
            state["failed"] += 1
        state["delivered"] += 1

    start = time.monotonic()
    for index in range(count):
        while inflight and index - state["delivered"] >= inflight:
            producer.poll(0.001)
        while True:
            try:
                producer.produce(topic, key=f"k{index % 1000}".encode(), value=value_of(index, size), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    elapsed = time.monotonic() - start
    if state["delivered"] != count or state["failed"]:
        sys.exit(f"delivered {state['delivered']} of {count}, {state['failed']} failed")
    print(f"{count / elapsed:.0f}")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "http":
        http_bridge(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], int(sys.argv[7]))
    elif mode == "produce":
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        sys.exit(__doc__)
