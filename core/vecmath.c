/*
** core/vecmath.c: elementwise and per-row vector functions of the forward
** pass (GELU, ReLU, softmax, layer norm), vectorised for AVX-512 and AVX2
** and chosen at run time like the matmul; the portable versions use libm.
**
** exp: Cephes' expf scheme (n = round(x log2 e), r = x - n ln 2 in two
** parts, degree-6 polynomial, times 2^n), within ~2 ulp of the true value
** on the whole float range; exp(-inf) = 0, exp(+inf) = +inf, NaN stays
** NaN. The AVX2 version flushes results below FLT_MIN to 0.
**
** Invariants: no state; out == in is allowed; sums that set a scale
** (softmax's denominator, layer norm's mean and variance) are accumulated
** in double so that results match a double reference to ~1e-7 relative.
*/
#include "core/core.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define VM_X86 1
#include <immintrin.h>
#else
#define VM_X86 0
#endif

#define VM_INLINE static inline __attribute__((always_inline))
#define GELU_C 0.7978845608028654f // sqrt(2/pi)
#define GELU_C3 (0.7978845608028654f * 0.044715f)

// ---------------------------------------------------------------------------
// Portable

static void gelu_new_port(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        // 0.5 x (1 + tanh u) = x / (1 + exp(-2u)): no cancellation for x < 0.
        float u = x * (GELU_C + GELU_C3 * x * x);
        float y = x / (1.0f + expf(-2.0f * u));
        out[i] = x == -INFINITY ? -0.0f : y;
    }
}

static void gelu_erf_port(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        // erfc keeps relative precision in the negative tail where 1 + erf
        // would cancel.
        float y = 0.5f * x * erfcf(-x * (float)M_SQRT1_2);
        out[i] = x == -INFINITY ? -0.0f : y;
    }
}

static void relu_port(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = in[i] < 0.0f ? 0.0f : in[i];
}

static float softmax_port(float *x, size_t n) {
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) {
        memset(x, 0, n * sizeof *x);
        return mx;
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (size_t i = 0; i < n; i++) x[i] *= inv;
    return mx;
}

// Scale and output from the sums; shared by every version.
static void ln_finish(double sum_sq, size_t n, float eps, double *inv, float *scale_out) {
    double scale = sqrt(sum_sq / (double)n + (double)eps);
    if (scale_out) *scale_out = (float)scale;
    *inv = 1.0 / scale;
}

static void layernorm_port(float *out, float *scale_out, const float *in, size_t n, float eps) {
    if (n == 0) {
        if (scale_out) *scale_out = sqrtf(eps);
        return;
    }
    double sum = 0, ss = 0, inv;
    for (size_t i = 0; i < n; i++) sum += in[i];
    double mean = sum / (double)n;
    for (size_t i = 0; i < n; i++) {
        double d = in[i] - mean;
        ss += d * d;
    }
    ln_finish(ss, n, eps, &inv, scale_out);
    for (size_t i = 0; i < n; i++) out[i] = (float)((in[i] - mean) * inv);
}

#if VM_X86
// ---------------------------------------------------------------------------
// AVX-512

#define T512 __attribute__((target("avx512f,fma")))

