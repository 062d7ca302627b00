/*
** core/backward.c: the exact backward pass of core/forward.c.
**
** The maths is llm.c's gpt2_backward generalised to every config mech runs
** (LayerNorm or none, gelu_new/gelu/relu, attention-only, untied unembedding
** with a bias, bidirectional attention, NH*HS != C, padded batches), plus
** hook points: the gradient at each one is fired to backward hooks, cached,
** and stopped at the elements a forward hook changed (core.h explains why).
**
** What the forward keeps in grad mode (per block, in each hook point's own
** `keep` buffer): LayerNorm scales and normalized outputs, q, k, v, z, the
** MLP's pre- and post-activation, and without LayerNorm the matrix inputs
** (resid_pre, resid_mid or mlp_in). The attention pattern is recomputed from
** q and k, block by block as the forward computes it, unless a forward hook
** on scores or pattern could have changed it (then the forward keeps it).
** LayerNorm affine outputs are recomputed from the normalized values.
**
** Matrix products go through mech_matmul / mech_matmul_nt on the run's pool;
** weight gradients (dW = X^T dY) through mech_matmul_tn, which reads X in
** place (no transposed copy).
** Parameter gradients are written (=), not accumulated: each tensor is
** produced once per backward (the tied wte gets the unembedding's gradient
** first, then the embedding's is added).
*/
#include "core/forward_int.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#define QB ATTN_QB // query rows per attention block, as the forward
#define PSTORE_MAX ((size_t)1 << 30) // bytes of kept patterns at most, by default

struct grad_state {
    int flags;
    int ready;             // the last forward ran in grad mode to the logits
    int start;             // its first block
    int32_t *ids;          // (B, T) its tokens
    uint8_t *real;         // (B*T) 1 for a real token, 0 for padding
    uint8_t *split;        // (L) block l computed q/k/v from split inputs
    uint8_t *pat_kept;     // (L) block l's pattern is in its keep buffer
    float **pstore;        // (L) packed patterns the fused forward left (r->pat_store), or NULL entries
    size_t pstore_max;     // bytes of them at most (mech_run_set_grad_pattern_bytes)
    uint8_t *mlp_in;       // (L) block l's MLP read hook_mlp_in
    mech_model *grads;     // parameter gradients, or NULL
    mech_tensor *cached;   // views of cached gradients in firing order
    size_t n_cached;
    // work buffers, allocated at the first backward
    float *g;              // (rows, C) gradient of the residual stream
    float *ga, *gb;        // (rows, C) branch gradients
    float *act;            // (rows, max(C, M)) recomputed LayerNorm output
    float *dq, *dk, *dv, *dz; // (rows, A)
    float *dqkv;           // (rows, 3A)
    float *dpre, *dpost;   // (rows, M)
    float *rowv;           // (rows) per-row scalars (LayerNorm scale gradients)
    float *dlogits;        // (rows, V): rows as the logits the forward computes
    size_t dlogits_n;      // its floats
    int *nz;               // (rows) rows with a non-zero logit gradient
    float *dres;           // (rows, NH, C) per-head gradients (hook_result, split inputs), lazy
    float *split_x, *split_n, *split_s; // (rows, C) x2 and (rows): one head's split LayerNorm, lazy
    float *dP, *dS;        // (B, NH, T, T) materialised attention gradients, lazy
};

// ---------------------------------------------------------------------------
// Helpers

static hook_point *pt(mech_run *r, int layer, int kind) {
    return &r->pts[hook_point_index(&r->m->cfg, layer, kind)];
}

static int fwd_active(const hook_point *p) { return p->cache != NULL || p->n_fns > 0; }
static int wanted(const hook_point *p) { return p->exists && (p->gcache != NULL || p->n_gfns > 0); }

static void *zalloc(size_t floats) {
    float *p = mech_malloc_aligned((floats ? floats : 1) * sizeof(float));
    if (p) memset(p, 0, (floats ? floats : 1) * sizeof(float));
    return p;
}

// The gradient g at p: backward hooks, then the cache, then the cut at the
// elements a forward hook changed. Non-zero when a hook asked to stop.
static int gfire(hook_point *p, float *g) {
    if (!p->exists) return 0;
    size_t n = mech_tensor_numel(&p->view);
    if (p->n_gfns) {
        mech_tensor t = p->view;
        t.data = g;
        for (int i = 0; i < p->n_gfns; i++)
            if (p->gfns[i].fn(&t, p->layer, p->gfns[i].user)) return 1;
    }
    if (p->gcache) memcpy(p->gcache, g, n * sizeof(float));
    if (p->n_patched)
        for (size_t i = 0; i < n; i++)
            if (p->patched[i]) g[i] = 0.0f;
    return 0;
}

// Parallel loops over rows (or any index range).
typedef struct par_job {
    size_t n, per;
    void (*fn)(void *ctx, size_t i0, size_t i1);
    void *ctx;
} par_job;

static void par_task(void *ctx, int i) {
    par_job *j = ctx;
    size_t i0 = (size_t)i * j->per, i1 = i0 + j->per < j->n ? i0 + j->per : j->n;
    if (i0 < i1) j->fn(j->ctx, i0, i1);
}

static void par(mech_run *r, size_t n, size_t min_per, void (*fn)(void *, size_t, size_t), void *ctx) {
    size_t tasks = (size_t)mech_pool_size(r->pool) * 4, per = (n + tasks - 1) / tasks;
    if (per < min_per) per = min_per;
    par_job j = {.n = n, .per = per ? per : 1, .fn = fn, .ctx = ctx};
    int nt = (int)((n + j.per - 1) / j.per);
    if (nt <= 1) {
        if (n) fn(ctx, 0, n);
    } else {
        mech_pool_for(r->pool, nt, par_task, &j);
    }
}

// out (K, N) = x^T dy: x (M, K) rows ldx apart, dy (M, N) rows ldy apart;
// gb (N), when not NULL, gets dy's column sums (a bias's gradient; the same
// double sums in the same order as colsum's).
static void matmul_tn(mech_run *r, float *out, int ldo, const float *x, int ldx, const float *dy, int ldy, float *gb,
                      int M, int K, int N) {
    mech_matmul_tn(r->pool, out, ldo, x, ldx, dy, ldy, gb, K, M, N);
}

// out[n] = sum over rows of y[m*ldy + n]
typedef struct colsum_ctx {
    float *out;
    const float *y, *w; // w: optional (rows, N) factor, same ld
    size_t rows, ldy;
    int add;
} colsum_ctx;

MECH_EW_CLONES static void colsum_cols(void *ctx, size_t n0, size_t n1) {
    colsum_ctx *c = ctx;
    // rows outer, columns inner: contiguous reads, 256 columns at a time
    double acc[256];
    for (size_t c0 = n0; c0 < n1; c0 += 256) {
        size_t w = n1 - c0 < 256 ? n1 - c0 : 256;
        for (size_t k = 0; k < w; k++) acc[k] = 0;
        for (size_t m = 0; m < c->rows; m++) {
            const float *y = c->y + m * c->ldy + c0;
            if (c->w) {
                const float *f = c->w + m * c->ldy + c0;
                for (size_t k = 0; k < w; k++) acc[k] += (double)(y[k] * f[k]);
            } else {
                for (size_t k = 0; k < w; k++) acc[k] += y[k];
            }
        }
        float *out = c->out + c0;
        for (size_t k = 0; k < w; k++) out[k] = c->add ? out[k] + (float)acc[k] : (float)acc[k];
    }
}

static void colsum(mech_run *r, float *out, const float *y, const float *w, size_t rows, size_t N, size_t ldy, int add) {
    colsum_ctx c = {out, y, w, rows, ldy, add};
    par(r, N, 64, colsum_cols, &c);
}

// A LayerNorm's two parameter gradients in one read of dy (rows, N):
// gw = sum dy * n, gb = sum dy, each the same double sum in the same order
// as colsum's (added when add).
typedef struct colsum2_ctx {
    float *gw, *gb;
    const float *y, *n;
    size_t rows, N;
    int add;
} colsum2_ctx;

MECH_EW_CLONES static void colsum2_cols(void *ctx, size_t n0, size_t n1) {
    colsum2_ctx *c = ctx;
    double aw[128], ab[128];
    for (size_t c0 = n0; c0 < n1; c0 += 128) {
        size_t w = n1 - c0 < 128 ? n1 - c0 : 128;
        for (size_t k = 0; k < w; k++) aw[k] = ab[k] = 0;
        for (size_t m = 0; m < c->rows; m++) {
            const float *y = c->y + m * c->N + c0, *f = c->n + m * c->N + c0;
            for (size_t k = 0; k < w; k++) {
                aw[k] += (double)(y[k] * f[k]);
                ab[k] += y[k];
            }
        }
        for (size_t k = 0; k < w; k++) {
            c->gw[c0 + k] = c->add ? c->gw[c0 + k] + (float)aw[k] : (float)aw[k];
            c->gb[c0 + k] = c->add ? c->gb[c0 + k] + (float)ab[k] : (float)ab[k];
        }
    }
}

static void colsum2(mech_run *r, float *gw, float *gb, const float *y, const float *n, size_t rows, size_t N, int add) {
    colsum2_ctx c = {gw, gb, y, n, rows, N, add};
    par(r, N, 32, colsum2_cols, &c);
}

// Writable view of a parameter gradient.
static float *gp(const float *p) { return (float *)(uintptr_t)p; }

// ---------------------------------------------------------------------------
// Grad mode and the forward

static void state_free_work(struct grad_state *s) {
    float **bufs[] = {&s->g, &s->ga, &s->gb, &s->act, &s->dq, &s->dk, &s->dv, &s->dz, &s->dqkv, &s->dpre,
                      &s->dpost, &s->rowv, &s->dlogits, &s->dres, &s->split_x, &s->split_n,
                      &s->split_s, &s->dP, &s->dS};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
        mech_free_aligned(*bufs[i]);
        *bufs[i] = NULL;
    }
    mech_free(s->nz);
    s->nz = NULL;
    s->dlogits_n = 0;
}

