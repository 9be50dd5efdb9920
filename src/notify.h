/*-------------------------------------------------------------------------
 *
 * notify.h
 *	  Delivery notifications: NOTIFY on outbox.notify_channel for the
 *	  events a relay recorded as delivered.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_NOTIFY_H
#define OUTBOX_NOTIFY_H

#include "postgres.h"

#include "kafka.h"

typedef struct OutboxNotifier OutboxNotifier;

/* Longest channel name NOTIFY takes */
#define OUTBOX_MAX_CHANNEL_LEN (NAMEDATALEN - 1)

/* NULL (and every call with it does nothing) when the queue has no room */
extern OutboxNotifier *outbox_notify_begin(const char *channel);
extern void outbox_notify_add(OutboxNotifier *notifier, const OutboxMessage *msg,
							  int32 partition, int64 offset);
extern void outbox_notify_end(OutboxNotifier *notifier);

#endif							/* OUTBOX_NOTIFY_H */
