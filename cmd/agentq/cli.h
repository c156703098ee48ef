/* Shared by the `agentq` subcommands: exit codes, option parsing, connecting. */
#ifndef AQ_CLI_H
#define AQ_CLI_H

#include <jansson.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stdio.h>

#include "core/config.h"
#include "core/status.h"
#include "queue/queue_config.h"
#include "queue/queue_conn.h"
#include "queue/queue_setup.h"

/* Exit codes: scripts can tell a usage mistake from an outage from a task
 * that failed. */
enum {
    CLI_OK = 0,
    CLI_TASK_FAILED = 1,  /* a result is FAILED (or a bulk run had failures) */
    CLI_USAGE = 2,        /* bad arguments or configuration */
    CLI_CONNECT = 3,      /* NATS unreachable or JetStream objects missing */
    CLI_NOT_DONE = 4,     /* not found, or timed out waiting */
    CLI_ERROR = 5,        /* anything else */
};

/* Parse argv (argv[0] is the subcommand) into `cfg` with `opts`; handles
 * --help and --print-config. `q` is the queue part of `cfg`: checked with
 * the values, before --print-config prints them, and the files it names
 * before a command goes on. A config file may hold the options of the
 * worker and of the other subcommands: skipped (cli_shared_options).
 * Returns -1 to go on, else the exit code. */
int cli_parse(const aq_option *opts, void *cfg, const aq_queue_config *q, int argc, char **argv,
              const char *usage, int *argi);

/* Every subcommand's option table (NULL-terminated), and the worker's. */
extern const aq_option cli_init_options[], cli_submit_options[], cli_get_options[],
    cli_stats_options[], cli_ls_options[], cli_show_options[], cli_replay_options[],
    cli_purge_options[], cli_dev_options[], cli_status_options[], cli_run_options[],
    cli_session_options[], cli_tools_options[], cli_tools_call_options[];
extern const aq_option *const cli_shared_options[];

/* Connect (and report failures on stderr); `js` may be NULL. Returns CLI_OK or
 * CLI_CONNECT. */
int cli_connect(const aq_queue_config *q, natsConnection **nc, jsCtx **js);

/* Print "agentq <cmd>: <message>" on stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int cmd_init(int argc, char **argv);
/* What `agentq init` creates (queue objects, the cache and budget buckets), shared with
 * `agentq dev`. `report` may be NULL. */
typedef struct cli_init_config {
    aq_queue_config queue;
    char *cache_bucket;
    int64_t cache_ttl_ms;
    char *budget_bucket;
    int64_t budget_ttl_ms;
    char *runs_bucket;
    int64_t runs_ttl_ms;
    int64_t runs_max_bytes;
    char *session_bucket;
    int64_t session_ttl_ms;
    int64_t session_max_bytes;
} cli_init_config;
aq_status cli_init_objects(jsCtx *js, const cli_init_config *cfg, aq_queue_report_fn report,
                           aq_err *err);
int cmd_submit(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_dlq(int argc, char **argv);
int cmd_dev(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_session(int argc, char **argv);
/* One message of a transcript or session as text (cmd_run.c). */
struct Agentq__V1__Message;
void cli_print_message(FILE *out, const struct Agentq__V1__Message *m, const char *indent);
int cmd_tools(int argc, char **argv);

/* The queue as the server sees it: `agentq stats` prints it, `agentq status`
 * puts it above the fleet (cmd_stats.c). */
typedef struct cli_queue_info {
    int64_t tasks_in_stream;
    int64_t pending;       /* consumer NumPending: not yet delivered */
    int64_t ack_pending;   /* delivered, not yet acked */
    int64_t redelivered;
    int64_t waiting_pulls;
    int64_t dead_letters;  /* DLQ stream messages */
    int64_t results;       /* messages in the results bucket's stream */
} cli_queue_info;

/* Read the task stream, DLQ, results bucket and consumer info; `out` is
 * written only on success. */
aq_status cli_queue_probe(jsCtx *js, const aq_queue_config *q, cli_queue_info *out, aq_err *err);
/* `agentq stats --json`'s object (those field names, in that order); NULL
 * when out of memory. */
json_t *cli_queue_info_json(const cli_queue_info *qi);

/* Wait for the results of `ids` (subscribed to the bucket's puts, with
 * direct gets for those already stored), print each as a JSON line as it
 * arrives when `print` is set. Returns CLI_OK when all are COMPLETED,
 * CLI_TASK_FAILED when some FAILED, CLI_NOT_DONE on timeout. */
int cli_wait_results(natsConnection *nc, jsCtx *js, const aq_queue_config *q, char **ids, size_t n,
                     int64_t timeout_ms, bool print, const char *cmd);

#endif
