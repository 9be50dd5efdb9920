/*-------------------------------------------------------------------------
 *
 * kafka.c
 *	  The relay's librdkafka producer: builds its configuration from the
 *	  outbox.* settings, produces records with CloudEvents headers already
 *	  assembled by the relay, serves delivery reports, and classifies errors.
 *
 * Threading rules: librdkafka runs its own threads, and none of them may call
 * into PostgreSQL.  Everything that reaches PostgreSQL code (delivery
 * reports, error and log callbacks) is routed to librdkafka's main queue
 * (log.queue=true plus rd_kafka_set_log_queue) and served only by
 * outbox_kafka_serve(), i.e. by rd_kafka_poll() in the relay's own thread.
 * The main queue signals a pipe when it becomes non-empty; the relay waits on
 * that pipe together with its latch, so it never polls on a timer.
 *
 * Memory: the OutboxProducer lives in the relay's TopMemoryContext; what
 * librdkafka allocates it owns and frees itself.
 *
 * Secrets: property values are never put into a message; only names are.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#include "kafka.h"
#include "outbox.h"
#include "waits.h"

struct OutboxProducer
{
	rd_kafka_t *rk;
	rd_kafka_queue_t *mainq;
	OutboxWakePipe wake;		/* signalled by the main queue */
	bool		fatal;			/* idempotence broke: recreate the producer */
	bool		all_brokers_down;
	char	   *label;			/* "outbox relay for database ...", for logs */
};

/* Properties outbox sets itself, which a user may not override */
static const char *const outbox_reserved_properties[] = {
	"bootstrap.servers", "metadata.broker.list", "enable.idempotence",
	"acks", "request.required.acks", "partitioner", "log.queue",
	"dr_cb", "dr_msg_cb", NULL
};

/* Consumer properties outbox sets itself (fetch.c) */
static const char *const outbox_reserved_consumer_properties[] = {
	"bootstrap.servers", "metadata.broker.list", "group.id", "group.instance.id",
	"enable.auto.commit", "enable.auto.offset.store", "enable.partition.eof",
	"isolation.level", "log.queue", NULL
};

/* Defaults outbox sets but a user may override */
static const char *const outbox_default_properties[][2] = {
	{"linger.ms", "0"},
	{"message.timeout.ms", "30000"},
	{"socket.keepalive.enable", "true"},
	{NULL, NULL}
};

/*
 * True for property names whose values may be secrets.
 */
static bool
outbox_property_is_secret(const char *name)
{
	return strstr(name, "password") != NULL || strstr(name, "secret") != NULL ||
		strstr(name, "jaas") != NULL || strstr(name, ".pem") != NULL ||
		strstr(name, "oauthbearer.config") != NULL;
}

/*
 * Set one property on conf, after refusing the reserved ones, and secrets
 * given inline.  On failure *detail says why, naming the property but never
 * a secret value.
 */
static bool
outbox_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
				const char *origin, bool inline_origin,
				const char *const *reserved, char **detail)
{
	char		errstr[512];
	int			i;

	for (i = 0; reserved[i] != NULL; i++)
	{
		if (strcmp(name, reserved[i]) == 0)
		{
			*detail = psprintf("%s: property \"%s\" is set by outbox itself and cannot be overridden.",
							   origin, name);
			return false;
		}
	}
	/*
	 * PostgreSQL logs every changed setting's new value at reload, so a
	 * secret may only come from the properties file, whose contents are
	 * never logged.
	 */
	if (inline_origin && outbox_property_is_secret(name))
	{
		*detail = psprintf("%s: property \"%s\" holds a secret; set it in outbox.kafka_properties_file instead, since PostgreSQL logs changed settings.",
						   origin, name);
		return false;
	}
	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		if (outbox_property_is_secret(name))
			*detail = psprintf("%s: invalid value for librdkafka property \"%s\".",
							   origin, name);
		else
			*detail = psprintf("%s: %s", origin, errstr);
		return false;
	}
	return true;
}

/*
 * Trim leading and trailing white space in place.
 */
static char *
outbox_trim(char *s)
{
	char	   *end;

	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' ||
					   end[-1] == '\r' || end[-1] == '\n'))
		*--end = '\0';
	return s;
}

/*
 * True when name looks like a librdkafka property name, so it may be shown
 * in a message: a malformed line must not put part of a value (maybe a
 * password) into the log as if it were a name.
 */
static bool
outbox_is_property_name(const char *name)
{
	const char *p;

	if (name[0] == '\0')
		return false;
	for (p = name; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return false;
	}
	return true;
}

