/*
** bench/bench_tokenizer.c: encoding throughput of the built-in GPT-2
** tokenizer on English prose (tests/fixtures/tokenizer/english.txt repeated
** to about 4 MB), single-threaded, as the median of 5 runs.
**
**   build/bench/bench_tokenizer [path]   (run from the repository root)
**
** Also checks that the ids decode back to the input; exits 1 on any failure.
*/
#include "core/core.h"
#include "bench/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNS 5
#define TARGET_BYTES ((size_t)4 << 20)

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "tests/fixtures/tokenizer/english.txt";
    mech_err err = {0};
    char *one = NULL, *text = NULL, *back = NULL;
    int32_t *ids = NULL;
    mech_tokenizer *tok = NULL;
    int rc = 1;
    size_t one_len, len = 0, n_ids = 0, back_len;
    if (mech_read_file(path, &one, &one_len, &err)) goto fail;
    if (!one_len) {
        mech_err_set(&err, MECH_ERR_FORMAT, "%s: empty", path);
        goto fail;
    }
    size_t reps = (TARGET_BYTES + one_len - 1) / one_len;
    text = malloc(reps * one_len);
    if (!text) {
        mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < reps; i++) memcpy(text + i * one_len, one, one_len);
    len = reps * one_len;
    double t0 = bench_now();
    if (mech_tokenizer_gpt2(&tok, &err)) goto fail;
    double load_s = bench_now() - t0;
    double secs[RUNS];
    for (int r = 0; r < RUNS; r++) {
        mech_free(ids);
        ids = NULL;
        double t = bench_now();
        if (mech_tokenizer_encode(tok, text, len, 0, &ids, &n_ids, &err)) goto fail;
        secs[r] = bench_now() - t;
    }
    if (mech_tokenizer_decode(tok, ids, n_ids, &back, &back_len, &err)) goto fail;
    if (back_len != len || memcmp(back, text, len)) {
        mech_err_set(&err, MECH_ERR_FORMAT, "decode(encode(text)) != text");
        goto fail;
    }
    qsort(secs, RUNS, sizeof secs[0], bench_cmp_double);
    double med = secs[RUNS / 2], mb = (double)len / 1e6;
    printf("tokenizer: english %.1f MB: median %.1f MB/s (%.2f M tokens/s) over %d runs; "
           "load %.0f ms\n",
           mb, mb / med, (double)n_ids / 1e6 / med, RUNS, load_s * 1e3);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
    mech_tokenizer_free(tok);
    mech_free(one);
    mech_free(ids);
    mech_free(back);
    free(text);
    return rc;
}
