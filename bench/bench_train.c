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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

// llm.c's step: builds bench/llmc_step.c in dir with the compile line
// llm.c's Makefile prints for train_gpt2 (make -n) and starts it with
// OMP_NUM_THREADS=2; *to and *from are its stdin and stdout. 0, or -1
// after saying why.
typedef struct llmc_proc {
    FILE *to, *from;
    pid_t pid;
} llmc_proc;

static int llmc_start(const char *dir, int B, int T, llmc_proc *lp) {
    char cmd[8192], line[4096], here[4096];
    if (!getcwd(here, sizeof here)) return -1;
    snprintf(cmd, sizeof cmd, "make -s -n -B -C '%s' train_gpt2 2>/dev/null | grep 'train_gpt2.c'", dir);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char *got = fgets(line, sizeof line, p);
    pclose(p);
    if (!got) {
        fprintf(stderr, "bench: %s: no train_gpt2 rule in its Makefile\n", dir);
        return -1;
    }
    line[strcspn(line, "\n")] = 0;
    // the same command with our harness in place of train_gpt2.c (which it
    // includes) and our output name
    char *src = strstr(line, "train_gpt2.c"), *o = strstr(line, "-o train_gpt2");
    if (!src || !o || src > o) {
        fprintf(stderr, "bench: unexpected compile line: %s\n", line);
        return -1;
    }
    char build[16384];
    *src = 0;
    char *rest = src + strlen("train_gpt2.c");
    *o = 0;
    char *after_o = o + strlen("-o train_gpt2");
    snprintf(build, sizeof build, "cd '%s' && %s -I. '%s/bench/llmc_step.c' %s -o mech_llmc_step %s", dir, line, here,
             rest, after_o);
    printf("  llm.c build: %s\n", build);
    fflush(stdout);
    if (system(build)) {
        fprintf(stderr, "bench: building the llm.c step failed\n");
        return -1;
    }
    int in[2], out[2];
    if (pipe(in) || pipe(out)) return -1;
    lp->pid = fork();
    if (lp->pid < 0) return -1;
    if (!lp->pid) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        char run[8192];
        snprintf(run, sizeof run, "cd '%s' && OMP_NUM_THREADS=2 exec ./mech_llmc_step %d %d", dir, B, T);
        execl("/bin/sh", "sh", "-c", run, (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(out[1]);
    lp->to = fdopen(in[1], "w");
    lp->from = fdopen(out[0], "r");
    // llm.c describes the model it built; its first step (which allocates)
    // ends with "ready"
    while (fgets(line, sizeof line, lp->from))
        if (!strncmp(line, "ready", 5)) return 0;
    fprintf(stderr, "bench: the llm.c step did not start\n");
    return -1;
}

// One llm.c step: its milliseconds, or -1.
static double llmc_step(llmc_proc *lp) {
    char line[256];
    fputs("step\n", lp->to);
    fflush(lp->to);
    if (!fgets(line, sizeof line, lp->from) || strncmp(line, "ms ", 3)) return -1;
    return atof(line + 3);
}

static void llmc_stop(llmc_proc *lp) {
    if (lp->to) fclose(lp->to); // EOF on its stdin: it exits
    if (lp->from) fclose(lp->from);
    if (lp->pid > 0) waitpid(lp->pid, NULL, 0);
    memset(lp, 0, sizeof *lp);
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
    if (with_llmc && llmc_start(dir, B, T, &lp)) {
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
        if (with_llmc && (tl[i] = llmc_step(&lp)) < 0) {
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
