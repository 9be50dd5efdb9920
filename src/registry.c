/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  Event types: outbox.register_event_type(), outbox.drop_event_type(),
 *	  and the lookups publish() makes in outbox.event_types.
 *
 * Lookups.  publish() of a named event type reads that type's row through
 * the primary key with the statement's snapshot, so it sees exactly what
 * MVCC says it should: its own transaction's registration, another
 * session's once committed, never one that rolled back.  The row's schema
 * is compiled once per session and kept (registry_cache, in a context
 * under CacheMemoryContext) with the row version it came from (xmin and
 * ctid); a lookup that finds another version compiles again, so a change
 * takes effect for every session at its commit with no restart and no
 * invalidation message to miss.  The probe costs an index lookup per
 * publish of a named type; the schema is never parsed per call.
 *
 * Changes.  register_event_type() and drop_event_type() are granted to
 * outbox_admin; they check their arguments as the caller (EXECUTE on the
 * derivation function, the compatibility of a new schema), then write the
 * row as the table's owner with search_path pinned, under a SHARE ROW
 * EXCLUSIVE lock that orders registry changes (so no two concurrent
 * registrations can build a chain of derivations) without blocking
 * publishers, which take only ACCESS SHARE.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation_d.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/regproc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "evolution.h"
#include "message.h"
#include "outbox.h"
#include "registry.h"
#include "spiutil.h"
#include "userfunc.h"

/* Columns of outbox.event_types, as created by the 1.1--1.2 script */
enum
{
	ET_EVENT_TYPE = 1,
	ET_TOPIC,
	ET_SCHEMA,
	ET_DESCRIPTION,
	ET_DEPRECATED_AFTER,
	ET_DERIVED_FROM,
	ET_DERIVE_WITH,
	ET_CREATED_AT,
	ET_UPDATED_AT,
	ET_NATTS = ET_UPDATED_AT
};

/* Longest event type name (as publish() allows) */
#define REGISTRY_MAX_NAME 1024

/* One cached event type: the row version it was built from, and its parts */
typedef struct RegistryEntry
{
	char		name[REGISTRY_MAX_NAME + 1];	/* hash key */
	TransactionId xmin;
	ItemPointerData tid;
	MemoryContext cxt;			/* holds type, its compiled schema, derived */
	OutboxEventType *type;
} RegistryEntry;

static HTAB *registry_cache = NULL;

/* outbox.event_types and its primary key, until a relcache invalidation */
static Oid	registry_relid = InvalidOid;
static Oid	registry_pkey = InvalidOid;
static bool registry_callback_registered = false;

PG_FUNCTION_INFO_V1(outbox_register_event_type);
PG_FUNCTION_INFO_V1(outbox_drop_event_type);

static void
registry_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == registry_relid)
		registry_relid = registry_pkey = InvalidOid;
}

/*
 * outbox.event_types, opened with lockmode, or NULL while the extension is
 * at a version without it (ALTER EXTENSION UPDATE not run yet).  Its OID
 * and its primary key's are kept until the relation is invalidated, so a
 * publish does not look them up by name.
 */
static Relation
registry_open(LOCKMODE lockmode)
{
	Relation	rel = NULL;

	if (!registry_callback_registered)
	{
		CacheRegisterRelcacheCallback(registry_relcache_callback, (Datum) 0);
		registry_callback_registered = true;
	}
	if (OidIsValid(registry_relid))
		rel = try_table_open(registry_relid, lockmode);
	if (rel == NULL)
	{
		Oid			nsp = get_namespace_oid("outbox", true);
		Oid			relid = OidIsValid(nsp) ? get_relname_relid("event_types", nsp) : InvalidOid;

		if (!OidIsValid(relid))
			return NULL;
		rel = table_open(relid, lockmode);
		registry_relid = relid;
		registry_pkey = InvalidOid;
	}
	if (RelationGetDescr(rel)->natts != ET_NATTS)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("outbox.event_types does not have the columns this version of outbox expects"),
				 errhint("Run ALTER EXTENSION outbox UPDATE.")));
	if (!OidIsValid(registry_pkey))
	{
		/* RelationGetIndexList() sets rd_pkindex */
		list_free(RelationGetIndexList(rel));
		registry_pkey = rel->rd_pkindex;
		if (!OidIsValid(registry_pkey))
			elog(ERROR, "outbox.event_types has no primary key");
	}
	return rel;
}

