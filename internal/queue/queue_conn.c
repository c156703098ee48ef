#include "queue_conn.h"

#include "core/clock.h"
#include "core/list.h"
#include "core/ptrmap.h"
#include "core/text.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SERVERS 32
#define RECONNECT_BUF_BYTES (64 * 1024 * 1024)
#define DENIED_MAX 320
/* A refusal explains a request that timed out if it came while the request
 * was waiting: at most the connection's timeout (plus this) before. */
#define DENIED_SLACK_MS 500

/* The most recent permission refusal of any connection in this process
 * (the server's -ERR names the subject; nats.c hands it to the error
 * handler on its own thread). A request the server refused is dropped
 * without an answer, so the caller only sees a timeout: this is what turns
 * that timeout into "permission denied for publish to <subject>". Processes
 * have one or two connections; the newest refusal is the one that matters. */
static pthread_mutex_t g_denied_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_denied[DENIED_MAX];
static int64_t g_denied_at_ms;     /* aq_mono_ms; 0 = none */
static int64_t g_denied_window_ms; /* the refusing connection's nats_timeout + slack */

/* 'Permissions Violation for Publish to "x"' -> 'permission denied for publish to "x"'. */
static void denied_text(const char *server, char *out, size_t cap)
{
    static const char pv[] = "Permissions Violation for ";
    if (strncasecmp(server, pv, sizeof(pv) - 1) == 0) {
        const char *rest = server + sizeof(pv) - 1;
        char word[24];
        size_t n = strcspn(rest, " ");
        if (n >= sizeof(word))
            n = sizeof(word) - 1;
        for (size_t i = 0; i < n; i++)
            word[i] = (char)(rest[i] >= 'A' && rest[i] <= 'Z' ? rest[i] + 32 : rest[i]);
        word[n] = '\0';
        snprintf(out, cap, "permission denied for %s%s", word, rest + strcspn(rest, " "));
        return;
    }
    snprintf(out, cap, "permission denied: %s", server);
}

static void denied_record(const char *text, int64_t timeout_ms)
{
    pthread_mutex_lock(&g_denied_lock);
    snprintf(g_denied, sizeof(g_denied), "%s", text);
    g_denied_at_ms = aq_mono_ms();
    g_denied_window_ms = timeout_ms + DENIED_SLACK_MS;
    pthread_mutex_unlock(&g_denied_lock);
}

/* Copies the refusal that may explain a timeout happening now. */
static bool denied_recent(char *out, size_t cap)
{
    bool found = false;
    pthread_mutex_lock(&g_denied_lock);
    if (g_denied_at_ms && aq_mono_ms() - g_denied_at_ms <= g_denied_window_ms) {
        snprintf(out, cap, "%s", g_denied);
        found = true;
    }
    pthread_mutex_unlock(&g_denied_lock);
    return found;
}

/* The refusal that explains status `s` now: "<refusal> (<what happened>)". */
static bool denied_explains(natsStatus s, char *out, size_t cap)
{
    char denied[DENIED_MAX];
    if ((s != NATS_TIMEOUT && s != NATS_NOT_PERMITTED) || !denied_recent(denied, sizeof(denied)))
        return false;
    snprintf(out, cap, "%s (%s)", denied,
             s == NATS_TIMEOUT ? "the request timed out" : natsStatus_GetText(s));
    return true;
}

const char *aq_queue_status_text(natsStatus s)
{
    static _Thread_local char buf[DENIED_MAX + 32];
    return denied_explains(s, buf, sizeof(buf)) ? buf : natsStatus_GetText(s);
}

aq_status aq_queue_check_inbox_prefix(const char *prefix, aq_err *err)
{
    size_t n = prefix ? strlen(prefix) : 0;
    if (n == 0 || n > AQ_QUEUE_INBOX_PREFIX_MAX)
        return aq_err_set(err, AQ_CONFIG, "nats_inbox_prefix \"%s\": 1 to %d characters",
                          prefix ? prefix : "", AQ_QUEUE_INBOX_PREFIX_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)prefix[i];
        if (ch <= ' ' || ch >= 0x7f || ch == '*' || ch == '>')
            return aq_err_set(err, AQ_CONFIG,
                              "nats_inbox_prefix \"%s\": a subject prefix of printable ASCII "
                              "without wildcards (*, >) or spaces",
                              prefix);
        if (ch == '.' && (i == 0 || i == n - 1 || prefix[i + 1] == '.'))
            return aq_err_set(err, AQ_CONFIG, "nats_inbox_prefix \"%s\": empty subject token",
                              prefix);
    }
    return AQ_OK;
}

