/* Helpers shared by the benchmark tools (js_ceiling, paced_pub,
 * results_dump): clocks, option parsing, and the one task generator, so that
 * the raw JetStream ceiling and the worker runs move the same bytes.
 * Header-only (static inline): each tool is one .c file. */
#ifndef AQ_BENCH_COMMON_H
#define AQ_BENCH_COMMON_H

#include <errno.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agentq/v1/task.pb-c.h"

#define BENCH_PROMPT_MAX (1024 * 1024)

/* Wall-clock Unix microseconds: comparable across processes on one host
 * (nats-server stamps stored messages from the same clock). */
static inline int64_t bench_unix_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t bench_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline long bench_long(const char *s, const char *what)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || e == s || *e || v < 0) {
        fprintf(stderr, "bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

static inline double bench_double(const char *s, const char *what)
{
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (errno || e == s || *e || v < 0) {
        fprintf(stderr, "bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

/* "N" or "MIN-MAX" (MIN <= MAX). */
static inline void bench_range(const char *s, const char *what, long *min, long *max)
{
    char tmp[64];
    const char *dash = strchr(s, '-');
    if (!dash) {
        *min = *max = bench_long(s, what);
        return;
    }
    if ((size_t)(dash - s) >= sizeof(tmp)) {
        fprintf(stderr, "bad %s '%s'\n", what, s);
        exit(2);
    }
    memcpy(tmp, s, (size_t)(dash - s));
    tmp[dash - s] = '\0';
    *min = bench_long(tmp, what);
    *max = bench_long(dash + 1, what);
    if (*min > *max) {
        fprintf(stderr, "bad %s '%s': MIN > MAX\n", what, s);
        exit(2);
    }
}

/* splitmix64: a value in [min, max] fixed by (i, salt), so a run is repeatable. */
static inline long bench_pick(long min, long max, uint64_t i, uint64_t salt)
{
    uint64_t z = i * 0x9E3779B97F4A7C15ULL + salt;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return max > min ? min + (long)(z % (uint64_t)(max - min + 1)) : min;
}

/* Prompt text of exactly len bytes (ASCII), starting with the task id so that
 * the simulator's echo (and so its answer) differs per task. */
static inline void bench_prompt(char *buf, size_t len, const char *id)
{
    static const char words[] = "the quick brown fox jumps over the lazy dog while the queue drains ";
    size_t n = (size_t)snprintf(buf, len + 1, "task %s: ", id);
    for (size_t i = n < len ? n : len; i < len; i++)
        buf[i] = words[i % (sizeof(words) - 1)];
    buf[len] = '\0';
}

/* Task generator parameters, shared by js_ceiling and paced_pub. */
typedef struct bench_tasks {
    const char *subject; /* full subject, e.g. agentq.tasks.bench */
    const char *type;
    const char *id_prefix;
    const char *model;   /* "" = the worker's default */
    long prompt_min, prompt_max;
    long max_tokens_min, max_tokens_max;
    char *prompt;        /* scratch, BENCH_PROMPT_MAX + 1 */
    uint8_t *packed;     /* scratch */
    size_t packed_cap;
} bench_tasks;

static inline bool bench_tasks_init(bench_tasks *bt)
{
    bt->prompt = malloc(BENCH_PROMPT_MAX + 1);
    bt->packed_cap = BENCH_PROMPT_MAX + 4096;
    bt->packed = malloc(bt->packed_cap);
    return bt->prompt && bt->packed && bt->prompt_max <= BENCH_PROMPT_MAX;
}

static inline void bench_tasks_free(bench_tasks *bt)
{
    free(bt->prompt);
    free(bt->packed);
}

/* Task number i as a JetStream message with Nats-Msg-Id = its id (what every
 * agentq publisher sends). created_unix_ms 0 leaves the field unset. */
static inline natsStatus bench_task_msg(bench_tasks *bt, uint64_t i, int64_t created_unix_ms,
                                        natsMsg **out)
{
    char id[128];
    snprintf(id, sizeof(id), "%s-%llu", bt->id_prefix, (unsigned long long)i);
    bench_prompt(bt->prompt, (size_t)bench_pick(bt->prompt_min, bt->prompt_max, i, 1), id);
    Agentq__V1__Task t = AGENTQ__V1__TASK__INIT;
    t.id = id;
    t.type = (char *)bt->type;
    t.model = (char *)bt->model;
    t.prompt = bt->prompt;
    t.max_tokens = (uint32_t)bench_pick(bt->max_tokens_min, bt->max_tokens_max, i, 2);
    t.created_unix_ms = created_unix_ms;
    size_t len = agentq__v1__task__get_packed_size(&t);
    if (len > bt->packed_cap)
        return NATS_INVALID_ARG;
    agentq__v1__task__pack(&t, bt->packed);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, bt->subject, NULL, (const char *)bt->packed, (int)len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        return s;
    }
    *out = m;
    return NATS_OK;
}

#endif
