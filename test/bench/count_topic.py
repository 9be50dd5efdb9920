#!/usr/bin/env python3
"""Check column of the drain benchmark (test/bench/run_bench.sh): counts
what a real Kafka consumer reads from a topic.  Started by drain.py; it
times nothing.

Why it runs during the drain: librdkafka 2.0.2's mock cluster keeps at most
5 MB (or 100000 message sets) per partition and drops the oldest, so a
200000-event backlog (~60 MB) on 4 partitions cannot be read back once it is
all there.  So this consumer (confluent-kafka, fetch.wait.max.ms=1, every
partition assigned by hand from the beginning, no group offsets) is
assigned before publishing starts, and is given a prefetch queue big enough
for the whole backlog: librdkafka's own fetcher threads (C) copy every
message out of the broker as it arrives, while the Python side does nothing
until told to count.

Protocol: prints "ready" on stdout about a second after assigning the
partitions, then waits for a line (or end of file) on stdin, then reads the
prefetched messages until each partition's position reaches its current
high watermark, or until --timeout seconds pass without a new message.

Prints one JSON object: messages (records read, not counting warm-up
records, whose key is "warmup"), distinct_ce_id, missing_ce_id (records
without a ce_id header), warmup, high_watermark_total (records the broker
ever appended, warm-up included), purged (partitions whose first offset read was not 0, i.e.
the broker dropped records before they were fetched; then the count is not
the topic's), skipped (offsets jumped over within a partition: records the
broker dropped while this consumer lagged more than the mock's 5 MB per
partition behind, after which it resumed from the earliest offset left;
a producer much faster than this consumer, like the bare producer of
drain_compare.py, can cause that).  Exit status 0 when it read up to the
watermarks with nothing purged or skipped, 1 otherwise.
"""

import argparse
import json
import sys
import time

import benchlib  # noqa: F401  (sets sys.path for Debian's packages)
from benchlib import consumer_config, header, wait_partitions
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--bootstrap', required=True)
    ap.add_argument('--topic', required=True)
    ap.add_argument('--timeout', type=float, default=30)
    a = ap.parse_args()

    conf = consumer_config(a.bootstrap, 'bench-count-%s' % a.topic)
    conf.update({
        # hold the whole backlog locally (the limits' maxima)
        'queued.max.messages.kbytes': 2097151,
        'queued.min.messages': 10000000,
    })
    c = Consumer(conf)
    parts = wait_partitions(c, a.topic, a.timeout)
    c.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in parts])
    time.sleep(1.0)
    sys.stdout.write('ready\n')
    sys.stdout.flush()
    sys.stdin.readline()

    hw = {}
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(a.topic, p), timeout=10)
        hw[p] = hi
    pending = {p for p in parts if hw[p] > 0}
    first = {}
    nxt = {}
    skipped = 0
    n = 0
    missing = 0
    warmups = 0
    ids = set()
    last = time.monotonic()
    while pending and time.monotonic() - last < a.timeout:
        msgs = c.consume(num_messages=10000, timeout=0.5)
        for m in msgs:
            if m.error():
                continue
            first.setdefault(m.partition(), m.offset())
            if m.partition() in nxt and m.offset() > nxt[m.partition()]:
                skipped += m.offset() - nxt[m.partition()]
            nxt[m.partition()] = m.offset() + 1
            if m.offset() + 1 >= hw[m.partition()]:
                pending.discard(m.partition())
            if m.key() == b'warmup':
                warmups += 1
                continue
            n += 1
            eid = header(m, 'ce_id')
            if eid is None:
                missing += 1
            else:
                ids.add(eid)
        if msgs:
            last = time.monotonic()
    c.close()
    purged = sorted(p for p, off in first.items() if off != 0)
    print(json.dumps({'topic': a.topic, 'messages': n, 'distinct_ce_id': len(ids),
                      'missing_ce_id': missing, 'warmup': warmups,
                      'high_watermark_total': sum(hw.values()),
                      'unfinished_partitions': sorted(pending), 'purged': purged,
                      'skipped': skipped}))
    return 0 if not pending and not purged and not skipped else 1


if __name__ == '__main__':
    sys.exit(main())