VM_INLINE T512 __m512 exp512(__m512 x) {
    // max/min return their second operand when one is NaN: x goes second so
    // that NaN passes through.
    x = _mm512_max_ps(_mm512_set1_ps(-110.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(100.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    // scalef handles overflow to inf and gradual underflow to 0 itself.
    return _mm512_scalef_ps(p, n);
}

VM_INLINE T512 __mmask16 tail_mask(size_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

VM_INLINE T512 __m512 gelu512(__m512 x) {
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 u = _mm512_mul_ps(x, _mm512_fmadd_ps(_mm512_set1_ps(GELU_C3), x2, _mm512_set1_ps(GELU_C)));
    __m512 e = exp512(_mm512_mul_ps(_mm512_set1_ps(-2.0f), u));
    __m512 y = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    __mmask16 neginf = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(y, neginf, _mm512_set1_ps(-0.0f));
}

static T512 void gelu_new_512(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(out + i, m, gelu512(_mm512_maskz_loadu_ps(m, in + i)));
    }
}

static T512 void relu_512(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 x = _mm512_maskz_loadu_ps(m, in + i);
        _mm512_mask_storeu_ps(out + i, m, _mm512_max_ps(_mm512_setzero_ps(), x)); // NaN: x
    }
}

VM_INLINE T512 __m512d lo_pd(__m512 x) { return _mm512_cvtps_pd(_mm512_castps512_ps256(x)); }
VM_INLINE T512 __m512d hi_pd(__m512 x) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
}

// The first two passes of a softmax: out = exp(x - max x) (out may be x),
// *inv = 1 / their sum (in double); returns max x. A row of -inf becomes 0s
// (then *inv is 0).
static T512 float softmax_exp_512(float *out, const float *x, size_t n, float *inv) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_maskz_loadu_ps(m, x + i));
    }
    float mx = _mm512_reduce_max_ps(vmax);
    *inv = 0;
    if (mx == -INFINITY) {
        memset(out, 0, n * sizeof *out);
        return mx;
    }
    __m512 vm = _mm512_set1_ps(mx);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm));
        e = _mm512_maskz_mov_ps(m, e);
        _mm512_mask_storeu_ps(out + i, m, e);
        s0 = _mm512_add_pd(s0, lo_pd(e));
        s1 = _mm512_add_pd(s1, hi_pd(e));
    }
    *inv = (float)(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)));
    return mx;
}

static T512 float softmax_512(float *x, size_t n) {
    float invs, mx = softmax_exp_512(x, x, n, &invs);
    if (mx == -INFINITY) return mx;
    __m512 inv = _mm512_set1_ps(invs);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
    return mx;
}

static T512 void layernorm_512(float *out, float *scale_out, const float *in, size_t n, float eps) {
    if (n == 0) {
        if (scale_out) *scale_out = sqrtf(eps);
        return;
    }
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    for (size_t i = 0; i < n; i += 16) {
        __m512 x = _mm512_maskz_loadu_ps(tail_mask(n - i), in + i);
        s0 = _mm512_add_pd(s0, lo_pd(x));
        s1 = _mm512_add_pd(s1, hi_pd(x));
    }
    double mean = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) / (double)n, inv;
    __m512d vmean = _mm512_set1_pd(mean);
    s0 = s1 = _mm512_setzero_pd();
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 x = _mm512_maskz_loadu_ps(m, in + i);
        // Masked-off lanes hold 0 - mean: zero them before squaring.
        __m512d d0 = _mm512_maskz_sub_pd((__mmask8)m, lo_pd(x), vmean);
        __m512d d1 = _mm512_maskz_sub_pd((__mmask8)(m >> 8), hi_pd(x), vmean);
        s0 = _mm512_fmadd_pd(d0, d0, s0);
        s1 = _mm512_fmadd_pd(d1, d1, s1);
    }
    ln_finish(_mm512_reduce_add_pd(_mm512_add_pd(s0, s1)), n, eps, &inv, scale_out);
    __m512d vinv = _mm512_set1_pd(inv);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 x = _mm512_maskz_loadu_ps(m, in + i);
        __m256 y0 = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(lo_pd(x), vmean), vinv));
        __m256 y1 = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(hi_pd(x), vmean), vinv));
        __m512 y = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(y0)),
                                                       _mm256_castps_pd(y1), 1));
        _mm512_mask_storeu_ps(out + i, m, y);
    }
}

// ---------------------------------------------------------------------------
// AVX2 (+FMA). Tails go through an 8-float buffer so that every element
// takes the same vector path.

#define T256 __attribute__((target("avx2,fma")))

VM_INLINE T256 __m256 exp256(__m256 x) {
    __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(88.72283935546875f), _CMP_GT_OQ);
    __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654022216797f), _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_set1_ps(-87.33654022216797f), x); // NaN: x
    x = _mm256_min_ps(_mm256_set1_ps(88.72283935546875f), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n for n in [-126, 128] as two factors, each a normal float.
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i h = _mm256_srai_epi32(ni, 1);
    __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
    __m256 f2 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), _mm256_set1_epi32(127)), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), big);
    return _mm256_andnot_ps(tiny, y);
}

