/*
** interp/patch.c: activation patching sweeps and path patching (see
** interp/interp.h and docs/patching.md), after TransformerLens's patching.py.
**
** Fast mode: the clean and corrupted prompts run once (B = 1) with the
** caches the sweeps need. A patch at block l starts the forward at block l
** from the cached corrupted resid_pre (mech_run_opts.start_layer), so earlier
** blocks are never recomputed; several patches at one layer run as the rows
** of one batch, row b patching item b. The run is stopped by a hook at the
** last block's resid_post, which copies the metric position's row out, and
** the final LayerNorm and unembedding are applied to that one row per patch
** here (the core would unembed every position).
** Naive mode: one full forward from the tokens per patch, B = 1, with the
** patch hook and the core's logits. The two share only the patch hook.
**
** Invariant: a cell's value depends only on its own patch: rows of a batch
** never interact (every op of the forward pass is per row or per sequence).
*/
#include "interp/interp.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

struct mech_patch {
    const mech_model *m;
    mech_patch_opts o;
    int T, pos;
    int32_t *clean_ids, *corr_ids; // (T)
    mech_run *clean, *corr;        // B = 1, with caches
    unsigned cached;               // bit per cache group already on both runs
    float *base_clean, *base_corr; // (V) logits at pos: core's (naive) or this file's head (fast)
    double m_clean, m_corr;
    mech_pool *pool;               // fast mode: for the unembedding of captured rows
};

enum { CG_RESID, CG_MID, CG_ATTN_OUT, CG_MLP_OUT, CG_Z, CG_Q, CG_K, CG_V, CG_PATTERN, CG_RESULT, CG_COUNT_ };

static const char *const cache_glob[CG_COUNT_] = {
    "blocks.*.hook_resid_pre", "blocks.*.hook_resid_mid", "blocks.*.hook_attn_out", "blocks.*.hook_mlp_out",
    "blocks.*.attn.hook_z",    "blocks.*.attn.hook_q",    "blocks.*.attn.hook_k",   "blocks.*.attn.hook_v",
    "blocks.*.attn.hook_pattern", "blocks.*.attn.hook_result",
};

static const char *const site_names[MECH_PATCH_SITE_COUNT_] = {
    "resid_pre", "resid_mid", "attn_out", "mlp_out", "head_out", "head_out_by_pos",
    "head_q",    "head_k",    "head_v",   "head_pattern",
};
static const char *const metric_names[MECH_PATCH_METRIC_COUNT_] = {"logit_diff", "logprob", "prob", "kl"};

const char *mech_patch_site_name(mech_patch_site s) {
    return (unsigned)s < MECH_PATCH_SITE_COUNT_ ? site_names[s] : "?";
}
const char *mech_patch_metric_name(mech_patch_metric m) {
    return (unsigned)m < MECH_PATCH_METRIC_COUNT_ ? metric_names[m] : "?";
}

// ---------------------------------------------------------------------------
// Metrics

