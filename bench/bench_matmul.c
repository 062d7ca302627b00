/*
** bench/bench_matmul.c: GFLOP/s of mech_matmul / mech_matmul_nt on GPT-2
** small's shapes at T = 64, 256, 1024 with 1 and 2 threads, plus the
** single-threaded attention products and the naive-vs-fast ratio.
**
**   build/bench/bench_matmul [reps] [threads]   (defaults 7 and "1 and 2")
**
** Each line is one shape: median time and GFLOP/s over reps. The weights
** rotate over enough copies to exceed the L3 cache, as in a forward pass
** where every weight matrix is streamed from memory once per call.
*/
#include "core/core.h"
#include "bench/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static float *rand_buf(size_t n, unsigned *seed) {
    float *p = mech_malloc_aligned(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "bench_matmul: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)((*seed >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
    return p;
}

typedef struct shape {
    const char *name;
    int nt, K, N;
} shape;

// Median seconds of reps calls of one shape; weights rotate over copies.
static double time_shape(mech_pool *pool, const shape *s, int M, int reps, float **w, int ncopy,
                         const float *x, const float *bias, float *out) {
    double t[64];
    if (reps > 64) reps = 64;
    // One warm-up call (page faults in out, pool threads awake).
    if (s->nt) mech_matmul_nt(pool, out, s->N, x, s->K, w[0], s->K, bias, M, s->K, s->N);
    else mech_matmul(pool, out, s->N, x, s->K, w[0], s->N, bias, M, s->K, s->N);
    for (int r = 0; r < reps; r++) {
        const float *wr = w[(r + 1) % ncopy];
        double t0 = bench_now();
        if (s->nt) mech_matmul_nt(pool, out, s->N, x, s->K, wr, s->K, bias, M, s->K, s->N);
        else mech_matmul(pool, out, s->N, x, s->K, wr, s->N, bias, M, s->K, s->N);
        t[r] = bench_now() - t0;
    }
    return bench_median(t, reps);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    int only = argc > 2 ? atoi(argv[2]) : 0;
    if (reps < 1) reps = 1;
    static const shape shapes[] = {
        {"qkv   768x2304", 0, 768, 2304},  {"proj   768x768", 0, 768, 768},
        {"fc    768x3072", 0, 768, 3072},  {"fc2   3072x768", 0, 3072, 768},
        {"unemb nt 768x50257", 1, 768, 50257},
    };
    static const int Ms[] = {64, 256, 1024};
    int nthr[2] = {1, 2}, nth = 2;
    if (only > 0) nthr[0] = only, nth = 1;
    mech_pool *pools[2];
    for (int i = 0; i < nth; i++) pools[i] = mech_pool_new(nthr[i]);

    unsigned seed = 1;
    size_t max_x = (size_t)1024 * 3072, max_out = (size_t)1024 * 50257;
    float *x = rand_buf(max_x, &seed), *out = rand_buf(max_out, &seed);
    float *bias = rand_buf(50257, &seed);
    printf("kernel %s; median of %d; GFLOP/s (ms)", mech_matmul_kernel(), reps);
    for (int i = 0; i < nth; i++) printf("  [%d thread%s]", nthr[i], nthr[i] > 1 ? "s" : "");
    printf("\n");
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const shape *s = &shapes[si];
        size_t wn = (size_t)s->K * s->N;
        int ncopy = (int)((96u << 20) / (wn * sizeof(float))) + 1;
        if (ncopy > reps + 1) ncopy = reps + 1;
        float **w = malloc(sizeof *w * (size_t)ncopy);
        if (!w) return 1;
        for (int c = 0; c < ncopy; c++) w[c] = rand_buf(wn, &seed);
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
            int M = Ms[mi];
            double flops = 2.0 * M * (double)s->K * s->N;
            printf("%-20s M=%-5d", s->name, M);
            for (int i = 0; i < nth; i++) {
                double t = time_shape(pools[i], s, M, reps, w, ncopy, x, bias, out);
                printf("  %6.1f (%8.3f)", flops / t * 1e-9, t * 1e3);
            }
            printf("\n");
            fflush(stdout);
        }
        for (int c = 0; c < ncopy; c++) mech_free_aligned(w[c]);
        free(w);
    }

    // Attention products, single-threaded (pool NULL), as the forward pass
    // calls them per head: q @ k^T (nt, K = 64) and pattern @ v (K = T).
    static const shape att[] = {{"attn q@kT nt K=64", 1, 64, 1024}, {"attn p@v K=1024", 0, 1024, 64}};
    for (int a = 0; a < 2; a++) {
        const shape *s = &att[a];
        float *w = rand_buf((size_t)s->K * s->N, &seed);
        for (int M = 64; M <= 256; M *= 4) {
            double flops = 2.0 * M * (double)s->K * s->N;
            double t = time_shape(NULL, s, M, reps * 5, &w, 1, x, NULL, out);
            printf("%-20s M=%-5d N=%-5d  %6.1f (%8.3f)  [pool NULL]\n", s->name, M, s->N,
                   flops / t * 1e-9, t * 1e3);
        }
        mech_free_aligned(w);
    }

    // Naive vs fast on a modest shape, one thread.
    {
        int M = 64, K = 768, N = 768;
        float *w = rand_buf((size_t)K * N, &seed);
        double t0 = bench_now();
        mech_matmul_naive(out, N, x, K, w, N, bias, M, K, N);
        double tn = bench_now() - t0;
        shape s = {"", 0, K, N};
        double tf = time_shape(NULL, &s, M, reps, &w, 1, x, bias, out);
        printf("naive vs fast, M=%d K=%d N=%d, 1 thread: %.1f ms vs %.3f ms (x%.0f)\n", M, K, N,
               tn * 1e3, tf * 1e3, tn / tf);
        mech_free_aligned(w);
    }
    for (int i = 0; i < nth; i++) mech_pool_free(pools[i]);
    mech_free_aligned(x);
    mech_free_aligned(out);
    mech_free_aligned(bias);
    return 0;
}
