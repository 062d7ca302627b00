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

void mech_adamw_update(float *p, const float *g, float gscale, float *m, float *v, size_t n, double lr,
                       const mech_adamw *o, int decay, int64_t t) {
    // Bias corrections in double once per tensor; the element loop stays in
    // float (the same arithmetic on every machine, vectorisable).
    float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    float c1 = (float)(1.0 / (1.0 - pow(o->beta1, (double)t)));
    float c2 = (float)(1.0 / (1.0 - pow(o->beta2, (double)t)));
    float flr = (float)lr, wd = decay ? (float)o->weight_decay : 0.0f;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi * c1, vhat = vi * c2;
        // decoupled weight decay (Loshchilov & Hutter): on the weight, not
        // through the moments
        p[i] -= flr * (mhat / (sqrtf(vhat) + eps) + wd * p[i]);
    }
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
    double s = 0;
    for (size_t i = lo; i < hi; i++) s += (double)j->g[t][i] * j->g[t][i];
    j->part[c] = s;
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
