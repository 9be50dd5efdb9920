/*-------------------------------------------------------------------------
 *
 * kafka_broker.c
 *		Kafka-protocol test broker for the outbox regression tests.
 *
 * This is a small stand-alone program that starts a librdkafka mock
 * cluster (see <librdkafka/rdkafka_mock.h>) so that the outbox relay can
 * be tested against something that speaks the Kafka protocol without a
 * real Kafka installation.  Faults (brokers going down, latency, request
 * errors, topic errors) can be injected at run time through commands read
 * from standard input.
 *
 * Build:
 *		cc -Wall -Wextra -O2 -o test/kafka_broker test/kafka_broker.c -lrdkafka
 *
 * Usage:
 *		kafka_broker [-n BROKERS] [-f FILE]
 *
 *		-n BROKERS	number of mock brokers (default 1), with ids 1..BROKERS
 *		-f FILE		also write the bootstrap servers (plus a newline) to FILE,
 *					atomically (FILE.tmp is written, then renamed to FILE)
 *
 * On start-up exactly one line "bootstrap HOST:PORT[,HOST:PORT...]" is
 * printed to stdout.  After that one command per line is read from stdin
 * and each is answered with one line on stdout, either "ok" or
 * "error <text>".  Blank lines are ignored (and not answered).
 *
 *		down ID|all				take broker ID (or every broker) down
 *		up ID|all				bring broker ID (or every broker) back up
 *		rtt ID|all MS			set the broker's round-trip latency in ms
 *		error APIKEY ERRCODE COUNT
 *								the next COUNT requests with Kafka API key
 *								APIKEY (0 = Produce, 1 = Fetch, 3 = Metadata,
 *								...) fail with Kafka error code ERRCODE;
 *								COUNT 0 clears the pending errors of APIKEY
 *		topic NAME PARTITIONS	create a topic (replication factor 1 is asked
 *								for, but the 2.0.2 mock still lists
 *								min(3, BROKERS) replicas in Metadata)
 *		topic_error NAME ERRCODE
 *								make requests on the topic fail with ERRCODE
 *								(0 clears); note that librdkafka 2.0.2 only
 *								applies this to Metadata (and
 *								AddPartitionsToTxn) requests
 *		ping					answers "ok"
 *		quit					exit
 *
 * The program exits with status 0 on end of file on stdin, on "quit", and
 * on SIGTERM or SIGINT, destroying the mock cluster cleanly (a signal is
 * acted on once the command being executed, if any, is done).  The mock
 * cluster's thread sometimes only notices a command after its 1 s poll
 * timeout, so a command or the shutdown can take up to about a second
 * (seen with librdkafka 2.0.2).
 *
 * Beware that a non-interactive shell starts "cmd &" with stdin redirected
 * from /dev/null, so the broker would exit at once: feed it from a pipe or
 * FIFO instead (e.g. "sleep infinity | kafka_broker -f FILE &").
 *
 * Topics that do not exist are created automatically when a client asks
 * for them in a Metadata request (which producers and consumers do), with
 * the mock cluster's default of 4 partitions and a replication factor of
 * min(3, BROKERS).  Messages are kept in memory only.  The mock broker only
 * answers a Fetch request once the client's fetch max wait time has
 * expired, so consumers should use a small fetch.wait.max.ms.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_BROKERS		100
#define MAX_ERROR_COUNT	1000000
#define LINE_BUFSIZE	4096
#define MAX_ARGS		8
#define ERRMSG_SIZE		512

static rd_kafka_mock_cluster_t *mcluster = NULL;
static int	broker_count = 1;

/* self-pipe used to wake up the main loop when a signal arrives */
static int	signal_pipe[2] = {-1, -1};
static volatile sig_atomic_t got_signal = 0;

static void
handle_signal(int signo)
{
	int			save_errno = errno;
	char		c = (char) signo;
	ssize_t		rc;

	got_signal = signo;
	rc = write(signal_pipe[1], &c, 1);
	(void) rc;
	errno = save_errno;
}

static void
usage(const char *progname)
{
	fprintf(stderr,
			"usage: %s [-n BROKERS (default 1)] [-f FILE]\n"
			"Starts a librdkafka mock Kafka cluster, prints its bootstrap\n"
			"servers and then executes fault-injection commands read from\n"
			"stdin.\n",
			progname);
}

/*
 * Parse a whole string as a decimal integer within [min, max].
 */
