# outbox: PGXS build of the extension, its tests and its test Kafka broker.

MODULE_big = outbox
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c))
EXTENSION = outbox
DATA = $(wildcard sql/outbox--*.sql)
PGFILEDESC = "outbox - transactional outbox to Apache Kafka"

SHLIB_LINK += -lrdkafka

# pg_regress: every sql/NAME.sql except the install and upgrade scripts
REGRESS = $(filter-out outbox--%,$(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-config=test/regress.conf --temp-instance=tmp_check

# isolation specs: test/isolation/specs/NAME.spec, expected output beside them
ISOLATION = $(basename $(notdir $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --temp-config=test/regress.conf --temp-instance=tmp_check_iso

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# after PGXS, which resets it: the tests' shared Perl module
PG_PROVE_FLAGS += -I $(srcdir)/test/perl

# PGXS tracks no header dependencies: rebuild everything when a header changes
$(OBJS): $(wildcard src/*.h)

# The Kafka-protocol test broker (librdkafka's mock cluster)
test/kafka_broker: test/kafka_broker.c
	$(CC) $(CFLAGS) $(PG_CFLAGS) -o $@ $< -lrdkafka

all: test/kafka_broker
