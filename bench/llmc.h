/*
** bench/llmc.h: llm.c's side of the benchmarks (header-only, as bench.h):
** builds bench/llmc_step.c inside an llm.c checkout with the compile line
** llm.c's own Makefile prints for train_gpt2 (make -n), runs it with
** OMP_NUM_THREADS=2 and reads its timings, one request at a time, so that
** a bench can alternate llm.c's work with its own.
*/
#ifndef MECH_BENCH_LLMC_H
#define MECH_BENCH_LLMC_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct llmc_proc {
    FILE *to, *from;
    pid_t pid;
} llmc_proc;

// Builds and starts llm.c's harness in dir for B x T: mode "step" (forward,
// backward, AdamW, as train_gpt2's loop) or "parts" (forward, and zero_grad +
// backward, timed apart); *to and *from are its stdin and stdout. 0, or -1
// after saying why.
static int llmc_start(const char *dir, int B, int T, const char *mode, llmc_proc *lp) {
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
        fprintf(stderr, "bench: building the llm.c harness failed\n");
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
        snprintf(run, sizeof run, "cd '%s' && OMP_NUM_THREADS=2 exec ./mech_llmc_step %d %d %s", dir, B, T, mode);
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
    fprintf(stderr, "bench: the llm.c harness did not start\n");
    return -1;
}

// One more step: its milliseconds in ms[0] (mode "step"), or the forward's
// and the backward's in ms[0] and ms[1] (mode "parts"). 0, or -1.
static int llmc_next(llmc_proc *lp, double *ms) {
    char line[256];
    fputs("step\n", lp->to);
    fflush(lp->to);
    if (!fgets(line, sizeof line, lp->from) || strncmp(line, "ms ", 3)) return -1;
    char *end;
    ms[0] = strtod(line + 3, &end);
    if (*end == ' ') ms[1] = strtod(end, NULL);
    return 0;
}

static void llmc_stop(llmc_proc *lp) {
    if (lp->to) fclose(lp->to); // EOF on its stdin: it exits
    if (lp->from) fclose(lp->from);
    if (lp->pid > 0) waitpid(lp->pid, NULL, 0);
    memset(lp, 0, sizeof *lp);
}

#endif
