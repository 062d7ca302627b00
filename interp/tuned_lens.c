/*
** interp/tuned_lens.c: the tuned lens (Belrose et al. 2023): per residual
** layer l < L an affine translator h -> h + A_l h + b_l, read through the
** final LayerNorm and the unembedding as the logit lens reads h; trained to
** minimise KL(final output || lens output), averaged over positions and
** prompts, with SGD and Nesterov momentum as the reference implementation
** (tuned-lens: lr 1 x (1 - momentum), linear decay, weight decay 1e-3,
** gradient clipping at norm 1, 250 steps). Formulas: docs/lens.md.
**
** Invariants: A = 0, b = 0 reads exactly as the logit lens (the translated
** residual is h + 0, bit for bit, and the same lens code reads it); the
** gradient is analytic (dKL/dz = p - q back through the unembedding and
** the final LayerNorm with the backward pass's own LayerNorm kernel); every
** softmax, KL and norm is accumulated in double.
*/
#include "interp/interp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// The lens object

mech_status mech_tuned_lens_new(const mech_model *m, mech_tuned_lens **out, mech_err *err) {
    *out = NULL;
    int L = m->cfg.n_layers, C = m->cfg.d_model;
    if (L < 1) return mech_err_set(err, MECH_ERR_ARG, "the model has no layers: a tuned lens has nothing to translate");
    mech_tuned_lens *t = mech_calloc(1, sizeof *t);
    if (t) {
        t->weight = mech_calloc((size_t)L * C * C, sizeof *t->weight);
        t->bias = mech_calloc((size_t)L * C, sizeof *t->bias);
    }
    if (!t || !t->weight || !t->bias) {
        mech_tuned_lens_free(t);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for a tuned lens (L=%d, d_model=%d)", L, C);
    }
    t->n_layers = L, t->d_model = C, t->cfg = m->cfg;
    t->fingerprint = mech_tuned_lens_fingerprint(m);
    *out = t;
    return MECH_OK;
}

void mech_tuned_lens_free(mech_tuned_lens *t) {
    if (!t) return;
    mech_free(t->weight);
    mech_free(t->bias);
    mech_free(t);
}

static uint64_t fnv_words(uint64_t h, const float *x, size_t n) {
    for (size_t i = 0; x && i < n; i++) {
        uint32_t w;
        memcpy(&w, &x[i], sizeof w);
        h = (h ^ w) * 0x100000001b3ULL;
    }
    return h;
}

uint64_t mech_tuned_lens_fingerprint(const mech_model *m) {
    size_t C = (size_t)m->cfg.d_model, V = (size_t)m->cfg.d_vocab;
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv_words(h, m->lnf_w, C);
    h = fnv_words(h, m->lnf_b, C);
    h = fnv_words(h, m->unembed, V * C);
    return fnv_words(h, m->unembed_b, V);
}

