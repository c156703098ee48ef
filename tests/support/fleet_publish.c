/* fleet_publish: a fake worker for the `agentq status` tests. It runs the
 * real reporter (internal/fleet) on a libevent loop against a real NATS
 * server, and fills every snapshot with known figures.
 *
 *   fleet_publish [--url URL] [--prefix agentq.status] --worker NAME
 *                 [--interval MS] [--figures JSON] [--run MS]
 *   fleet_publish [--url URL] [--prefix P] --worker NAME --raw TEXT
 *
 * The second form publishes TEXT once, as it is, on <prefix>.<NAME> (what a
 * broken or newer worker might send) and exits.
 *
 * --figures is a snapshot in its JSON form (it must decode: "v", "worker"
 * and "sent_ms" present, their values are replaced by the reporter's own).
 * Runs until SIGTERM/SIGINT or --run milliseconds, then stops the reporter
 * (which publishes the `stopping` snapshot) and exits 0. Exit 1 on errors,
 * 2 on usage. --url defaults to $AGENTQ_NATS_URL, then nats://127.0.0.1:4222.
 */
#include <event2/event.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "fleet/fleet_reporter.h"
#include "fleet/fleet_snapshot.h"

static aq_fleet_snapshot figures;

static void fill(void *ctx, aq_fleet_snapshot *snap)
{
    (void)ctx;
    *snap = figures; /* identity fields are the reporter's again afterwards */
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static int usage(const char *why)
{
    fprintf(stderr,
            "fleet_publish: %s\nusage: fleet_publish [--url URL] [--prefix P] --worker NAME "
            "[--interval MS] [--figures JSON] [--run MS] [--raw TEXT]\n",
            why);
    return 2;
}

int main(int argc, char **argv)
{
    const char *url = getenv("AGENTQ_NATS_URL"), *prefix = "agentq.status", *worker = NULL;
    const char *fig_json = NULL, *raw = NULL;
    int64_t interval_ms = 1000, run_ms = 0;
    int rc = 1;
    struct event_base *base = NULL;
    struct event *sigterm = NULL, *sigint = NULL, *timer = NULL;
    natsConnection *nc = NULL;
    aq_fleet_reporter *rep = NULL;
    aq_err err;

    if (!url || !*url)
        url = "nats://127.0.0.1:4222";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage("every option needs a value");
        i++;
        if (strcmp(a, "--url") == 0)
            url = v;
        else if (strcmp(a, "--prefix") == 0)
            prefix = v;
        else if (strcmp(a, "--worker") == 0)
            worker = v;
        else if (strcmp(a, "--figures") == 0)
            fig_json = v;
        else if (strcmp(a, "--raw") == 0)
            raw = v;
        else if (strcmp(a, "--interval") == 0 && aq_parse_int(v, &interval_ms) == AQ_OK)
            ;
        else if (strcmp(a, "--run") == 0 && aq_parse_int(v, &run_ms) == AQ_OK)
            ;
        else
            return usage("unknown option or bad value");
    }
    if (!worker)
        return usage("--worker is required");
    aq_fleet_snapshot_init(&figures);
    if (fig_json && aq_fleet_snapshot_decode(fig_json, strlen(fig_json), &figures, &err) != AQ_OK) {
        fprintf(stderr, "fleet_publish: --figures: %s\n", err.msg);
        return 2;
    }

    natsStatus s = natsConnection_ConnectTo(&nc, url);
    if (s != NATS_OK) {
        fprintf(stderr, "fleet_publish: connect: %s\n", natsStatus_GetText(s));
        goto out;
    }
    if (raw) {
        char subject[AQ_FLEET_PREFIX_MAX + AQ_FLEET_WORKER_MAX + 2];
        snprintf(subject, sizeof(subject), "%s.%s", prefix, worker);
        s = natsConnection_PublishString(nc, subject, raw);
        if (s == NATS_OK)
            s = natsConnection_Flush(nc);
        if (s != NATS_OK)
            fprintf(stderr, "fleet_publish: publish: %s\n", natsStatus_GetText(s));
        else
            rc = 0;
        goto out;
    }
    if (!(base = event_base_new()))
        goto out;
    sigterm = evsignal_new(base, SIGTERM, on_stop, base);
    sigint = evsignal_new(base, SIGINT, on_stop, base);
    if (!sigterm || !sigint || evsignal_add(sigterm, NULL) != 0 || evsignal_add(sigint, NULL) != 0)
        goto out;
    if (run_ms > 0) {
        struct timeval tv = {.tv_sec = run_ms / 1000,
                             .tv_usec = (suseconds_t)(run_ms % 1000) * 1000};
        if (!(timer = evtimer_new(base, on_stop, base)) || evtimer_add(timer, &tv) != 0)
            goto out;
    }
    if (aq_fleet_reporter_start(base, nc, prefix, worker, interval_ms, fill, NULL, &rep, &err) !=
        AQ_OK) {
        fprintf(stderr, "fleet_publish: %s\n", err.msg);
        goto out;
    }
    event_base_dispatch(base);
    uint64_t published = 0, failed = 0;
    aq_fleet_reporter_stats(rep, &published, &failed, &err);
    aq_fleet_reporter_destroy(rep);
    rep = NULL;
    fprintf(stderr, "fleet_publish: %s: %llu snapshots published, %llu failed%s%s\n", worker,
            (unsigned long long)published, (unsigned long long)failed, failed ? ": " : "",
            failed ? err.msg : "");
    rc = failed ? 1 : 0;
out:
    aq_fleet_reporter_destroy(rep);
    if (timer)
        event_free(timer);
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (base)
        event_base_free(base);
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
