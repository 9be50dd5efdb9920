#!/usr/bin/env python3
"""Check column of the drain benchmark (test/bench/run_bench.sh): reads a
whole topic back with a real Kafka consumer and counts what is there.

It is not timed.  confluent-kafka (librdkafka) consumer, fetch.wait.max.ms=1
(the mock cluster answers a Fetch only when that expires), every partition
assigned by hand from the beginning, no consumer group offsets; it reads
until each partition's position reaches the high watermark it had at start
(all events were delivered before this runs) or until --timeout seconds
pass without a new message.

Prints one JSON object: messages (records read), distinct_ce_id (distinct
ce_id headers), missing_ce_id (records without one), high_watermark_total.
Exit status 0 if it read up to the watermarks, 1 otherwise.
"""

import argparse
import json
import sys
import time

import benchlib
from benchlib import consumer_config, header, wait_partitions
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--bootstrap', required=True)
    ap.add_argument('--topic', required=True)
    ap.add_argument('--timeout', type=float, default=30)
    a = ap.parse_args()

    c = Consumer(consumer_config(a.bootstrap, 'bench-count-%s' % a.topic))
    parts = wait_partitions(c, a.topic, a.timeout)
    hw = {}
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(a.topic, p), timeout=10)
        hw[p] = (lo, hi)
    c.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in parts])
    pending = {p for p in parts if hw[p][1] > hw[p][0]}
    n = 0
    missing = 0
    ids = set()
    last = time.monotonic()
    while pending and time.monotonic() - last < a.timeout:
        msgs = c.consume(num_messages=10000, timeout=0.5)
        for m in msgs:
            if m.error():
                continue
            n += 1
            eid = header(m, 'ce_id')
            if eid is None:
                missing += 1
            else:
                ids.add(eid)
            if m.offset() + 1 >= hw[m.partition()][1]:
                pending.discard(m.partition())
        if msgs:
            last = time.monotonic()
    c.close()
    print(json.dumps({'topic': a.topic, 'messages': n, 'distinct_ce_id': len(ids),
                      'missing_ce_id': missing,
                      'high_watermark_total': sum(h - l for l, h in hw.values())}))
    return 0 if not pending else 1


if __name__ == '__main__':
    sys.exit(main())