static Snapshot
registry_snapshot(void)
{
	return ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();
}

/*
 * A context an entry no longer uses: freed with the transaction, not now,
 * since the publish() that replaced it may still point into it (a
 * derivation function can publish, and so look up types, in the middle of
 * another publish).
 */
static void
registry_retire(MemoryContext cxt)
{
	MemoryContextSetParent(cxt, TopTransactionContext);
}

/* The names of the types derived from source, as the snapshot sees them */
static List *
registry_scan_derived(Relation rel, const char *source)
{
	Oid			index = get_relname_relid("event_types_derived_from_idx",
										  RelationGetNamespace(rel));
	List	   *names = NIL;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	if (!OidIsValid(index))
		elog(ERROR, "index outbox.event_types_derived_from_idx does not exist");
	ScanKeyInit(&key, ET_DERIVED_FROM, BTEqualStrategyNumber, F_TEXTEQ,
				CStringGetTextDatum(source));
	scan = systable_beginscan(rel, index, true, registry_snapshot(), 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;

		names = lappend(names, TextDatumGetCString(heap_getattr(tup, ET_EVENT_TYPE,
																RelationGetDescr(rel),
																&isnull)));
	}
	systable_endscan(scan);
	return names;
}

/*
 * The cached type for a row of outbox.event_types, built again when the
 * row is not the version cached.  The names of the types derived from it
 * are part of it: registering, moving or dropping a derived type makes a
 * new version of its source's row (register_event_type(), below).
 */