VM_INLINE T256 __m256 gelu256(__m256 x) {
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 u = _mm256_mul_ps(x, _mm256_fmadd_ps(_mm256_set1_ps(GELU_C3), x2, _mm256_set1_ps(GELU_C)));
    __m256 e = exp256(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
    __m256 y = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    __m256 neginf = _mm256_cmp_ps(x, _mm256_set1_ps(-INFINITY), _CMP_EQ_OQ);
    return _mm256_blendv_ps(y, _mm256_set1_ps(-0.0f), neginf);
}

static T256 void gelu_new_256(float *out, const float *in, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, gelu256(_mm256_loadu_ps(in + i)));
    if (i < n) {
        float t[8] = {0};
        memcpy(t, in + i, (n - i) * sizeof *t);
        _mm256_storeu_ps(t, gelu256(_mm256_loadu_ps(t)));
        memcpy(out + i, t, (n - i) * sizeof *t);
    }
}

static T256 void relu_256(float *out, const float *in, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_max_ps(_mm256_setzero_ps(), _mm256_loadu_ps(in + i)));
    relu_port(out + i, in + i, n - i);
}

VM_INLINE T256 __m256d sum4_pd(__m256 x, __m256d acc) {
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
    return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
}

VM_INLINE T256 double hsum_pd(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

static T256 float softmax_256(float *x, size_t n) {
    float mx = -INFINITY;
    size_t i = 0;
    if (n >= 8) {
        __m256 vmax = _mm256_set1_ps(-INFINITY);
        for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
        float t[8];
        _mm256_storeu_ps(t, vmax);
        for (int k = 0; k < 8; k++) mx = t[k] > mx ? t[k] : mx;
    }
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) {
        memset(x, 0, n * sizeof *x);
        return mx;
    }
    __m256 vm = _mm256_set1_ps(mx);
    __m256d acc = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        acc = sum4_pd(e, acc);
    }
    if (i < n) {
        float t[8];
        for (int k = 0; k < 8; k++) t[k] = i + k < n ? x[i + k] : -INFINITY;
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(t), vm));
        _mm256_storeu_ps(t, e);
        acc = sum4_pd(e, acc);
        memcpy(x + i, t, (n - i) * sizeof *t);
    }
    float invs = (float)(1.0 / hsum_pd(acc));
    __m256 inv = _mm256_set1_ps(invs);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= invs;
    return mx;
}

static T256 void layernorm_256(float *out, float *scale_out, const float *in, size_t n, float eps) {
    if (n == 0) {
        if (scale_out) *scale_out = sqrtf(eps);
        return;
    }
    __m256d acc = _mm256_setzero_pd();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) acc = sum4_pd(_mm256_loadu_ps(in + i), acc);
    double sum = hsum_pd(acc);
    for (; i < n; i++) sum += in[i];
    double mean = sum / (double)n, inv;
    __m256d vmean = _mm256_set1_pd(mean), a0 = _mm256_setzero_pd(), a1 = a0;
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(in + i);
        __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), vmean);
        __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), vmean);
        a0 = _mm256_fmadd_pd(d0, d0, a0);
        a1 = _mm256_fmadd_pd(d1, d1, a1);
    }
    double ss = hsum_pd(_mm256_add_pd(a0, a1));
    for (; i < n; i++) ss += (in[i] - mean) * (in[i] - mean);
    ln_finish(ss, n, eps, &inv, scale_out);
    __m256d vinv = _mm256_set1_pd(inv);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(in + i);
        __m128 y0 = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), vmean), vinv));
        __m128 y1 = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), vmean), vinv));
        _mm256_storeu_ps(out + i, _mm256_insertf128_ps(_mm256_castps128_ps256(y0), y1, 1));
    }
    for (; i < n; i++) out[i] = (float)((in[i] - mean) * inv);
}
#endif

