/* nats_probe: what may a NATS user do? A test tool for the permissions test
 * (tests/integration/nats_permissions.sh). Each action runs on a connection
 * of its own (nats.c keeps a refusal on the connection) and prints one line:
 *
 *   sub:SUBJECT         subscribe and listen for --wait ms:
 *                         "sub SUBJECT denied" or "sub SUBJECT allowed N" (N messages heard)
 *   pub:SUBJECT         publish an empty message: "pub SUBJECT denied|allowed"
 *   req:SUBJECT[:BODY]  request, waiting --wait ms for the answer:
 *                         "req SUBJECT denied|timeout|answered <first 200 bytes of the answer>"
 *
 * The connection comes from the environment agentq's programs read:
 * AGENTQ_NATS_URL, AGENTQ_NATS_USER, AGENTQ_NATS_PASSWORD, AGENTQ_NATS_TLS_CA,
 * AGENTQ_NATS_TLS_CERT, AGENTQ_NATS_TLS_KEY, AGENTQ_NATS_INBOX_PREFIX.
 *
 *   nats_probe [--wait MS] ACTION...
 *
 * Exit codes: 0 every action ran, 1 cannot connect, 2 usage.
 */
#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static natsStatus probe_connect(natsConnection **nc)
{
    natsOptions *o = NULL;
    const char *url = env("AGENTQ_NATS_URL"), *user = env("AGENTQ_NATS_USER");
    const char *ca = env("AGENTQ_NATS_TLS_CA"), *cert = env("AGENTQ_NATS_TLS_CERT");
    const char *prefix = env("AGENTQ_NATS_INBOX_PREFIX");
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url ? url : "nats://127.0.0.1:4222");
    if (s == NATS_OK && user)
        s = natsOptions_SetUserInfo(o, user, env("AGENTQ_NATS_PASSWORD"));
    if (s == NATS_OK && (ca || cert))
        s = natsOptions_SetSecure(o, true);
    if (s == NATS_OK && ca)
        s = natsOptions_LoadCATrustedCertificates(o, ca);
    if (s == NATS_OK && cert)
        s = natsOptions_LoadCertificatesChain(o, cert, env("AGENTQ_NATS_TLS_KEY"));
    if (s == NATS_OK && prefix)
        s = natsOptions_SetCustomInboxPrefix(o, prefix);
    /* No reconnects: a probe that loses its connection has failed. */
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, 0);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, o);
    natsOptions_Destroy(o);
    return s;
}

/* The server's refusal arrives before the answer to the flush's PING. */
static bool refused(natsConnection *nc)
{
    const char *text = NULL;
    natsConnection_FlushTimeout(nc, 5000);
    return natsConnection_GetLastError(nc, &text) == NATS_NOT_PERMITTED;
}

static void probe_sub(natsConnection *nc, const char *subject, int64_t wait_ms)
{
    natsSubscription *sub = NULL;
    int heard = 0;
    if (natsConnection_SubscribeSync(&sub, nc, subject) != NATS_OK) {
        printf("sub %s error\n", subject);
        return;
    }
    if (refused(nc)) {
        printf("sub %s denied\n", subject);
    } else {
        natsMsg *m = NULL;
        while (natsSubscription_NextMsg(&m, sub, wait_ms) == NATS_OK) {
            heard++;
            natsMsg_Destroy(m);
        }
        printf("sub %s allowed %d\n", subject, heard);
    }
    natsSubscription_Destroy(sub);
}

static void probe_pub(natsConnection *nc, const char *subject)
{
    if (natsConnection_Publish(nc, subject, NULL, 0) != NATS_OK)
        printf("pub %s error\n", subject);
    else
        printf("pub %s %s\n", subject, refused(nc) ? "denied" : "allowed");
}

/* A request by hand, so that a refusal (of the inbox subscription or of
 * the publish) is seen at once instead of after the wait. */
static void probe_req(natsConnection *nc, const char *subject, const char *body, int64_t wait_ms)
{
    natsSubscription *sub = NULL;
    natsInbox *nuid = NULL;
    natsMsg *reply = NULL;
    char inbox[256];
    const char *prefix = env("AGENTQ_NATS_INBOX_PREFIX");
    if (natsInbox_Create(&nuid) != NATS_OK) {
        printf("req %s error\n", subject);
        return;
    }
    /* natsInbox_Create knows only "_INBOX": keep its unique last token. */
    snprintf(inbox, sizeof(inbox), "%s%s", prefix ? prefix : "_INBOX", strrchr(nuid, '.'));
    natsInbox_Destroy(nuid);
    if (natsConnection_SubscribeSync(&sub, nc, inbox) != NATS_OK ||
        natsConnection_PublishRequestString(nc, subject, inbox, body ? body : "") != NATS_OK) {
        printf("req %s error\n", subject);
    } else if (refused(nc)) {
        printf("req %s denied\n", subject);
    } else if (natsSubscription_NextMsg(&reply, sub, wait_ms) == NATS_OK) {
        int n = natsMsg_GetDataLength(reply);
        printf("req %s answered %.*s\n", subject, n < 200 ? n : 200,
               natsMsg_GetData(reply) ? natsMsg_GetData(reply) : "");
        natsMsg_Destroy(reply);
    } else {
        printf("req %s timeout\n", subject);
    }
    natsSubscription_Destroy(sub);
}

int main(int argc, char **argv)
{
    int64_t wait_ms = 1000;
    int i = 1, rc = 0;
    if (i + 1 < argc && strcmp(argv[i], "--wait") == 0) {
        wait_ms = strtoll(argv[i + 1], NULL, 10);
        i += 2;
    }
    if (i >= argc || wait_ms <= 0) {
        fprintf(stderr, "usage: nats_probe [--wait MS] (sub:SUBJECT | pub:SUBJECT | "
                        "req:SUBJECT[:BODY])...\n");
        return 2;
    }
    for (; i < argc; i++) {
        char action[1024];
        snprintf(action, sizeof(action), "%s", argv[i]);
        char *subject = strchr(action, ':');
        if (!subject || !subject[1]) {
            fprintf(stderr, "nats_probe: bad action %s\n", argv[i]);
            rc = 2;
            break;
        }
        *subject++ = '\0';
        natsConnection *nc = NULL;
        natsStatus s = probe_connect(&nc);
        if (s != NATS_OK) {
            fprintf(stderr, "nats_probe: cannot connect: %s (%s)\n", natsStatus_GetText(s),
                    nats_GetLastError(NULL));
            rc = 1;
            break;
        }
        if (strcmp(action, "sub") == 0) {
            probe_sub(nc, subject, wait_ms);
        } else if (strcmp(action, "pub") == 0) {
            probe_pub(nc, subject);
        } else if (strcmp(action, "req") == 0) {
            char *body = strchr(subject, ':');
            if (body)
                *body++ = '\0';
            probe_req(nc, subject, body, wait_ms);
        } else {
            fprintf(stderr, "nats_probe: bad action %s\n", argv[i]);
            rc = 2;
        }
        fflush(stdout);
        natsConnection_Destroy(nc);
        if (rc)
            break;
    }
    nats_CloseAndWait(2000);
    return rc;
}
