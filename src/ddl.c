/*-------------------------------------------------------------------------
 *
 * ddl.c
 *	  What outbox does when DDL touches it: a utility hook and an object
 *	  access hook, installed once from _PG_init.
 *
 *	- CREATE EXTENSION outbox and ALTER EXTENSION outbox UPDATE are refused
 *	  when a schema named outbox exists that the superuser running them does
 *	  not own: the owner of a schema can replace what is in it, and the
 *	  relay, which runs as a superuser, would run that owner's code
 *	  (PostgreSQL's own rule for extension scripts since CVE-2022-2625).
 *	- DROP DATABASE of a database served by a relay first stops the relay
 *	  and waits for it, so the drop does not fail with "being accessed by
 *	  other users"; if the drop fails after all, the relay is started again.
 *	- Dropping outbox.events while it holds events (DROP EXTENSION, DROP
 *	  SCHEMA ... CASCADE) is refused: those are committed events Kafka has
 *	  not acknowledged; discarding them must be an explicit DELETE.
 *	- DROP EXTENSION outbox wakes the relay at commit, so it exits at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "outbox.h"
#include "shmem.h"

static ProcessUtility_hook_type prev_process_utility_hook = NULL;
static object_access_hook_type prev_object_access_hook = NULL;

/*
 * Refuse to install into, or update in, a schema "outbox" that the current
 * user does not own.
 */
static void
ddl_check_schema_owner(void)
{
	Oid			nsp = get_namespace_oid("outbox", true);
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(nsp))
		return;
	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		return;
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	if (owner != GetUserId())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("schema \"outbox\" is owned by role \"%s\", not by the superuser installing outbox",
						GetUserNameFromId(owner, false)),
				 errdetail("The owner of a schema can replace what is in it, and outbox's relay runs with superuser rights."),
				 errhint("Check what the schema holds, then drop it or run ALTER SCHEMA outbox OWNER TO %s.",
						 quote_identifier(GetUserNameFromId(GetUserId(), false)))));
}

static void
ddl_process_utility(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	volatile Oid dropped_db = InvalidOid;

	if (IsA(parsetree, CreateExtensionStmt) &&
		strcmp(((CreateExtensionStmt *) parsetree)->extname, "outbox") == 0)
		ddl_check_schema_owner();
	else if (IsA(parsetree, AlterExtensionStmt) &&
			 strcmp(((AlterExtensionStmt *) parsetree)->extname, "outbox") == 0)
		ddl_check_schema_owner();
	else if (IsA(parsetree, DropdbStmt))
	{
		dropped_db = get_database_oid(((DropdbStmt *) parsetree)->dbname, true);
		/* only who may drop it stops its relay */
		if (OidIsValid(dropped_db) &&
#if PG_VERSION_NUM >= 160000
			object_ownercheck(DatabaseRelationId, dropped_db, GetUserId())
#else
			pg_database_ownercheck(dropped_db, GetUserId())
#endif
			)
			outbox_stop_relay_for_drop(dropped_db);
		else
			dropped_db = InvalidOid;
	}

	PG_TRY();
	{
		if (prev_process_utility_hook)
			prev_process_utility_hook(pstmt, queryString, readOnlyTree, context,
									  params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		if (OidIsValid(dropped_db))
			outbox_request_relay(dropped_db);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * True when relid is the outbox extension's events table (not some table of
 * that name in a schema of that name) and a row of it is visible now.
 */
static bool
ddl_events_pending(Oid relid)
{
	Oid			nsp = get_namespace_oid("outbox", true);
	Oid			extoid = get_extension_oid("outbox", true);
	char	   *name;
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snapshot;
	bool		found;

	if (!OidIsValid(nsp) || !OidIsValid(extoid) || get_rel_namespace(relid) != nsp ||
		get_rel_relkind(relid) != RELKIND_RELATION)
		return false;
	name = get_rel_name(relid);
	if (name == NULL || strcmp(name, "events") != 0 ||
		getExtensionOfObject(RelationRelationId, relid) != extoid)
		return false;

	rel = table_open(relid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	found = table_scan_getnextslot(scan, ForwardScanDirection, slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	return found;
}

static void
ddl_object_access(ObjectAccessType access, Oid classId, Oid objectId,
				  int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (access != OAT_DROP)
		return;

	if (classId == RelationRelationId && subId == 0 && ddl_events_pending(objectId))
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop outbox.events while it holds events not yet delivered to Kafka"),
				 errdetail("Those events were committed; dropping the table would lose them."),
				 errhint("Wait until the relay has delivered them (outbox.stats shows the backlog), or discard them explicitly with DELETE FROM outbox.events, then drop again.")));
	if (classId == ExtensionRelationId)
	{
		char	   *name = get_extension_name(objectId);

		if (name != NULL && strcmp(name, "outbox") == 0)
			outbox_wake_relay_at_commit();
	}
}

/*
 * Install the hooks; called from _PG_init.
 */
void
outbox_ddl_init(void)
{
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = ddl_process_utility;
	prev_object_access_hook = object_access_hook;
	object_access_hook = ddl_object_access;
}