static OutboxEventType *
registry_entry_for(Relation rel, HeapTuple tup, const char *name)
{
	Datum		values[ET_NATTS];
	bool		nulls[ET_NATTS];
	RegistryEntry *entry;
	MemoryContext cxt;
	MemoryContext old;
	OutboxEventType *t;
	bool		found;

	if (registry_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = REGISTRY_MAX_NAME + 1;
		ctl.entrysize = sizeof(RegistryEntry);
		ctl.hcxt = CacheMemoryContext;
		registry_cache = hash_create("outbox event types", 64, &ctl,
									 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	entry = hash_search(registry_cache, name, HASH_ENTER, &found);
	if (found && entry->xmin == HeapTupleHeaderGetRawXmin(tup->t_data) &&
		ItemPointerEquals(&entry->tid, &tup->t_self))
		return entry->type;

	/* build the new version aside, so that an error leaves no half entry */
	if (!found)
		entry->cxt = NULL;
	heap_deform_tuple(tup, RelationGetDescr(rel), values, nulls);
	cxt = AllocSetContextCreate(CacheMemoryContext, "outbox event type",
								ALLOCSET_SMALL_SIZES);
	PG_TRY();
	{
		old = MemoryContextSwitchTo(cxt);
		t = palloc0(sizeof(OutboxEventType));
		t->name = pstrdup(name);
		if (!nulls[ET_TOPIC - 1])
			t->topic = TextDatumGetCString(values[ET_TOPIC - 1]);
		if (!nulls[ET_SCHEMA - 1])
			t->schema = outbox_schema_compile(DatumGetJsonbP(values[ET_SCHEMA - 1]), cxt);
		t->has_deprecation = !nulls[ET_DEPRECATED_AFTER - 1];
		if (t->has_deprecation)
			t->deprecated_after = DatumGetTimestampTz(values[ET_DEPRECATED_AFTER - 1]);
		if (!nulls[ET_DERIVE_WITH - 1])
			t->derive_with = DatumGetObjectId(values[ET_DERIVE_WITH - 1]);
		else
			t->derived = registry_scan_derived(rel, name);
		MemoryContextSwitchTo(old);
	}
	PG_CATCH();
	{
		MemoryContextDelete(cxt);
		if (entry->cxt == NULL)
			hash_search(registry_cache, name, HASH_REMOVE, NULL);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (entry->cxt != NULL)
		registry_retire(entry->cxt);
	entry->cxt = cxt;
	entry->xmin = HeapTupleHeaderGetRawXmin(tup->t_data);
	entry->tid = tup->t_self;
	entry->type = t;
	return t;
}

OutboxEventType *
outbox_registry_lookup(const char *name)
{
	Relation	rel;
	Relation	index;
	OutboxEventType *result = NULL;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;

	if (strlen(name) > REGISTRY_MAX_NAME || (rel = registry_open(AccessShareLock)) == NULL)
		return NULL;

	/*
	 * A probe of the primary key, by hand rather than with
	 * systable_beginscan(), whose end releases the index's lock: publish()
	 * keeps it until the transaction ends, as it keeps the table's, so
	 * that each call does not take it again.
	 */
	index = index_open(registry_pkey, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(name));
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, registry_snapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		should_free;
		HeapTuple	tup = ExecFetchSlotHeapTuple(slot, false, &should_free);

		result = registry_entry_for(rel, tup, name);
		if (should_free)
			heap_freetuple(tup);
	}
	else if (registry_cache != NULL)
	{
		RegistryEntry *entry = hash_search(registry_cache, name, HASH_FIND, NULL);

		/* dropped, or not visible: forget what was compiled for it */
		if (entry != NULL)
		{
			registry_retire(entry->cxt);
			hash_search(registry_cache, name, HASH_REMOVE, NULL);
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return result;
}

Jsonb *
outbox_registry_dataschema(OutboxEventType *t, const char *prefix)
{
	if (t->dataschema == NULL || strcmp(t->dataschema_prefix, prefix) != 0)
	{
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(t));

		t->dataschema_prefix = pstrdup(prefix);
		t->dataschema = outbox_headers_add(NULL, "ce_dataschema",
										   psprintf("%s%s", prefix, t->name));
		MemoryContextSwitchTo(old);
	}
	return t->dataschema;
}

List *
outbox_registry_derived(OutboxEventType *source)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, source->derived)
	{
		OutboxEventType *d = outbox_registry_lookup(lfirst(lc));

		if (d != NULL && OidIsValid(d->derive_with))
			result = lappend(result, d);
	}
	return result;
}

/*
 * "order.placed.v3" for "order.placed.v2": the name with its version one
 * higher, or NULL when the name does not end in .v{N}.  *prefix_len is the
 * length of "order.placed.v".
 */
static char *
registry_next_version(const char *name, int *prefix_len, long *version)
{
	int			len = strlen(name);
	int			i = len;

	while (i > 0 && isdigit((unsigned char) name[i - 1]))
		i--;
	if (i == len || i < 2 || name[i - 1] != 'v' || (i >= 2 && name[i - 2] != '.') ||
		len - i > 9)
		return NULL;
	*prefix_len = i;
	*version = strtol(name + i, NULL, 10);
	return psprintf("%.*s%ld", i, name, *version + 1);
}

char *
outbox_registry_successor(const char *name)
{
	Relation	rel = registry_open(AccessShareLock);
	char	   *best = NULL;
	long		best_version;
	int			prefix_len;
	SysScanDesc scan;
	HeapTuple	tup;

	if (rel == NULL || registry_next_version(name, &prefix_len, &best_version) == NULL)
	{
		if (rel != NULL)
			table_close(rel, NoLock);
		return NULL;
	}
	/* the registry is small and this runs only for a deprecated type */
	scan = systable_beginscan(rel, InvalidOid, false, registry_snapshot(), 0, NULL);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		char	   *other = TextDatumGetCString(heap_getattr(tup, ET_EVENT_TYPE,
															 RelationGetDescr(rel), &isnull));
		int			other_prefix;
		long		other_version;

		if (registry_next_version(other, &other_prefix, &other_version) != NULL &&
			other_prefix == prefix_len && strncmp(other, name, prefix_len) == 0 &&
			other_version > best_version)
		{
			best = other;
			best_version = other_version;
		}
	}
	systable_endscan(scan);
	table_close(rel, NoLock);
	return best;
}

/* ---------------------------------------------------------------------
 * register_event_type() and drop_event_type()
 * ---------------------------------------------------------------------
 */

