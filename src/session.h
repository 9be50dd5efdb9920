/*-------------------------------------------------------------------------
 *
 * session.h
 *	  The relay's session settings: what it needs, whatever the database's
 *	  and roles' defaults say.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SESSION_H
#define OUTBOX_SESSION_H

#include "postgres.h"

extern void outbox_session_save(void);
extern void outbox_session_pin(bool for_handlers);

#endif							/* OUTBOX_SESSION_H */
