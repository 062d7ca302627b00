/*
** tests/test_core_forward.c: the forward pass against an independent
** implementation (llm.c's activations for tests/fixtures/gpt2-tiny), and the
** properties every hook and run option must keep.
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

#define FIX "tests/fixtures/gpt2-tiny/"
enum { T = 32, L = 2, NH = 4, C = 64, HS = 16, V = 1000, M = 256 };

static mech_model *load_tiny(void) {
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load(FIX, &m, &err)) fail_msg("load: %s", err.msg);
    return m;
}

static int32_t *fixture_tokens(void) {
    size_t n;
    int32_t *ids = mech_test_read(FIX "tokens.i32", &n);
    assert_int_equal(n, T * sizeof(int32_t));
    return ids;
}

static float *fixture(const char *name, size_t want) {
    char path[256];
    snprintf(path, sizeof path, FIX "%s", name);
    size_t n;
    float *p = mech_test_read(path, &n);
    assert_int_equal(n, want * sizeof(float));
    return p;
}

static mech_run *run_cached(mech_model *m, int B, int Tn, const char *glob) {
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, B, Tn, &r, &err)) fail_msg("run: %s", err.msg);
    if (glob && mech_run_cache(r, glob, &err)) fail_msg("cache: %s", err.msg);
    return r;
}

static void forward(mech_run *r, const int32_t *ids) {
    mech_err err = {0};
    if (mech_run_forward(r, ids, &err)) fail_msg("forward: %s", err.msg);
}

static const float *get(mech_run *r, const char *name) {
    const mech_tensor *t = mech_run_get(r, name);
    if (!t) fail_msg("%s not cached", name);
    return t->data;
}

// ---------------------------------------------------------------------------
// Golden test: every activation llm.c recorded, and the logits.

static void test_forward_golden(void **state) {
    mech_model *m = load_tiny();
    assert_int_equal(m->cfg.n_layers, L);
    assert_int_equal(m->cfg.n_heads, NH);
    assert_int_equal(m->cfg.d_head, HS);
    int32_t *ids = fixture_tokens();
    mech_run *r = run_cached(m, 1, T, "*");
    forward(r, ids);

    float *ref = fixture("logits_f64ref.f32", (size_t)T * V);
    float *llmc = fixture("logits.f32", (size_t)T * V);
    mech_assert_close(mech_run_logits(r), ref, (size_t)T * V, 1e-4, 0, "logits vs float64 reference");
    mech_assert_close(mech_run_logits(r), llmc, (size_t)T * V, 1e-4, 0, "logits vs llm.c");

    float *embed = fixture("acts/embed.f32", (size_t)T * C);
    mech_assert_close(get(r, "blocks.0.hook_resid_pre"), embed, (size_t)T * C, 1e-5, 0, "resid_pre 0");
    float sum[T * C];
    const float *e = get(r, "hook_embed"), *p = get(r, "hook_pos_embed");
    for (int i = 0; i < T * C; i++) sum[i] = e[i] + p[i];
    mech_assert_close(sum, embed, (size_t)T * C, 1e-6, 0, "embed + pos_embed");

    struct { const char *file, *hook; size_t per; } acts[] = {
        {"acts/attn_pattern.f32", "attn.hook_pattern", (size_t)NH * T * T},
        {"acts/attn_z.f32", "attn.hook_z", (size_t)T * C},
        {"acts/attn_out.f32", "hook_attn_out", (size_t)T * C},
        {"acts/resid_mid.f32", "hook_resid_mid", (size_t)T * C},
        {"acts/mlp_pre.f32", "mlp.hook_pre", (size_t)T * M},
        {"acts/mlp_post.f32", "mlp.hook_post", (size_t)T * M},
        {"acts/mlp_out.f32", "hook_mlp_out", (size_t)T * C},
        {"acts/resid_post.f32", "hook_resid_post", (size_t)T * C},
    };
    for (size_t a = 0; a < sizeof acts / sizeof *acts; a++) {
        float *want = fixture(acts[a].file, L * acts[a].per);
        for (int l = 0; l < L; l++) {
            char name[96];
            snprintf(name, sizeof name, "blocks.%d.%s", l, acts[a].hook);
            mech_assert_close(get(r, name), want + l * acts[a].per, acts[a].per, 1e-4, 0, name);
        }
        free(want);
    }

    // qkv: llm.c's c_attn output [T, 3C]; ours are three [T, NH, HS] hooks.
    float *qkv = fixture("acts/qkv.f32", (size_t)L * T * 3 * C);
    float *ln1 = fixture("acts/ln1.f32", (size_t)L * T * C), *ln2 = fixture("acts/ln2.f32", (size_t)L * T * C);
    for (int l = 0; l < L; l++) {
        const char *which[3] = {"q", "k", "v"};
        for (int w = 0; w < 3; w++) {
            char name[64];
            snprintf(name, sizeof name, "blocks.%d.attn.hook_%s", l, which[w]);
            const float *got = get(r, name);
            float want[T * C];
            for (int t = 0; t < T; t++) memcpy(want + t * C, qkv + ((size_t)l * T + t) * 3 * C + w * C, C * sizeof(float));
            mech_assert_close(got, want, (size_t)T * C, 1e-4, 0, name);
        }
        // llm.c records LayerNorm after weight and bias; TransformerLens's
        // hook_normalized is before them, and hook_scale is sqrt(var + eps).
        const mech_layer_weights *lw = &m->layers[l];
        struct { const float *want, *w, *b; const char *scale, *norm; } lns[2] = {
            {ln1 + (size_t)l * T * C, lw->ln1_w, lw->ln1_b, "ln1.hook_scale", "ln1.hook_normalized"},
            {ln2 + (size_t)l * T * C, lw->ln2_w, lw->ln2_b, "ln2.hook_scale", "ln2.hook_normalized"},
        };
        for (int k = 0; k < 2; k++) {
            char sname[64], nname[64];
            snprintf(sname, sizeof sname, "blocks.%d.%s", l, lns[k].scale);
            snprintf(nname, sizeof nname, "blocks.%d.%s", l, lns[k].norm);
            const float *n = get(r, nname), *s = get(r, sname);
            const float *x = get(r, k == 0 ? (l ? "blocks.1.hook_resid_pre" : "blocks.0.hook_resid_pre")
                                           : (l ? "blocks.1.hook_resid_mid" : "blocks.0.hook_resid_mid"));
            float affine[T * C], scale_want[T];
            for (int t = 0; t < T; t++) {
                double mean = 0, var = 0;
                for (int c = 0; c < C; c++) mean += x[t * C + c];
                mean /= C;
                for (int c = 0; c < C; c++) var += (x[t * C + c] - mean) * (x[t * C + c] - mean);
                scale_want[t] = (float)sqrt(var / C + 1e-5);
                for (int c = 0; c < C; c++) affine[t * C + c] = n[t * C + c] * lns[k].w[c] + lns[k].b[c];
            }
            mech_assert_close(affine, lns[k].want, (size_t)T * C, 1e-4, 0, nname);
            mech_assert_close(s, scale_want, T, 1e-6, 1e-5, sname);
        }
    }
    // ln_final: normalized * w + b against llm.c's ln_f output.
    float *lnf = fixture("acts/ln_final.f32", (size_t)T * C);
    const float *n = get(r, "ln_final.hook_normalized");
    float affine[T * C];
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) affine[t * C + c] = n[t * C + c] * m->lnf_w[c] + m->lnf_b[c];
    mech_assert_close(affine, lnf, (size_t)T * C, 1e-4, 0, "ln_final");
    free(lnf);
    free(qkv);
    free(ln1);
    free(ln2);
    free(ref);
    free(llmc);
    free(embed);
    free(ids);
    mech_run_free(r);
    mech_model_free(m);
}

// The cache must not change the numbers: a run without hooks gives the same logits.
static void test_forward_cache_is_free_of_side_effects(void **state) {
    mech_model *m = load_tiny();
    int32_t *ids = fixture_tokens();
    mech_run *a = run_cached(m, 1, T, NULL), *b = run_cached(m, 1, T, "*");
    forward(a, ids);
    forward(b, ids);
    mech_assert_close(mech_run_logits(a), mech_run_logits(b), (size_t)T * V, 0, 0, "logits with and without cache");
    mech_run_free(a);
    mech_run_free(b);
    free(ids);
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// Properties

static void test_forward_causal_prefix(void **state) {
    mech_model *m = load_tiny();
    int32_t *ids = fixture_tokens();
    mech_run *full = run_cached(m, 1, T, NULL), *pre = run_cached(m, 1, 20, NULL);
    forward(full, ids);
    forward(pre, ids);
    mech_assert_close(mech_run_logits(pre), mech_run_logits(full), (size_t)20 * V, 1e-5, 0, "prefix logits");
    // Changing a later token leaves every earlier position unchanged.
    int32_t alt[T];
    memcpy(alt, ids, sizeof alt);
    alt[25] = (alt[25] + 1) % V;
    mech_run *r2 = run_cached(m, 1, T, NULL);
    forward(r2, alt);
    mech_assert_close(mech_run_logits(r2), mech_run_logits(full), (size_t)25 * V, 0, 0, "logits before the change");
    assert_true(mech_max_abs_diff(mech_run_logits(r2) + 25 * V, mech_run_logits(full) + 25 * V, V) > 1e-4);
    mech_run_free(full);
    mech_run_free(pre);
    mech_run_free(r2);
    free(ids);
    mech_model_free(m);
}

static void test_forward_pattern_rows_sum_to_one(void **state) {
    mech_model *m = load_tiny();
    int32_t *ids = fixture_tokens();
    mech_run *r = run_cached(m, 1, T, "blocks.*.attn.hook_pattern");
    forward(r, ids);
    size_t n;
    const mech_tensor *c = mech_run_cached(r, &n);
    assert_int_equal(n, L);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(c[k].ndim, 4);
        assert_int_equal(c[k].shape[0], 1);
        assert_int_equal(c[k].shape[1], NH);
        assert_int_equal(c[k].shape[2], T);
        assert_int_equal(c[k].shape[3], T);
        for (int row = 0; row < NH * T; row++) {
            double s = 0;
            int q = row % T;
            for (int key = 0; key < T; key++) {
                float v = c[k].data[(size_t)row * T + key];
                if (key > q) assert_true(v == 0.0f);
                assert_true(v >= 0.0f);
                s += v;
            }
            assert_true(fabs(s - 1.0) < 1e-5);
        }
    }
    mech_run_free(r);
    free(ids);
    mech_model_free(m);
}

static void test_forward_residual_decomposes(void **state) {
    mech_model *m = load_tiny();
    int32_t *ids = fixture_tokens();
    mech_run *r = run_cached(m, 1, T, "*");
    forward(r, ids);
    for (int l = 0; l < L; l++) {
        char a[64], b[64], c[64], d[64];
        snprintf(a, sizeof a, "blocks.%d.hook_resid_pre", l);
        snprintf(b, sizeof b, "blocks.%d.hook_attn_out", l);
        snprintf(c, sizeof c, "blocks.%d.hook_mlp_out", l);
        snprintf(d, sizeof d, "blocks.%d.hook_resid_post", l);
        float sum[T * C];
        const float *pre = get(r, a), *ao = get(r, b), *mo = get(r, c);
        for (int i = 0; i < T * C; i++) sum[i] = pre[i] + ao[i] + mo[i];
        mech_assert_close(get(r, d), sum, (size_t)T * C, 1e-5, 0, d);
        if (l + 1 < L) {
            snprintf(a, sizeof a, "blocks.%d.hook_resid_pre", l + 1);
            mech_assert_close(get(r, a), get(r, d), (size_t)T * C, 0, 0, "resid_post == next resid_pre");
        }
    }
    mech_run_free(r);
    free(ids);
    mech_model_free(m);
}

static int identity_hook(mech_tensor *t, int layer, void *user) {
    size_t n = mech_tensor_numel(t);
    float *copy = malloc(n * sizeof(float));
    memcpy(copy, t->data, n * sizeof(float));
    memcpy(t->data, copy, n * sizeof(float));
    free(copy);
    (*(int *)user)++;
    return 0;
}

static void test_forward_identity_hooks_change_nothing(void **state) {
    mech_model *m = load_tiny();
    int32_t *ids = fixture_tokens();
    mech_run *plain = run_cached(m, 1, T, NULL), *hooked = run_cached(m, 1, T, NULL);
    int fired = 0;
    mech_err err = {0};
    assert_int_equal(mech_run_hook(hooked, "*", identity_hook, &fired, &err), MECH_OK);
    forward(plain, ids);
    forward(hooked, ids);
    int n_default = mech_hook_names(&m->cfg, 0, NULL);
    assert_int_equal(fired, n_default);
    assert_int_equal(n_default, 4 + 17 * L);
    mech_assert_close(mech_run_logits(hooked), mech_run_logits(plain), (size_t)T * V, 1e-6, 0, "identity hooks");
    mech_run_free(plain);
    mech_run_free(hooked);
    free(ids);
    mech_model_free(m);
}

static int zero_hook(mech_tensor *t, int layer, void *user) {
    memset(t->data, 0, mech_tensor_numel(t) * sizeof(float));
    return 0;
}

static void test_forward_zero_ablation_takes_effect(void **state) {
    mech_model *m = load_tiny();
    int32_t *ids = fixture_tokens();
    mech_run *r = run_cached(m, 1, T, "blocks.1.hook_resid_*");
    mech_err err = {0};
    assert_int_equal(mech_run_hook(r, "blocks.1.hook_mlp_out", zero_hook, NULL, &err), MECH_OK);
    forward(r, ids);
    mech_assert_close(get(r, "blocks.1.hook_resid_post"), get(r, "blocks.1.hook_resid_mid"), (size_t)T * C, 0, 0,
                      "resid_post = resid_mid when mlp_out is zeroed");
    // Cached value is what the model used downstream: patched attention pattern.
    mech_run *u = run_cached(m, 1, T, "blocks.0.attn.hook_pattern");
    assert_int_equal(mech_run_hook(u, "blocks.0.attn.hook_pattern", zero_hook, NULL, &err), MECH_OK);
    assert_int_equal(mech_run_cache(u, "blocks.0.attn.hook_z", &err), MECH_OK);
    forward(u, ids);
    const float *z = get(u, "blocks.0.attn.hook_z"), *pat = get(u, "blocks.0.attn.hook_pattern");
    for (int i = 0; i < T * C; i++) assert_true(z[i] == 0.0f);
    for (int i = 0; i < NH * T * T; i++) assert_true(pat[i] == 0.0f);
    mech_run_free(r);
    mech_run_free(u);
    free(ids);
    mech_model_free(m);
}

static void test_forward_batch_rows_equal_single_runs(void **state) {
    mech_model *m = load_tiny();
    int32_t *ids = fixture_tokens();
    int32_t both[2 * T];
    memcpy(both, ids, T * sizeof(int32_t));
    for (int t = 0; t < T; t++) both[T + t] = (ids[t] * 7 + 3) % V;
    mech_run *batch = run_cached(m, 2, T, "blocks.*.attn.hook_pattern"), *one = run_cached(m, 1, T, "blocks.*.attn.hook_pattern");
    forward(batch, both);
    for (int b = 0; b < 2; b++) {
        forward(one, both + b * T);
        mech_assert_close(mech_run_logits(batch) + (size_t)b * T * V, mech_run_logits(one), (size_t)T * V, 1e-5, 0, "batch row logits");
        mech_assert_close(get(batch, "blocks.1.attn.hook_pattern") + (size_t)b * NH * T * T,
                          get(one, "blocks.1.attn.hook_pattern"), (size_t)NH * T * T, 1e-6, 0, "batch row pattern");
    }
    mech_run_free(batch);
    mech_run_free(one);
    free(ids);
    mech_model_free(m);
}

static void test_forward_start_and_stop_at_layer(void **state) {
    mech_model *m = load_tiny();
    int32_t *ids = fixture_tokens();
    mech_run *full = run_cached(m, 1, T, "blocks.*.hook_resid_pre");
    forward(full, ids);
    mech_err err = {0};
    mech_run *part = run_cached(m, 1, T, NULL);
    mech_run_opts o = {.start_layer = 1, .start_resid = get(full, "blocks.1.hook_resid_pre")};
    assert_int_equal(mech_run_forward_ex(part, NULL, &o, &err), MECH_OK);
    mech_assert_close(mech_run_logits(part), mech_run_logits(full), (size_t)T * V, 0, 0, "start at block 1");
    mech_run_opts s = {.stop_layer = 1};
    assert_int_equal(mech_run_forward_ex(part, ids, &s, &err), MECH_OK);
    assert_null(mech_run_logits(part));
    mech_assert_close(mech_run_resid(part), get(full, "blocks.1.hook_resid_pre"), (size_t)T * C, 0, 0, "stop before block 1");
    mech_run_opts bad = {.start_layer = 1};
    assert_int_equal(mech_run_forward_ex(part, ids, &bad, &err), MECH_ERR_ARG);
    mech_run_opts bad2 = {.start_layer = 3, .start_resid = get(full, "blocks.1.hook_resid_pre")};
    assert_int_equal(mech_run_forward_ex(part, ids, &bad2, &err), MECH_ERR_RANGE);
    mech_run_free(full);
    mech_run_free(part);
    free(ids);
    mech_model_free(m);
}

// Opt-in hooks recompute the same model another way: results must agree.
static void test_forward_opt_in_hooks(void **state) {
    mech_model *m = load_tiny();
    int32_t *ids = fixture_tokens();
    mech_run *plain = run_cached(m, 1, T, "*");
    forward(plain, ids);
    mech_run *r = run_cached(m, 1, T, "blocks.*.attn.hook_result");
    mech_err err = {0};
    assert_int_equal(mech_run_cache(r, "blocks.*.hook_?_input", &err), MECH_OK);
    assert_int_equal(mech_run_cache(r, "blocks.*.hook_mlp_in", &err), MECH_OK);
    assert_int_equal(mech_run_cache(r, "blocks.*.hook_attn_out", &err), MECH_OK);
    forward(r, ids);
    mech_assert_close(mech_run_logits(r), mech_run_logits(plain), (size_t)T * V, 1e-5, 0, "logits with opt-in hooks");
    const mech_tensor *res = mech_run_get(r, "blocks.1.attn.hook_result");
    assert_non_null(res);
    assert_int_equal(res->ndim, 4);
    assert_int_equal(res->shape[2], NH);
    assert_int_equal(res->shape[3], C);
    const float *ao = get(plain, "blocks.1.hook_attn_out");
    float sum[T * C];
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) {
            double s = m->layers[1].o_b[c];
            for (int h = 0; h < NH; h++) s += res->data[((size_t)t * NH + h) * C + c];
            sum[t * C + c] = (float)s;
        }
    mech_assert_close(sum, ao, (size_t)T * C, 1e-5, 0, "sum of head results + b_O");
    const float *qin = get(r, "blocks.0.hook_q_input"), *pre = get(plain, "blocks.0.hook_resid_pre");
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NH; h++) mech_assert_close(qin + ((size_t)t * NH + h) * C, pre + t * C, C, 0, 0, "q_input copy");
    mech_assert_close(get(r, "blocks.0.hook_mlp_in"), get(plain, "blocks.0.hook_resid_mid"), (size_t)T * C, 1e-6, 0, "mlp_in");
    mech_run_free(r);
    mech_run_free(plain);
    free(ids);
    mech_model_free(m);
}

// Patching one head's q input changes only what that head computes.
static int zero_head2(mech_tensor *t, int layer, void *user) {
    int64_t Bn = t->shape[0], Tn = t->shape[1], H = t->shape[2], D = t->shape[3];
    for (int64_t i = 0; i < Bn * Tn; i++) memset(t->data + (i * H + 2) * D, 0, (size_t)D * sizeof(float));
    return 0;
}

static void test_forward_split_input_patch_is_per_head(void **state) {
    mech_model *m = load_tiny();
    int32_t *ids = fixture_tokens();
    mech_run *plain = run_cached(m, 1, T, "blocks.0.attn.hook_pattern");
    forward(plain, ids);
    mech_run *r = run_cached(m, 1, T, "blocks.0.attn.hook_pattern");
    mech_err err = {0};
    assert_int_equal(mech_run_hook(r, "blocks.0.hook_k_input", zero_head2, NULL, &err), MECH_OK);
    forward(r, ids);
    const float *a = get(plain, "blocks.0.attn.hook_pattern"), *b = get(r, "blocks.0.attn.hook_pattern");
    for (int h = 0; h < NH; h++) {
        double d = mech_max_abs_diff(a + (size_t)h * T * T, b + (size_t)h * T * T, (size_t)T * T);
        if (h == 2) assert_true(d > 1e-3);
        else assert_true(d < 1e-6);
    }
    mech_run_free(r);
    mech_run_free(plain);
    free(ids);
    mech_model_free(m);
}

static int double_hook(mech_tensor *t, int layer, void *user) {
    for (size_t i = 0; i < mech_tensor_numel(t); i++) t->data[i] *= 2.0f;
    return 0;
}

// A hook on ln1.hook_scale changes what hook_normalized and the block see.
static void test_forward_scale_hook_rescales(void **state) {
    mech_model *m = load_tiny();
    int32_t *ids = fixture_tokens();
    mech_run *plain = run_cached(m, 1, T, "blocks.0.ln1.hook_normalized"), *r = run_cached(m, 1, T, "blocks.0.ln1.hook_normalized");
    mech_err err = {0};
    assert_int_equal(mech_run_hook(r, "blocks.0.ln1.hook_scale", double_hook, NULL, &err), MECH_OK);
    forward(plain, ids);
    forward(r, ids);
    const float *a = get(plain, "blocks.0.ln1.hook_normalized"), *b = get(r, "blocks.0.ln1.hook_normalized");
    float half[T * C];
    for (int i = 0; i < T * C; i++) half[i] = a[i] / 2;
    mech_assert_close(b, half, (size_t)T * C, 1e-6, 1e-6, "normalized with doubled scale");
    mech_run_free(plain);
    mech_run_free(r);
    free(ids);
    mech_model_free(m);
}

// The thread count changes the schedule, not the numbers.
static void test_forward_threads_agree(void **state) {
    mech_model *m = load_tiny();
    int32_t *ids = fixture_tokens();
    mech_run *a = run_cached(m, 1, T, NULL), *b = run_cached(m, 1, T, NULL);
    mech_err err = {0};
    assert_int_equal(mech_run_set_threads(a, 1, &err), MECH_OK);
    assert_int_equal(mech_run_set_threads(b, 3, &err), MECH_OK);
    forward(a, ids);
    forward(b, ids);
    mech_assert_close(mech_run_logits(a), mech_run_logits(b), (size_t)T * V, 1e-5, 0, "1 vs 3 threads");
    mech_run_free(a);
    mech_run_free(b);
    free(ids);
    mech_model_free(m);
}

static int stop_hook(mech_tensor *t, int layer, void *user) { return 1; }

static void test_forward_errors(void **state) {
    mech_model *m = load_tiny();
    mech_err err = {0};
    mech_run *r = NULL;
    assert_int_equal(mech_run_new(m, 1, 129, &r, &err), MECH_ERR_RANGE);
    assert_non_null(strstr(err.msg, "128"));
    assert_int_equal(mech_run_new(m, 0, 4, &r, &err), MECH_ERR_ARG);
    r = run_cached(m, 1, 4, NULL);
    int32_t bad[4] = {1, 2, 1000, 3};
    assert_int_equal(mech_run_forward(r, bad, &err), MECH_ERR_RANGE);
    assert_non_null(strstr(err.msg, "1000"));
    assert_int_equal(mech_run_cache(r, "blocks.9.*", &err), MECH_ERR_ARG);
    assert_int_equal(mech_run_hook(r, "nonsense", stop_hook, NULL, &err), MECH_ERR_ARG);
    assert_int_equal(mech_run_hook(r, "blocks.1.hook_mlp_out", stop_hook, NULL, &err), MECH_OK);
    int32_t ok[4] = {1, 2, 3, 4};
    assert_int_equal(mech_run_forward(r, ok, &err), MECH_ERR_CANCELLED);
    assert_null(mech_run_logits(r));
    mech_run_reset(r);
    assert_int_equal(mech_run_forward(r, ok, &err), MECH_OK);
    assert_non_null(mech_run_logits(r));
    mech_run_free(r);
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// Variants: attention-only, no LayerNorm, bidirectional, ReLU, separate unembed.

static void test_forward_variants(void **state) {
    mech_config c = {.n_layers = 2, .n_heads = 3, .d_model = 24, .d_head = 5, .d_mlp = 40, .n_ctx = 16,
                     .d_vocab = 50, .act = MECH_ACT_RELU, .norm = MECH_NORM_NONE, .attn_only = 0, .causal = 1,
                     .ln_eps = 1e-5f, .tied_unembed = 0, .unembed_bias = 1};
    int32_t ids[8] = {1, 5, 9, 2, 7, 7, 3, 0};
    mech_err err = {0};
    for (int variant = 0; variant < 4; variant++) {
        mech_config v = c;
        if (variant == 1) v.attn_only = 1, v.d_mlp = 0;
        if (variant == 2) v.causal = 0, v.act = MECH_ACT_GELU, v.norm = MECH_NORM_LAYERNORM;
        if (variant == 3) v.tied_unembed = 1, v.unembed_bias = 0, v.act = MECH_ACT_GELU_NEW;
        mech_model *m = NULL;
        assert_int_equal(mech_model_random(&v, 7 + variant, &m, &err), MECH_OK);
        mech_run *r = run_cached(m, 1, 8, "*"), *r2 = run_cached(m, 1, 8, NULL);
        forward(r, ids);
        int32_t alt[8];
        memcpy(alt, ids, sizeof alt);
        alt[6] = 11;
        forward(r2, alt);
        double before = mech_max_abs_diff(mech_run_logits(r), mech_run_logits(r2), 6 * 50);
        if (v.causal) assert_true(before == 0);
        else assert_true(before > 0);
        int n = mech_hook_names(&v, 0, NULL);
        size_t nc;
        mech_run_cached(r, &nc);
        assert_int_equal(nc, (size_t)n);
        if (v.attn_only) assert_null(mech_run_get(r, "blocks.0.hook_resid_mid"));
        if (v.norm == MECH_NORM_NONE) assert_null(mech_run_get(r, "blocks.0.ln1.hook_scale"));
        // resid_post = resid_pre + attn_out (+ mlp_out)
        const float *pre = get(r, "blocks.1.hook_resid_pre"), *ao = get(r, "blocks.1.hook_attn_out");
        const float *mo = v.attn_only ? NULL : get(r, "blocks.1.hook_mlp_out");
        float sum[8 * 24];
        for (int i = 0; i < 8 * 24; i++) sum[i] = pre[i] + ao[i] + (mo ? mo[i] : 0);
        mech_assert_close(get(r, "blocks.1.hook_resid_post"), sum, 8 * 24, 1e-5, 0, "variant residual");
        if (v.act == MECH_ACT_RELU && !v.attn_only) {
            const float *post = get(r, "blocks.0.mlp.hook_post"), *prea = get(r, "blocks.0.mlp.hook_pre");
            for (int i = 0; i < 8 * 40; i++) assert_true(post[i] == (prea[i] > 0 ? prea[i] : 0));
        }
        mech_run_free(r);
        mech_run_free(r2);
        mech_model_free(m);
    }
}

// ---------------------------------------------------------------------------
// Padded batches: each sequence of a padded batch gets, at its real
// positions, exactly (bit for bit) what it gets run alone, on both padding
// sides, through every attention path (fused, cached, hooked); padding reads
// 0 in the logits and caches and gets no attention.

static int same_hook(mech_tensor *t, int layer, void *user) { return 0; }

enum { PB = 3, PV = 97 };

static void check_padded(const mech_config *cfg, int side, int path) {
    mech_err err = {0};
    mech_model *m = NULL;
    assert_int_equal(mech_model_random(cfg, 5, &m, &err), MECH_OK);
    int lens[PB] = {5, 70, 12};
    int32_t *seqs[PB];
    for (int b = 0; b < PB; b++) {
        seqs[b] = malloc((size_t)lens[b] * sizeof(int32_t));
        for (int t = 0; t < lens[b]; t++) seqs[b][t] = (int32_t)((t * 31 + b * 17 + 3) % PV);
    }
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int Tp = 0;
    assert_int_equal(mech_batch_pad((const int32_t *const *)seqs, lens, PB, 96, (mech_pad_side)side, &ids, &mask, &Tp, &err),
                     MECH_OK);
    assert_int_equal(Tp, 70);
    // path 0: nothing cached (fused attention); 1: everything cached; 2: hooks on scores and pattern
    const char *glob = path == 1 ? "*" : NULL;
    mech_run *r = run_cached(m, PB, Tp, glob);
    if (path == 2) {
        assert_int_equal(mech_run_hook(r, "blocks.*.attn.hook_attn_scores", same_hook, NULL, &err), MECH_OK);
        assert_int_equal(mech_run_hook(r, "blocks.*.attn.hook_pattern", same_hook, NULL, &err), MECH_OK);
        assert_int_equal(mech_run_cache(r, "blocks.*.attn.hook_pattern", &err), MECH_OK);
        assert_int_equal(mech_run_cache(r, "blocks.*.hook_resid_post", &err), MECH_OK);
    }
    assert_int_equal(mech_run_set_mask(r, mask, &err), MECH_OK);
    forward(r, ids);
    int V = cfg->d_vocab, H = cfg->n_heads;
    for (int b = 0; b < PB; b++) {
        int n = lens[b], s0, n0;
        mech_run_row(r, b, &s0, &n0);
        assert_int_equal(n0, n);
        assert_int_equal(s0, side == MECH_PAD_LEFT ? Tp - n : 0);
        mech_run *one = run_cached(m, 1, n, glob);
        if (path == 2) {
            assert_int_equal(mech_run_cache(one, "blocks.*.attn.hook_pattern", &err), MECH_OK);
            assert_int_equal(mech_run_cache(one, "blocks.*.hook_resid_post", &err), MECH_OK);
        }
        forward(one, seqs[b]);
        const float *lp = mech_run_logits(r) + (size_t)b * Tp * V, *l1 = mech_run_logits(one);
        for (int t = 0; t < Tp; t++)
            for (int v = 0; v < V; v++) {
                float got = lp[(size_t)t * V + v];
                if (t >= s0 && t < s0 + n) {
                    if (got != l1[(size_t)(t - s0) * V + v])
                        fail_msg("side %d path %d row %d pos %d: logit %d %.9g, alone %.9g", side, path, b, t, v,
                                 got, l1[(size_t)(t - s0) * V + v]);
                } else if (got != 0) {
                    fail_msg("side %d path %d row %d: padding position %d has logit %g", side, path, b, t, got);
                }
            }
        size_t nc;
        const mech_tensor *cp = mech_run_cached(r, &nc);
        for (size_t i = 0; i < nc; i++) {
            const mech_tensor *a = &cp[i], *o = mech_run_get(one, a->name);
            assert_non_null(o);
            if (strstr(a->name, "hook_pattern") || strstr(a->name, "hook_attn_scores")) {
                for (int h = 0; h < H; h++)
                    for (int q = 0; q < Tp; q++)
                        for (int k = 0; k < Tp; k++) {
                            float got = a->data[(((size_t)b * H + h) * Tp + q) * Tp + k];
                            int real = q >= s0 && q < s0 + n && k >= s0 && k < s0 + n;
                            float want = real ? o->data[((size_t)h * n + q - s0) * n + k - s0]
                                              : strstr(a->name, "hook_pattern") ? 0.0f : -INFINITY;
                            if (got != want)
                                fail_msg("side %d path %d %s row %d head %d [%d, %d]: %g, want %g", side, path, a->name,
                                         b, h, q, k, got, want);
                        }
                continue;
            }
            size_t w = mech_tensor_numel(a) / ((size_t)PB * Tp);
            for (int t = 0; t < Tp; t++) {
                const float *g = a->data + ((size_t)b * Tp + t) * w;
                int real = t >= s0 && t < s0 + n;
                for (size_t k = 0; k < w; k++) {
                    float want = real ? o->data[(size_t)(t - s0) * w + k] : 0.0f;
                    if (g[k] != want)
                        fail_msg("side %d path %d %s row %d pos %d [%zu]: %.9g, want %.9g", side, path, a->name, b, t,
                                 k, g[k], want);
                }
            }
        }
        mech_run_free(one);
    }
    mech_run_free(r);
    mech_free(ids);
    mech_free(mask);
    for (int b = 0; b < PB; b++) free(seqs[b]);
    mech_model_free(m);
}

static void test_forward_padded_batch_equals_unpadded(void **state) {
    mech_config c = {.n_layers = 2, .n_heads = 3, .d_model = 24, .d_head = 8, .d_mlp = 40, .n_ctx = 80,
                     .d_vocab = PV, .act = MECH_ACT_GELU_NEW, .norm = MECH_NORM_LAYERNORM, .attn_only = 0,
                     .causal = 1, .ln_eps = 1e-5f, .tied_unembed = 1, .unembed_bias = 0};
    for (int variant = 0; variant < 3; variant++) {
        mech_config v = c;
        if (variant == 1) v.causal = 0, v.act = MECH_ACT_GELU; // bidirectional: every key of the row
        if (variant == 2) v.attn_only = 1, v.d_mlp = 0, v.norm = MECH_NORM_NONE, v.tied_unembed = 0, v.unembed_bias = 1;
        for (int side = 0; side < 2; side++)
            for (int path = 0; path < 3; path++) check_padded(&v, side, path);
    }
}

static void test_forward_mask_errors(void **state) {
    mech_model *m = load_tiny();
    mech_err err = {0};
    mech_run *r = run_cached(m, 2, 4, NULL);
    uint8_t gap[8] = {1, 1, 1, 1, 1, 0, 1, 0}, none[8] = {1, 1, 1, 1, 0, 0, 0, 0};
    assert_int_equal(mech_run_set_mask(r, gap, &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "row 2"));
    assert_int_equal(mech_run_set_mask(r, none, &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "no real token"));
    int s, n;
    mech_run_row(r, 1, &s, &n); // a refused mask leaves the run unpadded
    assert_int_equal(s, 0);
    assert_int_equal(n, 4);
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int Tp = 0, lens[2] = {3, 0};
    const int32_t a[3] = {1, 2, 3};
    const int32_t *seqs[2] = {a, a};
    assert_int_equal(mech_batch_pad(seqs, lens, 2, 0, MECH_PAD_RIGHT, &ids, &mask, &Tp, &err), MECH_ERR_ARG);
    assert_null(ids);
    mech_run_free(r);
    mech_model_free(m);
}

// A cache that cannot fit in this machine's memory is refused up front.
static void test_forward_cache_too_big_is_refused(void **state) {
    mech_config c = {.n_layers = 64, .n_heads = 64, .d_model = 8, .d_head = 1, .d_mlp = 8, .n_ctx = 512,
                     .d_vocab = 10, .act = MECH_ACT_RELU, .norm = MECH_NORM_LAYERNORM, .causal = 1,
                     .ln_eps = 1e-5f, .tied_unembed = 1};
    mech_err err = {0};
    mech_model *m;
    assert_int_equal(mech_model_random(&c, 1, &m, &err), MECH_OK);
    mech_run *r;
    assert_int_equal(mech_run_new(m, 8, 512, &r, &err), MECH_OK); // 2 x 64 x 0.5 GB of scores and patterns
    assert_int_equal(mech_run_cache(r, "*", &err), MECH_ERR_NOMEM);
    assert_non_null(strstr(err.msg, "GB"));
    size_t n;
    mech_run_cached(r, &n);
    assert_int_equal(n, 0);
    assert_int_equal(mech_run_cache(r, "blocks.0.hook_resid_pre", &err), MECH_OK);
    mech_run_free(r);
    mech_model_free(m);
}

static void test_hook_names_and_globs(void **state) {
    mech_config c = mech_config_gpt2_small();
    char **names = NULL;
    int n = mech_hook_names(&c, 0, &names);
    assert_int_equal(n, 4 + 12 * 17);
    assert_string_equal(names[0], "hook_embed");
    assert_string_equal(names[2], "blocks.0.hook_resid_pre");
    assert_string_equal(names[3], "blocks.0.ln1.hook_scale");
    assert_string_equal(names[n - 1], "ln_final.hook_normalized");
    mech_hook_names_free(names, n);
    assert_int_equal(mech_hook_names(&c, 1, NULL), 4 + 12 * 22);
    assert_true(mech_glob_match("blocks.*.attn.hook_pattern", "blocks.11.attn.hook_pattern"));
    assert_false(mech_glob_match("blocks.*.attn.hook_pattern", "blocks.11.attn.hook_z"));
    assert_true(mech_glob_match("*", "hook_embed"));
    assert_true(mech_glob_match("blocks.?.hook_*", "blocks.3.hook_resid_pre"));
    assert_false(mech_glob_match("blocks.?.hook_*", "blocks.10.hook_resid_pre"));
    assert_true(mech_glob_match("*hook_z", "blocks.0.attn.hook_z"));
    assert_false(mech_glob_match("hook_embed", "hook_embedx"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_golden),
        cmocka_unit_test(test_forward_cache_is_free_of_side_effects),
        cmocka_unit_test(test_forward_causal_prefix),
        cmocka_unit_test(test_forward_pattern_rows_sum_to_one),
        cmocka_unit_test(test_forward_residual_decomposes),
        cmocka_unit_test(test_forward_identity_hooks_change_nothing),
        cmocka_unit_test(test_forward_zero_ablation_takes_effect),
        cmocka_unit_test(test_forward_batch_rows_equal_single_runs),
        cmocka_unit_test(test_forward_start_and_stop_at_layer),
        cmocka_unit_test(test_forward_opt_in_hooks),
        cmocka_unit_test(test_forward_split_input_patch_is_per_head),
        cmocka_unit_test(test_forward_scale_hook_rescales),
        cmocka_unit_test(test_forward_threads_agree),
        cmocka_unit_test(test_forward_errors),
        cmocka_unit_test(test_forward_variants),
        cmocka_unit_test(test_forward_padded_batch_equals_unpadded),
        cmocka_unit_test(test_forward_mask_errors),
        cmocka_unit_test(test_forward_cache_too_big_is_refused),
        cmocka_unit_test(test_hook_names_and_globs),
    };
    return cmocka_run_group_tests_name("core_forward", tests, NULL, NULL);
}
