/*
** bench/bench_patch_attrib.c: attribution patching against the exact sweep
** on GPT-2 small (random weights), one prompt pair of T = 20 tokens that
** differ at two positions: per sweep (resid_pre [12 x 20], heads [12 x 12],
** and with `--all` heads_by_pos [12 x 20 x 12], whose exact sweep takes about
** two minutes) the exact sweep (fast mode, with the pair's clean and
** corrupted runs) against mech_patch_attrib_sweep (one clean forward, one
** corrupted forward and one backward), medians of 3 after a warm-up; and the
** correlation of the two over every cell. `--quick`: one repetition each.
*/
#include "interp/interp.h"
#include "bench/bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { T = 20 };

static void die(const mech_err *err) {
    fprintf(stderr, "bench: %s\n", err->msg);
    exit(1);
}

static double pearson(const float *a, const float *b, size_t n) {
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < n; i++) ma += a[i], mb += b[i];
    ma /= (double)n, mb /= (double)n;
    for (size_t i = 0; i < n; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return sab / sqrt(saa * sbb);
}

int main(int argc, char **argv) {
    int reps = 3, all = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) reps = 1;
        else if (!strcmp(argv[i], "--all")) all = 1;
    }
    mech_config c = mech_config_gpt2_small();
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&c, 1, &m, &err)) die(&err);
    int32_t clean[T], corrupt[T], ans = 262, wrong = 290;
    for (int t = 0; t < T; t++) clean[t] = corrupt[t] = (int32_t)((7919u * (unsigned)t + 42u) % (unsigned)c.d_vocab);
    corrupt[5] = 1234;
    corrupt[11] = 4321;
    printf("patch_attrib: GPT-2 small config (random weights), one pair of %d tokens, kernel %s, %d threads\n", T,
           mech_matmul_kernel(), (int)sysconf(_SC_NPROCESSORS_ONLN));
    static const mech_patch_site sites[] = {MECH_PATCH_RESID_PRE, MECH_PATCH_HEAD_OUT, MECH_PATCH_HEAD_OUT_BY_POS};
    int ok = 1;
    for (size_t k = 0; k < (all ? 3u : 2u); k++) {
        if (k == 2) reps = 1; // heads_by_pos: 2,880 patched runs
        double vx[8], va[8];
        mech_patch_result rx = {0}, ra = {0};
        for (int i = 0; i <= reps; i++) { // i = 0: warm-up
            mech_patch_result_deinit(&rx);
            mech_patch_result_deinit(&ra);
            double t0 = bench_now();
            mech_patch_opts o = {.metric = MECH_PATCH_LOGIT_DIFF, .answer = ans, .wrong = wrong, .pos = -1};
            mech_patch *p = NULL;
            if (mech_patch_new(m, clean, T, corrupt, T, &o, &p, &err) || mech_patch_sweep(p, sites[k], &rx, &err))
                die(&err);
            mech_patch_free(p);
            double t1 = bench_now();
            mech_patch_pairs pp = {.clean = clean, .corrupt = corrupt, .answer = &ans, .wrong = &wrong, .B = 1, .T = T,
                                   .pos = -1};
            if (mech_patch_attrib_sweep(m, &pp, MECH_PATCH_LOGIT_DIFF, sites[k], &ra, &err)) die(&err);
            double t2 = bench_now();
            if (i) vx[i - 1] = t1 - t0, va[i - 1] = t2 - t1;
        }
        size_t n = (size_t)(rx.shape[0] * rx.shape[1] * (rx.ndim == 3 ? rx.shape[2] : 1));
        double x = bench_median(vx, reps), a = bench_median(va, reps), r = pearson(ra.norm, rx.norm, n);
        double big = 0, worst = 0;
        for (size_t i = 0; i < n; i++) {
            big = fmax(big, fabs((double)rx.norm[i]));
            worst = fmax(worst, fabs((double)ra.norm[i] - rx.norm[i]));
        }
        printf("  %-15s %5zu cells: exact %8.1f ms, attribution %7.1f ms, %5.1fx; effects: correlation %.4f, "
               "largest |exact| %.3f, largest |attrib - exact| %.3f\n",
               mech_patch_site_name(sites[k]), n, 1e3 * x, 1e3 * a, x / a, r, big, worst);
        ok &= r == r;
        mech_patch_result_deinit(&rx);
        mech_patch_result_deinit(&ra);
    }
    mech_model_free(m);
    return ok ? 0 : 1;
}