/*
 * Apply "name=value" pairs split at sep: '\n' for a properties file, where,
 * as in Java properties files, the name ends at the first '=', ':' or white
 * space, and '#' or '!' start a comment; ';' for the inline setting, where
 * the name ends at '='.  Messages name the item and, when it is one, the
 * property; never anything else of the text.
 */
static bool
outbox_conf_apply_text(rd_kafka_conf_t *conf, const char *text, char sep,
					   const char *origin, const char *const *reserved,
					   char **detail)
{
	char	   *copy = pstrdup(text);
	char	   *item = copy;
	int			lineno = 0;

	while (item != NULL)
	{
		char	   *next = strchr(item, sep);
		char	   *end;
		char	   *name;
		char	   *value;

		if (next)
			*next++ = '\0';
		lineno++;
		item = outbox_trim(item);
		if (item[0] == '\0' || (sep == '\n' && (item[0] == '#' || item[0] == '!')))
		{
			item = next;
			continue;
		}
		end = item + strcspn(item, sep == '\n' ? "=: \t" : "=");
		if (*end == '\0')
		{
			*detail = psprintf("%s: item %d is not of the form name=value.",
							   origin, lineno);
			return false;
		}
		value = end + 1;
		/* "name = value", "name: value", "name value" */
		if (*end == ' ' || *end == '\t')
		{
			value = outbox_trim(value);
			if (*value == '=' || *value == ':')
				value++;
		}
		*end = '\0';
		name = outbox_trim(item);
		value = outbox_trim(value);
		if (!outbox_is_property_name(name))
		{
			*detail = psprintf("%s: item %d does not start with a property name.",
							   origin, lineno);
			return false;
		}
		if (!outbox_conf_set(conf, name, value, origin, sep == ';', reserved, detail))
			return false;
		item = next;
	}
	return true;
}

/*
 * Read a whole properties file into a palloc'd string; NULL with *detail set
 * when it cannot be read.
 */
static char *
outbox_read_properties_file(const char *path, char **detail)
{
	FILE	   *f = AllocateFile(path, "r");
	StringInfoData buf;
	char		chunk[1024];
	size_t		n;

	if (f == NULL)
	{
		*detail = psprintf("could not open properties file \"%s\": %m", path);
		return NULL;
	}
	initStringInfo(&buf);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		appendBinaryStringInfo(&buf, chunk, n);
	FreeFile(f);
	return buf.data;
}

/*
 * Apply the properties file's contents, then the inline properties, to conf.
 */
static bool
outbox_conf_apply_user(rd_kafka_conf_t *conf, const char *inline_props,
					   const char *file, const char *file_contents,
					   char **detail)
{
	if (file_contents != NULL)
	{
		char	   *origin = psprintf("outbox.kafka_properties_file \"%s\"", file);

		if (!outbox_conf_apply_text(conf, file_contents, '\n', origin,
									outbox_reserved_properties, detail))
			return false;
	}
	if (inline_props != NULL && inline_props[0] != '\0')
		return outbox_conf_apply_text(conf, inline_props, ';',
									  "outbox.kafka_properties",
									  outbox_reserved_properties, detail);
	return true;
}

/*
 * Validate properties (inline, and a file's contents); the scratch
 * configuration is thrown away.  librdkafka starts no thread for a
 * configuration object.
 */
static bool
outbox_kafka_check(const char *inline_props, const char *file,
				   const char *file_contents, char **detail)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	bool		ok = outbox_conf_apply_user(conf, inline_props, file,
											file_contents, detail);

	rd_kafka_conf_destroy(conf);
	return ok;
}

/*
 * Apply outbox.consumer_properties (consumer-only properties, inline, no
 * secrets) to a consumer's conf.
 */
bool
outbox_kafka_conf_apply_consumer(rd_kafka_conf_t *conf, const char *props, char **detail)
{
	if (props == NULL || props[0] == '\0')
		return true;
	return outbox_conf_apply_text(conf, props, ';', "outbox.consumer_properties",
								  outbox_reserved_consumer_properties, detail);
}

/*
 * Validate outbox.consumer_properties for its check hook.
 */
bool
outbox_kafka_check_consumer_properties(const char *props, char **detail)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	bool		ok = outbox_kafka_conf_apply_consumer(conf, props, detail);

	rd_kafka_conf_destroy(conf);
	return ok;
}

/*
 * Validate user properties for a GUC check hook, reading the file when one
 * is named.  Runs in whatever process loads the settings.
 */
