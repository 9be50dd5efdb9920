"""Shared pieces of the outbox benchmarks (test/bench/run_bench.sh).

Nothing here measures anything by itself: it holds the event shape both the
outbox and the bare-producer runs send (so they move the same bytes), the
SQL expression that builds that same payload inside PostgreSQL, the
confluent-kafka consumer settings every benchmark consumer uses, and a
nearest-rank percentile.

Events: ~100-byte JSON payloads (order-like objects), keys "0".."99".
"""

import datetime
import json
import math
import sys

# Debian's python3-confluent-kafka and python3-psycopg2 live in the system
# interpreter's dist-packages, which another python3 found first in PATH
# (pyenv, venv) may not see; run_bench.sh uses /usr/bin/python3 anyway.
if '/usr/lib/python3/dist-packages' not in sys.path:
    sys.path.append('/usr/lib/python3/dist-packages')

NKEYS = 100

# The payload of event number i, built by PostgreSQL (column alias i, int4 or
# int8: the product is computed in int8).  Kept in step with payload_json().
PAYLOAD_SQL = ("pg_catalog.jsonb_build_object("
               "'order_id', i, "
               "'customer', 'customer-' || pg_catalog.lpad((i % 1000)::text, 6, '0'), "
               "'amount', (i::int8 * 7919) % 100000, "
               "'currency', 'EUR', "
               "'status', 'placed', "
               "'items', i % 7 + 1)")
KEY_SQL = "(i % {})::text".format(NKEYS)


def payload_dict(i):
    return {'order_id': i,
            'customer': 'customer-%06d' % (i % 1000),
            'amount': (i * 7919) % 100000,
            'currency': 'EUR',
            'status': 'placed',
            'items': i % 7 + 1}


def payload_json(i):
    """The payload text exactly as PostgreSQL's jsonb output writes it
    (keys ordered by length, then bytewise; ', ' and ': ' separators), so
    that the bare producer sends the bytes the relay would send."""
    d = payload_dict(i)
    keys = sorted(d, key=lambda k: (len(k.encode()), k.encode()))
    return '{' + ', '.join('%s: %s' % (json.dumps(k), json.dumps(d[k]))
                           for k in keys) + '}'


def key_of(i):
    return str(i % NKEYS)


def producer_config(bootstrap, client_id):
    """The relay's producer settings (src/kafka.c), for every producer the
    benchmarks compare with it."""
    return {
        'bootstrap.servers': bootstrap,
        'client.id': client_id,
        'acks': 'all',
        'enable.idempotence': True,
        'linger.ms': 0,
        'message.timeout.ms': 30000,
        'partitioner': 'murmur2_random',
    }


SOURCE = b'/outbox/bench'


def cloudevents_headers(eid, topic, at, id_only=False):
    """The CloudEvents headers the relay sends (ce_source is the benchmark's),
    for the producers compared with it: eid a str or bytes, topic a str, at
    an aware datetime.  id_only: just ce_id (a leaner peer)."""
    eid = eid if isinstance(eid, bytes) else eid.encode()
    if id_only:
        return [('ce_id', eid)]
    return [('ce_specversion', b'1.0'), ('ce_id', eid), ('ce_source', SOURCE),
            ('ce_type', topic.encode()),
            ('ce_time', at.astimezone(datetime.timezone.utc)
             .strftime('%Y-%m-%dT%H:%M:%S.%fZ').encode()),
            ('content-type', b'application/json')]


def produce_waiting(producer, topic, value, key, headers, on_delivery):
    """producer.produce(), serving delivery reports while the local queue
    is full."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers,
                             on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.01)


def consumer_config(bootstrap, group):
    """Settings of every benchmark consumer.  librdkafka's mock cluster
    answers a Fetch only when fetch.wait.max.ms expires, hence 1 ms."""
    return {
        'bootstrap.servers': bootstrap,
        'group.id': group,
        'enable.auto.commit': False,
        'auto.offset.reset': 'earliest',
        'fetch.wait.max.ms': 1,
        'enable.partition.eof': False,
    }


def wait_partitions(consumer, topic, timeout):
    """Partition ids of topic, waiting up to timeout seconds for it to exist."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        md = consumer.list_topics(topic, timeout=5)
        t = md.topics.get(topic)
        if t is not None and t.error is None and t.partitions:
            return sorted(t.partitions)
        if time.monotonic() >= deadline:
            raise RuntimeError('topic %s has no partitions after %ss' % (topic, timeout))
        time.sleep(0.2)


def header(msg, name):
    for k, v in msg.headers() or []:
        if k == name:
            return v.decode('utf-8', 'replace') if v is not None else None
    return None


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# --------------------------------------------------------------------------
# pgbench (sections 3 and 5 of run_bench.sh)

PGBENCH = '/usr/lib/postgresql/15/bin/pgbench'


