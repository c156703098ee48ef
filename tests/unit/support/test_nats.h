/* A real nats-server for unit tests that need one: started on a free
 * loopback port in a scratch directory (JetStream on, its store there), and
 * stopped and removed at the end. The server dies with the test process
 * even when the test crashes. */
#ifndef AQ_TEST_NATS_H
#define AQ_TEST_NATS_H

#include <nats/nats.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct aq_test_nats {
    pid_t pid;
    char dir[64];
    char url[128];
} aq_test_nats;

/* 0 once the server listens (url filled), -1 when it did not start within
 * 10 s. `name` goes into the directory's name (/tmp/aq-<name>.XXXXXX). */
int aq_test_nats_start(aq_test_nats *s, const char *name, bool jetstream);
/* Connect to it, retrying for up to 5 s. */
natsStatus aq_test_nats_connect(const aq_test_nats *s, natsConnection **nc);
/* Stop it (waking it first, should a test have stopped it) and remove its
 * directory. Accepts a server that never started. */
void aq_test_nats_stop(aq_test_nats *s);

#endif
