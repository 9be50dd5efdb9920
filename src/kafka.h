/*-------------------------------------------------------------------------
 *
 * kafka.h
 *	  The relay's librdkafka producer: configuration, produce, delivery
 *	  reports and error classes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_KAFKA_H
#define OUTBOX_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "storage/latch.h"

/* One Kafka record header */
typedef struct OutboxHeader
{
	const char *name;
	const char *value;
	size_t		value_len;
} OutboxHeader;

/* One record to produce; key or value NULL means a Kafka null */
typedef struct OutboxMessage
{
	const char *topic;
	const char *key;
	size_t		key_len;
	const char *value;
	size_t		value_len;
	OutboxHeader *headers;
	int			nheaders;
	int64		timestamp_ms;	/* record timestamp; 0: when it is produced */
} OutboxMessage;

typedef struct OutboxDelivery OutboxDelivery;

/*
 * Called once per produced message, from outbox_kafka_serve() in the relay's
 * own thread, with the OutboxDelivery given to outbox_kafka_produce().
 * maybe_persisted: the message failed (err), but only after it was sent, so
 * a broker may have written it all the same (librdkafka's
 * RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED, as when it times out waiting for
 * the acknowledgement).  partition and offset: where Kafka wrote it (-1
 * when unknown).
 */
typedef void (*OutboxDeliveryFn) (OutboxDelivery *delivery,
								  rd_kafka_resp_err_t err,
								  bool maybe_persisted, int32 partition,
								  int64 offset);

/*
 * The first member of what a caller produces a message for (a pipeline
 * event, a dead letter being forwarded): its report goes to on_delivery.
 */
struct OutboxDelivery
{
	OutboxDeliveryFn on_delivery;
};

typedef struct OutboxProducer OutboxProducer;

/*
 * A pipe a librdkafka queue signals when it becomes non-empty, and the wait
 * set a worker waits on it with, together with its latch.
 */
typedef struct OutboxWakePipe
{
	int			fds[2];			/* [0] read by the worker, [1] librdkafka's */
	WaitEventSet *waits;
} OutboxWakePipe;

/* A producer's configuration, read once from the settings and the file */
typedef struct OutboxKafkaConfig
{
	char	   *brokers;
	char	   *inline_props;
	char	   *file;			/* "" when none */
	char	   *file_contents;	/* NULL when none, or it cannot be read */
	char	   *signature;		/* equal signatures: the same producer */
	char	   *consumer_props; /* outbox.consumer_properties, for consumers only */
} OutboxKafkaConfig;

extern bool outbox_kafka_check_properties(const char *inline_props,
										  const char *file,
										  char **detail);
extern OutboxKafkaConfig *outbox_kafka_config_read(void);
extern bool outbox_kafka_config_check(const OutboxKafkaConfig *config,
									  char **detail);
extern rd_kafka_conf_t *outbox_kafka_conf_new(const OutboxKafkaConfig *config,
											  const char *client_id,
											  const char *const (*defaults)[2],
											  char **detail);
extern void outbox_wake_pipe_open(OutboxWakePipe *wake, const char *label);
extern void outbox_wake_pipe_close(OutboxWakePipe *wake);
extern int	outbox_wake_pipe_wait(OutboxWakePipe *wake, long timeout,
								  uint32 wait_event_info);
extern void outbox_wake_pipe_drain(OutboxWakePipe *wake);
extern bool outbox_kafka_conf_apply_consumer(rd_kafka_conf_t *conf, const char *props,
											 char **detail);
extern bool outbox_kafka_check_consumer_properties(const char *props, char **detail);
extern OutboxProducer *outbox_kafka_create(const OutboxKafkaConfig *config,
										   const char *client_id,
										   const char *label);
extern void outbox_kafka_destroy(OutboxProducer *producer);
extern int	outbox_kafka_wait(OutboxProducer *producer, long timeout,
							  uint32 wait_event_info);
extern void outbox_kafka_serve(OutboxProducer *producer);
extern rd_kafka_resp_err_t outbox_kafka_produce(OutboxProducer *producer,
												const OutboxMessage *msg,
												OutboxDelivery *delivery);
extern void outbox_kafka_send_now(OutboxProducer *producer);
extern bool outbox_kafka_failed_fatally(OutboxProducer *producer);
extern bool outbox_kafka_brokers_up(OutboxProducer *producer);
extern bool outbox_kafka_error_is_permanent(rd_kafka_resp_err_t err);

#endif							/* OUTBOX_KAFKA_H */