aq_status aq_queue_nats_error(aq_err *err, natsStatus s, jsErrCode jerr, const char *what)
{
    aq_status st = s == NATS_TIMEOUT ? AQ_TIMEOUT : AQ_NATS;
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr || jerr == JSConsumerNotFoundErr)
        st = AQ_NOT_FOUND;
    if (jerr == JSStreamWrongLastSequenceErr)
        st = AQ_WRITE_CONFLICT;
    char why[DENIED_MAX + 32];
    if (!jerr && denied_explains(s, why, sizeof(why)))
        return aq_err_set(err, st, "%s: %s", what, why);
    if (jerr)
        return aq_err_set(err, st, "%s: %s (JetStream error %d)", what, natsStatus_GetText(s),
                          (int)jerr);
    /* nats.c keeps a per-thread detail text (e.g. the server's reason). */
    const char *detail = nats_GetLastError(NULL);
    if (detail && *detail && strcmp(detail, natsStatus_GetText(s)) != 0)
        return aq_err_set(err, st, "%s: %s (%s)", what, natsStatus_GetText(s), detail);
    return aq_err_set(err, st, "%s: %s", what, natsStatus_GetText(s));
}

/* Per-connection callback state. nats.c calls back on its own thread, and
 * the CLOSED callback, its last, comes after natsConnection_Close returns:
 * aq_queue_disconnect waits for it, so no callback can outlive the caller's
 * objects. Found by connection through a small registry. */
typedef struct conn_ctx {
    aq_queue_event_fn on_event;
    void *event_arg;
    pthread_mutex_t lock;
    pthread_cond_t closed_cond;
    bool quiet;  /* our own close: user callbacks are no longer called */
    bool closed;
    int64_t timeout_ms;
    char inbox_prefix[AQ_QUEUE_INBOX_PREFIX_MAX + 1];
} conn_ctx;

static pthread_mutex_t g_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static aq_ptrmap g_registry; /* natsConnection* -> conn_ctx* */

static void conn_event(conn_ctx *c, const char *what, const char *detail)
{
    /* The user callback runs under the lock, so once disconnect has set
     * `quiet` none is running or will run. */
    pthread_mutex_lock(&c->lock);
    if (!c->quiet && c->on_event)
        c->on_event(c->event_arg, what, detail);
    pthread_mutex_unlock(&c->lock);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    conn_event(closure, "disconnected", "lost the connection to NATS; reconnecting");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    char url[256] = "", safe[256];
    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    aq_redact_urls(url, safe, sizeof(safe));
    conn_event(closure, "reconnected", safe);
}

static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    conn_ctx *c = closure;
    conn_event(c, "closed", "connection closed");
    pthread_mutex_lock(&c->lock);
    c->closed = true;
    pthread_cond_broadcast(&c->closed_cond);
    pthread_mutex_unlock(&c->lock);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus s, void *closure)
{
    (void)sub;
    conn_ctx *c = closure;
    if (s == NATS_NOT_PERMITTED) {
        /* The server's text, kept by the connection, names the subject. */
        const char *server = NULL;
        char text[DENIED_MAX];
        natsConnection_GetLastError(nc, &server);
        if (server && *server)
            denied_text(server, text, sizeof(text));
        else
            snprintf(text, sizeof(text), "permission denied");
        denied_record(text, c->timeout_ms);
        conn_event(c, "error", text);
        return;
    }
    conn_event(c, "error", natsStatus_GetText(s));
}

