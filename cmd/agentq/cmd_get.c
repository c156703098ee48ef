/* Reading results: get (now) and wait (until they exist). */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/clock.h"
#include "task/task_codec.h"
#include "task/task_json.h"

typedef struct get_config {
    aq_queue_config queue;
    int64_t timeout_ms;
} get_config;

const aq_option cli_get_options[] = {
    AQ_QUEUE_OPTIONS(get_config, queue),
    {"timeout", "AGENTQ_WAIT_TIMEOUT", AQ_OPT_DURATION, "60s", 0, 86400000,
     offsetof(get_config, timeout_ms), "wait: give up after this long"},
    AQ_OPTIONS_END,
};

/* Print a stored value as a JSON line; returns its status. */
static Agentq__V1__Status print_result(const void *data, size_t len, const char *key, bool print)
{
    Agentq__V1__Result *r = NULL;
    aq_err err;
    if (aq_result_unpack(data, len, &r, &err) != AQ_OK) {
        fprintf(stderr, "agentq: result %s: %s\n", key, err.msg);
        return AGENTQ__V1__STATUS__STATUS_UNSPECIFIED;
    }
    Agentq__V1__Status st = r->status;
    if (print) {
        json_t *o = aq_result_to_json(r);
        json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        putchar('\n');
        fflush(stdout);
        json_decref(o);
    }
    aq_result_free(r);
    return st;
}

static int result_code(size_t failed, size_t missing)
{
    return missing ? CLI_NOT_DONE : failed ? CLI_TASK_FAILED : CLI_OK;
}

int cmd_get(int argc, char **argv)
{
    get_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    size_t failed = 0, missing = 0;
    int argi, rc = cli_parse(cli_get_options, &cfg, &cfg.queue, argc, argv,
                             "agentq get [options] ID...", &argi);
    if (rc >= 0)
        goto out;
    if (argi >= argc) {
        cli_error("get", "give at least one task id");
        rc = CLI_USAGE;
        goto out;
    }
    if ((rc = cli_connect(&cfg.queue, &nc, &js)) != CLI_OK)
        goto out;
    natsStatus s = js_KeyValue(&kv, js, cfg.queue.results_bucket);
    if (s != NATS_OK) {
        cli_error("get", "results bucket %s: %s", cfg.queue.results_bucket, natsStatus_GetText(s));
        rc = CLI_CONNECT;
        goto out;
    }
    for (int i = argi; i < argc; i++) {
        kvEntry *e = NULL;
        if (!aq_task_id_valid(argv[i])) {
            cli_error("get", "'%s' is not a valid task id", argv[i]);
            missing++;
            continue;
        }
        s = kvStore_Get(&e, kv, argv[i]);
        if (s == NATS_NOT_FOUND) {
            cli_error("get", "no result for %s (not finished, never submitted, or expired)", argv[i]);
            missing++;
            continue;
        }
        if (s != NATS_OK) {
            cli_error("get", "%s: %s", argv[i], natsStatus_GetText(s));
            missing++;
            continue;
        }
        if (print_result(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), argv[i], true) !=
            AGENTQ__V1__STATUS__STATUS_COMPLETED)
            failed++;
        kvEntry_Destroy(e);
    }
    rc = result_code(failed, missing);
out:
    kvStore_Destroy(kv);
    aq_queue_disconnect(nc, js);
    aq_config_free(cli_get_options, &cfg);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cli_wait_results(jsCtx *js, const aq_queue_config *q, char **ids, size_t n, int64_t timeout_ms,
                     bool print, const char *cmd)
{
    kvStore *kv = NULL;
    kvWatcher *w = NULL;
    char **sorted = calloc(n ? n : 1, sizeof(*sorted));
    bool *seen = calloc(n ? n : 1, sizeof(*seen));
    size_t done = 0, failed = 0;
    int rc = CLI_ERROR;
    if (!sorted || !seen)
        goto out;
    memcpy(sorted, ids, n * sizeof(*ids));
    qsort(sorted, n, sizeof(*sorted), cmp_str);

    natsStatus s = js_KeyValue(&kv, js, q->results_bucket);
    if (s == NATS_OK) {
        /* One watcher over the bucket: it replays what is stored, then
         * streams updates, so a result that lands meanwhile is not missed. */
        kvWatchOptions wo;
        kvWatchOptions_Init(&wo);
        wo.IgnoreDeletes = true;
        s = kvStore_WatchAll(&w, kv, &wo);
    }
    if (s != NATS_OK) {
        cli_error(cmd, "results bucket %s: %s", q->results_bucket, natsStatus_GetText(s));
        rc = CLI_CONNECT;
        goto out;
    }
    int64_t deadline = aq_mono_ms() + timeout_ms;
    while (done < n) {
        int64_t left = deadline - aq_mono_ms();
        if (left <= 0)
            break;
        kvEntry *e = NULL;
        s = kvWatcher_Next(&e, w, left);
        if (s == NATS_TIMEOUT)
            break;
        if (s != NATS_OK || !e)
            continue; /* the end-of-initial-values marker is a NULL entry */
        const char *key = kvEntry_Key(e);
        char **hit = bsearch(&key, sorted, n, sizeof(*sorted), cmp_str);
        if (hit && !seen[hit - sorted]) {
            seen[hit - sorted] = true;
            done++;
            if (print_result(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), key, print) !=
                AGENTQ__V1__STATUS__STATUS_COMPLETED)
                failed++;
        }
        kvEntry_Destroy(e);
    }
    if (done < n) {
        cli_error(cmd, "timed out: %zu of %zu results arrived", done, n);
        for (size_t i = 0, shown = 0; i < n && shown < 10; i++)
            if (!seen[i] && ++shown)
                fprintf(stderr, "  still waiting for %s\n", sorted[i]);
    }
    rc = result_code(failed, n - done);
out:
    kvWatcher_Destroy(w);
    kvStore_Destroy(kv);
    free(sorted);
    free(seen);
    return rc;
}

int cmd_wait(int argc, char **argv)
{
    get_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    int argi, rc = cli_parse(cli_get_options, &cfg, &cfg.queue, argc, argv,
                             "agentq wait [--timeout 60s] [options] ID...", &argi);
    if (rc >= 0)
        goto out;
    if (argi >= argc) {
        cli_error("wait", "give at least one task id");
        rc = CLI_USAGE;
        goto out;
    }
    if ((rc = cli_connect(&cfg.queue, &nc, &js)) != CLI_OK)
        goto out;
    rc = cli_wait_results(js, &cfg.queue, argv + argi, (size_t)(argc - argi), cfg.timeout_ms, true,
                          "wait");
out:
    aq_queue_disconnect(nc, js);
    aq_config_free(cli_get_options, &cfg);
    return rc;
}
