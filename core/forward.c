/*
** core/forward.c: the GPT-2 forward pass with TransformerLens hook points.
**
** The maths is Hugging Face's GPT2LMHeadModel: x = wte[ids] + wpe[pos];
** per block x += attn(ln1(x)); x += mlp(ln2(x)); logits = ln_f(x) @ W_U.
** Every hook point has a buffer: a cached point's own (the forward writes
** straight into the cache, so caching costs no copy) or a scratch buffer
** shared by all layers. A hook sees the buffer and may overwrite it; what it
** leaves there is what the rest of the model reads.
**
** Work that only hooks need is skipped when no hook asks for it: embed and
** pos_embed are summed directly, attention scores never reach memory beyond
** a per-thread block unless scores or pattern are hooked, per-head results
** and split q/k/v inputs (the opt-in hooks) are computed only when hooked.
*/
#include "core/forward_int.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define QB ATTN_QB // query rows per attention task

// ---------------------------------------------------------------------------
// Buffers and hook firing

static hook_point *pt(mech_run *r, int layer, int kind) {
    return &r->pts[hook_point_index(&r->m->cfg, layer, kind)];
}

static int active(const hook_point *p) { return p->cache != NULL || p->n_fns > 0; }

static float *pbuf(mech_run *r, const hook_point *p) {
    return p->cache ? p->cache : p->keep ? p->keep : r->scratch[p->kind];
}

// Runs the hooks of p on data; non-zero when one asked to stop. In grad
// mode (p->before set) records which elements the hooks changed.
static int fire(hook_point *p, float *data) {
    p->view.data = data;
    if (!p->n_fns) return 0;
    size_t n = p->before ? mech_tensor_numel(&p->view) : 0;
    if (n) memcpy(p->before, data, n * sizeof(float));
    for (int i = 0; i < p->n_fns; i++)
        if (p->fns[i].fn(&p->view, p->layer, p->fns[i].user)) return 1;
    if (n) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) // bitwise: NaN stays NaN, -0 differs from 0
            k += p->patched[i] = memcmp(&p->before[i], &data[i], sizeof(float)) != 0;
        p->n_patched = k;
    }
    return 0;
}

static size_t kind_numel(const mech_run *r, int kind) {
    const mech_config *c = &r->m->cfg;
    size_t BT = (size_t)r->B * r->T, C = c->d_model, NH = c->n_heads, HS = c->d_head, M = c->d_mlp;
    switch (kind) {
    case HK_LN1_SCALE: case HK_LN2_SCALE: case HK_LNF_SCALE: return BT;
    case HK_Q_INPUT: case HK_K_INPUT: case HK_V_INPUT: case HK_RESULT: return BT * NH * C;
    case HK_Q: case HK_K: case HK_V: case HK_Z: return BT * NH * HS;
    case HK_SCORES: case HK_PATTERN: return (size_t)r->B * NH * r->T * r->T;
    case HK_MLP_PRE: case HK_MLP_POST: return BT * (M ? M : 1);
    default: return BT * C;
    }
}

static mech_status alloc_scratch(mech_run *r, int kind, mech_err *err) {
    if (r->scratch[kind]) return MECH_OK;
    r->scratch[kind] = mech_malloc_aligned(kind_numel(r, kind) * sizeof(float));
    if (!r->scratch[kind])
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for %s activations (B=%d, T=%d)",
                            hook_kind_suffix(kind), r->B, r->T);
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Run lifetime

mech_status mech_run_new(const mech_model *m, int B, int T, mech_run **out, mech_err *err) {
    *out = NULL;
    const mech_config *c = &m->cfg;
    if (B < 1 || T < 1) return mech_err_set(err, MECH_ERR_ARG, "batch %d x %d tokens: both must be >= 1", B, T);
    if (T > c->n_ctx) return mech_err_set(err, MECH_ERR_RANGE, "%d tokens exceed the model's context of %d", T, c->n_ctx);
    if ((double)B * T * c->d_vocab > 4e9 || (double)B * c->n_heads * T * T > 4e9)
        return mech_err_set(err, MECH_ERR_RANGE, "batch %d x %d tokens is too large for one run", B, T);
    mech_run *r = mech_calloc(1, sizeof *r);
    if (!r) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    r->m = m;
    r->B = B;
    r->T = T;
    r->n_pts = hook_point_count(c);
    r->pts = mech_calloc((size_t)r->n_pts, sizeof *r->pts);
    r->pool = mech_pool_new(0);
    mech_status rc = MECH_OK;
    if (!r->pts || !r->pool) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    hook_points_init(c, B, T, r->pts);
    static const int always[] = {HK_RESID_PRE, HK_LN1_SCALE, HK_LN1_NORM, HK_Q, HK_K, HK_V, HK_Z,
                                 HK_ATTN_OUT, HK_RESID_MID, HK_MLP_PRE, HK_MLP_POST, HK_MLP_OUT, HK_RESID_POST};
    for (size_t i = 0; i < sizeof always / sizeof *always; i++) {
        int k = always[i];
        if (c->attn_only && (k == HK_RESID_MID || k == HK_MLP_PRE || k == HK_MLP_POST || k == HK_MLP_OUT)) continue;
        if ((rc = alloc_scratch(r, k, err))) goto fail;
    }
    // LayerNorm buffers are used one after another, never at once.
    r->scratch[HK_LN2_SCALE] = r->scratch[HK_LNF_SCALE] = r->scratch[HK_LN1_SCALE];
    r->scratch[HK_LN2_NORM] = r->scratch[HK_LNF_NORM] = r->scratch[HK_LN1_NORM];
    r->ln_out = mech_malloc_aligned((size_t)B * T * c->d_model * sizeof(float));
    r->logits = mech_malloc_aligned((size_t)B * T * c->d_vocab * sizeof(float));
    if (!r->ln_out || !r->logits) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory for B=%d, T=%d", B, T);
        goto fail;
    }
    *out = r;
    return MECH_OK;
fail:
    mech_run_free(r);
    return rc;
}

static int is_alias(const mech_run *r, int k) {
    return (k == HK_LN2_SCALE || k == HK_LNF_SCALE || k == HK_LN2_NORM || k == HK_LNF_NORM) ||
           ((k == HK_K_INPUT || k == HK_V_INPUT) && r->scratch[k] == r->scratch[HK_Q_INPUT]);
}

void mech_run_free(mech_run *r) {
    if (!r) return;
    mech_run_reset(r);
    grad_free(r);
    for (int k = 0; k < HK_COUNT; k++)
        if (!is_alias(r, k)) mech_free_aligned(r->scratch[k]);
    mech_free_aligned(r->ln_out);
    mech_free_aligned(r->split_norm);
    mech_free_aligned(r->logits);
    mech_free(r->pts);
    mech_pool_free(r->pool);
    mech_free(r->cached);
    mech_free(r->row_start);
    mech_free(r->row_len);
    mech_free(r);
}

