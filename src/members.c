/*-------------------------------------------------------------------------
 *
 * members.c
 *	  Before the relay, which runs with superuser rights, works on the
 *	  extension's objects, it checks that they are what the extension
 *	  created: members of the extension, owned by its owner (a superuser),
 *	  in a schema that owner owns, with no trigger, rule or child table
 *	  that would run or read someone else's code or rows.  CREATE EXTENSION
 *	  already refuses a foreign schema (ddl.c); this catches installations
 *	  made before that, and ownership handed over later.
 *
 * A failed check is an ERROR in the relay's unit of work: nothing is read
 * or produced, the message shows in outbox.stats and the log, and the relay
 * tries again with backoff.
 *
 * The check walks pg_depend, so it runs again only after a catalog change
 * that may matter: an invalidation of any relation (a trigger, an owner, a
 * rule...) or of a schema resets it.  The extension's owner changes only
 * with REASSIGN OWNED, which changes its relations' owners too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "members.h"

/* the last check passed for this extension, and nothing changed since */
static Oid	checked_ext = InvalidOid;
static bool callbacks_registered = false;

/* The relations the relay works on; paused arrived in 1.1 */
static const struct
{
	const char *name;
	char		relkind;
	bool		optional;
}			members[] = {
	{"events", RELKIND_RELATION, false},
	{"events_id_seq", RELKIND_SEQUENCE, false},
	{"dead_letters", RELKIND_RELATION, false},
	{"inbox", RELKIND_RELATION, false},
	{"paused", RELKIND_RELATION, true},
	{NULL, 0, false}
};

static void
members_refuse(const char *what, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("outbox relay refuses to work on %s: %s", what, why),
			 errhint("The extension's objects must be its own, owned by the superuser who installed it; reinstall outbox in a schema that superuser owns.")));
}

/*
 * The owner of the extension and its schema, from pg_extension (scanned:
 * not every minor release has a syscache on it).
 */
static void
members_extension(Oid extoid, Oid *owner, Oid *nsp)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Form_pg_extension ext;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "outbox relay: extension with OID %u not found", extoid);
	ext = (Form_pg_extension) GETSTRUCT(tup);
	*owner = ext->extowner;
	*nsp = ext->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/* invalidation callbacks: check again at the next unit of work */
static void
members_relcache_changed(Datum arg, Oid relid)
{
	checked_ext = InvalidOid;
}

static void
members_syscache_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	checked_ext = InvalidOid;
}

/*
 * The extension whose objects passed the last check, while no catalog
 * change since could matter (InvalidOid otherwise): DROP EXTENSION drops
 * relations, so it resets this too.  Saves looking the extension up by
 * name at every unit of work.
 */
Oid
outbox_members_checked(void)
{
	return callbacks_registered ? checked_ext : InvalidOid;
}

/*
 * Check the extension's objects, unless nothing changed since the last
 * check passed; ERROR when one is not what the extension created.  In a
 * transaction, after its invalidation messages were taken in.
 */
void
outbox_members_check(Oid extoid)
{
	Oid			owner;
	Oid			nsp;
	HeapTuple	tup;
	int			i;

	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(members_relcache_changed, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, members_syscache_changed, (Datum) 0);
		callbacks_registered = true;
	}
	if (extoid == checked_ext)
		return;

	members_extension(extoid, &owner, &nsp);
	if (!superuser_arg(owner))
		members_refuse("extension outbox", "its owner is not a superuser");
	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "outbox relay: schema with OID %u not found", nsp);
	if (((Form_pg_namespace) GETSTRUCT(tup))->nspowner != owner)
	{
		ReleaseSysCache(tup);
		members_refuse("schema outbox", "it is not owned by the extension's owner");
	}
	ReleaseSysCache(tup);

	for (i = 0; members[i].name != NULL; i++)
	{
		Oid			relid = get_relname_relid(members[i].name, nsp);
		Form_pg_class rel;
		char	   *what = psprintf("outbox.%s", members[i].name);
		const char *why = NULL;

		if (!OidIsValid(relid))
		{
			if (members[i].optional)
				continue;
			members_refuse(what, "it does not exist");
		}
		if (getExtensionOfObject(RelationRelationId, relid) != extoid)
			members_refuse(what, "it is not a member of the extension");
		tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "outbox relay: relation with OID %u not found", relid);
		rel = (Form_pg_class) GETSTRUCT(tup);
		if (rel->relkind != members[i].relkind)
			why = "it is not of the kind the extension created";
		else if (rel->relowner != owner)
			why = "it is not owned by the extension's owner";
		ReleaseSysCache(tup);
		if (why == NULL)
		{
			/* pg_class's relhastriggers and friends lag: ask the relcache */
			Relation	r = relation_open(relid, AccessShareLock);

			if (r->trigdesc != NULL)
				why = "it has triggers";
			else if (r->rd_rules != NULL)
				why = "it has rules";
			else if (find_inheritance_children(relid, NoLock) != NIL)
				why = "it has child tables";
			relation_close(r, AccessShareLock);
		}
		if (why != NULL)
			members_refuse(what, why);
	}
	checked_ext = extoid;
}
