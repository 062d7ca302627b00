/*
** interp/patch_attrib.c: attribution patching (Nanda 2023, "Attribution
** patching: activation patching at industrial scale") for every sweep of
** interp/patch.c and for path patching: a first-order estimate of every
** cell at once (see interp/interp.h and docs/patching.md).
**
** A cell of an exact sweep is the metric of the corrupted run with one
** activation a replaced by its clean value ("denoising"). Its first-order
** Taylor expansion around the corrupted run is
**
**   raw ~ m(corrupted) + sum over the patched elements of
**         (a_clean - a_corrupted) * dm/da  (gradient on the corrupted run)
**
** so one clean forward (the activations), one corrupted forward in grad
** mode and one backward give every cell of the sweep. The gradient is taken
** on the corrupted run, as the exact cell patches into that run (Nanda's
** attribution patching notebook does the same); it is exact wherever the
** metric is linear in the patched activation.
**
** Path patching: a receiver's input is fixed at corrupted resid_pre +
** (clean - corrupted) sender result, so the other receivers do not see a
** receiver's change through their own patched input. The backward hooks at
** the receivers' inputs copy each receiver's gradient and zero it, so that
** gradients reaching earlier receivers leave out the paths through later
** receivers' inputs, as the exact patch does.
**
** Invariant: the pairs are the B rows of one batch and never interact (every
** op of the forward is per row), so a pair's cells do not depend on the
** other pairs of the batch.
*/
#include "interp/interp.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const attrib_hook[MECH_PATCH_SITE_COUNT_] = {
    "hook_resid_pre", "hook_resid_mid", "hook_attn_out", "hook_mlp_out", "attn.hook_z",
    "attn.hook_z",    "attn.hook_q",    "attn.hook_k",   "attn.hook_v",  "attn.hook_pattern",
};
static const char *const attrib_input[3] = {"hook_q_input", "hook_k_input", "hook_v_input"};

// One batch of pairs: the two runs and each row's factor from the backward's
// batch-mean gradient to that pair's own metric's gradient.
typedef struct attrib {
    const mech_model *m;
    const mech_patch_pairs *pp;
    mech_patch_metric metric;
    int B, T, pos;
    mech_run *clean, *corr; // clean: activations; corr: grad mode
    double *scale;          // (B)
    // path patching
    const mech_patch_receiver *recv; // deduplicated
    int n_recv;
    float *g_recv;                   // (n_recv, B, T, C) each receiver's input gradient
} attrib;

static mech_status check_pairs(const mech_model *m, const mech_patch_pairs *pp, mech_patch_metric metric,
                               mech_err *err) {
    const mech_config *c = &m->cfg;
    if (!pp || !pp->clean || !pp->corrupt)
        return mech_err_set(err, MECH_ERR_ARG, "attribution patching: clean and corrupted tokens are required");
    if (pp->B < 1 || pp->T < 1)
        return mech_err_set(err, MECH_ERR_ARG, "attribution patching: %d pairs of %d tokens: both must be >= 1", pp->B,
                            pp->T);
    if (pp->T > c->n_ctx)
        return mech_err_set(err, MECH_ERR_RANGE, "prompts of %d tokens exceed the model's context of %d", pp->T, c->n_ctx);
    if ((unsigned)metric >= MECH_PATCH_METRIC_COUNT_)
        return mech_err_set(err, MECH_ERR_ARG, "unknown patching metric %d", (int)metric);
    if (pp->pos >= pp->T)
        return mech_err_set(err, MECH_ERR_RANGE, "metric position %d is past the prompts' %d tokens", pp->pos, pp->T);
    for (int b = 0; b < pp->B; b++) {
        if (metric != MECH_PATCH_KL && (!pp->answer || pp->answer[b] < 0 || pp->answer[b] >= c->d_vocab))
            return mech_err_set(err, MECH_ERR_RANGE, "pair %d: answer token %d is outside the vocabulary of %d tokens",
                                b + 1, pp->answer ? (int)pp->answer[b] : -1, c->d_vocab);
        if (metric == MECH_PATCH_LOGIT_DIFF && (!pp->wrong || pp->wrong[b] < 0 || pp->wrong[b] >= c->d_vocab))
            return mech_err_set(err, MECH_ERR_RANGE,
                                "pair %d: wrong-answer token %d is outside the vocabulary of %d tokens", b + 1,
                                pp->wrong ? (int)pp->wrong[b] : -1, c->d_vocab);
    }
    for (int i = 0; i < pp->B * pp->T; i++)
        if (pp->clean[i] < 0 || pp->clean[i] >= c->d_vocab || pp->corrupt[i] < 0 || pp->corrupt[i] >= c->d_vocab)
            return mech_err_set(err, MECH_ERR_RANGE, "pair %d, position %d: token id outside the vocabulary of %d",
                                i / pp->T + 1, i % pp->T + 1, c->d_vocab);
    return MECH_OK;
}

