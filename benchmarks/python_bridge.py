"""The Python baseline of `sluice-bench streams`: confluent-kafka's consume -> produce loop.

It consumes from INPUT, produces each message to OUTPUT and commits the consumed offsets asynchronously after each
batch, without waiting for the deliveries (so it is not even at-least-once). Prints the messages per second from the
first message to the last one consumed and produced (then flushes).
usage: python_bridge.py BOOTSTRAP INPUT OUTPUT GROUP COUNT
"""
import sys
import time

from confluent_kafka import Consumer, Producer

bootstrap, source, target, group, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
consumer = Consumer({
    "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
    "session.timeout.ms": 6000, "enable.auto.commit": False,
})
producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
consumer.subscribe([source])
done = 0
first = None
while done < count:
    batch = consumer.consume(1000, 1.0)
    for message in batch:
        if message.error():
            continue
        if first is None:
            first = time.monotonic()
        while True:
            try:
                producer.produce(target, key=message.key(), value=message.value())
                break
            except BufferError:
                producer.poll(0.01)
        done += 1
    producer.poll(0)
    if batch:
        consumer.commit(asynchronous=True)
producer.flush()
elapsed = time.monotonic() - first
consumer.close()
print(f"{count / elapsed:.0f}")
