/* raw_publish: a test tool that puts arbitrary bytes on a JetStream subject
 * (bypassing every check agentq's own publisher makes), and dumps a stream.
 *
 *   raw_publish --url URL --subject S [--header K:V]... [--msg-id ID]
 *               (--file F | --stdin | --hex HEX) [--timeout MS]
 *       JetStream publish; waits for the ack and prints the stream sequence.
 *       A publish the stream refuses prints the server's error, exit 1.
 *
 *   raw_publish --url URL --dump-stream STREAM [--payload]
 *       One JSON line per message: {"seq","subject","headers":{K:V},"len"}
 *       (+ "payload_hex" with --payload).
 *
 * Exit codes: 0 ok, 1 refused by the server / failed, 2 usage.
 * --url defaults to $AGENTQ_NATS_URL, then nats://127.0.0.1:4222.
 */
#include <errno.h>
#include <jansson.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADERS 64

typedef struct opts {
    const char *url;
    const char *subject;
    const char *msg_id;
    const char *file;
    const char *hex;
    const char *dump_stream;
    bool use_stdin;
    bool payload;
    int64_t timeout_ms;
    const char *headers[MAX_HEADERS];
    int n_headers;
} opts;

static void usage(void)
{
    fprintf(stderr,
            "usage: raw_publish [--url URL] --subject S [--header K:V]... [--msg-id ID]\n"
            "                   (--file F | --stdin | --hex HEX) [--timeout MS]\n"
            "       raw_publish [--url URL] --dump-stream STREAM [--payload]\n");
}

static int die_usage(const char *what)
{
    fprintf(stderr, "raw_publish: %s\n", what);
    usage();
    return 2;
}

/* The whole of a FILE* into malloc'ed memory. */
static int read_all(FILE *in, unsigned char **out, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    if (!b)
        return -1;
    for (;;) {
        if (n == cap) {
            unsigned char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return -1;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, in);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(in)) {
        free(b);
        return -1;
    }
    *out = b;
    *len = n;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Hex digits, whitespace ignored. */
static int from_hex(const char *hex, unsigned char **out, size_t *len)
{
    size_t n = strlen(hex), k = 0;
    unsigned char *b = malloc(n / 2 + 1);
    int hi = -1;
    if (!b)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (hex[i] == ' ' || hex[i] == '\n' || hex[i] == '\t' || hex[i] == '\r')
            continue;
        int v = hexval(hex[i]);
        if (v < 0) {
            free(b);
            return -1;
        }
        if (hi < 0) {
            hi = v;
        } else {
            b[k++] = (unsigned char)(hi << 4 | v);
            hi = -1;
        }
    }
    if (hi >= 0) {
        free(b);
        return -1;
    }
    *out = b;
    *len = k;
    return 0;
}

/* nats.c's per-thread detail (the server's reason), without its "(file.c:NN): " prefix. */
static const char *last_error(natsStatus s)
{
    const char *d = nats_GetLastError(NULL);
    if (!d || !*d)
        return natsStatus_GetText(s);
    if (d[0] == '(') {
        const char *end = strstr(d, "): ");
        if (end)
            d = end + 3;
    }
    return d;
}

