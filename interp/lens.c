/*
** interp/lens.c: the logit lens, the decoder lens for compiled RASP models
** and direct logit attribution, over a run's cached activations.
**
** Follows TransformerLens's ActivationCache: accumulated_resid with
** apply_ln (the final LayerNorm's statistics recomputed for each residual,
** as recompute_ln=True) for the lens; decompose_resid / stack_head_results
** + apply_ln_to_stack (centred, divided by the *cached* ln_final scale) +
** logit_attrs for attribution. Formulas: docs/lens.md.
**
** Invariants: nothing here changes the run; every sum of probabilities,
** KL, entropy and projection is accumulated in double; the unembedding
** matmul is the same kernel call as the forward pass's, so the lens at the
** last layer reproduces the model's logits.
*/
#include "interp/interp.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

// ---------------------------------------------------------------------------
// Shared helpers

static const float *cached(const mech_run *run, const char *name, mech_err *err) {
    const mech_tensor *t = mech_run_get(run, name);
    if (!t) {
        mech_err_set(err, MECH_ERR_ARG, "activation '%s' is not cached (cache it before the forward pass)", name);
        return NULL;
    }
    return t->data;
}

// Residual layer l of 0..L: resid_pre of block l, or the final resid_post.
static const float *resid_layer(const mech_model *m, const mech_run *run, int l, mech_err *err) {
    char name[64];
    int L = m->cfg.n_layers;
    if (l < L) snprintf(name, sizeof name, "blocks.%d.hook_resid_pre", l);
    else snprintf(name, sizeof name, "blocks.%d.hook_resid_post", L - 1);
    return cached(run, name, err);
}

mech_status mech_lens_cache(mech_run *run, mech_err *err) {
    static const char *const need[] = {"hook_embed", "hook_pos_embed", "blocks.*.hook_resid_pre",
                                       "blocks.*.hook_resid_post", "blocks.*.attn.hook_result",
                                       "blocks.*.attn.hook_pattern"};
    // Absent from attn_only models / models without LayerNorm.
    static const char *const optional[] = {"blocks.*.hook_mlp_out", "ln_final.hook_scale"};
    mech_status st;
    for (size_t i = 0; i < sizeof need / sizeof *need; i++)
        if ((st = mech_run_cache(run, need[i], err))) return st;
    for (size_t i = 0; i < sizeof optional / sizeof *optional; i++) {
        mech_err e = {0};
        if ((st = mech_run_cache(run, optional[i], &e)) && st != MECH_ERR_ARG)
            return mech_err_set(err, st, "%s", e.msg);
    }
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Logit lens

// out[T, C] = the final LayerNorm of x[T, C] with x's own statistics (the
// identity for models without LayerNorm).
static void final_ln(const mech_model *m, float *out, const float *x, int T) {
    int C = m->cfg.d_model;
    for (int t = 0; t < T; t++) {
        const float *xi = x + (size_t)t * C;
        float *o = out + (size_t)t * C;
        if (m->cfg.norm == MECH_NORM_NONE || !m->lnf_w) {
            memcpy(o, xi, (size_t)C * sizeof *o);
            continue;
        }
        mech_vec_layernorm(o, NULL, xi, (size_t)C, m->cfg.ln_eps);
        for (int c = 0; c < C; c++) o[c] = o[c] * m->lnf_w[c] + m->lnf_b[c];
    }
}

// logp[V] = log_softmax(z[V]) in double.
static void log_softmax(double *logp, const float *z, int V) {
    double mx = -INFINITY;
    for (int i = 0; i < V; i++)
        if (z[i] > mx) mx = z[i];
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)z[i] - mx);
    double lse = mx + log(s);
    for (int i = 0; i < V; i++) logp[i] = (double)z[i] - lse;
}