double mech_patch_metric_eval(mech_patch_metric metric, const float *logits, const float *clean_logits, int V,
                              int32_t answer, int32_t wrong) {
    if (metric == MECH_PATCH_LOGIT_DIFF) return (double)logits[answer] - (double)logits[wrong];
    double mx = -INFINITY, s = 0;
    for (int v = 0; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
    for (int v = 0; v < V; v++) s += exp((double)logits[v] - mx);
    double lse = mx + log(s);
    if (metric == MECH_PATCH_LOGPROB) return (double)logits[answer] - lse;
    if (metric == MECH_PATCH_PROB) return exp((double)logits[answer] - lse);
    // KL(clean || run): sum_v p_c (log p_c - log p_r)
    double cm = -INFINITY, cs = 0;
    for (int v = 0; v < V; v++) cm = clean_logits[v] > cm ? clean_logits[v] : cm;
    for (int v = 0; v < V; v++) cs += exp((double)clean_logits[v] - cm);
    double clse = cm + log(cs), kl = 0;
    for (int v = 0; v < V; v++) {
        double lc = (double)clean_logits[v] - clse, lr = (double)logits[v] - lse;
        double pc = exp(lc);
        if (pc > 0) kl += pc * (lc - lr);
    }
    return kl;
}

double mech_patch_normalise(double metric, double clean, double corrupted) {
    double d = clean - corrupted;
    return d == 0 ? NAN : (metric - corrupted) / d;
}

// Final LayerNorm and unembedding of n rows x (n, C) into logits (n, V).
static void head_rows(const mech_patch *p, const float *x, int n, float *logits, float *tmp) {
    const mech_model *m = p->m;
    const mech_config *c = &m->cfg;
    size_t C = (size_t)c->d_model;
    const float *in = x;
    if (c->norm == MECH_NORM_LAYERNORM) {
        for (int i = 0; i < n; i++) {
            float *y = tmp + (size_t)i * C, scale;
            mech_vec_layernorm(y, &scale, x + (size_t)i * C, C, c->ln_eps);
            for (size_t k = 0; k < C; k++) y[k] = y[k] * m->lnf_w[k] + m->lnf_b[k];
        }
        in = tmp;
    }
    mech_matmul_nt(p->pool, logits, c->d_vocab, in, (int)C, m->unembed, (int)C, m->unembed_b, n, (int)C, c->d_vocab);
}

static double metric_of(const mech_patch *p, const float *logits) {
    return mech_patch_metric_eval(p->o.metric, logits, p->base_clean, p->m->cfg.d_vocab, p->o.answer, p->o.wrong);
}

// ---------------------------------------------------------------------------
// Clean and corrupted runs

static mech_status run_both(mech_patch *p, mech_err *err) {
    mech_status rc = mech_run_forward(p->clean, p->clean_ids, err);
    if (!rc) rc = mech_run_forward(p->corr, p->corr_ids, err);
    return rc;
}

// Makes sure both runs hold the cache group g (re-running them when added).
static mech_status ensure_cache(mech_patch *p, int g, mech_err *err) {
    if (p->cached & (1u << g)) return MECH_OK;
    mech_status rc = mech_run_cache(p->clean, cache_glob[g], err);
    if (!rc) rc = mech_run_cache(p->corr, cache_glob[g], err);
    if (!rc) rc = run_both(p, err);
    if (!rc) p->cached |= 1u << g;
    return rc;
}

static const float *cached(const mech_run *r, int layer, const char *suffix) {
    char name[96];
    snprintf(name, sizeof name, "blocks.%d.%s", layer, suffix);
    const mech_tensor *t = mech_run_get(r, name);
    return t ? t->data : NULL;
}

mech_status mech_patch_new(const mech_model *m, const int32_t *clean, int n_clean, const int32_t *corrupt,
                           int n_corrupt, const mech_patch_opts *opts, mech_patch **out, mech_err *err) {
    *out = NULL;
    const mech_config *c = &m->cfg;
    if (n_clean != n_corrupt)
        return mech_err_set(err, MECH_ERR_ARG,
                            "clean prompt has %d tokens and corrupted prompt %d: patching needs equal lengths",
                            n_clean, n_corrupt);
    if (n_clean < 1) return mech_err_set(err, MECH_ERR_ARG, "empty prompts: patching needs at least one token");
    if (n_clean > c->n_ctx)
        return mech_err_set(err, MECH_ERR_RANGE, "prompts of %d tokens exceed the model's context of %d", n_clean,
                            c->n_ctx);
    if ((unsigned)opts->metric >= MECH_PATCH_METRIC_COUNT_)
        return mech_err_set(err, MECH_ERR_ARG, "unknown patching metric %d", (int)opts->metric);
    if (opts->metric != MECH_PATCH_KL && (opts->answer < 0 || opts->answer >= c->d_vocab))
        return mech_err_set(err, MECH_ERR_RANGE, "answer token %d is outside the vocabulary of %d tokens",
                            (int)opts->answer, c->d_vocab);
    if (opts->metric == MECH_PATCH_LOGIT_DIFF && (opts->wrong < 0 || opts->wrong >= c->d_vocab))
        return mech_err_set(err, MECH_ERR_RANGE, "wrong-answer token %d is outside the vocabulary of %d tokens",
                            (int)opts->wrong, c->d_vocab);
    if (opts->pos >= n_clean)
        return mech_err_set(err, MECH_ERR_RANGE, "metric position %d is past the prompts' %d tokens", opts->pos,
                            n_clean);
    mech_status rc = MECH_OK;
    mech_patch *p = mech_calloc(1, sizeof *p);
    if (!p) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    p->m = m;
    p->o = *opts;
    p->T = n_clean;
    p->pos = opts->pos < 0 ? n_clean - 1 : opts->pos;
    size_t V = (size_t)c->d_vocab, C = (size_t)c->d_model;
    p->clean_ids = mech_malloc((size_t)p->T * sizeof(int32_t));
    p->corr_ids = mech_malloc((size_t)p->T * sizeof(int32_t));
    p->base_clean = mech_malloc(V * sizeof(float));
    p->base_corr = mech_malloc(V * sizeof(float));
    p->pool = opts->naive ? NULL : mech_pool_new(0); // the naive mode uses the core's logits
    if (!p->clean_ids || !p->corr_ids || !p->base_clean || !p->base_corr || (!opts->naive && !p->pool)) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(p->clean_ids, clean, (size_t)p->T * sizeof(int32_t));
    memcpy(p->corr_ids, corrupt, (size_t)p->T * sizeof(int32_t));
    char last[64];
    snprintf(last, sizeof last, "blocks.%d.hook_resid_post", c->n_layers - 1);
    if ((rc = mech_run_new(m, 1, p->T, &p->clean, err)) || (rc = mech_run_new(m, 1, p->T, &p->corr, err)) ||
        (rc = mech_run_cache(p->clean, last, err)) || (rc = mech_run_cache(p->corr, last, err)) ||
        (rc = mech_run_cache(p->clean, cache_glob[CG_RESID], err)) ||
        (rc = mech_run_cache(p->corr, cache_glob[CG_RESID], err)) || (rc = run_both(p, err)))
        goto fail;
    p->cached = 1u << CG_RESID;
    if (opts->naive) {
        memcpy(p->base_clean, mech_run_logits(p->clean) + (size_t)p->pos * V, V * sizeof(float));
        memcpy(p->base_corr, mech_run_logits(p->corr) + (size_t)p->pos * V, V * sizeof(float));
    } else {
        // The fast mode's own head, so that its baselines are computed exactly
        // as its patched rows are.
        float x[2 * 4096], *buf = C <= 4096 ? x : mech_malloc(2 * C * sizeof(float));
        if (!buf) {
            rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
            goto fail;
        }
        float *tmp = buf + C;
        memcpy(buf, mech_run_get(p->clean, last)->data + (size_t)p->pos * C, C * sizeof(float));
        head_rows(p, buf, 1, p->base_clean, tmp);
        memcpy(buf, mech_run_get(p->corr, last)->data + (size_t)p->pos * C, C * sizeof(float));
        head_rows(p, buf, 1, p->base_corr, tmp);
        if (buf != x) mech_free(buf);
    }
    p->m_clean = metric_of(p, p->base_clean);
    p->m_corr = metric_of(p, p->base_corr);
    *out = p;
    return MECH_OK;
fail:
    mech_patch_free(p);
    return rc;
}

void mech_patch_free(mech_patch *p) {
    if (!p) return;
    mech_run_free(p->clean);
    mech_run_free(p->corr);
    mech_pool_free(p->pool);
    mech_free(p->clean_ids);
    mech_free(p->corr_ids);
    mech_free(p->base_clean);
    mech_free(p->base_corr);
    mech_free(p);
}

double mech_patch_clean_metric(const mech_patch *p) { return p->m_clean; }
double mech_patch_corrupted_metric(const mech_patch *p) { return p->m_corr; }

void mech_patch_result_deinit(mech_patch_result *r) {
    if (!r) return;
    mech_free(r->raw);
    mech_free(r->norm);
    memset(r, 0, sizeof *r);
}

// ---------------------------------------------------------------------------
// Patch hooks: row b of the batch patches item b.

typedef struct patch_item {
    int pos, head; // LAYER_POS sites: pos; head sites: head (and pos for BY_POS)
    int cell;      // index into the result
    int slayer, shead; // path patching: the sender
} patch_item;

typedef struct patch_hook {
    const mech_patch *p;
    int site; // a mech_patch_site, or -1 for path patching
    int layer;
    const float *clean;     // clean activation of this layer (B = 1)
    const patch_item *items; // (B) of this batch
    // path patching
    const mech_patch_receiver *recv;
    int n_recv;
    mech_patch_input input;
} patch_hook;

static int patch_fn(mech_tensor *act, int layer, void *user) {
    const patch_hook *h = user;
    const mech_config *c = &h->p->m->cfg;
    int B = (int)act->shape[0], T = h->p->T, NH = c->n_heads, HS = c->d_head;
    size_t C = (size_t)c->d_model;
    float *a = act->data;
    (void)layer;
    for (int b = 0; b < B; b++) {
        const patch_item *it = &h->items[b];
        switch (h->site) {
        case MECH_PATCH_RESID_PRE:
        case MECH_PATCH_RESID_MID:
        case MECH_PATCH_ATTN_OUT:
        case MECH_PATCH_MLP_OUT: // [B, T, C]
            memcpy(a + ((size_t)b * T + it->pos) * C, h->clean + (size_t)it->pos * C, C * sizeof(float));
            break;
        case MECH_PATCH_HEAD_OUT_BY_POS: // [B, T, NH, HS]
            memcpy(a + (((size_t)b * T + it->pos) * NH + it->head) * HS,
                   h->clean + ((size_t)it->pos * NH + it->head) * HS, (size_t)HS * sizeof(float));
            break;
        case MECH_PATCH_HEAD_OUT:
        case MECH_PATCH_HEAD_Q:
        case MECH_PATCH_HEAD_K:
        case MECH_PATCH_HEAD_V:
            for (int t = 0; t < T; t++)
                memcpy(a + (((size_t)b * T + t) * NH + it->head) * HS, h->clean + ((size_t)t * NH + it->head) * HS,
                       (size_t)HS * sizeof(float));
            break;
        case MECH_PATCH_HEAD_PATTERN: // [B, NH, T, T]
            memcpy(a + ((size_t)b * NH + it->head) * T * T, h->clean + (size_t)it->head * T * T,
                   (size_t)T * T * sizeof(float));
            break;
        default: { // path patching: [B, T, NH, C] input of this layer's receivers
            const float *pre = cached(h->p->corr, h->layer, "hook_resid_pre");
            const float *rc = cached(h->p->clean, it->slayer, "attn.hook_result");
            const float *rx = cached(h->p->corr, it->slayer, "attn.hook_result");
            for (int i = 0; i < h->n_recv; i++) {
                const mech_patch_receiver *r = &h->recv[i];
                if (r->layer != h->layer || r->input != h->input || r->layer <= it->slayer) continue;
                for (int t = 0; t < T; t++) {
                    float *y = a + (((size_t)b * T + t) * NH + r->head) * C;
                    const float *x = pre + (size_t)t * C;
                    const float *sc = rc + ((size_t)t * NH + it->shead) * C, *sx = rx + ((size_t)t * NH + it->shead) * C;
                    for (size_t k = 0; k < C; k++) y[k] = x[k] + (sc[k] - sx[k]);
                }
            }
        }
        }
    }
    return 0;
}

// Fast mode: copies the metric position's row of the last block's
// resid_post for every batch row, then stops the run (no unembedding).
typedef struct capture {
    int pos, T, got;
    float *rows; // (B, C)
} capture;

static int capture_fn(mech_tensor *act, int layer, void *user) {
    capture *cp = user;
    int B = (int)act->shape[0];
    size_t C = (size_t)act->shape[2];
    (void)layer;
    for (int b = 0; b < B; b++)
        memcpy(cp->rows + (size_t)b * C, act->data + ((size_t)b * cp->T + cp->pos) * C, C * sizeof(float));
    cp->got = 1;
    return 1;
}

// ---------------------------------------------------------------------------
// Running the patches

static const char *const site_hook[MECH_PATCH_SITE_COUNT_] = {
    "hook_resid_pre", "hook_resid_mid", "hook_attn_out", "hook_mlp_out", "attn.hook_z",
    "attn.hook_z",    "attn.hook_q",    "attn.hook_k",   "attn.hook_v",  "attn.hook_pattern",
};
static const int site_cache[MECH_PATCH_SITE_COUNT_] = {CG_RESID, CG_MID, CG_ATTN_OUT, CG_MLP_OUT, CG_Z,
                                                       CG_Z,     CG_Q,   CG_K,        CG_V,       CG_PATTERN};
static const char *const input_hook[3] = {"hook_q_input", "hook_k_input", "hook_v_input"};

typedef struct job {
    mech_patch *p;
    int site;                  // or -1: path
    const mech_patch_receiver *recv;
    int n_recv;
    mech_patch_result *out;
    // scratch
    mech_run *runs[2];         // fast: the full-batch run and the remainder's
    int run_b[2];
    int32_t *ids;              // (batch, T) replicated corrupted tokens
    float *rows, *tmp, *logits; // (batch, C), (batch, C), (batch, V)
    int batch;
    patch_hook *hk;            // (3 L): the hooks of one batch
} job;

static mech_status get_run(job *j, int B, mech_run **out, mech_err *err) {
    for (int i = 0; i < 2; i++)
        if (j->runs[i] && j->run_b[i] == B) return *out = j->runs[i], MECH_OK;
    int i = j->runs[0] ? 1 : 0;
    if (j->runs[i]) mech_run_free(j->runs[i]), j->runs[i] = NULL;
    mech_status rc = mech_run_new(j->p->m, B, j->p->T, &j->runs[i], err);
    if (rc) return rc;
    j->run_b[i] = B;
    return *out = j->runs[i], MECH_OK;
}

static mech_status add_hook(mech_run *r, int layer, const char *suffix, patch_hook *h, mech_err *err) {
    char name[96];
    snprintf(name, sizeof name, "blocks.%d.%s", layer, suffix);
    return mech_run_hook(r, name, patch_fn, h, err);
}

// Registers the patch hooks of a batch on r (at most 3 per layer, in hk).
static mech_status add_patch_hooks(job *j, mech_run *r, int layer, const patch_item *items, patch_hook *hk,
                                   mech_err *err) {
    mech_patch *p = j->p;
    if (j->site >= 0) {
        hk[0] = (patch_hook){.p = p, .site = j->site, .layer = layer, .items = items,
                             .clean = cached(p->clean, layer, site_hook[j->site])};
        return add_hook(r, layer, site_hook[j->site], &hk[0], err);
    }
    // Path patching: one hook per (receiver layer, input), registered at
    // every receiver layer l >= `layer`.
    int n = 0;
    mech_status rc = MECH_OK;
    for (int l = layer; l < p->m->cfg.n_layers && !rc; l++)
        for (int in = 0; in < 3 && !rc; in++) {
            int any = 0;
            for (int i = 0; i < j->n_recv; i++) any |= j->recv[i].layer == l && (int)j->recv[i].input == in;
            if (!any) continue;
            patch_hook *h = &hk[n++];
            *h = (patch_hook){.p = p, .site = -1, .layer = l, .items = items, .recv = j->recv,
                              .n_recv = j->n_recv, .input = (mech_patch_input)in};
            rc = add_hook(r, l, input_hook[in], h, err);
        }
    return rc;
}

static void record(job *j, int cell, double v) {
    mech_patch_result *o = j->out;
    o->raw[cell] = (float)v;
    o->norm[cell] = (float)mech_patch_normalise(v, j->p->m_clean, j->p->m_corr);
    o->done++;
}

// Runs the patches items[0..n) that start at block `layer` as batches.
static mech_status run_items(job *j, int layer, const patch_item *items, int n, int64_t total, mech_err *err) {
    mech_patch *p = j->p;
    const mech_config *c = &p->m->cfg;
    size_t C = (size_t)c->d_model, V = (size_t)c->d_vocab;
    int T = p->T, L = c->n_layers;
    patch_hook *hk = j->hk;
    mech_status rc = MECH_OK;
    for (int i0 = 0; i0 < n;) {
        if (p->o.cancel && *p->o.cancel)
            return mech_err_set(err, MECH_ERR_CANCELLED, "patching sweep cancelled after %lld of %lld patches",
                                (long long)j->out->done, (long long)total);
        if (p->o.naive) {
            mech_run *r = j->runs[0];
            mech_run_reset(r);
            if ((rc = add_patch_hooks(j, r, layer, &items[i0], hk, err)) ||
                (rc = mech_run_forward(r, p->corr_ids, err)))
                return rc;
            record(j, items[i0].cell, metric_of(p, mech_run_logits(r) + (size_t)p->pos * V));
            i0++;
        } else {
            int B = n - i0 < j->batch ? n - i0 : j->batch;
            mech_run *r;
            if ((rc = get_run(j, B, &r, err))) return rc;
            mech_run_reset(r);
            capture cp = {.pos = p->pos, .T = T, .rows = j->rows};
            char last[64];
            snprintf(last, sizeof last, "blocks.%d.hook_resid_post", L - 1);
            if ((rc = add_patch_hooks(j, r, layer, &items[i0], hk, err)) ||
                (rc = mech_run_hook(r, last, capture_fn, &cp, err)))
                return rc;
            const float *pre = cached(p->corr, layer, "hook_resid_pre");
            float *start = NULL;
            if (layer > 0) {
                // (B, T, C): the corrupted resid_pre of `layer` for every row.
                start = mech_malloc((size_t)B * T * C * sizeof(float));
                if (!start) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for a batch of %d patches", B);
                for (int b = 0; b < B; b++) memcpy(start + (size_t)b * T * C, pre, (size_t)T * C * sizeof(float));
            }
            mech_run_opts ro = {.start_layer = layer, .start_resid = start};
            rc = mech_run_forward_ex(r, j->ids, &ro, err);
            mech_free(start);
            if (rc && !(rc == MECH_ERR_CANCELLED && cp.got)) return rc;
            if (err && rc) memset(err, 0, sizeof *err);
            head_rows(p, j->rows, B, j->logits, j->tmp);
            for (int b = 0; b < B; b++) record(j, items[i0 + b].cell, metric_of(p, j->logits + (size_t)b * V));
            i0 += B;
        }
        if (p->o.progress) p->o.progress(j->out->done, total, p->o.user);
    }
    return MECH_OK;
}

static mech_status job_init(job *j, mech_patch *p, int max_items, mech_patch_result *out, int ndim, int64_t d0,
                            int64_t d1, int64_t d2, mech_err *err) {
    const mech_config *c = &p->m->cfg;
    memset(out, 0, sizeof *out);
    out->ndim = ndim;
    out->shape[0] = d0;
    out->shape[1] = d1;
    out->shape[2] = ndim == 3 ? d2 : 0;
    size_t cells = (size_t)d0 * (size_t)d1 * (ndim == 3 ? (size_t)d2 : 1);
    out->raw = mech_malloc(cells * sizeof(float));
    out->norm = mech_malloc(cells * sizeof(float));
    out->clean = p->m_clean;
    out->corrupted = p->m_corr;
    if (!out->raw || !out->norm) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for %zu results", cells);
    for (size_t i = 0; i < cells; i++) out->raw[i] = out->norm[i] = NAN;
    int batch = p->o.batch > 0 ? p->o.batch : 4096 / p->T;
    if (p->o.batch <= 0 && batch > 64) batch = 64;
    if (batch < 1) batch = 1;
    if (batch > max_items) batch = max_items;
    if (p->o.naive) batch = 1;
    j->batch = batch;
    size_t C = (size_t)c->d_model, V = (size_t)c->d_vocab;
    j->ids = mech_malloc((size_t)batch * p->T * sizeof(int32_t));
    j->rows = mech_malloc((size_t)batch * C * sizeof(float));
    j->tmp = mech_malloc((size_t)batch * C * sizeof(float));
    j->logits = mech_malloc((size_t)batch * V * sizeof(float));
    j->hk = mech_malloc((size_t)3 * c->n_layers * sizeof *j->hk);
    if (!j->ids || !j->rows || !j->tmp || !j->logits || !j->hk) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (int b = 0; b < batch; b++) memcpy(j->ids + (size_t)b * p->T, p->corr_ids, (size_t)p->T * sizeof(int32_t));
    if (p->o.naive) {
        mech_status rc = mech_run_new(p->m, 1, p->T, &j->runs[0], err);
        if (rc) return rc;
        j->run_b[0] = 1;
    }
    return MECH_OK;
}

static void job_deinit(job *j) {
    mech_run_free(j->runs[0]);
    mech_run_free(j->runs[1]);
    mech_free(j->ids);
    mech_free(j->rows);
    mech_free(j->tmp);
    mech_free(j->logits);
    mech_free(j->hk);
}

mech_status mech_patch_sweep(mech_patch *p, mech_patch_site site, mech_patch_result *out, mech_err *err) {
    const mech_config *c = &p->m->cfg;
    int L = c->n_layers, T = p->T, NH = c->n_heads;
    memset(out, 0, sizeof *out);
    if ((unsigned)site >= MECH_PATCH_SITE_COUNT_)
        return mech_err_set(err, MECH_ERR_ARG, "unknown patching site %d", (int)site);
    if (c->attn_only && (site == MECH_PATCH_RESID_MID || site == MECH_PATCH_MLP_OUT))
        return mech_err_set(err, MECH_ERR_ARG, "patching %s: an attention-only model has no %s",
                            site_names[site], site_hook[site]);
    mech_status rc = ensure_cache(p, site_cache[site], err);
    if (rc) return rc;
    int by_pos = site <= MECH_PATCH_MLP_OUT, by_pos_head = site == MECH_PATCH_HEAD_OUT_BY_POS;
    int per_layer = by_pos ? T : by_pos_head ? T * NH : NH;
    job j = {.p = p, .site = (int)site, .out = out};
    patch_item *items = mech_malloc((size_t)per_layer * sizeof *items);
    if (!items) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    if ((rc = job_init(&j, p, per_layer, out, by_pos_head ? 3 : 2, L, by_pos || by_pos_head ? T : NH, NH, err)))
        goto done;
    int64_t total = (int64_t)L * per_layer;
    for (int l = 0; l < L && !rc; l++) {
        for (int i = 0; i < per_layer; i++) {
            patch_item *it = &items[i];
            *it = (patch_item){0};
            if (by_pos) it->pos = i;
            else if (by_pos_head) it->pos = i / NH, it->head = i % NH;
            else it->head = i;
            it->cell = l * per_layer + i;
        }
        rc = run_items(&j, l, items, per_layer, total, err);
    }
done:
    mech_free(items);
    job_deinit(&j);
    return rc;
}

mech_status mech_patch_receivers_check(const mech_config *cfg, const mech_patch_receiver *recv, int n_recv,
                                       int *lmin, int *lmax, mech_err *err) {
    int L = cfg->n_layers, NH = cfg->n_heads, lo = L, hi = -1;
    if (n_recv < 1 || !recv) return mech_err_set(err, MECH_ERR_ARG, "path patching needs at least one receiver head");
    for (int i = 0; i < n_recv; i++) {
        const mech_patch_receiver *r = &recv[i];
        if (r->layer < 0 || r->layer >= L)
            return mech_err_set(err, MECH_ERR_RANGE, "receiver %d: layer %d, expected 0..%d", i + 1, r->layer, L - 1);
        if (r->head < 0 || r->head >= NH)
            return mech_err_set(err, MECH_ERR_RANGE, "receiver %d: head %d, expected 0..%d", i + 1, r->head, NH - 1);
        if ((unsigned)r->input > MECH_PATCH_INPUT_V)
            return mech_err_set(err, MECH_ERR_ARG, "receiver %d: unknown input %d (q, k or v)", i + 1, (int)r->input);
        lo = r->layer < lo ? r->layer : lo;
        hi = r->layer > hi ? r->layer : hi;
    }
    if (lmin) *lmin = lo;
    if (lmax) *lmax = hi;
    return MECH_OK;
}

mech_status mech_patch_path(mech_patch *p, const mech_patch_receiver *recv, int n_recv, mech_patch_result *out,
                            mech_err *err) {
    const mech_config *c = &p->m->cfg;
    int L = c->n_layers, NH = c->n_heads;
    memset(out, 0, sizeof *out);
    int lmin, lmax;
    mech_status rc = mech_patch_receivers_check(c, recv, n_recv, &lmin, &lmax, err);
    if (rc) return rc;
    rc = ensure_cache(p, CG_RESULT, err);
    if (rc) return rc;
    // Senders with a receiver after them, all starting at the first receiver layer.
    int n_send = lmax * NH; // senders in layers [0, lmax)
    job j = {.p = p, .site = -1, .recv = recv, .n_recv = n_recv, .out = out};
    patch_item *items = mech_malloc((size_t)(n_send > 0 ? n_send : 1) * sizeof *items);
    if (!items) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    if ((rc = job_init(&j, p, n_send > 0 ? n_send : 1, out, 2, L, NH, 0, err))) goto done;
    for (int i = 0; i < n_send; i++) items[i] = (patch_item){.slayer = i / NH, .shead = i % NH, .cell = i};
    // No receiver after the sender: no path, so the run is the corrupted one.
    for (int cell = n_send; cell < L * NH; cell++) record(&j, cell, p->m_corr);
    // Naive: a full forward per sender; fast: from the first receiver layer.
    rc = run_items(&j, p->o.naive ? 0 : lmin, items, n_send, (int64_t)L * NH, err);
done:
    mech_free(items);
    job_deinit(&j);
    return rc;
}
