/*-------------------------------------------------------------------------
 *
 * userfunc.c
 *	  What SQL-callable functions that name other functions check: the
 *	  functions outbox calls on a user's behalf (a derived type's
 *	  derive_with, a subscription's handler), and the names they are
 *	  registered under.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "miscadmin.h"
#include "fmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "outbox.h"
#include "userfunc.h"

/*
 * fn must be a plain function of one argument of argtype returning rettype
 * (else errmsg_text, with hint), which the current user may execute.
 * Returns its owner.
 */
Oid
outbox_check_user_function(Oid fn, Oid argtype, Oid rettype,
						   const char *errmsg_text, const char *hint)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc proc;
	Oid			owner;
	AclResult	aclresult;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", fn)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->prokind != PROKIND_FUNCTION || proc->proretset ||
		proc->pronargs != 1 || proc->proargtypes.values[0] != argtype ||
		proc->prorettype != rettype)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", errmsg_text),
				 errdetail("%s is not.", format_procedure(fn)),
				 errhint("%s", hint)));
	owner = proc->proowner;
	ReleaseSysCache(tup);
	aclresult = outbox_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(fn));
	return owner;
}

/*
 * A text argument that must be given: not NULL, not empty, at most max
 * bytes.
 */
text *
outbox_text_arg(FunctionCallInfo fcinfo, int argno, const char *argname, int max)
{
	text	   *t;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
	t = PG_GETARG_TEXT_PP(argno);
	if (VARSIZE_ANY_EXHDR(t) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname)));
	if (VARSIZE_ANY_EXHDR(t) > (Size) max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", argname),
				 errdetail("It may have at most %d bytes.", max)));
	return t;
}
