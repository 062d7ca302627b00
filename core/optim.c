/*
** core/optim.c: the pieces of an optimizer step that do not know about
** models: AdamW's update, the learning-rate schedule (linear warm-up, then
** cosine decay) and global-norm gradient clipping. core/train.c puts them
** together over a model's tensors.
*/
#include "core/core.h"

#include <math.h>

void mech_adamw_defaults(mech_adamw *o) {
    // nanoGPT's settings for small transformers: beta2 0.95 rather than
    // 0.999 makes the second moment follow the loss's fast early changes.
    o->beta1 = 0.9;
    o->beta2 = 0.95;
    o->eps = 1e-8;
    o->weight_decay = 0.1;
}

// The update of one element, in float with the operations in this order
// (C11 mode: no contraction into FMAs), which the vector path repeats
// exactly, so both give the same bits.
#define ADAMW_ELEMENT(i)                                                         \
    do {                                                                         \
        float gi = g[i] * gscale;                                                \
        float mi = b1 * m[i] + ob1 * gi;                                         \
        float vi = b2 * v[i] + ob2 * gi * gi;                                    \
        m[i] = mi;                                                               \
        v[i] = vi;                                                               \
        float mhat = mi * c1, vhat = vi * c2;                                    \
        p[i] = p[i] - flr * (mhat / (sqrtf(vhat) + eps) + wd * p[i]);            \
    } while (0)

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define OPTIM_AVX2 1
// 8 elements at a time; the scalar loop's sqrtf keeps errno semantics and
// does not vectorise, and the update is a fifth of a GPT-2 small step.
__attribute__((target("avx2"))) static size_t adamw_avx2(float *p, const float *g, float gscale, float *m, float *v,
                                                         size_t n, float b1, float ob1, float b2, float ob2, float c1,
                                                         float c2, float eps, float flr, float wd) {
    __m256 G = _mm256_set1_ps(gscale), B1 = _mm256_set1_ps(b1), OB1 = _mm256_set1_ps(ob1), B2 = _mm256_set1_ps(b2),
           OB2 = _mm256_set1_ps(ob2), C1 = _mm256_set1_ps(c1), C2 = _mm256_set1_ps(c2), E = _mm256_set1_ps(eps),
           LR = _mm256_set1_ps(flr), WD = _mm256_set1_ps(wd);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), G);
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(B1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(OB1, gi));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(B2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(OB2, gi), gi));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 mhat = _mm256_mul_ps(mi, C1), vhat = _mm256_mul_ps(vi, C2), pi = _mm256_loadu_ps(p + i);
        __m256 upd = _mm256_add_ps(_mm256_div_ps(mhat, _mm256_add_ps(_mm256_sqrt_ps(vhat), E)), _mm256_mul_ps(WD, pi));
        _mm256_storeu_ps(p + i, _mm256_sub_ps(pi, _mm256_mul_ps(LR, upd)));
    }
    return i;
}
#endif

void mech_adamw_update(float *p, const float *g, float gscale, float *m, float *v, size_t n, double lr,
                       const mech_adamw *o, int decay, int64_t t) {
    // Bias corrections in double once per tensor; the element loop stays in
    // float (the same arithmetic on every machine).
    float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    float ob1 = 1.0f - b1, ob2 = 1.0f - b2;
    float c1 = (float)(1.0 / (1.0 - pow(o->beta1, (double)t)));
    float c2 = (float)(1.0 / (1.0 - pow(o->beta2, (double)t)));
    // decoupled weight decay (Loshchilov & Hutter): on the weight, not
    // through the moments
    float flr = (float)lr, wd = decay ? (float)o->weight_decay : 0.0f;
    size_t i = 0;
#ifdef OPTIM_AVX2
    if (__builtin_cpu_supports("avx2")) i = adamw_avx2(p, g, gscale, m, v, n, b1, ob1, b2, ob2, c1, c2, eps, flr, wd);
#endif
    for (; i < n; i++) ADAMW_ELEMENT(i);
}

double mech_lr_cosine(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr) {
    if (step < 0) step = 0;
    if (warmup > 0 && step < warmup) return lr * (double)(step + 1) / (double)warmup;
    int64_t span = total - warmup;
    if (span <= 1 || step >= total) return span <= 1 && step < total ? lr : min_lr;
    // progress 0 at the first step after warm-up, 1 at the last step
    double x = (double)(step - warmup) / (double)(span - 1);
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(3.14159265358979323846 * x));
}

// Chunks of the norm's sum: fixed, so the partial sums and their order (and
// so the norm, bit for bit) do not depend on the thread count.
#define NORM_CHUNK 65536

typedef struct norm_job {
    float *const *g;
    const size_t *n;
    size_t k;
    size_t *first; // (k + 1) cumulative chunk counts
    double *part;  // one per chunk
} norm_job;

static void norm_chunk(void *ctx, int c) {
    norm_job *j = ctx;
    size_t t = 0;
    while (j->first[t + 1] <= (size_t)c) t++;
    size_t lo = ((size_t)c - j->first[t]) * NORM_CHUNK, hi = lo + NORM_CHUNK;
    if (hi > j->n[t]) hi = j->n[t];
    // eight running sums (independent chains, not one long dependency),
    // added in a fixed order; a float's square is exact in double
    double s[8] = {0};
    const float *x = j->g[t];
    size_t i = lo;
    for (; i + 8 <= hi; i += 8)
        for (int k = 0; k < 8; k++) s[k] += (double)x[i + k] * x[i + k];
    for (int k = 0; i < hi; i++, k++) s[k] += (double)x[i] * x[i];
    j->part[c] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

double mech_grad_norm(mech_pool *pool, float *const *g, const size_t *n, size_t k) {
    size_t *first = mech_malloc((k + 1) * sizeof *first);
    if (!first) return NAN;
    first[0] = 0;
    for (size_t t = 0; t < k; t++) first[t + 1] = first[t] + (n[t] + NORM_CHUNK - 1) / NORM_CHUNK;
    double *part = mech_calloc(first[k] ? first[k] : 1, sizeof *part);
    if (!part) {
        mech_free(first);
        return NAN;
    }
    norm_job j = {g, n, k, first, part};
    mech_pool_for(pool, (int)first[k], norm_chunk, &j);
    double ss = 0;
    for (size_t c = 0; c < first[k]; c++) ss += part[c];
    mech_free(part);
    mech_free(first);
    return sqrt(ss);
}

double mech_clip_scale(double norm, double clip) {
    return clip > 0 && norm > clip ? clip / norm : 1.0;
}
