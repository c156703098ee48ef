#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/mailbox.h"

enum { POSTERS = 6, PER_POSTER = 20000 };

typedef struct item {
    aq_mailbox_node node;
    int poster;
    int seq;
    atomic_int runs;
} item;

typedef struct ctx {
    struct event_base *base;
    aq_mailbox *mb;
    pthread_t loop_thread;
    int total;
    int done;            /* loop thread only */
    int next_seq[POSTERS];
    int wrong_thread;
    int out_of_order;
    item *items[POSTERS];
    atomic_int go;
} ctx;

typedef struct poster_arg {
    ctx *c;
    int id;
} poster_arg;

static ctx *g_ctx;

static void on_item(void *arg)
{
    item *it = arg;
    ctx *c = g_ctx;
    atomic_fetch_add(&it->runs, 1);
    if (!pthread_equal(pthread_self(), c->loop_thread))
        c->wrong_thread++;
    if (it->seq != c->next_seq[it->poster])
        c->out_of_order++;
    c->next_seq[it->poster] = it->seq + 1;
    if (++c->done == c->total)
        event_base_loopbreak(c->base);
}

static void *poster_main(void *p)
{
    poster_arg *pa = p;
    ctx *c = pa->c;
    while (!atomic_load(&c->go))
        ;
    for (int i = 0; i < PER_POSTER; i++) {
        item *it = &c->items[pa->id][i];
        aq_mailbox_post(c->mb, &it->node, on_item, it);
    }
    return NULL;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void test_many_posters(void **state)
{
    (void)state;
    ctx c;
    memset(&c, 0, sizeof(c));
    g_ctx = &c;
    c.base = event_base_new();
    assert_non_null(c.base);
    aq_err err;
    assert_int_equal(aq_mailbox_new(c.base, &c.mb, &err), AQ_OK);
    c.loop_thread = pthread_self();
    c.total = POSTERS * PER_POSTER;
    for (int p = 0; p < POSTERS; p++) {
        c.items[p] = calloc(PER_POSTER, sizeof(item));
        assert_non_null(c.items[p]);
        for (int i = 0; i < PER_POSTER; i++) {
            c.items[p][i].poster = p;
            c.items[p][i].seq = i;
        }
    }
    /* A safety timer so a lost wake-up fails the test instead of hanging it. */
    struct event *timer = evtimer_new(c.base, on_timeout, c.base);
    struct timeval tv = {60, 0};
    evtimer_add(timer, &tv);

    pthread_t th[POSTERS];
    poster_arg pa[POSTERS];
    for (int p = 0; p < POSTERS; p++) {
        pa[p].c = &c;
        pa[p].id = p;
        assert_int_equal(pthread_create(&th[p], NULL, poster_main, &pa[p]), 0);
    }
    atomic_store(&c.go, 1);
    event_base_loop(c.base, EVLOOP_NO_EXIT_ON_EMPTY);
    for (int p = 0; p < POSTERS; p++)
        pthread_join(th[p], NULL);

    assert_int_equal(c.done, c.total);
    assert_int_equal(c.wrong_thread, 0);
    assert_int_equal(c.out_of_order, 0);
    for (int p = 0; p < POSTERS; p++) {
        assert_int_equal(c.next_seq[p], PER_POSTER);
        for (int i = 0; i < PER_POSTER; i++)
            assert_int_equal(atomic_load(&c.items[p][i].runs), 1);
    }
    /* Nothing runs twice: one more loop turn finds nothing to do. */
    event_base_loop(c.base, EVLOOP_NONBLOCK);
    assert_int_equal(c.done, c.total);

    event_free(timer);
    aq_mailbox_destroy(c.mb);
    event_base_free(c.base);
    for (int p = 0; p < POSTERS; p++)
        free(c.items[p]);
}

static int g_seen[3];
static int g_seen_n;

static void record(void *arg)
{
    g_seen[g_seen_n++] = (int)(intptr_t)arg;
}

/* A node may be freed by its own function (the drain reads next first). */
static void free_self(void *arg)
{
    g_seen[g_seen_n++] = 99;
    free(arg);
}

static void test_same_thread_post_in_order(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    aq_mailbox *mb = NULL;
    aq_err err;
    assert_int_equal(aq_mailbox_new(base, &mb, &err), AQ_OK);
    aq_mailbox_node n1, n2;
    aq_mailbox_node *n3 = malloc(sizeof(*n3));
    g_seen_n = 0;
    aq_mailbox_post(mb, &n1, record, (void *)(intptr_t)1);
    aq_mailbox_post(mb, &n2, record, (void *)(intptr_t)2);
    aq_mailbox_post(mb, n3, free_self, n3);
    assert_int_equal(g_seen_n, 0); /* nothing runs inside post */
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(g_seen_n, 3);
    assert_int_equal(g_seen[0], 1);
    assert_int_equal(g_seen[1], 2);
    assert_int_equal(g_seen[2], 99);
    /* A later post wakes the loop again. */
    g_seen_n = 0;
    aq_mailbox_post(mb, &n1, record, (void *)(intptr_t)7);
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(g_seen_n, 1);
    assert_int_equal(g_seen[0], 7);
    aq_mailbox_destroy(mb);
    event_base_free(base);
}

static void test_destroy_null_and_pending(void **state)
{
    (void)state;
    aq_mailbox_destroy(NULL);
    struct event_base *base = event_base_new();
    aq_mailbox *mb = NULL;
    assert_int_equal(aq_mailbox_new(base, &mb, NULL), AQ_OK);
    aq_mailbox_node n;
    g_seen_n = 0;
    aq_mailbox_post(mb, &n, record, (void *)(intptr_t)5);
    aq_mailbox_destroy(mb); /* queued node dropped, not run */
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(g_seen_n, 0);
    event_base_free(base);
}

int main(void)
{
    if (evthread_use_pthreads() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_posters),
        cmocka_unit_test(test_same_thread_post_in_order),
        cmocka_unit_test(test_destroy_null_and_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
