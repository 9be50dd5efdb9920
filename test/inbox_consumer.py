#!/usr/bin/env python3
"""A consumer written the way an application would, for the inbox tests.

Reads Kafka messages as JSON lines on stdin (as printed by kafka_read.py)
and handles each one in its own PostgreSQL transaction (psycopg2):

    BEGIN;
    SELECT outbox.receive(<consumer>, <ce_id header>);
    -- only if that returned true:
    UPDATE inbox_test_accounts SET balance = balance + <amount>, applied = applied + 1
     WHERE account = <key>;
    COMMIT;

Prints "messages=N applied=M duplicates=D" at the end.

Usage: inbox_consumer.py DSN CONSUMER < messages.jsonl
"""

import json
import sys

import psycopg2


def main():
    dsn, consumer = sys.argv[1], sys.argv[2]
    conn = psycopg2.connect(dsn)
    messages = applied = duplicates = 0
    for line in sys.stdin:
        if not line.startswith('{'):
            continue
        msg = json.loads(line)
        messages += 1
        event = json.loads(msg['value'])
        with conn:                      # one transaction per message
            with conn.cursor() as cur:
                cur.execute('SELECT outbox.receive(%s, %s)',
                            (consumer, msg['headers']['ce_id']))
                if cur.fetchone()[0]:
                    cur.execute('UPDATE inbox_test_accounts'
                                '   SET balance = balance + %s, applied = applied + 1'
                                ' WHERE account = %s',
                                (event['amount'], msg['key']))
                    applied += 1
                else:
                    duplicates += 1
    conn.close()
    print(f'messages={messages} applied={applied} duplicates={duplicates}')


if __name__ == '__main__':
    main()