bool
outbox_kafka_check_properties(const char *inline_props, const char *file,
							  char **detail)
{
	char	   *contents = NULL;

	if (file != NULL && file[0] != '\0')
	{
		contents = outbox_read_properties_file(file, detail);
		if (contents == NULL)
			return false;
	}
	return outbox_kafka_check(inline_props, file, contents, detail);
}

/*
 * The producer's configuration as the settings give it now: the settings
 * and the properties file's contents, read once.  Two configurations are
 * the same producer when their signatures are equal.
 */
OutboxKafkaConfig *
outbox_kafka_config_read(void)
{
	OutboxKafkaConfig *config = palloc0(sizeof(OutboxKafkaConfig));
	char	   *detail = NULL;

	config->brokers = pstrdup(outbox_kafka_brokers);
	config->inline_props = pstrdup(outbox_kafka_properties ? outbox_kafka_properties : "");
	config->file = pstrdup(outbox_kafka_properties_file ? outbox_kafka_properties_file : "");
	if (config->file[0] != '\0')
		config->file_contents = outbox_read_properties_file(config->file, &detail);
	config->signature = psprintf("%s\n%s\n%s\n%s", config->brokers,
								 config->inline_props, config->file,
								 config->file_contents ? config->file_contents : "");
	config->consumer_props = pstrdup(outbox_consumer_properties ? outbox_consumer_properties : "");
	return config;
}

/*
 * May a producer be built from config?  *detail says why not (names, never
 * values).
 */
bool
outbox_kafka_config_check(const OutboxKafkaConfig *config, char **detail)
{
	if (config->file[0] != '\0' && config->file_contents == NULL)
	{
		*detail = psprintf("outbox.kafka_properties_file \"%s\" cannot be read.",
						   config->file);
		return false;
	}
	return outbox_kafka_check(config->inline_props, config->file,
							  config->file_contents, detail);
}

/*
 * Delivery report callback.  Runs inside rd_kafka_poll() in the relay's
 * thread; it only hands the outcome to the message's OutboxDelivery.
 */
static void
outbox_dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	OutboxProducer *producer = (OutboxProducer *) opaque;
	OutboxDelivery *delivery = (OutboxDelivery *) msg->_private;

	if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		producer->all_brokers_down = false;
	delivery->on_delivery(delivery, msg->err,
						  msg->err != RD_KAFKA_RESP_ERR_NO_ERROR &&
						  rd_kafka_message_status(msg) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED,
						  msg->partition, msg->offset);
}

/*
 * Error callback, served by rd_kafka_poll() in the relay's thread.  A fatal
 * error (the idempotent producer lost its guarantees) marks the producer for
 * replacement; all-brokers-down is remembered for outbox.stats.
 */
static void
outbox_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	OutboxProducer *producer = (OutboxProducer *) opaque;

	if (err == RD_KAFKA_RESP_ERR__FATAL)
	{
		char		errstr[512];
		rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, errstr, sizeof(errstr));

		producer->fatal = true;
		ereport(LOG,
				(errmsg("%s: Kafka producer failed fatally, recreating it: %s: %s",
						producer->label, rd_kafka_err2name(orig), errstr)));
		return;
	}
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		producer->all_brokers_down = true;
	ereport(DEBUG1,
			(errmsg("%s: Kafka: %s: %s",
					producer->label, rd_kafka_err2name(err), reason)));
}

/*
 * librdkafka log lines, served by rd_kafka_poll() in the relay's thread.
 * Warnings and worse reach the server log; the rest only at DEBUG1.
 */
static void
outbox_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	OutboxProducer *producer = (OutboxProducer *) rd_kafka_opaque(rk);

	ereport(level <= 4 ? LOG : DEBUG1,
			(errmsg("%s: librdkafka %s: %s", producer->label, fac, buf)));
}

/*
 * Open a wake-up pipe (non-blocking, close-on-exec) and its wait set: the
 * latch, postmaster death and the pipe's read end, made once for the life
 * of what waits on it, so that no epoll set is made per wait.  ERROR when no
 * pipe can be made.
 */
void
outbox_wake_pipe_open(OutboxWakePipe *wake, const char *label)
{
	if (pipe(wake->fds) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("%s: could not create a pipe: %m", label)));
	fcntl(wake->fds[0], F_SETFL, O_NONBLOCK);
	fcntl(wake->fds[1], F_SETFL, O_NONBLOCK);
	fcntl(wake->fds[0], F_SETFD, FD_CLOEXEC);
	fcntl(wake->fds[1], F_SETFD, FD_CLOEXEC);
#if PG_VERSION_NUM >= 170000
	wake->waits = CreateWaitEventSet(NULL, 3);
#else
	wake->waits = CreateWaitEventSet(TopMemoryContext, 3);