mech_status mech_tuned_lens_check(const mech_tuned_lens *t, const mech_model *m, mech_err *err) {
    const mech_config *a = &t->cfg, *b = &m->cfg;
    struct { const char *name; double lens, model; } f[] = {
        {"n_layers", a->n_layers, b->n_layers}, {"d_model", a->d_model, b->d_model},
        {"d_vocab", a->d_vocab, b->d_vocab},    {"n_heads", a->n_heads, b->n_heads},
        {"d_head", a->d_head, b->d_head},       {"d_mlp", a->d_mlp, b->d_mlp},
        {"n_ctx", a->n_ctx, b->n_ctx},          {"act", a->act, b->act},
        {"normalization", a->norm, b->norm},    {"attn_only", a->attn_only, b->attn_only},
        {"causal", a->causal, b->causal},       {"ln_eps", a->ln_eps, b->ln_eps},
        {"tied_unembed", a->tied_unembed, b->tied_unembed}, {"unembed_bias", a->unembed_bias, b->unembed_bias},
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (f[i].lens != f[i].model)
            return mech_err_set(err, MECH_ERR_SHAPE, "the tuned lens is for a model with %s %g; this model has %g",
                                f[i].name, f[i].lens, f[i].model);
    if (t->n_layers != b->n_layers || t->d_model != b->d_model)
        return mech_err_set(err, MECH_ERR_SHAPE, "the tuned lens has %d translators of %d, the model %d layers of %d",
                            t->n_layers, t->d_model, b->n_layers, b->d_model);
    uint64_t fp = mech_tuned_lens_fingerprint(m);
    if (fp != t->fingerprint)
        return mech_err_set(err, MECH_ERR_ARG,
                            "the tuned lens was trained for another model of this config (fingerprint of the final "
                            "LayerNorm and unembedding %016llx, this model's %016llx): train one for this model",
                            (unsigned long long)t->fingerprint, (unsigned long long)fp);
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Gradient of one translator

// Scratch for n_cap rows.
typedef struct work {
    int n_cap;
    float *h2;     // (n, C) translated residual
    float *nrm;    // (n, C) its LayerNorm's normalized values
    float *sc;     // (n) and scales
    float *act;    // (n, C) the final LayerNorm's output
    float *z;      // (n, V) lens logits, then dKL/dz
    float *da;     // (n, C)
    float *dh;     // (n, C)
    float *dht;    // (C, n)
    float *q;      // (n, V) the reference distribution softmax(ref)
    double *nhq;   // (n) sum_v q log q of each reference row
    double *sumq;  // (n) sum_v q (1 up to rounding)
    double *kl;    // (n) KL of each row
} work;

static void work_free(work *w) {
    mech_free(w->h2), mech_free(w->nrm), mech_free(w->sc), mech_free(w->act);
    mech_free_aligned(w->z);
    mech_free_aligned(w->q);
    mech_free(w->da), mech_free(w->dh), mech_free(w->dht), mech_free(w->nhq), mech_free(w->sumq), mech_free(w->kl);
    memset(w, 0, sizeof *w);
}

static mech_status work_alloc(work *w, const mech_model *m, int n, mech_err *err) {
    size_t C = (size_t)m->cfg.d_model, V = (size_t)m->cfg.d_vocab, N = (size_t)n;
    w->n_cap = n;
    w->h2 = mech_malloc(N * C * sizeof(float));
    w->nrm = mech_malloc(N * C * sizeof(float));
    w->sc = mech_malloc(N * sizeof(float));
    w->act = mech_malloc(N * C * sizeof(float));
    w->z = mech_malloc_aligned(N * V * sizeof(float));
    w->da = mech_malloc(N * C * sizeof(float));
    w->dh = mech_malloc(N * C * sizeof(float));
    w->dht = mech_malloc(N * C * sizeof(float));
    w->q = mech_malloc_aligned(N * V * sizeof(float));
    w->nhq = mech_malloc(N * sizeof(double));
    w->sumq = mech_malloc(N * sizeof(double));
    w->kl = mech_malloc(N * sizeof(double));
    if (!w->h2 || !w->nrm || !w->sc || !w->act || !w->z || !w->da || !w->dh || !w->dht || !w->q || !w->nhq || !w->sumq ||
        !w->kl) {
        work_free(w);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the tuned lens (%d rows x d_vocab %zu)", n, V);
    }
    return MECH_OK;
}

// Softmax of one row in place (the vectorised kernel) and its log-sum-exp:
// mx + log(sum_v exp(z_v - mx)), the sum read back from the largest
// probability, which is exactly 1 / sum up to float rounding. *qz (when q is
// not NULL) gets sum_v q_v z_v of the logits before the softmax, in double.
// The loops run in independent lanes so that the compiler vectorises them.
static double softmax_lse(float *z, int V, const float *q, double *qz) {
    enum { W = 8 };
    int v = 0;
    if (q) {
        double acc[W] = {0}, t = 0;
        for (; v + W <= V; v += W)
            for (int j = 0; j < W; j++) acc[j] += (double)q[v + j] * z[v + j];
        for (; v < V; v++) t += (double)q[v] * z[v];
        for (int j = 0; j < W; j++) t += acc[j];
        *qz = t;
    }
    double mx = mech_vec_softmax(z, (size_t)V);
    float pm[W] = {0}, pmax = 0;
    for (v = 0; v + W <= V; v += W)
        for (int j = 0; j < W; j++) pm[j] = z[v + j] > pm[j] ? z[v + j] : pm[j];
    for (; v < V; v++) pmax = z[v] > pmax ? z[v] : pmax;
    for (int j = 0; j < W; j++) pmax = pm[j] > pmax ? pm[j] : pmax;
    return mx - log((double)pmax);
}

typedef struct ref_ctx {
    float *q;
    const float *ref;
    double *nhq, *sumq;
    int V;
} ref_ctx;

// q = softmax(ref) of row i; sum q log q = sum q ref - lse(ref) sum q (no log per element).
static void ref_row(void *ctx, int i) {
    ref_ctx *c = ctx;
    size_t V = (size_t)c->V;
    float *q = c->q + (size_t)i * V;
    const float *r = c->ref + (size_t)i * V;
    memcpy(q, r, V * sizeof *q);
    double lse = softmax_lse(q, c->V, NULL, NULL), qr = 0, sq = 0;
    for (size_t v = 0; v < V; v++) qr += (double)q[v] * r[v], sq += q[v];
    c->nhq[i] = qr - lse * sq, c->sumq[i] = sq;
}

// The reference distribution of n rows of logits ref (n, V), into w.
static void prep_ref(mech_pool *pool, work *w, const float *ref, int n, int V) {
    ref_ctx c = {.q = w->q, .ref = ref, .nhq = w->nhq, .sumq = w->sumq, .V = V};
    mech_pool_for(pool, n, ref_row, &c);
}

typedef struct kl_ctx {
    float *z; // (n, V): lens logits in, dKL/dz out
    const work *w;
    int V, n;
} kl_ctx;

// Row i: KL(q || p) = sum q log q - sum q z + lse(z) sum q, and dKL/dz =
// (p - q) / n, with p = softmax(z).
static void kl_row(void *ctx, int i) {
    kl_ctx *c = ctx;
    size_t V = (size_t)c->V;
    float *z = c->z + (size_t)i * V;
    const float *q = c->w->q + (size_t)i * V;
    double qz, lse = softmax_lse(z, c->V, q, &qz);
    double kl = c->w->nhq[i] - qz + lse * c->w->sumq[i];
    float inv = 1.0f / (float)c->n;
    for (size_t v = 0; v < V; v++) z[v] = (z[v] - q[v]) * inv;
    c->w->kl[i] = kl > 0 ? kl : 0;
}

// The KL of translator `layer` on rows h (n, C) against the reference rows
// prep_ref put in w, and its gradient (gw, gb may be NULL).
static void grad_rows(mech_pool *pool, const mech_model *m, const mech_tuned_lens *t, int layer, const float *h, int n,
                      double *kl, float *gw, float *gb, work *w) {
    int C = m->cfg.d_model, V = m->cfg.d_vocab;
    size_t NC = (size_t)n * C;
    const float *A = t->weight + (size_t)layer * C * C, *b = t->bias + (size_t)layer * C;
    // h2 = h A^T + b + h
    mech_matmul_nt(pool, w->h2, C, h, C, A, C, b, n, C, C);
    for (size_t i = 0; i < NC; i++) w->h2[i] += h[i];
    int ln = m->cfg.norm == MECH_NORM_LAYERNORM && m->lnf_w;
    const float *x = w->h2;
    if (ln) {
        for (int i = 0; i < n; i++) {
            float *nr = w->nrm + (size_t)i * C, *a = w->act + (size_t)i * C;
            mech_vec_layernorm(nr, &w->sc[i], w->h2 + (size_t)i * C, (size_t)C, m->cfg.ln_eps);
            for (int c = 0; c < C; c++) a[c] = nr[c] * m->lnf_w[c] + m->lnf_b[c];
        }
        x = w->act;
    }
    mech_matmul_nt(pool, w->z, V, x, C, m->unembed, C, m->unembed_b, n, C, V);
    kl_ctx kc = {.z = w->z, .w = w, .V = V, .n = n};
    mech_pool_for(pool, n, kl_row, &kc);
    double s = 0;
    for (int i = 0; i < n; i++) s += w->kl[i];
    *kl = s / n;
    if (!gw && !gb) return;
    // back through the unembedding (logits = x U^T + b_U: dx = dz U) and the final LayerNorm
    mech_matmul(pool, w->da, C, w->z, V, m->unembed, C, NULL, n, V, C);
    if (ln) mech_layernorm_backward(w->dh, w->da, w->nrm, w->sc, m->lnf_w, (size_t)n, (size_t)C);
    else memcpy(w->dh, w->da, NC * sizeof(float));
    if (gw) { // dA = dh^T h
        for (int i = 0; i < n; i++)
            for (int c = 0; c < C; c++) w->dht[(size_t)c * n + i] = w->dh[(size_t)i * C + c];
        mech_matmul(pool, gw, C, w->dht, n, h, C, NULL, C, n, C);
    }
    if (gb)
        for (int c = 0; c < C; c++) {
            double acc = 0;
            for (int i = 0; i < n; i++) acc += w->dh[(size_t)i * C + c];
            gb[c] = (float)acc;
        }
}

mech_status mech_tuned_lens_grad(const mech_model *m, const mech_tuned_lens *t, int layer, const float *h,
                                 const float *ref, int n, double *kl, float *grad_w, float *grad_b, mech_err *err) {
    if (layer < 0 || layer >= t->n_layers)
        return mech_err_set(err, MECH_ERR_ARG, "layer %d: the translators are for layers 0 to %d", layer, t->n_layers - 1);
    if (n < 1) return mech_err_set(err, MECH_ERR_ARG, "no rows (n = %d)", n);
    mech_status st = mech_tuned_lens_check(t, m, err);
    if (st) return st;
    work w = {0};
    if ((st = work_alloc(&w, m, n, err))) return st;
    mech_pool *pool = mech_pool_new(0);
    double v = 0;
    prep_ref(pool, &w, ref, n, m->cfg.d_vocab);
    grad_rows(pool, m, t, layer, h, n, &v, grad_w, grad_b, &w);
    if (kl) *kl = v;
    mech_pool_free(pool);
    work_free(&w);
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Training

mech_tuned_lens_opts mech_tuned_lens_defaults(void) {
    return (mech_tuned_lens_opts){.steps = 250, .batch = 8, .lr = 1.0, .momentum = 0.9, .weight_decay = 1e-3,
                                  .clip = 1.0, .seed = 1};
}

static void shuffle(int *a, int n, uint64_t *s) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(mech_splitmix64(s) % (uint64_t)(i + 1)), x = a[i];
        a[i] = a[j], a[j] = x;
    }
}

mech_status mech_tuned_lens_fit(const mech_model *m, const int32_t *const *prompts, const int *lens, int n,
                                const mech_tuned_lens_opts *o, mech_tuned_lens **out, mech_err *err) {
    *out = NULL;
    mech_tuned_lens_opts d = o ? *o : mech_tuned_lens_defaults();
    if (n < 1) return mech_err_set(err, MECH_ERR_ARG, "no training prompts");
    if (d.steps < 1 || d.batch < 1 || !(d.lr > 0) || !isfinite(d.lr) || !(d.momentum >= 0 && d.momentum < 1) ||
        !(d.weight_decay >= 0) || !isfinite(d.weight_decay) || isnan(d.clip))
        return mech_err_set(err, MECH_ERR_ARG, "tuned lens options: steps %d, batch %d, lr %g, momentum %g, weight "
                            "decay %g: expected steps, batch >= 1, lr > 0, momentum in [0, 1), weight decay >= 0",
                            d.steps, d.batch, d.lr, d.momentum, d.weight_decay);
    int T = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 1 || lens[i] > m->cfg.n_ctx)
            return mech_err_set(err, MECH_ERR_ARG, "prompt %d has %d tokens: expected 1 to n_ctx %d", i + 1, lens[i],
                                m->cfg.n_ctx);
        T = lens[i] > T ? lens[i] : T;
    }
    int L = m->cfg.n_layers, C = m->cfg.d_model, V = m->cfg.d_vocab, Bs = d.batch < n ? d.batch : n;
    size_t CC = (size_t)C * C, NP = (size_t)L * (CC + C), Nmax = (size_t)Bs * T;
    mech_tuned_lens *t = NULL;
    mech_run *run = NULL;
    mech_pool *pool = NULL;
    work w = {0};
    float *vel = NULL, *grad = NULL, *X = NULL, *ref = NULL;
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int *perm = NULL;
    mech_status st;
    if ((st = mech_tuned_lens_new(m, &t, err))) return st;
    vel = mech_calloc(NP, sizeof *vel);
    grad = mech_calloc(NP, sizeof *grad);
    X = mech_malloc((size_t)L * Nmax * C * sizeof *X);
    ref = mech_malloc(Nmax * V * sizeof *ref);
    ids = mech_calloc(Nmax, sizeof *ids);
    mask = mech_calloc(Nmax, 1);
    perm = mech_malloc((size_t)n * sizeof *perm);
    pool = mech_pool_new(d.threads);
    if (!vel || !grad || !X || !ref || !ids || !mask || !perm || !pool) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory for tuned lens training (%d prompts of up to %d tokens per step)",
                          Bs, T);
        goto done;
    }
    if ((st = work_alloc(&w, m, (int)Nmax, err)) || (st = mech_run_new(m, Bs, T, &run, err)) ||
        (d.threads > 0 && (st = mech_run_set_threads(run, d.threads, err))) ||
        (st = mech_run_cache(run, "blocks.*.hook_resid_pre", err)))
        goto done;
    uint64_t rng = d.seed;
    for (int i = 0; i < n; i++) perm[i] = i;
    shuffle(perm, n, &rng);
    int cur = 0;
    for (int step = 0; step < d.steps; step++) {
        if (cur + Bs > n) { // a new epoch
            shuffle(perm, n, &rng);
            cur = 0;
        }
        int padded = 0;
        for (int b = 0; b < Bs; b++) {
            int p = perm[cur + b], len = lens[p];
            memcpy(ids + (size_t)b * T, prompts[p], (size_t)len * sizeof *ids);
            memset(ids + (size_t)b * T + len, 0, (size_t)(T - len) * sizeof *ids);
            memset(mask + (size_t)b * T, 1, (size_t)len);
            memset(mask + (size_t)b * T + len, 0, (size_t)(T - len));
            padded |= len < T;
        }
        cur += Bs;
        if ((st = mech_run_set_mask(run, padded ? mask : NULL, err)) || (st = mech_run_forward(run, ids, err))) goto done;
        // the real positions of the batch, in order
        const float *logits = mech_run_logits(run);
        int N = 0;
        for (int b = 0; b < Bs; b++) {
            int s0, len;
            mech_run_row(run, b, &s0, &len);
            for (int i = 0; i < len; i++, N++)
                memcpy(ref + (size_t)N * V, logits + ((size_t)b * T + s0 + i) * V, (size_t)V * sizeof *ref);
        }
        for (int l = 0; l < L; l++) {
            char name[64];
            snprintf(name, sizeof name, "blocks.%d.hook_resid_pre", l);
            const float *res = mech_run_get(run, name)->data;
            float *xl = X + (size_t)l * Nmax * C;
            for (int b = 0; b < Bs; b++) {
                int s0, len;
                mech_run_row(run, b, &s0, &len);
                memcpy(xl, res + ((size_t)b * T + s0) * C, (size_t)len * C * sizeof *X);
                xl += (size_t)len * C;
            }
        }
        prep_ref(pool, &w, ref, N, V);
        double kl_sum = 0, norm2 = 0;
        for (int l = 0; l < L; l++) {
            double kl;
            float *gw = grad + (size_t)l * (CC + C), *gb = gw + CC;
            grad_rows(pool, m, t, l, X + (size_t)l * Nmax * C, N, &kl, gw, gb, &w);
            kl_sum += kl;
            for (size_t i = 0; i < CC + C; i++) norm2 += (double)gw[i] * gw[i];
        }
        // torch.nn.utils.clip_grad_norm_ over every translator, then
        // torch.optim.SGD(nesterov=True, weight_decay) with a linear decay
        double norm = sqrt(norm2), scale = d.clip > 0 && norm > d.clip ? d.clip / norm : 1.0;
        double lr = d.lr * (1 - d.momentum) * (double)(d.steps - step) / d.steps, mu = d.momentum;
        for (int l = 0; l < L; l++) {
            float *p[2] = {t->weight + (size_t)l * CC, t->bias + (size_t)l * C};
            size_t np[2] = {CC, (size_t)C}, off[2] = {(size_t)l * (CC + C), (size_t)l * (CC + C) + CC};
            for (int k = 0; k < 2; k++)
                for (size_t i = 0; i < np[k]; i++) {
                    double g = scale * grad[off[k] + i] + d.weight_decay * p[k][i];
                    double v = mu * vel[off[k] + i] + g;
                    vel[off[k] + i] = (float)v;
                    p[k][i] = (float)(p[k][i] - lr * (g + mu * v));
                }
        }
        if (d.progress && d.progress(d.user, step + 1, d.steps, kl_sum / L)) {
            st = mech_err_set(err, MECH_ERR_CANCELLED, "tuned lens training stopped at step %d of %d", step + 1, d.steps);
            goto done;
        }
    }
    *out = t;
    t = NULL;
