/*-------------------------------------------------------------------------
 *
 * causation.c
 *	  Causation chains (seed 001's correlationId).  When a transaction calls
 *	  outbox.receive(consumer, event_id) and then outbox.publish(), the new
 *	  event carries ce_causationid = the received event's id and
 *	  ce_correlationid = the correlation id given to receive() (a consumer
 *	  passes the message's own ce_correlationid header), or the received
 *	  event's id when none was given: the first event of a business process
 *	  is its correlation id, and every event it causes, in any service,
 *	  carries it on.
 *
 * The state is the last receive() of the transaction, whatever it returned
 * (a consumer that publishes after a duplicate is still acting on that
 * event), kept in TopTransactionContext and forgotten when the transaction
 * ends (a transaction callback of this file's own).  A receive() in a subtransaction
 * that rolled back still counts: the transaction acted on that event.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"

#include "causation.h"

static char *received_id = NULL;
static char *received_correlation = NULL;
static bool callback_registered = false;

/* The transaction ended (or was prepared): what it received is gone */
static void
causation_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			received_id = NULL;
			received_correlation = NULL;
			break;
		default:
			break;
	}
}

void
outbox_causation_received(const char *event_id, const char *correlation_id)
{
	if (!callback_registered)
	{
		RegisterXactCallback(causation_xact_callback, NULL);
		callback_registered = true;
	}
	received_id = MemoryContextStrdup(TopTransactionContext, event_id);
	received_correlation = correlation_id ?
		MemoryContextStrdup(TopTransactionContext, correlation_id) : NULL;
}

void
outbox_causation_for_publish(const char *causation_arg, const char *correlation_arg,
							 const char **causation, const char **correlation)
{
	*causation = causation_arg ? causation_arg : received_id;
	if (correlation_arg != NULL)
		*correlation = correlation_arg;
	else if (causation_arg == NULL && received_correlation != NULL)
		*correlation = received_correlation;
	else
		*correlation = *causation;
}
