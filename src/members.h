/*-------------------------------------------------------------------------
 *
 * members.h
 *	  The relay's check that the objects it works on are the extension's own.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_MEMBERS_H
#define OUTBOX_MEMBERS_H

#include "postgres.h"

extern Oid outbox_members_checked(void);
extern void outbox_members_check(Oid extoid);

#endif							/* OUTBOX_MEMBERS_H */