done:
    mech_tuned_lens_free(t);
    mech_run_free(run);
    mech_pool_free(pool);
    work_free(&w);
    mech_free(vel), mech_free(grad), mech_free(X), mech_free(ref);
    mech_free(ids), mech_free(mask), mech_free(perm);
    return st;
}

// ---------------------------------------------------------------------------
// Applying

// mech_lens_tuned once t is known to be m's.
static mech_status lens_tuned(const mech_model *m, const mech_run *run, const mech_tuned_lens *t, int k,
                              const int32_t *targets, mech_lens_row **rows, size_t *n_rows, mech_err *err) {
    mech_status st;
    int L = m->cfg.n_layers, C = m->cfg.d_model;
    size_t BT = (size_t)mech_run_batch(run) * mech_run_seq_len(run);
    const float *res[L + 1];
    for (int l = 0; l <= L; l++) {
        char name[64];
        if (l < L) snprintf(name, sizeof name, "blocks.%d.hook_resid_pre", l);
        else snprintf(name, sizeof name, "blocks.%d.hook_resid_post", L - 1);
        const mech_tensor *x = mech_run_get(run, name);
        if (!x) return mech_err_set(err, MECH_ERR_ARG, "activation '%s' is not cached (cache it before the forward pass)", name);
        res[l] = x->data;
    }
    float *tr = mech_malloc((size_t)L * BT * C * sizeof *tr);
    mech_pool *pool = mech_pool_new(0);
    if (!tr || !pool) {
        mech_free(tr);
        mech_pool_free(pool);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the tuned lens");
    }
    for (int l = 0; l < L; l++) {
        float *y = tr + (size_t)l * BT * C;
        mech_matmul_nt(pool, y, C, res[l], C, t->weight + (size_t)l * C * C, C, t->bias + (size_t)l * C, (int)BT, C, C);
        // h + (A h + b): with A = 0 and b = 0 this is h exactly
        for (size_t i = 0; i < BT * C; i++) y[i] = res[l][i] + y[i];
        res[l] = y;
    }
    mech_pool_free(pool);
    st = mech_lens_logit_resid(m, run, res, k, targets, rows, n_rows, err);
    mech_free(tr);
    return st;
}

