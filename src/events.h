/*-------------------------------------------------------------------------
 *
 * events.h
 *	  The layout of outbox.events, for the code that writes it without SQL
 *	  (publish.c) and reads it without the planner (scan.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_EVENTS_H
#define OUTBOX_EVENTS_H

/* Attribute numbers of outbox.events, as created by the install script */
enum
{
	EV_ID = 1,
	EV_EVENT_ID,
	EV_TOPIC,
	EV_KEY,
	EV_PAYLOAD,
	EV_HEADERS,
	EV_EVENT_TYPE,
	EV_SOURCE,
	EV_TRACEPARENT,
	EV_CONTENT_TYPE,
	EV_CREATED_AT,
	EV_ATTEMPTS,
	EV_NEXT_ATTEMPT_AT,
	EV_LAST_ERROR,
	EV_FORWARDED_AT,			/* since 1.2 */
	EV_NATTS = EV_FORWARDED_AT
};

/* A database still at 1.0 or 1.1 has the columns up to last_error */
#define EV_NATTS_1_1 EV_LAST_ERROR

#endif							/* OUTBOX_EVENTS_H */
