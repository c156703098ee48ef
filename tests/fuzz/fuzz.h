/* Shared by the fuzz targets (tests/fuzz/fuzz_*.c) and replay_main.c.
 *
 * Each target defines LLVMFuzzerTestOneInput. Built with -DAQ_FUZZ=ON under
 * clang it is linked with libFuzzer (-fsanitize=fuzzer); in every test build it
 * is linked with replay_main.c, which feeds it the files of its seed corpus. */
#ifndef AQ_FUZZ_H
#define AQ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test. Not assert(): release builds define
 * NDEBUG. abort() is what libFuzzer reports as a crash, with the input saved. */
#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* The same, printing an aq_err message as well. */
#define FUZZ_CHECK_ERR(cond, errp)                                                         \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: invariant violated: %s (error: %s)\n", __FILE__,       \
                    __LINE__, #cond, (errp)->msg);                                         \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#endif
