#include "log.h"

#include "text.h"

#include <jansson.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

static struct {
    const char *program;
    aq_log_level level;
    FILE *out;
    pthread_mutex_t lock;
} g_log = {"agentq", AQ_LOG_INFO, NULL, PTHREAD_MUTEX_INITIALIZER};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

#define LOG_VALUE_MAX 4096

/* A JSON string of `s`, with invalid UTF-8 replaced rather than dropped: the
 * odd bytes of a bad task are exactly what one wants to see. */
static json_t *log_string(const char *s)
{
    json_t *v = json_string(s);
    if (v)
        return v;
    char clean[LOG_VALUE_MAX];
    return json_string(aq_utf8_sanitize(s, strlen(s), clean, sizeof(clean)));
}

static bool reserved_key(const char *k)
{
    return !strcmp(k, "ts") || !strcmp(k, "level") || !strcmp(k, "prog") || !strcmp(k, "msg");
}

void aq_log_init(const char *program, aq_log_level level, FILE *out)
{
    g_log.program = program;
    g_log.level = level;
    g_log.out = out;
}

aq_status aq_log_level_parse(const char *s, aq_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (aq_log_level)i;
            return AQ_OK;
        }
    }
    return AQ_INVALID_ARG;
}

bool aq_log_enabled(aq_log_level level)
{
    return level >= g_log.level;
}

void aq_log_fields(aq_log_level level, const char *msg, const aq_log_field *fields, size_t n)
{
    if (!aq_log_enabled(level))
        return;
    struct timespec ts;
    struct tm tm;
    char when[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t w = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + w, sizeof(when) - w, ".%03ldZ", ts.tv_nsec / 1000000);

    json_t *o = json_object();
    if (!o)
        return;
    json_object_set_new(o, "ts", json_string(when));
    json_object_set_new(o, "level", json_string(level_names[level]));
    json_object_set_new(o, "prog", json_string(g_log.program));
    json_object_set_new(o, "msg", log_string(msg));
    for (size_t i = 0; i < n; i++) {
        if (!fields[i].key)
            continue;
        char key[64];
        /* A field may not overwrite the line's own ts/level/prog/msg. */
        snprintf(key, sizeof(key), "%s%s", reserved_key(fields[i].key) ? "field_" : "",
                 fields[i].key);
        json_object_set_new(o, key,
                            fields[i].str ? log_string(fields[i].str) : json_integer(fields[i].num));
    }
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    json_decref(o);
    if (!line)
        return;
    FILE *out = g_log.out ? g_log.out : stderr;
    pthread_mutex_lock(&g_log.lock);
    fputs(line, out);
    fputc('\n', out);
    fflush(out);
    pthread_mutex_unlock(&g_log.lock);
    free(line);
}
