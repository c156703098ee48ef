#include <stdarg.h>
#include <stdio.h>

#include "cli.h"
#include "pipeline/worker_config.h"
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

const aq_option *const cli_shared_options[] = {
    aq_worker_options,  cli_init_options,   cli_submit_options, cli_get_options,
    cli_stats_options,  cli_ls_options,     cli_show_options,   cli_replay_options,
    cli_purge_options,  cli_dev_options,    cli_status_options, cli_run_options,
    cli_session_options, cli_tools_options, cli_tools_call_options, NULL,
};

int cli_parse(const aq_option *opts, void *cfg, const aq_queue_config *q, int argc, char **argv,
              const char *usage, int *argi)
{
    aq_config_cli cli;
    aq_err err;
    if (aq_config_load_shared(opts, cli_shared_options, cfg, argc, argv, &cli, &err) != AQ_OK) {
        cli_error(argv[0], "%s", err.msg);
        return CLI_USAGE;
    }
    if (cli.help) {
        printf("usage: %s\n\n", usage);
        aq_config_print_help(opts, stdout);
        return CLI_OK;
    }
    if (aq_queue_config_validate(q, &err) != AQ_OK) {
        cli_error(argv[0], "%s", err.msg);
        return CLI_USAGE;
    }
    if (cli.print_config) {
        aq_config_print(opts, cfg, stdout);
        return CLI_OK;
    }
    /* Before any connection; not for --print-config, which may check a
     * file meant for another machine. */
    if (aq_config_check_files(opts, cfg, &err) != AQ_OK) {
        cli_error(argv[0], "%s", err.msg);
        return CLI_USAGE;
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
