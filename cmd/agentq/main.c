/* agentq: the operator's and publisher's command line. */
#include <nats/nats.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Longest wait for nats.c to unwind at exit. */
#define CLOSE_WAIT_MS 2000

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"init", cmd_init, "create or update the streams, consumer and results bucket"},
    {"submit", cmd_submit, "submit one task (flags or stdin) or many (--file tasks.jsonl)"},
    {"get", cmd_get, "print the results of task ids as JSON lines"},
    {"wait", cmd_wait, "wait for the results of task ids"},
    {"watch", cmd_watch, "follow an agent run's step events live, then print its result"},
    {"stats", cmd_stats, "queue depth, in-flight, dead letters, stored results"},
    {"status", cmd_status, "fleet status: queue, workers, throughput, latency, cost (--watch)"},
    {"dlq", cmd_dlq, "dead letters: ls, show, replay, purge"},
    {"run", cmd_run, "an agent run's transcript: steps, tokens, cost, tool calls (run show ID)"},
    {"session", cmd_session, "a session's stored history (session show ID)"},
    {"tools", cmd_tools, "tool services: ls (endpoints and stats), call NAME INPUT"},
    {"dev", cmd_dev, "run everything locally: nats-server, simulator, worker, sample tasks"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: agentq <command> [options] [args]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(out, "\n`agentq <command> --help` lists the command's options. Every option can\n"
                 "also be set from the environment or a config file (--config FILE).\n"
                 "exit codes: 0 ok, 1 a task failed, 2 usage, 3 cannot connect, 4 not found or\n"
                 "timed out, 5 other error\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            int rc = commands[i].run(argc - 1, argv + 1);
            /* Wait for nats.c's own threads (message delivery, the message
             * GC) to finish: a process that exits while one still holds a
             * message leaks it (ASan). Every command has destroyed its
             * connection by now, so this returns as soon as they unwind. */
            nats_CloseAndWait(CLOSE_WAIT_MS);
            return rc;
        }
    }
    fprintf(stderr, "agentq: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
