#include <stdarg.h>
#include <stdio.h>

#include "cli.h"
#include "queue/queue_conn.h"

void cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "agentq %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_parse(const aq_option *opts, void *cfg, int argc, char **argv, const char *usage,
              int *argi)
{
    aq_config_cli cli;
    aq_err err;
    if (aq_config_load(opts, cfg, argc, argv, &cli, &err) != AQ_OK) {
        cli_error(argv[0], "%s", err.msg);
        return CLI_USAGE;
    }
    if (cli.help) {
        printf("usage: %s\n\n", usage);
        aq_config_print_help(opts, stdout);
        return CLI_OK;
    }
    if (cli.print_config) {
        aq_config_print(opts, cfg, stdout);
        return CLI_OK;
    }
    *argi = cli.argi;
    return -1;
}

int cli_connect(const aq_queue_config *q, natsConnection **nc, jsCtx **js)
{
    aq_err err;
    if (aq_queue_connect(q, NULL, nc, js, &err) != AQ_OK) {
        fprintf(stderr, "agentq: %s\n", err.msg);
        return CLI_CONNECT;
    }
    return CLI_OK;
}