static void attrib_deinit(attrib *a) {
    mech_run_free(a->clean);
    mech_run_free(a->corr);
    mech_free(a->scale);
    mech_free(a->g_recv);
}

// Path patching's backward hook at blocks.l.hook_{q,k,v}_input ([B, T, NH, C]).
typedef struct recv_hook {
    attrib *a;
    int layer;
    mech_patch_input input;
} recv_hook;

static int recv_grad_fn(mech_tensor *g, int layer, void *user) {
    const recv_hook *h = user;
    attrib *a = h->a;
    const mech_config *c = &a->m->cfg;
    size_t C = (size_t)c->d_model, NH = (size_t)c->n_heads, BT = (size_t)a->B * a->T;
    (void)layer;
    for (int i = 0; i < a->n_recv; i++) {
        const mech_patch_receiver *r = &a->recv[i];
        if (r->layer != h->layer || r->input != h->input) continue;
        float *dst = a->g_recv + (size_t)i * BT * C;
        for (size_t bt = 0; bt < BT; bt++) {
            float *src = g->data + (bt * NH + (size_t)r->head) * C;
            memcpy(dst + bt * C, src, C * sizeof(float));
            memset(src, 0, C * sizeof(float)); // the input is fixed: nothing flows through it
        }
    }
    return 0;
}

// The clean forward, the corrupted forward in grad mode and the backward.
// glob: the activations both runs cache (and the corrupted run's gradients,
// unless hooks is set: path patching's receiver hooks).
static mech_status attrib_run(attrib *a, const char *glob, recv_hook *hooks, int n_hooks, mech_patch_result *out,
                              mech_err *err) {
    const mech_patch_pairs *pp = a->pp;
    const mech_config *c = &a->m->cfg;
    int B = pp->B, T = pp->T, V = c->d_vocab;
    mech_status rc;
    a->B = B, a->T = T, a->pos = pp->pos < 0 ? T - 1 : pp->pos;
    a->scale = mech_malloc((size_t)B * sizeof(double));
    if (!a->scale) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    if ((rc = mech_run_new(a->m, B, T, &a->clean, err)) || (rc = mech_run_new(a->m, B, T, &a->corr, err)) ||
        (rc = mech_run_cache(a->clean, glob, err)) || (rc = mech_run_cache(a->corr, glob, err)) ||
        (rc = mech_run_enable_grad(a->corr, MECH_GRAD_ACTS, err)))
        return rc;
    if (!hooks && (rc = mech_run_cache_grad(a->corr, glob, err))) return rc;
    for (int i = 0; i < n_hooks; i++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.%s", hooks[i].layer, attrib_input[hooks[i].input]);
        if ((rc = mech_run_grad_hook(a->corr, name, recv_grad_fn, &hooks[i], err))) return rc;
    }
    if ((rc = mech_run_forward(a->clean, pp->clean, err)) || (rc = mech_run_forward(a->corr, pp->corrupt, err)))
        return rc;
    const float *lc = mech_run_logits(a->clean), *lx = mech_run_logits(a->corr); // (B, T, V)
    // Probability's gradient is p(answer) times log-probability's, row by row.
    mech_metric mt = {.kind = a->metric == MECH_PATCH_LOGIT_DIFF ? MECH_METRIC_LOGIT_DIFF
                              : a->metric == MECH_PATCH_KL   ? MECH_METRIC_KL
                                                             : MECH_METRIC_LOGPROB,
                      .pos = a->pos};
    if (a->metric != MECH_PATCH_KL) mt.answer = pp->answer;
    if (a->metric == MECH_PATCH_LOGIT_DIFF) mt.wrong = pp->wrong;
    if (a->metric == MECH_PATCH_KL) mt.ref_logits = lc;
    for (int b = 0; b < B; b++) {
        const float *rc_ = lc + ((size_t)b * T + a->pos) * V, *rx = lx + ((size_t)b * T + a->pos) * V;
        int32_t ans = pp->answer ? pp->answer[b] : 0, wr = pp->wrong ? pp->wrong[b] : 0;
        out[b].clean = mech_patch_metric_eval(a->metric, rc_, rc_, V, ans, wr);
        out[b].corrupted = mech_patch_metric_eval(a->metric, rx, rc_, V, ans, wr);
        // the backward's metric is the mean over the B rows
        a->scale[b] = (double)B * (a->metric == MECH_PATCH_PROB ? out[b].corrupted : 1.0);
    }
    return mech_run_backward(a->corr, &mt, NULL, err);
}

