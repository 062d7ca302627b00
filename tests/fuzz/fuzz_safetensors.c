/*
** tests/fuzz/fuzz_safetensors.c: libFuzzer harness for mech_safetensors_open
** (and through it the JSON parser). Each input is written to a temporary file
** and opened; when it opens, every tensor's bytes are read (so ASan checks
** that they lie inside the mapping) and find/meta are exercised.
**
** Not built by `make`. From the repository root (only the four files it
** needs, so it links even while other core modules are in flux; all of
** core/ works too):
**
**   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_safetensors.c \
**       core/safetensors.c core/json.c core/err.c core/buf.c -lz -lm -pthread \
**       -o build/fuzz_safetensors
**   mkdir -p build/fuzz-corpus
**   MECH_FUZZ_SEED=1 ./build/fuzz_safetensors build/fuzz-corpus -max_total_time=60 -max_len=4096
**
** MECH_FUZZ_SEED=1 writes a few valid files made by mech_safetensors_write
** into build/fuzz-corpus before fuzzing, which makes the fuzzer reach the
** tensor validation much sooner.
** On Debian the fuzzer runtime is in libclang-rt-14-dev.
*/
#include "core/core.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_path[256];

static void write_seed(const char *name, const mech_st_write *w, size_t n, size_t n_meta) {
    char path[512];
    const char *mk[] = {"format", "k"}, *mv[] = {"pt", "v\xC3\xA9"};
    snprintf(path, sizeof path, "build/fuzz-corpus/%s", name);
    mech_safetensors_write(path, w, n, mk, mv, n_meta, NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    snprintf(tmp_path, sizeof tmp_path, "/tmp/fuzz_safetensors_%d.bin", (int)getpid());
    if (getenv("MECH_FUZZ_SEED")) {
        mkdir("build", 0755);
        mkdir("build/fuzz-corpus", 0755);
        float a[6] = {1, 2, 3, 4, 5, 6};
        uint16_t h[3] = {0x3C00, 1, 2};
        int64_t l = 7;
        mech_st_write w[] = {
            {.name = "wte", .dtype = MECH_DT_F32, .ndim = 2, .shape = {2, 3}, .data = a},
            {.name = "h.0.b", .dtype = MECH_DT_F16, .ndim = 1, .shape = {3}, .data = h},
            {.name = "n", .dtype = MECH_DT_I64, .ndim = 0, .data = &l},
            {.name = "e", .dtype = MECH_DT_BOOL, .ndim = 2, .shape = {0, 4}, .data = NULL},
        };
        write_seed("seed1", w, 4, 2);
        write_seed("seed2", w, 1, 0);
        write_seed("seed3", w, 0, 1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *f = fopen(tmp_path, "wb");
    if (!f) return 0;
    if (size) fwrite(data, 1, size, f);
    fclose(f);
    mech_err err = {0};
    mech_safetensors *st = NULL;
    if (mech_safetensors_open(tmp_path, &st, &err) == MECH_OK) {
        volatile unsigned sum = 0;
        for (size_t i = 0; i < st->n; i++) {
            const mech_st_tensor *t = &st->tensors[i];
            const unsigned char *p = t->data;
            for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
            if (mech_safetensors_find(st, t->name) != t) abort();
            if ((const char *)t->data + t->nbytes > (const char *)st->map + st->map_len) abort();
        }
        for (size_t i = 0; i < st->n_meta; i++)
            if (!mech_safetensors_meta(st, st->meta_keys[i])) abort();
        mech_safetensors_close(st);
    } else {
        if (err.code == MECH_OK || !err.msg[0] || !strstr(err.msg, tmp_path)) abort();
    }
    // The header bytes also go straight to the JSON parser.
    mech_json *j = NULL;
    if (mech_json_parse((const char *)data, size, &j, NULL) == MECH_OK) mech_json_free(j);
    return 0;
}