mech_status mech_run_set_threads(mech_run *r, int n, mech_err *err) {
    mech_pool *p = mech_pool_new(n);
    if (!p) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for a thread pool");
    mech_pool_free(r->pool);
    r->pool = p;
    return MECH_OK;
}

int mech_run_batch(const mech_run *r) { return r->B; }
int mech_run_seq_len(const mech_run *r) { return r->T; }

// ---------------------------------------------------------------------------
// Padded batches

mech_status mech_run_set_mask(mech_run *r, const uint8_t *mask, mech_err *err) {
    if (!mask) {
        mech_free(r->row_start);
        mech_free(r->row_len);
        r->row_start = r->row_len = NULL;
        return MECH_OK;
    }
    int *start = mech_malloc((size_t)r->B * sizeof *start), *len = mech_malloc((size_t)r->B * sizeof *len);
    if (!start || !len) {
        mech_free(start);
        mech_free(len);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    for (int b = 0; b < r->B; b++) {
        const uint8_t *m = mask + (size_t)b * r->T;
        int s = 0, e;
        while (s < r->T && !m[s]) s++;
        for (e = s; e < r->T && m[e]; e++) {}
        int t = e;
        while (t < r->T && !m[t]) t++;
        if (s == r->T || t < r->T) {
            mech_free(start);
            mech_free(len);
            return mech_err_set(err, MECH_ERR_ARG,
                                "attention mask row %d: %s (the real tokens of a padded row are one run of 1s)", b + 1,
                                s == r->T ? "no real token" : "the 1s are not contiguous");
        }
        start[b] = s, len[b] = e - s;
    }
    mech_free(r->row_start);
    mech_free(r->row_len);
    r->row_start = start, r->row_len = len;
    return MECH_OK;
}

void mech_run_row(const mech_run *r, int b, int *start, int *len) {
    *start = r->row_start ? r->row_start[b] : 0;
    *len = r->row_len ? r->row_len[b] : r->T;
}

mech_status mech_batch_pad(const int32_t *const *seqs, const int *lens, int n, int32_t pad, mech_pad_side side,
                           int32_t **ids, uint8_t **mask, int *T, mech_err *err) {
    *ids = NULL, *mask = NULL, *T = 0;
    if (n < 1) return mech_err_set(err, MECH_ERR_ARG, "a batch needs at least one sequence");
    int W = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 1) return mech_err_set(err, MECH_ERR_ARG, "sequence %d is empty", i + 1);
        if (lens[i] > W) W = lens[i];
    }
    int32_t *out = mech_malloc((size_t)n * W * sizeof *out);
    uint8_t *m = mech_calloc((size_t)n * W, 1);
    if (!out || !m) {
        mech_free(out);
        mech_free(m);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for a batch of %d x %d tokens", n, W);
    }
    for (int i = 0; i < n; i++) {
        int s = side == MECH_PAD_LEFT ? W - lens[i] : 0;
        for (int t = 0; t < W; t++) out[(size_t)i * W + t] = pad;
        memcpy(out + (size_t)i * W + s, seqs[i], (size_t)lens[i] * sizeof *out);
        memset(m + (size_t)i * W + s, 1, (size_t)lens[i]);
    }
    *ids = out, *mask = m, *T = W;
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Hooks and cache

// Opt-in points match only patterns whose last component has no '*'
// ("blocks.*.hook_?_input", not "*" or "blocks.3.*"), so "*" caches the
// default hooks as TransformerLens's run_with_cache does.
static int point_matches(const hook_point *p, const char *glob) {
    if (!p->exists || !mech_glob_match(glob, p->name)) return 0;
    if (!p->opt_in) return 1;
    const char *last = strrchr(glob, '.');
    return strchr(last ? last + 1 : glob, '*') == NULL;
}

int hook_point_matches(const hook_point *p, const char *glob) { return point_matches(p, glob); }

mech_status mech_run_hook(mech_run *r, const char *glob, mech_hook_fn fn, void *user, mech_err *err) {
    if (!fn) return mech_err_set(err, MECH_ERR_ARG, "hook '%s': no function given", glob);
    int matched = 0;
    for (int i = 0; i < r->n_pts; i++) {
        hook_point *p = &r->pts[i];
        if (!point_matches(p, glob)) continue;
        hook_fn_entry *f = mech_realloc(p->fns, (size_t)(p->n_fns + 1) * sizeof *f);
        if (!f) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory adding hook '%s'", glob);
        p->fns = f;
        p->fns[p->n_fns++] = (hook_fn_entry){fn, user};
        matched++;
    }
    if (!matched) return mech_err_set(err, MECH_ERR_ARG, "hook '%s' matches no hook point of this model (see `mech info`)", glob);
    return MECH_OK;
}

static mech_status rebuild_cached(mech_run *r, mech_err *err) {
    size_t n = 0;
    for (int i = 0; i < r->n_pts; i++) n += r->pts[i].cache != NULL;
    mech_tensor *list = mech_calloc(n ? n : 1, sizeof *list);
    if (!list) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (int i = 0; i < r->n_pts; i++)
        if (r->pts[i].cache) list[k++] = r->pts[i].view;
    mech_free(r->cached);
    r->cached = list;
    r->n_cached = n;
    return MECH_OK;
}

// Physical memory, or 0 when unknown.
static double phys_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && size > 0 ? (double)pages * size : 0;
}

mech_status mech_run_memory(const mech_model *m, int B, int T, const char *const *globs, int n_globs,
                            double have, mech_run_bytes *out, mech_err *err) {
    const mech_config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    if (B < 1 || T < 1) return mech_err_set(err, MECH_ERR_ARG, "batch %d x %d tokens: both must be >= 1", B, T);
    mech_run tmp = {.m = m, .B = B, .T = T}; // what kind_numel reads
    size_t BT = (size_t)B * T;
    out->weights = (double)mech_config_n_params(c) * sizeof(float);
    // mech_run_new's scratch: one buffer per kind, plus the LayerNorm output
    static const int always[] = {HK_RESID_PRE, HK_LN1_SCALE, HK_LN1_NORM, HK_Q, HK_K, HK_V, HK_Z,
                                 HK_ATTN_OUT, HK_RESID_MID, HK_MLP_PRE, HK_MLP_POST, HK_MLP_OUT, HK_RESID_POST};
    for (size_t i = 0; i < sizeof always / sizeof *always; i++) {
        int k = always[i];
        if (c->attn_only && (k == HK_RESID_MID || k == HK_MLP_PRE || k == HK_MLP_POST || k == HK_MLP_OUT)) continue;
        out->activations += (double)kind_numel(&tmp, k) * sizeof(float);
    }
    out->activations += (double)BT * c->d_model * sizeof(float);
    out->logits = (double)BT * c->d_vocab * sizeof(float);
    int n = hook_point_count(c);
    hook_point *pts = mech_calloc((size_t)n, sizeof *pts);
    if (!pts) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    hook_points_init(c, B, T, pts);
    for (int i = 0; i < n; i++)
        for (int g = 0; g < n_globs; g++)
            if (point_matches(&pts[i], globs[g])) {
                out->cache += (double)mech_tensor_numel(&pts[i].view) * sizeof(float);
                break;
            }
    mech_free(pts);
    out->total = out->weights + out->activations + out->logits + out->cache;
    out->limit = 0.8 * (have > 0 ? have : phys_bytes());
    if (out->limit > 0 && out->total > out->limit)
        return mech_err_set(err, MECH_ERR_NOMEM,
                            "B=%d x T=%d would hold %.1f GB (weights %.1f, activations %.1f, logits %.1f, cache %.1f) "
                            "but the limit is %.1f GB (80 %% of this machine's %.1f GB of RAM); run smaller batches, "
                            "shorter sequences or cache fewer hooks",
                            B, T, out->total / 1e9, out->weights / 1e9, out->activations / 1e9, out->logits / 1e9,
                            out->cache / 1e9, out->limit / 1e9, out->limit / 0.8 / 1e9);
    return MECH_OK;
}