// What grad mode adds to the forward: kept patterns and gelu derivatives.
static void free_forward_extras(mech_run *r) {
    struct grad_state *s = r->grad;
    for (int l = 0; s && s->pstore && l < r->m->cfg.n_layers; l++) mech_free_aligned(s->pstore[l]);
    for (int l = 0; r->act_grad && l < r->m->cfg.n_layers; l++) mech_free_aligned(r->act_grad[l]);
    if (s) mech_free(s->pstore), s->pstore = NULL;
    mech_free(r->pat_store);
    mech_free(r->act_grad);
    r->pat_store = NULL;
    r->act_grad = NULL;
}

static void free_point_grad(hook_point *p) {
    mech_free_aligned(p->keep);
    mech_free_aligned(p->before);
    mech_free(p->patched);
    p->keep = p->before = NULL;
    p->patched = NULL;
    p->n_patched = 0;
}

void grad_reset(mech_run *r) {
    for (int i = 0; r->pts && i < r->n_pts; i++) {
        hook_point *p = &r->pts[i];
        mech_free_aligned(p->gcache);
        mech_free(p->gfns);
        p->gcache = NULL;
        p->gfns = NULL;
        p->n_gfns = 0;
    }
    if (!r->grad) return;
    mech_free(r->grad->cached);
    r->grad->cached = NULL;
    r->grad->n_cached = 0;
    r->grad->ready = 0; // kept buffers may have been caches, now freed
}

void grad_free(mech_run *r) {
    struct grad_state *s = r->grad;
    for (int i = 0; r->pts && i < r->n_pts; i++) free_point_grad(&r->pts[i]);
    if (!s) return;
    free_forward_extras(r);
    state_free_work(s);
    mech_free(s->ids);
    mech_free(s->real);
    mech_free(s->split);
    mech_free(s->pat_kept);
    mech_free(s->mlp_in);
    mech_model_free(s->grads);
    mech_free(s->cached);
    mech_free(s);
    r->grad = NULL;
}

mech_status mech_run_enable_grad(mech_run *r, int flags, mech_err *err) {
    if (flags != 0 && flags != MECH_GRAD_ACTS && flags != MECH_GRAD_PARAMS)
        return mech_err_set(err, MECH_ERR_ARG, "grad flags %d: expected 0, MECH_GRAD_ACTS or MECH_GRAD_PARAMS", flags);
    if (!flags) {
        // keep the backward hooks and gradient caches: they belong to the user
        if (r->grad) {
            struct grad_state *s = r->grad;
            for (int i = 0; i < r->n_pts; i++) free_point_grad(&r->pts[i]);
            free_forward_extras(r);
            state_free_work(s);
            mech_free(s->ids);
            mech_free(s->real);
            mech_free(s->split);
            mech_free(s->pat_kept);
            mech_free(s->mlp_in);
            mech_model_free(s->grads);
            s->ids = NULL, s->real = NULL, s->split = s->pat_kept = s->mlp_in = NULL, s->grads = NULL;
            s->flags = 0, s->ready = 0;
        }
        return MECH_OK;
    }
    if (!r->grad) {
        if (!(r->grad = mech_calloc(1, sizeof *r->grad))) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        r->grad->pstore_max = PSTORE_MAX;
    }
    r->grad->flags = flags;
    r->grad->ready = 0;
    return MECH_OK;
}

mech_status mech_run_set_grad_pattern_bytes(mech_run *r, size_t max_bytes, mech_err *err) {
    if (!r->grad || !r->grad->flags)
        return mech_err_set(err, MECH_ERR_ARG, "grad pattern bytes: grad mode is off (mech_run_enable_grad first)");
    free_forward_extras(r); // the next forward decides again
    r->grad->pstore_max = max_bytes;
    r->grad->ready = 0;
    return MECH_OK;
}

static mech_status keep(mech_run *r, hook_point *p, mech_err *err) {
    if (!p->exists || p->keep) return MECH_OK;
    size_t n = mech_tensor_numel(&p->view);
    if (!(p->keep = mech_malloc_aligned(n * sizeof(float))))
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory keeping %s for the backward pass", p->name);
    return MECH_OK;
}

mech_status grad_forward_begin(mech_run *r, int start, const int32_t *ids, mech_err *err) {
    struct grad_state *s = r->grad;
    if (!s->flags) return MECH_OK;
    const mech_config *c = &r->m->cfg;
    int L = c->n_layers, ln = c->norm == MECH_NORM_LAYERNORM;
    size_t rows = (size_t)r->B * r->T;
    mech_status rc;
    s->ready = 0;
    if (!s->ids) s->ids = mech_malloc(rows * sizeof *s->ids);
    if (!s->real) s->real = mech_malloc(rows);
    if (!s->split) s->split = mech_calloc((size_t)L + 1, 1);
    if (!s->pat_kept) s->pat_kept = mech_calloc((size_t)L + 1, 1);
    if (!s->mlp_in) s->mlp_in = mech_calloc((size_t)L + 1, 1);
    if (!s->ids || !s->real || !s->split || !s->pat_kept || !s->mlp_in)
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the backward pass");
    s->start = start;
    if (ids) memcpy(s->ids, ids, rows * sizeof *ids);
    else memset(s->ids, 0, rows * sizeof *s->ids);
    for (int b = 0; b < r->B; b++) {
        int st, len;
        mech_run_row(r, b, &st, &len);
        for (int t = 0; t < r->T; t++) s->real[(size_t)b * r->T + t] = t >= st && t < st + len;
    }
    for (int i = 0; i < r->n_pts; i++) {
        hook_point *p = &r->pts[i];
        p->n_patched = 0;
        if (p->exists && p->n_fns && !p->before) {
            size_t n = mech_tensor_numel(&p->view);
            p->before = mech_malloc_aligned(n * sizeof(float));
            p->patched = mech_malloc(n);
            if (!p->before || !p->patched)
                return mech_err_set(err, MECH_ERR_NOMEM, "out of memory recording hooks at %s", p->name);
        }
    }
    if ((!r->act_grad && !(r->act_grad = mech_calloc((size_t)L, sizeof *r->act_grad))) ||
        (!s->pstore && !(s->pstore = mech_calloc((size_t)L, sizeof *s->pstore))) ||
        (!r->pat_store && !(r->pat_store = mech_calloc((size_t)L, sizeof *r->pat_store))))
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the backward pass");
    for (int l = 0; l < L; l++) {
        static const int always[] = {HK_LN1_SCALE, HK_LN1_NORM, HK_Q, HK_K, HK_V, HK_Z, HK_LN2_SCALE,
                                     HK_LN2_NORM, HK_MLP_POST};
        for (size_t k = 0; k < sizeof always / sizeof *always; k++)
            if ((rc = keep(r, pt(r, l, always[k]), err))) return rc;
        // gelu_new: the forward leaves the derivative (computed with the
        // activation, sharing its exp) where hook_mlp_pre's values would be
        // kept; the backward then only multiplies. Other activations keep
        // the pre-activation and differentiate it in the backward.
        if (c->act == MECH_ACT_GELU_NEW && !c->attn_only && c->d_mlp > 0) {
            if (!r->act_grad[l] && !(r->act_grad[l] = mech_malloc_aligned(rows * (size_t)c->d_mlp * sizeof(float))))
                return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the backward pass");
        } else if ((rc = keep(r, pt(r, l, HK_MLP_PRE), err))) {
            return rc;
        }
        s->split[l] = fwd_active(pt(r, l, HK_Q_INPUT)) || fwd_active(pt(r, l, HK_K_INPUT)) ||
                      fwd_active(pt(r, l, HK_V_INPUT));
        s->pat_kept[l] = pt(r, l, HK_SCORES)->n_fns > 0 || pt(r, l, HK_PATTERN)->n_fns > 0;
        s->mlp_in[l] = !c->attn_only && fwd_active(pt(r, l, HK_MLP_IN));
        if (s->split[l])
            for (int k = HK_Q_INPUT; k <= HK_V_INPUT; k++)
                if ((rc = keep(r, pt(r, l, k), err))) return rc;
        if (s->pat_kept[l] && (rc = keep(r, pt(r, l, HK_PATTERN), err))) return rc;
        // The fused attention (no scores or pattern hook point active) leaves
        // its pattern for the backward, which then need not recompute it;
        // up to pstore_max bytes in all, else the backward recomputes.
        size_t pn = (size_t)r->B * c->n_heads * pattern_block_offset(r->T, c->causal, r->T);
        int fused = !fwd_active(pt(r, l, HK_SCORES)) && !fwd_active(pt(r, l, HK_PATTERN));
        if (fused && !s->pstore[l] && pn * sizeof(float) * (size_t)L <= s->pstore_max)
            s->pstore[l] = mech_malloc_aligned(pn * sizeof(float)); // NULL: recompute
        r->pat_store[l] = fused ? s->pstore[l] : NULL;
        if (!ln && (rc = keep(r, pt(r, l, HK_RESID_PRE), err))) return rc;
        if (!ln && !c->attn_only && (rc = keep(r, pt(r, l, s->mlp_in[l] ? HK_MLP_IN : HK_RESID_MID), err)))
            return rc;
    }
    if ((rc = keep(r, pt(r, -1, HK_LNF_SCALE), err)) || (rc = keep(r, pt(r, -1, HK_LNF_NORM), err))) return rc;
    return MECH_OK;
}

void grad_invalidate(mech_run *r) {
    if (r->grad) r->grad->ready = 0;
}

void grad_forward_end(mech_run *r) {
    if (r->grad->flags) r->grad->ready = 1;
}

// ---------------------------------------------------------------------------
// Backward hooks and caches