def pgbench(dsn, script, clients, seconds, defines=None, pgbench=None, sync_off=False):
    """Run pgbench on one custom script (text) for `seconds` s with
    `clients` connections (one thread each), prepared statements, no vacuum,
    and return {tps, latency_ms, transactions, failed, clients, seconds}.
    sync_off: its sessions run with synchronous_commit=off (PGOPTIONS).
    tps and latency come from pgbench's own summary (tps without the initial
    connection time).  Raises RuntimeError when pgbench fails or aborts."""
    import os
    import re
    import subprocess
    import tempfile

    fd, path = tempfile.mkstemp(prefix='bench-pgbench-', suffix='.sql')
    with os.fdopen(fd, 'w') as f:
        f.write(script)
    cmd = [pgbench or PGBENCH, '-n', '-M', 'prepared', '-f', path,
           '-c', str(clients), '-j', str(clients), '-T', str(seconds)]
    for k, v in (defines or {}).items():
        cmd += ['-D', '%s=%s' % (k, v)]
    cmd.append(dsn)
    env = dict(os.environ)
    if sync_off:
        env['PGOPTIONS'] = (env.get('PGOPTIONS', '') + ' -c synchronous_commit=off').strip()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=seconds + 120, env=env)
    finally:
        os.unlink(path)
    out = p.stdout

    def num(pattern, cast=float):
        m = re.search(pattern, out, re.M)
        return cast(m.group(1)) if m else None

    res = {
        'clients': clients,
        'seconds': seconds,
        'sync_off': sync_off,
        'tps': num(r'^tps = ([0-9.]+)'),
        'latency_ms': num(r'^latency average = ([0-9.]+) ms'),
        'transactions': num(r'^number of transactions actually processed: (\d+)', int),
        'failed': num(r'^number of failed transactions: (\d+)', int) or 0,
    }
    if p.returncode != 0 or res['tps'] is None or res['transactions'] is None or res['failed']:
        raise RuntimeError('pgbench failed (status %d): %s\n%s' % (
            p.returncode, ' '.join(cmd[:-1]), (p.stderr or '')[-2000:] + out[-1000:]))
    return res


def relation_sizes(cur, rel):
    """(heap, indexes) bytes of a table: pg_table_size (heap, TOAST, free
    space and visibility maps) and pg_indexes_size."""
    cur.execute('SELECT pg_catalog.pg_table_size(%s::regclass), pg_catalog.pg_indexes_size(%s::regclass)',
                (rel, rel))
    heap, idx = cur.fetchone()
    return {'table': heap, 'indexes': idx}


def log(msg):
    """A progress line on stderr, in run_bench.sh's style."""
    import time
    sys.stderr.write('   %s %s\n' % (time.strftime('%H:%M:%S'), msg))
    sys.stderr.flush()


def process_cpu_s(pid):
    """CPU seconds (user + system) a process has used so far, from
    /proc/PID/stat; None when it cannot be read."""
    import os
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError):
        return None


def process_memory_kb(pid):
    """{'rss', 'hwm', 'anon'}: VmRSS, VmHWM (peak RSS) and RssAnon (private
    memory; VmRSS also counts the pages of shared memory the process touched,
    shared_buffers among them) of a process in kB, from /proc/PID/status;
    None when it cannot be read."""
    fields = {'VmRSS:': 'rss', 'VmHWM:': 'hwm', 'RssAnon:': 'anon'}
    out = {}
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                name = line.split(None, 1)[0]
                if name in fields:
                    out[fields[name]] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return out if len(out) == len(fields) else None


def reset_peak_rss(pid):
    """Reset a process's VmHWM to its current RSS (writing 5 to
    /proc/PID/clear_refs, which needs root); False when that failed."""
    try:
        with open('/proc/%d/clear_refs' % pid, 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def wait_state(cur, paused, timeout=30):
    """Wait until outbox.stats shows the relay paused (or no longer paused)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        cur.execute('SELECT state FROM outbox.stats WHERE datname = pg_catalog.current_database()')
        row = cur.fetchone()
        if row and (row[0] == 'paused') == paused:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def relay_pid(cur):
    """Pid of the outbox relay of the database cur is connected to (None
    when there is none now)."""
    cur.execute("SELECT pid FROM pg_catalog.pg_stat_activity"
                " WHERE backend_type = 'outbox relay' AND datname = pg_catalog.current_database()")
    row = cur.fetchone()
    return row[0] if row else None


def pause_relay(cur, who):
    """Pause the relay of cur's database (outbox.pause_relay()) and wait
    until outbox.stats says so; on a timeout resume it, say so on stderr as
    `who`, and return False.  cur must be in autocommit mode."""
    cur.execute('SELECT outbox.pause_relay()')
    if wait_state(cur, True):
        return True
    print('%s: the relay did not report "paused" within 30 s' % who, file=sys.stderr)
    cur.execute('SELECT outbox.resume_relay()')
    return False


def alternating(sides, rounds):
    """The order of runs for `rounds` rounds over `sides`, reversed every
    other round (A B, B A, A B ...), so that drift in the machine (WAL flush
    latency, checkpoints, caches) falls on both sides alike."""
    out = []
    for r in range(rounds):
        out += [(r, s) for s in (sides if r % 2 == 0 else list(reversed(sides)))]
    return out


def combine(runs):
    """Several pgbench runs of one configuration as one: tps is the mean of
    the runs' (equal durations), transactions summed, latency the mean, and
    spread = (max - min) / mean of the runs' tps."""
    tps = [r['tps'] for r in runs]
    mean = sum(tps) / len(tps)
    return {'tps': mean,
            'transactions': sum(r['transactions'] for r in runs),
            'latency_ms': sum(r['latency_ms'] for r in runs) / len(runs),
            'spread': (max(tps) - min(tps)) / mean if mean else None,
            'rounds': len(runs)}
