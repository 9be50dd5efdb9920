/*-------------------------------------------------------------------------
 *
 * waitkeys.c
 *	  Which (topic, key)s may have an event waiting in outbox.events or a
 *	  dead letter holding them (pipeline.c): a Bloom filter of their hashes.
 *
 * While events wait, every new event with a key is checked against them,
 * and a probe of their index costs a few microseconds: against reminders
 * that always wait, a third of the relay's drain rate.  Most keys have
 * nothing waiting, and the filter says so in a fraction of that, so only
 * the keys it may hold are probed.  It answers "maybe" for every key it
 * holds, and for a few more (a false positive costs one probe), never "no"
 * for a key it holds; so it must hold every key that has a waiting event or
 * a holding dead letter:
 *	- loaded from the tables (outbox_waitkeys_load) when the relay starts,
 *	  after an error, when the dead-letter policy changes, and when it has
 *	  taken more keys than it was made for;
 *	- then added to by the relay as events come to wait: a waiting row its
 *	  read of new events passes (publish() with deliver_at, seen in id
 *	  order before any later event of its key), an event it parks, retries
 *	  or dead-letters;
 *	- emptied (outbox_waitkeys_clear) when the relay learns that nothing
 *	  waits and no dead letter holds a key, and nothing is parked in flight.
 * A replay of a dead letter that holds its key puts a waiting event back
 * for a key the filter holds already (it was added when the dead letter was
 * made).  Keys are never taken out one by one: the filter only grows until
 * it is emptied or reloaded.
 *
 * Elements are 64-bit hashes of the topic and key bytes as stored.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "executor/spi.h"
#include "lib/bloomfilter.h"
#include "utils/memutils.h"

#include "spiutil.h"
#include "waitkeys.h"

/* keys a new filter is made for, at the least */
#define WAITKEYS_MIN_KEYS	65536
/* the most memory a filter takes, in kB */
#define WAITKEYS_MAX_KB		(16 * 1024)
/* keys loaded per fetch */
#define WAITKEYS_FETCH		10000

static MemoryContext waitkeys_cxt = NULL;
static bloom_filter *filter = NULL;
static bool valid = false;		/* holds every key that waits */
static int64 capacity = 0;		/* keys it was made for */
static int64 added = 0;

static SPIPlanPtr count_plan = NULL;
static SPIPlanPtr count_holds_plan = NULL;
static SPIPlanPtr keys_plan = NULL;
static SPIPlanPtr keys_holds_plan = NULL;

#define WAITING_KEYS \
"SELECT topic, key FROM outbox.events WHERE next_attempt_at IS NOT NULL AND key IS NOT NULL"
#define HOLDING_KEYS \
" UNION ALL SELECT topic, key FROM outbox.dead_letters WHERE holds_key AND key IS NOT NULL"

void
outbox_waitkeys_init(MemoryContext parent)
{
	waitkeys_cxt = AllocSetContextCreate(parent, "outbox relay waiting keys",
										 ALLOCSET_DEFAULT_SIZES);
}

/*
 * The hash of an event's topic and key, the filter's element (and the key
 * of the keys parked in flight, pipeline.c).
 */
uint64
outbox_waitkeys_hash(Datum topic, Datum key)
{
	text	   *t = DatumGetTextPP(topic);
	text	   *k = DatumGetTextPP(key);

	return hash_combine64(hash_bytes_extended((const unsigned char *) VARDATA_ANY(t),
											  VARSIZE_ANY_EXHDR(t), 0),
						  hash_bytes_extended((const unsigned char *) VARDATA_ANY(k),
											  VARSIZE_ANY_EXHDR(k), 1));
}

/* a new, empty filter for at least keys keys */
static void
waitkeys_new(int64 keys)
{
	MemoryContext old;

	MemoryContextReset(waitkeys_cxt);
	old = MemoryContextSwitchTo(waitkeys_cxt);
	capacity = Max(keys, WAITKEYS_MIN_KEYS);
	filter = bloom_create(capacity, WAITKEYS_MAX_KB, 0);
	MemoryContextSwitchTo(old);
	added = 0;
}

/*
 * True when the filter holds every key that waits; when not, every key
 * "may have" (outbox_waitkeys_may_have) until it is loaded.
 */
bool
outbox_waitkeys_valid(void)
{
	return valid;
}

/*
 * Fill the filter from the tables: the keys of the waiting events, and with
 * holds, those of the dead letters that hold their key.  In a unit of work;
 * the caller's memory context is current again afterwards.
 */
void
outbox_waitkeys_load(bool holds)
{
	MemoryContext caller = CurrentMemoryContext;
	SPIPlanPtr	plan;
	Portal		portal;
	int64		n;

	n = holds ?
		outbox_query_int8(&count_holds_plan,
						  "SELECT (SELECT pg_catalog.count(*) FROM outbox.events"
						  "         WHERE next_attempt_at IS NOT NULL AND key IS NOT NULL)"
						  "     + (SELECT pg_catalog.count(*) FROM outbox.dead_letters"
						  "         WHERE holds_key AND key IS NOT NULL)") :
		outbox_query_int8(&count_plan,
						  "SELECT pg_catalog.count(*) FROM outbox.events"
						  " WHERE next_attempt_at IS NOT NULL AND key IS NOT NULL");
	/* room to grow before it must be loaded again */
	waitkeys_new(2 * Max(n, 0));
	plan = holds ?
		outbox_plan(&keys_holds_plan, WAITING_KEYS HOLDING_KEYS, 0, NULL, 0) :
		outbox_plan(&keys_plan, WAITING_KEYS, 0, NULL, 0);
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	for (;;)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, WAITKEYS_FETCH);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			Datum		topic = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
			Datum		key = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);
			uint64		hash = outbox_waitkeys_hash(topic, key);

			bloom_add_element(filter, (unsigned char *) &hash, sizeof(hash));
			added++;
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	valid = true;
	/* SPI leaves its own context current */
	MemoryContextSwitchTo(caller);
}

/*
 * Nothing waits: an empty filter, which holds every key that waits.
 */
void
outbox_waitkeys_clear(void)
{
	if (valid && added == 0)
		return;
	waitkeys_new(WAITKEYS_MIN_KEYS);
	valid = true;
}

/*
 * What waits is not known (after an error, a change of policy): load the
 * filter again before it is trusted.
 */
void
outbox_waitkeys_forget(void)
{
	valid = false;
}

/*
 * A key now has a waiting event or a holding dead letter.  A filter that
 * took more keys than it was made for answers "maybe" too often: it is
 * loaded again, from the tables, before the next read.
 */
void
outbox_waitkeys_add(uint64 hash)
{
	if (!valid)
		return;
	bloom_add_element(filter, (unsigned char *) &hash, sizeof(hash));
	if (++added > capacity)
		valid = false;
}

/*
 * May this key have a waiting event or a holding dead letter?  False only
 * when it has none.
 */
bool
outbox_waitkeys_may_have(uint64 hash)
{
	return !valid || !bloom_lacks_element(filter, (unsigned char *) &hash, sizeof(hash));
}