static mech_status rebuild_gcached(mech_run *r, mech_err *err) {
    size_t n = 0;
    for (int i = 0; i < r->n_pts; i++) n += r->pts[i].gcache != NULL;
    mech_tensor *list = mech_calloc(n ? n : 1, sizeof *list);
    if (!list) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (int i = 0; i < r->n_pts; i++)
        if (r->pts[i].gcache) {
            list[k] = r->pts[i].view;
            list[k++].data = r->pts[i].gcache;
        }
    mech_free(r->grad->cached);
    r->grad->cached = list;
    r->grad->n_cached = n;
    return MECH_OK;
}

static mech_status need_state(mech_run *r, mech_err *err) {
    if (!r->grad && !(r->grad = mech_calloc(1, sizeof *r->grad)))
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    return MECH_OK;
}

mech_status mech_run_grad_hook(mech_run *r, const char *glob, mech_hook_fn fn, void *user, mech_err *err) {
    if (!fn) return mech_err_set(err, MECH_ERR_ARG, "backward hook '%s': no function given", glob);
    mech_status rc = need_state(r, err);
    if (rc) return rc;
    int matched = 0;
    for (int i = 0; i < r->n_pts; i++) {
        hook_point *p = &r->pts[i];
        if (!hook_point_matches(p, glob)) continue;
        hook_fn_entry *f = mech_realloc(p->gfns, (size_t)(p->n_gfns + 1) * sizeof *f);
        if (!f) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory adding backward hook '%s'", glob);
        p->gfns = f;
        p->gfns[p->n_gfns++] = (hook_fn_entry){fn, user};
        matched++;
    }
    if (!matched)
        return mech_err_set(err, MECH_ERR_ARG, "backward hook '%s' matches no hook point of this model (see `mech info`)",
                            glob);
    return MECH_OK;
}

mech_status mech_run_cache_grad(mech_run *r, const char *glob, mech_err *err) {
    mech_status rc = need_state(r, err);
    if (rc) return rc;
    int matched = 0;
    for (int i = 0; i < r->n_pts; i++) {
        hook_point *p = &r->pts[i];
        if (!hook_point_matches(p, glob)) continue;
        matched++;
        if (p->gcache) continue;
        size_t n = mech_tensor_numel(&p->view);
        if (!(p->gcache = zalloc(n)))
            return mech_err_set(err, MECH_ERR_NOMEM, "out of memory caching the gradient at '%s' (%zu floats)", p->name, n);
    }
    if (!matched)
        return mech_err_set(err, MECH_ERR_ARG, "gradient cache '%s' matches no hook point of this model (see `mech info`)",
                            glob);
    return rebuild_gcached(r, err);
}

const mech_tensor *mech_run_grad(const mech_run *r, const char *name) {
    if (!r->grad) return NULL;
    for (size_t i = 0; i < r->grad->n_cached; i++)
        if (!strcmp(r->grad->cached[i].name, name)) return &r->grad->cached[i];
    return NULL;
}

const mech_tensor *mech_run_grads_cached(const mech_run *r, size_t *n) {
    *n = r->grad ? r->grad->n_cached : 0;
    return r->grad ? r->grad->cached : NULL;
}

const mech_model *mech_run_param_grads(const mech_run *r) { return r->grad ? r->grad->grads : NULL; }

// ---------------------------------------------------------------------------
// Metrics

const char *mech_metric_name(mech_metric_kind k) {
    static const char *const names[MECH_METRIC_COUNT_] = {"loss", "logit_diff", "logprob", "kl"};
    return k >= 0 && k < MECH_METRIC_COUNT_ ? names[k] : "?";
}

// Position p of row b's real tokens: absolute index, or -1 when out of range.
static int metric_pos(const mech_run *r, int b, int p) {
    int st, len;
    mech_run_row(r, b, &st, &len);
    if (p < 0) p += len;
    return p < 0 || p >= len ? -1 : st + p;
}

static mech_status check_metric(const mech_run *r, const mech_metric *mt, mech_err *err) {
    const mech_config *c = &r->m->cfg;
    int V = c->d_vocab;
    if (!r->logits_valid)
        return mech_err_set(err, MECH_ERR_ARG, "no logits: the last forward did not run to the end (or none ran)");
    if (mt->kind < 0 || mt->kind >= MECH_METRIC_COUNT_) return mech_err_set(err, MECH_ERR_ARG, "unknown metric %d", mt->kind);
    const char *name = mech_metric_name(mt->kind);
    int k = mt->kind;
    if ((k == MECH_METRIC_LOGIT_DIFF || k == MECH_METRIC_LOGPROB) && !mt->answer)
        return mech_err_set(err, MECH_ERR_ARG, "metric %s needs an answer token per row", name);
    if (k == MECH_METRIC_LOGIT_DIFF && !mt->wrong)
        return mech_err_set(err, MECH_ERR_ARG, "metric %s needs a wrong token per row", name);
    if (k != MECH_METRIC_LOGIT_DIFF && mt->wrong)
        return mech_err_set(err, MECH_ERR_ARG, "metric %s takes no wrong token", name);
    if ((k == MECH_METRIC_LOSS || k == MECH_METRIC_KL) && mt->answer)
        return mech_err_set(err, MECH_ERR_ARG, "metric %s takes no answer token", name);
    if (k == MECH_METRIC_KL && !mt->ref_logits)
        return mech_err_set(err, MECH_ERR_ARG, "metric %s needs reference logits", name);
    if (k != MECH_METRIC_KL && mt->ref_logits)
        return mech_err_set(err, MECH_ERR_ARG, "metric %s takes no reference logits", name);
    if (k != MECH_METRIC_LOSS && mt->targets) return mech_err_set(err, MECH_ERR_ARG, "metric %s takes no targets", name);
    for (int b = 0; b < r->B; b++) {
        if (mt->answer && (mt->answer[b] < 0 || mt->answer[b] >= V))
            return mech_err_set(err, MECH_ERR_RANGE, "answer token %d (row %d) is outside the vocabulary of %d",
                                (int)mt->answer[b], b + 1, V);
        if (mt->wrong && (mt->wrong[b] < 0 || mt->wrong[b] >= V))
            return mech_err_set(err, MECH_ERR_RANGE, "wrong token %d (row %d) is outside the vocabulary of %d",
                                (int)mt->wrong[b], b + 1, V);
        if (k != MECH_METRIC_LOSS && mt->pos != MECH_POS_ALL && metric_pos(r, b, mt->pos) < 0) {
            int st, len;
            mech_run_row(r, b, &st, &len);
            return mech_err_set(err, MECH_ERR_RANGE, "position %d is outside row %d's %d tokens", mt->pos, b + 1, len);
        }
    }
    if (mt->targets)
        for (size_t i = 0; i < (size_t)r->B * r->T; i++)
            if (mt->targets[i] < -1 || mt->targets[i] >= V)
                return mech_err_set(err, MECH_ERR_RANGE, "target %d (row %zu, position %zu) is outside the vocabulary of %d",
                                    (int)mt->targets[i], i / (size_t)r->T + 1, i % (size_t)r->T, V);
    return MECH_OK;
}

// The loss target of position t of row b, or -1.
static int32_t loss_target(const mech_run *r, const mech_metric *mt, const int32_t *ids, int b, int t) {
    const uint8_t *real = r->grad ? r->grad->real : NULL;
    size_t i = (size_t)b * r->T + t;
    if (mt->targets) return mt->targets[i];
    int st, len;
    mech_run_row(r, b, &st, &len);
    (void)real;
    return t >= st && t + 1 < st + len ? ids[i + 1] : -1;
}

// Weight of each (row, position) in the metric's mean; *n_terms gets the
// number of terms. w (B*T) may be NULL to count only.
static void metric_weights(const mech_run *r, const mech_metric *mt, const int32_t *ids, double *w, size_t *n_terms) {
    size_t n = 0;
    for (int b = 0; b < r->B; b++) {
        int st, len;
        mech_run_row(r, b, &st, &len);
        for (int t = 0; t < r->T; t++) {
            int on;
            if (mt->kind == MECH_METRIC_LOSS) on = loss_target(r, mt, ids, b, t) >= 0;
            else if (mt->pos == MECH_POS_ALL) on = t >= st && t < st + len;
            else on = t == metric_pos(r, b, mt->pos);
            if (w) w[(size_t)b * r->T + t] = on;
            n += on;
        }
    }
    *n_terms = n;
}

// The row of r->logits that holds position t of row b, or -1 when the
// forward did not compute it (mech_run_set_logits_rows; its gather rule).
static long logits_row(const mech_run *r, int b, int t) {
    if (!r->lg_n) return (long)b * r->T + t;
    int p0 = r->lg_first;
    if (p0 < 0) {
        int st, len;
        mech_run_row(r, b, &st, &len);
        p0 = len > 0 ? st + len - 1 : r->T - 1;
    }
    return t >= p0 && t < p0 + r->lg_n ? (long)b * r->lg_n + (t - p0) : -1;
}

// One term of the metric: row i of the logits (b, t), its value and, when
// d is not NULL, its gradient times scale.
typedef struct metric_ctx {
    const mech_run *r;
    const mech_metric *mt;
    const int32_t *ids;
    const int *rows_on; // (n) logits rows of the terms
    double *vals;       // (n)
    float *dl;          // (n, V) or NULL
    double scale;
    atomic_int oom;
} metric_ctx;

// softmax of x times scale into p (vectorised, one pass per step, no
// copy); returns log sum exp(x)
static double softmax_lse(float *p, const float *x, int V, float scale) {
    float pm;
    float mx = mech_vec_softmax_scaled(p, x, (size_t)V, scale, &pm);
    // p at the argmax is exp(max - lse) >= 1/V: lse from it keeps full precision
    return (double)mx - log((double)pm);
}