#endif
	AddWaitEventToSet(wake->waits, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wake->waits, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wake->waits, WL_SOCKET_READABLE, wake->fds[0], NULL, NULL);
}

void
outbox_wake_pipe_close(OutboxWakePipe *wake)
{
	FreeWaitEventSet(wake->waits);
	close(wake->fds[0]);
	close(wake->fds[1]);
}

/*
 * Wait up to timeout ms (-1: no limit) for the latch or the pipe; exits if
 * the postmaster dies.  Returns WL_LATCH_SET, WL_SOCKET_READABLE or
 * WL_TIMEOUT; resets the latch when it was set.
 */
int
outbox_wake_pipe_wait(OutboxWakePipe *wake, long timeout, uint32 wait_event_info)
{
	WaitEvent	ev;

	if (WaitEventSetWait(wake->waits, timeout, &ev, 1, wait_event_info) == 0)
		return WL_TIMEOUT;
	if (ev.events & WL_LATCH_SET)
		ResetLatch(MyLatch);
	return ev.events;
}

/*
 * Empty the pipe, before serving what it signalled.
 */
void
outbox_wake_pipe_drain(OutboxWakePipe *wake)
{
	char		buf[64];

	while (read(wake->fds[0], buf, sizeof(buf)) > 0)
		;
}

/*
 * A client configuration: defaults (name/value pairs ending with NULL) that
 * the user's properties may override, the user's properties (file, then
 * inline), then what outbox sets itself for every client: client.id, the
 * brokers, and log lines through the client's queue.  NULL with *detail set
 * when a property is refused.
 */
rd_kafka_conf_t *
outbox_kafka_conf_new(const OutboxKafkaConfig *config, const char *client_id,
					  const char *const (*defaults)[2], char **detail)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];
	int			i;

	for (i = 0; defaults[i][0] != NULL; i++)
		rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr, sizeof(errstr));
	if (rd_kafka_conf_set(conf, "client.id", client_id, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		!outbox_conf_apply_user(conf, config->inline_props, config->file,
								config->file_contents, detail) ||
		rd_kafka_conf_set(conf, "bootstrap.servers", config->brokers, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "log.queue", "true", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		if (*detail == NULL)
			*detail = pstrdup(errstr);
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	return conf;
}

/*
 * Create the idempotent producer.  ERROR when librdkafka refuses the
 * configuration (settings are validated at load, so this is rare).
 */
OutboxProducer *
outbox_kafka_create(const OutboxKafkaConfig *config, const char *client_id,
					const char *label)
{
	OutboxProducer *producer;
	rd_kafka_conf_t *conf;
	char		errstr[512];
	char	   *detail = NULL;

	conf = outbox_kafka_conf_new(config, client_id, outbox_default_properties, &detail);
	if (conf == NULL ||
		rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "acks", "all", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		if (conf != NULL)
			rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: invalid Kafka producer configuration", label),
				 errdetail("%s", detail ? detail : errstr)));
	}
	producer = MemoryContextAllocZero(TopMemoryContext, sizeof(OutboxProducer));
	producer->label = MemoryContextStrdup(TopMemoryContext, label);

	rd_kafka_conf_set_opaque(conf, producer);
	rd_kafka_conf_set_dr_msg_cb(conf, outbox_dr_msg_cb);
	rd_kafka_conf_set_error_cb(conf, outbox_error_cb);
	rd_kafka_conf_set_log_cb(conf, outbox_log_cb);

	PG_TRY();
	{
		outbox_wake_pipe_open(&producer->wake, label);
	}
	PG_CATCH();
	{
		rd_kafka_conf_destroy(conf);
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* rd_kafka_new takes ownership of conf, on success only */
	producer->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (producer->rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		outbox_wake_pipe_close(&producer->wake);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: could not create the Kafka producer", label),
				 errdetail("%s", errstr)));
	}
	rd_kafka_set_log_queue(producer->rk, NULL);
	producer->mainq = rd_kafka_queue_get_main(producer->rk);
	rd_kafka_queue_io_event_enable(producer->mainq, producer->wake.fds[1], "k", 1);
	return producer;
}

/*
 * Destroy a producer: anything still queued or in flight is purged (its
 * delivery reports are served first, as failures, so the relay keeps the
 * rows), then librdkafka's threads are joined.
 */
