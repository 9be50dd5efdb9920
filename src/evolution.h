/*-------------------------------------------------------------------------
 *
 * evolution.h
 *	  Schema evolution: whether a new JSON Schema of an event type keeps the
 *	  consumers of the old one working, i.e. accepts nothing it refused.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_EVOLUTION_H
#define OUTBOX_EVOLUTION_H

#include "postgres.h"

#include "utils/jsonb.h"

/*
 * ERROR unless every document new_schema accepts, old_schema accepts too.
 * successor, when not NULL, is the event type the hint proposes instead.
 */
extern void outbox_schema_check_evolution(Jsonb *old_schema, Jsonb *new_schema,
										  const char *event_type, const char *successor);

#endif							/* OUTBOX_EVOLUTION_H */