mech_status mech_run_cache(mech_run *r, const char *glob, mech_err *err) {
    // Refuse up front what cannot fit: with overcommit the allocations would
    // succeed and the process be killed when the forward touches them.
    double need = 0, have = phys_bytes();
    int n_new = 0;
    for (int i = 0; i < r->n_pts; i++) {
        const hook_point *p = &r->pts[i];
        if (p->cache || point_matches(p, glob)) need += (double)mech_tensor_numel(&p->view) * sizeof(float);
        n_new += !p->cache && point_matches(p, glob);
    }
    if (have > 0 && need > 0.8 * have)
        return mech_err_set(err, MECH_ERR_NOMEM,
                            "cache '%s': keeping %d more activations needs %.1f GB in all (B=%d, T=%d) but the "
                            "limit is 80 %% of this machine's %.1f GB; cache fewer hooks or run smaller batches",
                            glob, n_new, need / 1e9, r->B, r->T, have / 1e9);
    int matched = 0;
    for (int i = 0; i < r->n_pts; i++) {
        hook_point *p = &r->pts[i];
        if (!point_matches(p, glob)) continue;
        matched++;
        if (p->cache) continue;
        grad_invalidate(r);
        size_t n = mech_tensor_numel(&p->view);
        p->cache = mech_malloc_aligned(n * sizeof(float));
        if (!p->cache) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory caching '%s' (%zu floats)", p->name, n);
        memset(p->cache, 0, n * sizeof(float));
        p->view.data = p->cache;
    }
    if (!matched) return mech_err_set(err, MECH_ERR_ARG, "cache '%s' matches no hook point of this model (see `mech info`)", glob);
    return rebuild_cached(r, err);
}

void mech_run_reset(mech_run *r) {
    for (int i = 0; r->pts && i < r->n_pts; i++) { // pts is NULL when mech_run_new ran out of memory
        hook_point *p = &r->pts[i];
        mech_free_aligned(p->cache);
        mech_free(p->fns);
        p->cache = NULL;
        p->fns = NULL;
        p->n_fns = 0;
        p->view.data = NULL;
    }
    mech_free(r->cached);
    r->cached = NULL;
    r->n_cached = 0;
    grad_reset(r);
}

const mech_tensor *mech_run_get(const mech_run *r, const char *name) {
    for (size_t i = 0; i < r->n_cached; i++)
        if (!strcmp(r->cached[i].name, name)) return &r->cached[i];
    return NULL;
}

const mech_tensor *mech_run_cached(const mech_run *r, size_t *n) {
    *n = r->n_cached;
    return r->cached;
}

const float *mech_run_logits(const mech_run *r) { return r->logits_valid ? r->logits : NULL; }

mech_status mech_run_set_logits_rows(mech_run *r, int first, int n, mech_err *err) {
    if (n == 0) first = 0;
    else if (first == MECH_LOGITS_LAST ? n != 1 : first < 0 || n < 0 || n > r->T - first)
        return mech_err_set(err, MECH_ERR_RANGE, "logits rows %d..%d: expected positions within 0..%d, or the last token (n = 1)",
                            first, first + n - 1, r->T - 1);
    size_t rows = (size_t)r->B * (n ? (size_t)n : (size_t)r->T), have = (size_t)r->B * (r->lg_n ? (size_t)r->lg_n : (size_t)r->T);
    if (rows != have) {
        // a new buffer of the size asked for: the full (B, T, V) one is the largest the run holds
        float *l = mech_malloc_aligned(rows * r->m->cfg.d_vocab * sizeof(float));
        if (!l) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for %zu rows of logits", rows);
        mech_free_aligned(r->logits);
        r->logits = l;
    }
    r->lg_first = first;
    r->lg_n = n;
    r->logits_valid = 0;
    return MECH_OK;
}
const float *mech_run_resid(const mech_run *r) { return r->resid_end; }

// ---------------------------------------------------------------------------
// Parallel element-wise work

typedef struct rows_job {
    mech_run *r;
    size_t rows, per;
    void (*fn)(struct rows_job *job, size_t r0, size_t r1);
    const float *a, *b, *w, *bias;
    float *out, *out2;
    size_t width;
    float eps;
    int act;   // act_rows: the activation
    int heads; // sum_heads_rows: NH
} rows_job;

static void rows_task(void *ctx, int i) {
    rows_job *j = ctx;
    size_t r0 = (size_t)i * j->per, r1 = r0 + j->per < j->rows ? r0 + j->per : j->rows;
    if (r0 < r1) j->fn(j, r0, r1);
}

static void run_rows(mech_run *r, rows_job *j) {
    int n = mech_pool_size(r->pool) * 4;
    j->r = r;
    j->per = (j->rows + (size_t)n - 1) / (size_t)n;
    if (j->per < 16) j->per = 16;
    int tasks = (int)((j->rows + j->per - 1) / j->per);
    if (tasks <= 1) {
        if (j->rows) j->fn(j, 0, j->rows);
    } else {
        mech_pool_for(r->pool, tasks, rows_task, j);
    }
}

// out = a + b, row-wise
static void add_rows(rows_job *j, size_t r0, size_t r1) {
    size_t n0 = r0 * j->width, n1 = r1 * j->width;
    for (size_t i = n0; i < n1; i++) j->out[i] = j->a[i] + j->b[i];
}

static void add(mech_run *r, float *out, const float *a, const float *b, size_t rows, size_t width) {
    rows_job j = {.fn = add_rows, .out = out, .a = a, .b = b, .rows = rows, .width = width};
    run_rows(r, &j);
}