void
outbox_kafka_destroy(OutboxProducer *producer)
{
	if (producer == NULL)
		return;
	rd_kafka_purge(producer->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	outbox_kafka_serve(producer);
	rd_kafka_queue_io_event_enable(producer->mainq, -1, NULL, 0);
	rd_kafka_queue_destroy(producer->mainq);
	rd_kafka_destroy(producer->rk);
	outbox_wake_pipe_close(&producer->wake);
	pfree(producer->label);
	pfree(producer);
}

/*
 * Wait up to timeout ms (-1: no limit) for the latch, or for librdkafka to
 * have something for the relay (delivery reports, errors, log lines); exits
 * if the postmaster dies.  Returns WL_LATCH_SET, WL_SOCKET_READABLE or
 * WL_TIMEOUT; resets the latch when it was set.
 */
int
outbox_kafka_wait(OutboxProducer *producer, long timeout, uint32 wait_event_info)
{
	return outbox_wake_pipe_wait(&producer->wake, timeout, wait_event_info);
}

/*
 * Serve everything waiting on the main queue: drains the wake-up pipe, then
 * polls until the queue is empty.
 */
void
outbox_kafka_serve(OutboxProducer *producer)
{
	outbox_wake_pipe_drain(&producer->wake);
	while (rd_kafka_poll(producer->rk, 0) > 0)
		;
}

/*
 * Hand one record to librdkafka.  Returns the error librdkafka gives at once
 * (too large, unknown partition...), or NO_ERROR when a delivery report will
 * follow.  A full local queue is waited out by serving reports.
 *
 * The payload is not copied: librdkafka points at msg->value until the
 * message's delivery report was served or the producer was destroyed, and
 * the caller keeps it that long (the relay's batch memory lives until every
 * report of the batch is in).  Key and headers are copied.
 */
rd_kafka_resp_err_t
outbox_kafka_produce(OutboxProducer *producer, const OutboxMessage *msg,
					 OutboxDelivery *delivery)
{
	for (;;)
	{
		rd_kafka_headers_t *hdrs = rd_kafka_headers_new(msg->nheaders);
		rd_kafka_resp_err_t err;
		int			i;

		for (i = 0; i < msg->nheaders; i++)
			rd_kafka_header_add(hdrs, msg->headers[i].name, -1,
								msg->headers[i].value,
								(ssize_t) msg->headers[i].value_len);

		err = rd_kafka_producev(producer->rk,
								RD_KAFKA_V_TOPIC(msg->topic),
								RD_KAFKA_V_KEY(unconstify(char *, msg->key), msg->key_len),
								RD_KAFKA_V_VALUE(unconstify(char *, msg->value), msg->value_len),
								RD_KAFKA_V_MSGFLAGS(0),
								RD_KAFKA_V_HEADERS(hdrs),
								RD_KAFKA_V_TIMESTAMP(msg->timestamp_ms),
								RD_KAFKA_V_OPAQUE(delivery),
								RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return err;			/* librdkafka owns hdrs now */
		rd_kafka_headers_destroy(hdrs);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			return err;
		/*
		 * Local queue full: serve reports until there is room, waiting on the
		 * queue's pipe and the latch, so that postmaster death ends the wait.
		 */
		outbox_kafka_serve(producer);
		(void) outbox_kafka_wait(producer, 100, outbox_wait_event(OUTBOX_WAIT_RELAY_QUEUE_FULL));
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Wake librdkafka's broker threads to send what is queued.  Serves any
 * reports that are ready, in this thread.  Only with linger.ms=0 (the
 * default outbox sets) does this send at once: librdkafka ignores linger.ms
 * only while a flush() is running, and with no timeout that flag is cleared
 * before a broker thread looks at it, so linger.ms=1 added about 1 ms to
 * every event at low load (test/bench section 10).  A batch still goes out
 * in few requests: what is produced while a broker thread is busy is sent
 * together.
 */
void
outbox_kafka_send_now(OutboxProducer *producer)
{
	rd_kafka_flush(producer->rk, 0);
}

/*
 * True when the producer hit a fatal error and must be recreated.
 */
bool
outbox_kafka_failed_fatally(OutboxProducer *producer)
{
	return producer->fatal;
}

/*
 * False after librdkafka reported that every broker is down, until the next
 * successful delivery.
 */
bool
outbox_kafka_brokers_up(OutboxProducer *producer)
{
	return !producer->all_brokers_down;
}

/*
 * Errors for which retrying cannot help: the event goes straight to the
 * dead letters.
 */
bool
outbox_kafka_error_is_permanent(rd_kafka_resp_err_t err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
		case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
		case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
		case RD_KAFKA_RESP_ERR__INVALID_ARG:
		case RD_KAFKA_RESP_ERR_INVALID_RECORD:
		case RD_KAFKA_RESP_ERR_INVALID_MSG:
		case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
			return true;
		default:
			return false;
	}
}