static mech_status result_init(mech_patch_result *r, int ndim, int64_t d0, int64_t d1, int64_t d2, mech_err *err) {
    r->ndim = ndim;
    r->shape[0] = d0, r->shape[1] = d1, r->shape[2] = ndim == 3 ? d2 : 0;
    size_t cells = (size_t)d0 * (size_t)d1 * (ndim == 3 ? (size_t)d2 : 1);
    r->raw = mech_malloc(cells * sizeof(float));
    r->norm = mech_malloc(cells * sizeof(float));
    if (!r->raw || !r->norm) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for %zu results", cells);
    for (size_t i = 0; i < cells; i++) r->raw[i] = r->norm[i] = NAN;
    return MECH_OK;
}

// A cell's estimate d (the metric's first-order change) into raw and norm.
static void put(mech_patch_result *r, int64_t cell, double d) {
    double raw = r->corrupted + d;
    r->raw[cell] = (float)raw;
    r->norm[cell] = (float)mech_patch_normalise(raw, r->clean, r->corrupted);
    r->done++;
}

static mech_status begin(const mech_model *m, const mech_patch_pairs *pp, mech_patch_metric metric,
                         mech_patch_result *out, attrib *a, mech_err *err) {
    memset(a, 0, sizeof *a);
    a->m = m, a->pp = pp, a->metric = metric;
    if (out && pp && pp->B > 0) memset(out, 0, (size_t)pp->B * sizeof *out);
    if (!m || !out) return mech_err_set(err, MECH_ERR_ARG, "attribution patching: model and results are required");
    return check_pairs(m, pp, metric, err);
}

mech_status mech_patch_attrib_sweep(const mech_model *m, const mech_patch_pairs *pp, mech_patch_metric metric,
                                    mech_patch_site site, mech_patch_result *out, mech_err *err) {
    attrib a;
    mech_status rc = begin(m, pp, metric, out, &a, err);
    if (rc) return rc;
    const mech_config *c = &m->cfg;
    if ((unsigned)site >= MECH_PATCH_SITE_COUNT_)
        return mech_err_set(err, MECH_ERR_ARG, "unknown patching site %d", (int)site);
    if (c->attn_only && (site == MECH_PATCH_RESID_MID || site == MECH_PATCH_MLP_OUT))
        return mech_err_set(err, MECH_ERR_ARG, "patching %s: an attention-only model has no %s",
                            mech_patch_site_name(site), attrib_hook[site]);
    int L = c->n_layers, T = pp->T, NH = c->n_heads, B = pp->B;
    int by_pos = site <= MECH_PATCH_MLP_OUT, by_pos_head = site == MECH_PATCH_HEAD_OUT_BY_POS;
    for (int b = 0; b < B; b++)
        if ((rc = result_init(&out[b], by_pos_head ? 3 : 2, L, by_pos || by_pos_head ? T : NH, NH, err))) goto done;
    char glob[64];
    snprintf(glob, sizeof glob, "blocks.*.%s", attrib_hook[site]);
    if ((rc = attrib_run(&a, glob, NULL, 0, out, err))) goto done;
    for (int l = 0; l < L; l++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.%s", l, attrib_hook[site]);
        const mech_tensor *tc = mech_run_get(a.clean, name), *tx = mech_run_get(a.corr, name),
                          *tg = mech_run_grad(a.corr, name);
        if (!tc || !tx || !tg) {
            rc = mech_err_set(err, MECH_ERR_ARG, "attribution patching: %s was not computed", name);
            goto done;
        }
        const float *xc = tc->data, *xx = tx->data, *gg = tg->data;
        size_t per_row = mech_tensor_numel(tc) / (size_t)B;
        for (int b = 0; b < B; b++) {
            size_t o = (size_t)b * per_row;
            if (site == MECH_PATCH_HEAD_PATTERN) { // [B, NH, T, T]: a head's whole pattern
                size_t TT = (size_t)T * T;
                for (int h = 0; h < NH; h++) {
                    double s = 0;
                    for (size_t k = o + h * TT; k < o + (h + 1) * TT; k++) s += ((double)xc[k] - xx[k]) * gg[k];
                    put(&out[b], (int64_t)l * NH + h, s * a.scale[b]);
                }
            } else if (by_pos) { // [B, T, C]: one position
                size_t C = per_row / (size_t)T;
                for (int t = 0; t < T; t++) {
                    double s = 0;
                    for (size_t k = o + t * C; k < o + (t + 1) * C; k++) s += ((double)xc[k] - xx[k]) * gg[k];
                    put(&out[b], (int64_t)l * T + t, s * a.scale[b]);
                }
            } else { // [B, T, NH, HS]: one head at one position, or summed over positions
                size_t HS = per_row / ((size_t)T * NH);
                double *sum = mech_calloc((size_t)NH, sizeof(double));
                if (!sum) {
                    rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
                    goto done;
                }
                for (int t = 0; t < T; t++)
                    for (int h = 0; h < NH; h++) {
                        double s = 0;
                        size_t k0 = o + ((size_t)t * NH + h) * HS;
                        for (size_t k = k0; k < k0 + HS; k++) s += ((double)xc[k] - xx[k]) * gg[k];
                        if (by_pos_head) put(&out[b], ((int64_t)l * T + t) * NH + h, s * a.scale[b]);
                        else sum[h] += s;
                    }
                for (int h = 0; !by_pos_head && h < NH; h++) put(&out[b], (int64_t)l * NH + h, sum[h] * a.scale[b]);
                mech_free(sum);
            }
        }
    }
done:
    attrib_deinit(&a);
    return rc;
}