static int do_publish(jsCtx *js, const opts *o)
{
    unsigned char *data = NULL;
    size_t len = 0;
    int rc = 1;
    natsMsg *m = NULL;
    jsPubAck *pa = NULL;

    if (o->file) {
        FILE *f = fopen(o->file, "rb");
        if (!f) {
            fprintf(stderr, "raw_publish: cannot open %s: %s\n", o->file, strerror(errno));
            return 2;
        }
        int r = read_all(f, &data, &len);
        fclose(f);
        if (r != 0) {
            fprintf(stderr, "raw_publish: cannot read %s\n", o->file);
            return 1;
        }
    } else if (o->use_stdin) {
        if (read_all(stdin, &data, &len) != 0) {
            fprintf(stderr, "raw_publish: cannot read stdin\n");
            return 1;
        }
    } else if (from_hex(o->hex, &data, &len) != 0) {
        fprintf(stderr, "raw_publish: --hex: not an even number of hex digits\n");
        return 2;
    }
    if (len > INT32_MAX) {
        fprintf(stderr, "raw_publish: payload of %zu bytes is too large\n", len);
        goto out;
    }
    natsStatus s = natsMsg_Create(&m, o->subject, NULL, (const char *)data, (int)len);
    for (int i = 0; s == NATS_OK && i < o->n_headers; i++) {
        char *kv = strdup(o->headers[i]);
        char *colon = kv ? strchr(kv, ':') : NULL;
        if (!colon) {
            fprintf(stderr, "raw_publish: --header %s: expected K:V\n", o->headers[i]);
            free(kv);
            rc = 2;
            goto out;
        }
        *colon = '\0';
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        s = natsMsgHeader_Add(m, kv, v);
        free(kv);
    }
    if (s != NATS_OK) {
        fprintf(stderr, "raw_publish: cannot build the message: %s\n", last_error(s));
        goto out;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = o->msg_id;
    po.MaxWait = o->timeout_ms;
    jsErrCode jerr = 0;
    s = js_PublishMsg(&pa, js, m, &po, &jerr);
    if (s != NATS_OK) {
        if (jerr)
            fprintf(stderr, "raw_publish: refused: %s (JetStream error %d)\n", last_error(s),
                    (int)jerr);
        else
            fprintf(stderr, "raw_publish: publish failed: %s\n", last_error(s));
        goto out;
    }
    printf("%llu\n", (unsigned long long)pa->Sequence);
    if (pa->Duplicate)
        fprintf(stderr, "raw_publish: duplicate (the stream already had msg id %s)\n",
                o->msg_id ? o->msg_id : "");
    rc = 0;
out:
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    free(data);
    return rc;
}

static char *to_hex(const char *d, int n)
{
    static const char digits[] = "0123456789abcdef";
    char *h = malloc((size_t)n * 2 + 1);
    if (!h)
        return NULL;
    for (int i = 0; i < n; i++) {
        h[2 * i] = digits[(unsigned char)d[i] >> 4];
        h[2 * i + 1] = digits[(unsigned char)d[i] & 15];
    }
    h[2 * n] = '\0';
    return h;
}

static int do_dump(jsCtx *js, const opts *o)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, o->dump_stream, NULL, &jerr);
    if (s != NATS_OK) {
        fprintf(stderr, "raw_publish: stream %s: %s (JetStream error %d)\n", o->dump_stream,
                last_error(s), (int)jerr);
        return 1;
    }
    uint64_t first = si->State.FirstSeq, last = si->State.LastSeq, msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    if (msgs == 0)
        return 0;
    for (uint64_t seq = first; seq && seq <= last; seq++) {
        natsMsg *m = NULL;
        jerr = 0;
        s = js_GetMsg(&m, js, o->dump_stream, seq, NULL, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
            continue; /* deleted or acked away */
        if (s != NATS_OK) {
            fprintf(stderr, "raw_publish: %s seq %llu: %s (JetStream error %d)\n",
                    o->dump_stream, (unsigned long long)seq, last_error(s), (int)jerr);
            return 1;
        }
        json_t *line = json_object();
        json_t *hdrs = json_object();
        const char **keys = NULL;
        int nk = 0;
        if (natsMsgHeader_Keys(m, &keys, &nk) == NATS_OK) {
            for (int i = 0; i < nk; i++) {
                const char *v = NULL;
                if (natsMsgHeader_Get(m, keys[i], &v) == NATS_OK && v)
                    json_object_set_new(hdrs, keys[i], json_string(v));
            }
            free((void *)keys);
        }
        json_object_set_new(line, "seq", json_integer((json_int_t)seq));
        json_object_set_new(line, "subject", json_string(natsMsg_GetSubject(m)));
        json_object_set_new(line, "headers", hdrs);
        json_object_set_new(line, "len", json_integer(natsMsg_GetDataLength(m)));
        if (o->payload) {
            char *h = to_hex(natsMsg_GetData(m), natsMsg_GetDataLength(m));
            json_object_set_new(line, "payload_hex", json_string(h ? h : ""));
            free(h);
        }
        json_dumpf(line, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(line);
        natsMsg_Destroy(m);
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    memset(&o, 0, sizeof(o));
    o.url = getenv("AGENTQ_NATS_URL");
    if (!o.url || !*o.url)
        o.url = "nats://127.0.0.1:4222";
    o.timeout_ms = 5000;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_next = i + 1 < argc;
#define ARG(name) (strcmp(a, name) == 0 && has_next)
        if (ARG("--url"))
            o.url = argv[++i];
        else if (ARG("--subject"))
            o.subject = argv[++i];
        else if (ARG("--msg-id"))
            o.msg_id = argv[++i];
        else if (ARG("--file"))
            o.file = argv[++i];
        else if (ARG("--hex"))
            o.hex = argv[++i];
        else if (ARG("--dump-stream"))
            o.dump_stream = argv[++i];
        else if (ARG("--timeout"))
            o.timeout_ms = strtoll(argv[++i], NULL, 10);
        else if (ARG("--header")) {
            if (o.n_headers == MAX_HEADERS)
                return die_usage("too many --header");
            o.headers[o.n_headers++] = argv[++i];
        } else if (strcmp(a, "--stdin") == 0)
            o.use_stdin = true;
        else if (strcmp(a, "--payload") == 0)
            o.payload = true;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
            return 0;
        } else {
            fprintf(stderr, "raw_publish: unknown or incomplete argument '%s'\n", a);
            usage();
            return 2;
        }
#undef ARG
    }
    if (!o.dump_stream) {
        if (!o.subject)
            return die_usage("--subject is required");
        if ((o.file != NULL) + o.use_stdin + (o.hex != NULL) != 1)
            return die_usage("give exactly one of --file, --stdin, --hex");
    }
    if (o.timeout_ms <= 0)
        return die_usage("--timeout must be positive (milliseconds)");

    natsOptions *no = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    int rc = 1;
    natsStatus s = natsOptions_Create(&no);
    /* --url may be a comma-separated list (a cluster). */
    char *urls = strdup(o.url);
    const char *servers[32];
    int n_servers = 0;
    for (char *save = NULL, *u = urls ? strtok_r(urls, ",", &save) : NULL; u && n_servers < 32;
         u = strtok_r(NULL, ",", &save))
        servers[n_servers++] = u;
    if (s == NATS_OK)
        s = n_servers ? natsOptions_SetServers(no, servers, n_servers) : NATS_INVALID_ARG;
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(no, o.timeout_ms);
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, no);
    if (s != NATS_OK) {
        fprintf(stderr, "raw_publish: cannot connect to %s: %s\n", o.url, last_error(s));
        goto out;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = o.timeout_ms;
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK) {
        fprintf(stderr, "raw_publish: JetStream context: %s\n", last_error(s));
        goto out;
    }
    rc = o.dump_stream ? do_dump(js, &o) : do_publish(js, &o);
out:
    fflush(stdout);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(no);
    free(urls);
    nats_Close();
    return rc;
}