mech_status mech_lens_tuned(const mech_model *m, const mech_run *run, const mech_tuned_lens *t, int k,
                            const int32_t *targets, mech_lens_row **rows, size_t *n_rows, mech_err *err) {
    *rows = NULL;
    *n_rows = 0;
    mech_status st = mech_tuned_lens_check(t, m, err);
    return st ? st : lens_tuned(m, run, t, k, targets, rows, n_rows, err);
}

void mech_lens_kl_by_layer(const mech_lens_row *rows, size_t n_rows, int L, double *out) {
    size_t cnt[L + 1];
    for (int l = 0; l <= L; l++) out[l] = 0, cnt[l] = 0;
    for (size_t i = 0; i < n_rows; i++)
        if (rows[i].layer >= 0 && rows[i].layer <= L) out[rows[i].layer] += rows[i].kl, cnt[rows[i].layer]++;
    for (int l = 0; l <= L; l++) out[l] = cnt[l] ? out[l] / (double)cnt[l] : 0;
}

mech_status mech_tuned_lens_eval(const mech_model *m, const mech_tuned_lens *t, const int32_t *const *prompts,
                                 const int *lens, int n, double *kl_logit, double *kl_tuned, mech_err *err) {
    int L = m->cfg.n_layers;
    double cnt = 0;
    for (int l = 0; l <= L; l++) kl_logit[l] = kl_tuned[l] = 0;
    mech_status st = mech_tuned_lens_check(t, m, err);
    for (int i = 0; i < n && !st; i++) {
        mech_run *run = NULL;
        mech_lens_row *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        if (!(st = mech_run_new(m, 1, lens[i], &run, err)) && !(st = mech_lens_cache(run, err)) &&
            !(st = mech_run_forward(run, prompts[i], err)) && !(st = mech_lens_logit(m, run, 0, NULL, &a, &na, err)) &&
            !(st = lens_tuned(m, run, t, 0, NULL, &b, &nb, err))) { // checked once, above
            for (size_t r = 0; r < na; r++) kl_logit[a[r].layer] += a[r].kl;
            for (size_t r = 0; r < nb; r++) kl_tuned[b[r].layer] += b[r].kl;
            cnt += lens[i];
        }
        mech_free(a);
        mech_free(b);
        mech_run_free(run);
    }
    for (int l = 0; l <= L; l++) kl_logit[l] = cnt > 0 ? kl_logit[l] / cnt : 0, kl_tuned[l] = cnt > 0 ? kl_tuned[l] / cnt : 0;
    return st;
}