mech_status mech_patch_attrib_path(const mech_model *m, const mech_patch_pairs *pp, mech_patch_metric metric,
                                   const mech_patch_receiver *recv, int n_recv, mech_patch_result *out,
                                   mech_err *err) {
    attrib a;
    mech_status rc = begin(m, pp, metric, out, &a, err);
    if (rc) return rc;
    const mech_config *c = &m->cfg;
    int L = c->n_layers, NH = c->n_heads, B = pp->B, T = pp->T;
    size_t C = (size_t)c->d_model, BT = (size_t)B * T;
    rc = mech_patch_receivers_check(c, recv, n_recv, NULL, NULL, err);
    if (rc) return rc;
    // A receiver named twice is patched once (the exact patch sets the same value twice).
    mech_patch_receiver *uniq = mech_malloc((size_t)n_recv * sizeof *uniq);
    recv_hook *hooks = mech_malloc((size_t)3 * L * sizeof *hooks);
    int n_uniq = 0, n_hooks = 0;
    if (!uniq || !hooks) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n_recv; i++) {
        int dup = 0;
        for (int j = 0; j < n_uniq; j++)
            dup |= uniq[j].layer == recv[i].layer && uniq[j].head == recv[i].head && uniq[j].input == recv[i].input;
        if (!dup) uniq[n_uniq++] = recv[i];
    }
    for (int l = 0; l < L; l++)
        for (int in = 0; in < 3; in++) {
            int any = 0;
            for (int i = 0; i < n_uniq; i++) any |= uniq[i].layer == l && (int)uniq[i].input == in;
            if (any) hooks[n_hooks++] = (recv_hook){.a = &a, .layer = l, .input = (mech_patch_input)in};
        }
    a.recv = uniq, a.n_recv = n_uniq;
    a.g_recv = mech_calloc((size_t)n_uniq * BT * C, sizeof(float));
    if (!a.g_recv) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory for %d receivers' gradients", n_uniq);
        goto done;
    }
    for (int b = 0; b < B; b++)
        if ((rc = result_init(&out[b], 2, L, NH, 0, err))) goto done;
    if ((rc = attrib_run(&a, "blocks.*.attn.hook_result", hooks, n_hooks, out, err))) goto done;
    for (int l = 0; l < L; l++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.attn.hook_result", l);
        const float *rc_ = mech_run_get(a.clean, name)->data, *rx = mech_run_get(a.corr, name)->data; // [B, T, NH, C]
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                double s = 0;
                for (int i = 0; i < n_uniq; i++) {
                    if (uniq[i].layer <= l) continue; // no path from a sender to a receiver before it
                    const float *g = a.g_recv + (size_t)i * BT * C;
                    for (int t = 0; t < T; t++) {
                        size_t bt = (size_t)b * T + t, o = (bt * NH + h) * C;
                        for (size_t k = 0; k < C; k++) s += ((double)rc_[o + k] - rx[o + k]) * g[bt * C + k];
                    }
                }
                put(&out[b], (int64_t)l * NH + h, s * a.scale[b]);
            }
    }
done:
    attrib_deinit(&a);
    mech_free(uniq);
    mech_free(hooks);
    return rc;
}