// Fills the statistics of one row from its logits z[V] and log-probs.
static void lens_stats(mech_lens_row *row, const float *z, const double *logp, const double *final_logp, int V,
                       int k) {
    double ent = 0, kl = 0;
    for (int i = 0; i < V; i++) {
        double p = exp(logp[i]);
        if (p > 0) ent -= p * logp[i];
        if (final_logp) {
            double pf = exp(final_logp[i]);
            if (pf > 0) kl += pf * (final_logp[i] - logp[i]);
        }
    }
    row->entropy = ent;
    row->kl = final_logp ? (kl > 0 ? kl : 0) : 0;
    // Top k by insertion; strict comparison keeps the lower id first on ties.
    int n = 0;
    for (int i = 0; i < V && k > 0; i++) { // k = 0: no top tokens (and no top_ids[-1])
        if (n == k && !(z[i] > z[row->top_ids[n - 1]])) continue;
        int j = n < k ? n++ : n - 1;
        while (j > 0 && z[i] > z[row->top_ids[j - 1]]) {
            row->top_ids[j] = row->top_ids[j - 1];
            j--;
        }
        row->top_ids[j] = i;
    }
    row->k = n;
    for (int j = 0; j < n; j++) row->top_probs[j] = exp(logp[row->top_ids[j]]);
    if (row->target >= 0) {
        int64_t rank = 0;
        float zt = z[row->target];
        for (int i = 0; i < V; i++) rank += z[i] > zt;
        row->target_rank = rank;
        row->target_prob = exp(logp[row->target]);
    } else {
        row->target_rank = -1;
        row->target_prob = 0;
    }
}

mech_status mech_lens_logit(const mech_model *m, const mech_run *run, int k, const int32_t *targets,
                            mech_lens_row **rows, size_t *n_rows, mech_err *err) {
    *rows = NULL;
    *n_rows = 0;
    if (k < 0 || k > MECH_LENS_MAX_K)
        return mech_err_set(err, MECH_ERR_ARG, "top-k %d out of range [0, %d]", k, MECH_LENS_MAX_K);
    int L = m->cfg.n_layers;
    const float *res[L + 1];
    for (int l = 0; l <= L; l++)
        if (!(res[l] = resid_layer(m, run, l, err))) return err ? err->code : MECH_ERR_ARG;
    return mech_lens_logit_resid(m, run, res, k, targets, rows, n_rows, err);
}

mech_status mech_lens_logit_resid(const mech_model *m, const mech_run *run, const float *const *res, int k,
                                  const int32_t *targets, mech_lens_row **rows, size_t *n_rows, mech_err *err) {
    *rows = NULL;
    *n_rows = 0;
    if (k < 0 || k > MECH_LENS_MAX_K)
        return mech_err_set(err, MECH_ERR_ARG, "top-k %d out of range [0, %d]", k, MECH_LENS_MAX_K);
    int L = m->cfg.n_layers, C = m->cfg.d_model, V = m->cfg.d_vocab;
    int B = mech_run_batch(run), T = mech_run_seq_len(run);
    if (targets)
        for (int i = 0; i < B * T; i++)
            if (targets[i] >= V)
                return mech_err_set(err, MECH_ERR_RANGE, "target token %d at batch %d position %d is not below d_vocab %d",
                                    targets[i], i / T, i % T, V);
    // A padded batch: only each sequence's own positions, numbered from its
    // first token.
    size_t total = 0;
    for (int b = 0; b < B; b++) {
        int s0, nb;
        mech_run_row(run, b, &s0, &nb);
        total += (size_t)nb;
    }
    size_t n = (size_t)(L + 1) * total;
    mech_lens_row *out = mech_calloc(n, sizeof *out);
    float *xl = mech_malloc((size_t)T * C * sizeof *xl);
    float *z = mech_malloc((size_t)T * V * sizeof *z);
    double *logp = mech_malloc((size_t)V * sizeof *logp);
    double *final = mech_malloc((size_t)T * V * sizeof *final); // one batch item's final log-probs
    mech_pool *pool = mech_pool_new(0);
    mech_status st = MECH_OK;
    if (!out || !xl || !z || !logp || !final) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the logit lens (T=%d, V=%d)", T, V);
        goto fail;
    }
    size_t off = 0; // rows of the sequences before b
    for (int b = 0; b < B; b++) {
        int s0, nb;
        mech_run_row(run, b, &s0, &nb);
        // Layer L first: its distribution is the reference for every KL.
        for (int li = 0; li <= L; li++) {
            int l = li == 0 ? L : li - 1;
            final_ln(m, xl, res[l] + ((size_t)b * T + s0) * C, nb);
            mech_matmul_nt(pool, z, V, xl, C, m->unembed, C, m->unembed_b, nb, C, V);
            for (int t = 0; t < nb; t++) {
                mech_lens_row *row = &out[(size_t)l * total + off + t];
                row->layer = l, row->batch = b, row->pos = t;
                int at = b * T + s0 + t;
                row->target = targets && targets[at] >= 0 ? targets[at] : -1;
                const float *zt = z + (size_t)t * V;
                double *lp = l == L ? final + (size_t)t * V : logp;
                log_softmax(lp, zt, V);
                lens_stats(row, zt, lp, l == L ? NULL : final + (size_t)t * V, V, k);
            }
        }
        off += (size_t)nb;
    }
    *rows = out;
    *n_rows = n;
    out = NULL;