/* A name argument: given, not empty, not too long */
static char *
registry_name_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	return text_to_cstring(outbox_text_arg(fcinfo, argno, argname, REGISTRY_MAX_NAME));
}

/*
 * derive_with must be a plain function (jsonb) RETURNS jsonb that the
 * caller may execute.
 */
static void
registry_check_derive_with(Oid fn)
{
	(void) outbox_check_user_function(fn, JSONBOID, JSONBOID,
									  "derive_with must be a function (jsonb) RETURNS jsonb",
									  "It receives the payload of the source event type and returns the payload of the derived one.");
}

/* The event type in the next version, for hints */
static char *
registry_hint_name(const char *name)
{
	int			prefix_len;
	long		version;

	return registry_next_version(name, &prefix_len, &version);
}

/* SPI: the row of an event type, or NULL; run as the owner */
static HeapTuple
registry_fetch(const char *name, TupleDesc *desc)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};

	if (SPI_execute_with_args("SELECT t.* FROM outbox.event_types t"
							  " WHERE t.event_type OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read outbox.event_types");
	if (SPI_processed == 0)
		return NULL;
	*desc = SPI_tuptable->tupdesc;
	return SPI_tuptable->vals[0];
}

/* True when some registered type derives from name; run as the owner */
static char *
registry_first_derived(const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};

	if (SPI_execute_with_args("SELECT t.event_type FROM outbox.event_types t"
							  " WHERE t.derived_from OPERATOR(pg_catalog.=) $1"
							  " ORDER BY t.event_type LIMIT 1",
							  1, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read outbox.event_types");
	if (SPI_processed == 0)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * A new version of source's row, with the same values: the types derived
 * from source changed, and publishers keep that list with the row version
 * they compiled (registry_entry_for()).  Run as the owner.
 */
static void
registry_touch(const char *source)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(source)};

	if (SPI_execute_with_args("UPDATE outbox.event_types t SET event_type = t.event_type"
							  " WHERE t.event_type OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not write outbox.event_types");
}

/* Touch the sources a derived type leaves and joins (either may be NULL) */
static void
registry_touch_sources(const char *before, const char *after)
{
	if (before != NULL && (after == NULL || strcmp(before, after) != 0))
		registry_touch(before);
	if (after != NULL && (before == NULL || strcmp(before, after) != 0))
		registry_touch(after);
}

static bool
registry_jsonb_equal(Jsonb *a, Jsonb *b)
{
	return compareJsonbContainers(&a->root, &b->root) == 0;
}

/*
 * Run a statement that writes the registry with its 7 arguments, as
 * register_event_type() passes them: event_type, topic, schema,
 * description, deprecated_after, derived_from, derive_with.
 */
static void
registry_execute(const char *sql, Datum *args, char *nulls, int expected)
{
	Oid			argtypes[7] = {TEXTOID, TEXTOID, JSONBOID, TEXTOID, TIMESTAMPTZOID,
	TEXTOID, REGPROCEDUREOID};

	if (SPI_execute_with_args(sql, 7, argtypes, args, nulls, false, 0) != expected)
		elog(ERROR, "could not write outbox.event_types");
}

/* True when a registration's arguments differ from the row they replace */
static bool
registry_row_changed(HeapTuple old, TupleDesc desc, Datum *args, char *nulls)
{
	static const int columns[] = {ET_TOPIC, ET_SCHEMA, ET_DESCRIPTION,
	ET_DEPRECATED_AFTER, ET_DERIVED_FROM, ET_DERIVE_WITH};
	int			i;

	for (i = 0; i < (int) lengthof(columns); i++)
	{
		int			arg = i + 1;
		bool		isnull;
		Datum		d = SPI_getbinval(old, desc, columns[i], &isnull);

		if (isnull != (nulls[arg] == 'n'))
			return true;
		if (isnull)
			continue;
		switch (columns[i])
		{
			case ET_SCHEMA:
				if (!registry_jsonb_equal(DatumGetJsonbP(d), DatumGetJsonbP(args[arg])))
					return true;
				break;
			case ET_DEPRECATED_AFTER:
				if (DatumGetTimestampTz(d) != DatumGetTimestampTz(args[arg]))
					return true;
				break;
			case ET_DERIVE_WITH:
				if (DatumGetObjectId(d) != DatumGetObjectId(args[arg]))
					return true;
				break;
			default:
				if (!DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID, d, args[arg])))
					return true;
				break;
		}
	}
	return false;
}