// out2 (normalized) and out (scale) from a; then ln_out = normalized*w + bias
static void ln_rows(rows_job *j, size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; i++)
        mech_vec_layernorm(j->out2 + i * j->width, j->out + i, j->a + i * j->width, j->width, j->eps);
}

static void ln_renorm_rows(rows_job *j, size_t r0, size_t r1) {
    // Applies a scale that a hook changed: normalized = (x - mean) / scale.
    for (size_t i = r0; i < r1; i++) {
        const float *x = j->a + i * j->width;
        float *y = j->out2 + i * j->width;
        double mean = 0;
        for (size_t k = 0; k < j->width; k++) mean += x[k];
        mean /= (double)j->width;
        float s = j->out[i];
        for (size_t k = 0; k < j->width; k++) y[k] = (float)(x[k] - mean) / s;
    }
}

static void affine_rows(rows_job *j, size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; i++) {
        const float *x = j->a + i * j->width;
        float *y = j->out + i * j->width;
        for (size_t k = 0; k < j->width; k++) y[k] = x[k] * j->w[k] + j->bias[k];
    }
}

// gelu_new and (out2) its derivative, for the backward, row by row as act_rows.
static void act_grad_rows(rows_job *j, size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; i++) {
        size_t n0 = i * j->width;
        mech_vec_gelu_new_fwd_grad(j->out + n0, j->out2 + n0, j->a + n0, j->width);
    }
}

static void act_rows(rows_job *j, size_t r0, size_t r1) {
    // Row by row, so that a value never depends on where the row sits in the
    // batch (vector tails may round differently): a padded batch reproduces
    // each sequence's unpadded run exactly.
    for (size_t i = r0; i < r1; i++) {
        size_t n0 = i * j->width, n = j->width;
        if (j->act == MECH_ACT_GELU_NEW) mech_vec_gelu_new(j->out + n0, j->a + n0, n);
        else if (j->act == MECH_ACT_GELU) mech_vec_gelu_erf(j->out + n0, j->a + n0, n);
        else mech_vec_relu(j->out + n0, j->a + n0, n);
    }
}

// LayerNorm of x (rows x C) through the scale/normalized hook points; returns
// the input of the next matrix product (r->ln_out), or x itself when the
// model has no LayerNorm. Sets *stop when a hook asked to stop.
static const float *layer_norm(mech_run *r, const float *x, const float *w, const float *b, int layer,
                               int kscale, int knorm, int *stop) {
    const mech_config *c = &r->m->cfg;
    if (c->norm == MECH_NORM_NONE) return x;
    size_t rows = (size_t)r->B * r->T, C = (size_t)c->d_model;
    hook_point *ps = pt(r, layer, kscale), *pn = pt(r, layer, knorm);
    float *S = pbuf(r, ps), *N = pbuf(r, pn);
    rows_job j = {.fn = ln_rows, .out = S, .out2 = N, .a = x, .rows = rows, .width = C, .eps = c->ln_eps};
    run_rows(r, &j);
    if (fire(ps, S)) return *stop = 1, NULL;
    if (ps->n_fns) {
        j.fn = ln_renorm_rows;
        run_rows(r, &j);
    }
    if (fire(pn, N)) return *stop = 1, NULL;
    rows_job a = {.fn = affine_rows, .out = r->ln_out, .a = N, .w = w, .bias = b, .rows = rows, .width = C};
    run_rows(r, &a);
    return r->ln_out;
}

// ---------------------------------------------------------------------------
// Attention

typedef struct attn_job {
    mech_run *r;
    const float *Q, *K, *V; // (B*T, NH*HS) each
    float *Z;               // (B*T, NH*HS)
    float *S;               // (B, NH, T, T) materialised scores/pattern, or NULL
    float *P;               // grad mode: the packed pattern kept for the backward, or NULL
    const float *scores;    // (B, NH, T, T) scores to copy into S before softmax, or NULL
    int full_rows;          // softmax over whole rows: a hook may have changed masked scores
    int nqb;
    atomic_int oom;         // a task could not get its scratch block
} attn_job;

static void attn_coords(const attn_job *j, int task, int *b, int *h, int *i0, int *i1) {
    const mech_config *c = &j->r->m->cfg;
    int T = j->r->T;
    *b = task / (c->n_heads * j->nqb);
    *h = task / j->nqb % c->n_heads;
    // Large causal blocks first so the pool's tail is short.
    int qb = j->nqb - 1 - task % j->nqb;
    *i0 = qb * QB;
    *i1 = *i0 + QB < T ? *i0 + QB : T;
}

// The real tokens of row b: positions [*s, *e) (the whole row unless the
// batch is padded).
static void row_span(const mech_run *r, int b, int *s, int *e) {
    *s = r->row_start ? r->row_start[b] : 0;
    *e = r->row_start ? r->row_start[b] + r->row_len[b] : r->T;
}

// Keys [*k0, *k1) that query i of row b attends to: the row's real tokens up
// to i (causal) or all of them; none for a padding query, whose pattern row
// is then 0 and whose z is 0.
static void query_keys(const mech_run *r, int b, int i, int *k0, int *k1) {
    int s, e;
    row_span(r, b, &s, &e);
    *k0 = s;
    *k1 = i < s || i >= e ? s : r->m->cfg.causal ? i + 1 : e;
}

// Keys [*k0, *k1) that any query of the block [i0, i1) of row b reads.
static void block_keys(const mech_run *r, int b, int i0, int i1, int *k0, int *k1) {
    int s, e;
    row_span(r, b, &s, &e);
    *k0 = s;
    *k1 = r->m->cfg.causal ? (i1 < e ? i1 : e) : e;
    if (*k1 < s || i1 <= s || i0 >= e) *k1 = s;
}

// S[i - i0, t - k0] = q_i k_t / sqrt(HS) for i in [i0, i1), t in [k0, k1),
// rows of S lds apart. Each value depends only on q_i and k_t, so a padded
// row gets the same scores as the sequence alone.
static void scores_block(const attn_job *j, int b, int h, int i0, int i1, int k0, int k1, float *S, int lds) {
    const mech_config *c = &j->r->m->cfg;
    int T = j->r->T, A = c->n_heads * c->d_head, HS = c->d_head;
    if (k1 <= k0) return;
    const float *q = j->Q + ((size_t)b * T + i0) * A + (size_t)h * HS;
    const float *k = j->K + ((size_t)b * T + k0) * A + (size_t)h * HS;
    mech_matmul_nt(NULL, S, lds, q, A, k, A, NULL, i1 - i0, HS, k1 - k0);
    float scale = (float)sqrt((double)HS);
    for (int i = 0; i < i1 - i0; i++)
        for (int t = 0; t < k1 - k0; t++) S[(size_t)i * lds + t] /= scale;
}

