/* Dead-letter tooling for operators: list, show, replay and purge the entries
 * the worker writes to the DLQ stream (see publish_dead_letter in the
 * pipeline). Reading never consumes: an ordered (ephemeral, ack-less)
 * consumer streams the entries, or one is fetched by its sequence. Every
 * command reads at most --scan_max entries and says so when it stops there,
 * and never looks past the stream's last sequence as it was when it started
 * (so a replayed task that fails again is not replayed again by the same run). */
#include <ctype.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "core/clock.h"
#include "core/text.h"
#include "queue/queue_conn.h"
#include "task/task_codec.h"
#include "task/task_json.h"

#define NS_PER_MS 1000000LL
/* The worker stamps Agentq-Failed-At with its own clock, the server the
 * message time with its: start the server-side --since window this much
 * earlier, then decide by the header. */
#define SINCE_SKEW_MS (5 * 60 * 1000LL)
#define TABLE_WIDTH 120 /* when stdout is not a terminal */
#define ERROR_MIN_WIDTH 20
#define HEADER_TEXT_MAX 2048 /* one header value, as shown in the table */
#define CLASS_MAX 64

typedef struct dlq_config {
    aq_queue_config queue;
    char *type;
    char *cls;
    int64_t since_ms;
    int64_t limit;
    int64_t scan_max;
    bool json;
    bool by_id;
    bool all;
    bool yes;
} dlq_config;

#define D dlq_config
#define OPT_TYPE                                                                                   \
    {"type", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(D, type),                                    \
     "only dead letters of this task type (_invalid: tasks that had no valid type)"}
#define OPT_CLASS                                                                                  \
    {"class", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(D, cls),                                    \
     "only dead letters of this error class (Agentq-Error-Class, e.g. model_not_allowed)"}
#define OPT_ID                                                                                     \
    {"id", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(D, by_id),                                  \
     "the arguments are task ids even when they are all digits"}
#define OPT_SCAN_MAX                                                                               \
    {"scan_max", "AGENTQ_DLQ_SCAN_MAX", AQ_OPT_INT, "100000", 1, 1000000, offsetof(D, scan_max),  \
     "read at most this many dead letters in one command (reported when reached)"}

const aq_option cli_ls_options[] = {
    AQ_QUEUE_OPTIONS(D, queue),
    OPT_TYPE,
    OPT_CLASS,
    {"since", NULL, AQ_OPT_DURATION, "0", 0, 315360000000.0, offsetof(D, since_ms),
     "only dead letters that failed within this long (e.g. 1h; 0: any time)"},
    {"limit", NULL, AQ_OPT_INT, "100", 1, 1000000, offsetof(D, limit),
     "list at most this many (the oldest first)"},
    {"json", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(D, json),
     "one JSON object a line, with every header"},
    OPT_SCAN_MAX,
    AQ_OPTIONS_END,
};

const aq_option cli_show_options[] = {
    AQ_QUEUE_OPTIONS(D, queue),
    OPT_ID,
    OPT_SCAN_MAX,
    AQ_OPTIONS_END,
};

const aq_option cli_replay_options[] = {
    AQ_QUEUE_OPTIONS(D, queue),
    {"all", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(D, all),
     "replay every dead letter (that --type and --class select)"},
    OPT_TYPE,
    OPT_CLASS,
    OPT_ID,
    OPT_SCAN_MAX,
    AQ_OPTIONS_END,
};

const aq_option cli_purge_options[] = {
    AQ_QUEUE_OPTIONS(D, queue),
    OPT_TYPE,
    OPT_CLASS,
    {"yes", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(D, yes),
     "do not ask for confirmation (required when stdin is not a terminal)"},
    OPT_SCAN_MAX,
    AQ_OPTIONS_END,
};
#undef D

/* One run of a subcommand. */
typedef struct dlq_ctx {
    const char *cmd; /* "dlq ls", ... for messages */
    const dlq_config *cfg;
    const char *type; /* --type, NULL when not given */
    const char *cls;  /* --class, NULL when not given */
    natsConnection *nc;
    jsCtx *js;
} dlq_ctx;

/* What a scan selects; NULL / 0 fields select everything. */
typedef struct dlq_filter {
    const char *type;
    const char *cls;
    const char *task_id;
    int64_t since_unix_ms;
} dlq_filter;

/* One dead letter; the strings belong to `msg`. */
typedef struct dlq_entry {
    natsMsg *msg;
    uint64_t seq;
    int64_t stored_ms; /* the server's message time */
    const char *subject;
    const char *type; /* the last subject token */
} dlq_entry;

/* Returns false to stop the scan. */
typedef bool (*dlq_visit_fn)(void *arg, const dlq_entry *e);

typedef struct dlq_scan_stats {
    size_t scanned, matched;
    bool capped;
} dlq_scan_stats;

/* A growing list of sequences, bounded by --scan_max. */
typedef struct seq_list {
    uint64_t *v;
    size_t n, cap;
    bool nomem;
} seq_list;

