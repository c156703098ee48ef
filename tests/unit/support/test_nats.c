#include "test_nats.h"

#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* nats-server --ports_file_dir writes {"nats": ["nats://127.0.0.1:PORT"], ...}. */
static bool read_port_file(const char *path, char *url, size_t n)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    json_t *first = root ? json_array_get(json_object_get(root, "nats"), 0) : NULL;
    bool ok = json_is_string(first);
    if (ok)
        snprintf(url, n, "%s", json_string_value(first));
    json_decref(root);
    return ok;
}

int aq_test_nats_start(aq_test_nats *s, const char *name, bool jetstream)
{
    char store[128], log[128], ports[160];
    s->pid = -1;
    snprintf(s->dir, sizeof(s->dir), "/tmp/aq-%s.XXXXXX", name);
    if (!mkdtemp(s->dir))
        return -1;
    snprintf(store, sizeof(store), "%s/js", s->dir);
    snprintf(log, sizeof(log), "%s/nats.log", s->dir);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char *js_args[] = {"nats-server", "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", store,
                           "--ports_file_dir", s->dir, NULL};
        char *core_args[] = {"nats-server", "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir",
                             s->dir, NULL};
        char **args = jetstream ? js_args : core_args;
        execvp("nats-server", args);
        execv("/usr/sbin/nats-server", args);
        _exit(127);
    }
    s->pid = pid;
    snprintf(ports, sizeof(ports), "%s/nats-server_%d.ports", s->dir, (int)pid);
    int64_t until = aq_mono_ms() + 10000;
    while (!read_port_file(ports, s->url, sizeof(s->url))) {
        if (aq_mono_ms() > until)
            return -1;
        usleep(20000);
    }
    return 0;
}

natsStatus aq_test_nats_connect(const aq_test_nats *s, natsConnection **nc)
{
    natsStatus st = NATS_ERR;
    for (int i = 0; i < 100 && st != NATS_OK; i++) {
        st = natsConnection_ConnectTo(nc, s->url);
        if (st != NATS_OK)
            usleep(50000);
    }
    return st;
}

void aq_test_nats_stop(aq_test_nats *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGCONT);
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = -1;
    }
    if (s->dir[0])
        nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