fail:
    mech_free(out);
    mech_free(xl);
    mech_free(z);
    mech_free(logp);
    mech_free(final);
    mech_pool_free(pool);
    return st;
}

// ---------------------------------------------------------------------------
// Decoder lens

void mech_lens_vars_free(mech_lens_vars *v) {
    if (!v) return;
    for (int i = 0; i < v->n_vars; i++) mech_free(v->vars[i].name);
    for (int i = 0; i < v->n_dims; i++) mech_free(v->values ? v->values[i] : NULL);
    mech_free(v->vars);
    mech_free(v->values);
    mech_free(v);
}

mech_status mech_lens_vars_parse(const char *residual_json, mech_lens_vars **out, mech_err *err) {
    *out = NULL;
    mech_json *j = NULL;
    mech_err e = {0};
    if (!residual_json) return mech_err_set(err, MECH_ERR_FORMAT, "no residual labels (mech.rasp.residual)");
    if (mech_json_parse(residual_json, strlen(residual_json), &j, &e))
        return mech_err_set(err, MECH_ERR_FORMAT, "mech.rasp.residual: %s", e.msg);
    mech_status st = MECH_OK;
    mech_lens_vars *v = mech_calloc(1, sizeof *v);
    if (!v) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (j->type != MECH_JSON_ARRAY || j->n == 0) {
        st = mech_err_set(err, MECH_ERR_FORMAT, "mech.rasp.residual: expected a non-empty array of labels");
        goto fail;
    }
    v->n_dims = (int)j->n;
    v->values = mech_calloc(j->n, sizeof *v->values);
    v->vars = mech_calloc(j->n, sizeof *v->vars);
    if (!v->values || !v->vars) {
        v->n_dims = v->values ? v->n_dims : 0;
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < j->n; i++) {
        const mech_json *s = &j->items[i];
        if (s->type != MECH_JSON_STRING || strlen(s->str) != s->len) {
            st = mech_err_set(err, MECH_ERR_FORMAT, "mech.rasp.residual: label %zu is not a string", i);
            goto fail;
        }
        const char *colon = strchr(s->str, ':');
        size_t nlen = colon ? (size_t)(colon - s->str) : s->len;
        if (colon && !(v->values[i] = mech_strdup(colon + 1))) {
            st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
            goto fail;
        }
        mech_lens_var *last = v->n_vars ? &v->vars[v->n_vars - 1] : NULL;
        // A categorical variable is a run of "name:value" dimensions.
        if (colon && last && !last->numerical && strlen(last->name) == nlen && !memcmp(last->name, s->str, nlen)) {
            last->n_dims++;
            continue;
        }
        mech_lens_var *nv = &v->vars[v->n_vars];
        if (!(nv->name = mech_malloc(nlen + 1))) {
            st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
            goto fail;
        }
        memcpy(nv->name, s->str, nlen);
        nv->name[nlen] = 0;
        nv->numerical = !colon;
        nv->from_layer = !strcmp(nv->name, "bos") || !strcmp(nv->name, "one") ? 0 : -1;
        nv->first_dim = (int)i;
        nv->n_dims = 1;
        v->n_vars++;
    }
    mech_json_free(j);
    *out = v;
    return MECH_OK;
fail:
    mech_json_free(j);
    mech_lens_vars_free(v);
    return st;
}