static void metric_terms(void *ctx, size_t k0, size_t k1) {
    metric_ctx *c = ctx;
    const mech_run *r = c->r;
    const mech_metric *mt = c->mt;
    int V = r->m->cfg.d_vocab, T = r->T;
    float *tmp = mech_malloc_aligned((size_t)V * 2 * sizeof *tmp);
    if (!tmp) {
        atomic_store(&c->oom, 1);
        return;
    }
    float sc = (float)c->scale;
    for (size_t k = k0; k < k1; k++) {
        size_t i = (size_t)c->rows_on[k];
        int b = (int)(i / (size_t)T), t = (int)(i % (size_t)T);
        size_t li = (size_t)logits_row(r, b, t); // checked by metric_run
        const float *x = r->logits + li * (size_t)V;
        float *d = c->dl ? c->dl + k * (size_t)V : tmp; // p lands here
        double val = 0;
        switch (mt->kind) {
        case MECH_METRIC_LOSS: {
            int32_t y = loss_target(r, mt, c->ids, b, t);
            val = softmax_lse(d, x, V, c->dl ? sc : 1.0f) - x[y];
            if (c->dl) d[y] -= sc;
            break;
        }
        case MECH_METRIC_LOGIT_DIFF:
            val = (double)x[mt->answer[b]] - x[mt->wrong[b]];
            if (c->dl) {
                memset(d, 0, (size_t)V * sizeof *d);
                d[mt->answer[b]] += sc;
                d[mt->wrong[b]] -= sc;
            }
            break;
        case MECH_METRIC_LOGPROB:
            val = x[mt->answer[b]] - softmax_lse(d, x, V, c->dl ? -sc : 1.0f);
            if (c->dl) d[mt->answer[b]] += sc;
            break;
        case MECH_METRIC_KL: {
            float *q = tmp + V;
            double lx = softmax_lse(d, x, V, 1.0f), lq = softmax_lse(q, mt->ref_logits + li * (size_t)V, V, 1.0f);
            const float *qx = mt->ref_logits + li * (size_t)V;
            for (int v = 0; v < V; v++)
                if (q[v] > 0) val += q[v] * (((double)qx[v] - lq) - ((double)x[v] - lx));
            if (c->dl)
                for (int v = 0; v < V; v++) d[v] = (d[v] - q[v]) * sc;
            break;
        }
        default: break;
        }
        c->vals[k] = val;
    }
    mech_free_aligned(tmp);
}

// Value of the metric and, when dl is not NULL, its gradient with respect
// to the logits of the rows in *nz (dl row k = logits row nz[k]).
static mech_status metric_run(const mech_run *r, const mech_metric *mt, const int32_t *ids, double *value, float *dl,
                              int *nz, int *n_nz, mech_err *err) {
    size_t rows = (size_t)r->B * r->T, n_terms;
    double *w = mech_malloc(rows * sizeof *w), *vals = mech_malloc(rows * sizeof *vals);
    int *on = nz ? nz : mech_malloc(rows * sizeof *on);
    mech_status rc = MECH_OK;
    if (!w || !vals || !on) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    metric_weights(r, mt, ids, w, &n_terms);
    if (!n_terms) {
        rc = mech_err_set(err, MECH_ERR_ARG, "metric %s has no terms (%s)", mech_metric_name(mt->kind),
                          mt->kind == MECH_METRIC_LOSS ? "every row is a single token, or no target is set"
                                                       : "no position selected");
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < rows; i++) {
        if (!w[i]) continue;
        if (logits_row(r, (int)(i / (size_t)r->T), (int)(i % (size_t)r->T)) < 0) {
            rc = mech_err_set(err, MECH_ERR_ARG,
                              "metric %s reads the logits of position %zu of row %zu, which this run does not compute "
                              "(mech_run_set_logits_rows: %d per row)",
                              mech_metric_name(mt->kind), i % (size_t)r->T, i / (size_t)r->T + 1, r->lg_n);
            goto done;
        }
        on[k++] = (int)i;
    }
    metric_ctx c = {.r = r, .mt = mt, .ids = ids, .rows_on = on, .vals = vals, .dl = dl, .scale = 1.0 / (double)n_terms};
    atomic_init(&c.oom, 0);
    par((mech_run *)r, k, 1, metric_terms, &c);
    if (atomic_load(&c.oom)) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    double total = 0;
    for (size_t j = 0; j < k; j++) total += vals[j];
    if (n_nz) *n_nz = (int)k;
    *value = total * c.scale;
done:
    mech_free(w);
    mech_free(vals);
    if (on != nz) mech_free(on);
    return rc;
}

mech_status mech_metric_eval(const mech_run *r, const mech_metric *mt, double *value, mech_err *err) {
    mech_status rc = check_metric(r, mt, err);
    if (rc) return rc;
    if (mt->kind == MECH_METRIC_LOSS && !mt->targets && !(r->grad && r->grad->ready))
        return mech_err_set(err, MECH_ERR_ARG,
                            "metric loss without targets needs the forward's tokens: enable grad mode before the forward");
    return metric_run(r, mt, r->grad ? r->grad->ids : NULL, value, NULL, NULL, NULL, err);
}

// ---------------------------------------------------------------------------
// LayerNorm

// The affine output a = n * w + b (the next product's input), recomputed.
typedef struct ln_ctx {
    mech_run *r;
    float *a, *dn, *dx, *ds;
    const float *n, *njac, *s, *w, *b;
    const uint8_t *real;
    size_t C, ldx; // dx rows ldx apart
    int acc;       // dx += the gradient (the residual's sum), not =
} ln_ctx;

MECH_EW_CLONES static void affine_task(void *ctx, size_t i0, size_t i1) {
    ln_ctx *c = ctx;
    for (size_t i = i0; i < i1; i++)
        for (size_t k = 0; k < c->C; k++) c->a[i * c->C + k] = c->n[i * c->C + k] * c->w[k] + c->b[k];
}

MECH_EW_CLONES static void scale_w_task(void *ctx, size_t i0, size_t i1) {
    ln_ctx *c = ctx; // dn = da * w, in place
    for (size_t i = i0; i < i1; i++)
        for (size_t k = 0; k < c->C; k++) c->dn[i * c->C + k] *= c->w[k];
}

// gradient at the scale: d/ds of (x - mean) / s = -n / s
static void ds_task(void *ctx, size_t i0, size_t i1) {
    ln_ctx *c = ctx;
    for (size_t i = i0; i < i1; i++) {
        double s = c->real[i] ? mech_vec_dot_f64(c->dn + i * c->C, c->njac + i * c->C, c->C) : 0;
        c->ds[i] = c->real[i] ? (float)(-s / c->s[i]) : 0.0f;
    }
}

// One row of dx = (dn - m) * inv + dsc * nj, or added to dx (acc).
static inline __attribute__((always_inline)) void ln_dx_row(float *dx, const float *dn, const float *nj, double m,
                                                          double inv, double dsc, size_t C, int acc) {
    if (acc)
        for (size_t k = 0; k < C; k++) dx[k] += (float)((dn[k] - m) * inv + dsc * nj[k]);
    else
        for (size_t k = 0; k < C; k++) dx[k] = (float)((dn[k] - m) * inv + dsc * nj[k]);
}

// dx = (dn - mean(dn)) / s + ds * n / C (the scale's own dependence on x)
MECH_EW_CLONES static void dx_task(void *ctx, size_t i0, size_t i1) {
    ln_ctx *c = ctx;
    for (size_t i = i0; i < i1; i++) {
        float *dx = c->dx + i * c->ldx;
        if (!c->real[i]) {
            if (!c->acc) memset(dx, 0, c->C * sizeof *dx);
            continue;
        }
        const float *dn = c->dn + i * c->C, *nj = c->njac + i * c->C;
        double m = mech_vec_dot_f64(dn, NULL, c->C) / (double)c->C;
        double inv = 1.0 / c->s[i], dsc = (double)c->ds[i] / (double)c->C;
        ln_dx_row(dx, dn, nj, m, inv, dsc, c->C, c->acc);
    }
}

// The three passes above in one per row, when no hook sits between them:
// the same operations in the same order, so the same bits.
MECH_EW_CLONES static void ln_fused_task(void *ctx, size_t i0, size_t i1) {
    ln_ctx *c = ctx;
    size_t C = c->C;
    for (size_t i = i0; i < i1; i++) {
        float *dx = c->dx + i * c->ldx, *dn = c->dn + i * C;
        if (!c->real[i]) {
            for (size_t k = 0; k < C; k++) dn[k] *= c->w[k];
            c->ds[i] = 0.0f;
            if (!c->acc) memset(dx, 0, C * sizeof *dx);
            continue;
        }
        const float *nj = c->njac + i * C;
        for (size_t k = 0; k < C; k++) dn[k] *= c->w[k];
        double s = mech_vec_dot_f64(dn, nj, C), m = mech_vec_dot_f64(dn, NULL, C) / (double)C;
        float ds = (float)(-s / c->s[i]);
        c->ds[i] = ds;
        double inv = 1.0 / c->s[i], dsc = (double)ds / (double)C;
        ln_dx_row(dx, dn, nj, m, inv, dsc, C, c->acc);
    }
}

static void ln_affine(mech_run *r, float *a, const float *n, const float *w, const float *b) {
    ln_ctx c = {.r = r, .a = a, .n = n, .w = w, .b = b, .C = (size_t)r->m->cfg.d_model};
    par(r, (size_t)r->B * r->T, 16, affine_task, &c);
}