/*
 * The checks of a registration against the row it replaces: the topic may
 * be set where there was none, not changed or removed; the schema may be
 * added, or changed so that it accepts nothing the old one refused.
 */
static void
registry_check_change(const char *name, HeapTuple old, TupleDesc desc,
					  const char *topic, Jsonb *schema)
{
	bool		isnull;
	Datum		d;

	d = SPI_getbinval(old, desc, ET_TOPIC, &isnull);
	if (!isnull && (topic == NULL || strcmp(TextDatumGetCString(d), topic) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event type \"%s\" is published to topic \"%s\"",
						name, TextDatumGetCString(d)),
				 errdetail("Its consumers read that topic; moving the type would leave them without its events."),
				 registry_hint_name(name) ?
				 errhint("Publish to a new topic as a new event type, e.g. \"%s\".",
						 registry_hint_name(name)) :
				 errhint("Publish to a new topic as a new event type.")));
	d = SPI_getbinval(old, desc, ET_SCHEMA, &isnull);
	if (isnull)
		return;
	if (schema == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event type \"%s\" has a schema; it cannot be registered again without one",
						name),
				 errdetail("Its consumers rely on the schema."),
				 errhint("Pass its schema, or changes to it that its consumers can read.")));
	if (!registry_jsonb_equal(DatumGetJsonbP(d), schema))
		outbox_schema_check_evolution(DatumGetJsonbP(d), schema, name,
									  registry_hint_name(name));
}

/*
 * outbox.register_event_type(event_type text, schema jsonb, topic text,
 *		deprecated_after timestamptz, derived_from text,
 *		derive_with regprocedure, description text) RETURNS void
 */