mech_status mech_lens_vars_layers(mech_lens_vars *v, const char *circuit_json, mech_err *err) {
    mech_json *j = NULL;
    mech_err e = {0};
    if (!circuit_json) return mech_err_set(err, MECH_ERR_FORMAT, "no circuit (mech.rasp.circuit)");
    if (mech_json_parse(circuit_json, strlen(circuit_json), &j, &e))
        return mech_err_set(err, MECH_ERR_FORMAT, "mech.rasp.circuit: %s", e.msg);
    const mech_json *nodes = j->type == MECH_JSON_OBJECT ? mech_json_get(j, "nodes") : NULL;
    mech_status st = MECH_OK;
    if (!nodes || nodes->type != MECH_JSON_ARRAY) {
        st = mech_err_set(err, MECH_ERR_FORMAT, "mech.rasp.circuit: expected {\"nodes\": [...]}");
        goto done;
    }
    for (size_t i = 0; i < nodes->n; i++) {
        const mech_json *nd = &nodes->items[i];
        const mech_json *dims = nd->type == MECH_JSON_OBJECT ? mech_json_get(nd, "dims") : NULL;
        const mech_json *layer = dims ? mech_json_get(nd, "layer") : NULL, *comp = dims ? mech_json_get(nd, "component") : NULL;
        int embed = comp && comp->type == MECH_JSON_STRING && !strcmp(comp->str, "embed");
        if (!dims || dims->type != MECH_JSON_ARRAY || dims->n != 2 || !dims->items[0].is_int || !dims->items[1].is_int ||
            !(embed || (layer && layer->is_int && layer->inum >= 0 && layer->inum < 1 << 20))) {
            st = mech_err_set(err, MECH_ERR_FORMAT,
                              "mech.rasp.circuit: node %zu: expected \"dims\": [start, end) and a \"layer\" or the embedding", i);
            goto done;
        }
        int64_t a = dims->items[0].inum, b = dims->items[1].inum;
        for (int k = 0; k < v->n_vars; k++)
            if (v->vars[k].first_dim >= a && v->vars[k].first_dim < b)
                v->vars[k].from_layer = embed ? 0 : (int)layer->inum + 1;
    }
done:
    mech_json_free(j);
    return st;
}

