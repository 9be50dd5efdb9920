#!/usr/bin/env python3
"""Read back the messages in Kafka topics, for the outbox regression tests.

This consumer is deliberately built on kafka-python (Debian package
python3-kafka), a pure-Python Kafka client that does not use librdkafka, so
that what the outbox relay (which uses librdkafka) produced is checked by an
independent implementation of the protocol.

Usage:
    python3 test/kafka_read.py --bootstrap SERVERS --topic T [--topic T2 ...]
                               --count N [--timeout SECONDS]

Every partition of the given topics is read from the beginning (all
partitions are assigned by hand and seeked to the beginning; no consumer
group is used and no offsets are committed) until at least N messages have
arrived, or until --timeout seconds (default 30) pass without any new
message.  A topic that does not exist yet is waited for within the same
timeout.  Then one JSON object per message is printed per line to stdout,
ordered by (topic, partition, offset):

    {"topic": ..., "partition": ..., "offset": ..., "key": str or null,
     "value": str or null, "headers": {name: str}, "timestamp": ms}

Keys, values and header values are decoded as UTF-8 with errors='replace'.
The exit status is 0 if at least N messages were read and 1 otherwise (what
was read is printed all the same); 2 is a usage error.
"""

import argparse
import json
import logging
import sys
import time

try:
    import kafka
except ImportError:
    # python3-kafka installs into the system interpreter's dist-packages,
    # which another python3 found first in PATH (pyenv, venv) may not see.
    sys.path.append('/usr/lib/python3/dist-packages')
    import kafka

from kafka import KafkaConsumer, TopicPartition

# The broker API version is given explicitly rather than probed: kafka-python
# guesses the broker version by sending a series of requests, which is slow
# and not reliable against librdkafka's mock cluster (test/kafka_broker.c).
# For any version >= (0, 11) kafka-python 2.0.2 uses Metadata v1, ListOffsets
# v1 and Fetch v4 (v2 record batches, needed for headers); the mock cluster
# of librdkafka 2.0.2 supports all of them, and so does any real broker
# >= 0.11.
DEFAULT_API_VERSION = (2, 0, 0)

# How long to wait for a topic's metadata between two attempts.
METADATA_RETRY_SECONDS = 0.2


def decode(data):
    """Decode bytes as UTF-8, keeping None as None."""
    if data is None:
        return None
    return data.decode('utf-8', errors='replace')


def parse_args():
    parser = argparse.ArgumentParser(
        description='Read Kafka topics from the beginning and print the '
                    'messages as JSON lines.')
    parser.add_argument('--bootstrap', required=True,
                        help='comma-separated bootstrap servers HOST:PORT')
    parser.add_argument('--topic', required=True, action='append',
                        dest='topics', help='topic to read (repeatable)')
    parser.add_argument('--count', required=True, type=int,
                        help='number of messages expected')
    parser.add_argument('--timeout', type=float, default=30.0,
                        help='give up after this many seconds without a new '
                             'message (default 30)')
    parser.add_argument('--api-version', default=None,
                        help='Kafka API version to assume, e.g. 2.0.0 '
                             '(default %s)' %
                             '.'.join(map(str, DEFAULT_API_VERSION)))
    args = parser.parse_args()
    if args.count < 0:
        parser.error('--count must not be negative')
    if args.timeout < 0:
        parser.error('--timeout must not be negative')
    if args.api_version is None:
        args.api_version = DEFAULT_API_VERSION
    else:
        try:
            args.api_version = tuple(int(p) for p in
                                     args.api_version.split('.'))
        except ValueError:
            parser.error('invalid --api-version %r' % args.api_version)
    return args


def wait_for_partitions(consumer, topics, deadline):
    """Return the TopicPartitions of all topics, waiting for missing ones.

    Returns None (after a message on stderr) if some topic still has no
    partitions when the deadline passes.
    """
    while True:
        partitions = []
        missing = []
        for topic in topics:
            ids = consumer.partitions_for_topic(topic)
            if ids:
                partitions.extend(TopicPartition(topic, p) for p in ids)
            else:
                missing.append(topic)
        if not missing:
            return partitions
        if time.monotonic() >= deadline:
            print('kafka_read: topic(s) not found: %s' % ', '.join(missing),
                  file=sys.stderr)
            return None
        time.sleep(METADATA_RETRY_SECONDS)


def read_messages(consumer, partitions, count, timeout):
    """Poll the assigned partitions; return {(topic, partition, offset): dict}."""
    messages = {}
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)

    last_progress = time.monotonic()
    while len(messages) < count:
        remaining = timeout - (time.monotonic() - last_progress)
        if remaining <= 0:
            break
        batch = consumer.poll(timeout_ms=int(min(remaining, 0.5) * 1000) + 1)
        progress = False
        for tp, records in batch.items():
            for rec in records:
                ident = (tp.topic, tp.partition, rec.offset)
                if ident in messages:
                    continue
                messages[ident] = {
                    'topic': tp.topic,
                    'partition': tp.partition,
                    'offset': rec.offset,
                    'key': decode(rec.key),
                    'value': decode(rec.value),
                    'headers': {name: decode(value)
                                for name, value in (rec.headers or [])},
                    'timestamp': rec.timestamp,
                }
                progress = True
        if progress:
            last_progress = time.monotonic()
    return messages


def main():
    args = parse_args()
    # kafka-python logs connection problems as warnings/errors on stderr
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr,
                        format='kafka_read: %(name)s: %(message)s')

    deadline = time.monotonic() + args.timeout
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=args.bootstrap.split(','),
            client_id='kafka_read',
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset='earliest',
            api_version=args.api_version,
            # librdkafka's mock broker answers a Fetch only when the fetch
            # max wait expires, so keep it tiny.
            fetch_max_wait_ms=1,
            request_timeout_ms=max(int(args.timeout * 1000), 30000) + 1000,
        )
    except kafka.errors.KafkaError as e:
        print('kafka_read: could not connect to %s: %s' % (args.bootstrap, e),
              file=sys.stderr)
        return 1

    messages = {}
    try:
        partitions = wait_for_partitions(consumer, args.topics, deadline)
        if partitions is not None:
            messages = read_messages(consumer, partitions, args.count,
                                     args.timeout)
    finally:
        # closing cancels the fetch in flight, which kafka-python would log
        logging.getLogger('kafka').setLevel(logging.CRITICAL)
        consumer.close(autocommit=False)

    for ident in sorted(messages):
        print(json.dumps(messages[ident]))
    sys.stdout.flush()

    if len(messages) < args.count:
        print('kafka_read: got %d of %d messages' % (len(messages), args.count),
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
