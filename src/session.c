/*-------------------------------------------------------------------------
 *
 * session.c
 *	  The session settings of the relay and the consumer.
 *
 * The relay connects to databases that other people own, and connecting
 * applies their ALTER DATABASE / ALTER ROLE ... SET defaults.  Some of those
 * turn a relay into a machine for duplicates or a way to run code as a
 * superuser: default_transaction_read_only makes its DELETE fail after
 * Kafka has the events, serializable isolation makes its transactions fail
 * to serialize after producing, statement and lock timeouts cancel its
 * work, a search_path resolves its names elsewhere.  So:
 *	- outbox_session_save(), before connecting, remembers every setting as
 *	  the server's configuration gives it;
 *	- outbox_session_pin(), after connecting, puts back every setting that
 *	  the database or role defaults changed, then sets what the relay
 *	  depends on itself, at PGC_S_OVERRIDE so nothing later changes it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/memutils.h"

#include "session.h"

typedef struct SavedSetting
{
	char	   *name;
	char	   *value;
} SavedSetting;

static SavedSetting *saved = NULL;
static int	nsaved = 0;

/*
 * What the relay needs, whatever anyone's defaults say.  Its own commits
 * do not wait for the WAL flush: one lost in a crash only means its events
 * are delivered again, and the flush before the next batch is produced
 * covers it (pipeline.c).  session_replication_role = replica: no ordinary
 * trigger or rule on its tables fires (relay.c refuses tables that have
 * any at all).
 */
static const char *const pinned[][2] = {
	{"search_path", "pg_catalog"},
	{"synchronous_commit", "off"},
	{"session_replication_role", "replica"},
	{"default_transaction_isolation", "read committed"},
	{"default_transaction_read_only", "off"},
	{"default_transaction_deferrable", "off"},
	{"statement_timeout", "0"},
	{"lock_timeout", "0"},
	{"idle_in_transaction_session_timeout", "0"},
	{"idle_session_timeout", "0"},
#if PG_VERSION_NUM >= 170000
	{"transaction_timeout", "0"},
#endif
	{NULL, NULL}
};

/*
 * The consumer applies other people's handlers, whose triggers must fire and
 * whose effects are commits like any other: the first two pins are the
 * relay's only.
 */
#define SESSION_RELAY_ONLY_PINS 2

static struct config_generic **
session_guc_variables(int *n)
{
#if PG_VERSION_NUM >= 160000
	return get_guc_variables(n);
#else
	*n = GetNumConfigOptions();
	return get_guc_variables();
#endif
}

/*
 * Remember every setting's value; called before connecting to a database.
 */
void
outbox_session_save(void)
{
	int			n;
	struct config_generic **vars = session_guc_variables(&n);
	int			i;

	saved = MemoryContextAlloc(TopMemoryContext, sizeof(SavedSetting) * n);
	for (i = 0; i < n; i++)
	{
		const char *value = GetConfigOption(vars[i]->name, true, false);

		saved[nsaved].name = MemoryContextStrdup(TopMemoryContext, vars[i]->name);
		saved[nsaved].value = value ? MemoryContextStrdup(TopMemoryContext, value) : NULL;
		nsaved++;
	}
}

static const char *
session_saved_value(const char *name)
{
	int			i;

	for (i = 0; i < nsaved; i++)
	{
		if (strcmp(saved[i].name, name) == 0)
			return saved[i].value;
	}
	return NULL;
}

/*
 * Undo the database's and roles' defaults, then pin what the relay needs;
 * called right after connecting.  for_handlers (the consumer): pinned at
 * session level rather than as overrides, so that a handler's own SET
 * clauses and SET LOCAL work while it runs (the consumer undoes whatever a
 * handler set when it returns), and without the relay-only pins.
 */
void
outbox_session_pin(bool for_handlers)
{
	int			n;
	struct config_generic **vars = session_guc_variables(&n);
	GucSource	pin_source = for_handlers ? PGC_S_SESSION : PGC_S_OVERRIDE;
	int			i;

	Assert(saved != NULL);
	for (i = 0; i < n; i++)
	{
		GucSource	source = vars[i]->source;
		const char *value;

		if (source != PGC_S_DATABASE && source != PGC_S_USER &&
			source != PGC_S_DATABASE_USER)
			continue;
		value = session_saved_value(vars[i]->name);
		/* a setting unknown before connecting means nothing to the relay */
		if (value == NULL)
			continue;
		(void) set_config_option(vars[i]->name, value, PGC_SUSET, pin_source,
								 GUC_ACTION_SET, true, DEBUG1, false);
	}
	for (i = for_handlers ? SESSION_RELAY_ONLY_PINS : 0; pinned[i][0] != NULL; i++)
		SetConfigOption(pinned[i][0], pinned[i][1], PGC_SUSET, pin_source);
}
