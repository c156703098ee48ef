/* agentq-sim: the Anthropic-compatible simulator. Configuration, logging and
 * signals; the server is internal/sim. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "sim/sim.h"

static int write_port_file(const char *path, int port, aq_err *err)
{
    char tmp[PATH_MAX];
    FILE *f;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
        return aq_err_set(err, AQ_CONFIG, "port_file: path too long");
    f = fopen(tmp, "w");
    if (!f)
        return aq_err_set(err, AQ_IO, "port_file %s: %s", tmp, strerror(errno));
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return aq_err_set(err, AQ_IO, "port_file %s: %s", path, strerror(e));
    }
    return AQ_OK;
}

int main(int argc, char **argv)
{
    aq_sim_config cfg = {0};
    aq_config_cli cli = {0};
    aq_err err = {0};
    aq_sim_server *srv = NULL;
    aq_log_level level;
    uint64_t nofile = 0;
    sigset_t stop_signals;
    int rc = 1, sig = 0;

    aq_log_init("agentq-sim", AQ_LOG_INFO, stderr);
    if (aq_config_load(aq_sim_options, &cfg, argc, argv, &cli, &err) != AQ_OK) {
        aq_log(AQ_LOG_ERROR, "bad configuration", AQ_LF_S("error", err.msg));
        rc = 2;
        goto out;
    }
    if (cli.help) {
        printf("agentq-sim: an Anthropic-compatible Messages API simulator\n"
               "routes: POST /v1/messages, GET /sim/stats, POST /sim/reset, GET /healthz\n\n");
        aq_config_print_help(aq_sim_options, stdout);
        rc = 0;
        goto out;
    }
    if (cli.print_config) {
        aq_config_print(aq_sim_options, &cfg, stdout);
        rc = 0;
        goto out;
    }
    if (cli.argi < argc) {
        aq_log(AQ_LOG_ERROR, "unexpected argument", AQ_LF_S("arg", argv[cli.argi]));
        rc = 2;
        goto out;
    }
    if (aq_log_level_parse(cfg.log_level, &level) != AQ_OK) {
        aq_log(AQ_LOG_ERROR, "bad configuration", AQ_LF_S("error", "log_level: not debug, info, warn or error"));
        rc = 2;
        goto out;
    }
    aq_log_init("agentq-sim", level, stderr);
    if (aq_sim_raise_nofile(&nofile, &err) != AQ_OK)
        aq_log(AQ_LOG_WARN, "cannot raise the open-file limit", AQ_LF_S("error", err.msg));

    /* Signals go to this thread only (the workers inherit the mask); it waits
     * for one and then drains the server. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (aq_sim_server_new(&cfg, &srv, &err) != AQ_OK || aq_sim_server_start(srv, &err) != AQ_OK) {
        aq_log(AQ_LOG_ERROR, "cannot start", AQ_LF_S("error", err.msg), AQ_LF_S("listen", cfg.listen));
        rc = err.status == AQ_CONFIG ? 2 : 1;
        goto out;
    }
    aq_log(AQ_LOG_INFO, "listening", AQ_LF_S("listen", cfg.listen),
           AQ_LF_I("port", aq_sim_server_port(srv)), AQ_LF_I("threads", aq_sim_server_threads(srv)),
           AQ_LF_I("nofile", (long long)nofile));
    if (cfg.port_file && *cfg.port_file &&
        write_port_file(cfg.port_file, aq_sim_server_port(srv), &err) != AQ_OK) {
        aq_log(AQ_LOG_ERROR, "cannot write the port file", AQ_LF_S("error", err.msg));
        goto out;
    }
    while (sigwait(&stop_signals, &sig) != 0) {
    }
    aq_log(AQ_LOG_INFO, "stopping", AQ_LF_S("signal", sig == SIGINT ? "SIGINT" : "SIGTERM"));
    aq_sim_server_stop(srv);
    rc = 0;
out:
    aq_sim_server_destroy(srv);
    aq_config_free(aq_sim_options, &cfg);
    return rc;
}