// ---------------------------------------------------------------------------
// Dispatch

static const mech_vec_ops OPS_PORTABLE = {
    "portable", gelu_new_port, gelu_erf_port, relu_port, softmax_port, layernorm_port,
};
#if VM_X86
static const mech_vec_ops OPS_AVX2 = {
    "avx2", gelu_new_256, gelu_erf_port, relu_256, softmax_256, layernorm_256,
};
static const mech_vec_ops OPS_AVX512 = {
    "avx512", gelu_new_512, gelu_erf_port, relu_512, softmax_512, layernorm_512,
};
#endif

static const mech_vec_ops *vec_best(void) {
#if VM_X86
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return &OPS_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &OPS_AVX2;
#endif
    return &OPS_PORTABLE;
}

const mech_vec_ops *mech_vec_ops_get(const char *kernel) {
    const mech_vec_ops *best = vec_best();
    if (!kernel) return best;
    if (!strcmp(kernel, "portable")) return &OPS_PORTABLE;
#if VM_X86
    if (!strcmp(kernel, "avx2") && best != &OPS_PORTABLE) return &OPS_AVX2;
    if (!strcmp(kernel, "avx512") && best == &OPS_AVX512) return &OPS_AVX512;
#endif
    return NULL;
}

void mech_vec_gelu_new(float *out, const float *in, size_t n) { vec_best()->gelu_new(out, in, n); }
void mech_vec_gelu_erf(float *out, const float *in, size_t n) { vec_best()->gelu_erf(out, in, n); }
void mech_vec_relu(float *out, const float *in, size_t n) { vec_best()->relu(out, in, n); }
float mech_vec_softmax(float *x, size_t n) { return vec_best()->softmax(x, n); }
void mech_vec_layernorm(float *out, float *scale_out, const float *in, size_t n, float eps) {
    vec_best()->layernorm(out, scale_out, in, n, eps);
}

// ---------------------------------------------------------------------------
// Backward kernels (core/backward.c)
//
// gelu_new's derivative, times the incoming gradient: with s = sigmoid(2u),
// u = C (x + 0.044715 x^3), gelu_new(x) = x s and its derivative is
// s + 2 x s (1 - s) u'. With e = exp(-2u), s = 1 / (1 + e) and 1 - s = e s:
// full relative precision in both tails (no cancellation). -2u is capped at
// 80 (e stays finite, e s = 1): below x = -9 the derivative is under 1e-30.

static void gelu_new_grad_port(float *g, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float xi = x[i], x2 = xi * xi, u = xi * (GELU_C + GELU_C3 * x2);
        float e = expf(fminf(-2.0f * u, 80.0f)), s = 1.0f / (1.0f + e);
        g[i] *= s + 2.0f * xi * s * (e * s) * (GELU_C + 3.0f * GELU_C3 * x2);
    }
}

#if VM_X86
// The derivative from x, x^2 and e = exp(min(-2u, 80)).
VM_INLINE T512 __m512 gelu_grad512_e(__m512 x, __m512 x2, __m512 e) {
    __m512 s = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    __m512 du = _mm512_fmadd_ps(_mm512_set1_ps(3.0f * GELU_C3), x2, _mm512_set1_ps(GELU_C));
    __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_add_ps(x, x), s), _mm512_mul_ps(e, s));
    return _mm512_fmadd_ps(t, du, s);
}

VM_INLINE T512 __m512 gelu_grad512(__m512 x) {
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 u = _mm512_mul_ps(x, _mm512_fmadd_ps(_mm512_set1_ps(GELU_C3), x2, _mm512_set1_ps(GELU_C)));
    return gelu_grad512_e(x, x2, exp512(_mm512_min_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0f), u), _mm512_set1_ps(80.0f))));
}

static T512 void gelu_new_grad_512(float *g, const float *x, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 d = gelu_grad512(_mm512_maskz_loadu_ps(m, x + i));
        _mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, g + i), d));
    }
}

