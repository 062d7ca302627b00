/*
** tests/test_core_backward.c: the backward pass against central finite
** differences of an independent double-precision forward written here (not
** core/forward.c), for tiny models of every config family, every metric,
** every parameter tensor and the hook points; the chain-rule identity at the
** last resid_post; gradients through patched activations; backward hooks.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// Reference forward in double (TransformerLens's definitions, plain loops)

#define MAXT 40

typedef struct ref {
    mech_config c;
    size_t n;
    char names[MAXT][64];
    int64_t shape[MAXT][2];
    int ndim[MAXT];
    double *p[MAXT];
    size_t len[MAXT];
} ref;

// An overwrite (a forward hook): values, NaN = keep; then a perturbation.
typedef struct rhook {
    const char *patch_name;
    const double *patch; // NaN entries keep the computed value
    const char *pert_name;
    size_t pert_idx;
    double delta;
} rhook;

static double *rp(const ref *R, const char *name) {
    for (size_t i = 0; i < R->n; i++)
        if (!strcmp(R->names[i], name)) return R->p[i];
    return NULL;
}

static double *rpl(const ref *R, int l, const char *suffix) {
    char nm[64];
    snprintf(nm, sizeof nm, "h.%d.%s", l, suffix);
    return rp(R, nm);
}

static void ref_from_model(ref *R, const mech_model *m) {
    mech_model_tensor *t;
    size_t n;
    mech_err err = {0};
    if (mech_model_tensors(m, &t, &n, &err)) fail_msg("%s", err.msg);
    assert_true(n <= MAXT);
    R->c = m->cfg;
    R->n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(R->names[i], 64, "%s", t[i].name);
        R->ndim[i] = t[i].ndim;
        R->shape[i][0] = t[i].shape[0];
        R->shape[i][1] = t[i].ndim == 2 ? t[i].shape[1] : 1;
        R->len[i] = (size_t)R->shape[i][0] * (size_t)R->shape[i][1];
        R->p[i] = malloc(R->len[i] * sizeof(double));
        for (size_t k = 0; k < R->len[i]; k++) R->p[i][k] = t[i].data[k];
    }
    mech_free(t);
}

static void ref_free(ref *R) {
    for (size_t i = 0; i < R->n; i++) free(R->p[i]);
}

// The hook point `name` (full TransformerLens name) computed as arr[0..n):
// the patch, then the perturbation.
static void at(const rhook *hk, const char *name, double *arr, size_t n) {
    if (!hk) return;
    if (hk->patch_name && !strcmp(hk->patch_name, name))
        for (size_t i = 0; i < n; i++)
            if (!isnan(hk->patch[i])) arr[i] = hk->patch[i];
    if (hk->pert_name && !strcmp(hk->pert_name, name)) {
        assert_true(hk->pert_idx < n);
        arr[hk->pert_idx] += hk->delta;
    }
}

static void atl(const rhook *hk, int l, const char *suffix, double *arr, size_t n) {
    char nm[80];
    if (l < 0) snprintf(nm, sizeof nm, "%s", suffix);
    else snprintf(nm, sizeof nm, "blocks.%d.%s", l, suffix);
    at(hk, nm, arr, n);
}

static double act_fn(mech_act a, double x) {
    if (a == MECH_ACT_RELU) return x > 0 ? x : 0;
    if (a == MECH_ACT_GELU) return 0.5 * x * erfc(-x / sqrt(2.0));
    return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

// LayerNorm of rows x (n rows of C) with the hook points scale (n) and
// normalized (n*C) at prefix (e.g. "blocks.0.ln1."): out = n * w + b. With
// heads > 1 the scale/normalized hooks index by row / heads (each head's own
// copy of a shared row, as split inputs are).
static void ref_ln(const ref *R, const rhook *hk, const char *prefix, const double *x, size_t n, int heads,
                   const double *w, const double *b, double *out) {
    size_t C = (size_t)R->c.d_model, nr = n / (size_t)heads;
    double *sc = malloc(nr * sizeof *sc), *nm = malloc(nr * C * sizeof *nm);
    char nsc[96], nno[96];
    snprintf(nsc, sizeof nsc, "%shook_scale", prefix);
    snprintf(nno, sizeof nno, "%shook_normalized", prefix);
    for (int h = 0; h < heads; h++) {
        for (size_t r = 0; r < nr; r++) {
            const double *xi = x + (r * heads + h) * C;
            double mu = 0, var = 0;
            for (size_t k = 0; k < C; k++) mu += xi[k];
            mu /= C;
            for (size_t k = 0; k < C; k++) var += (xi[k] - mu) * (xi[k] - mu);
            var /= C;
            sc[r] = sqrt(var + R->c.ln_eps);
        }
        at(hk, nsc, sc, nr);
        for (size_t r = 0; r < nr; r++) {
            const double *xi = x + (r * heads + h) * C;
            double mu = 0;
            for (size_t k = 0; k < C; k++) mu += xi[k];
            mu /= C;
            for (size_t k = 0; k < C; k++) nm[r * C + k] = (xi[k] - mu) / sc[r];
        }
        at(hk, nno, nm, nr * C);
        for (size_t r = 0; r < nr; r++)
            for (size_t k = 0; k < C; k++) out[(r * heads + h) * C + k] = nm[r * C + k] * w[k] + b[k];
    }
    free(sc);
    free(nm);
}

typedef struct rbatch {
    int B, T;
    const int32_t *ids;
    const uint8_t *mask; // or NULL
} rbatch;

static void span(const rbatch *bt, int b, int *s, int *e) {
    *s = 0, *e = bt->T;
    if (!bt->mask) return;
    const uint8_t *m = bt->mask + (size_t)b * bt->T;
    while (*s < bt->T && !m[*s]) (*s)++;
    *e = *s;
    while (*e < bt->T && m[*e]) (*e)++;
}

static double lse(const double *x, int n) {
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++) s += exp(x[i] - mx);
    return mx + log(s);
}

// The metric of the reference forward (logits out (B, T, V) if not NULL).
static double ref_run(const ref *R, const rbatch *bt, const mech_metric *mt, const rhook *hk, double *logits_out) {
    const mech_config *c = &R->c;
    int B = bt->B, T = bt->T, C = c->d_model, NH = c->n_heads, HS = c->d_head, A = NH * HS, M = c->d_mlp,
        V = c->d_vocab, ln = c->norm == MECH_NORM_LAYERNORM;
    size_t rows = (size_t)B * T;
    double *x = calloc(rows * C, sizeof *x), *e = calloc(rows * C, sizeof *e), *pe = calloc(rows * C, sizeof *pe);
    const double *wte = rp(R, "wte.weight"), *wpe = rp(R, "wpe.weight");
    for (int b = 0; b < B; b++) {
        int s, en;
        span(bt, b, &s, &en);
        for (int t = 0; t < T; t++)
            for (int k = 0; k < C; k++) {
                size_t i = ((size_t)b * T + t) * C + k;
                e[i] = wte[(size_t)bt->ids[b * T + t] * C + k];
                pe[i] = t >= s && t < en ? wpe[(size_t)(t - s) * C + k] : 0;
            }
    }
    atl(hk, -1, "hook_embed", e, rows * C);
    atl(hk, -1, "hook_pos_embed", pe, rows * C);
    for (size_t i = 0; i < rows * C; i++) x[i] = e[i] + pe[i];
    double *xin = malloc(rows * NH * C * sizeof *xin), *ain = malloc(rows * NH * C * sizeof *ain);
    double *q = malloc(rows * A * sizeof *q), *k = malloc(rows * A * sizeof *k), *v = malloc(rows * A * sizeof *v);
    double *S = malloc((size_t)B * NH * T * T * sizeof *S), *P = malloc((size_t)B * NH * T * T * sizeof *P);
    double *z = malloc(rows * A * sizeof *z), *res = malloc(rows * NH * C * sizeof *res);
    double *ao = malloc(rows * C * sizeof *ao), *mid = malloc(rows * C * sizeof *mid), *a2 = malloc(rows * C * sizeof *a2);
    double *pre = malloc(rows * (M ? M : 1) * sizeof *pre), *post = malloc(rows * (M ? M : 1) * sizeof *post);
    double *out = malloc(rows * C * sizeof *out);
    for (int l = 0; l < c->n_layers; l++) {
        atl(hk, l, "hook_resid_pre", x, rows * C);
        double *qkv[3] = {q, k, v};
        const char *in_names[3] = {"hook_q_input", "hook_k_input", "hook_v_input"};
        const double *W = rpl(R, l, "attn.c_attn.weight"), *Wb = rpl(R, l, "attn.c_attn.bias");
        char prefix[64];
        snprintf(prefix, sizeof prefix, "blocks.%d.ln1.", l);
        for (int which = 0; which < 3; which++) {
            for (size_t r = 0; r < rows; r++)
                for (int h = 0; h < NH; h++) memcpy(xin + (r * NH + h) * C, x + r * C, C * sizeof *x);
            atl(hk, l, in_names[which], xin, rows * NH * C);
            if (ln) ref_ln(R, hk, prefix, xin, rows * NH, NH, rpl(R, l, "ln_1.weight"), rpl(R, l, "ln_1.bias"), ain);
            else memcpy(ain, xin, rows * NH * C * sizeof *ain);
            for (size_t r = 0; r < rows; r++)
                for (int h = 0; h < NH; h++)
                    for (int d = 0; d < HS; d++) {
                        int col = which * A + h * HS + d;
                        double s = Wb[col];
                        for (int kk = 0; kk < C; kk++) s += ain[(r * NH + h) * C + kk] * W[(size_t)kk * 3 * A + col];
                        qkv[which][r * A + h * HS + d] = s;
                    }
        }
        atl(hk, l, "attn.hook_q", q, rows * A);
        atl(hk, l, "attn.hook_k", k, rows * A);
        atl(hk, l, "attn.hook_v", v, rows * A);
        for (int b = 0; b < B; b++) {
            int s, en;
            span(bt, b, &s, &en);
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < T; i++)
                    for (int j = 0; j < T; j++) {
                        int ok = i >= s && i < en && j >= s && j < en && (!c->causal || j <= i);
                        double d = 0;
                        for (int dd = 0; dd < HS; dd++)
                            d += q[((size_t)b * T + i) * A + h * HS + dd] * k[((size_t)b * T + j) * A + h * HS + dd];
                        S[(((size_t)b * NH + h) * T + i) * T + j] = ok ? d / sqrt((double)HS) : -INFINITY;
                    }
        }
        atl(hk, l, "attn.hook_attn_scores", S, (size_t)B * NH * T * T);
        for (size_t row = 0; row < (size_t)B * NH * T; row++) {
            double *sr = S + row * T, *pr = P + row * T, mx = -INFINITY, sum = 0;
            for (int j = 0; j < T; j++) mx = sr[j] > mx ? sr[j] : mx;
            for (int j = 0; j < T; j++) sum += pr[j] = isinf(mx) ? 0 : exp(sr[j] - mx);
            for (int j = 0; j < T; j++) pr[j] = sum > 0 ? pr[j] / sum : 0;
        }
        atl(hk, l, "attn.hook_pattern", P, (size_t)B * NH * T * T);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < T; i++)
                    for (int dd = 0; dd < HS; dd++) {
                        int s0, e0;
                        span(bt, b, &s0, &e0); // the real keys (mech's p.v reads no others)
                        double s = 0;
                        for (int j = s0; j < e0; j++)
                            s += P[(((size_t)b * NH + h) * T + i) * T + j] * v[((size_t)b * T + j) * A + h * HS + dd];
                        z[((size_t)b * T + i) * A + h * HS + dd] = s;
                    }
        atl(hk, l, "attn.hook_z", z, rows * A);
        const double *Wo = rpl(R, l, "attn.c_proj.weight"), *bo = rpl(R, l, "attn.c_proj.bias");
        for (size_t r = 0; r < rows; r++)
            for (int h = 0; h < NH; h++)
                for (int kk = 0; kk < C; kk++) {
                    double s = 0;
                    for (int d = 0; d < HS; d++) s += z[r * A + h * HS + d] * Wo[(size_t)(h * HS + d) * C + kk];
                    res[(r * NH + h) * C + kk] = s;
                }
        atl(hk, l, "attn.hook_result", res, rows * NH * C);
        for (size_t r = 0; r < rows; r++)
            for (int kk = 0; kk < C; kk++) {
                double s = bo[kk];
                for (int h = 0; h < NH; h++) s += res[(r * NH + h) * C + kk];
                ao[r * C + kk] = s;
            }
        atl(hk, l, "hook_attn_out", ao, rows * C);
        for (size_t i = 0; i < rows * C; i++) mid[i] = x[i] + ao[i];
        if (c->attn_only) {
            memcpy(x, mid, rows * C * sizeof *x);
            atl(hk, l, "hook_resid_post", x, rows * C);
            continue;
        }
        atl(hk, l, "hook_resid_mid", mid, rows * C);
        double *mi = malloc(rows * C * sizeof *mi);
        memcpy(mi, mid, rows * C * sizeof *mi);
        atl(hk, l, "hook_mlp_in", mi, rows * C);
        snprintf(prefix, sizeof prefix, "blocks.%d.ln2.", l);
        if (ln) ref_ln(R, hk, prefix, mi, rows, 1, rpl(R, l, "ln_2.weight"), rpl(R, l, "ln_2.bias"), a2);
        else memcpy(a2, mi, rows * C * sizeof *a2);
        free(mi);
        const double *fw = rpl(R, l, "mlp.c_fc.weight"), *fb = rpl(R, l, "mlp.c_fc.bias");
        const double *pw = rpl(R, l, "mlp.c_proj.weight"), *pb = rpl(R, l, "mlp.c_proj.bias");
        for (size_t r = 0; r < rows; r++)
            for (int j = 0; j < M; j++) {
                double s = fb[j];
                for (int kk = 0; kk < C; kk++) s += a2[r * C + kk] * fw[(size_t)kk * M + j];
                pre[r * M + j] = s;
            }
        atl(hk, l, "mlp.hook_pre", pre, rows * M);
        for (size_t i = 0; i < rows * M; i++) post[i] = act_fn(c->act, pre[i]);
        atl(hk, l, "mlp.hook_post", post, rows * M);
        for (size_t r = 0; r < rows; r++)
            for (int kk = 0; kk < C; kk++) {
                double s = pb[kk];
                for (int j = 0; j < M; j++) s += post[r * M + j] * pw[(size_t)j * C + kk];
                out[r * C + kk] = s;
            }
        atl(hk, l, "hook_mlp_out", out, rows * C);
        for (size_t i = 0; i < rows * C; i++) x[i] = mid[i] + out[i];
        atl(hk, l, "hook_resid_post", x, rows * C);
    }
    double *af = malloc(rows * C * sizeof *af);
    if (ln) ref_ln(R, hk, "ln_final.", x, rows, 1, rp(R, "ln_f.weight"), rp(R, "ln_f.bias"), af);
    else memcpy(af, x, rows * C * sizeof *af);
    const double *U = c->tied_unembed ? wte : rp(R, "lm_head.weight"), *ub = rp(R, "lm_head.bias");
    double *lg = malloc(rows * V * sizeof *lg);
    for (size_t r = 0; r < rows; r++)
        for (int vv = 0; vv < V; vv++) {
            double s = ub ? ub[vv] : 0;
            for (int kk = 0; kk < C; kk++) s += af[r * C + kk] * U[(size_t)vv * C + kk];
            lg[r * V + vv] = s;
        }
    // the metric
    double total = 0;
    int nt = 0;
    for (int b = 0; b < B; b++) {
        int s, en;
        span(bt, b, &s, &en);
        for (int t = s; t < en; t++) {
            const double *xl = lg + ((size_t)b * T + t) * V;
            int on = mt->kind == MECH_METRIC_LOSS ? t + 1 < en
                     : mt->pos == MECH_POS_ALL   ? 1
                                                 : t == (mt->pos < 0 ? en + mt->pos : s + mt->pos);
            if (!on) continue;
            nt++;
            switch (mt->kind) {
            case MECH_METRIC_LOSS: total += lse(xl, V) - xl[bt->ids[b * T + t + 1]]; break;
            case MECH_METRIC_LOGIT_DIFF: total += xl[mt->answer[b]] - xl[mt->wrong[b]]; break;
            case MECH_METRIC_LOGPROB: total += xl[mt->answer[b]] - lse(xl, V); break;
            case MECH_METRIC_KL: {
                double qd[64], lq;
                for (int vv = 0; vv < V; vv++) qd[vv] = mt->ref_logits[((size_t)b * T + t) * V + vv];
                lq = lse(qd, V);
                double lx = lse(xl, V);
                for (int vv = 0; vv < V; vv++) total += exp(qd[vv] - lq) * ((qd[vv] - lq) - (xl[vv] - lx));
                break;
            }
            default: break;
            }
        }
    }
    if (logits_out) memcpy(logits_out, lg, rows * V * sizeof *lg);
    free(x), free(e), free(pe), free(xin), free(ain), free(q), free(k), free(v), free(S), free(P), free(z), free(res);
    free(ao), free(mid), free(a2), free(pre), free(post), free(out), free(af), free(lg);
    return total / nt;
}

// ---------------------------------------------------------------------------
// Tiny models

typedef struct tcase {
    const char *name;
    mech_config c;
    int padded;
} tcase;

static mech_config tiny(int ln, mech_act act, int attn_only, int causal, int tied, int bias, int NH, int HS) {
    mech_config c = {.n_layers = 2, .n_heads = NH, .d_model = 8, .d_head = HS, .d_mlp = attn_only ? 0 : 12,
                     .n_ctx = 8, .d_vocab = 11, .act = act, .norm = ln ? MECH_NORM_LAYERNORM : MECH_NORM_NONE,
                     .attn_only = attn_only, .causal = causal, .ln_eps = 1e-5f, .tied_unembed = tied,
                     .unembed_bias = bias};
    return c;
}

static const tcase cases[] = {
    {"ln gelu_new causal tied", {0}, 0},
    {"no-ln relu causal untied+bias", {0}, 0},
    {"ln attn-only bidirectional", {0}, 0},
    {"ln gelu NH*HS!=C untied", {0}, 0},
    {"ln relu causal padded", {0}, 1},
    {"no-ln gelu_new bidirectional NH*HS!=C untied+bias padded", {0}, 1},
};
#define N_CASES (sizeof cases / sizeof *cases)

static mech_config case_cfg(int i) {
    switch (i) {
    case 0: return tiny(1, MECH_ACT_GELU_NEW, 0, 1, 1, 0, 2, 4);
    case 1: return tiny(0, MECH_ACT_RELU, 0, 1, 0, 1, 2, 4);
    case 2: return tiny(1, MECH_ACT_GELU_NEW, 1, 0, 1, 0, 2, 4);
    case 3: return tiny(1, MECH_ACT_GELU, 0, 1, 0, 0, 3, 5);
    case 4: return tiny(1, MECH_ACT_RELU, 0, 1, 1, 0, 2, 4);
    default: return tiny(0, MECH_ACT_GELU_NEW, 0, 0, 0, 1, 3, 3);
    }
}

static uint64_t rng_state;
static double urand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

// Weights large enough that every nonlinearity matters (random models use
// normal(0, 0.02), nearly linear at this size).
static mech_model *tiny_model(const mech_config *c, uint64_t seed) {
    mech_err err = {0};
    mech_model *m;
    if (mech_model_random(c, seed, &m, &err)) fail_msg("%s", err.msg);
    mech_model_tensor *t;
    size_t n;
    if (mech_model_tensors(m, &t, &n, &err)) fail_msg("%s", err.msg);
    rng_state = seed * 7919 + 1;
    for (size_t i = 0; i < n; i++) {
        float *p = mech_model_param(m, t[i].name);
        assert_non_null(p);
        size_t len = (size_t)t[i].shape[0] * (t[i].ndim == 2 ? (size_t)t[i].shape[1] : 1);
        int is_lnw = strstr(t[i].name, "ln_") && strstr(t[i].name, "weight");
        for (size_t k = 0; k < len; k++)
            p[k] = is_lnw ? (float)(1 + 0.6 * (urand() - 0.5)) : (float)(1.2 * (urand() - 0.5));
    }
    mech_free(t);
    return m;
}

enum { TB = 2, TT = 6 };

static void case_batch(int i, int32_t *ids, uint8_t *mask, int V) {
    for (int k = 0; k < TB * TT; k++) ids[k] = (int32_t)((k * 7 + i * 3 + 1) % V);
    for (int k = 0; k < TB * TT; k++) mask[k] = 1;
    if (cases[i].padded) { // row 0 right-padded by 2, row 1 left-padded by 1
        mask[4] = mask[5] = 0;
        mask[TT + 0] = 0;
    }
}

typedef struct setup {
    mech_model *m;
    ref R;
    mech_run *run;
    int32_t ids[TB * TT];
    uint8_t mask[TB * TT];
    rbatch bt;
    int32_t answer[TB], wrong[TB];
    float *ref_logits;
} setup;

static void setup_case(setup *s, int i, int flags, const char *cache_grads) {
    mech_err err = {0};
    mech_config c = case_cfg(i);
    s->m = tiny_model(&c, 100 + i);
    ref_from_model(&s->R, s->m);
    case_batch(i, s->ids, s->mask, c.d_vocab);
    s->bt = (rbatch){TB, TT, s->ids, cases[i].padded ? s->mask : NULL};
    if (mech_run_new(s->m, TB, TT, &s->run, &err)) fail_msg("%s", err.msg);
    if (mech_run_set_threads(s->run, 2, &err)) fail_msg("%s", err.msg);
    if (cases[i].padded && mech_run_set_mask(s->run, s->mask, &err)) fail_msg("%s", err.msg);
    if (mech_run_enable_grad(s->run, flags, &err)) fail_msg("%s", err.msg);
    if (cache_grads && mech_run_cache_grad(s->run, cache_grads, &err)) fail_msg("%s", err.msg);
    s->answer[0] = 3, s->answer[1] = 5, s->wrong[0] = 7, s->wrong[1] = 2;
    s->ref_logits = malloc((size_t)TB * TT * c.d_vocab * sizeof(float));
    rng_state = 4242 + i;
    for (size_t k = 0; k < (size_t)TB * TT * c.d_vocab; k++) s->ref_logits[k] = (float)(3 * (urand() - 0.5));
}

static void teardown_case(setup *s) {
    mech_run_free(s->run);
    mech_model_free(s->m);
    ref_free(&s->R);
    free(s->ref_logits);
}

static mech_metric metric_of(setup *s, int kind) {
    mech_metric mt = {.kind = kind, .pos = -1};
    if (kind == MECH_METRIC_LOGIT_DIFF) mt.answer = s->answer, mt.wrong = s->wrong, mt.pos = -2;
    if (kind == MECH_METRIC_LOGPROB) mt.answer = s->answer, mt.pos = 1;
    if (kind == MECH_METRIC_KL) mt.ref_logits = s->ref_logits, mt.pos = MECH_POS_ALL;
    return mt;
}

static double run_backward(setup *s, const mech_metric *mt) {
    mech_err err = {0};
    double v;
    if (mech_run_forward(s->run, s->ids, &err)) fail_msg("forward: %s", err.msg);
    if (mech_run_backward(s->run, mt, &v, &err)) fail_msg("backward: %s", err.msg);
    return v;
}

// Central difference of the reference metric in one parameter entry.
static double fd_param(setup *s, const mech_metric *mt, double *p, const rhook *hk) {
    double h = 1e-5, keep = *p;
    *p = keep + h;
    double up = ref_run(&s->R, &s->bt, mt, hk, NULL);
    *p = keep - h;
    double dn = ref_run(&s->R, &s->bt, mt, hk, NULL);
    *p = keep;
    return (up - dn) / (2 * h);
}

static double fd_hook(setup *s, const mech_metric *mt, const char *name, size_t idx, const rhook *base) {
    rhook hk = base ? *base : (rhook){0};
    double h = 1e-5;
    hk.pert_name = name, hk.pert_idx = idx, hk.delta = h;
    double up = ref_run(&s->R, &s->bt, mt, &hk, NULL);
    hk.delta = -h;
    double dn = ref_run(&s->R, &s->bt, mt, &hk, NULL);
    return (up - dn) / (2 * h);
}

// Compares got[idx] with the finite differences at idx for the argmax of
// |got| and a few spread entries; tolerance relative to the largest.
static void check_entries(const char *label, const float *got, size_t n, double (*fd)(void *ctx, size_t i), void *ctx,
                          int samples, int *checked) {
    size_t pick[16];
    int np = 0;
    size_t am = 0;
    for (size_t i = 0; i < n; i++)
        if (fabsf(got[i]) > fabsf(got[am])) am = i;
    pick[np++] = am;
    for (int k = 0; k < samples && np < 16; k++) pick[np++] = (size_t)(urand() * n) % n;
    double want[16], scale = 0;
    for (int k = 0; k < np; k++) {
        want[k] = fd(ctx, pick[k]);
        scale = fmax(scale, fabs(want[k]));
    }
    for (int k = 0; k < np; k++) {
        double e = fabs(got[pick[k]] - want[k]);
        if (e > 2e-3 * scale + 1e-6)
            fail_msg("%s[%zu]: backward %.8g, finite differences %.8g (largest %.3g)", label, pick[k], got[pick[k]],
                     want[k], scale);
    }
    (*checked)++;
}

typedef struct fdp_ctx {
    setup *s;
    const mech_metric *mt;
    double *p;
    const rhook *hk;
} fdp_ctx;

static double fdp(void *ctx, size_t i) {
    fdp_ctx *c = ctx;
    return fd_param(c->s, c->mt, c->p + i, c->hk);
}

typedef struct fdh_ctx {
    setup *s;
    const mech_metric *mt;
    const char *name;
    const rhook *hk;
} fdh_ctx;

static double fdh(void *ctx, size_t i) {
    fdh_ctx *c = ctx;
    return fd_hook(c->s, c->mt, c->name, i, c->hk);
}

// Every parameter tensor of the model against finite differences.
static void check_params(setup *s, const mech_metric *mt, const rhook *hk, const char *what) {
    const mech_model *g = mech_run_param_grads(s->run);
    assert_non_null(g);
    mech_model_tensor *t;
    size_t n;
    mech_err err = {0};
    if (mech_model_tensors(g, &t, &n, &err)) fail_msg("%s", err.msg);
    assert_int_equal(n, s->R.n);
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(t[i].name, s->R.names[i]);
        char label[160];
        snprintf(label, sizeof label, "%s: d %s / d %s", what, mech_metric_name(mt->kind), t[i].name);
        fdp_ctx ctx = {s, mt, s->R.p[i], hk};
        check_entries(label, t[i].data, s->R.len[i], fdp, &ctx, 4, &checked);
    }
    assert_int_equal(checked, (int)n);
    mech_free(t);
}

// skip: hook names starting so are left out (the ln1 points of a block whose
// q/k/v come from split inputs are not part of the graph, as in the forward).
static void check_hooks(setup *s, const mech_metric *mt, const rhook *hk, const char *what, const char *skip) {
    size_t n;
    const mech_tensor *gs = mech_run_grads_cached(s->run, &n);
    assert_true(n > 0);
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip && !strncmp(gs[i].name, skip, strlen(skip))) continue;
        char label[160];
        snprintf(label, sizeof label, "%s: d %s / d %s", what, mech_metric_name(mt->kind), gs[i].name);
        fdh_ctx ctx = {s, mt, gs[i].name, hk};
        // attention scores at masked positions are -inf: sample the argmax only
        int masked = strstr(gs[i].name, "scores") != NULL;
        check_entries(label, gs[i].data, mech_tensor_numel(&gs[i]), fdh, &ctx, masked ? 0 : 3, &checked);
    }
}

// Entries [i0, i0 + n) of the gradient at name against finite differences.
static void check_range(setup *s, const mech_metric *mt, const rhook *hk, const char *name, size_t i0, size_t n) {
    const mech_tensor *g = mech_run_grad(s->run, name);
    assert_non_null(g);
    double want[64], scale = 0;
    assert_true(n <= 64);
    for (size_t k = 0; k < n; k++) scale = fmax(scale, fabs(want[k] = fd_hook(s, mt, name, i0 + k, hk)));
    assert_true(scale > 1e-4);
    for (size_t k = 0; k < n; k++)
        if (fabs(g->data[i0 + k] - want[k]) > 2e-3 * scale + 1e-6)
            fail_msg("%s[%zu]: backward %.8g, finite differences %.8g", name, i0 + k, g->data[i0 + k], want[k]);
}

// ---------------------------------------------------------------------------
// Tests

static void test_reference_matches_forward(void **state) {
    for (size_t i = 0; i < N_CASES; i++) {
        setup s;
        setup_case(&s, (int)i, MECH_GRAD_ACTS, NULL);
        mech_err err = {0};
        if (mech_run_forward(s.run, s.ids, &err)) fail_msg("%s", err.msg);
        int V = s.m->cfg.d_vocab;
        double *lg = malloc((size_t)TB * TT * V * sizeof *lg);
        mech_metric mt = {.kind = MECH_METRIC_LOSS};
        double want = ref_run(&s.R, &s.bt, &mt, NULL, lg), got;
        float *lf = malloc((size_t)TB * TT * V * sizeof *lf);
        for (size_t k = 0; k < (size_t)TB * TT * V; k++) lf[k] = (float)lg[k];
        // padding rows read 0 in mech's logits
        for (int k = 0; k < TB * TT; k++)
            if (s.bt.mask && !s.mask[k]) memset(lf + (size_t)k * V, 0, V * sizeof *lf);
        mech_assert_close(mech_run_logits(s.run), lf, (size_t)TB * TT * V, 1e-4, 1e-4, cases[i].name);
        assert_int_equal(mech_metric_eval(s.run, &mt, &got, &err), MECH_OK);
        assert_true(fabs(got - want) < 1e-4 * fabs(want) + 1e-5);
        free(lg), free(lf);
        teardown_case(&s);
    }
}

static void test_param_grads_fd(void **state) {
    for (size_t i = 0; i < N_CASES; i++)
        for (int kind = 0; kind < MECH_METRIC_COUNT_; kind++) {
            setup s;
            setup_case(&s, (int)i, MECH_GRAD_PARAMS, NULL);
            mech_metric mt = metric_of(&s, kind);
            double v = run_backward(&s, &mt), want = ref_run(&s.R, &s.bt, &mt, NULL, NULL);
            if (fabs(v - want) > 1e-4 * fabs(want) + 1e-5) fail_msg("%s: metric %g, reference %g", cases[i].name, v, want);
            check_params(&s, &mt, NULL, cases[i].name);
            teardown_case(&s);
        }
}

static const char *const hook_globs =
    "*"; // every default hook point; the opt-in ones are added one by one below

static void test_hook_grads_fd(void **state) {
    for (size_t i = 0; i < N_CASES; i++)
        for (int kind = 0; kind < MECH_METRIC_COUNT_; kind += (i % 2) + 1) {
            setup s;
            setup_case(&s, (int)i, MECH_GRAD_ACTS, hook_globs);
            mech_err err = {0};
            const char *opt[] = {"blocks.0.hook_q_input", "blocks.0.hook_v_input", "blocks.1.attn.hook_result",
                                 "blocks.1.hook_mlp_in"};
            for (int k = 0; k < 4; k++) {
                if (s.m->cfg.attn_only && strstr(opt[k], "mlp_in")) continue;
                if (mech_run_cache_grad(s.run, opt[k], &err)) fail_msg("%s", err.msg);
            }
            mech_metric mt = metric_of(&s, kind);
            run_backward(&s, &mt);
            assert_null(mech_run_param_grads(s.run)); // MECH_GRAD_ACTS: no parameter gradients
            check_hooks(&s, &mt, NULL, cases[i].name, "blocks.0.ln1.");
            teardown_case(&s);
        }
}

// d logit_diff / d resid_post of the last block = (W_U[a] - W_U[w]) through
// the final LayerNorm's Jacobian, computed here from the cached resid_post.
static void test_chain_rule_final_layernorm(void **state) {
    for (int i = 0; i < 2; i++) { // with LayerNorm (case 0) and without (case 1)
        setup s;
        setup_case(&s, i, MECH_GRAD_ACTS, "blocks.1.hook_resid_post");
        mech_err err = {0};
        if (mech_run_cache(s.run, "blocks.1.hook_resid_post", &err)) fail_msg("%s", err.msg);
        mech_metric mt = metric_of(&s, MECH_METRIC_LOGIT_DIFF);
        mt.pos = -1;
        run_backward(&s, &mt);
        const mech_tensor *x = mech_run_get(s.run, "blocks.1.hook_resid_post");
        const mech_tensor *g = mech_run_grad(s.run, "blocks.1.hook_resid_post");
        assert_non_null(x);
        assert_non_null(g);
        int C = s.m->cfg.d_model;
        const float *U = s.m->unembed, *w = s.m->lnf_w;
        for (int b = 0; b < TB; b++)
            for (int t = 0; t < TT; t++) {
                const float *xr = x->data + ((size_t)b * TT + t) * C, *gr = g->data + ((size_t)b * TT + t) * C;
                if (t != TT - 1) {
                    for (int k = 0; k < C; k++) assert_true(gr[k] == 0.0f); // only the answer position
                    continue;
                }
                double u[64], want[64];
                for (int k = 0; k < C; k++)
                    u[k] = ((double)U[(size_t)s.answer[b] * C + k] - U[(size_t)s.wrong[b] * C + k]) / TB;
                if (!w) {
                    for (int k = 0; k < C; k++) want[k] = u[k];
                } else {
                    double mu = 0, var = 0;
                    for (int k = 0; k < C; k++) mu += xr[k];
                    mu /= C;
                    for (int k = 0; k < C; k++) var += (xr[k] - mu) * (xr[k] - mu);
                    var /= C;
                    double sd = sqrt(var + s.m->cfg.ln_eps), n[64];
                    for (int k = 0; k < C; k++) n[k] = (xr[k] - mu) / sd;
                    // J[i][j] = d n_i / d x_j = (delta_ij - 1/C - n_i n_j / C) / sd; want = J^T (u * w)
                    for (int j = 0; j < C; j++) {
                        double sum = 0;
                        for (int ii = 0; ii < C; ii++)
                            sum += u[ii] * w[ii] * (((ii == j) - 1.0 / C - n[ii] * n[j] / C) / sd);
                        want[j] = sum;
                    }
                }
                float wf[64];
                for (int k = 0; k < C; k++) wf[k] = (float)want[k];
                mech_assert_close(gr, wf, (size_t)C, 1e-6, 1e-4, "chain rule at the last resid_post");
            }
        teardown_case(&s);
    }
}

// A forward hook that overwrites z of layer 0: the gradient reaches z but
// nothing upstream of it.
static float patch_value = 0.25f;
static int patch_all(mech_tensor *t, int layer, void *user) {
    size_t n = mech_tensor_numel(t);
    for (size_t i = 0; i < n; i++) t->data[i] = patch_value;
    return 0;
}

// head 0 of z (shape [B, T, NH, HS]) at every position
static int patch_head0(mech_tensor *t, int layer, void *user) {
    size_t rows = (size_t)t->shape[0] * t->shape[1], NH = t->shape[2], HS = t->shape[3];
    for (size_t r = 0; r < rows; r++)
        for (size_t d = 0; d < HS; d++) t->data[r * NH * HS + d] = patch_value;
    return 0;
}

static void test_patched_activation(void **state) {
    setup s;
    setup_case(&s, 0, MECH_GRAD_PARAMS, "blocks.0.*");
    mech_err err = {0};
    if (mech_run_hook(s.run, "blocks.0.attn.hook_z", patch_all, NULL, &err)) fail_msg("%s", err.msg);
    mech_metric mt = metric_of(&s, MECH_METRIC_LOSS);
    run_backward(&s, &mt);
    const mech_tensor *gz = mech_run_grad(s.run, "blocks.0.attn.hook_z");
    size_t nz = mech_tensor_numel(gz);
    double mag = 0;
    for (size_t i = 0; i < nz; i++) mag = fmax(mag, fabs(gz->data[i]));
    assert_true(mag > 1e-4); // the gradient reaches z
    const char *upstream[] = {"blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v",
                              "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_attn_scores",
                              "blocks.0.ln1.hook_normalized"};
    for (int k = 0; k < 6; k++) {
        const mech_tensor *g = mech_run_grad(s.run, upstream[k]);
        assert_non_null(g);
        for (size_t i = 0; i < mech_tensor_numel(g); i++)
            if (g->data[i] != 0.0f) fail_msg("%s[%zu] = %g after patching z", upstream[k], i, g->data[i]);
    }
    const mech_model *pg = mech_run_param_grads(s.run);
    for (int i = 0; i < s.m->cfg.d_model * 3 * 8; i++) assert_true(pg->layers[0].qkv_w[i] == 0.0f);
    // and every other gradient is that of the patched model
    double *patch = malloc((size_t)TB * TT * 8 * sizeof *patch);
    for (int i = 0; i < TB * TT * 8; i++) patch[i] = patch_value;
    rhook hk = {.patch_name = "blocks.0.attn.hook_z", .patch = patch};
    check_params(&s, &mt, &hk, "z of block 0 patched");
    check_hooks(&s, &mt, &hk, "z of block 0 patched", NULL);
    free(patch);
    teardown_case(&s);
}

// Partial patches, where the local derivatives must be taken at the right
// values: one head of z, the pattern, the scores, a LayerNorm's output and
// scale, and a head's q input (which switches the forward to split inputs).
static int patch_pattern(mech_tensor *t, int layer, void *user) {
    // row (b=0, h=1, i=3): move weight between keys 0 and 2
    float *row = t->data + ((size_t)(0 * t->shape[1] + 1) * t->shape[2] + 3) * t->shape[3];
    float d = 0.5f * row[0];
    row[0] -= d, row[2] += d;
    return 0;
}

static int patch_scores(mech_tensor *t, int layer, void *user) {
    float *row = t->data + ((size_t)(1 * t->shape[1] + 0) * t->shape[2] + 4) * t->shape[3];
    row[1] += 0.7f;
    return 0;
}

static int patch_ln(mech_tensor *t, int layer, void *user) {
    t->data[5] = 0.3f, t->data[17] = -1.1f; // two elements of ln1.hook_normalized
    return 0;
}

static int patch_scale(mech_tensor *t, int layer, void *user) {
    t->data[2] *= 1.5f;
    return 0;
}

static int patch_qin(mech_tensor *t, int layer, void *user) {
    size_t C = t->shape[3], NH = t->shape[2];
    for (size_t r = 0; r < (size_t)t->shape[0] * t->shape[1]; r += 3) t->data[(r * NH + 1) * C + 2] += 0.4f;
    return 0;
}

static int read_only(mech_tensor *t, int layer, void *user) { return 0; }

static void test_partial_patches(void **state) {
    struct {
        const char *hook;
        mech_hook_fn fn;
    } p[] = {{"blocks.0.attn.hook_z", patch_head0},         {"blocks.1.attn.hook_pattern", patch_pattern},
             {"blocks.0.attn.hook_attn_scores", patch_scores}, {"blocks.1.ln1.hook_normalized", patch_ln},
             {"blocks.0.ln1.hook_scale", patch_scale},        {"blocks.1.hook_q_input", patch_qin},
             {"blocks.0.hook_k_input", read_only}};
    for (size_t k = 0; k < sizeof p / sizeof *p; k++) {
        setup s;
        setup_case(&s, 3, MECH_GRAD_PARAMS, "*"); // NH*HS != C, LayerNorm, gelu
        mech_err err = {0};
        if (mech_run_cache(s.run, p[k].hook, &err)) fail_msg("%s", err.msg);
        if (mech_run_hook(s.run, p[k].hook, p[k].fn, NULL, &err)) fail_msg("%s", err.msg);
        mech_metric mt = metric_of(&s, k % 2 ? MECH_METRIC_LOSS : MECH_METRIC_KL); // every position counts
        run_backward(&s, &mt);
        // the reference patches the same elements with the values the hook left
        const mech_tensor *a = mech_run_get(s.run, p[k].hook);
        size_t n = mech_tensor_numel(a);
        double *patch = malloc(n * sizeof *patch);
        // run the unpatched forward for comparison: elements that differ are patched
        mech_run *plain;
        if (mech_run_new(s.m, TB, TT, &plain, &err) || mech_run_cache(plain, p[k].hook, &err)) fail_msg("%s", err.msg);
        if (mech_run_forward(plain, s.ids, &err)) fail_msg("%s", err.msg);
        const mech_tensor *a0 = mech_run_get(plain, p[k].hook);
        int changed = 0;
        for (size_t i = 0; i < n; i++) {
            int d = memcmp(&a->data[i], &a0->data[i], sizeof(float)) != 0;
            changed += d;
            patch[i] = d ? a->data[i] : NAN;
        }
        assert_true(p[k].fn == read_only ? changed == 0 : changed > 0);
        mech_run_free(plain);
        rhook hk = {.patch_name = p[k].hook, .patch = patch};
        check_params(&s, &mt, &hk, p[k].hook);
        if (p[k].fn == patch_pattern) { // the patched row's query and the two keys, head 1 (HS = 5, A = 15)
            check_range(&s, &mt, &hk, "blocks.1.attn.hook_q", 3 * 15 + 5, 5);
            check_range(&s, &mt, &hk, "blocks.1.attn.hook_k", 0 * 15 + 5, 5);
            check_range(&s, &mt, &hk, "blocks.1.attn.hook_k", 2 * 15 + 5, 5);
        }
        if (p[k].fn == patch_scores) // the patched score's query row: (b=1, i=4), head 0
            check_range(&s, &mt, &hk, "blocks.0.attn.hook_q", (6 + 4) * 15, 5);
        char skip[32];
        snprintf(skip, sizeof skip, "blocks.%c.ln1.", p[k].hook[7]);
        check_hooks(&s, &mt, &hk, p[k].hook, strstr(p[k].hook, "_input") ? skip : NULL);
        free(patch);
        teardown_case(&s);
    }
}

// Backward hooks read and overwrite: zeroing the gradient at resid_pre of
// block 1 leaves block 1's parameter gradients alone and zeroes everything
// before it; a reading hook sees what the cache keeps.
static float seen_sum;
static int zero_grad(mech_tensor *t, int layer, void *user) {
    memset(t->data, 0, mech_tensor_numel(t) * sizeof(float));
    return 0;
}
static int sum_grad(mech_tensor *t, int layer, void *user) {
    for (size_t i = 0; i < mech_tensor_numel(t); i++) seen_sum += t->data[i];
    return 0;
}
static int stop_grad(mech_tensor *t, int layer, void *user) { return 1; }

static void test_backward_hooks(void **state) {
    setup s;
    setup_case(&s, 0, MECH_GRAD_PARAMS, "blocks.1.attn.hook_z");
    mech_metric mt = metric_of(&s, MECH_METRIC_LOSS);
    run_backward(&s, &mt);
    const mech_model *g = mech_run_param_grads(s.run);
    size_t nfc = (size_t)8 * 12;
    float *fc1 = malloc(nfc * sizeof *fc1);
    memcpy(fc1, g->layers[1].fc_w, nfc * sizeof *fc1);
    mech_err err = {0};
    seen_sum = 0;
    if (mech_run_grad_hook(s.run, "blocks.1.attn.hook_z", sum_grad, NULL, &err)) fail_msg("%s", err.msg);
    if (mech_run_grad_hook(s.run, "blocks.1.hook_resid_pre", zero_grad, NULL, &err)) fail_msg("%s", err.msg);
    run_backward(&s, &mt);
    const mech_tensor *gz = mech_run_grad(s.run, "blocks.1.attn.hook_z");
    double want = 0;
    for (size_t i = 0; i < mech_tensor_numel(gz); i++) want += gz->data[i];
    assert_true(fabs(seen_sum - want) < 1e-6 + 1e-5 * fabs(want));
    assert_true(fabs(want) > 0);
    mech_assert_close(g->layers[1].fc_w, fc1, nfc, 0, 0, "block 1 unaffected");
    for (size_t i = 0; i < nfc; i++) assert_true(g->layers[0].fc_w[i] == 0.0f);
    for (size_t i = 0; i < (size_t)8 * 8; i++) assert_true(g->wpe[i] == 0.0f);
    // a hook that stops
    if (mech_run_grad_hook(s.run, "blocks.0.hook_mlp_out", stop_grad, NULL, &err)) fail_msg("%s", err.msg);
    if (mech_run_forward(s.run, s.ids, &err)) fail_msg("%s", err.msg);
    assert_int_equal(mech_run_backward(s.run, &mt, NULL, &err), MECH_ERR_CANCELLED);
    free(fc1);
    teardown_case(&s);
}

// A padded row's gradients equal those of the sequence run alone.
static void test_padding_matches_alone(void **state) {
    mech_err err = {0};
    mech_config c = case_cfg(4);
    mech_model *m = tiny_model(&c, 7);
    int32_t ids[TB * TT] = {1, 2, 3, 4, 0, 0, 0, 5, 6, 7, 8, 9};
    uint8_t mask[TB * TT] = {1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1};
    mech_run *r, *a;
    if (mech_run_new(m, TB, TT, &r, &err) || mech_run_set_mask(r, mask, &err) ||
        mech_run_enable_grad(r, MECH_GRAD_ACTS, &err) || mech_run_cache_grad(r, "blocks.0.attn.hook_v", &err))
        fail_msg("%s", err.msg);
    int32_t ans[2] = {3, 4}, wr[2] = {1, 1};
    mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans, .wrong = wr};
    if (mech_run_forward(r, ids, &err) || mech_run_backward(r, &mt, NULL, &err)) fail_msg("%s", err.msg);
    const mech_tensor *g = mech_run_grad(r, "blocks.0.attn.hook_v");
    if (mech_run_new(m, 1, 5, &a, &err) || mech_run_enable_grad(a, MECH_GRAD_ACTS, &err) ||
        mech_run_cache_grad(a, "blocks.0.attn.hook_v", &err))
        fail_msg("%s", err.msg);
    mech_metric m1 = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans + 1, .wrong = wr + 1};
    if (mech_run_forward(a, ids + 7, &err) || mech_run_backward(a, &m1, NULL, &err)) fail_msg("%s", err.msg);
    const mech_tensor *g1 = mech_run_grad(a, "blocks.0.attn.hook_v");
    size_t w = 2 * 4; // NH * HS
    float *want = malloc(5 * w * sizeof *want);
    for (size_t i = 0; i < 5 * w; i++) want[i] = g1->data[i] / 2; // the batch metric averages two rows
    mech_assert_close(g->data + (size_t)(TT + 1) * w, want, 5 * w, 1e-7, 1e-5, "left-padded row vs alone");
    for (size_t i = 0; i < w; i++) assert_true(g->data[TT * w + i] == 0.0f); // the padding position
    free(want);
    mech_run_free(a);
    mech_run_free(r);
    mech_model_free(m);
}

// A forward started at block 1 from the full run's resid_pre is
// differentiated down to there: the same gradients at block 1, zero for
// block 0's parameters and the embeddings.
static void test_start_layer(void **state) {
    setup s;
    setup_case(&s, 3, MECH_GRAD_PARAMS, "blocks.1.*");
    mech_err err = {0};
    if (mech_run_cache(s.run, "blocks.1.hook_resid_pre", &err)) fail_msg("%s", err.msg);
    mech_metric mt = metric_of(&s, MECH_METRIC_LOGPROB);
    double v = run_backward(&s, &mt), v2;
    size_t n = mech_tensor_numel(mech_run_grad(s.run, "blocks.1.hook_resid_pre"));
    float *want = malloc(n * sizeof *want), *start = malloc(n * sizeof *start);
    memcpy(want, mech_run_grad(s.run, "blocks.1.hook_resid_pre")->data, n * sizeof *want);
    memcpy(start, mech_run_get(s.run, "blocks.1.hook_resid_pre")->data, n * sizeof *start);
    mech_run_opts o = {.start_layer = 1, .start_resid = start};
    if (mech_run_forward_ex(s.run, NULL, &o, &err) || mech_run_backward(s.run, &mt, &v2, &err)) fail_msg("%s", err.msg);
    assert_true(v == v2);
    mech_assert_close(mech_run_grad(s.run, "blocks.1.hook_resid_pre")->data, want, n, 1e-7, 1e-5, "resid_pre of block 1");
    const mech_model *g = mech_run_param_grads(s.run);
    for (int i = 0; i < 8 * 45; i++) assert_true(g->layers[0].qkv_w[i] == 0.0f);
    for (int i = 0; i < 8 * 8; i++) assert_true(g->wpe[i] == 0.0f);
    double mag = 0;
    for (int i = 0; i < 8 * 45; i++) mag += fabs(g->layers[1].qkv_w[i]);
    assert_true(mag > 0);
    free(want), free(start);
    teardown_case(&s);
}

// Grad mode changes where the forward writes, never what it computes: the
// logits and a cached activation equal a plain run's bit for bit.
static void test_grad_mode_forward_unchanged(void **state) {
    for (int i = 0; i < (int)N_CASES; i++) {
        setup s;
        setup_case(&s, i, MECH_GRAD_PARAMS, NULL);
        mech_err err = {0};
        mech_run *plain;
        if (mech_run_new(s.m, TB, TT, &plain, &err) || (cases[i].padded && mech_run_set_mask(plain, s.mask, &err)) ||
            mech_run_cache(plain, "blocks.1.attn.hook_z", &err) || mech_run_cache(s.run, "blocks.1.attn.hook_z", &err) ||
            mech_run_forward(plain, s.ids, &err) || mech_run_forward(s.run, s.ids, &err))
            fail_msg("%s", err.msg);
        size_t nl = (size_t)TB * TT * s.m->cfg.d_vocab;
        assert_memory_equal(mech_run_logits(plain), mech_run_logits(s.run), nl * sizeof(float));
        const mech_tensor *a = mech_run_get(plain, "blocks.1.attn.hook_z"), *b = mech_run_get(s.run, "blocks.1.attn.hook_z");
        assert_memory_equal(a->data, b->data, mech_tensor_numel(a) * sizeof(float));
        mech_run_free(plain);
        teardown_case(&s);
    }
}

// Sequences longer than the attention backward's block of 64 queries:
// causal and bidirectional, a row left-padded past the first block (whose
// queries then read no key), every position in the metric, the one-pass
// path (q, k, v wanted) and the three-pass one (the pattern's gradient
// wanted too), against finite differences of the double forward.
static void test_long_attention(void **state) {
    enum { LB = 2, LT = 150 };
    static int32_t ids[LB * LT];
    static uint8_t mask[LB * LT];
    for (int k = 0; k < LB * LT; k++) ids[k] = (int32_t)((k * 7 + 3) % 11), mask[k] = k < LT || k >= LT + 70;
    for (int causal = 0; causal < 2; causal++)
        for (int three = 0; three < 2; three++) {
            mech_config c = tiny(1, MECH_ACT_GELU_NEW, 0, causal, 1, 0, 2, 4);
            c.n_ctx = 160;
            setup s = {0};
            s.m = tiny_model(&c, 31 + causal);
            ref_from_model(&s.R, s.m);
            s.bt = (rbatch){LB, LT, ids, mask};
            mech_err err = {0};
            if (mech_run_new(s.m, LB, LT, &s.run, &err) || mech_run_set_threads(s.run, 2, &err) ||
                mech_run_set_mask(s.run, mask, &err) || mech_run_enable_grad(s.run, MECH_GRAD_ACTS, &err) ||
                mech_run_cache_grad(s.run, "blocks.*.attn.hook_q", &err) ||
                mech_run_cache_grad(s.run, "blocks.*.attn.hook_k", &err) ||
                mech_run_cache_grad(s.run, "blocks.*.attn.hook_v", &err) ||
                (three && mech_run_cache_grad(s.run, "blocks.1.attn.hook_pattern", &err)))
                fail_msg("%s", err.msg);
            int32_t ans[LB] = {3, 5};
            mech_metric mt = {.kind = MECH_METRIC_LOGPROB, .pos = MECH_POS_ALL, .answer = ans};
            double v;
            if (mech_run_forward(s.run, ids, &err) || mech_run_backward(s.run, &mt, &v, &err)) fail_msg("%s", err.msg);
            assert_true(fabs(v - ref_run(&s.R, &s.bt, &mt, NULL, NULL)) < 1e-4);
            check_hooks(&s, &mt, NULL, causal ? "long causal" : "long bidirectional", "blocks.1.attn.hook_pattern");
            // the padded row's first 70 positions: no query there, no gradient
            const mech_tensor *g = mech_run_grad(s.run, "blocks.0.attn.hook_k");
            for (size_t i = 0; i < (size_t)70 * 8; i++) assert_true(g->data[(size_t)LT * 8 + i] == 0.0f);
            // the patterns the forward kept, against recomputing them: the same bits
            size_t n_kept = 0, n_re = 0;
            const mech_tensor *kept = mech_run_grads_cached(s.run, &n_kept);
            float *copy[8];
            for (size_t k = 0; k < n_kept && k < 8; k++) {
                copy[k] = malloc(mech_tensor_numel(&kept[k]) * sizeof(float));
                memcpy(copy[k], kept[k].data, mech_tensor_numel(&kept[k]) * sizeof(float));
            }
            assert_int_equal(mech_run_set_grad_pattern_bytes(s.run, 0, &err), MECH_OK);
            if (mech_run_forward(s.run, ids, &err) || mech_run_backward(s.run, &mt, &v, &err)) fail_msg("%s", err.msg);
            const mech_tensor *re = mech_run_grads_cached(s.run, &n_re);
            assert_true(n_kept == n_re && n_kept >= 6 && n_kept <= 8);
            for (size_t k = 0; k < n_kept; k++) {
                assert_memory_equal(copy[k], re[k].data, mech_tensor_numel(&re[k]) * sizeof(float));
                free(copy[k]);
            }
            mech_run_free(s.run);
            mech_model_free(s.m);
            ref_free(&s.R);
        }
}

// The vectorised gelu_new derivative against the tanh form in double, over
// both tails and a length with a partial last vector.
static void test_gelu_new_grad_kernel(void **state) {
    enum { N = 1003 };
    static float g[N], x[N];
    for (int i = 0; i < N; i++) x[i] = (float)(-60.0 + 80.0 * i / (N - 1)), g[i] = (float)(0.5 + (i % 7) * 0.25);
    x[0] = 0.0f;
    static float g0[N];
    memcpy(g0, g, sizeof g);
    mech_vec_gelu_new_grad(g, x, N);
    for (int i = 0; i < N; i++) {
        double xi = x[i], k = 0.7978845608028654, th = tanh(k * (xi + 0.044715 * xi * xi * xi));
        double d = 0.5 * (1 + th) + 0.5 * xi * (1 - th * th) * k * (1 + 3 * 0.044715 * xi * xi);
        double want = g0[i] * d;
        if (!(fabs(g[i] - want) <= 1e-6 * fabs(want) + 2e-7)) // NaN fails too
            fail_msg("gelu_new'(%g) * %g: %.9g, want %.9g", xi, g0[i], g[i], want);
    }
    // the forward's fused version: the activation bit for bit mech_vec_gelu_new's, and
    // g * its derivative bit for bit mech_vec_gelu_new_grad's, NaN and infinities included
    static float y[N], y0[N], d[N];
    x[1] = NAN, x[2] = INFINITY, x[3] = -INFINITY, x[4] = -200.0f;
    mech_vec_gelu_new(y0, x, N);
    mech_vec_gelu_new_fwd_grad(y, d, x, N);
    assert_memory_equal(y, y0, sizeof y);
    memcpy(g, g0, sizeof g);
    mech_vec_gelu_new_grad(g, x, N);
    for (int i = 0; i < N; i++) {
        float gd = g0[i] * d[i];
        if (memcmp(&gd, &g[i], sizeof gd)) fail_msg("fused derivative at %g: %.9g, want %.9g", x[i], gd, g[i]);
    }
}

// ---------------------------------------------------------------------------
// Fast paths against the general one

// Every default point plus the opt-in ones attribution patching reads.
static void cache_all(setup *s) {
    mech_err err = {0};
    const char *opt[] = {"*", "blocks.*.hook_q_input", "blocks.*.hook_k_input", "blocks.*.hook_v_input",
                         "blocks.*.attn.hook_result", "blocks.*.hook_mlp_in"};
    for (int k = 0; k < 6; k++) {
        if (s->m->cfg.attn_only && strstr(opt[k], "mlp_in")) continue;
        if (mech_run_cache_grad(s->run, opt[k], &err)) fail_msg("%s", err.msg);
    }
}

// The gradient at name of run r, which must be there.
static const mech_tensor *grad_of(mech_run *r, const char *name) {
    const mech_tensor *g = mech_run_grad(r, name);
    if (!g) fail_msg("no gradient cached at %s", name);
    return g;
}

// Every cached gradient of a equals b's at the same point, bit for bit.
static void assert_grads_equal(mech_run *a, mech_run *b, const char *what) {
    size_t n;
    const mech_tensor *ga = mech_run_grads_cached(a, &n);
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++) {
        const mech_tensor *gb = grad_of(b, ga[i].name);
        size_t k = mech_tensor_numel(&ga[i]);
        if (memcmp(ga[i].data, gb->data, k * sizeof(float)))
            fail_msg("%s: gradients at %s differ", what, ga[i].name);
    }
}

// Every parameter gradient of a equals b's, bit for bit.
static void assert_param_grads_equal(mech_run *a, mech_run *b, const char *what) {
    const mech_model *ga = mech_run_param_grads(a), *gb = mech_run_param_grads(b);
    assert_non_null(ga);
    assert_non_null(gb);
    assert_int_equal(ga->owned_floats, gb->owned_floats);
    if (memcmp(ga->owned, gb->owned, ga->owned_floats * sizeof(float))) {
        for (size_t i = 0; i < ga->owned_floats; i++)
            if (ga->owned[i] != gb->owned[i])
                fail_msg("%s: parameter gradient %zu: %.9g vs %.9g", what, i, ga->owned[i], gb->owned[i]);
    }
}

// MECH_GRAD_ACTS skips the parameter gradients and nothing else: its
// activation gradients equal a MECH_GRAD_PARAMS run's bit for bit, for
// every config and metric, through the per-head (q/k/v input, result) paths.
// The parameter gradients of a run that computes those per-head inputs equal
// a plain run's (one W_qkv product instead of one per head).
// mech_vec_softmax_scaled (the metric's softmax): against a double softmax
// computed here, bit for bit against mech_vec_softmax on a copy times the
// scale (so every metric's gradient is what it was), its largest value
// exactly, and an all -inf row.
static void test_softmax_scaled_kernel(void **state) {
    (void)state;
    static const size_t sizes[] = {1, 15, 16, 17, 1003, 50257};
    static const float scales[] = {1.0f, 0.0123f, -0.37f};
    float *x = malloc(50257 * sizeof *x), *o = malloc(50257 * sizeof *o), *ref = malloc(50257 * sizeof *ref);
    assert_true(x && o && ref);
    uint32_t st = 99u;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t n = sizes[si];
        for (size_t i = 0; i < n; i++) st = st * 1664525u + 1013904223u, x[i] = (float)(st >> 8) / 16777216.0f * 30.0f - 20.0f;
        double mx = -INFINITY, sum = 0;
        for (size_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
        for (size_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
        for (size_t k = 0; k < sizeof scales / sizeof *scales; k++) {
            float sc = scales[k], pm = -1.0f, want_pm = 0;
            float m = mech_vec_softmax_scaled(o, x, n, sc, &pm);
            assert_true(m == (float)mx);
            memcpy(ref, x, n * sizeof *ref);
            mech_vec_softmax(ref, n);
            for (size_t i = 0; i < n; i++) {
                want_pm = ref[i] > want_pm ? ref[i] : want_pm;
                if (o[i] != ref[i] * sc) fail_msg("n=%zu scale %g: out[%zu] = %.9g, want %.9g", n, sc, i, o[i], ref[i] * sc);
                double p = exp((double)x[i] - mx) / sum;
                // x - max rounds to float (up to 2e-6 relative in p at a spread of 30)
                assert_true(fabs(o[i] - p * sc) <= 1e-5 * p * fabs(sc) + 1e-30);
            }
            assert_true(pm == want_pm);
        }
    }
    for (size_t i = 0; i < 17; i++) x[i] = -INFINITY, o[i] = 5.0f;
    float pm = -1.0f;
    assert_true(mech_vec_softmax_scaled(o, x, 17, 2.0f, &pm) == -INFINITY);
    assert_true(pm == 0.0f);
    for (size_t i = 0; i < 17; i++) assert_true(o[i] == 0.0f);
    free(x), free(o), free(ref);
}

// The backward's vector steps: mech_vec_div equals the scalar division bit
// for bit; mech_vec_softmax_grad, in place or not, against a double
// reference (the sum's order differs: within 1e-6 of the row's scale);
// mech_vec_dot_f64 with and without b against double sums in order; at
// lengths around the vector width and one of a long row.
static void test_backward_vector_steps(void **state) {
    (void)state;
    static const size_t sizes[] = {1, 7, 16, 17, 64, 1025};
    float x[1025], y[1025], p[1025], dp[1025], ds[1025], ip[1025];
    uint32_t st = 7u;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t n = sizes[si];
        double psum = 0;
        for (size_t i = 0; i < n; i++) {
            st = st * 1664525u + 1013904223u, x[i] = (float)(st >> 8) / 16777216.0f * 40.0f - 20.0f;
            st = st * 1664525u + 1013904223u, p[i] = (float)(st >> 8) / 16777216.0f, psum += p[i];
            st = st * 1664525u + 1013904223u, dp[i] = (float)(st >> 8) / 16777216.0f * 6.0f - 3.0f;
        }
        for (size_t i = 0; i < n; i++) p[i] = (float)(p[i] / psum);
        memcpy(y, x, sizeof x);
        mech_vec_div(y, n, 8.5f);
        for (size_t i = 0; i < n; i++) assert_true(y[i] == x[i] / 8.5f);
        assert_true(n == 1025 || y[n] == x[n]); // nothing past n
        double dot = 0, xs = 0, xd = 0, mag = 0, xmag = 0;
        for (size_t i = 0; i < n; i++) {
            dot += (double)p[i] * dp[i], xs += x[i], xd += (double)x[i] * dp[i];
            mag += fabs((double)x[i] * dp[i]), xmag += fabs((double)x[i]);
        }
        assert_true(fabs(mech_vec_dot_f64(x, dp, n) - xd) <= 1e-13 * mag);
        assert_true(fabs(mech_vec_dot_f64(x, NULL, n) - xs) <= 1e-13 * xmag);
        for (size_t off = 0; off < 3; off++) { // mech_copy_stream at any alignment
            float dst[1030];
            for (size_t i = 0; i < 1030; i++) dst[i] = -1.0f;
            mech_copy_stream(dst + off, x, n);
            for (size_t i = 0; i < 1030; i++)
                assert_true(dst[i] == (i >= off && i < off + n ? x[i - off] : -1.0f));
        }
        memcpy(ip, dp, sizeof dp);
        mech_vec_softmax_grad(ds, p, dp, n);
        mech_vec_softmax_grad(ip, p, ip, n);
        for (size_t i = 0; i < n; i++) {
            double want = p[i] * (dp[i] - dot);
            if (fabs(ds[i] - want) > 1e-6 * p[i] * 4.0 + 1e-12) fail_msg("n=%zu ds[%zu] = %.9g, want %.9g", n, i, ds[i], want);
            assert_true(ip[i] == ds[i]);
        }
    }
}

// mech_matmul_add: out += inp @ w, against mech_matmul's product added to
// the old out in double, with and without a pool, K over two blocks.
static void test_matmul_add(void **state) {
    (void)state;
    static const int shapes[][3] = {{64, 64, 200}, {5, 900, 33}, {300, 40, 130}};
    mech_pool *pool = mech_pool_new(2);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int M = shapes[si][0], K = shapes[si][1], N = shapes[si][2], ldo = N + 3;
        float *a = malloc(sizeof(float) * (size_t)M * K), *w = malloc(sizeof(float) * (size_t)K * N),
              *o = malloc(sizeof(float) * (size_t)M * ldo), *o0 = malloc(sizeof(float) * (size_t)M * ldo),
              *pr = malloc(sizeof(float) * (size_t)M * N);
        assert_true(a && w && o && o0 && pr);
        uint32_t st = 3u + (uint32_t)si;
        for (size_t i = 0; i < (size_t)M * K; i++) st = st * 1664525u + 1013904223u, a[i] = (float)(st >> 8) / 16777216.0f - 0.5f;
        for (size_t i = 0; i < (size_t)K * N; i++) st = st * 1664525u + 1013904223u, w[i] = (float)(st >> 8) / 16777216.0f - 0.5f;
        for (size_t i = 0; i < (size_t)M * ldo; i++) st = st * 1664525u + 1013904223u, o0[i] = (float)(st >> 8) / 16777216.0f * 4.0f;
        mech_matmul(NULL, pr, N, a, K, w, N, NULL, M, K, N);
        for (int usepool = 0; usepool < 2; usepool++) {
            memcpy(o, o0, sizeof(float) * (size_t)M * ldo);
            mech_matmul_add(usepool ? pool : NULL, o, ldo, a, K, w, N, M, K, N);
            for (int m = 0; m < M; m++) {
                for (int n = 0; n < N; n++) {
                    double want = (double)o0[(size_t)m * ldo + n] + pr[(size_t)m * N + n];
                    float got = o[(size_t)m * ldo + n];
                    if (fabs(got - want) > 1e-5 * (fabs(want) + sqrt((double)K)))
                        fail_msg("M=%d K=%d N=%d out[%d,%d] = %.9g, want %.9g", M, K, N, m, n, got, want);
                }
                for (int n = N; n < ldo; n++) assert_true(o[(size_t)m * ldo + n] == o0[(size_t)m * ldo + n]);
            }
        }
        free(a), free(w), free(o), free(o0), free(pr);
    }
    mech_pool_free(pool);
}

// mech_matmul_tn (out = inp^T w, inp stored (K, M)) against a double sum of
// products computed here, and bit for bit against mech_matmul on a
// transposed copy of inp (the same kernel and order); its column sums of w
// against a double sum over k in order, rounded once, as documented (and as
// the colsum of the bias gradients it replaces); for every kernel this
// CPU has, with and without a pool: edge strips and panels (M, N not
// multiples of the tile), two K blocks plus a tail, strides wider than the
// matrices, a product small enough for one task, a tall one (M >= 4 N: rows
// split between tasks) and one whose tasks' columns need two B blocks. With
// a pool and AVX-512, more than one K block goes through a transposed copy
// of inp, except when the copy would pass 64 MiB (17,000 x 1,000 floats):
// both ways are checked.
static void test_matmul_tn_kernel(void **state) {
    (void)state;
    static const int shapes[][3] = {{203, 517, 77}, {64, 40, 100}, {5, 3, 2}, {131, 30, 781}, {700, 45, 100}, {40, 400, 1500}, {17000, 1000, 3}};
    static const char *const kernels[] = {"avx512", "avx2", "portable"};
    mech_pool *pool = mech_pool_new(2);
    assert_non_null(pool);
    int ran = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int M = shapes[si][0], K = shapes[si][1], N = shapes[si][2];
        // odd shapes: rows 64-byte aligned, so whole tiles of one K block are streamed
        int ldi = M + 3, ldw = N + 5, ldo = si % 2 ? (N + 16) / 16 * 16 : N + 1;
        float *x = malloc(sizeof(float) * (size_t)K * ldi), *w = malloc(sizeof(float) * (size_t)K * ldw);
        float *xt = malloc(sizeof(float) * (size_t)M * K),
              *o1 = aligned_alloc(64, (sizeof(float) * (size_t)M * ldo + 63) / 64 * 64),
              *o2 = malloc(sizeof(float) * (size_t)M * ldo), *ws = malloc(sizeof(float) * (size_t)(N + 1));
        assert_true(x && w && xt && o1 && o2 && ws);
        uint32_t st = 12345u + (uint32_t)si;
        for (size_t i = 0; i < (size_t)K * ldi; i++) st = st * 1664525u + 1013904223u, x[i] = (float)(st >> 8) / 16777216.0f - 0.5f;
        for (size_t i = 0; i < (size_t)K * ldw; i++) st = st * 1664525u + 1013904223u, w[i] = (float)(st >> 8) / 16777216.0f - 0.5f;
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) xt[(size_t)m * K + k] = x[(size_t)k * ldi + m];
        for (size_t ki = 0; ki < sizeof kernels / sizeof *kernels; ki++)
            for (int usepool = 0; usepool < 2; usepool++) {
                mech_pool *p = usepool ? pool : NULL;
                for (size_t i = 0; i < (size_t)M * ldo; i++) o1[i] = o2[i] = -7.0f;
                for (int n = 0; n <= N; n++) ws[n] = -7.0f;
                // the column sums on every other call: the product is the same without
                if (mech_matmul_tn_with(kernels[ki], p, o1, ldo, x, ldi, w, ldw, usepool ? ws : NULL, M, K, N)) continue;
                ran++;
                for (int n = 0; n < N && usepool; n++) {
                    double sum = 0;
                    for (int k = 0; k < K; k++) sum += w[(size_t)k * ldw + n];
                    if (ws[n] != (float)sum) fail_msg("%s column sum %d = %.9g, want %.9g", kernels[ki], n, ws[n], sum);
                }
                assert_true(ws[N] == -7.0f && (usepool || ws[0] == -7.0f));
                assert_int_equal(mech_matmul_with(kernels[ki], 0, p, o2, ldo, xt, K, w, ldw, NULL, M, K, N), 0);
                assert_memory_equal(o1, o2, sizeof(float) * (size_t)M * ldo);
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) {
                        double want = 0, mag = 0;
                        for (int k = 0; k < K; k++) {
                            double t = (double)x[(size_t)k * ldi + m] * w[(size_t)k * ldw + n];
                            want += t, mag += fabs(t);
                        }
                        float got = o1[(size_t)m * ldo + n];
                        if (fabs(got - want) > 1e-5 * mag + 1e-6)
                            fail_msg("%s M=%d K=%d N=%d out[%d,%d] = %g, want %g", kernels[ki], M, K, N, m, n, got, want);
                    }
                for (int m = 0; m < M; m++) // the padding between rows untouched
                    assert_true(o1[(size_t)m * ldo + N] == -7.0f);
            }
        free(x), free(w), free(xt), free(o1), free(o2), free(ws);
    }
    assert_true(ran >= 8); // the portable kernel at least, with and without a pool
    mech_pool_free(pool);
}

static void test_acts_equal_params(void **state) {
    for (size_t i = 0; i < N_CASES; i++)
        for (int kind = 0; kind < MECH_METRIC_COUNT_; kind++) {
            setup p, a, q;
            setup_case(&p, (int)i, MECH_GRAD_PARAMS, NULL);
            setup_case(&a, (int)i, MECH_GRAD_ACTS, NULL);
            setup_case(&q, (int)i, MECH_GRAD_PARAMS, NULL);
            cache_all(&p);
            cache_all(&a);
            mech_metric mp = metric_of(&p, kind), ma = metric_of(&a, kind), mq = metric_of(&q, kind);
            double vp = run_backward(&p, &mp), va = run_backward(&a, &ma), vq = run_backward(&q, &mq);
            assert_true(vp == va && vp == vq);
            assert_null(mech_run_param_grads(a.run));
            char what[160];
            snprintf(what, sizeof what, "%s, %s: acts vs params", cases[i].name, mech_metric_name(kind));
            assert_grads_equal(a.run, p.run, what);
            const mech_model *gp_ = mech_run_param_grads(p.run), *gq = mech_run_param_grads(q.run);
            assert_int_equal(gp_->owned_floats, gq->owned_floats);
            snprintf(what, sizeof what, "%s, %s: params with per-head inputs", cases[i].name, mech_metric_name(kind));
            mech_assert_close(gp_->owned, gq->owned, gq->owned_floats, 1e-7, 1e-5, what);
            teardown_case(&q);
            teardown_case(&a);
            teardown_case(&p);
        }
}

// With activation gradients only, the backward stops at the lowest block
// that has a gradient cache or hook: the points it keeps get the full
// backward's gradients bit for bit (block 1 only; ln_final only; the
// embedding only, which needs every block).
static void test_skip_lower_blocks(void **state) {
    static const char *const keep[] = {"blocks.1.*", "blocks.1.attn.hook_q", "ln_final.*", "hook_embed"};
    for (size_t i = 0; i < N_CASES; i++)
        for (size_t k = 0; k < sizeof keep / sizeof *keep; k++) {
            setup full, part;
            setup_case(&full, (int)i, MECH_GRAD_ACTS, "*");
            setup_case(&part, (int)i, MECH_GRAD_ACTS, NULL);
            mech_err err = {0};
            if (mech_run_cache_grad(part.run, keep[k], &err)) {
                assert_int_equal(case_cfg((int)i).norm, MECH_NORM_NONE);
                teardown_case(&part);
                teardown_case(&full);
                continue; // no ln_final without LayerNorm
            }
            mech_metric mf = metric_of(&full, MECH_METRIC_LOGPROB), mp = metric_of(&part, MECH_METRIC_LOGPROB);
            double vf = run_backward(&full, &mf), vp = run_backward(&part, &mp);
            assert_true(vf == vp);
            char what[160];
            snprintf(what, sizeof what, "%s, only %s", cases[i].name, keep[k]);
            assert_grads_equal(part.run, full.run, what);
            teardown_case(&part);
            teardown_case(&full);
        }
    // nothing wanted at all: the value alone
    setup s;
    setup_case(&s, 0, MECH_GRAD_ACTS, NULL);
    mech_metric mt = metric_of(&s, MECH_METRIC_KL);
    mech_err err = {0};
    double v = run_backward(&s, &mt), want;
    if (mech_metric_eval(s.run, &mt, &want, &err)) fail_msg("%s", err.msg);
    assert_true(v == want);
    teardown_case(&s);
}

// Logits restricted to the rows a metric reads (mech_run_set_logits_rows)
// give the full run's value, activation and parameter gradients bit for
// bit (the rows are the same sums in the same order, and the backward reads
// only those rows either way); a metric reading rows that were not computed
// is refused.
static void test_logits_rows(void **state) {
    for (size_t i = 0; i < N_CASES; i++)
        for (int v = 0; v < 4; v++) {
            // (metric, pos) and the rows computed: positions first.. of each row, or the last
            static const struct {
                int kind, pos, first, n;
            } var[] = {{MECH_METRIC_LOGIT_DIFF, -2, 1, TT - 1},
                       {MECH_METRIC_LOGPROB, 1, 1, TT - 1},
                       {MECH_METRIC_KL, -1, MECH_LOGITS_LAST, 1},
                       {MECH_METRIC_LOGPROB, -1, MECH_LOGITS_LAST, 1}};
            setup full, part;
            setup_case(&full, (int)i, MECH_GRAD_PARAMS, NULL);
            setup_case(&part, (int)i, MECH_GRAD_PARAMS, NULL);
            cache_all(&full);
            cache_all(&part);
            mech_err err = {0};
            if (mech_run_set_logits_rows(part.run, var[v].first, var[v].n, &err)) fail_msg("%s", err.msg);
            mech_metric mf = metric_of(&full, var[v].kind), mp = metric_of(&part, var[v].kind);
            mf.pos = mp.pos = var[v].pos;
            int V = full.m->cfg.d_vocab;
            float *ref = NULL;
            if (var[v].kind == MECH_METRIC_KL) {
                // the reference in the restricted run's layout: each row's last real token
                ref = malloc((size_t)TB * V * sizeof *ref);
                for (int b = 0; b < TB; b++) {
                    int t = TT - 1;
                    while (cases[i].padded && !full.mask[b * TT + t]) t--;
                    memcpy(ref + (size_t)b * V, full.ref_logits + ((size_t)b * TT + t) * V, (size_t)V * sizeof *ref);
                }
                mp.ref_logits = ref;
            }
            double vf = run_backward(&full, &mf), vp = run_backward(&part, &mp);
            char what[160];
            snprintf(what, sizeof what, "%s, %s at %d: restricted logits", cases[i].name, mech_metric_name(var[v].kind),
                     var[v].pos);
            if (vf != vp) fail_msg("%s: value %.17g vs %.17g", what, vp, vf);
            assert_grads_equal(part.run, full.run, what);
            assert_param_grads_equal(part.run, full.run, what);
            // the loss reads every position; KL over every position too
            mech_metric loss = {.kind = MECH_METRIC_LOSS};
            assert_int_equal(mech_run_backward(part.run, &loss, NULL, &err), MECH_ERR_ARG);
            assert_non_null(strstr(err.msg, "does not compute"));
            mech_metric all = mp;
            all.pos = MECH_POS_ALL;
            assert_int_equal(mech_run_backward(part.run, &all, NULL, &err), MECH_ERR_ARG);
            assert_int_equal(mech_metric_eval(part.run, &all, NULL, &err), MECH_ERR_ARG);
            free(ref);
            teardown_case(&part);
            teardown_case(&full);
        }
}

static void test_errors(void **state) {
    setup s;
    setup_case(&s, 0, MECH_GRAD_ACTS, NULL);
    mech_err err = {0};
    mech_metric mt = metric_of(&s, MECH_METRIC_LOGIT_DIFF);
    // no forward yet
    assert_int_equal(mech_run_backward(s.run, &mt, NULL, &err), MECH_ERR_ARG);
    if (mech_run_forward(s.run, s.ids, &err)) fail_msg("%s", err.msg);
    mech_metric bad = mt;
    bad.wrong = NULL;
    assert_int_equal(mech_run_backward(s.run, &bad, NULL, &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "wrong"));
    bad = mt;
    bad.pos = TT;
    assert_int_equal(mech_run_backward(s.run, &bad, NULL, &err), MECH_ERR_RANGE);
    bad = mt;
    int32_t big[TB] = {11, 0};
    bad.answer = big;
    assert_int_equal(mech_run_backward(s.run, &bad, NULL, &err), MECH_ERR_RANGE);
    bad = metric_of(&s, MECH_METRIC_LOSS);
    bad.answer = s.answer;
    assert_int_equal(mech_run_backward(s.run, &bad, NULL, &err), MECH_ERR_ARG);
    assert_int_equal(mech_run_grad_hook(s.run, "blocks.9.*", read_only, NULL, &err), MECH_ERR_ARG);
    assert_int_equal(mech_run_cache_grad(s.run, "nope", &err), MECH_ERR_ARG);
    assert_int_equal(mech_run_enable_grad(s.run, 7, &err), MECH_ERR_ARG);
    // a pattern budget changes what the next forward keeps: the last one no longer serves
    assert_int_equal(mech_run_set_grad_pattern_bytes(s.run, 0, &err), MECH_OK);
    assert_int_equal(mech_run_backward(s.run, &mt, NULL, &err), MECH_ERR_ARG);
    if (mech_run_forward(s.run, s.ids, &err)) fail_msg("%s", err.msg);
    // caching a new activation after the forward: its buffers changed
    if (mech_run_cache(s.run, "blocks.0.attn.hook_q", &err)) fail_msg("%s", err.msg);
    assert_int_equal(mech_run_backward(s.run, &mt, NULL, &err), MECH_ERR_ARG);
    // grad mode off
    mech_run_enable_grad(s.run, 0, &err);
    if (mech_run_forward(s.run, s.ids, &err)) fail_msg("%s", err.msg);
    assert_int_equal(mech_run_backward(s.run, &mt, NULL, &err), MECH_ERR_ARG);
    assert_int_equal(mech_run_set_grad_pattern_bytes(s.run, 0, &err), MECH_ERR_ARG);
    teardown_case(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_matches_forward),
        cmocka_unit_test(test_param_grads_fd),
        cmocka_unit_test(test_hook_grads_fd),
        cmocka_unit_test(test_chain_rule_final_layernorm),
        cmocka_unit_test(test_patched_activation),
        cmocka_unit_test(test_partial_patches),
        cmocka_unit_test(test_backward_hooks),
        cmocka_unit_test(test_padding_matches_alone),
        cmocka_unit_test(test_start_layer),
        cmocka_unit_test(test_grad_mode_forward_unchanged),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_long_attention),
        cmocka_unit_test(test_gelu_new_grad_kernel),
        cmocka_unit_test(test_matmul_tn_kernel),
        cmocka_unit_test(test_softmax_scaled_kernel),
        cmocka_unit_test(test_backward_vector_steps),
        cmocka_unit_test(test_matmul_add),
        cmocka_unit_test(test_acts_equal_params),
        cmocka_unit_test(test_skip_lower_blocks),
        cmocka_unit_test(test_logits_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
