/* Replays inputs through a fuzz target without libFuzzer, so that every test
 * build (gcc, and the ASan + UBSan build) runs the seed corpora as regression
 * tests:   fuzz_<target>_replay DIR_OR_FILE...
 * Each regular file of a directory (sorted by name) is read into a buffer of
 * exactly its size, as libFuzzer does, so that ASan sees any read past the
 * end. A directory without inputs is an error (a corpus that went missing
 * must not pass silently). Exit 0 when every input ran; a failing invariant
 * or a sanitizer report aborts. */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < 0) {
        fprintf(stderr, "replay: %s: cannot stat\n", path);
        fclose(f);
        return -1;
    }
    size_t n = (size_t)sb.st_size;
    /* malloc(0) may return NULL; the target still gets a valid pointer. */
    uint8_t *data = malloc(n ? n : 1);
    if (!data || fread(data, 1, n, f) != n) {
        fprintf(stderr, "replay: %s: cannot read\n", path);
        free(data);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, n);
    free(data);
    return 0;
}

static int is_input(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

static int replay_dir(const char *dir, int *count)
{
    struct dirent **names;
    int n = scandir(dir, &names, is_input, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat sb;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        if (rc == 0 && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            if (replay_file(path) != 0)
                rc = -1;
            else
                (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        int count = 0, rc;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        rc = S_ISDIR(sb.st_mode) ? replay_dir(argv[i], &count) : replay_file(argv[i]);
        if (rc == 0 && !S_ISDIR(sb.st_mode))
            count = 1;
        if (rc != 0)
            return 1;
        if (count == 0) {
            fprintf(stderr, "replay: %s: no inputs\n", argv[i]);
            return 1;
        }
        printf("replay: %s: %d input%s OK\n", argv[i], count, count == 1 ? "" : "s");
    }
    return 0;
}
