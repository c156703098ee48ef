#include "status.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *cls;
    aq_disposition disp;
    const char *text;
} status_table[] = {
#define AQ_X_ROW(name, cls, disp, desc) [AQ_##name] = {cls, disp, desc},
    AQ_STATUS_MAP(AQ_X_ROW)
#undef AQ_X_ROW
};

static int status_in_range(aq_status st)
{
    return (int)st >= 0 && st < AQ__STATUS_COUNT;
}

const char *aq_status_class(aq_status st)
{
    return status_in_range(st) ? status_table[st].cls : "unknown";
}

const char *aq_status_text(aq_status st)
{
    return status_in_range(st) ? status_table[st].text : "unknown status";
}

aq_disposition aq_status_disposition(aq_status st)
{
    return status_in_range(st) ? status_table[st].disp : AQ_DISP_PERMANENT;
}

__attribute__((format(printf, 3, 0)))
static aq_status err_vset(aq_err *err, aq_status st, const char *fmt, va_list ap)
{
    if (err) {
        err->status = st;
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    }
    return st;
}

aq_status aq_err_set(aq_err *err, aq_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, st, fmt, ap);
    va_end(ap);
    return st;
}

aq_status aq_err_prefix(aq_err *err, const char *fmt, ...)
{
    if (!err)
        return AQ_OK;
    char prefix[AQ_ERR_MAX], old[AQ_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    /* Truncation is acceptable: the message is for people, and bounded. */
    size_t plen = strnlen(prefix, sizeof(err->msg) - 3);
    memcpy(err->msg, prefix, plen);
    memcpy(err->msg + plen, ": ", 2);
    size_t room = sizeof(err->msg) - plen - 3;
    size_t olen = strnlen(old, room);
    memcpy(err->msg + plen + 2, old, olen);
    err->msg[plen + 2 + olen] = '\0';
    return err->status;
}

void aq_err_clear(aq_err *err)
{
    if (err) {
        err->status = AQ_OK;
        err->msg[0] = '\0';
    }
}