static bool
parse_long(const char *str, long min, long max, long *result)
{
	char	   *end;
	long		val;

	if (str == NULL || *str == '\0')
		return false;
	errno = 0;
	val = strtol(str, &end, 10);
	if (errno != 0 || *end != '\0' || val < min || val > max)
		return false;
	*result = val;
	return true;
}

/*
 * Parse a broker id: "all" gives -1 (meaning every broker to the mock API),
 * otherwise a number between 1 and the number of brokers.
 */
static bool
parse_broker_id(const char *str, int32_t *id, char *errmsg)
{
	long		val;

	if (strcmp(str, "all") == 0)
	{
		*id = -1;
		return true;
	}
	if (!parse_long(str, 1, broker_count, &val))
	{
		snprintf(errmsg, ERRMSG_SIZE,
				 "invalid broker id \"%s\" (expected 1..%d or all)",
				 str, broker_count);
		return false;
	}
	*id = (int32_t) val;
	return true;
}

static bool
parse_errcode(const char *str, rd_kafka_resp_err_t *err, char *errmsg)
{
	long		val;

	if (!parse_long(str, INT16_MIN, INT16_MAX, &val))
	{
		snprintf(errmsg, ERRMSG_SIZE, "invalid error code \"%s\"", str);
		return false;
	}
	*err = (rd_kafka_resp_err_t) val;
	return true;
}

static bool
check_mock_result(rd_kafka_resp_err_t err, char *errmsg)
{
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return true;
	snprintf(errmsg, ERRMSG_SIZE, "%s", rd_kafka_err2str(err));
	return false;
}

static bool
check_nargs(int nargs, int expected, const char *syntax, char *errmsg)
{
	if (nargs == expected)
		return true;
	snprintf(errmsg, ERRMSG_SIZE, "usage: %s", syntax);
	return false;
}

/*
 * Execute one command line.  Returns true on success; on failure a message
 * is left in errmsg.  *quit is set when the program should exit.
 */
static bool
execute_command(char *line, bool *quit, char *errmsg)
{
	char	   *args[MAX_ARGS];
	int			nargs = 0;
	char	   *saveptr = NULL;
	char	   *tok;
	const char *cmd;

	for (tok = strtok_r(line, " \t\r", &saveptr);
		 tok != NULL;
		 tok = strtok_r(NULL, " \t\r", &saveptr))
	{
		if (nargs == MAX_ARGS)
		{
			snprintf(errmsg, ERRMSG_SIZE, "too many arguments");
			return false;
		}
		args[nargs++] = tok;
	}
	if (nargs == 0)
	{
		snprintf(errmsg, ERRMSG_SIZE, "empty command");
		return false;
	}
	cmd = args[0];

	if (strcmp(cmd, "ping") == 0)
		return check_nargs(nargs, 1, "ping", errmsg);
	else if (strcmp(cmd, "quit") == 0)
	{
		if (!check_nargs(nargs, 1, "quit", errmsg))
			return false;
		*quit = true;
		return true;
	}
	else if (strcmp(cmd, "down") == 0 || strcmp(cmd, "up") == 0)
	{
		int32_t		id;
		rd_kafka_resp_err_t err;

		if (!check_nargs(nargs, 2, "down|up ID|all", errmsg) ||
			!parse_broker_id(args[1], &id, errmsg))
			return false;
		if (cmd[0] == 'd')
			err = rd_kafka_mock_broker_set_down(mcluster, id);
		else
			err = rd_kafka_mock_broker_set_up(mcluster, id);
		return check_mock_result(err, errmsg);
	}
	else if (strcmp(cmd, "rtt") == 0)
	{
		int32_t		id;
		long		ms;

		if (!check_nargs(nargs, 3, "rtt ID|all MS", errmsg) ||
			!parse_broker_id(args[1], &id, errmsg))
			return false;
		if (!parse_long(args[2], 0, INT_MAX, &ms))
		{
			snprintf(errmsg, ERRMSG_SIZE, "invalid latency \"%s\"", args[2]);
			return false;
		}
		return check_mock_result(rd_kafka_mock_broker_set_rtt(mcluster, id,
															  (int) ms),
								 errmsg);
	}
	else if (strcmp(cmd, "error") == 0)
	{
		long		apikey;
		long		count;
		rd_kafka_resp_err_t code;
		rd_kafka_resp_err_t *errors;
		long		i;

		if (!check_nargs(nargs, 4, "error APIKEY ERRCODE COUNT", errmsg))
			return false;
		if (!parse_long(args[1], 0, INT16_MAX, &apikey))
		{
			snprintf(errmsg, ERRMSG_SIZE, "invalid API key \"%s\"", args[1]);
			return false;
		}
		if (!parse_errcode(args[2], &code, errmsg))
			return false;
		if (!parse_long(args[3], 0, MAX_ERROR_COUNT, &count))
		{
			snprintf(errmsg, ERRMSG_SIZE,
					 "invalid count \"%s\" (expected 0..%d)",
					 args[3], MAX_ERROR_COUNT);
			return false;
		}
		if (count == 0)
		{
			rd_kafka_mock_clear_request_errors(mcluster, (int16_t) apikey);
			return true;
		}
		errors = malloc(sizeof(rd_kafka_resp_err_t) * (size_t) count);
		if (errors == NULL)
		{
			snprintf(errmsg, ERRMSG_SIZE, "out of memory");
			return false;
		}
		for (i = 0; i < count; i++)
			errors[i] = code;
		rd_kafka_mock_push_request_errors_array(mcluster, (int16_t) apikey,
												(size_t) count, errors);
		free(errors);
		return true;
	}
	else if (strcmp(cmd, "topic") == 0)
	{
		long		partitions;

		if (!check_nargs(nargs, 3, "topic NAME PARTITIONS", errmsg))
			return false;
		if (!parse_long(args[2], 1, 100000, &partitions))
		{
			snprintf(errmsg, ERRMSG_SIZE, "invalid partition count \"%s\"",
					 args[2]);
			return false;
		}
		return check_mock_result(rd_kafka_mock_topic_create(mcluster, args[1],
															(int) partitions,
															1),
								 errmsg);
	}
	else if (strcmp(cmd, "topic_error") == 0)
	{
		rd_kafka_resp_err_t code;

		if (!check_nargs(nargs, 3, "topic_error NAME ERRCODE", errmsg) ||
			!parse_errcode(args[2], &code, errmsg))
			return false;
		rd_kafka_mock_topic_set_error(mcluster, args[1], code);
		return true;
	}

	snprintf(errmsg, ERRMSG_SIZE, "unknown command \"%s\"", cmd);
	return false;
}

