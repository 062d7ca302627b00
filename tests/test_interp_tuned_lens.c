/*
** tests/test_interp_tuned_lens.c: the tuned lens. A lens of zeros reads
** exactly as the logit lens; the analytic gradient of a translator equals
** central finite differences of an independent float64 computation of the
** KL (LayerNorm, no LayerNorm, untied unembedding with a bias); training
** lowers the held-out KL below the logit lens's at every layer; files
** round-trip bit for bit and truncated, malformed or mismatched ones are
** refused.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "interp/interp.h"
#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/gpt2-tiny/"

static mech_model *load_tiny(void) {
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load(FIX, &m, &err)) fail_msg("load: %s", err.msg);
    return m;
}

static mech_config tiny_cfg(void) {
    mech_config c = mech_config_gpt2_small();
    c.n_layers = 2, c.n_heads = 2, c.d_model = 16, c.d_head = 8, c.d_mlp = 32, c.n_ctx = 32, c.d_vocab = 50;
    return c;
}

static mech_model *random_model(mech_config c, uint64_t seed) {
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&c, seed, &m, &err)) fail_msg("random model: %s", err.msg);
    return m;
}

// Multiplies every weight matrix (not LayerNorms, not biases) by f: GPT-2's
// init (std 0.02) leaves a random model's layers nearly silent, so that the
// lenses would have little to read.
static void scale_weights(mech_model *m, float f) {
    mech_model_tensor *ts = NULL;
    size_t nt = 0;
    mech_err err = {0};
    if (mech_model_tensors(m, &ts, &nt, &err)) fail_msg("%s", err.msg);
    for (size_t i = 0; i < nt; i++) {
        if (strstr(ts[i].name, "ln") || strstr(ts[i].name, "bias")) continue;
        float *w = mech_model_param(m, ts[i].name);
        assert_non_null(w);
        size_t k = (size_t)ts[i].shape[0] * (ts[i].ndim > 1 ? (size_t)ts[i].shape[1] : 1);
        for (size_t j = 0; j < k; j++) w[j] *= f;
    }
    mech_free(ts);
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double rng_u(uint64_t *s) { return (double)(rng_next(s) >> 11) / 9007199254740992.0; }

static mech_tuned_lens *zero_lens(const mech_model *m) {
    mech_err err = {0};
    mech_tuned_lens *t = NULL;
    if (mech_tuned_lens_new(m, &t, &err)) fail_msg("%s", err.msg);
    return t;
}

// ---------------------------------------------------------------------------
// A = 0, b = 0 is the logit lens

static void check_zero_equals_logit(const mech_model *m, int B, int T, const uint8_t *mask) {
    mech_err err = {0};
    int32_t ids[B * T], targets[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 37 + 11) % m->cfg.d_vocab, targets[i] = (i * 53) % m->cfg.d_vocab;
    mech_run *run = NULL;
    if (mech_run_new(m, B, T, &run, &err) || mech_run_set_mask(run, mask, &err) || mech_lens_cache(run, &err) ||
        mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    mech_tuned_lens *t = zero_lens(m);
    mech_lens_row *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    if (mech_lens_logit(m, run, 7, targets, &a, &na, &err)) fail_msg("%s", err.msg);
    if (mech_lens_tuned(m, run, t, 7, targets, &b, &nb, &err)) fail_msg("%s", err.msg);
    assert_int_equal(na, nb);
    assert_true(na > 0);
    for (size_t i = 0; i < na; i++) {
        assert_int_equal(a[i].layer, b[i].layer);
        assert_int_equal(a[i].pos, b[i].pos);
        assert_int_equal(a[i].k, b[i].k);
        assert_memory_equal(a[i].top_ids, b[i].top_ids, sizeof a[i].top_ids);
        assert_memory_equal(a[i].top_probs, b[i].top_probs, sizeof a[i].top_probs);
        // bit for bit, not within a tolerance
        assert_memory_equal(&a[i].kl, &b[i].kl, sizeof a[i].kl);
        assert_memory_equal(&a[i].entropy, &b[i].entropy, sizeof a[i].entropy);
        assert_memory_equal(&a[i].target_prob, &b[i].target_prob, sizeof a[i].target_prob);
        assert_int_equal(a[i].target_rank, b[i].target_rank);
    }
    // and a non-zero lens changes every layer but the last
    t->bias[0] = 3.0f;
    t->bias[(size_t)(m->cfg.n_layers - 1) * m->cfg.d_model + 1] = -2.0f;
    mech_free(b);
    if (mech_lens_tuned(m, run, t, 7, targets, &b, &nb, &err)) fail_msg("%s", err.msg);
    double ka[m->cfg.n_layers + 1], kb[m->cfg.n_layers + 1];
    mech_lens_kl_by_layer(a, na, m->cfg.n_layers, ka);
    mech_lens_kl_by_layer(b, nb, m->cfg.n_layers, kb);
    for (int l = 0; l < m->cfg.n_layers; l++) assert_true(ka[l] != kb[l]);
    assert_true(ka[m->cfg.n_layers] == 0 && kb[m->cfg.n_layers] == 0);
    mech_free(a);
    mech_free(b);
    mech_tuned_lens_free(t);
    mech_run_free(run);
}

static void test_tuned_zero_is_logit_lens(void **state) {
    mech_model *m = load_tiny();
    check_zero_equals_logit(m, 2, 7, NULL);
    uint8_t mask[3 * 6] = {1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};
    check_zero_equals_logit(m, 3, 6, mask);
    mech_model_free(m);
}

static void test_tuned_kl_by_layer(void **state) {
    mech_lens_row rows[5] = {{.layer = 0, .kl = 1.0}, {.layer = 0, .kl = 2.0}, {.layer = 2, .kl = 0.5},
                             {.layer = 1, .kl = 4.0}, {.layer = 0, .kl = 6.0}};
    double out[3];
    mech_lens_kl_by_layer(rows, 5, 2, out);
    assert_true(out[0] == 3.0 && out[1] == 4.0 && out[2] == 0.5);
}

// ---------------------------------------------------------------------------
// The gradient against finite differences

// KL of translator (A, b) on rows h (n, C) against ref (n, V), all in double,
// written from the definition (not from the library's code).
static double kl_double(const mech_model *m, const double *A, const double *b, const float *h, const float *ref, int n) {
    int C = m->cfg.d_model, V = m->cfg.d_vocab;
    double *x = malloc(C * sizeof *x), *z = malloc(V * sizeof *z), total = 0;
    for (int r = 0; r < n; r++) {
        const float *hr = h + (size_t)r * C;
        for (int i = 0; i < C; i++) {
            double s = hr[i] + b[i];
            for (int j = 0; j < C; j++) s += A[i * C + j] * hr[j];
            x[i] = s;
        }
        if (m->cfg.norm == MECH_NORM_LAYERNORM) {
            double mu = 0, var = 0;
            for (int i = 0; i < C; i++) mu += x[i];
            mu /= C;
            for (int i = 0; i < C; i++) var += (x[i] - mu) * (x[i] - mu);
            double sd = sqrt(var / C + m->cfg.ln_eps);
            for (int i = 0; i < C; i++) x[i] = (x[i] - mu) / sd * m->lnf_w[i] + m->lnf_b[i];
        }
        double mz = -INFINITY, mr = -INFINITY, sz = 0, sr = 0;
        for (int v = 0; v < V; v++) {
            double s = m->unembed_b ? m->unembed_b[v] : 0;
            for (int i = 0; i < C; i++) s += (double)m->unembed[(size_t)v * C + i] * x[i];
            z[v] = s;
            mz = fmax(mz, s), mr = fmax(mr, ref[(size_t)r * V + v]);
        }
        for (int v = 0; v < V; v++) sz += exp(z[v] - mz), sr += exp(ref[(size_t)r * V + v] - mr);
        for (int v = 0; v < V; v++) {
            double lq = ref[(size_t)r * V + v] - mr - log(sr), lp = z[v] - mz - log(sz);
            total += exp(lq) * (lq - lp);
        }
    }
    free(x);
    free(z);
    return total / n;
}

static void check_grad(mech_model *m, const char *label) {
    mech_err err = {0};
    int C = m->cfg.d_model, V = m->cfg.d_vocab, L = m->cfg.n_layers, B = 2, T = 5, n = B * T;
    int32_t ids[B * T];
    for (int i = 0; i < n; i++) ids[i] = (i * 7 + 3) % V;
    mech_run *run = NULL;
    if (mech_run_new(m, B, T, &run, &err) || mech_lens_cache(run, &err) || mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    const float *ref = mech_run_logits(run);
    mech_tuned_lens *t = zero_lens(m);
    uint64_t s = 7;
    // a translator away from zero, so that A's and b's terms all matter
    for (size_t i = 0; i < (size_t)L * C * C; i++) t->weight[i] = (float)(0.2 * (rng_u(&s) - 0.5));
    for (size_t i = 0; i < (size_t)L * C; i++) t->bias[i] = (float)(0.5 * (rng_u(&s) - 0.5));
    double *A = malloc((size_t)C * C * sizeof *A), *b = malloc((size_t)C * sizeof *b);
    float *gw = malloc((size_t)C * C * sizeof *gw), *gb = malloc((size_t)C * sizeof *gb);
    for (int l = 0; l < L; l++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.hook_resid_pre", l);
        const float *h = mech_run_get(run, name)->data;
        double kl;
        if (mech_tuned_lens_grad(m, t, l, h, ref, n, &kl, gw, gb, &err)) fail_msg("%s", err.msg);
        for (int i = 0; i < C * C; i++) A[i] = t->weight[(size_t)l * C * C + i];
        for (int i = 0; i < C; i++) b[i] = t->bias[(size_t)l * C + i];
        double want = kl_double(m, A, b, h, ref, n);
        if (fabs(kl - want) > 1e-5 + 1e-4 * want) fail_msg("%s layer %d: KL %.9g, float64 %.9g", label, l, kl, want);
        // every bias element and 64 weight elements (every row and column among them)
        enum { NW = 64 };
        float got[NW + 64], fd[NW + 64];
        int k = 0;
        const double eps = 1e-4;
        for (int q = 0; q < NW + C && k < NW + 64; q++) {
            double *p;
            if (q < NW) {
                int i = q % C, j = (q * 5 + q / C) % C;
                p = &A[i * C + j], got[k] = gw[i * C + j];
            } else p = &b[q - NW], got[k] = gb[q - NW];
            double keep = *p;
            *p = keep + eps;
            double up = kl_double(m, A, b, h, ref, n);
            *p = keep - eps;
            double dn = kl_double(m, A, b, h, ref, n);
            *p = keep;
            fd[k++] = (float)((up - dn) / (2 * eps));
        }
        float scale = 0;
        for (int i = 0; i < k; i++) scale = fmaxf(scale, fabsf(fd[i]));
        if (!(scale > 1e-4)) fail_msg("%s layer %d: KL %g, gradient scale %g: nothing to compare", label, l, kl, scale);
        char lab[96];
        snprintf(lab, sizeof lab, "%s layer %d: analytic vs finite differences", label, l);
        mech_assert_close(got, fd, (size_t)k, 1e-4 * scale, 1e-3, lab);
    }
    free(A), free(b), free(gw), free(gb);
    mech_tuned_lens_free(t);
    mech_run_free(run);
}

static void test_tuned_grad_finite_differences(void **state) {
    mech_model *m = load_tiny();
    check_grad(m, "gpt2-tiny fixture");
    mech_model_free(m);
    mech_config c = tiny_cfg();
    c.norm = MECH_NORM_NONE;
    m = random_model(c, 3);
    scale_weights(m, 10);
    check_grad(m, "no LayerNorm");
    mech_model_free(m);
    c = tiny_cfg();
    c.tied_unembed = 0, c.unembed_bias = 1, c.attn_only = 1, c.d_mlp = 0;
    m = random_model(c, 4);
    scale_weights(m, 10);
    // the random init leaves the bias at 0: give it values so it counts
    float *ub = mech_model_param(m, "lm_head.bias");
    assert_non_null(ub);
    for (int v = 0; v < c.d_vocab; v++) ub[v] = (float)(0.1 * ((v * 37) % 11 - 5));
    check_grad(m, "untied, unembedding bias, attention only");
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// Training

// n prompts of len tokens: a BOS (0) then a pattern with structure (a
// random start repeated with a stride), so the model's output is not noise.
static int32_t **make_prompts(int n, int len, int V, uint64_t seed, int **lens) {
    int32_t **p = malloc((size_t)n * sizeof *p);
    *lens = malloc((size_t)n * sizeof **lens);
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        int li = len - (int)(rng_next(&s) % 3); // unequal lengths: padded batches
        p[i] = malloc((size_t)li * sizeof **p);
        (*lens)[i] = li;
        p[i][0] = 0;
        for (int t = 1; t < li; t++) p[i][t] = 1 + (int32_t)(rng_next(&s) % (uint64_t)(V - 1));
    }
    return p;
}

static void free_prompts(int32_t **p, int *lens, int n) {
    for (int i = 0; i < n; i++) free(p[i]);
    free(p);
    free(lens);
}

// Mean KL per layer of both lenses over prompts, one run each.
static void heldout_kl(const mech_model *m, const mech_tuned_lens *t, int32_t **p, const int *lens, int n, double *logit,
                       double *tuned) {
    int L = m->cfg.n_layers;
    double cnt = 0;
    for (int l = 0; l <= L; l++) logit[l] = tuned[l] = 0;
    for (int i = 0; i < n; i++) {
        mech_err err = {0};
        mech_run *run = NULL;
        mech_lens_row *a = NULL, *b = NULL;
        size_t na, nb;
        if (mech_run_new(m, 1, lens[i], &run, &err) || mech_lens_cache(run, &err) || mech_run_forward(run, p[i], &err) ||
            mech_lens_logit(m, run, 1, NULL, &a, &na, &err) || mech_lens_tuned(m, run, t, 1, NULL, &b, &nb, &err))
            fail_msg("%s", err.msg);
        for (size_t r = 0; r < na; r++) logit[a[r].layer] += a[r].kl, tuned[b[r].layer] += b[r].kl;
        cnt += lens[i];
        mech_free(a), mech_free(b);
        mech_run_free(run);
    }
    for (int l = 0; l <= L; l++) logit[l] /= cnt, tuned[l] /= cnt;
}

static int count_steps(void *user, int step, int steps, double kl) {
    int *n = user;
    assert_true(step == *n + 1 && steps == 60 && kl >= 0 && isfinite(kl));
    (*n)++;
    return 0;
}

static int stop_at_3(void *user, int step, int steps, double kl) { return step == 3; }

static void test_tuned_fit_lowers_heldout_kl(void **state) {
    mech_config c = tiny_cfg();
    c.n_layers = 3, c.d_model = 32, c.d_head = 16, c.d_mlp = 64;
    mech_model *m = random_model(c, 11);
    scale_weights(m, 10);
    mech_err err = {0};
    int *ltr, *lho, ntr = 48, nho = 12, L = c.n_layers;
    int32_t **tr = make_prompts(ntr, 16, c.d_vocab, 1, &ltr), **ho = make_prompts(nho, 16, c.d_vocab, 2, &lho);
    mech_tuned_lens_opts o = mech_tuned_lens_defaults();
    int steps_seen = 0;
    o.steps = 60, o.progress = count_steps, o.user = &steps_seen;
    mech_tuned_lens *t = NULL;
    if (mech_tuned_lens_fit(m, (const int32_t *const *)tr, ltr, ntr, &o, &t, &err)) fail_msg("%s", err.msg);
    assert_int_equal(steps_seen, 60);
    double kl_logit[L + 1], kl_tuned[L + 1];
    heldout_kl(m, t, ho, lho, nho, kl_logit, kl_tuned);
    for (int l = 0; l < L; l++) {
        print_message("layer %d: held-out KL logit %.4f tuned %.4f\n", l, kl_logit[l], kl_tuned[l]);
        if (!(kl_tuned[l] < 0.8 * kl_logit[l]))
            fail_msg("layer %d: tuned KL %.6g is not below 0.8 x the logit lens's %.6g", l, kl_tuned[l], kl_logit[l]);
    }
    assert_true(kl_logit[L] == 0 && kl_tuned[L] == 0);
    double e_logit[L + 1], e_tuned[L + 1];
    if (mech_tuned_lens_eval(m, t, (const int32_t *const *)ho, lho, nho, e_logit, e_tuned, &err)) fail_msg("%s", err.msg);
    for (int l = 0; l <= L; l++)
        if (fabs(e_logit[l] - kl_logit[l]) > 1e-12 * (1 + kl_logit[l]) || fabs(e_tuned[l] - kl_tuned[l]) > 1e-12 * (1 + kl_tuned[l]))
            fail_msg("layer %d: mech_tuned_lens_eval %g %g, here %g %g", l, e_logit[l], e_tuned[l], kl_logit[l], kl_tuned[l]);
    // deterministic: the same inputs give the same lens, bit for bit
    mech_tuned_lens *t2 = NULL;
    steps_seen = 0;
    if (mech_tuned_lens_fit(m, (const int32_t *const *)tr, ltr, ntr, &o, &t2, &err)) fail_msg("%s", err.msg);
    assert_memory_equal(t->weight, t2->weight, (size_t)L * c.d_model * c.d_model * sizeof(float));
    assert_memory_equal(t->bias, t2->bias, (size_t)L * c.d_model * sizeof(float));
    mech_tuned_lens_free(t2);
    // stopped by the progress callback: no lens
    o.progress = stop_at_3;
    t2 = (mech_tuned_lens *)1;
    assert_int_equal(mech_tuned_lens_fit(m, (const int32_t *const *)tr, ltr, ntr, &o, &t2, &err), MECH_ERR_CANCELLED);
    assert_null(t2);
    // bad options and prompts
    o = mech_tuned_lens_defaults();
    o.momentum = 1.0;
    assert_int_equal(mech_tuned_lens_fit(m, (const int32_t *const *)tr, ltr, ntr, &o, &t2, &err), MECH_ERR_ARG);
    assert_int_equal(mech_tuned_lens_fit(m, (const int32_t *const *)tr, ltr, 0, NULL, &t2, &err), MECH_ERR_ARG);
    int32_t bad[2] = {0, c.d_vocab};
    const int32_t *bp = bad;
    int bl = 2;
    assert_int_equal(mech_tuned_lens_fit(m, &bp, &bl, 1, NULL, &t2, &err), MECH_ERR_RANGE);
    mech_tuned_lens_free(t);
    free_prompts(tr, ltr, ntr);
    free_prompts(ho, lho, nho);
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// Files

static void test_tuned_file_round_trip(void **state) {
    mech_model *m = load_tiny();
    mech_tuned_lens *t = zero_lens(m), *u = NULL;
    int L = m->cfg.n_layers, C = m->cfg.d_model;
    uint64_t s = 5;
    for (size_t i = 0; i < (size_t)L * C * C; i++) t->weight[i] = (float)(rng_u(&s) - 0.5);
    for (size_t i = 0; i < (size_t)L * C; i++) t->bias[i] = (float)(rng_u(&s) - 0.5);
    const char *path = mech_test_tmp("lens.safetensors");
    mech_err err = {0};
    const char *k[] = {"mech.tuned_lens.train"}, *v[] = {"{\"steps\": 1}"};
    if (mech_tuned_lens_save(t, path, k, v, 1, &err)) fail_msg("%s", err.msg);
    if (mech_tuned_lens_load(path, m, &u, &err)) fail_msg("%s", err.msg);
    assert_int_equal(u->n_layers, L);
    assert_int_equal(u->d_model, C);
    assert_memory_equal(t->weight, u->weight, (size_t)L * C * C * sizeof(float));
    assert_memory_equal(t->bias, u->bias, (size_t)L * C * sizeof(float));
    assert_true(u->fingerprint == mech_tuned_lens_fingerprint(m));
    mech_tuned_lens_free(u);
    u = NULL;
    // a model of another config: refused, naming the field
    mech_config c = m->cfg;
    c.d_model = 32, c.d_head = 8;
    mech_model *other = random_model(c, 1);
    assert_int_equal(mech_tuned_lens_load(path, other, &u, &err), MECH_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "d_model 64"));
    assert_null(u);
    mech_model_free(other);
    // the same config, other weights: refused by the fingerprint
    other = random_model(m->cfg, 99);
    assert_int_equal(mech_tuned_lens_load(path, other, &u, &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "fingerprint"));
    // and mech_lens_tuned refuses such a pair too
    mech_run *run = NULL;
    int32_t ids[3] = {1, 2, 3};
    mech_lens_row *rows = NULL;
    size_t nr = 0;
    if (mech_run_new(other, 1, 3, &run, &err) || mech_lens_cache(run, &err) || mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(mech_lens_tuned(other, run, t, 3, NULL, &rows, &nr, &err), MECH_ERR_ARG);
    assert_null(rows);
    mech_run_free(run);
    mech_model_free(other);
    // without a model: read, no check
    if (mech_tuned_lens_load(path, NULL, &u, &err)) fail_msg("%s", err.msg);
    mech_tuned_lens_free(u);
    u = NULL;

    // every truncation is refused (and never crashes)
    size_t len = 0;
    unsigned char *bytes = mech_test_read(path, &len);
    const char *cut = mech_test_tmpn("cut.safetensors");
    for (size_t n = 0; n < len; n += n < 200 ? 1 : 997) {
        FILE *f = fopen(cut, "wb");
        fwrite(bytes, 1, n, f);
        fclose(f);
        if (mech_tuned_lens_load(cut, m, &u, &err) == MECH_OK) fail_msg("a file cut to %zu of %zu bytes was read", n, len);
        assert_null(u);
    }
    // header bytes flipped: refused or, where the flip is in the data, read
    for (size_t i = 8; i < 8 + 64 && i < len; i++) {
        unsigned char keep = bytes[i];
        bytes[i] ^= 0x5a;
        FILE *f = fopen(cut, "wb");
        fwrite(bytes, 1, len, f);
        fclose(f);
        bytes[i] = keep;
        if (mech_tuned_lens_load(cut, m, &u, &err) == MECH_OK) mech_tuned_lens_free(u);
        u = NULL;
    }
    free(bytes);
    mech_tuned_lens_free(t);
    mech_model_free(m);
}

// Writes a file with the given tensors and metadata, then expects load to fail with code.
static void expect_refused(const mech_model *m, const mech_st_write *w, size_t n, const char *cfg, const char *fp,
                           mech_status code, const char *msg_part) {
    const char *path = mech_test_tmpn("bad.safetensors");
    mech_err err = {0};
    const char *k[2] = {"mech.tuned_lens.config", "mech.tuned_lens.fingerprint"}, *v[2] = {cfg, fp};
    size_t nm = cfg && fp ? 2 : cfg ? 1 : 0;
    if (!cfg && fp) k[0] = k[1], v[0] = fp, nm = 1;
    if (mech_safetensors_write(path, w, n, k, v, nm, &err)) fail_msg("%s", err.msg);
    mech_tuned_lens *u = NULL;
    mech_status st = mech_tuned_lens_load(path, m, &u, &err);
    if (st != code) fail_msg("expected %s, got %s: %s", mech_strerror(code), mech_strerror(st), err.msg);
    assert_null(u);
    if (!strstr(err.msg, msg_part)) fail_msg("message '%s' lacks '%s'", err.msg, msg_part);
}

static void test_tuned_file_malformed(void **state) {
    mech_model *m = load_tiny();
    int C = m->cfg.d_model;
    float *A = calloc((size_t)C * C, sizeof *A), *b = calloc((size_t)C, sizeof *b);
    mech_buf cfg = {0};
    mech_config_to_json(&m->cfg, &cfg);
    char fp[17];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)mech_tuned_lens_fingerprint(m));
    mech_st_write w[5] = {
        {.name = "layers.0.weight", .dtype = MECH_DT_F32, .ndim = 2, .shape = {C, C}, .data = A},
        {.name = "layers.0.bias", .dtype = MECH_DT_F32, .ndim = 1, .shape = {C}, .data = b},
        {.name = "layers.1.weight", .dtype = MECH_DT_F32, .ndim = 2, .shape = {C, C}, .data = A},
        {.name = "layers.1.bias", .dtype = MECH_DT_F32, .ndim = 1, .shape = {C}, .data = b},
        {.name = "extra", .dtype = MECH_DT_F32, .ndim = 1, .shape = {C}, .data = b},
    };
    // the well-formed file loads
    {
        const char *path = mech_test_tmpn("good.safetensors");
        mech_err err = {0};
        const char *k[2] = {"mech.tuned_lens.config", "mech.tuned_lens.fingerprint"}, *v[2] = {cfg.data, fp};
        mech_tuned_lens *u = NULL;
        if (mech_safetensors_write(path, w, 4, k, v, 2, &err) || mech_tuned_lens_load(path, m, &u, &err))
            fail_msg("%s", err.msg);
        mech_tuned_lens_free(u);
    }
    expect_refused(m, w, 4, NULL, fp, MECH_ERR_FORMAT, "not a tuned lens");
    expect_refused(m, w, 4, cfg.data, NULL, MECH_ERR_FORMAT, "not a tuned lens");
    expect_refused(m, w, 4, "{\"n_layers\": ", fp, MECH_ERR_FORMAT, "mech.tuned_lens.config");
    expect_refused(m, w, 4, cfg.data, "12345", MECH_ERR_FORMAT, "hex");
    expect_refused(m, w, 5, cfg.data, fp, MECH_ERR_FORMAT, "5 tensors, expected 4");
    expect_refused(m, w, 3, cfg.data, fp, MECH_ERR_FORMAT, "3 tensors, expected 4");
    mech_st_write x[4];
    memcpy(x, w, sizeof x);
    x[3].name = "layers.7.bias";
    expect_refused(m, x, 4, cfg.data, fp, MECH_ERR_FORMAT, "layers.1.bias is missing");
    memcpy(x, w, sizeof x);
    x[2].shape[1] = C - 1;
    expect_refused(m, x, 4, cfg.data, fp, MECH_ERR_FORMAT, "layers.1.weight");
    memcpy(x, w, sizeof x);
    x[1].dtype = MECH_DT_I32;
    expect_refused(m, x, 4, cfg.data, fp, MECH_ERR_FORMAT, "layers.0.bias: I32");
    memcpy(x, w, sizeof x);
    float *nanb = calloc((size_t)C, sizeof *nanb);
    nanb[5] = NAN;
    x[3].data = nanb;
    expect_refused(m, x, 4, cfg.data, fp, MECH_ERR_FORMAT, "element 5 is not finite");
    // a lens for another model: the fingerprint in the file differs
    expect_refused(m, w, 4, cfg.data, "0123456789abcdef", MECH_ERR_ARG, "fingerprint");
    // a plain model file is not a lens
    mech_err err = {0};
    mech_tuned_lens *u = NULL;
    assert_int_equal(mech_tuned_lens_load(FIX "model.safetensors", m, &u, &err), MECH_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "not a tuned lens"));
    // a missing file
    assert_int_not_equal(mech_tuned_lens_load(mech_test_tmpn("missing.safetensors"), m, &u, &err), MECH_OK);
    free(nanb);
    free(A);
    free(b);
    mech_buf_free(&cfg);
    mech_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tuned_zero_is_logit_lens),
        cmocka_unit_test(test_tuned_kl_by_layer),
        cmocka_unit_test(test_tuned_grad_finite_differences),
        cmocka_unit_test(test_tuned_fit_lowers_heldout_kl),
        cmocka_unit_test(test_tuned_file_round_trip),
        cmocka_unit_test(test_tuned_file_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