// ---------------------------------------------------------------------------
// File format

#define META_CONFIG "mech.tuned_lens.config"
#define META_FP "mech.tuned_lens.fingerprint"

mech_status mech_tuned_lens_save(const mech_tuned_lens *t, const char *path, const char *const *meta_keys,
                                 const char *const *meta_values, size_t n_meta, mech_err *err) {
    int L = t->n_layers, C = t->d_model;
    mech_st_write *w = mech_calloc((size_t)2 * L, sizeof *w);
    char (*names)[32] = mech_calloc((size_t)2 * L, sizeof *names);
    const char **keys = mech_calloc(n_meta + 2, sizeof *keys), **vals = mech_calloc(n_meta + 2, sizeof *vals);
    mech_buf cfg = {0};
    mech_config_to_json(&t->cfg, &cfg);
    char fp[17];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)t->fingerprint);
    mech_status st;
    if (!w || !names || !keys || !vals || cfg.oom) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory writing %s", path);
        goto done;
    }
    for (int l = 0; l < L; l++) {
        snprintf(names[2 * l], sizeof *names, "layers.%d.weight", l);
        snprintf(names[2 * l + 1], sizeof *names, "layers.%d.bias", l);
        w[2 * l] = (mech_st_write){.name = names[2 * l], .dtype = MECH_DT_F32, .ndim = 2, .shape = {C, C},
                                   .data = t->weight + (size_t)l * C * C};
        w[2 * l + 1] = (mech_st_write){.name = names[2 * l + 1], .dtype = MECH_DT_F32, .ndim = 1, .shape = {C},
                                       .data = t->bias + (size_t)l * C};
    }
    keys[0] = META_CONFIG, vals[0] = cfg.data, keys[1] = META_FP, vals[1] = fp;
    for (size_t i = 0; i < n_meta; i++) keys[i + 2] = meta_keys[i], vals[i + 2] = meta_values[i];
    st = mech_safetensors_write(path, w, (size_t)2 * L, keys, vals, n_meta + 2, err);