/*
 * Handle one input line (without its newline) and print the answer.
 * Returns false if the program should exit.
 */
static bool
handle_line(char *line)
{
	char		errmsg[ERRMSG_SIZE];
	bool		quit = false;

	if (line[strspn(line, " \t\r")] == '\0')
		return true;			/* blank line: ignore */

	if (execute_command(line, &quit, errmsg))
		fputs("ok\n", stdout);
	else
		fprintf(stdout, "error %s\n", errmsg);
	fflush(stdout);

	return !quit;
}

/*
 * Write the bootstrap servers to path atomically.
 */
static bool
write_bootstrap_file(const char *path, const char *bootstraps)
{
	size_t		len = strlen(path);
	char	   *tmppath = malloc(len + 5);
	FILE	   *fp;
	bool		ok;

	if (tmppath == NULL)
		return false;
	snprintf(tmppath, len + 5, "%s.tmp", path);

	fp = fopen(tmppath, "w");
	if (fp == NULL)
	{
		fprintf(stderr, "kafka_broker: could not open \"%s\": %s\n",
				tmppath, strerror(errno));
		free(tmppath);
		return false;
	}
	ok = fprintf(fp, "%s\n", bootstraps) >= 0;
	ok = (fclose(fp) == 0) && ok;
	if (!ok)
		fprintf(stderr, "kafka_broker: could not write \"%s\": %s\n",
				tmppath, strerror(errno));
	else if (rename(tmppath, path) != 0)
	{
		fprintf(stderr, "kafka_broker: could not rename \"%s\" to \"%s\": %s\n",
				tmppath, path, strerror(errno));
		ok = false;
	}
	if (!ok)
		unlink(tmppath);
	free(tmppath);
	return ok;
}

/*
 * Read and execute commands from stdin until EOF, "quit" or a signal.
 */
