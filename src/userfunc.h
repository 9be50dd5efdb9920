/*-------------------------------------------------------------------------
 *
 * userfunc.h
 *	  What SQL-callable functions that name other functions check: the
 *	  functions outbox calls on a user's behalf and the names they are
 *	  registered under.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_USERFUNC_H
#define OUTBOX_USERFUNC_H

#include "postgres.h"

#include "fmgr.h"

extern Oid	outbox_check_user_function(Oid fn, Oid argtype, Oid rettype,
									   const char *errmsg_text, const char *hint);
extern text *outbox_text_arg(FunctionCallInfo fcinfo, int argno, const char *argname,
							 int max);

#endif							/* OUTBOX_USERFUNC_H */
