/*
** bench/bench_train.c: one training step (forward, backward of the mean
** next-token loss, AdamW update) of GPT-2 small's config with random
** weights at B=4, T=64, 2 threads, median of 5 after a warm-up step; beside
** it, in the same run, llm.c's train_gpt2.c step at the same B and T
** (bench/llmc_step.c, built inside $LLMC_DIR with the flags llm.c's own
** Makefile uses for train_gpt2, run with OMP_NUM_THREADS=2), the two
** steps alternating so that load from other processes falls on both. Without
** LLMC_DIR the anchor is skipped (llm.c is not vendored). Target: mech's
** step at least 3x faster than llm.c's.
**
**   LLMC_DIR=/path/to/llm.c build/bench/bench_train [--quick]
*/
#include "core/core.h"
#include "bench/bench.h"
#include "bench/llmc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const mech_err *err) {
    fprintf(stderr, "bench: %s\n", err->msg);
    exit(1);
}

static mech_status fixed_batch(void *user, int64_t index, int B, int T, int32_t *ids, int32_t *targets, mech_err *err) {
    (void)user, (void)err;
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)((7919u * (unsigned)(i + index) + 42u) % 50257u);
        targets[i] = (int32_t)((7919u * (unsigned)(i + index + 1) + 42u) % 50257u);
    }
    return MECH_OK;
}


int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    int B = 4, T = 64, reps = quick ? 1 : 5;
    mech_config c = mech_config_gpt2_small();
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&c, 1, &m, &err)) die(&err);
    mech_train_opts o;
    mech_train_opts_default(&o);
    o.B = B, o.T = T, o.steps = 1000, o.warmup = 0, o.threads = 2;
    mech_trainer *t = NULL;
    if (mech_trainer_new(m, &o, &t, &err)) die(&err);
    mech_model_free(m);
    printf("train: GPT-2 small config (random weights), one step = forward + backward + AdamW (+ grad norm), "
           "B=%d T=%d, kernel %s, 2 threads, median of %d\n", B, T, mech_matmul_kernel(), reps);
    const char *dir = getenv("LLMC_DIR");
    llmc_proc lp = {0};
    int with_llmc = dir && *dir;
    if (with_llmc && llmc_start(dir, B, T, "step", &lp)) {
        printf("  llm.c step: failed (see above)\n");
        llmc_stop(&lp);
        with_llmc = 0;
    }
    double ts[16], tl[16];
    mech_train_step st;
    if (mech_trainer_step(t, fixed_batch, NULL, &st, &err)) die(&err); // warm-up: first touch of every buffer
    for (int i = 0; i < reps; i++) {
        // alternate, so that load from other processes falls on both alike
        double t0 = bench_now();
        if (mech_trainer_step(t, fixed_batch, NULL, &st, &err)) die(&err);
        ts[i] = bench_now() - t0;
        if (with_llmc && llmc_next(&lp, &tl[i])) {
            printf("  llm.c step: failed\n");
            with_llmc = 0;
        }
    }
    mech_trainer_free(t);
    double mech_ms = bench_median(ts, reps) * 1e3;
    printf("  mech  step %9.1f ms  (%.0f tokens/s)\n", mech_ms, B * T / (mech_ms * 1e-3));
    if (!dir || !*dir) {
        printf("  llm.c step: skipped (set LLMC_DIR to an llm.c checkout to measure the anchor)\n");
        return 0;
    }
    llmc_stop(&lp);
    if (!with_llmc) return 0;
    double l = bench_median(tl, reps);
    printf("  llm.c step %9.1f ms  (%.0f tokens/s)\n", l, B * T / (l * 1e-3));
    printf("  mech is %.2fx llm.c's speed (target >= 3x)\n", l / mech_ms);
    return 0;
}
