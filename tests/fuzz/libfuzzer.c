/*
** tests/fuzz/libfuzzer.c: the libFuzzer driver, compiled once per target
** with -DMECH_FUZZ_TARGET=<name> (see `make fuzz`); the work is in the
** shared entry mech_fuzz_<name>.
*/
#include "tests/fuzz/fuzz.h"

#include <stdlib.h>

#define ENTRY_(t) mech_fuzz_##t
#define ENTRY(t) ENTRY_(t)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    atexit(mech_fuzz_cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (ENTRY(MECH_FUZZ_TARGET)(data, size)) {
        fprintf(stderr, "fuzz contract violated: %s\n", mech_fuzz_why);
        abort();
    }
    return 0;
}