/* ---- small helpers ---- */

static const char *hdr(natsMsg *m, const char *name)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m, name, &v) != NATS_OK || !v)
        return "";
    return v;
}

static void entry_init(const dlq_ctx *c, dlq_entry *e, natsMsg *m, uint64_t seq, int64_t stored_ms)
{
    const char *prefix = c->cfg->queue.dlq_subjects;
    size_t plen = strlen(prefix);
    e->msg = m;
    e->seq = seq;
    e->stored_ms = stored_ms;
    e->subject = natsMsg_GetSubject(m);
    if (!e->subject)
        e->subject = "";
    e->type = e->subject;
    if (strncmp(e->subject, prefix, plen) == 0 && e->subject[plen] == '.')
        e->type = e->subject + plen + 1;
}

/* When the task failed: the worker's header, else the time it was stored. */
static int64_t entry_failed_ms(const dlq_entry *e)
{
    int64_t ms;
    const char *v = hdr(e->msg, "Agentq-Failed-At");
    if (*v && aq_parse_int(v, &ms) == AQ_OK && ms > 0)
        return ms;
    return e->stored_ms;
}

static bool entry_matches(const dlq_filter *f, const dlq_entry *e)
{
    if (f->type && strcmp(e->type, f->type) != 0)
        return false;
    if (f->cls && strcmp(hdr(e->msg, "Agentq-Error-Class"), f->cls) != 0)
        return false;
    if (f->task_id && strcmp(hdr(e->msg, "Agentq-Task-Id"), f->task_id) != 0)
        return false;
    if (f->since_unix_ms > 0 && entry_failed_ms(e) < f->since_unix_ms)
        return false;
    return true;
}

static void fmt_time(int64_t ms, bool millis, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || !gmtime_r(&t, &tm)) {
        snprintf(out, n, "-");
        return;
    }
    if (millis) {
        char base[32];
        strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out, n, "%s.%03dZ", base, (int)(ms % 1000));
    } else {
        strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
}

/* A JSON string from bytes that may not be UTF-8 (headers come from the
 * network): invalid bytes become U+FFFD. */
static json_t *json_text(const char *s)
{
    size_t len = strlen(s);
    if (aq_utf8_valid(s, len))
        return json_stringn(s, len);
    char *buf = malloc(len * 3 + 1);
    if (!buf)
        return NULL;
    json_t *j = json_string(aq_utf8_sanitize(s, len, buf, len * 3 + 1));
    free(buf);
    return j;
}