static T256 void gelu_new_grad_256(float *g, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i), x2 = _mm256_mul_ps(xv, xv);
        __m256 u = _mm256_mul_ps(xv, _mm256_fmadd_ps(_mm256_set1_ps(GELU_C3), x2, _mm256_set1_ps(GELU_C)));
        __m256 e = exp256(_mm256_min_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u), _mm256_set1_ps(80.0f)));
        __m256 s = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        __m256 du = _mm256_fmadd_ps(_mm256_set1_ps(3.0f * GELU_C3), x2, _mm256_set1_ps(GELU_C));
        __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_add_ps(xv, xv), s), _mm256_mul_ps(e, s));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), _mm256_fmadd_ps(t, du, s)));
    }
    if (i < n) gelu_new_grad_port(g + i, x + i, n - i);
}
#endif

#if VM_X86
// gelu_new and its derivative in one pass sharing the exp: out bit for bit
// gelu_new_512's, d bit for bit the factor gelu_new_grad_512 multiplies by
// (its exp argument capped at 80, NaN included, as _mm512_min_ps does).
static T512 void gelu_new_fg_512(float *out, float *d, const float *in, size_t n) {
    __m512 e80 = exp512(_mm512_set1_ps(80.0f));
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 x = _mm512_maskz_loadu_ps(m, in + i), x2 = _mm512_mul_ps(x, x);
        __m512 u = _mm512_mul_ps(x, _mm512_fmadd_ps(_mm512_set1_ps(GELU_C3), x2, _mm512_set1_ps(GELU_C)));
        __m512 m2u = _mm512_mul_ps(_mm512_set1_ps(-2.0f), u), e = exp512(m2u);
        __m512 y = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        __mmask16 neginf = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mask_mov_ps(y, neginf, _mm512_set1_ps(-0.0f)));
        __m512 eg = _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(m2u, _mm512_set1_ps(80.0f), _CMP_NLE_UQ), e80);
        _mm512_mask_storeu_ps(d + i, m, gelu_grad512_e(x, x2, eg));
    }
}
#endif

void mech_vec_gelu_new_fwd_grad(float *out, float *d, const float *in, size_t n) {
#if VM_X86
    if (vec_best() == &OPS_AVX512) {
        gelu_new_fg_512(out, d, in, n);
        return;
    }
#endif
    mech_vec_gelu_new(out, in, n);
    for (size_t i = 0; i < n; i++) d[i] = 1.0f;
    mech_vec_gelu_new_grad(d, in, n);
}

void mech_vec_gelu_new_grad(float *g, const float *x, size_t n) {
#if VM_X86
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) {
        gelu_new_grad_512(g, x, n);
        return;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        gelu_new_grad_256(g, x, n);
        return;
    }
#endif
    gelu_new_grad_port(g, x, n);
}

// Attention's element-wise steps (core/forward.c, core/backward.c).

static void div_port(float *x, size_t n, float d) {
    for (size_t i = 0; i < n; i++) x[i] /= d;
}

#if VM_X86
static T512 void div_512(float *x, size_t n, float d) {
    __m512 vd = _mm512_set1_ps(d);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), vd));
    }
}
#endif

// Sums in double over a row (the LayerNorm and softmax backwards'); the
// AVX-512 version in 16 lanes, added at the end, the same order for every
// caller.
static double dot_f64_port(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (b ? b[i] : 1.0f);
    return s;
}

#if VM_X86
static T512 double dot_f64_512(const float *a, const float *b, size_t n) {
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 x = _mm512_maskz_loadu_ps(m, a + i);
        if (b) {
            __m512 y = _mm512_maskz_loadu_ps(m, b + i);
            s0 = _mm512_fmadd_pd(lo_pd(x), lo_pd(y), s0);
            s1 = _mm512_fmadd_pd(hi_pd(x), hi_pd(y), s1);
        } else {
            s0 = _mm512_add_pd(lo_pd(x), s0);
            s1 = _mm512_add_pd(hi_pd(x), s1);
        }
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}
#endif