// z[i0:i1] = P[i0:i1, k0:k1] @ v[k0:k1], P's column k0 at P[0].
static void pv_block(const attn_job *j, int b, int h, int i0, int i1, int k0, int k1, const float *P, int ldp) {
    const mech_config *c = &j->r->m->cfg;
    int T = j->r->T, A = c->n_heads * c->d_head, HS = c->d_head;
    float *z = j->Z + ((size_t)b * T + i0) * A + (size_t)h * HS;
    if (k1 <= k0) {
        for (int i = 0; i < i1 - i0; i++) memset(z + (size_t)i * A, 0, (size_t)HS * sizeof *z);
        return;
    }
    const float *v = j->V + ((size_t)b * T + k0) * A + (size_t)h * HS;
    mech_matmul(NULL, z, A, P, ldp, v, A, NULL, i1 - i0, k1 - k0, HS);
}

// Softmax of one pattern row whose keys [kb0, kb0 + width) are at row[0..width):
// over the query's own keys, everything else 0.
static void softmax_row(const mech_run *r, int b, int i, int kb0, float *row, int width) {
    int k0, k1;
    query_keys(r, b, i, &k0, &k1);
    int n = k1 - k0, off = k0 - kb0; // n >= 0, 0 for a padding query
    if (n > 0) mech_vec_softmax(row + off, (size_t)n);
    if (off > 0) memset(row, 0, (size_t)off * sizeof *row);
    if (off + n < width) memset(row + off + n, 0, (size_t)(width - off - n) * sizeof *row);
}

static void attn_fused_task(void *ctx, int task, int thread) {
    attn_job *j = ctx;
    mech_run *r = j->r;
    int b, h, i0, i1, k0, k1;
    attn_coords(j, task, &b, &h, &i0, &i1);
    block_keys(r, b, i0, i1, &k0, &k1);
    int nk = k1 - k0;
    size_t bytes = (size_t)QB * r->T * sizeof(float);
    float *S = NULL, *own = NULL;
    if (nk > 0) {
        S = mech_pool_scratch(r->pool, thread, bytes);
        if (!S && !(S = own = mech_malloc_aligned(bytes))) {
            atomic_store(&j->oom, 1);
            return;
        }
        scores_block(j, b, h, i0, i1, k0, k1, S, nk);
        for (int i = i0; i < i1; i++) softmax_row(r, b, i, k0, S + (size_t)(i - i0) * nk, nk);
        if (j->P) { // grad mode: the pattern, for the backward (packed, streamed: read only there)
            const mech_config *c = &r->m->cfg;
            mech_copy_stream(j->P + pattern_block_at(r->T, c->causal, c->n_heads, b, h, i0), S,
                             (size_t)(i1 - i0) * (size_t)nk);
        }
    }
    pv_block(j, b, h, i0, i1, k0, k1, S, nk);
    mech_free_aligned(own);
}

static float *s_rows(const attn_job *j, int b, int h, int i0) {
    const mech_config *c = &j->r->m->cfg;
    size_t T = (size_t)j->r->T;
    return j->S + (((size_t)b * c->n_heads + h) * T + (size_t)i0) * T;
}

// Scores in full rows of T, -inf where the query does not look (TransformerLens's masked value).
static void attn_scores_task(void *ctx, int task) {
    attn_job *j = ctx;
    int b, h, i0, i1, k0, k1, T = j->r->T;
    attn_coords(j, task, &b, &h, &i0, &i1);
    float *S = s_rows(j, b, h, i0);
    block_keys(j->r, b, i0, i1, &k0, &k1);
    scores_block(j, b, h, i0, i1, k0, k1, S + k0, T);
    for (int i = i0; i < i1; i++) {
        int q0, q1;
        query_keys(j->r, b, i, &q0, &q1);
        float *row = S + (size_t)(i - i0) * T;
        for (int t = 0; t < T; t++)
            if (t < q0 || t >= q1) row[t] = -INFINITY;
    }
}

static void attn_softmax_task(void *ctx, int task) {
    attn_job *j = ctx;
    int b, h, i0, i1, T = j->r->T;
    attn_coords(j, task, &b, &h, &i0, &i1);
    float *S = s_rows(j, b, h, i0);
    // The copy from the scores is done here, row by row while the row is
    // in cache, rather than as one pass over the whole tensor.
    const float *src = j->scores ? j->scores + (S - j->S) : NULL;
    int s, e;
    row_span(j->r, b, &s, &e);
    for (int i = i0; i < i1; i++) {
        float *row = S + (size_t)(i - i0) * T;
        if (src) memcpy(row, src + (size_t)(i - i0) * T, (size_t)T * sizeof(float));
        if (!j->full_rows) {
            softmax_row(j->r, b, i, 0, row, T);
            continue;
        }
        // A hook may have changed masked scores: softmax over the row's
        // real keys (all T when unpadded); padding stays out of reach.
        if (i < s || i >= e) {
            memset(row, 0, (size_t)T * sizeof(float));
            continue;
        }
        mech_vec_softmax(row + s, (size_t)(e - s));
        memset(row, 0, (size_t)s * sizeof(float));
        memset(row + e, 0, (size_t)(T - e) * sizeof(float));
    }
}

static void attn_pv_task(void *ctx, int task) {
    attn_job *j = ctx;
    int b, h, i0, i1, k0, k1, T = j->r->T;
    attn_coords(j, task, &b, &h, &i0, &i1);
    // In a causal model the pattern above the diagonal is taken as zero.
    block_keys(j->r, b, i0, i1, &k0, &k1);
    pv_block(j, b, h, i0, i1, k0, k1, s_rows(j, b, h, i0) + k0, T);
}

// Scores and/or pattern are cached but no hook reads them: each task does
// scores, softmax and p@v on its rows while they are in cache, writing the
// rows into the cache buffers on the way.
static void attn_cached_task(void *ctx, int task) {
    attn_job *j = ctx;
    int b, h, i0, i1, k0, k1, T = j->r->T;
    attn_coords(j, task, &b, &h, &i0, &i1);
    float *P = s_rows(j, b, h, i0);
    float *S = j->scores ? (float *)j->scores + (P - j->S) : P;
    block_keys(j->r, b, i0, i1, &k0, &k1);
    scores_block(j, b, h, i0, i1, k0, k1, S + k0, T);
    for (int i = i0; i < i1; i++) {
        float *srow = S + (size_t)(i - i0) * T, *prow = P + (size_t)(i - i0) * T;
        int q0, q1;
        query_keys(j->r, b, i, &q0, &q1);
        for (int t = 0; t < T; t++)
            if (t < q0 || t >= q1) srow[t] = -INFINITY;
        if (prow != srow && q1 > q0) memcpy(prow + q0, srow + q0, (size_t)(q1 - q0) * sizeof(float));
        softmax_row(j->r, b, i, 0, prow, T);
    }
    pv_block(j, b, h, i0, i1, k0, k1, P + k0, T);
}