static void
command_loop(void)
{
	char		buf[LINE_BUFSIZE];
	size_t		len = 0;
	bool		discarding = false;

	while (!got_signal)
	{
		struct pollfd pfd[2];
		ssize_t		n;
		char	   *start;
		char	   *nl;

		pfd[0].fd = STDIN_FILENO;
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		pfd[1].fd = signal_pipe[0];
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;

		if (poll(pfd, 2, -1) < 0)
		{
			if (errno == EINTR)
				continue;
			fprintf(stderr, "kafka_broker: poll failed: %s\n", strerror(errno));
			return;
		}
		if (pfd[1].revents != 0)
			return;
		if (pfd[0].revents == 0)
			continue;

		n = read(STDIN_FILENO, buf + len, sizeof(buf) - 1 - len);
		if (n < 0)
		{
			if (errno == EINTR || errno == EAGAIN)
				continue;
			fprintf(stderr, "kafka_broker: read failed: %s\n", strerror(errno));
			return;
		}
		if (n == 0)
		{
			/* EOF: execute a last unterminated line, if any */
			if (len > 0 && !discarding)
			{
				buf[len] = '\0';
				handle_line(buf);
			}
			return;
		}
		len += (size_t) n;

		/* execute every complete line in the buffer */
		start = buf;
		while ((nl = memchr(start, '\n', len - (size_t) (start - buf))) != NULL)
		{
			*nl = '\0';
			if (discarding)
			{
				fputs("error line too long\n", stdout);
				fflush(stdout);
				discarding = false;
			}
			else if (!handle_line(start))
				return;
			start = nl + 1;
		}
		len -= (size_t) (start - buf);
		memmove(buf, start, len);

		/* an over-long line: throw it away up to its newline */
		if (len == sizeof(buf) - 1)
		{
			discarding = true;
			len = 0;
		}
	}
}

int
main(int argc, char **argv)
{
	const char *bootstrap_file = NULL;
	const char *bootstraps;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	char		errstr[512];
	struct sigaction sa;
	sigset_t	blocked;
	sigset_t	oldmask;
	int			c;
	int			i;

	while ((c = getopt(argc, argv, "n:f:h")) != -1)
	{
		long		val;

		switch (c)
		{
			case 'n':
				if (!parse_long(optarg, 1, MAX_BROKERS, &val))
				{
					fprintf(stderr,
							"kafka_broker: invalid broker count \"%s\" "
							"(expected 1..%d)\n",
							optarg, MAX_BROKERS);
					return 2;
				}
				broker_count = (int) val;
				break;
			case 'f':
				bootstrap_file = optarg;
				break;
			case 'h':
				usage(argv[0]);
				return 0;
			default:
				usage(argv[0]);
				return 2;
		}
	}
	if (optind < argc)
	{
		usage(argv[0]);
		return 2;
	}

	/* set up the self-pipe and the signal handlers (without SA_RESTART) */
	if (pipe(signal_pipe) != 0)
	{
		fprintf(stderr, "kafka_broker: could not create pipe: %s\n",
				strerror(errno));
		return 1;
	}
	for (i = 0; i < 2; i++)
	{
		int			flags = fcntl(signal_pipe[i], F_GETFL);

		fcntl(signal_pipe[i], F_SETFL, flags | O_NONBLOCK);
		fcntl(signal_pipe[i], F_SETFD, FD_CLOEXEC);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	/*
	 * Block the signals while librdkafka starts its threads, so that they
	 * inherit the blocked mask and signals are delivered to this thread.
	 */
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGTERM);
	sigaddset(&blocked, SIGINT);
	pthread_sigmask(SIG_BLOCK, &blocked, &oldmask);

	/* the mock cluster needs a client handle for its bookkeeping */
	conf = rd_kafka_conf_new();
	/* log_level 4 hides the notice about bootstrap.servers being unset */
	if (rd_kafka_conf_set(conf, "client.id", "kafka_broker",
						  errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "log_level", "4",
						  errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		fprintf(stderr, "kafka_broker: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 1;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "kafka_broker: could not create client: %s\n", errstr);
		return 1;
	}

	mcluster = rd_kafka_mock_cluster_new(rk, broker_count);
	if (mcluster == NULL)
	{
		fprintf(stderr, "kafka_broker: could not create mock cluster\n");
		rd_kafka_destroy(rk);
		return 1;
	}

	pthread_sigmask(SIG_SETMASK, &oldmask, NULL);

	bootstraps = rd_kafka_mock_cluster_bootstraps(mcluster);

	if (bootstrap_file != NULL &&
		!write_bootstrap_file(bootstrap_file, bootstraps))
	{
		rd_kafka_mock_cluster_destroy(mcluster);
		rd_kafka_destroy(rk);
		return 1;
	}

	fprintf(stdout, "bootstrap %s\n", bootstraps);
	fflush(stdout);

	command_loop();

	rd_kafka_mock_cluster_destroy(mcluster);
	rd_kafka_destroy(rk);

	return 0;
}
