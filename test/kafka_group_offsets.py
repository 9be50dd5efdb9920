#!/usr/bin/env python3
"""Print a consumer group's committed offsets, as Kafka's own tools see them.

Built on kafka-python (python3-kafka), which does not use librdkafka, so
that what the outbox consumer (librdkafka) committed is read back by an
independent client.

Usage:
    python3 test/kafka_group_offsets.py --bootstrap SERVERS --group G --topic T

Prints one line per partition of T with a committed offset, in partition
order: "topic partition offset".  The offsets are asked for partition by
partition (OffsetFetch naming them), which the test broker answers; asking
for all of a group's partitions at once it does not.  Exit status 0, or 1
when the broker could not be asked.
"""

import argparse
import logging
import sys

try:
    import kafka
except ImportError:
    sys.path.append('/usr/lib/python3/dist-packages')
    import kafka

from kafka import KafkaConsumer, TopicPartition


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--bootstrap', required=True)
    parser.add_argument('--group', required=True)
    parser.add_argument('--topic', required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    try:
        # a member of no group: it only asks the coordinator, never joins
        consumer = KafkaConsumer(bootstrap_servers=args.bootstrap.split(','),
                                 group_id=args.group, enable_auto_commit=False,
                                 api_version=(2, 0, 0), request_timeout_ms=15000)
        partitions = sorted(consumer.partitions_for_topic(args.topic) or [])
        for p in partitions:
            offset = consumer.committed(TopicPartition(args.topic, p))
            if offset is not None:
                print('%s %d %d' % (args.topic, p, offset))
        consumer.close()
    except kafka.errors.KafkaError as e:
        print('kafka_group_offsets: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