done:
    mech_free(w);
    mech_free(names);
    mech_free(keys);
    mech_free(vals);
    mech_buf_free(&cfg);
    return st;
}

mech_status mech_tuned_lens_load(const char *path, const mech_model *m, mech_tuned_lens **out, mech_err *err) {
    *out = NULL;
    mech_safetensors *st = NULL;
    mech_tuned_lens *t = NULL;
    mech_json *j = NULL;
    mech_err e = {0};
    mech_status rc = mech_safetensors_open(path, &st, err);
    if (rc) return rc;
    const char *cj = mech_safetensors_meta(st, META_CONFIG), *fp = mech_safetensors_meta(st, META_FP);
    if (!cj || !fp) {
        rc = mech_err_set(err, MECH_ERR_FORMAT, "%s: not a tuned lens (no %s metadata): make one with `mech tuned-lens`",
                          path, !cj ? META_CONFIG : META_FP);
        goto done;
    }
    mech_config cfg = {0};
    if (mech_json_parse(cj, strlen(cj), &j, &e) || mech_config_from_json(j, &cfg, &e)) {
        rc = mech_err_set(err, MECH_ERR_FORMAT, "%s: %s: %s", path, META_CONFIG, e.msg);
        goto done;
    }
    char *end = NULL;
    unsigned long long fpv = strlen(fp) == 16 ? strtoull(fp, &end, 16) : 0;
    if (!end || *end) {
        rc = mech_err_set(err, MECH_ERR_FORMAT, "%s: %s '%s' is not 16 hex digits", path, META_FP, fp);
        goto done;
    }
    int L = cfg.n_layers, C = cfg.d_model;
    if (L < 1) {
        rc = mech_err_set(err, MECH_ERR_FORMAT, "%s: %s: n_layers %d, expected at least 1", path, META_CONFIG, L);
        goto done;
    }
    if ((size_t)2 * L != st->n) {
        rc = mech_err_set(err, MECH_ERR_FORMAT, "%s: %zu tensors, expected %d (a weight and a bias for each of %d layers)",
                          path, st->n, 2 * L, L);
        goto done;
    }
    // every tensor checked before anything is allocated from the header's sizes
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 2; k++) {
            char name[32];
            snprintf(name, sizeof name, k ? "layers.%d.bias" : "layers.%d.weight", l);
            const mech_st_tensor *x = mech_safetensors_find(st, name);
            if (!x) {
                rc = mech_err_set(err, MECH_ERR_FORMAT, "%s: tensor %s is missing", path, name);
                goto done;
            }
            if (x->dtype != MECH_DT_F32 || x->ndim != (k ? 1 : 2) || x->shape[0] != C || (!k && x->shape[1] != C)) {
                rc = mech_err_set(err, MECH_ERR_FORMAT, "%s: %s: %s with %d dimensions [%lld%s], expected F32 %s",
                                  path, name, mech_dtype_name(x->dtype), x->ndim, (long long)(x->ndim ? x->shape[0] : 0),
                                  x->ndim > 1 ? ", ..." : "", k ? "[d_model]" : "[d_model, d_model]");
                goto done;
            }
        }
    t = mech_calloc(1, sizeof *t);
    if (t) {
        t->weight = mech_malloc((size_t)L * C * C * sizeof *t->weight);
        t->bias = mech_malloc((size_t)L * C * sizeof *t->bias);
    }
    if (!t || !t->weight || !t->bias) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    t->n_layers = L, t->d_model = C, t->cfg = cfg, t->fingerprint = fpv;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 2; k++) {
            char name[32];
            snprintf(name, sizeof name, k ? "layers.%d.bias" : "layers.%d.weight", l);
            const mech_st_tensor *x = mech_safetensors_find(st, name);
            size_t want = k ? (size_t)C : (size_t)C * C;
            float *dst = k ? t->bias + (size_t)l * C : t->weight + (size_t)l * C * C;
            memcpy(dst, x->data, want * sizeof *dst); // the mapping may be unaligned
            for (size_t i = 0; i < want; i++)
                if (!isfinite(dst[i])) {
                    rc = mech_err_set(err, MECH_ERR_FORMAT, "%s: %s: element %zu is not finite", path, name, i);
                    goto done;
                }
        }
    if (m && (rc = mech_tuned_lens_check(t, m, &e))) {
        mech_err_set(err, rc, "%s: %s", path, e.msg);
        goto done;
    }
    *out = t;
    t = NULL;
done:
    mech_json_free(j);
    mech_tuned_lens_free(t);
    mech_safetensors_close(st);
    return rc;
}
