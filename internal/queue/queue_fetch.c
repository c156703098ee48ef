#include "queue_fetch.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "queue/queue_conn.h"

#define ERROR_BACKOFF_MS 250
#define ERROR_BACKOFF_MAX_MS 5000

struct aq_fetcher {
    natsSubscription *sub;
    aq_fetch_opts opts;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int in_use;     /* guarded by lock */
    int limit;      /* guarded by lock: 0, or fewer slots than opts.slots */
    bool paused;    /* guarded by lock */
    bool stopping;  /* guarded by lock */
};

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Wait for free slots; returns how many may be fetched, 0 when stopping. */
static int wait_for_slots(aq_fetcher *f)
{
    pthread_mutex_lock(&f->lock);
    int slots = f->limit > 0 && f->limit < f->opts.slots ? f->limit : f->opts.slots;
    while (!f->stopping && (f->paused || f->in_use >= slots)) {
        pthread_cond_wait(&f->cond, &f->lock);
        slots = f->limit > 0 && f->limit < f->opts.slots ? f->limit : f->opts.slots;
    }
    int free_slots = f->stopping ? 0 : slots - f->in_use;
    pthread_mutex_unlock(&f->lock);
    return free_slots < f->opts.max_batch ? free_slots : f->opts.max_batch;
}

static bool is_stopping(aq_fetcher *f)
{
    pthread_mutex_lock(&f->lock);
    bool s = f->stopping;
    pthread_mutex_unlock(&f->lock);
    return s;
}

static void *fetch_loop(void *arg)
{
    aq_fetcher *f = arg;
    int64_t backoff = ERROR_BACKOFF_MS;
    int n;
    while ((n = wait_for_slots(f)) > 0) {
        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus s = natsSubscription_Fetch(&list, f->sub, n, f->opts.wait_ms, &jerr);
        if (s == NATS_OK) {
            /* nats.c 3.4.1 can report one message more than the batch it
             * allocated room for when the server dies mid-fetch (seen under
             * ASan in chaos.nats_restart): never read past the batch. A
             * message lost that way is redelivered after AckWait. */
            if (list.Count > n)
                list.Count = n;
            backoff = ERROR_BACKOFF_MS;
            pthread_mutex_lock(&f->lock);
            f->in_use += list.Count;
            pthread_mutex_unlock(&f->lock);
            for (int i = 0; i < list.Count; i++) {
                f->opts.deliver(f->opts.ctx, list.Msgs[i]);
                list.Msgs[i] = NULL; /* ownership passed on */
                if (f->opts.release_on_return)
                    aq_fetcher_release(f, 1);
            }
            natsMsgList_Destroy(&list);
            continue;
        }
        natsMsgList_Destroy(&list);
        if (s == NATS_TIMEOUT)
            continue; /* an empty batch */
        if (is_stopping(f))
            break;
        if (f->opts.on_error) {
            aq_err err;
            aq_queue_nats_error(&err, s, jerr, "fetch");
            f->opts.on_error(f->opts.ctx, &err);
        }
        /* Disconnected or the consumer is gone: back off, never spin. */
        sleep_ms(backoff);
        backoff = backoff * 2 > ERROR_BACKOFF_MAX_MS ? ERROR_BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

aq_status aq_fetcher_start(jsCtx *js, const char *stream, const char *consumer,
                           const char *subject, const aq_fetch_opts *opts, aq_fetcher **out,
                           aq_err *err)
{
    aq_fetcher *f = calloc(1, sizeof(*f));
    if (!f)
        return aq_err_set(err, AQ_NOMEM, "fetcher: out of memory");
    f->opts = *opts;
    f->limit = opts->limit;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);

    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Consumer = consumer; /* bind: never create a consumer from here */
    jsErrCode jerr = 0;
    natsStatus s = js_PullSubscribe(&f->sub, js, subject, consumer, NULL, &so, &jerr);
    if (s != NATS_OK) {
        aq_fetcher_destroy(f);
        return aq_queue_nats_error(err, s, jerr, "binding to the consumer");
    }
    *out = f;
    if (pthread_create(&f->thread, NULL, fetch_loop, f) != 0) {
        *out = NULL;
        aq_fetcher_destroy(f);
        return aq_err_set(err, AQ_NOMEM, "fetcher: cannot start the thread");
    }
    f->running = true;
    return AQ_OK;
}

void aq_fetcher_limit(aq_fetcher *f, int n)
{
    pthread_mutex_lock(&f->lock);
    f->limit = n;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

void aq_fetcher_pause(aq_fetcher *f, bool paused)
{
    pthread_mutex_lock(&f->lock);
    f->paused = paused;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

void aq_fetcher_release(aq_fetcher *f, int n)
{
    pthread_mutex_lock(&f->lock);
    f->in_use -= n;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

bool aq_fetcher_try_take(aq_fetcher *f)
{
    pthread_mutex_lock(&f->lock);
    int slots = f->limit > 0 && f->limit < f->opts.slots ? f->limit : f->opts.slots;
    bool took = f->in_use < slots;
    if (took)
        f->in_use++;
    pthread_mutex_unlock(&f->lock);
    return took;
}

int aq_fetcher_in_use(aq_fetcher *f)
{
    pthread_mutex_lock(&f->lock);
    int n = f->in_use;
    pthread_mutex_unlock(&f->lock);
    return n;
}

void aq_fetcher_stop(aq_fetcher *f)
{
    if (!f || !f->running)
        return;
    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
    pthread_join(f->thread, NULL);
    f->running = false;
}

void aq_fetcher_destroy(aq_fetcher *f)
{
    if (!f)
        return;
    aq_fetcher_stop(f);
    if (f->sub) {
        natsSubscription_Unsubscribe(f->sub); /* interest only: the durable stays */
        natsSubscription_Destroy(f->sub);
    }
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
}