// Backward through ln(x) * w + b given da (rows, C, overwritten): parameter
// gradients (gw, gb may be NULL), hooks at the normalized output and the
// scale when fired (pn, ps; else their cuts only when cut), dx (rows ldx
// apart; acc: added to dx, the residual's gradient). n: the normalized
// values used downstream, njac: the values the LayerNorm computed (they
// differ where a hook patched n), s: the scale.
static int ln_backward(mech_run *r, float *da, const float *n, const float *njac, const float *s, const float *w,
                       float *gw, float *gb, hook_point *pn, hook_point *ps, int fire_hooks, float *dx, size_t ldx,
                       int acc) {
    size_t rows = (size_t)r->B * r->T, C = (size_t)r->m->cfg.d_model;
    if (gw) colsum2(r, gw, gb, da, n, rows, C, 0);
    ln_ctx c = {.r = r, .dn = da, .n = n, .njac = njac, .s = s, .w = w, .C = C, .ds = r->grad->rowv, .dx = dx,
                .ldx = ldx, .real = r->grad->real, .acc = acc};
    if (!pn->n_patched && !ps->n_patched && !(fire_hooks && (wanted(pn) || wanted(ps)))) {
        par(r, rows, 16, ln_fused_task, &c);
        return 0;
    }
    par(r, rows, 16, scale_w_task, &c);
    if (fire_hooks) {
        if (gfire(pn, da)) return 1;
    } else if (pn->n_patched) {
        for (size_t i = 0; i < rows * C; i++)
            if (pn->patched[i]) da[i] = 0.0f;
    }
    par(r, rows, 16, ds_task, &c);
    if (fire_hooks) {
        if (gfire(ps, c.ds)) return 1;
    } else if (ps->n_patched) {
        for (size_t i = 0; i < rows; i++)
            if (ps->patched[i]) c.ds[i] = 0.0f;
    }
    par(r, rows, 16, dx_task, &c);
    return 0;
}

static const float *njac_of(const hook_point *pn) { return pn->n_patched ? pn->before : pn->view.data; }

// ---------------------------------------------------------------------------
// Element-wise pieces

typedef struct ew_ctx {
    float *out;
    const float *a, *b;
    size_t width;
    int act;
} ew_ctx;

MECH_EW_CLONES static void add_task(void *ctx, size_t i0, size_t i1) {
    ew_ctx *c = ctx;
    for (size_t i = i0 * c->width; i < i1 * c->width; i++) c->out[i] += c->a[i];
}

static void add_into(mech_run *r, float *out, const float *a, size_t rows, size_t width) {
    ew_ctx c = {.out = out, .a = a, .width = width};
    par(r, rows, 16, add_task, &c);
}

// dpre = act'(pre) * dpost, in place in out (= dpost)
MECH_EW_CLONES static void act_back_task(void *ctx, size_t i0, size_t i1) {
    ew_ctx *c = ctx;
    const double k = 0.7978845608028654; // sqrt(2/pi)
    if (c->act == -1) { // a is the derivative itself
        for (size_t i = i0 * c->width; i < i1 * c->width; i++) c->out[i] *= c->a[i];
        return;
    }
    if (c->act == MECH_ACT_GELU_NEW) {
        for (size_t i = i0; i < i1; i++) mech_vec_gelu_new_grad(c->out + i * c->width, c->a + i * c->width, c->width);
        return;
    }
    for (size_t i = i0 * c->width; i < i1 * c->width; i++) {
        double x = c->a[i], d;
        if (c->act == MECH_ACT_RELU) {
            d = x > 0 ? 1.0 : 0.0;
        } else if (c->act == MECH_ACT_GELU_NEW) {
            double u = k * (x + 0.044715 * x * x * x), th = tanh(u);
            d = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * k * (1 + 3 * 0.044715 * x * x);
        } else {
            d = 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) * 0.3989422804014327;
        }
        c->out[i] = (float)(c->out[i] * d);
    }
}

// ---------------------------------------------------------------------------
// Attention

typedef struct attn_bctx {
    mech_run *r;
    int l, phase; // 0: all at once; 1: dP and dV; 2: dS from dP; 3: dQ and dK from dS
    const float *Q, *K, *V, *dZ;
    float *dQ, *dK, *dV; // rows ld apart
    size_t ld;
    const float *Pk;    // (B, NH, T, T) the kept pattern, or NULL
    const float *Ps;    // the packed pattern the fused forward left, or NULL: recompute
    const float *Pjac;  // the pattern the softmax computed (before hooks), when kept
    float *dP, *dS;     // (B, NH, T, T) materialised, phases 1-3
    atomic_int oom;     // a task could not get its scratch
} attn_bctx;

static void block_keys(const mech_run *r, int b, int i0, int i1, int *k0, int *k1) {
    int s, len;
    mech_run_row(r, b, &s, &len);
    int e = s + len;
    *k0 = s;
    *k1 = r->m->cfg.causal ? (i1 < e ? i1 : e) : e;
    if (*k1 < s || i1 <= s || i0 >= e) *k1 = s;
}

static void query_keys(const mech_run *r, int b, int i, int *k0, int *k1) {
    int s, len;
    mech_run_row(r, b, &s, &len);
    int e = s + len;
    *k0 = s;
    *k1 = i < s || i >= e ? s : r->m->cfg.causal ? i + 1 : e;
}

// P[i - i0, t - k0] for the block, as the forward computes it.
static void recompute_p(const attn_bctx *j, int b, int h, int i0, int i1, int k0, int k1, float *P) {
    const mech_config *c = &j->r->m->cfg;
    int T = j->r->T, A = c->n_heads * c->d_head, HS = c->d_head, nk = k1 - k0;
    const float *q = j->Q + ((size_t)b * T + i0) * A + (size_t)h * HS;
    const float *k = j->K + ((size_t)b * T + k0) * A + (size_t)h * HS;
    mech_matmul_nt(NULL, P, nk, q, A, k, A, NULL, i1 - i0, HS, nk);
    mech_vec_div(P, (size_t)(i1 - i0) * nk, (float)sqrt((double)HS));
    for (int i = i0; i < i1; i++) {
        float *row = P + (size_t)(i - i0) * nk;
        int q0, q1;
        query_keys(j->r, b, i, &q0, &q1);
        int n = q1 - q0, off = q0 - k0;
        if (n > 0) mech_vec_softmax(row + off, (size_t)n);
        if (off > 0) memset(row, 0, (size_t)off * sizeof *row);
        if (off + n < nk) memset(row + off + n, 0, (size_t)(nk - off - n) * sizeof *row);
    }
}

// dst (HS, nk; rows ldd apart) += xt (HS, rows) @ a (rows, nk; lda). The
// transposed gradients dV^T and dK^T accumulate this way: the product's N is
// the block's keys (many) rather than HS, and only the small xt is a
// transposed copy, not the (rows, nk) pattern block.
static void acc_t(float *dst, int ldd, const float *xt, const float *a, int lda, int rows, int nk, int HS) {
    mech_matmul_add(NULL, dst, ldd, xt, rows, a, lda, HS, rows, nk);
}

// xt (HS, n) = x (n, HS; ldx) transposed, divided by f.
static void small_t(float *xt, const float *x, int ldx, int n, int HS, float f) {
    mech_transpose(xt, (size_t)n, x, (size_t)ldx, n, HS);
    if (f != 1.0f) mech_vec_div(xt, (size_t)HS * n, f);
}

// dst rows t of the head's slice (rows A apart) = src (HS, T) transposed; the
// rows (256 bytes for GPT-2's heads) are read only by the products after the
// attention: streamed, not fetched into the cache first.
static void put_t(float *dst, int A, const float *src, int T, int HS) {
    mech_transpose_stream(dst, (size_t)A, src, (size_t)T, HS, T);
}

static void attn_back_task(void *ctx, int task, int thread) {
    attn_bctx *j = ctx;
    mech_run *r = j->r;
    const mech_config *c = &r->m->cfg;
    int NH = c->n_heads, HS = c->d_head, A = NH * HS, T = r->T;
    int b = task / NH, h = task % NH;
    float scale = (float)sqrt((double)HS);
    size_t need = (size_t)QB * T * 2 + (size_t)T * HS * 2 + (size_t)QB * HS * 2;
    float *own = NULL, *buf = mech_pool_scratch(r->pool, thread, need * sizeof(float));
    if (!buf) buf = own = mech_malloc_aligned(need * sizeof(float));
    if (!buf) {
        atomic_store(&j->oom, 1);
        return;
    }
    float *P = buf, *dP = buf + (size_t)QB * T;
    float *dVt = dP + (size_t)QB * T, *dKt = dVt + (size_t)T * HS; // (HS, T) this head's dV^T, dK^T
    float *zt = dKt + (size_t)T * HS, *qst = zt + (size_t)QB * HS;   // (HS, QB) dz^T, (q / sqrt(HS))^T
    int want_v = j->phase == 0 || j->phase == 1, want_k = j->phase == 0 || j->phase == 3;
    if (want_v) memset(dVt, 0, (size_t)T * HS * sizeof *dVt);
    if (want_k) memset(dKt, 0, (size_t)T * HS * sizeof *dKt);
    size_t head = ((size_t)b * NH + h) * T * T;
    for (int i0 = 0; i0 < T; i0 += QB) {
        int i1 = i0 + QB < T ? i0 + QB : T, n = i1 - i0, k0, k1;
        block_keys(r, b, i0, i1, &k0, &k1);
        int nk = k1 - k0;
        float *dq = j->dQ + ((size_t)b * T + i0) * j->ld + (size_t)h * HS;
        const float *dz = j->dZ + ((size_t)b * T + i0) * A + (size_t)h * HS;
        const float *q = j->Q + ((size_t)b * T + i0) * A + (size_t)h * HS;
        const float *kk = j->K + ((size_t)b * T + k0) * A + (size_t)h * HS;
        const float *vv = j->V + ((size_t)b * T + k0) * A + (size_t)h * HS;
        if (nk <= 0) {
            if (j->phase == 0 || j->phase == 3)
                for (int i = 0; i < n; i++) memset(dq + (size_t)i * j->ld, 0, (size_t)HS * sizeof *dq);
            continue;
        }
        // the pattern block: P rows ldp apart, column 0 = key k0
        const float *Pb = NULL;
        int ldp = 0;
        if (j->phase != 3) {
            if (j->Pk) {
                Pb = j->Pk + head + (size_t)i0 * T + k0;
                ldp = T;
            } else if (j->Ps) {
                Pb = j->Ps + pattern_block_at(T, c->causal, NH, b, h, i0);
                ldp = nk;
            } else {
                recompute_p(j, b, h, i0, i1, k0, k1, P);
                Pb = P;
                ldp = nk;
            }
        }
        if (j->phase == 0 || j->phase == 1) {
            float *dPb = j->phase == 1 ? j->dP + head + (size_t)i0 * T + k0 : dP;
            int lddp = j->phase == 1 ? T : nk;
            mech_matmul_nt(NULL, dPb, lddp, dz, A, vv, A, NULL, n, HS, nk);
            small_t(zt, dz, A, n, HS, 1.0f);
            acc_t(dVt + k0, T, zt, Pb, ldp, n, nk, HS); // dV^T += dz^T P
            if (j->phase == 1) continue;
        }
        float *dS; // (n, nk) rows ldds apart
        int ldds;
        if (j->phase == 0) {
            dS = dP, ldds = nk; // in place
        } else {
            dS = j->dS + head + (size_t)i0 * T + k0, ldds = T;
        }
        if (j->phase == 0 || j->phase == 2) {
            // softmax backward over the row: dS = Pj (dP - sum Pj dP), Pj the
            // softmax's own output. With a kept pattern, whole rows (a hook may
            // have put weight anywhere); dS = 0 outside.
            for (int i = 0; i < n; i++) {
                if (j->phase == 2 && j->Pk) {
                    const float *pj = (j->Pjac ? j->Pjac : j->Pk) + head + (size_t)(i0 + i) * T;
                    const float *dp = j->dP + head + (size_t)(i0 + i) * T;
                    mech_vec_softmax_grad(j->dS + head + (size_t)(i0 + i) * T, pj, dp, (size_t)T);
                    continue;
                }
                const float *pj = Pb + (size_t)i * ldp;
                const float *dp = j->phase == 0 ? dP + (size_t)i * nk : j->dP + head + (size_t)(i0 + i) * T + k0;
                mech_vec_softmax_grad(dS + (size_t)i * ldds, pj, dp, (size_t)nk);
            }
            if (j->phase == 2) continue;
        }
        // dQ = dS K / sqrt(HS); dK += dS^T Q / sqrt(HS)
        mech_matmul(NULL, dq, (int)j->ld, dS, ldds, kk, A, NULL, n, nk, HS);
        for (int i = 0; i < n; i++) mech_vec_div(dq + (size_t)i * j->ld, (size_t)HS, scale);
        // dK^T += (q / sqrt(HS))^T dS: scaling q's n rows is cheaper than dK's
        small_t(qst, q, A, n, HS, scale);
        acc_t(dKt + k0, T, qst, dS, ldds, n, nk, HS);
    }
    // this (row, head)'s slices of dV and dK, every position (0 where no query read it)
    if (want_v) put_t(j->dV + (size_t)b * T * j->ld + (size_t)h * HS, (int)j->ld, dVt, T, HS);
    if (want_k) put_t(j->dK + (size_t)b * T * j->ld + (size_t)h * HS, (int)j->ld, dKt, T, HS);
    mech_free_aligned(own);
}