// Returns 0, 1 when a hook asked to stop, -1 when out of memory.
static int attention(mech_run *r, int layer, const float *Q, const float *K, const float *V, float *Z) {
    const mech_config *c = &r->m->cfg;
    attn_job j = {.r = r, .Q = Q, .K = K, .V = V, .Z = Z, .nqb = (r->T + QB - 1) / QB};
    int tasks = r->B * c->n_heads * j.nqb;
    hook_point *ps = pt(r, layer, HK_SCORES), *pp = pt(r, layer, HK_PATTERN);
    if (!active(ps) && !active(pp)) {
        j.P = r->pat_store ? r->pat_store[layer] : NULL;
        atomic_init(&j.oom, 0);
        mech_pool_run(r->pool, tasks, attn_fused_task, &j);
        return atomic_load(&j.oom) ? -1 : 0;
    }
    if (!ps->n_fns && !pp->n_fns) {
        j.S = pbuf(r, pp);
        j.scores = active(ps) ? pbuf(r, ps) : NULL;
        mech_pool_for(r->pool, tasks, attn_cached_task, &j);
        return 0;
    }
    float *S = active(ps) ? pbuf(r, ps) : pbuf(r, pp);
    j.S = S;
    mech_pool_for(r->pool, tasks, attn_scores_task, &j);
    if (active(ps)) {
        if (fire(ps, S)) return 1;
        j.scores = S;
        j.S = pbuf(r, pp);
        j.full_rows = ps->n_fns > 0;
    }
    mech_pool_for(r->pool, tasks, attn_softmax_task, &j);
    if (fire(pp, j.S)) return 1;
    mech_pool_for(r->pool, tasks, attn_pv_task, &j);
    return 0;
}

// ---------------------------------------------------------------------------
// Blocks

static void broadcast_heads(float *dst, const float *x, size_t rows, int NH, size_t C) {
    for (size_t i = 0; i < rows; i++)
        for (int h = 0; h < NH; h++) memcpy(dst + (i * NH + h) * C, x + i * C, C * sizeof(float));
}

// q, k, v from per-head copies of the residual (hook_q_input & co.).
static int split_qkv(mech_run *r, int l, const float *R) {
    const mech_config *c = &r->m->cfg;
    const mech_layer_weights *w = &r->m->layers[l];
    size_t rows = (size_t)r->B * r->T, C = (size_t)c->d_model;
    int NH = c->n_heads, HS = c->d_head, A = NH * HS;
    for (int which = 0; which < 3; which++) {
        hook_point *pin = pt(r, l, HK_Q_INPUT + which), *pout = pt(r, l, HK_Q + which);
        float *X = pbuf(r, pin), *out = pbuf(r, pout);
        broadcast_heads(X, R, rows, NH, C);
        if (fire(pin, X)) return 1;
        const float *in = X;
        if (c->norm == MECH_NORM_LAYERNORM) {
            // Each head's input gets its own LayerNorm, as TransformerLens
            // does with split inputs; the ln1 hooks do not fire here.
            float *scale = r->scratch[HK_LN1_SCALE]; // never a cache: scales of split inputs are not hooked
            for (int h = 0; h < NH; h++) {
                rows_job j = {.fn = ln_rows, .out = scale, .out2 = r->ln_out, .rows = rows, .width = C, .eps = c->ln_eps};
                // gather head h's rows contiguously through ln_out
                for (size_t i = 0; i < rows; i++) memcpy(r->split_norm + i * C, X + (i * NH + h) * C, C * sizeof(float));
                j.a = r->split_norm;
                run_rows(r, &j);
                rows_job a = {.fn = affine_rows, .a = r->ln_out, .out = r->split_norm + rows * C, .w = w->ln1_w,
                              .bias = w->ln1_b, .rows = rows, .width = C};
                run_rows(r, &a);
                mech_matmul(r->pool, out + (size_t)h * HS, A, r->split_norm + rows * C, (int)C,
                            w->qkv_w + (size_t)which * A + (size_t)h * HS, 3 * A,
                            w->qkv_b + (size_t)which * A + (size_t)h * HS, (int)rows, (int)C, HS);
            }
        } else {
            for (int h = 0; h < NH; h++)
                mech_matmul(r->pool, out + (size_t)h * HS, A, in + (size_t)h * C, NH * (int)C,
                            w->qkv_w + (size_t)which * A + (size_t)h * HS, 3 * A,
                            w->qkv_b + (size_t)which * A + (size_t)h * HS, (int)rows, (int)C, HS);
        }
    }
    return 0;
}

static void sum_heads_rows(rows_job *j, size_t r0, size_t r1) {
    // attn_out = sum_h result[:, h] + b_O
    size_t C = j->width;
    int NH = j->heads;
    for (size_t i = r0; i < r1; i++) {
        float *y = j->out + i * C;
        for (size_t k = 0; k < C; k++) y[k] = j->bias[k];
        for (int h = 0; h < NH; h++) {
            const float *x = j->a + (i * NH + h) * C;
            for (size_t k = 0; k < C; k++) y[k] += x[k];
        }
    }
}