mech_status mech_lens_decode(const mech_model *m, const mech_run *run, const mech_lens_vars *vars, double tol,
                             mech_lens_decoded **rows, size_t *n_rows, mech_err *err) {
    *rows = NULL;
    *n_rows = 0;
    int L = m->cfg.n_layers, C = m->cfg.d_model;
    int B = mech_run_batch(run), T = mech_run_seq_len(run), NV = vars->n_vars;
    if (vars->n_dims != C)
        return mech_err_set(err, MECH_ERR_SHAPE, "residual labels: %d dimensions, expected d_model %d",
                            vars->n_dims, C);
    if (tol <= 0) tol = 1e-3;
    const float *res[L + 1];
    for (int l = 0; l <= L; l++)
        if (!(res[l] = resid_layer(m, run, l, err))) return err ? err->code : MECH_ERR_ARG;
    size_t n = (size_t)(L + 1) * B * NV * T;
    mech_lens_decoded *out = mech_calloc(n ? n : 1, sizeof *out);
    if (!out) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the decoder lens");
    for (int l = 0; l <= L; l++)
        for (int b = 0; b < B; b++)
            for (int v = 0; v < NV; v++) {
                const mech_lens_var *var = &vars->vars[v];
                mech_lens_decoded *r = &out[(((size_t)l * B + b) * NV + v) * T];
                int present = 0;
                for (int t = 0; t < T; t++) {
                    const float *x = res[l] + ((size_t)b * T + t) * C + var->first_dim;
                    int best = 0;
                    for (int d = 0; d < var->n_dims; d++) {
                        if (fabs((double)x[d]) > tol) present = 1;
                        if (x[d] > x[best]) best = d;
                    }
                    double num = fabs((double)x[best]) < 1e-6 ? 0.0 : (double)x[best];
                    r[t] = (mech_lens_decoded){.layer = l, .batch = b, .pos = t, .var = v, .number = num};
                    if (!var->numerical && x[best] > 0.5) {
                        r[t].has_value = 1;
                        r[t].value = vars->values[var->first_dim + best];
                    }
                }
                if (var->from_layer >= 0) present = l >= var->from_layer;
                for (int t = 0; t < T; t++) {
                    r[t].present = present;
                    if (var->numerical) r[t].has_value = present;
                }
            }
    *rows = out;
    *n_rows = n;
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Direct logit attribution

void mech_dla_free(mech_dla *d) {
    if (!d) return;
    mech_free(d->labels);
    mech_free(d->attr);
    mech_free(d->accum);
    mech_free(d->bias);
    mech_free(d->logit);
    mech_free(d);
}

// The attribution of one component vector x[C]: centred (with LayerNorm),
// divided by the cached scale s, dotted with dir.
static double project(const float *x, const double *dir, double dir_sum, double s, int centre, int C) {
    double dot = 0, mean = 0;
    for (int c = 0; c < C; c++) dot += (double)x[c] * dir[c], mean += x[c];
    mean /= C;
    if (centre) dot -= mean * dir_sum;
    return dot / s;
}

mech_status mech_lens_dla(const mech_model *m, const mech_run *run, int pos, const int32_t *answer,
                          const int32_t *wrong, mech_dla **out, mech_err *err) {
    return mech_lens_dla_ex(m, run, pos, answer, wrong, MECH_DLA_LN_CACHED, out, err);
}

// The relative distance of a LayerNorm scale from sqrt(eps) below which the
// LayerNorm is taken as linear: var/eps < 2e-6, far below float32 rounding
// of the logits for gpt2_noLN (var ~ 1e3, eps 1e12: 5e-10).
#define DLA_LINEAR_TOL 1e-6

mech_status mech_lens_dla_ex(const mech_model *m, const mech_run *run, int pos, const int32_t *answer,
                             const int32_t *wrong, mech_dla_ln ln_mode, mech_dla **out, mech_err *err) {
    *out = NULL;
    if (ln_mode != MECH_DLA_LN_CACHED && ln_mode != MECH_DLA_LN_EXACT)
        return mech_err_set(err, MECH_ERR_ARG, "unknown final LayerNorm mode %d", (int)ln_mode);
    const mech_config *cfg = &m->cfg;
    int L = cfg->n_layers, NH = cfg->n_heads, C = cfg->d_model, V = cfg->d_vocab;
    int B = mech_run_batch(run), T = mech_run_seq_len(run);
    int has_mlp = !cfg->attn_only, ln = cfg->norm != MECH_NORM_NONE && m->lnf_w;
    // pos counts within each sequence (from its end when negative), so a
    // padded batch reads each sequence at its own position.
    for (int b = 0; b < B; b++) {
        int s0, nb;
        mech_run_row(run, b, &s0, &nb);
        int p = pos < 0 ? pos + nb : pos;
        if (p < 0 || p >= nb)
            return mech_err_set(err, MECH_ERR_RANGE, "position %d out of range for sequence %d of %d tokens", pos, b + 1,
                                nb);
    }
    for (int b = 0; b < B; b++) {
        if (answer[b] < 0 || answer[b] >= V)
            return mech_err_set(err, MECH_ERR_RANGE, "answer token %d (batch %d) out of range [0, %d)", answer[b], b, V);
        if (wrong && wrong[b] >= V)
            return mech_err_set(err, MECH_ERR_RANGE, "wrong token %d (batch %d) out of range [0, %d)", wrong[b], b, V);
    }
    // Every input first, so that a missing cache fails before any allocation.
    const float *embed = cached(run, "hook_embed", err), *pos_embed = cached(run, "hook_pos_embed", err);
    const float *scale = ln ? cached(run, "ln_final.hook_scale", err) : NULL;
    if (!embed || !pos_embed || (ln && !scale)) return err ? err->code : MECH_ERR_ARG;
    const float *result[L > 0 ? L : 1], *mlp[L > 0 ? L : 1], *res[L + 1];
    char name[64];
    for (int l = 0; l < L; l++) {
        snprintf(name, sizeof name, "blocks.%d.attn.hook_result", l);
        if (!(result[l] = cached(run, name, err))) return err ? err->code : MECH_ERR_ARG;
        mlp[l] = NULL;
        snprintf(name, sizeof name, "blocks.%d.hook_mlp_out", l);
        if (has_mlp && !(mlp[l] = cached(run, name, err))) return err ? err->code : MECH_ERR_ARG;
    }
    for (int l = 0; l <= L; l++)
        if (!(res[l] = resid_layer(m, run, l, err))) return err ? err->code : MECH_ERR_ARG;

    int n_comp = 1 + L * (NH + 1 + has_mlp);
    mech_dla *d = mech_calloc(1, sizeof *d);
    double *dir = mech_malloc((size_t)C * sizeof *dir);
    float *tmp = mech_malloc((size_t)C * sizeof *tmp);
    if (d) {
        d->labels = mech_calloc((size_t)n_comp, sizeof *d->labels);
        d->attr = mech_calloc((size_t)n_comp * B, sizeof *d->attr);
        d->accum = mech_calloc((size_t)(L + 1) * B, sizeof *d->accum);
        d->bias = mech_calloc((size_t)B, sizeof *d->bias);
        d->logit = mech_calloc((size_t)B, sizeof *d->logit);
    }
    if (!d || !dir || !tmp || !d->labels || !d->attr || !d->accum || !d->bias || !d->logit) {
        mech_dla_free(d);
        mech_free(dir);
        mech_free(tmp);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    d->n_comp = n_comp, d->B = B, d->n_layers = L;
    int c = 0;
    snprintf(d->labels[c++], sizeof *d->labels, "embed");
    for (int l = 0; l < L; l++) {
        for (int h = 0; h < NH; h++) snprintf(d->labels[c++], sizeof *d->labels, "L%dH%d", l, h);
        snprintf(d->labels[c++], sizeof *d->labels, "L%d.attn_bias", l);
        if (has_mlp) snprintf(d->labels[c++], sizeof *d->labels, "L%d.mlp", l);
    }
    const float *logits = mech_run_logits(run);
    for (int b = 0; b < B; b++) {
        int s0, nb;
        mech_run_row(run, b, &s0, &nb);
        int at = s0 + (pos < 0 ? pos + nb : pos); // the position in the padded row
        int a = answer[b], w = wrong && wrong[b] >= 0 ? wrong[b] : -1;
        const float *ua = m->unembed + (size_t)a * C, *uw = w >= 0 ? m->unembed + (size_t)w * C : NULL;
        double dir_sum = 0, bias = 0;
        for (int i = 0; i < C; i++) {
            double u = (double)ua[i] - (uw ? uw[i] : 0);
            dir[i] = ln ? u * m->lnf_w[i] : u;
            dir_sum += dir[i];
            if (ln) bias += u * m->lnf_b[i];
        }
        if (m->unembed_b) bias += (double)m->unembed_b[a] - (w >= 0 ? m->unembed_b[w] : 0);
        d->bias[b] = bias;
        if (logits) {
            const float *lg = logits + ((size_t)b * T + at) * V;
            d->logit[b] = (double)lg[a] - (w >= 0 ? lg[w] : 0);
        } else {
            d->logit[b] = NAN;
        }
        double s = ln ? scale[(size_t)b * T + at] : 1.0;
        if (ln && ln_mode == MECH_DLA_LN_EXACT) {
            // A LayerNorm-free model: ln_final is the fixed linear map
            // (x - mean) * w / sqrt(eps) + b, whatever the input.
            double s_fixed = sqrt((double)cfg->ln_eps);
            if (fabs(s / s_fixed - 1) > DLA_LINEAR_TOL) {
                mech_dla_free(d);
                mech_free(dir);
                mech_free(tmp);
                return mech_err_set(err, MECH_ERR_ARG,
                                    "exact attribution needs a LayerNorm-free model (ln_final linear: its scale "
                                    "sqrt(var + eps) = sqrt(eps)), but sequence %d has scale %.6g against sqrt(eps) = "
                                    "%.6g (eps %g); use the cached scale",
                                    b + 1, s, s_fixed, (double)cfg->ln_eps);
            }
            s = s_fixed;
        }
        size_t row = (size_t)b * T + at; // (b, at) in a [B, T, ...] tensor
        c = 0;
        for (int i = 0; i < C; i++) tmp[i] = embed[row * C + i] + pos_embed[row * C + i];
        d->attr[(size_t)c++ * B + b] = project(tmp, dir, dir_sum, s, ln, C);
        for (int l = 0; l < L; l++) {
            for (int h = 0; h < NH; h++)
                d->attr[(size_t)c++ * B + b] = project(result[l] + (row * NH + h) * C, dir, dir_sum, s, ln, C);
            for (int i = 0; i < C; i++) tmp[i] = m->layers[l].o_b[i];
            d->attr[(size_t)c++ * B + b] = project(tmp, dir, dir_sum, s, ln, C);
            if (has_mlp) d->attr[(size_t)c++ * B + b] = project(mlp[l] + row * C, dir, dir_sum, s, ln, C);
        }
        for (int l = 0; l <= L; l++) d->accum[(size_t)l * B + b] = project(res[l] + row * C, dir, dir_sum, s, ln, C);
    }
    mech_free(dir);
    mech_free(tmp);
    *out = d;
    return MECH_OK;
}