Datum
outbox_register_event_type(PG_FUNCTION_ARGS)
{
	char	   *name = registry_name_arg(fcinfo, 0, "event_type");
	Jsonb	   *schema = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	char	   *topic = NULL;
	char	   *derived_from = NULL;
	Oid			derive_with = PG_ARGISNULL(5) ? InvalidOid : PG_GETARG_OID(5);
	Relation	rel;
	HeapTuple	old;
	TupleDesc	desc;
	Oid			save_user;
	int			save_sec;
	int			nest;
	Datum		args[7];
	char		argnulls[7];
	int			i;

	if (!PG_ARGISNULL(2))
	{
		outbox_check_topic(PG_GETARG_TEXT_PP(2));
		topic = text_to_cstring(PG_GETARG_TEXT_PP(2));
	}
	if (schema != NULL)
	{
		/* a schema that does not compile is refused here, with its path */
		MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
												  "outbox schema check",
												  ALLOCSET_SMALL_SIZES);

		(void) outbox_schema_compile(schema, cxt);
		MemoryContextDelete(cxt);
	}
	if (PG_ARGISNULL(4) != PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("derived_from and derive_with go together"),
				 errhint("A derived type names the type it is derived from and the function (jsonb) RETURNS jsonb that maps its payload.")));
	if (!PG_ARGISNULL(4))
	{
		derived_from = registry_name_arg(fcinfo, 4, "derived_from");
		if (strcmp(derived_from, name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event type \"%s\" cannot be derived from itself", name)));
		registry_check_derive_with(derive_with);
	}

	rel = registry_open(ShareRowExclusiveLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table outbox.event_types does not exist"),
				 errhint("Run ALTER EXTENSION outbox UPDATE.")));
	nest = outbox_as_owner(rel->rd_rel->relowner, &save_user, &save_sec);

	if (derived_from != NULL)
	{
		HeapTuple	src = registry_fetch(derived_from, &desc);
		bool		isnull;
		char	   *other;

		if (src == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("event type \"%s\" is not registered", derived_from),
					 errhint("Register the source type first.")));
		(void) SPI_getbinval(src, desc, ET_DERIVED_FROM, &isnull);
		if (!isnull)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event type \"%s\" is itself derived from \"%s\"", derived_from,
							SPI_getvalue(src, desc, ET_DERIVED_FROM)),
					 errdetail("Chains of derived types are not supported."),
					 errhint("Derive \"%s\" from \"%s\".", name,
							 SPI_getvalue(src, desc, ET_DERIVED_FROM))));
		if ((other = registry_first_derived(name)) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event type \"%s\" cannot be derived: \"%s\" is derived from it",
							name, other),
					 errdetail("Chains of derived types are not supported.")));
	}

	old = registry_fetch(name, &desc);
	if (old != NULL)
		registry_check_change(name, old, desc, topic, schema);

	args[0] = CStringGetTextDatum(name);
	args[1] = topic ? CStringGetTextDatum(topic) : (Datum) 0;
	args[2] = schema ? JsonbPGetDatum(schema) : (Datum) 0;
	args[3] = PG_ARGISNULL(6) ? (Datum) 0 : PG_GETARG_DATUM(6);
	args[4] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	args[5] = derived_from ? CStringGetTextDatum(derived_from) : (Datum) 0;
	args[6] = ObjectIdGetDatum(derive_with);
	for (i = 0; i < 7; i++)
		argnulls[i] = ' ';
	argnulls[1] = topic ? ' ' : 'n';
	argnulls[2] = schema ? ' ' : 'n';
	argnulls[3] = PG_ARGISNULL(6) ? 'n' : ' ';
	argnulls[4] = PG_ARGISNULL(3) ? 'n' : ' ';
	argnulls[5] = derived_from ? ' ' : 'n';
	argnulls[6] = OidIsValid(derive_with) ? ' ' : 'n';

	/*
	 * Insert, or update when anything differs: registering the same
	 * definition again (a deployment that runs on every release) changes
	 * nothing, not even updated_at.
	 */
	if (old == NULL)
		registry_execute("INSERT INTO outbox.event_types"
						 " (event_type, topic, schema, description, deprecated_after,"
						 "  derived_from, derive_with, created_at, updated_at)"
						 " VALUES ($1, $2, $3, $4, $5, $6, $7,"
						 "         pg_catalog.now(), pg_catalog.now())",
						 args, argnulls, SPI_OK_INSERT);
	else if (registry_row_changed(old, desc, args, argnulls))
		registry_execute("UPDATE outbox.event_types t"
						 " SET topic = $2, schema = $3, description = $4,"
						 "     deprecated_after = $5, derived_from = $6, derive_with = $7,"
						 "     updated_at = pg_catalog.now()"
						 " WHERE t.event_type OPERATOR(pg_catalog.=) $1",
						 args, argnulls, SPI_OK_UPDATE);
	registry_touch_sources(old ? SPI_getvalue(old, desc, ET_DERIVED_FROM) : NULL,
						   derived_from);

	outbox_as_caller(nest, save_user, save_sec);
	table_close(rel, NoLock);
	PG_RETURN_VOID();
}

/*
 * outbox.drop_event_type(event_type text) RETURNS boolean
 */
Datum
outbox_drop_event_type(PG_FUNCTION_ARGS)
{
	char	   *name = registry_name_arg(fcinfo, 0, "event_type");
	Relation	rel = registry_open(ShareRowExclusiveLock);
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};
	Oid			save_user;
	int			save_sec;
	int			nest;
	char	   *other;
	bool		dropped;

	if (rel == NULL)
		PG_RETURN_BOOL(false);
	nest = outbox_as_owner(rel->rd_rel->relowner, &save_user, &save_sec);
	if ((other = registry_first_derived(name)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("event type \"%s\" cannot be dropped: \"%s\" is derived from it",
						name, other),
				 errhint("Drop the derived types first.")));
	if (SPI_execute_with_args("DELETE FROM outbox.event_types t"
							  " WHERE t.event_type OPERATOR(pg_catalog.=) $1"
							  " RETURNING t.derived_from",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "could not write outbox.event_types");
	dropped = SPI_processed > 0;
	if (dropped)
		registry_touch_sources(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
							   NULL);
	outbox_as_caller(nest, save_user, save_sec);
	table_close(rel, NoLock);
	PG_RETURN_BOOL(dropped);
}