// Runs block l on residual x; returns the block's resid_post buffer, or NULL
// when a hook asked to stop.
static const float *block(mech_run *r, int l, const float *x) {
    const mech_config *c = &r->m->cfg;
    const mech_layer_weights *w = &r->m->layers[l];
    size_t rows = (size_t)r->B * r->T, C = (size_t)c->d_model;
    int NH = c->n_heads, HS = c->d_head, A = NH * HS, stop = 0;
    hook_point *p_pre = pt(r, l, HK_RESID_PRE);
    float *R = pbuf(r, p_pre);
    if (R != x) memcpy(R, x, rows * C * sizeof(float));
    if (fire(p_pre, R)) return NULL;

    hook_point *pq = pt(r, l, HK_Q), *pk = pt(r, l, HK_K), *pv = pt(r, l, HK_V);
    float *Q = pbuf(r, pq), *K = pbuf(r, pk), *V = pbuf(r, pv);
    if (active(pt(r, l, HK_Q_INPUT)) || active(pt(r, l, HK_K_INPUT)) || active(pt(r, l, HK_V_INPUT))) {
        if (split_qkv(r, l, R)) return NULL;
    } else {
        const float *in = layer_norm(r, R, w->ln1_w, w->ln1_b, l, HK_LN1_SCALE, HK_LN1_NORM, &stop);
        if (stop) return NULL;
        mech_matmul(r->pool, Q, A, in, (int)C, w->qkv_w, 3 * A, w->qkv_b, (int)rows, (int)C, A);
        mech_matmul(r->pool, K, A, in, (int)C, w->qkv_w + A, 3 * A, w->qkv_b + A, (int)rows, (int)C, A);
        mech_matmul(r->pool, V, A, in, (int)C, w->qkv_w + 2 * A, 3 * A, w->qkv_b + 2 * A, (int)rows, (int)C, A);
    }
    if (fire(pq, Q) || fire(pk, K) || fire(pv, V)) return NULL;

    hook_point *pz = pt(r, l, HK_Z);
    float *Z = pbuf(r, pz);
    int a = attention(r, l, Q, K, V, Z);
    if (a < 0) r->oom = 1;
    if (a || fire(pz, Z)) return NULL;

    hook_point *pres = pt(r, l, HK_RESULT), *pao = pt(r, l, HK_ATTN_OUT);
    float *AO = pbuf(r, pao);
    if (active(pres)) {
        float *Res = pbuf(r, pres);
        for (int h = 0; h < NH; h++)
            mech_matmul(r->pool, Res + (size_t)h * C, NH * (int)C, Z + (size_t)h * HS, A,
                        w->o_w + (size_t)h * HS * C, (int)C, NULL, (int)rows, HS, (int)C);
        if (fire(pres, Res)) return NULL;
        rows_job j = {.fn = sum_heads_rows, .out = AO, .a = Res, .bias = w->o_b, .rows = rows, .width = C, .heads = NH};
        run_rows(r, &j);
    } else {
        mech_matmul(r->pool, AO, (int)C, Z, A, w->o_w, (int)C, w->o_b, (int)rows, A, (int)C);
    }
    if (fire(pao, AO)) return NULL;

    if (c->attn_only) {
        hook_point *ppost = pt(r, l, HK_RESID_POST);
        float *P = pbuf(r, ppost);
        add(r, P, R, AO, rows, C);
        return fire(ppost, P) ? NULL : P;
    }
    hook_point *pmid = pt(r, l, HK_RESID_MID);
    float *Mid = pbuf(r, pmid);
    add(r, Mid, R, AO, rows, C);
    if (fire(pmid, Mid)) return NULL;
    const float *mlp_in = Mid;
    hook_point *pmi = pt(r, l, HK_MLP_IN);
    if (active(pmi)) {
        float *MI = pbuf(r, pmi);
        memcpy(MI, Mid, rows * C * sizeof(float));
        if (fire(pmi, MI)) return NULL;
        mlp_in = MI;
    }
    const float *in = layer_norm(r, mlp_in, w->ln2_w, w->ln2_b, l, HK_LN2_SCALE, HK_LN2_NORM, &stop);
    if (stop) return NULL;
    int M = c->d_mlp;
    hook_point *ppre = pt(r, l, HK_MLP_PRE), *ppost_act = pt(r, l, HK_MLP_POST), *pout = pt(r, l, HK_MLP_OUT);
    float *Pre = pbuf(r, ppre), *Post = pbuf(r, ppost_act), *Out = pbuf(r, pout);
    mech_matmul(r->pool, Pre, M, in, (int)C, w->fc_w, M, w->fc_b, (int)rows, (int)C, M);
    if (fire(ppre, Pre)) return NULL;
    rows_job aj = {.fn = act_rows, .out = Post, .a = Pre, .rows = rows, .width = (size_t)M, .act = c->act};
    if (r->act_grad && r->act_grad[l] && c->act == MECH_ACT_GELU_NEW) aj.fn = act_grad_rows, aj.out2 = r->act_grad[l];
    run_rows(r, &aj);
    if (fire(ppost_act, Post)) return NULL;
    mech_matmul(r->pool, Out, (int)C, Post, M, w->proj_w, (int)C, w->proj_b, (int)rows, M, (int)C);
    if (fire(pout, Out)) return NULL;
    hook_point *ppost = pt(r, l, HK_RESID_POST);
    float *P = pbuf(r, ppost);
    add(r, P, Mid, Out, rows, C);
    return fire(ppost, P) ? NULL : P;
}

// ---------------------------------------------------------------------------
// The forward pass

static mech_status prepare(mech_run *r, mech_err *err) {
    const mech_config *c = &r->m->cfg;
    mech_status rc;
    int need[HK_COUNT] = {0};
    for (int i = 0; i < r->n_pts; i++)
        if (r->pts[i].exists && active(&r->pts[i])) need[r->pts[i].kind] = 1;
    if ((need[HK_EMBED] || need[HK_POS_EMBED]) &&
        ((rc = alloc_scratch(r, HK_EMBED, err)) || (rc = alloc_scratch(r, HK_POS_EMBED, err))))
        return rc;
    if (need[HK_SCORES] || need[HK_PATTERN]) {
        if ((rc = alloc_scratch(r, HK_PATTERN, err))) return rc;
        if (need[HK_SCORES] && (rc = alloc_scratch(r, HK_SCORES, err))) return rc;
    }
    if (need[HK_RESULT] && (rc = alloc_scratch(r, HK_RESULT, err))) return rc;
    if (need[HK_MLP_IN] && (rc = alloc_scratch(r, HK_MLP_IN, err))) return rc;
    if (need[HK_Q_INPUT] || need[HK_K_INPUT] || need[HK_V_INPUT]) {
        if ((rc = alloc_scratch(r, HK_Q_INPUT, err))) return rc;
        r->scratch[HK_K_INPUT] = r->scratch[HK_V_INPUT] = r->scratch[HK_Q_INPUT];
        if (!r->split_norm) {
            r->split_norm = mech_malloc_aligned((size_t)2 * r->B * r->T * c->d_model * sizeof(float));
            if (!r->split_norm) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for split q/k/v inputs");
        }
    }
    if (!r->scratch[HK_RESID_POST] && (rc = alloc_scratch(r, HK_RESID_POST, err))) return rc;
    return MECH_OK;
}

// The positional embedding row of token t of row b: its position within its
// own sequence (a left-padded row starts at its first real token, as
// TransformerLens counts positions from the attention mask), or NULL for
// padding, whose positional embedding is 0 (TransformerLens's choice too).
static const float *pos_row(const mech_run *r, int b, int t) {
    int s, e;
    row_span(r, b, &s, &e);
    return t < s || t >= e ? NULL : r->m->wpe + (size_t)(t - s) * r->m->cfg.d_model;
}

