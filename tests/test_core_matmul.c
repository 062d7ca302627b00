/*
** tests/test_core_matmul.c: the fast products against the naive ones, for
** every kernel this CPU has, on awkward shapes (edge tiles, K blocks, empty
** dimensions), strides wider than the rows, with and without bias, with no
** pool and with pools of 2 and 3 threads.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static const char *const KERNELS[] = {"avx512", "avx2", "portable"};
#define SENTINEL 12345.0f

typedef struct fixture {
    mech_pool *pools[3]; // NULL, 2 threads, 3 threads
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->pools[1] = mech_pool_new(2);
    f->pools[2] = mech_pool_new(3);
    if (!f->pools[1] || !f->pools[2]) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    mech_pool_free(f->pools[1]);
    mech_pool_free(f->pools[2]);
    free(f);
    return 0;
}

static uint32_t rng = 12345;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

static float *rand_buf(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

typedef struct problem {
    int M, K, N, nt, ldi, ldw, ldo;
    float *inp, *w, *bias, *want;
} problem;

// Random operands with row strides pad_* wider than needed, and the naive
// result (sentinels in the padding).
static void problem_init(problem *p, int M, int K, int N, int nt, int pad, int with_bias) {
    p->M = M, p->K = K, p->N = N, p->nt = nt;
    p->ldi = K + pad;
    p->ldw = (nt ? K : N) + pad;
    p->ldo = N + pad;
    p->inp = rand_buf((size_t)M * p->ldi);
    p->w = rand_buf((size_t)(nt ? N : K) * p->ldw);
    p->bias = with_bias ? rand_buf((size_t)N) : NULL;
    p->want = malloc(((size_t)M * p->ldo + 1) * sizeof(float));
    assert_non_null(p->want);
    for (size_t i = 0; i < (size_t)M * p->ldo; i++) p->want[i] = SENTINEL;
    if (nt) mech_matmul_nt_naive(p->want, p->ldo, p->inp, p->ldi, p->w, p->ldw, p->bias, M, K, N);
    else mech_matmul_naive(p->want, p->ldo, p->inp, p->ldi, p->w, p->ldw, p->bias, M, K, N);
}

static void problem_free(problem *p) {
    free(p->inp);
    free(p->w);
    free(p->bias);
    free(p->want);
}

// Runs one kernel / pool on p and compares, sentinels included.
static void problem_check(const problem *p, const char *kernel, mech_pool *pool) {
    size_t n = (size_t)p->M * p->ldo;
    float *got = malloc((n + 1) * sizeof *got);
    assert_non_null(got);
    for (size_t i = 0; i < n; i++) got[i] = SENTINEL;
    int rc = mech_matmul_with(kernel, p->nt, pool, got, p->ldo, p->inp, p->ldi, p->w, p->ldw,
                              p->bias, p->M, p->K, p->N);
    if (rc == 0) {
        char label[160];
        snprintf(label, sizeof label, "%s %s M=%d K=%d N=%d ld=%d/%d/%d bias=%d threads=%d", kernel,
                 p->nt ? "nt" : "nn", p->M, p->K, p->N, p->ldi, p->ldw, p->ldo, p->bias != NULL,
                 mech_pool_size(pool));
        // float accumulation over K terms of size <= 1
        mech_assert_close(got, p->want, n, 1e-5 + 1e-5 * sqrt((double)p->K) * 4, 1e-5, label);
    }
    free(got);
}

static void test_matmul_small_shapes_all_kernels(void **state) {
    fixture *f = *state;
    static const int dims[] = {0, 1, 3, 7, 17, 33, 65};
    int nd = (int)(sizeof dims / sizeof *dims);
    for (int nt = 0; nt < 2; nt++)
        for (int a = 0; a < nd; a++)
            for (int b = 0; b < nd; b++)
                for (int c = 0; c < nd; c++) {
                    problem p;
                    problem_init(&p, dims[a], dims[b], dims[c], nt, (a + b + c) % 3 * 5, (a + c) % 2);
                    for (int k = 0; k < 3; k++) problem_check(&p, KERNELS[k], NULL);
                    problem_check(&p, NULL, f->pools[1]);
                    problem_free(&p);
                }
}

static void test_matmul_blocked_shapes_threads(void **state) {
    fixture *f = *state;
    // Big enough to be split over threads, with K and N blocks and edges.
    static const int shapes[][3] = {
        {64, 768, 768}, {65, 385, 97}, {127, 300, 193}, {300, 64, 1000}, {33, 1000, 50},
        {300, 200, 40}, {8, 769, 481}, {130, 96, 1537}, {17, 1024, 64}, {1, 768, 3000},
        {256, 300, 64}, {127, 64, 127}, {64, 3072, 100}, {600, 1000, 500}, // the last: a task's inp over L2, wide B blocks
    };
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int nt = 0; nt < 2; nt++) {
            problem p;
            problem_init(&p, shapes[s][0], shapes[s][1], shapes[s][2], nt, (int)s % 2 * 3, (int)(s + nt) % 2);
            for (int k = 0; k < 3; k++) {
                problem_check(&p, KERNELS[k], NULL);
                problem_check(&p, KERNELS[k], f->pools[1]);
                problem_check(&p, KERNELS[k], f->pools[2]);
            }
            problem_free(&p);
        }
}

static void test_matmul_public_entry_points(void **state) {
    fixture *f = *state;
    // mech_matmul / mech_matmul_nt themselves (the best kernel).
    for (int nt = 0; nt < 2; nt++)
        for (int pi = 0; pi < 3; pi++) {
            problem p;
            problem_init(&p, 100, 130, 300, nt, 4, 1);
            size_t n = (size_t)p.M * p.ldo;
            float *got = malloc(n * sizeof *got);
            assert_non_null(got);
            for (size_t i = 0; i < n; i++) got[i] = SENTINEL;
            if (nt) mech_matmul_nt(f->pools[pi], got, p.ldo, p.inp, p.ldi, p.w, p.ldw, p.bias, p.M, p.K, p.N);
            else mech_matmul(f->pools[pi], got, p.ldo, p.inp, p.ldi, p.w, p.ldw, p.bias, p.M, p.K, p.N);
            mech_assert_close(got, p.want, n, 1e-4, 1e-5, nt ? "mech_matmul_nt" : "mech_matmul");
            free(got);
            problem_free(&p);
        }
}

static void test_matmul_k_zero_gives_bias(void **state) {
    (void)state;
    float bias[5] = {1, 2, 3, 4, 5}, out[2 * 6], want[2 * 6];
    for (int nt = 0; nt < 2; nt++)
        for (int b = 0; b < 2; b++) {
            for (int i = 0; i < 12; i++) out[i] = want[i] = SENTINEL;
            for (int m = 0; m < 2; m++)
                for (int n = 0; n < 5; n++) want[m * 6 + n] = b ? bias[n] : 0.0f;
            float dummy = 0;
            if (nt) mech_matmul_nt(NULL, out, 6, &dummy, 0, &dummy, 0, b ? bias : NULL, 2, 0, 5);
            else mech_matmul(NULL, out, 6, &dummy, 0, &dummy, 5, b ? bias : NULL, 2, 0, 5);
            mech_assert_close(out, want, 12, 0, 0, "K=0");
        }
}

static void test_matmul_nan_stays_in_its_row(void **state) {
    fixture *f = *state;
    // A NaN in one input row poisons that output row only (padding lanes of
    // edge tiles must not leak into neighbours).
    for (int nt = 0; nt < 2; nt++) {
        problem p;
        problem_init(&p, 20, 50, 70, nt, 0, 1);
        p.inp[3 * p.ldi + 7] = NAN;
        float *got = malloc((size_t)p.M * p.ldo * sizeof *got);
        assert_non_null(got);
        mech_matmul_with(NULL, nt, f->pools[1], got, p.ldo, p.inp, p.ldi, p.w, p.ldw, p.bias, p.M, p.K, p.N);
        for (int m = 0; m < p.M; m++)
            for (int n = 0; n < p.N; n++) {
                float g = got[m * p.ldo + n];
                if (m == 3) assert_true(isnan(g));
                else assert_false(isnan(g));
            }
        free(got);
        problem_free(&p);
    }
}

static void test_matmul_kernel_names(void **state) {
    (void)state;
    const char *k = mech_matmul_kernel();
    assert_true(!strcmp(k, "avx512") || !strcmp(k, "avx2") || !strcmp(k, "portable"));
    float x = 1, out = 0;
    assert_int_equal(mech_matmul_with("portable", 0, NULL, &out, 1, &x, 1, &x, 1, NULL, 1, 1, 1), 0);
    assert_true(out == 1.0f);
    assert_int_equal(mech_matmul_with("sse9", 0, NULL, &out, 1, &x, 1, &x, 1, NULL, 1, 1, 1), -1);
    assert_int_equal(mech_matmul_with(k, 1, NULL, &out, 1, &x, 1, &x, 1, NULL, 1, 1, 1), 0);
}

// mech_transpose and mech_transpose_stream: every element moved, nothing past
// rows/cols written, for shapes below, at and around the 16 x 16 block, with
// wide strides; the streamed one also with aligned whole lines (ldd a
// multiple of 16, dst 64-byte aligned), where it streams, and without.
static void check_transpose(int stream, int ldd) {
    static const int dims[] = {1, 15, 16, 17, 33, 64};
    enum { MAXD = 64, LDS = 70 };
    float *src = malloc(sizeof(float) * MAXD * LDS), *dst = mech_malloc_aligned(sizeof(float) * MAXD * (size_t)ldd);
    assert_true(src && dst);
    for (int i = 0; i < MAXD * LDS; i++) src[i] = (float)i * 0.5f - 7.0f;
    for (size_t a = 0; a < sizeof dims / sizeof *dims; a++)
        for (size_t b = 0; b < sizeof dims / sizeof *dims; b++) {
            int rows = dims[a], cols = dims[b];
            for (int i = 0; i < MAXD * ldd; i++) dst[i] = -1.0f;
            if (stream) mech_transpose_stream(dst, (size_t)ldd, src, LDS, rows, cols);
            else mech_transpose(dst, (size_t)ldd, src, LDS, rows, cols);
            for (int c = 0; c < MAXD; c++)
                for (int r = 0; r < ldd; r++) {
                    float want = c < cols && r < rows ? src[(size_t)r * LDS + c] : -1.0f;
                    if (dst[(size_t)c * ldd + r] != want)
                        fail_msg("%s, ldd %d, %d x %d: dst[%d][%d] = %g, want %g", stream ? "stream" : "plain", ldd,
                                 rows, cols, c, r, dst[(size_t)c * ldd + r], want);
                }
        }
    free(src);
    mech_free_aligned(dst);
}

static void test_transpose(void **state) {
    (void)state;
    check_transpose(0, 67);
    check_transpose(1, 67);
    check_transpose(1, 80);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_small_shapes_all_kernels),
        cmocka_unit_test(test_matmul_blocked_shapes_threads),
        cmocka_unit_test(test_matmul_public_entry_points),
        cmocka_unit_test(test_matmul_k_zero_gives_bias),
        cmocka_unit_test(test_matmul_nan_stays_in_its_row),
        cmocka_unit_test(test_matmul_kernel_names),
        cmocka_unit_test(test_transpose),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
