/*
** tests/test_core_vecmath.c: GELU (tanh and erf), ReLU, softmax and layer
** norm of every kernel this CPU has against double-precision scalar
** references, with odd lengths (vector tails), in place, and the special
** values (+-inf, NaN, all -inf softmax rows).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/check.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static const char *const KERNELS[] = {"avx512", "avx2", "portable"};
#define NKERNELS 3

static uint32_t rng = 777;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

// Like mech_assert_close, but infinities must match exactly and NaN matches
// NaN (mech_assert_close treats inf - inf as a mismatch).
static void assert_close_special(const float *got, const float *want, size_t n, double atol,
                                 double rtol, const char *label) {
    for (size_t i = 0; i < n; i++) {
        int ok;
        if (isnan(want[i])) ok = isnan(got[i]);
        else if (isinf(want[i])) ok = got[i] == want[i];
        else ok = !isnan(got[i]) && fabs((double)got[i] - want[i]) <= atol + rtol * fabs(want[i]);
        if (!ok) fail_msg("%s[%zu]: got %.9g want %.9g", label, i, got[i], want[i]);
    }
}

static double gelu_new_ref(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}
static double gelu_erf_ref(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

// A dense grid over [-20, 20] plus values near 0 and the tails.
static float *grid(size_t *n_out) {
    size_t n = 400001 + 64;
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    size_t k = 0;
    for (int i = -200000; i <= 200000; i++) x[k++] = (float)i * 1e-4f;
    for (int i = 0; i < 64; i++) x[k++] = ldexpf(1.0f, -i * 2) * (i % 2 ? -1.0f : 1.0f);
    *n_out = k;
    return x;
}

typedef void (*vec_fn)(float *, const float *, size_t);

static void check_unary(vec_fn fn, double (*ref)(double), const char *label) {
    size_t n;
    float *x = grid(&n), *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
    assert_non_null(got);
    assert_non_null(want);
    for (size_t i = 0; i < n; i++) want[i] = (float)ref(x[i]);
    fn(got, x, n);
    mech_assert_close(got, want, n, 1e-6, 1e-6, label);
    // Every length 0..40 (vector tails), in place, from odd offsets.
    for (size_t len = 0; len <= 40; len++) {
        memcpy(got, x + 123457, len * sizeof *got);
        fn(got, got, len);
        mech_assert_close(got, want + 123457, len, 1e-6, 1e-6, label);
    }
    free(x);
    free(got);
    free(want);
}

static void test_vec_gelu_new(void **state) {
    (void)state;
    for (int k = 0; k < NKERNELS; k++) {
        const mech_vec_ops *ops = mech_vec_ops_get(KERNELS[k]);
        if (!ops) continue;
        char label[64];
        snprintf(label, sizeof label, "gelu_new %s", ops->name);
        check_unary(ops->gelu_new, gelu_new_ref, label);
    }
    check_unary(mech_vec_gelu_new, gelu_new_ref, "mech_vec_gelu_new");
}

static void test_vec_gelu_erf(void **state) {
    (void)state;
    for (int k = 0; k < NKERNELS; k++) {
        const mech_vec_ops *ops = mech_vec_ops_get(KERNELS[k]);
        if (!ops) continue;
        check_unary(ops->gelu_erf, gelu_erf_ref, ops->name);
    }
    check_unary(mech_vec_gelu_erf, gelu_erf_ref, "mech_vec_gelu_erf");
}

static void test_vec_gelu_special_values(void **state) {
    (void)state;
    float x[] = {INFINITY, -INFINITY, NAN, FLT_MAX, -FLT_MAX, 1e20f, -1e20f, 1e6f, -1e6f, 0.0f, -0.0f,
                 FLT_MIN, -FLT_MIN, 1e-40f, -1e-40f, 88.0f, -88.0f, 200.0f, -200.0f};
    size_t n = sizeof x / sizeof *x;
    float want[sizeof x / sizeof *x];
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i])) want[i] = NAN;
        else if (isinf(x[i])) want[i] = x[i] > 0 ? INFINITY : 0.0f;
        else if (x[i] > 10) want[i] = x[i];
        else if (x[i] < -10) want[i] = 0.0f;
        else want[i] = (float)gelu_new_ref(x[i]);
    }
    for (int k = 0; k < NKERNELS; k++) {
        const mech_vec_ops *ops = mech_vec_ops_get(KERNELS[k]);
        if (!ops) continue;
        float got[sizeof x / sizeof *x];
        ops->gelu_new(got, x, n);
        assert_close_special(got, want, n, 0, 1e-6, ops->name);
        for (size_t i = 0; i < n; i++) // -inf gives -0, not NaN
            if (x[i] == -INFINITY) assert_true(got[i] == 0.0f && signbit(got[i]));
        ops->gelu_erf(got, x, n);
        assert_close_special(got, want, n, 1e-37, 1e-6, ops->name);
    }
}

static void test_vec_relu(void **state) {
    (void)state;
    float x[37], want[37];
    for (int i = 0; i < 37; i++) x[i] = frand() * 10;
    x[5] = -INFINITY, x[6] = INFINITY, x[7] = NAN, x[8] = -0.0f;
    for (int i = 0; i < 37; i++) want[i] = isnan(x[i]) ? NAN : x[i] > 0 ? x[i] : 0.0f;
    for (int k = 0; k < NKERNELS; k++) {
        const mech_vec_ops *ops = mech_vec_ops_get(KERNELS[k]);
        if (!ops) continue;
        for (size_t len = 0; len <= 37; len++) {
            float got[37];
            memcpy(got, x, sizeof got);
            ops->relu(got, got, len);
            assert_close_special(got, want, len, 0, 0, ops->name);
        }
    }
    float got[37];
    mech_vec_relu(got, x, 37);
    assert_close_special(got, want, 37, 0, 0, "mech_vec_relu");
}

static float softmax_ref(const float *x, float *out, size_t n) {
    double mx = -INFINITY, sum = 0;
    for (size_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) {
        for (size_t i = 0; i < n; i++) out[i] = 0;
        return (float)mx;
    }
    for (size_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    for (size_t i = 0; i < n; i++) out[i] = (float)(exp((double)x[i] - mx) / sum);
    return (float)mx;
}

static void test_vec_softmax(void **state) {
    (void)state;
    static const size_t lens[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 1000, 1024, 50257};
    size_t maxn = 50257;
    float *x = malloc(maxn * sizeof *x), *got = malloc(maxn * sizeof *got), *want = malloc(maxn * sizeof *want);
    assert_non_null(x);
    assert_non_null(got);
    assert_non_null(want);
    for (int k = 0; k < NKERNELS + 1; k++) {
        const mech_vec_ops *ops = k < NKERNELS ? mech_vec_ops_get(KERNELS[k]) : NULL;
        if (k < NKERNELS && !ops) continue;
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
            for (int variant = 0; variant < 4; variant++) {
                size_t n = lens[li];
                float scale = variant == 1 ? 30.0f : variant == 2 ? 1000.0f : 3.0f;
                for (size_t i = 0; i < n; i++) x[i] = frand() * scale - 500.0f * (variant == 3);
                if (variant == 3) // causal-mask style -inf entries
                    for (size_t i = 0; i < n; i++)
                        if (i % 3 == 1) x[i] = -INFINITY;
                float rmax = softmax_ref(x, want, n);
                memcpy(got, x, n * sizeof *got);
                float mx = k < NKERNELS ? ops->softmax(got, n) : mech_vec_softmax(got, n);
                char label[96];
                snprintf(label, sizeof label, "softmax %s n=%zu variant %d", ops ? ops->name : "public", n, variant);
                assert_true(mx == rmax);
                mech_assert_close(got, want, n, 1e-9, 2e-6, label);
            }
        // All -inf (and empty): zeros, max -inf.
        for (size_t n = 0; n < 40; n += 13) {
            for (size_t i = 0; i < n; i++) got[i] = -INFINITY;
            float mx = k < NKERNELS ? ops->softmax(got, n) : mech_vec_softmax(got, n);
            assert_true(mx == -INFINITY);
            for (size_t i = 0; i < n; i++) assert_true(got[i] == 0.0f);
        }
    }
    free(x);
    free(got);
    free(want);
}

static void layernorm_ref(const float *x, float *out, float *scale, size_t n, float eps) {
    double mean = 0, var = 0;
    for (size_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) var += ((double)x[i] - mean) * ((double)x[i] - mean);
    var /= (double)n;
    double s = sqrt(var + eps);
    *scale = (float)s;
    for (size_t i = 0; i < n; i++) out[i] = (float)(((double)x[i] - mean) / s);
}

static void test_vec_layernorm(void **state) {
    (void)state;
    static const size_t lens[] = {1, 2, 7, 8, 15, 16, 17, 33, 100, 768, 1000, 1600};
    float x[1600], got[1600], want[1600];
    for (int k = 0; k < NKERNELS + 1; k++) {
        const mech_vec_ops *ops = k < NKERNELS ? mech_vec_ops_get(KERNELS[k]) : NULL;
        if (k < NKERNELS && !ops) continue;
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
            for (int variant = 0; variant < 3; variant++) {
                size_t n = lens[li];
                // variant 1: a large common offset (cancellation in a naive
                // one-pass variance); variant 2: huge spread.
                for (size_t i = 0; i < n; i++)
                    x[i] = variant == 1 ? 1000.0f + frand() * 0.01f : variant == 2 ? frand() * 3000.0f : frand();
                float sw, sg = -1;
                layernorm_ref(x, want, &sw, n, 1e-5f);
                memcpy(got, x, n * sizeof *got);
                if (k < NKERNELS) ops->layernorm(got, &sg, got, n, 1e-5f); // in place
                else mech_vec_layernorm(got, &sg, got, n, 1e-5f);
                char label[96];
                snprintf(label, sizeof label, "layernorm %s n=%zu variant %d", ops ? ops->name : "public", n, variant);
                mech_assert_close(got, want, n, 1e-6, 1e-6, label);
                mech_assert_close(&sg, &sw, 1, 0, 1e-6, label);
                if (ops) ops->layernorm(got, NULL, x, n, 1e-5f); // scale_out may be NULL
            }
        float s = -1;
        if (ops) ops->layernorm(got, &s, x, 0, 1e-4f);
        else mech_vec_layernorm(got, &s, x, 0, 1e-4f);
        assert_true(fabsf(s - 0.01f) < 1e-7f);
    }
}

static void test_vec_ops_names(void **state) {
    (void)state;
    const mech_vec_ops *best = mech_vec_ops_get(NULL);
    assert_non_null(best);
    assert_non_null(mech_vec_ops_get("portable"));
    assert_null(mech_vec_ops_get("neon9"));
    assert_string_equal(best->name, mech_matmul_kernel());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vec_gelu_new),
        cmocka_unit_test(test_vec_gelu_erf),
        cmocka_unit_test(test_vec_gelu_special_values),
        cmocka_unit_test(test_vec_relu),
        cmocka_unit_test(test_vec_softmax),
        cmocka_unit_test(test_vec_layernorm),
        cmocka_unit_test(test_vec_ops_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