static json_t *json_base64(const unsigned char *p, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t olen = 4 * ((n + 2) / 3), k = 0;
    char *out = malloc(olen + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[k++] = tbl[(v >> 18) & 63];
        out[k++] = tbl[(v >> 12) & 63];
        out[k++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[k++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    json_t *j = json_stringn(out, k);
    free(out);
    return j;
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every header, sorted by name; a repeated header becomes an array. */
static json_t *headers_json(natsMsg *m)
{
    json_t *o = json_object();
    const char **keys = NULL;
    int n = 0;
    if (!o || natsMsgHeader_Keys(m, &keys, &n) != NATS_OK || !keys)
        return o;
    qsort(keys, (size_t)n, sizeof(*keys), cmp_cstr);
    for (int i = 0; i < n; i++) {
        const char **vals = NULL;
        int nv = 0;
        if (natsMsgHeader_Values(m, keys[i], &vals, &nv) != NATS_OK || !vals || nv < 1) {
            free((void *)vals);
            continue;
        }
        json_t *v;
        if (nv == 1) {
            v = json_text(vals[0]);
        } else {
            v = json_array();
            for (int k = 0; k < nv; k++)
                json_array_append_new(v, json_text(vals[k]));
        }
        json_t *key = json_text(keys[i]);
        if (key && v)
            json_object_set_new(o, json_string_value(key), v);
        else
            json_decref(v);
        json_decref(key);
        free((void *)vals);
    }
    free((void *)keys);
    return o;
}

/* The entry as JSON: position, times and every header. */
static json_t *entry_json(const dlq_entry *e)
{
    char failed[40], stored[40];
    fmt_time(entry_failed_ms(e), true, failed, sizeof(failed));
    fmt_time(e->stored_ms, true, stored, sizeof(stored));
    json_t *o = json_object();
    json_object_set_new(o, "seq", json_integer((json_int_t)e->seq));
    json_object_set_new(o, "subject", json_text(e->subject));
    json_object_set_new(o, "type", json_text(e->type));
    json_object_set_new(o, "failed_at", json_string(failed));
    json_object_set_new(o, "stored_at", json_string(stored));
    json_object_set_new(o, "headers", headers_json(e->msg));
    return o;
}

static void print_json(json_t *o, size_t flags)
{
    json_dumpf(o, stdout, flags | JSON_PRESERVE_ORDER);
    putchar('\n');
}

static bool seq_push(seq_list *l, uint64_t seq)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        uint64_t *p = realloc(l->v, cap * sizeof(*p));
        if (!p) {
            l->nomem = true;
            return false;
        }
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = seq;
    return true;
}

static bool collect_visit(void *arg, const dlq_entry *e)
{
    return seq_push(arg, e->seq);
}

static void dlq_subject(const dlq_ctx *c, const char *type, char *out, size_t n)
{
    snprintf(out, n, "%s.%s", c->cfg->queue.dlq_subjects, type ? type : ">");
}

/* A failed JetStream call on the DLQ stream: exit 3 when the stream is
 * missing, else 5. */
static int js_fail(const dlq_ctx *c, natsStatus s, jsErrCode jerr, const char *what)
{
    aq_err err;
    if (jerr == JSStreamNotFoundErr) {
        cli_error(c->cmd, "dead-letter stream %s not found (run `agentq init`)",
                  c->cfg->queue.dlq_stream);
        return CLI_CONNECT;
    }
    aq_queue_nats_error(&err, s, jerr, what);
    cli_error(c->cmd, "%s", err.msg);
    return s == NATS_CONNECTION_CLOSED || s == NATS_NO_SERVER ? CLI_CONNECT : CLI_ERROR;
}

/* js_DeleteMsg of an entry someone else removed meanwhile. */
static bool already_gone(jsErrCode jerr)
{
    return jerr == JSNoMessageFoundErr || jerr == JSSequenceNotFoundErr;
}

static int stream_info(const dlq_ctx *c, const char *subjects_filter, jsStreamInfo **si)
{
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Info.SubjectsFilter = subjects_filter;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(si, c->js, c->cfg->queue.dlq_stream, &o, &jerr);
    if (s == NATS_NOT_FOUND && !jerr)
        jerr = JSStreamNotFoundErr;
    return s == NATS_OK ? CLI_OK : js_fail(c, s, jerr, c->cfg->queue.dlq_stream);
}

/* ---- scanning ---- */

/* Stream the dead letters that `f` selects, oldest first, to `fn`, with an
 * ordered consumer (nothing is consumed), up to the stream's last sequence
 * at the start and at most --scan_max entries. */
static int dlq_scan(const dlq_ctx *c, const dlq_filter *f, dlq_visit_fn fn, void *arg,
                    dlq_scan_stats *st)
{
    const aq_queue_config *q = &c->cfg->queue;
    jsStreamInfo *si = NULL;
    jsConsumerInfo *ci = NULL;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    char subject[512];
    natsStatus s;
    memset(st, 0, sizeof(*st));
    int rc = stream_info(c, NULL, &si);
    if (rc != CLI_OK)
        goto out;
    uint64_t last = si->State.LastSeq;
    if (si->State.Msgs == 0)
        goto out;

    dlq_subject(c, f->type, subject, sizeof(subject));
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = q->dlq_stream;
    so.Ordered = true;
    if (f->since_unix_ms > 0) {
        so.Config.DeliverPolicy = js_DeliverByStartTime;
        so.Config.OptStartTime = (f->since_unix_ms - SINCE_SKEW_MS) * NS_PER_MS;
    }
    s = js_SubscribeSync(&sub, c->js, subject, NULL, &so, &jerr);
    if (s == NATS_OK)
        s = natsSubscription_GetConsumerInfo(&ci, sub, NULL, &jerr);
    if (s != NATS_OK) {
        rc = js_fail(c, s, jerr, "reading the dead letters");
        goto out;
    }
    if (ci->NumPending == 0 && ci->Delivered.Consumer == 0)
        goto out; /* nothing selected */

    for (;;) {
        natsMsg *m = NULL;
        jsMsgMetaData *meta = NULL;
        s = natsSubscription_NextMsg(&m, sub, q->nats_timeout_ms);
        if (s == NATS_OK && (s = natsMsg_GetMetaData(&meta, m)) != NATS_OK)
            natsMsg_Destroy(m);
        if (s == NATS_TIMEOUT) {
            cli_error(c->cmd, "timed out reading %s after %zu entries", q->dlq_stream, st->scanned);
            rc = CLI_ERROR;
            goto out;
        }
        if (s != NATS_OK) {
            rc = js_fail(c, s, 0, "reading the dead letters");
            goto out;
        }
        uint64_t seq = meta->Sequence.Stream, pending = meta->NumPending;
        int64_t ts = meta->Timestamp / NS_PER_MS;
        jsMsgMetaData_Destroy(meta);
        if (seq > last) { /* stored after this command started */
            natsMsg_Destroy(m);
            break;
        }
        st->scanned++;
        dlq_entry e;
        entry_init(c, &e, m, seq, ts);
        bool go_on = true;
        if (entry_matches(f, &e)) {
            st->matched++;
            go_on = fn(arg, &e);
        }
        natsMsg_Destroy(m);
        if (!go_on || pending == 0 || seq >= last)
            break;
        if (st->scanned >= (size_t)c->cfg->scan_max) {
            st->capped = true;
            cli_error(c->cmd,
                      "stopped after reading %zu dead letters (--scan_max); %llu later ones "
                      "were not looked at",
                      st->scanned, (unsigned long long)pending);
            break;
        }
    }
out:
    if (sub) {
        natsSubscription_Unsubscribe(sub); /* deletes the ephemeral consumer */
        natsSubscription_Destroy(sub);
    }
    jsConsumerInfo_Destroy(ci);
    jsStreamInfo_Destroy(si);
    return rc;
}

/* Fetch one entry by its sequence; CLI_NOT_DONE (silently) when there is none. */
static int get_entry(const dlq_ctx *c, uint64_t seq, natsMsg **m, dlq_entry *e)
{
    jsErrCode jerr = 0;
    natsStatus s = js_GetMsg(m, c->js, c->cfg->queue.dlq_stream, seq, NULL, &jerr);
    if (s != NATS_OK) {
        if (jerr == JSNoMessageFoundErr || (s == NATS_NOT_FOUND && jerr != JSStreamNotFoundErr))
            return CLI_NOT_DONE;
        return js_fail(c, s, jerr, "reading a dead letter");
    }
    entry_init(c, e, *m, seq, natsMsg_GetTime(*m) / NS_PER_MS);
    return CLI_OK;
}

typedef struct newest_state {
    uint64_t seq;
} newest_state;

static bool newest_visit(void *arg, const dlq_entry *e)
{
    ((newest_state *)arg)->seq = e->seq; /* oldest first: the last one wins */
    return true;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/* A command-line reference to one entry: a DLQ sequence, or a task id (its
 * newest dead letter). */
static int resolve(const dlq_ctx *c, const char *arg, uint64_t *seq)
{
    if (!c->cfg->by_id && all_digits(arg)) {
        int64_t v;
        if (aq_parse_int(arg, &v) != AQ_OK || v <= 0) {
            cli_error(c->cmd, "'%s' is not a valid sequence", arg);
            return CLI_USAGE;
        }
        *seq = (uint64_t)v;
        return CLI_OK;
    }
    if (!aq_task_id_valid(arg)) {
        cli_error(c->cmd, "'%s' is neither a DLQ sequence nor a valid task id", arg);
        return CLI_USAGE;
    }
    dlq_filter f = {.task_id = arg};
    newest_state ns = {0};
    dlq_scan_stats st;
    int rc = dlq_scan(c, &f, newest_visit, &ns, &st);
    if (rc != CLI_OK)
        return rc;
    if (!ns.seq) {
        cli_error(c->cmd, "no dead letter for task id %s in %s (%zu entries read%s)", arg,
                  c->cfg->queue.dlq_stream, st.scanned, st.capped ? ", stopped at --scan_max" : "");
        return CLI_NOT_DONE;
    }
    *seq = ns.seq;
    return CLI_OK;
}

static int dlq_connect(dlq_ctx *c)
{
    return cli_connect(&c->cfg->queue, &c->nc, &c->js);
}

static int no_args(const dlq_ctx *c, int nargs, char **args)
{
    if (nargs > 0) {
        cli_error(c->cmd, "unexpected argument '%s'", args[0]);
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* ---- ls ---- */

typedef struct ls_state {
    const dlq_ctx *c;
    size_t shown;
    bool more;
    int width;
} ls_state;

/* The terminal's width, else $COLUMNS, else TABLE_WIDTH. */
static int term_width(void)
{
    struct winsize ws;
    int64_t cols;
    const char *env = getenv("COLUMNS");
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
        return ws.ws_col;
    if (env && aq_parse_int(env, &cols) == AQ_OK && cols >= 40 && cols <= 100000)
        return (int)cols;
    return TABLE_WIDTH;
}

/* Cut `s` to at most `max` bytes on a character boundary, with "..." when cut;
 * control characters become spaces. */
static void fit_text(const char *s, size_t max, char *out, size_t n)
{
    char clean[HEADER_TEXT_MAX];
    aq_utf8_sanitize(s, strlen(s), clean, sizeof(clean));
    for (char *p = clean; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    size_t len = strlen(clean);
    if (max >= n)
        max = n - 1;
    if (len <= max) {
        memcpy(out, clean, len + 1);
        return;
    }
    size_t cut = max > 3 ? max - 3 : 0;
    while (cut > 0 && ((unsigned char)clean[cut] & 0xC0) == 0x80)
        cut--;
    memcpy(out, clean, cut);
    memcpy(out + cut, "...", 4);
}

static bool ls_visit(void *arg, const dlq_entry *e)
{
    ls_state *ls = arg;
    if (ls->shown >= (size_t)ls->c->cfg->limit) {
        ls->more = true;
        return false;
    }
    ls->shown++;
    if (ls->c->cfg->json) {
        json_t *o = entry_json(e);
        print_json(o, JSON_COMPACT);
        json_decref(o);
        return true;
    }
    if (ls->shown == 1)
        printf("%-7s %-20s %-12s %-18s %3s %-20s %s\n", "SEQ", "FAILED AT (UTC)", "TYPE", "CLASS",
               "ATT", "TASK ID", "ERROR");
    char when[40], line[1024], err[HEADER_TEXT_MAX];
    const char *id = hdr(e->msg, "Agentq-Task-Id"), *att = hdr(e->msg, "Agentq-Attempts");
    fmt_time(entry_failed_ms(e), false, when, sizeof(when));
    int k = snprintf(line, sizeof(line), "%-7llu %-20s %-12s %-18s %3s %-20s ",
                     (unsigned long long)e->seq, when, e->type,
                     hdr(e->msg, "Agentq-Error-Class"), *att ? att : "-", *id ? id : "-");
    if (k < 0)
        k = 0;
    if ((size_t)k >= sizeof(line))
        k = (int)sizeof(line) - 1;
    int room = ls->width - k;
    if (room < ERROR_MIN_WIDTH)
        room = ERROR_MIN_WIDTH;
    fit_text(hdr(e->msg, "Agentq-Error"), (size_t)room, err, sizeof(err));
    printf("%.*s%s\n", k, line, err);
    return true;
}

static int dlq_ls(dlq_ctx *c, int nargs, char **args)
{
    int rc = no_args(c, nargs, args);
    if (rc != CLI_OK || (rc = dlq_connect(c)) != CLI_OK)
        return rc;
    dlq_filter f = {.type = c->type, .cls = c->cls};
    if (c->cfg->since_ms > 0)
        f.since_unix_ms = aq_now_unix_ms() - c->cfg->since_ms;
    ls_state ls = {.c = c, .width = term_width()};
    dlq_scan_stats st;
    rc = dlq_scan(c, &f, ls_visit, &ls, &st);
    fflush(stdout);
    if (rc != CLI_OK)
        return rc;
    if (!c->cfg->json && ls.shown == 0)
        printf("no dead letters%s\n", c->type || c->cls || f.since_unix_ms ? " match" : "");
    if (ls.more)
        cli_error(c->cmd, "showing the first %zu; more match (raise --limit or narrow the filters)",
                  ls.shown);
    return CLI_OK;
}

/* ---- show ---- */

static int dlq_show(dlq_ctx *c, int nargs, char **args)
{
    natsMsg *m = NULL;
    uint64_t seq = 0;
    dlq_entry e;
    if (nargs != 1) {
        cli_error(c->cmd, "give one DLQ sequence or task id");
        return CLI_USAGE;
    }
    int rc = dlq_connect(c);
    if (rc == CLI_OK)
        rc = resolve(c, args[0], &seq);
    if (rc != CLI_OK)
        return rc;
    rc = get_entry(c, seq, &m, &e);
    if (rc == CLI_NOT_DONE)
        cli_error(c->cmd, "no dead letter with sequence %llu in %s", (unsigned long long)seq,
                  c->cfg->queue.dlq_stream);
    if (rc != CLI_OK)
        return rc;

    json_t *o = entry_json(&e);
    const unsigned char *data = (const unsigned char *)natsMsg_GetData(m);
    size_t len = (size_t)natsMsg_GetDataLength(m);
    aq_task_limits lim;
    aq_task_limits_default(&lim);
    lim.max_payload_bytes = SIZE_MAX; /* it is stored already: show whatever it is */
    Agentq__V1__Task *task = NULL;
    aq_err err;
    if (aq_task_unpack(data ? data : (const unsigned char *)"", len, &lim, &task, &err) == AQ_OK) {
        json_object_set_new(o, "task", aq_task_to_json(task));
        aq_task_free(task);
    } else {
        json_object_set_new(o, "undecodable", json_true());
        json_object_set_new(o, "decode_error", json_text(err.msg));
        json_object_set_new(o, "payload_base64", json_base64(data, data ? len : 0));
    }
    print_json(o, JSON_INDENT(2));
    json_decref(o);
    natsMsg_Destroy(m);
    return CLI_OK;
}

/* ---- replay ---- */

typedef struct replay_counts {
    size_t replayed, skipped, missing, failed;
} replay_counts;

/* Delete the stale Result, republish the original bytes, wait for the ack,
 * and only then delete the dead letter: a crash in between leaves the entry
 * in place (a second replay repeats the task), never loses it. */
static void replay_one(const dlq_ctx *c, kvStore *kv, uint64_t seq, replay_counts *n)
{
    const aq_queue_config *q = &c->cfg->queue;
    natsMsg *m = NULL, *out = NULL;
    jsPubAck *pa = NULL;
    Agentq__V1__Task *task = NULL;
    dlq_entry e;
    aq_err err;
    jsErrCode jerr = 0;
    char subject[512], msg_id[128], num[32];

    int rc = get_entry(c, seq, &m, &e);
    if (rc == CLI_NOT_DONE) {
        cli_error(c->cmd, "no dead letter with sequence %llu in %s (already replayed or purged?)",
                  (unsigned long long)seq, q->dlq_stream);
        n->missing++;
        return;
    }
    if (rc != CLI_OK) {
        n->failed++;
        return;
    }
    const void *data = natsMsg_GetData(m);
    int len = natsMsg_GetDataLength(m);
    aq_task_limits lim;
    aq_task_limits_default(&lim);
    lim.max_payload_bytes = SIZE_MAX;
    if (strcmp(e.type, "_invalid") == 0 || !aq_task_type_valid(e.type)) {
        cli_error(c->cmd, "dead letter %llu cannot be replayed: the task had no valid type "
                  "(class %s); skipped", (unsigned long long)seq, hdr(m, "Agentq-Error-Class"));
        n->skipped++;
        goto out;
    }
    if (aq_task_unpack(data ? data : "", (size_t)len, &lim, &task, &err) != AQ_OK) {
        cli_error(c->cmd, "dead letter %llu cannot be replayed: its payload does not decode (%s); "
                  "skipped", (unsigned long long)seq, err.msg);
        n->skipped++;
        goto out;
    }
    if (!aq_task_id_valid(task->id)) {
        cli_error(c->cmd, "dead letter %llu cannot be replayed: the task has no valid id; skipped",
                  (unsigned long long)seq);
        n->skipped++;
        goto out;
    }
    /* 1. A client waiting on the id must not see the stale FAILED result. */
    natsStatus s = kvStore_Delete(kv, task->id);
    if (s != NATS_OK) {
        aq_queue_nats_error(&err, s, 0, "deleting the stale result");
        cli_error(c->cmd, "dead letter %llu (task %s): %s; not replayed", (unsigned long long)seq,
                  task->id, err.msg);
        n->failed++;
        goto out;
    }
    /* 2. Republish the original bytes under a fresh de-duplication id. */
    snprintf(subject, sizeof(subject), "%s.%s", q->task_subjects, e.type);
    snprintf(msg_id, sizeof(msg_id), "replay-%llu-%lld", (unsigned long long)seq,
             (long long)aq_now_unix_ms());
    snprintf(num, sizeof(num), "%llu", (unsigned long long)seq);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    po.ExpectStream = q->task_stream;
    s = natsMsg_Create(&out, subject, NULL, data, len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(out, "Agentq-Replayed-From", num);
    if (s == NATS_OK)
        s = js_PublishMsg(&pa, c->js, out, &po, &jerr);
    if (s != NATS_OK) {
        aq_queue_nats_error(&err, s, jerr, subject);
        cli_error(c->cmd, "dead letter %llu (task %s): republishing failed: %s; it stays in %s",
                  (unsigned long long)seq, task->id, err.msg, q->dlq_stream);
        n->failed++;
        goto out;
    }
    /* 3. Only now may the dead letter go. */
    jerr = 0;
    s = js_DeleteMsg(c->js, q->dlq_stream, seq, NULL, &jerr);
    if (s != NATS_OK && !already_gone(jerr)) {
        aq_queue_nats_error(&err, s, jerr, "deleting it");
        cli_error(c->cmd, "task %s was republished (%s seq %llu) but dead letter %llu is still "
                  "there: %s; delete it before replaying again",
                  task->id, pa->Stream, (unsigned long long)pa->Sequence, (unsigned long long)seq,
                  err.msg);
        n->failed++;
        goto out;
    }
    printf("replayed dead letter %llu: task %s (type %s) -> %s seq %llu\n",
           (unsigned long long)seq, task->id, e.type, pa->Stream, (unsigned long long)pa->Sequence);
    fflush(stdout);
    n->replayed++;
out:
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(out);
    aq_task_free(task);
    natsMsg_Destroy(m);
}

static int dlq_replay(dlq_ctx *c, int nargs, char **args)
{
    seq_list seqs = {0};
    kvStore *kv = NULL;
    replay_counts n = {0};
    int rc;
    if (c->cfg->all == (nargs > 0)) {
        cli_error(c->cmd, nargs ? "give sequences / task ids or --all, not both"
                                : "give DLQ sequences or task ids, or --all");
        return CLI_USAGE;
    }
    if (!c->cfg->all && (c->type || c->cls)) {
        cli_error(c->cmd, "--type and --class select entries for --all only");
        return CLI_USAGE;
    }
    if ((rc = dlq_connect(c)) != CLI_OK)
        return rc;
    natsStatus s = js_KeyValue(&kv, c->js, c->cfg->queue.results_bucket);
    if (s != NATS_OK) {
        cli_error(c->cmd, "results bucket %s: %s", c->cfg->queue.results_bucket,
                  aq_queue_status_text(s));
        rc = CLI_CONNECT;
        goto out;
    }
    if (c->cfg->all) {
        dlq_filter f = {.type = c->type, .cls = c->cls};
        dlq_scan_stats st;
        if ((rc = dlq_scan(c, &f, collect_visit, &seqs, &st)) != CLI_OK)
            goto out;
    } else {
        for (int i = 0; i < nargs; i++) {
            uint64_t seq;
            rc = resolve(c, args[i], &seq);
            if (rc == CLI_NOT_DONE) {
                n.missing++;
                continue;
            }
            if (rc != CLI_OK)
                goto out;
            seq_push(&seqs, seq);
        }
    }
    if (seqs.nomem) {
        cli_error(c->cmd, "out of memory");
        rc = CLI_ERROR;
        goto out;
    }
    for (size_t i = 0; i < seqs.n; i++)
        replay_one(c, kv, seqs.v[i], &n);
    printf("replayed %zu, skipped %zu", n.replayed, n.skipped);
    if (n.missing)
        printf(", not found %zu", n.missing);
    if (n.failed)
        printf(", failed %zu", n.failed);
    printf("\n");
    rc = n.failed ? CLI_ERROR : n.missing ? CLI_NOT_DONE : n.skipped ? CLI_TASK_FAILED : CLI_OK;
out:
    free(seqs.v);
    kvStore_Destroy(kv);
    return rc;
}

/* ---- purge ---- */

static bool confirm(const char *question)
{
    char line[64];
    fprintf(stderr, "%s [y/N] ", question);
    fflush(stderr);
    if (!fgets(line, sizeof(line), stdin))
        return false;
    line[strcspn(line, "\r\n")] = '\0';
    return strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0;
}

static int dlq_purge(dlq_ctx *c, int nargs, char **args)
{
    const aq_queue_config *q = &c->cfg->queue;
    seq_list seqs = {0};
    jsStreamInfo *si = NULL;
    char subject[512], question[1024];
    uint64_t count = 0, last = 0;
    int rc = no_args(c, nargs, args);
    if (rc != CLI_OK)
        return rc;
    if (!c->cfg->yes && !isatty(STDIN_FILENO)) {
        cli_error(c->cmd, "refusing to purge without confirmation: stdin is not a terminal "
                  "(pass --yes)");
        return CLI_USAGE;
    }
    if ((rc = dlq_connect(c)) != CLI_OK)
        return rc;
    dlq_subject(c, c->type, subject, sizeof(subject));
    if (c->cls) {
        /* The class is a header: find the entries one by one. */
        dlq_filter f = {.type = c->type, .cls = c->cls};
        dlq_scan_stats st;
        if ((rc = dlq_scan(c, &f, collect_visit, &seqs, &st)) != CLI_OK)
            goto out;
        if (seqs.nomem) {
            cli_error(c->cmd, "out of memory");
            rc = CLI_ERROR;
            goto out;
        }
        count = seqs.n;
    } else {
        if ((rc = stream_info(c, c->type ? subject : NULL, &si)) != CLI_OK)
            goto out;
        last = si->State.LastSeq;
        if (!c->type) {
            count = si->State.Msgs;
        } else if (si->State.Subjects) {
            for (int i = 0; i < si->State.Subjects->Count; i++)
                count += si->State.Subjects->List[i].Msgs;
        }
    }
    if (count == 0) {
        printf("no dead letters to purge\n");
        goto out;
    }
    if (!c->cfg->yes) {
        char filt[256] = "";
        if (c->type && c->cls)
            snprintf(filt, sizeof(filt), " of type %s and class %s", c->type, c->cls);
        else if (c->type || c->cls)
            snprintf(filt, sizeof(filt), " of %s %s", c->type ? "type" : "class",
                     c->type ? c->type : c->cls);
        snprintf(question, sizeof(question), "purge %llu dead letters%s from %s?",
                 (unsigned long long)count, filt, q->dlq_stream);
        if (!confirm(question)) {
            printf("not purged\n");
            goto out;
        }
    }
    uint64_t removed = 0;
    if (c->cls) {
        for (size_t i = 0; i < seqs.n; i++) {
            jsErrCode jerr = 0;
            natsStatus s = js_DeleteMsg(c->js, q->dlq_stream, seqs.v[i], NULL, &jerr);
            if (s == NATS_OK) {
                removed++;
            } else if (!already_gone(jerr)) {
                rc = js_fail(c, s, jerr, "deleting a dead letter");
                printf("purged %llu dead letters from %s before the error\n",
                       (unsigned long long)removed, q->dlq_stream);
                goto out;
            }
        }
    } else {
        /* Only what was counted: entries stored since are left alone. */
        jsOptions o;
        jsOptions_Init(&o);
        o.Stream.Purge.Subject = c->type ? subject : NULL;
        o.Stream.Purge.Sequence = last + 1;
        jsErrCode jerr = 0;
        natsStatus s = js_PurgeStream(c->js, q->dlq_stream, &o, &jerr);
        if (s != NATS_OK) {
            rc = js_fail(c, s, jerr, "purging");
            goto out;
        }
        removed = count;
    }
    printf("purged %llu dead letters from %s\n", (unsigned long long)removed, q->dlq_stream);
out:
    jsStreamInfo_Destroy(si);
    free(seqs.v);
    return rc;
}

/* ---- dispatch ---- */

static const struct {
    const char *name;
    int (*run)(dlq_ctx *c, int nargs, char **args);
    const aq_option *opts;
    const char *usage;
    const char *help;
} subcommands[] = {
    {"ls", dlq_ls, cli_ls_options,
     "agentq dlq ls [--type T] [--class C] [--since 1h] [--limit N] [--json] [options]\n\n"
     "List dead letters, oldest first, without consuming them.",
     "list dead letters (--type, --class, --since, --limit, --json)"},
    {"show", dlq_show, cli_show_options,
     "agentq dlq show SEQ|ID [--id] [options]\n\n"
     "Print one dead letter as JSON: headers and the task (or its bytes in base64 when they\n"
     "do not decode). An all-digits argument is a DLQ sequence unless --id is given; a task\n"
     "id shows its newest dead letter.",
     "print one dead letter (by DLQ sequence or task id) as JSON"},
    {"replay", dlq_replay, cli_replay_options,
     "agentq dlq replay SEQ|ID... | --all [--type T] [--class C] [--id] [options]\n\n"
     "Republish dead letters to the task stream: for each, delete the task's stale result,\n"
     "publish the original bytes (header Agentq-Replayed-From), wait for the ack, then\n"
     "delete the dead letter. Entries without a valid type or whose payload does not decode\n"
     "are skipped (exit 1).",
     "republish dead letters as tasks, then remove them from the DLQ"},
    {"purge", dlq_purge, cli_purge_options,
     "agentq dlq purge [--type T] [--class C] [--yes] [options]\n\n"
     "Delete dead letters for good, after confirmation (--yes when stdin is not a terminal).",
     "delete dead letters (asks first; --yes)"},
};

#define N_SUBCOMMANDS (sizeof(subcommands) / sizeof(subcommands[0]))

static void dlq_usage(FILE *out)
{
    fprintf(out, "usage: agentq dlq <subcommand> [options] [args]\n\nsubcommands:\n");
    for (size_t i = 0; i < N_SUBCOMMANDS; i++)
        fprintf(out, "  %-7s %s\n", subcommands[i].name, subcommands[i].help);
    fprintf(out, "\n`agentq dlq <subcommand> --help` lists its options. One command reads at most\n"
                 "--scan_max (default 100000) dead letters and says so when it stops there.\n");
}

static bool class_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CLASS_MAX)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

static bool class_known(const char *cls)
{
    for (int st = 0; st < AQ__STATUS_COUNT; st++)
        if (strcmp(aq_status_class((aq_status)st), cls) == 0)
            return true;
    return false;
}

int cmd_dlq(int argc, char **argv)
{
    if (argc < 2) {
        dlq_usage(stderr);
        return CLI_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
        dlq_usage(stdout);
        return CLI_OK;
    }
    size_t i = 0;
    while (i < N_SUBCOMMANDS && strcmp(sub, subcommands[i].name) != 0)
        i++;
    if (i == N_SUBCOMMANDS) {
        fprintf(stderr, "agentq dlq: unknown subcommand '%s'\n\n", sub);
        dlq_usage(stderr);
        return CLI_USAGE;
    }
    char name[32];
    snprintf(name, sizeof(name), "dlq %s", subcommands[i].name);
    argv[1] = name; /* messages say "agentq dlq ls: ..." */

    dlq_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    dlq_ctx c = {.cmd = name, .cfg = &cfg};
    int argi, rc = cli_parse(subcommands[i].opts, &cfg, &cfg.queue, argc - 1, argv + 1,
                             subcommands[i].usage,
                             &argi);
    if (rc >= 0)
        goto out;
    c.type = cfg.type && cfg.type[0] ? cfg.type : NULL;
    c.cls = cfg.cls && cfg.cls[0] ? cfg.cls : NULL;
    if (c.type && !aq_task_type_valid(c.type)) {
        cli_error(name, "--type '%s' is not a task type (1-64 of [A-Za-z0-9_-])", c.type);
        rc = CLI_USAGE;
        goto out;
    }
    if (c.cls && !class_name_ok(c.cls)) {
        cli_error(name, "--class '%s' is not an error class name", c.cls);
        rc = CLI_USAGE;
        goto out;
    }
    if (c.cls && !class_known(c.cls))
        cli_error(name, "warning: '%s' is not an error class this build knows", c.cls);
    rc = subcommands[i].run(&c, argc - 1 - argi, argv + 1 + argi);
out:
    aq_queue_disconnect(c.nc, c.js);
    aq_config_free(subcommands[i].opts, &cfg);
    return rc;
}