static void conn_ctx_free(conn_ctx *c)
{
    if (!c)
        return;
    pthread_cond_destroy(&c->closed_cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

aq_status aq_queue_connect(const aq_queue_config *cfg, const aq_queue_conn_opts *opts,
                           natsConnection **nc_out, jsCtx **js_out, aq_err *err)
{
    natsOptions *no = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus s;
    aq_status st = AQ_OK;
    conn_ctx *ctx = calloc(1, sizeof(*ctx));
    aq_list urls = {NULL, NULL, 0};

    if (!ctx)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    pthread_mutex_init(&ctx->lock, NULL);
    pthread_cond_init(&ctx->closed_cond, NULL);
    if (opts) {
        ctx->on_event = opts->on_event;
        ctx->event_arg = opts->event_arg;
    }
    ctx->timeout_ms = cfg->nats_timeout_ms;
    const char *prefix = cfg->nats_inbox_prefix && *cfg->nats_inbox_prefix
                             ? cfg->nats_inbox_prefix : AQ_QUEUE_INBOX_PREFIX_DEFAULT;
    if ((st = aq_queue_check_inbox_prefix(prefix, err)) != AQ_OK)
        goto out;
    snprintf(ctx->inbox_prefix, sizeof(ctx->inbox_prefix), "%s", prefix);
    if ((st = aq_list_split(cfg->nats_url, "nats_url", MAX_SERVERS, &urls, err)) != AQ_OK)
        goto out;
    if (urls.n == 0) {
        st = aq_err_set(err, AQ_CONFIG, "nats_url is empty");
        goto out;
    }
    if ((s = natsOptions_Create(&no)) != NATS_OK ||
        (s = natsOptions_SetServers(no, urls.items, (int)urls.n)) != NATS_OK ||
        (s = natsOptions_SetTimeout(no, cfg->nats_timeout_ms)) != NATS_OK ||
        (s = natsOptions_SetMaxReconnect(no, -1)) != NATS_OK ||
        (s = natsOptions_SetReconnectWait(no, 250)) != NATS_OK ||
        (s = natsOptions_SetReconnectJitter(no, 100, 1000)) != NATS_OK ||
        (s = natsOptions_SetReconnectBufSize(no, RECONNECT_BUF_BYTES)) != NATS_OK ||
        (s = natsOptions_SetMaxPendingMsgs(no, 1 << 20)) != NATS_OK ||
        (s = natsOptions_SetCustomInboxPrefix(no, prefix)) != NATS_OK) {
        st = aq_queue_nats_error(err, s, 0, "NATS options");
        goto out;
    }
    if (opts && opts->name)
        natsOptions_SetName(no, opts->name);
    if (opts && opts->retry_initial_connect)
        natsOptions_SetRetryOnFailedConnect(no, true, NULL, NULL);
    natsOptions_SetDisconnectedCB(no, on_disconnected, ctx);
    natsOptions_SetReconnectedCB(no, on_reconnected, ctx);
    natsOptions_SetClosedCB(no, on_closed, ctx);
    natsOptions_SetErrorHandler(no, on_error, ctx);
    if (cfg->nats_creds && *cfg->nats_creds &&
        (s = natsOptions_SetUserCredentialsFromFiles(no, cfg->nats_creds, NULL)) != NATS_OK) {
        st = aq_err_set(err, AQ_CONFIG, "nats_creds %s: %s", cfg->nats_creds,
                        natsStatus_GetText(s));
        goto out;
    }
    if (cfg->nats_user && *cfg->nats_user &&
        (s = natsOptions_SetUserInfo(no, cfg->nats_user, cfg->nats_password)) != NATS_OK) {
        st = aq_queue_nats_error(err, s, 0, "nats_user");
        goto out;
    }
    if (cfg->nats_token && *cfg->nats_token &&
        (s = natsOptions_SetToken(no, cfg->nats_token)) != NATS_OK) {
        st = aq_queue_nats_error(err, s, 0, "nats_token");
        goto out;
    }
    if (cfg->nats_tls_ca && *cfg->nats_tls_ca) {
        if ((s = natsOptions_SetSecure(no, true)) != NATS_OK ||
            (s = natsOptions_LoadCATrustedCertificates(no, cfg->nats_tls_ca)) != NATS_OK) {
            st = aq_err_set(err, AQ_CONFIG, "nats_tls_ca %s: %s", cfg->nats_tls_ca,
                            natsStatus_GetText(s));
            goto out;
        }
    }
    if (cfg->nats_tls_cert && *cfg->nats_tls_cert) {
        if ((s = natsOptions_SetSecure(no, true)) != NATS_OK ||
            (s = natsOptions_LoadCertificatesChain(no, cfg->nats_tls_cert,
                                                   cfg->nats_tls_key)) != NATS_OK) {
            st = aq_err_set(err, AQ_CONFIG, "nats_tls_cert/nats_tls_key: %s",
                            natsStatus_GetText(s));
            goto out;
        }
    }
    s = natsConnection_Connect(&nc, no);
    if (s != NATS_OK) {
        char safe[512];
        aq_redact_urls(cfg->nats_url, safe, sizeof(safe));
        st = aq_err_set(err, AQ_NATS_CONNECT, "cannot connect to NATS at %s: %s", safe,
                        natsStatus_GetText(s));
        goto out;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = cfg->nats_timeout_ms;
    if (js_out && (s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK) {
        st = aq_queue_nats_error(err, s, 0, "JetStream context");
        goto out;
    }
    pthread_mutex_lock(&g_registry_lock);
    st = aq_ptrmap_put(&g_registry, nc, ctx);
    pthread_mutex_unlock(&g_registry_lock);
    if (st != AQ_OK) {
        aq_err_set(err, st, "out of memory");
        goto out;
    }
    ctx = NULL; /* the registry has it until aq_queue_disconnect */
    *nc_out = nc;
    if (js_out)
        *js_out = js;
    nc = NULL;
    js = NULL;
out:
    jsCtx_Destroy(js);
    if (nc && ctx) {
        /* A connection that failed after connecting still calls back. */
        pthread_mutex_lock(&ctx->lock);
        ctx->quiet = true;
        pthread_mutex_unlock(&ctx->lock);
        natsConnection_Close(nc);
        pthread_mutex_lock(&ctx->lock);
        while (!ctx->closed)
            pthread_cond_wait(&ctx->closed_cond, &ctx->lock);
        pthread_mutex_unlock(&ctx->lock);
    }
    natsConnection_Destroy(nc);
    /* Without a connection nats.c never calls back: the ctx is ours. */
    conn_ctx_free(ctx);
    natsOptions_Destroy(no);
    aq_list_free(&urls);
    return st;
}

aq_status aq_queue_inbox_new(natsConnection *nc, char *buf, size_t cap, aq_err *err)
{
    char prefix[AQ_QUEUE_INBOX_PREFIX_MAX + 1] = AQ_QUEUE_INBOX_PREFIX_DEFAULT;
    natsInbox *inbox = NULL;
    aq_status st = AQ_OK;
    pthread_mutex_lock(&g_registry_lock);
    const conn_ctx *c = aq_ptrmap_get(&g_registry, nc);
    if (c)
        memcpy(prefix, c->inbox_prefix, sizeof(prefix));
    pthread_mutex_unlock(&g_registry_lock);
    natsStatus s = natsInbox_Create(&inbox);
    if (s != NATS_OK) {
        st = aq_queue_nats_error(err, s, 0, "inbox");
        goto out;
    }
    /* natsInbox_Create knows only "_INBOX"; keep its unique last token. */
    const char *nuid = strrchr((const char *)inbox, '.');
    int n = snprintf(buf, cap, "%s%s", prefix, nuid ? nuid : ".");
    if (n < 0 || (size_t)n >= cap)
        st = aq_err_set(err, AQ_TOO_BIG, "inbox %s...: over %zu bytes", prefix, cap);
out:
    natsInbox_Destroy(inbox);
    return st;
}

void aq_queue_disconnect(natsConnection *nc, jsCtx *js)
{
    jsCtx_Destroy(js);
    if (!nc)
        return;
    pthread_mutex_lock(&g_registry_lock);
    conn_ctx *c = aq_ptrmap_take(&g_registry, nc);
    pthread_mutex_unlock(&g_registry_lock);
    if (c) {
        pthread_mutex_lock(&c->lock);
        c->quiet = true;
        pthread_mutex_unlock(&c->lock);
    }
    natsConnection_Close(nc);
    if (c) {
        /* CLOSED is nats.c's last callback for this connection. */
        pthread_mutex_lock(&c->lock);
        while (!c->closed)
            pthread_cond_wait(&c->closed_cond, &c->lock);
        pthread_mutex_unlock(&c->lock);
        conn_ctx_free(c);
    }
    natsConnection_Destroy(nc);
}