// dQ, dK, dV from dZ: in one pass per (row, head), or, when the pattern or
// scores have hooks or were kept, in three with dP and dS materialised in
// between for the hooks (and the cuts) at those points.
static int attention_backward(mech_run *r, int l, float *dZ, float *dQ, float *dK, float *dV, size_t ld,
                              mech_err *err) {
    const mech_config *c = &r->m->cfg;
    struct grad_state *s = r->grad;
    int NH = c->n_heads, T = r->T;
    size_t TT = (size_t)r->B * NH * T * T;
    hook_point *pp = pt(r, l, HK_PATTERN), *ps = pt(r, l, HK_SCORES);
    attn_bctx j = {.r = r, .l = l, .Q = pt(r, l, HK_Q)->view.data, .K = pt(r, l, HK_K)->view.data,
                   .V = pt(r, l, HK_V)->view.data, .dZ = dZ, .dQ = dQ, .dK = dK, .dV = dV, .ld = ld};
    if (s->pat_kept[l]) {
        j.Pk = pp->view.data;
        j.Pjac = pp->n_patched ? pp->before : NULL;
    } else if (r->pat_store) {
        j.Ps = r->pat_store[l];
    }
    int tasks = r->B * NH;
    atomic_init(&j.oom, 0);
    int mat = s->pat_kept[l] || wanted(pp) || wanted(ps);
    if (!mat) {
        mech_pool_run(r->pool, tasks, attn_back_task, &j);
        goto done;
    }
    if ((!s->dP && !(s->dP = zalloc(TT))) || (!s->dS && !(s->dS = zalloc(TT)))) {
        mech_err_set(err, MECH_ERR_NOMEM, "out of memory for attention gradients (B=%d, T=%d)", r->B, T);
        return -1;
    }
    j.dP = s->dP, j.dS = s->dS;
    memset(s->dP, 0, TT * sizeof(float));
    memset(s->dS, 0, TT * sizeof(float));
    j.phase = 1;
    mech_pool_run(r->pool, tasks, attn_back_task, &j);
    if (gfire(pp, s->dP)) return 1;
    j.phase = 2;
    mech_pool_run(r->pool, tasks, attn_back_task, &j);
    if (gfire(ps, s->dS)) return 1;
    j.phase = 3;
    mech_pool_run(r->pool, tasks, attn_back_task, &j);
done:
    if (atomic_load(&j.oom)) {
        mech_err_set(err, MECH_ERR_NOMEM, "out of memory for attention gradients in block %d", l);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Blocks

// The gradient of a branch that leaves the residual at p (attn_out,
// mlp_out): g itself when nothing at p can change it, else a copy.
static float *branch(mech_run *r, hook_point *p, float *g, float *copy, int *stop) {
    if (!wanted(p) && !p->n_patched) return g;
    size_t n = mech_tensor_numel(&p->view);
    memcpy(copy, g, n * sizeof(float));
    *stop = gfire(p, copy);
    return copy;
}

static mech_status alloc_lazy(float **p, size_t n, mech_err *err) {
    if (*p) return MECH_OK;
    if (!(*p = zalloc(n))) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the backward pass");
    return MECH_OK;
}

// Row copies: dst row i (ldd apart; 0: C) = src row i (lds apart), C floats.
typedef struct gather_ctx {
    float *dst;
    const float *src;
    size_t C, lds, ldd;
} gather_ctx;

static void gather_task(void *ctx, size_t i0, size_t i1) {
    gather_ctx *g = ctx;
    size_t ldd = g->ldd ? g->ldd : g->C;
    for (size_t i = i0; i < i1; i++) memcpy(g->dst + i * ldd, g->src + i * g->lds, g->C * sizeof(float));
}

// G row i += each head's row (rows, NH, C), heads in order.
typedef struct heads_ctx {
    float *G;
    const float *d;
    int NH;
    size_t C;
} heads_ctx;

MECH_EW_CLONES static void heads_add_task(void *ctx, size_t i0, size_t i1) {
    heads_ctx *c = ctx;
    for (size_t i = i0; i < i1; i++)
        for (int h = 0; h < c->NH; h++) {
            const float *d = c->d + (i * (size_t)c->NH + (size_t)h) * c->C;
            float *y = c->G + i * c->C;
            for (size_t k = 0; k < c->C; k++) y[k] += d[k];
        }
}

// q, k, v from per-head inputs: each head's own copy of the residual (and
// LayerNorm, when the forward ran that way), so the gradient at each head's
// input (hook_q_input & co.) is its own.
static int qkv_split_backward(mech_run *r, int l, float *G, mech_err *err) {
    const mech_config *c = &r->m->cfg;
    struct grad_state *s = r->grad;
    const mech_layer_weights *w = &r->m->layers[l];
    mech_layer_weights *gw = s->grads ? &s->grads->layers[l] : NULL;
    size_t rows = (size_t)r->B * r->T, C = (size_t)c->d_model;
    int NH = c->n_heads, HS = c->d_head, A = NH * HS, ln = c->norm == MECH_NORM_LAYERNORM;
    if (alloc_lazy(&s->dres, rows * NH * C, err) || alloc_lazy(&s->split_x, rows * C * 2, err) ||
        alloc_lazy(&s->split_s, rows, err))
        return -1;
    hook_point *pn = pt(r, l, HK_LN1_NORM), *ps = pt(r, l, HK_LN1_SCALE);
    float *gln_w = gw && ln ? gp(gw->ln1_w) : NULL, *gln_b = gw && ln ? gp(gw->ln1_b) : NULL;
    if (gln_w) {
        memset(gln_w, 0, C * sizeof(float));
        memset(gln_b, 0, C * sizeof(float));
    }
    float *X = s->split_x, *Nh = s->split_x + rows * C, *ga = s->ga;
    const float *dW[3] = {s->dq, s->dk, s->dv};
    if (!s->split[l]) {
        // Every head read the same input (the forward did not split): its
        // LayerNorm output once, and each of W_q, W_k, W_v's gradients as one
        // product rather than one per head.
        const float *in = pt(r, l, HK_RESID_PRE)->view.data;
        if (ln) {
            ln_affine(r, s->act, pn->view.data, w->ln1_w, w->ln1_b);
            in = s->act;
        }
        if (gw) {
            for (int which = 0; which < 3; which++) {
                size_t col = (size_t)which * A;
                matmul_tn(r, gp(gw->qkv_w) + col, 3 * A, in, (int)C, dW[which], A, gp(gw->qkv_b) + col, (int)rows,
                          (int)C, A);
            }
        }
    }
    for (int which = 0; which < 3; which++) {
        hook_point *pin = pt(r, l, HK_Q_INPUT + which);
        const float *Xin = s->split[l] ? pin->view.data : NULL; // (rows, NH, C)
        for (int h = 0; h < NH; h++) {
            const float *n = NULL, *njac = NULL, *sc = NULL, *in;
            if (!Xin) {
                if (ln) n = pn->view.data, njac = njac_of(pn), sc = ps->view.data;
            } else { // this head's own input
                gather_ctx g = {.dst = X, .src = Xin + (size_t)h * C, .C = C, .lds = (size_t)NH * C};
                par(r, rows, 16, gather_task, &g);
                in = X;
                if (ln) {
                    for (size_t i = 0; i < rows; i++) mech_vec_layernorm(Nh + i * C, s->split_s + i, X + i * C, C, c->ln_eps);
                    n = njac = Nh, sc = s->split_s;
                    ln_affine(r, s->act, n, w->ln1_w, w->ln1_b);
                    in = s->act;
                }
                if (gw) {
                    const float *dy = dW[which] + (size_t)h * HS;
                    size_t col = (size_t)which * A + (size_t)h * HS;
                    matmul_tn(r, gp(gw->qkv_w) + col, 3 * A, in, (int)C, dy, A, gp(gw->qkv_b) + col, (int)rows,
                              (int)C, HS);
                }
            }
            const float *dy = dW[which] + (size_t)h * HS;
            size_t col = (size_t)which * A + (size_t)h * HS;
            // ga = dy @ W_slice^T
            mech_matmul_nt(r->pool, ga, (int)C, dy, A, w->qkv_w + col, 3 * A, NULL, (int)rows, HS, (int)C);
            float *dx = s->dres + (size_t)h * C;
            if (ln) {
                if (gln_w) colsum2(r, gln_w, gln_b, ga, n, rows, C, 1);
                // hooks on ln1 fire only when the forward ran them (not split)
                if (ln_backward(r, ga, n, njac, sc, w->ln1_w, NULL, NULL, pn, ps, 0, dx, (size_t)NH * C, 0)) return 1;
            } else {
                gather_ctx g = {.dst = dx, .src = ga, .C = C, .lds = C, .ldd = (size_t)NH * C};
                par(r, rows, 16, gather_task, &g);
            }
        }
        if (gfire(pin, s->dres)) return 1;
        heads_ctx hc = {.G = G, .d = s->dres, .NH = NH, .C = C};
        par(r, rows, 16, heads_add_task, &hc);
    }
    return 0;
}

// Block l backward; G holds the gradient at its resid_post and leaves with
// the gradient at its resid_pre. 1 when a hook stopped, -1 on error.
static int block_backward(mech_run *r, int l, float *G, mech_err *err) {
    const mech_config *c = &r->m->cfg;
    struct grad_state *s = r->grad;
    const mech_layer_weights *w = &r->m->layers[l];
    mech_layer_weights *gw = s->grads ? &s->grads->layers[l] : NULL;
    size_t rows = (size_t)r->B * r->T, C = (size_t)c->d_model;
    int NH = c->n_heads, HS = c->d_head, A = NH * HS, M = c->d_mlp, ln = c->norm == MECH_NORM_LAYERNORM, stop = 0;

    if (gfire(pt(r, l, HK_RESID_POST), G)) return 1;
    if (!c->attn_only) {
        float *dout = branch(r, pt(r, l, HK_MLP_OUT), G, s->gb, &stop);
        if (stop) return 1;
        const float *post = pt(r, l, HK_MLP_POST)->view.data, *pre = pt(r, l, HK_MLP_PRE)->view.data;
        if (gw) {
            matmul_tn(r, gp(gw->proj_w), (int)C, post, M, dout, (int)C, gp(gw->proj_b), (int)rows, M, (int)C);
        }
        mech_matmul_nt(r->pool, s->dpost, M, dout, (int)C, w->proj_w, (int)C, NULL, (int)rows, (int)C, M);
        if (gfire(pt(r, l, HK_MLP_POST), s->dpost)) return 1;
        ew_ctx e = {.out = s->dpost, .a = pre, .width = (size_t)M, .act = c->act};
        if (r->act_grad && r->act_grad[l]) e.a = r->act_grad[l], e.act = -1; // dpost * the forward's derivative
        par(r, rows, 16, act_back_task, &e);
        float *dpre = s->dpost;
        if (gfire(pt(r, l, HK_MLP_PRE), dpre)) return 1;
        hook_point *pmi = pt(r, l, HK_MLP_IN), *pn = pt(r, l, HK_LN2_NORM), *ps = pt(r, l, HK_LN2_SCALE);
        const float *in;
        if (ln) {
            ln_affine(r, s->act, pn->view.data, w->ln2_w, w->ln2_b);
            in = s->act;
        } else {
            in = pt(r, l, s->mlp_in[l] ? HK_MLP_IN : HK_RESID_MID)->view.data;
        }
        if (gw) {
            matmul_tn(r, gp(gw->fc_w), M, in, (int)C, dpre, M, gp(gw->fc_b), (int)rows, (int)C, M);
        }
        mech_matmul_nt(r->pool, s->ga, (int)C, dpre, M, w->fc_w, M, NULL, (int)rows, M, (int)C);
        float *dmi = s->ga;
        // nothing reads or cuts hook_mlp_in's gradient alone: LayerNorm's
        // lands in the residual's sum directly
        int into_g = ln && !wanted(pmi) && !pmi->n_patched;
        if (ln) {
            if (ln_backward(r, s->ga, pn->view.data, njac_of(pn), ps->view.data, w->ln2_w, gw ? gp(gw->ln2_w) : NULL,
                            gw ? gp(gw->ln2_b) : NULL, pn, ps, 1, into_g ? G : s->gb, C, into_g))
                return 1;
            dmi = s->gb;
        }
        if (!into_g) {
            if (gfire(pmi, dmi)) return 1;
            add_into(r, G, dmi, rows, C);
        }
        if (gfire(pt(r, l, HK_RESID_MID), G)) return 1;
    }
    // attention
    float *dao = branch(r, pt(r, l, HK_ATTN_OUT), G, s->gb, &stop);
    if (stop) return 1;
    hook_point *pres = pt(r, l, HK_RESULT);
    const float *Z = pt(r, l, HK_Z)->view.data;
    if (wanted(pres) || pres->n_patched) {
        if (gw) colsum(r, gp(gw->o_b), dao, NULL, rows, C, C, 0);
        if (alloc_lazy(&s->dres, rows * NH * C, err)) return -1;
        for (int h = 0; h < NH; h++) {
            gather_ctx gc = {.dst = s->dres + (size_t)h * C, .src = dao, .C = C, .lds = C, .ldd = (size_t)NH * C};
            par(r, rows, 16, gather_task, &gc);
        }
        if (gfire(pres, s->dres)) return 1;
        for (int h = 0; h < NH; h++) {
            const float *dy = s->dres + (size_t)h * C;
            if (gw) matmul_tn(r, gp(gw->o_w) + (size_t)h * HS * C, (int)C, Z + (size_t)h * HS, A, dy, NH * (int)C,
                              NULL, (int)rows, HS, (int)C);
            mech_matmul_nt(r->pool, s->dz + (size_t)h * HS, A, dy, NH * (int)C, w->o_w + (size_t)h * HS * C, (int)C,
                           NULL, (int)rows, (int)C, HS);
        }
    } else {
        if (gw) matmul_tn(r, gp(gw->o_w), (int)C, Z, A, dao, (int)C, gp(gw->o_b), (int)rows, A, (int)C);
        mech_matmul_nt(r->pool, s->dz, A, dao, (int)C, w->o_w, (int)C, NULL, (int)rows, (int)C, A);
    }
    if (gfire(pt(r, l, HK_Z), s->dz)) return 1;
    int split = s->split[l];
    for (int k = HK_Q_INPUT; k <= HK_V_INPUT; k++) split |= wanted(pt(r, l, k));
    // One product takes q, k and v's gradients side by side: the attention
    // writes them there, unless a hook reads or cuts one of them alone.
    int apart = split;
    for (int k = HK_Q; k <= HK_V; k++) apart |= wanted(pt(r, l, k)) || pt(r, l, k)->n_patched;
    int a = apart ? attention_backward(r, l, s->dz, s->dq, s->dk, s->dv, (size_t)A, err)
                  : attention_backward(r, l, s->dz, s->dqkv, s->dqkv + A, s->dqkv + 2 * (size_t)A, (size_t)3 * A, err);
    if (a) return a;
    if (apart && (gfire(pt(r, l, HK_Q), s->dq) || gfire(pt(r, l, HK_K), s->dk) || gfire(pt(r, l, HK_V), s->dv)))
        return 1;
    if (split) {
        int q = qkv_split_backward(r, l, G, err);
        if (q) return q;
    } else {
        if (apart) {
            const float *part[3] = {s->dq, s->dk, s->dv};
            for (int k = 0; k < 3; k++) {
                gather_ctx gc = {.dst = s->dqkv + (size_t)k * A, .src = part[k], .C = (size_t)A, .lds = (size_t)A,
                                 .ldd = (size_t)3 * A};
                par(r, rows, 16, gather_task, &gc);
            }
        }
        hook_point *pn = pt(r, l, HK_LN1_NORM), *ps = pt(r, l, HK_LN1_SCALE);
        const float *in;
        if (ln) {
            ln_affine(r, s->act, pn->view.data, w->ln1_w, w->ln1_b);
            in = s->act;
        } else {
            in = pt(r, l, HK_RESID_PRE)->view.data;
        }
        if (gw) {
            matmul_tn(r, gp(gw->qkv_w), 3 * A, in, (int)C, s->dqkv, 3 * A, gp(gw->qkv_b), (int)rows, (int)C, 3 * A);
        }
        mech_matmul_nt(r->pool, s->ga, (int)C, s->dqkv, 3 * A, w->qkv_w, 3 * A, NULL, (int)rows, 3 * A, (int)C);
        if (ln) {
            if (ln_backward(r, s->ga, pn->view.data, njac_of(pn), ps->view.data, w->ln1_w, gw ? gp(gw->ln1_w) : NULL,
                            gw ? gp(gw->ln1_b) : NULL, pn, ps, 1, G, C, 1))
                return 1;
        } else {
            add_into(r, G, s->ga, rows, C);
        }
    }
    if (gfire(pt(r, l, HK_RESID_PRE), G)) return 1;
    return 0;
}

// ---------------------------------------------------------------------------
// The backward pass

// The lowest block the backward must run (L: none), and whether the
// embeddings' points need their gradient. Parameter gradients need every
// block; activation gradients only down to the lowest point that has a
// gradient cache or a backward hook (nothing below reads the result).
static int lowest_block(const mech_run *r, int *embed) {
    const struct grad_state *s = r->grad;
    int L = r->m->cfg.n_layers;
    *embed = s->grads != NULL;
    if (s->grads) return s->start;
    for (int i = 0; i < r->n_pts; i++) {
        const hook_point *p = &r->pts[i];
        if (!wanted(p)) continue;
        if (p->kind == HK_EMBED || p->kind == HK_POS_EMBED) {
            *embed = 1;
            return s->start;
        }
    }
    for (int l = s->start; l < L; l++)
        for (int k = HK_RESID_PRE; k <= HK_RESID_POST; k++)
            if (wanted(pt((mech_run *)r, l, k))) return l;
    return L;
}

static mech_status alloc_work(mech_run *r, mech_err *err) {
    const mech_config *c = &r->m->cfg;
    struct grad_state *s = r->grad;
    size_t rows = (size_t)r->B * r->T, C = (size_t)c->d_model, A = (size_t)c->n_heads * c->d_head,
           M = c->d_mlp ? (size_t)c->d_mlp : 1, V = (size_t)c->d_vocab;
    // the metric's terms read at most the logits rows the forward computed
    size_t lrows = r->lg_n ? (size_t)r->B * (size_t)r->lg_n : rows;
    mech_status rc;
    if ((rc = alloc_lazy(&s->g, rows * C, err)) || (rc = alloc_lazy(&s->ga, rows * C, err)) ||
        (rc = alloc_lazy(&s->gb, rows * C, err)) || (rc = alloc_lazy(&s->act, rows * C, err)) ||
        (rc = alloc_lazy(&s->dq, rows * A, err)) || (rc = alloc_lazy(&s->dk, rows * A, err)) ||
        (rc = alloc_lazy(&s->dv, rows * A, err)) || (rc = alloc_lazy(&s->dz, rows * A, err)) ||
        (rc = alloc_lazy(&s->dqkv, rows * A * 3, err)) || (rc = alloc_lazy(&s->dpost, rows * M, err)) ||
        (rc = alloc_lazy(&s->rowv, rows, err)))
        return rc;
    if (s->dlogits_n < lrows * V) {
        mech_free_aligned(s->dlogits);
        s->dlogits = NULL;
        if ((rc = alloc_lazy(&s->dlogits, lrows * V, err))) return rc;
        s->dlogits_n = lrows * V;
    }
    if (!s->nz && !(s->nz = mech_malloc(rows * sizeof *s->nz)))
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the backward pass");
    if (s->flags == MECH_GRAD_PARAMS && !s->grads) {
        if ((rc = mech_model_zeros(c, &s->grads, err))) return rc;
        memset(s->grads->owned, 0, s->grads->owned_floats * sizeof(float));
    }
    return MECH_OK;
}

mech_status mech_run_backward(mech_run *r, const mech_metric *mt, double *value, mech_err *err) {
    struct grad_state *s = r->grad;
    if (!s || !s->flags) return mech_err_set(err, MECH_ERR_ARG, "backward: grad mode is off (mech_run_enable_grad before the forward)");
    if (!s->ready)
        return mech_err_set(err, MECH_ERR_ARG, "backward: the last forward did not run in grad mode to the logits "
                                               "(or caches changed since)");
    mech_status rc = check_metric(r, mt, err);
    if (rc) return rc;
    if ((rc = alloc_work(r, err))) return rc;
    const mech_config *c = &r->m->cfg;
    const mech_model *m = r->m;
    mech_model *g = s->grads;
    size_t rows = (size_t)r->B * r->T, C = (size_t)c->d_model;
    int V = c->d_vocab, L = c->n_layers, ln = c->norm == MECH_NORM_LAYERNORM, n_nz = 0;
    double val;
    if ((rc = metric_run(r, mt, s->ids, &val, s->dlogits, s->nz, &n_nz, err))) return rc;
    if (value) *value = val;
    int embed, lo = lowest_block(r, &embed);

    // unembedding: logits = x_f @ U^T + b, for the rows the metric reads
    hook_point *pn = pt(r, -1, HK_LNF_NORM), *ps = pt(r, -1, HK_LNF_SCALE);
    const float *xf;
    if (ln) {
        ln_affine(r, s->act, pn->view.data, m->lnf_w, m->lnf_b);
        xf = s->act;
    } else {
        xf = r->resid_end;
    }
    float *xc = s->ga; // (n_nz, C) the rows of x_f
    for (int k = 0; k < n_nz; k++) memcpy(xc + (size_t)k * C, xf + (size_t)s->nz[k] * C, C * sizeof(float));
    if (g) {
        float *gu = gp(c->tied_unembed ? g->wte : g->unembed);
        // dU (V, C) = dlogits^T x_c
        matmul_tn(r, gu, (int)C, s->dlogits, V, xc, (int)C, NULL, n_nz, V, (int)C);
        if (c->unembed_bias) colsum(r, gp(g->unembed_b), s->dlogits, NULL, (size_t)n_nz, (size_t)V, (size_t)V, 0);
    }
    // activation gradients only, and none wanted: the metric's value is all
    if (!g && lo == L && !wanted(pn) && !wanted(ps)) return MECH_OK;
    float *dxc = s->gb;
    mech_matmul(r->pool, dxc, (int)C, s->dlogits, V, m->unembed, (int)C, NULL, n_nz, V, (int)C);
    float *G = s->g;
    memset(s->ga, 0, rows * C * sizeof(float));
    for (int k = 0; k < n_nz; k++) memcpy(s->ga + (size_t)s->nz[k] * C, dxc + (size_t)k * C, C * sizeof(float));
    if (ln) {
        if (ln_backward(r, s->ga, pn->view.data, njac_of(pn), ps->view.data, m->lnf_w, g ? gp(g->lnf_w) : NULL,
                        g ? gp(g->lnf_b) : NULL, pn, ps, 1, G, C, 0))
            return mech_err_set(err, MECH_ERR_CANCELLED, "a backward hook stopped the run at ln_final");
    } else {
        memcpy(G, s->ga, rows * C * sizeof(float));
    }
    for (int l = L - 1; l >= lo; l--) {
        int b = block_backward(r, l, G, err);
        if (b < 0) return err ? err->code : MECH_ERR_NOMEM;
        if (b) return mech_err_set(err, MECH_ERR_CANCELLED, "a backward hook stopped the run in block %d", l);
    }
    if (g) // blocks the forward did not run
        for (int l = 0; l < s->start; l++) {
            mech_layer_weights *w = &g->layers[l];
            const float *all[] = {w->ln1_w, w->ln1_b, w->qkv_w, w->qkv_b, w->o_w, w->o_b,
                                  w->ln2_w, w->ln2_b, w->fc_w, w->fc_b, w->proj_w, w->proj_b};
            int64_t A = (int64_t)c->n_heads * c->d_head, Mm = c->d_mlp;
            size_t n[] = {C, C, C * 3 * A, 3 * A, A * C, C, C, C, C * Mm, Mm, Mm * C, C};
            for (int k = 0; k < 12; k++)
                if (all[k]) memset(gp(all[k]), 0, n[k] * sizeof(float));
        }
    // embeddings
    if (s->start == 0 && embed) {
        hook_point *pe = pt(r, -1, HK_EMBED), *pp = pt(r, -1, HK_POS_EMBED);
        float *de = G, *dp = G;
        if (wanted(pe) || pe->n_patched) {
            memcpy(s->ga, G, rows * C * sizeof(float));
            de = s->ga;
        }
        if (wanted(pp) || pp->n_patched) {
            memcpy(s->gb, G, rows * C * sizeof(float));
            dp = s->gb;
        }
        if (gfire(pe, de) || gfire(pp, dp))
            return mech_err_set(err, MECH_ERR_CANCELLED, "a backward hook stopped the run at the embedding");
        if (g) {
            if (!c->tied_unembed) memset(gp(g->wte), 0, (size_t)V * C * sizeof(float));
            memset(gp(g->wpe), 0, (size_t)c->n_ctx * C * sizeof(float));
            for (int b = 0; b < r->B; b++) {
                int st, len;
                mech_run_row(r, b, &st, &len);
                for (int t = 0; t < r->T; t++) {
                    size_t i = (size_t)b * r->T + t;
                    float *we = gp(g->wte) + (size_t)s->ids[i] * C;
                    for (size_t k = 0; k < C; k++) we[k] += de[i * C + k];
                    if (t < st || t >= st + len) continue; // padding: a positional embedding of 0, a constant
                    float *wp = gp(g->wpe) + (size_t)(t - st) * C;
                    for (size_t k = 0; k < C; k++) wp[k] += dp[i * C + k];
                }
            }
        }
    } else if (g) {
        if (!c->tied_unembed) memset(gp(g->wte), 0, (size_t)V * C * sizeof(float));
        memset(gp(g->wpe), 0, (size_t)c->n_ctx * C * sizeof(float));
    }
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// LayerNorm backward outside a run: the kernels above, one row at a time.

void mech_layernorm_backward(float *dx, float *dy, const float *n, const float *s, const float *w, size_t rows,
                             size_t C) {
    static const uint8_t real = 1;
    for (size_t i = 0; i < rows; i++) {
        float ds;
        ln_ctx c = {.dn = dy + i * C, .n = n + i * C, .njac = n + i * C, .s = s + i, .w = w, .C = C, .ds = &ds,
                    .dx = dx + i * C, .ldx = C, .real = &real};
        if (w) scale_w_task(&c, 0, 1);
        ds_task(&c, 0, 1);
        dx_task(&c, 0, 1);
    }
}
