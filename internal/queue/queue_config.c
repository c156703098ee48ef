#include "queue_config.h"

#include <stdbool.h>
#include <string.h>

static bool set(const char *s)
{
    return s && *s;
}

/* One prefix equals the other or begins it at a token boundary. */
bool aq_queue_subjects_overlap(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b), n = na < nb ? na : nb;
    if (strncmp(a, b, n) != 0)
        return false;
    return na == nb || (na < nb ? b[na] == '.' : a[nb] == '.');
}

static bool has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; s && *p; p++)
        if (*p < ' ' || *p == 0x7f)
            return true;
    return false;
}

aq_status aq_queue_config_validate(const aq_queue_config *cfg, aq_err *err)
{
    /* They go into the CONNECT line: never echoed (two are secrets). */
    const char *auth[][2] = {{"nats_user", cfg->nats_user},
                             {"nats_password", cfg->nats_password},
                             {"nats_token", cfg->nats_token}};
    for (size_t i = 0; i < 3; i++)
        if (has_control(auth[i][1]))
            return aq_err_set(err, AQ_CONFIG, "%s has a control character", auth[i][0]);
    if (set(cfg->nats_tls_cert) != set(cfg->nats_tls_key))
        return aq_err_set(err, AQ_CONFIG,
                          "%s is set but %s is not: NATS mutual TLS needs both the client "
                          "certificate and its key",
                          set(cfg->nats_tls_cert) ? "nats_tls_cert" : "nats_tls_key",
                          set(cfg->nats_tls_cert) ? "nats_tls_key" : "nats_tls_cert");
    if (set(cfg->nats_password) && !set(cfg->nats_user))
        return aq_err_set(err, AQ_CONFIG, "nats_password is set but nats_user is not");
    const char *streams[][2] = {{"task_stream", cfg->task_stream},
                                {"dlq_stream", cfg->dlq_stream},
                                {"advisory_stream", cfg->advisory_stream}};
    for (size_t i = 0; i < 3; i++)
        for (size_t j = i + 1; j < 3; j++)
            if (set(streams[i][1]) && set(streams[j][1]) &&
                strcmp(streams[i][1], streams[j][1]) == 0)
                return aq_err_set(err, AQ_CONFIG, "%s and %s are the same stream '%s'",
                                  streams[i][0], streams[j][0], streams[i][1]);
    if (set(cfg->task_subjects) && set(cfg->dlq_subjects) &&
        aq_queue_subjects_overlap(cfg->task_subjects, cfg->dlq_subjects))
        return aq_err_set(err, AQ_CONFIG,
                          "task_subjects '%s' and dlq_subjects '%s' overlap: dead letters would "
                          "be queued as tasks",
                          cfg->task_subjects, cfg->dlq_subjects);
    return AQ_OK;
}