static const float *embed(mech_run *r, const int32_t *ids, float *x) {
    const mech_config *c = &r->m->cfg;
    size_t C = (size_t)c->d_model;
    int T = r->T;
    hook_point *pe = pt(r, -1, HK_EMBED), *pp = pt(r, -1, HK_POS_EMBED);
    if (!active(pe) && !active(pp)) {
        for (int b = 0; b < r->B; b++)
            for (int t = 0; t < T; t++) {
                const float *e = r->m->wte + (size_t)ids[b * T + t] * C, *p = pos_row(r, b, t);
                float *y = x + ((size_t)b * T + t) * C;
                if (p) for (size_t k = 0; k < C; k++) y[k] = e[k] + p[k];
                else for (size_t k = 0; k < C; k++) y[k] = e[k] + 0.0f;
            }
        return x;
    }
    float *E = pbuf(r, pe), *P = pbuf(r, pp);
    for (int b = 0; b < r->B; b++)
        for (int t = 0; t < T; t++) {
            const float *p = pos_row(r, b, t);
            memcpy(E + ((size_t)b * T + t) * C, r->m->wte + (size_t)ids[b * T + t] * C, C * sizeof(float));
            if (p) memcpy(P + ((size_t)b * T + t) * C, p, C * sizeof(float));
            else memset(P + ((size_t)b * T + t) * C, 0, C * sizeof(float));
        }
    if (fire(pe, E) || fire(pp, P)) return NULL;
    add(r, x, E, P, (size_t)r->B * T, C);
    return x;
}

// Padding positions read 0 in the logits and in every cached activation of
// shape (B, T, ...), so that nothing computed from a padding token reaches a
// result (patterns and scores are already 0 and -inf there).
static void clear_padding(mech_run *r) {
    if (!r->row_start) return;
    for (size_t i = 0; i < r->n_cached + 1; i++) {
        const mech_tensor *t = i < r->n_cached ? &r->cached[i] : NULL;
        float *data = t ? t->data : r->logits_valid ? r->logits : NULL;
        if (!data || (t && (t->ndim < 2 || t->shape[1] != r->T || strstr(t->name, "hook_attn_scores") ||
                            strstr(t->name, "hook_pattern"))))
            continue;
        size_t width = t ? mech_tensor_numel(t) / ((size_t)r->B * r->T) : (size_t)r->m->cfg.d_vocab;
        // restricted logits: positions p0 .. p0+np-1 of each row (the last real token is never padding)
        int p0 = !t && r->lg_n ? r->lg_first : 0, np = !t && r->lg_n ? r->lg_n : r->T;
        if (p0 < 0) continue;
        for (int b = 0; b < r->B; b++) {
            int s, e;
            row_span(r, b, &s, &e);
            for (int pos = p0; pos < p0 + np; pos++)
                if (pos < s || pos >= e) memset(data + ((size_t)b * np + pos - p0) * width, 0, width * sizeof(float));
        }
    }
}

mech_status mech_run_forward(mech_run *r, const int32_t *ids, mech_err *err) {
    return mech_run_forward_ex(r, ids, NULL, err);
}

mech_status mech_run_forward_ex(mech_run *r, const int32_t *ids, const mech_run_opts *opts, mech_err *err) {
    const mech_config *c = &r->m->cfg;
    int L = c->n_layers, start = opts ? opts->start_layer : 0;
    int stop = opts && opts->stop_layer > 0 && opts->stop_layer < L ? opts->stop_layer : L;
    size_t rows = (size_t)r->B * r->T, C = (size_t)c->d_model;
    r->logits_valid = 0;
    r->resid_end = NULL;
    if (start < 0 || start > L || start > stop)
        return mech_err_set(err, MECH_ERR_RANGE, "start layer %d, stop layer %d: expected 0 <= start <= stop <= %d", start, stop, L);
    if (start > 0 && !opts->start_resid)
        return mech_err_set(err, MECH_ERR_ARG, "starting at block %d needs its resid_pre (B, T, d_model)", start);
    if (start == 0) {
        if (!ids) return mech_err_set(err, MECH_ERR_ARG, "no token ids given");
        for (size_t i = 0; i < rows; i++)
            if (ids[i] < 0 || ids[i] >= c->d_vocab)
                return mech_err_set(err, MECH_ERR_RANGE,
                                    "token id %d (sequence %zu, position %zu) is outside the model's vocabulary of %d tokens",
                                    (int)ids[i], i / (size_t)r->T + 1, i % (size_t)r->T + 1, c->d_vocab);
    }
    mech_status rc = prepare(r, err);
    if (rc) return rc;
    if (r->grad && (rc = grad_forward_begin(r, start, ids, err))) return rc;
    // The residual enters block `start` in that block's resid_pre buffer.
    float *x0 = start < L ? pbuf(r, pt(r, start, HK_RESID_PRE)) : r->scratch[HK_RESID_POST];
    const float *x;
    if (start == 0) {
        x = embed(r, ids, x0);
        if (!x) return mech_err_set(err, MECH_ERR_CANCELLED, "a hook stopped the run at the embedding");
    } else {
        memcpy(x0, opts->start_resid, rows * C * sizeof(float));
        x = x0;
    }
    for (int l = start; l < stop; l++) {
        if (mech_cancel_pending()) return mech_err_set(err, MECH_ERR_CANCELLED, "interrupted before block %d", l);
        r->oom = 0;
        x = block(r, l, x);
        if (!x && r->oom) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for attention in block %d", l);
        if (!x) return mech_err_set(err, MECH_ERR_CANCELLED, "a hook stopped the run in block %d", l);
    }
    r->resid_end = x;
    if (stop < L) {
        clear_padding(r);
        return MECH_OK;
    }
    int halt = 0;
    const float *in = layer_norm(r, x, r->m->lnf_w, r->m->lnf_b, -1, HK_LNF_SCALE, HK_LNF_NORM, &halt);
    if (halt) return mech_err_set(err, MECH_ERR_CANCELLED, "a hook stopped the run at ln_final");
    if (r->lg_n) {
        // Only the rows asked for, gathered so that one product streams the
        // unembedding once. Each logit is the same sum in the same order as
        // in the full product (a row's result does not depend on the others).
        int n = r->lg_n;
        size_t m = (size_t)r->B * n;
        const float *src = in + (size_t)(r->lg_first > 0 ? r->lg_first : 0) * C;
        float *g = NULL;
        if (r->B > 1 || r->lg_first < 0) {
            if (!(g = mech_malloc_aligned(m * C * sizeof(float)))) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the logits");
            for (int b = 0; b < r->B; b++) {
                int s, e;
                row_span(r, b, &s, &e);
                int p0 = r->lg_first < 0 ? (e > s ? e - 1 : r->T - 1) : r->lg_first;
                memcpy(g + (size_t)b * n * C, in + ((size_t)b * r->T + p0) * C, (size_t)n * C * sizeof(float));
            }
            src = g;
        }
        mech_matmul_nt(r->pool, r->logits, c->d_vocab, src, (int)C, r->m->unembed, (int)C, r->m->unembed_b, (int)m,
                       (int)C, c->d_vocab);
        mech_free_aligned(g);
    } else {
        mech_matmul_nt(r->pool, r->logits, c->d_vocab, in, (int)C, r->m->unembed, (int)C, r->m->unembed_b,
                       (int)rows, (int)C, c->d_vocab);
    }
    r->logits_valid = 1;
    clear_padding(r);
    if (r->grad) grad_forward_end(r);
    return MECH_OK;
}