double mech_vec_dot_f64(const float *a, const float *b, size_t n) {
#if VM_X86
    if (vec_best() == &OPS_AVX512) return dot_f64_512(a, b, n);
#endif
    return dot_f64_port(a, b, n);
}

static void softmax_grad_port(float *ds, const float *p, const float *dp, size_t n) {
    double dot = dot_f64_port(p, dp, n);
    for (size_t i = 0; i < n; i++) ds[i] = (float)(p[i] * (dp[i] - dot));
}

#if VM_X86
static T512 void softmax_grad_512(float *ds, const float *p, const float *dp, size_t n) {
    __m512d dot = _mm512_set1_pd(dot_f64_512(p, dp, n));
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 a = _mm512_maskz_loadu_ps(m, p + i), b = _mm512_maskz_loadu_ps(m, dp + i);
        __m256 lo = _mm512_cvtpd_ps(_mm512_mul_pd(lo_pd(a), _mm512_sub_pd(lo_pd(b), dot)));
        __m256 hi = _mm512_cvtpd_ps(_mm512_mul_pd(hi_pd(a), _mm512_sub_pd(hi_pd(b), dot)));
        __m512 r = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
        _mm512_mask_storeu_ps(ds + i, m, r);
    }
}
#endif

#if VM_X86
static T512 void copy_stream_512(float *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 63); i++) dst[i] = src[i];
    for (; i + 16 <= n; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
    for (; i < n; i++) dst[i] = src[i];
    _mm_sfence(); // the streamed values visible to whichever thread reads them next
}
#endif

void mech_copy_stream(float *dst, const float *src, size_t n) {
#if VM_X86
    if (vec_best() == &OPS_AVX512) {
        copy_stream_512(dst, src, n);
        return;
    }
#endif
    memcpy(dst, src, n * sizeof *dst);
}

void mech_vec_div(float *x, size_t n, float d) {
#if VM_X86
    if (vec_best() == &OPS_AVX512) {
        div_512(x, n, d);
        return;
    }
#endif
    div_port(x, n, d);
}

void mech_vec_softmax_grad(float *ds, const float *p, const float *dp, size_t n) {
#if VM_X86
    if (vec_best() == &OPS_AVX512) {
        softmax_grad_512(ds, p, dp, n);
        return;
    }
#endif
    softmax_grad_port(ds, p, dp, n);
}

// The metric's softmax (core/backward.c): out = softmax(x) * scale in one
// read of x per pass and no copy, the softmax bit for bit mech_vec_softmax's
// on a copy of x, and the largest softmax value (log-sum-exp = max x -
// log(it) keeps full precision) taken in the pass that writes out.
static float softmax_scaled_port(float *out, const float *x, size_t n, float scale, float *pmax) {
    if (out != x) memcpy(out, x, n * sizeof *out);
    float mx = mech_vec_softmax(out, n), pm = 0;
    for (size_t i = 0; i < n; i++) {
        pm = out[i] > pm ? out[i] : pm;
        out[i] *= scale;
    }
    if (pmax) *pmax = pm;
    return mx;
}

#if VM_X86
static T512 float softmax_scaled_512(float *out, const float *x, size_t n, float scale, float *pmax) {
    float invs, mx = softmax_exp_512(out, x, n, &invs);
    if (mx == -INFINITY) {
        if (pmax) *pmax = 0;
        return mx;
    }
    __m512 inv = _mm512_set1_ps(invs), vs = _mm512_set1_ps(scale), vp = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, out + i), inv);
        vp = _mm512_mask_max_ps(vp, m, p, vp); // p first: a NaN is skipped, as the scalar max skips it
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(p, vs));
    }
    if (pmax) *pmax = _mm512_reduce_max_ps(vp);
    return mx;
}
#endif

float mech_vec_softmax_scaled(float *out, const float *x, size_t n, float scale, float *pmax) {
#if VM_X86
    if (vec_best() == &OPS_AVX512) return softmax_scaled_512(out, x, n, scale, pmax);
#endif
    return softmax_scaled_port(out, x, n, scale, pmax);
}
