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
message (counted from the start until the first message arrives).  A topic
that does not exist yet is waited for within the same timeout, and is not
auto-created by this reader.  If no broker answers, the program gives up
after about --timeout seconds (plus at most one request timeout of 10 s).
Then one JSON object per message is printed per line to stdout, ordered by
(topic, partition, offset):

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
# guesses the broker version by sending a series of probe requests at start,
# which against librdkafka 2.0.2's mock cluster (test/kafka_broker.c) does
# work (it guesses 2.3.0) but costs round trips and blocks while no broker
# is up.
# For any version >= (0, 11) kafka-python 2.0.2 uses Metadata v1, ListOffsets
# v1 and Fetch v4 (v2 record batches, needed for headers); the mock cluster
# of librdkafka 2.0.2 supports all of them, and so does any real broker
# >= 0.11.
DEFAULT_API_VERSION = (2, 0, 0)

# How long to wait for a topic's metadata between two attempts.
METADATA_RETRY_SECONDS = 0.2

# Timeout of one request (and of the retries for the first offsets).
REQUEST_TIMEOUT_MS = 10000


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

    KafkaConsumer.partitions_for_topic() blocks without limit while no
    broker answers, so the metadata of all topics (which does not auto-create
    any) is requested through the consumer's client with a bounded wait.
    Returns None (after a message on stderr) if some topic still has no
    partitions when the deadline passes.
    """
    client = consumer._client
    cluster = client.cluster
    cluster.need_all_topic_metadata = True
    while True:
        missing = [t for t in topics if not cluster.partitions_for_topic(t)]
        if not missing:
            return [TopicPartition(t, p) for t in topics
                    for p in sorted(cluster.partitions_for_topic(t))]
        if time.monotonic() >= deadline:
            print('kafka_read: topic(s) not found: %s' % ', '.join(missing),
                  file=sys.stderr)
            return None
        future = cluster.request_update()
        retry_at = min(deadline, time.monotonic() + METADATA_RETRY_SECONDS)
        while not future.is_done and time.monotonic() < deadline:
            client.poll(timeout_ms=100)
        while time.monotonic() < retry_at:
            client.poll(timeout_ms=int((retry_at - time.monotonic()) * 1000) + 1)


def seek_to_first_offsets(consumer, partitions, deadline):
    """Position every partition at its first offset; False on timeout.

    The consumer's own offset reset (seek_to_beginning()) would block
    without limit while a partition leader is down, so the first offsets are
    asked for explicitly, which is bounded by request_timeout_ms.
    """
    while True:
        try:
            offsets = consumer.beginning_offsets(partitions)
            break
        except kafka.errors.KafkaTimeoutError:
            if time.monotonic() >= deadline:
                print('kafka_read: could not get the first offsets',
                      file=sys.stderr)
                return False
    for tp in partitions:
        consumer.seek(tp, offsets[tp])
    return True


def read_messages(consumer, count, timeout, started):
    """Poll the assigned partitions; return {(topic, partition, offset): dict}.

    Stops when count messages have arrived or when timeout seconds have
    passed since the last new message (or since started, if none came).
    """
    messages = {}
    last_progress = started
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

    started = time.monotonic()
    deadline = started + args.timeout
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
            # bounds the wait for the first offsets (see above)
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )
    except kafka.errors.KafkaError as e:
        print('kafka_read: could not connect to %s: %s' % (args.bootstrap, e),
              file=sys.stderr)
        return 1

    messages = {}
    try:
        partitions = wait_for_partitions(consumer, args.topics, deadline)
        if partitions is not None:
            consumer.assign(partitions)
            if seek_to_first_offsets(consumer, partitions, deadline):
                messages = read_messages(consumer, args.count, args.timeout,
                                         started)
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
