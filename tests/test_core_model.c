/*
** tests/test_core_model.c: loading GPT-2 as Hugging Face ships it and as mech
** writes it: prefixes, dtypes, config sources, and malformed models.
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
#include <sys/stat.h>
#include <unistd.h>

#define FIX "tests/fixtures/gpt2-tiny/"

static mech_model *load(const char *path) {
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load(path, &m, &err)) fail_msg("load %s: %s", path, err.msg);
    return m;
}

static float *logits_of(mech_model *m) {
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, 1, 16, &r, &err)) fail_msg("%s", err.msg);
    int32_t ids[16];
    for (int i = 0; i < 16; i++) ids[i] = (i * 37 + 5) % m->cfg.d_vocab;
    if (mech_run_forward(r, ids, &err)) fail_msg("%s", err.msg);
    size_t n = (size_t)16 * m->cfg.d_vocab;
    float *out = malloc(n * sizeof *out);
    memcpy(out, mech_run_logits(r), n * sizeof *out);
    mech_run_free(r);
    return out;
}

// Rewrites the fixture's tensors into path, renaming/retyping/dropping some.
typedef struct edit {
    const char *prefix;      // prepended to every name
    mech_dtype dtype;        // F32, F16 or BF16 for all
    const char *drop;        // a tensor to leave out
    const char *extra;       // an extra tensor name to add ([4] F32)
    const char *reshape;     // a tensor whose first dim is cut by one
    int with_masks;          // add h.N.attn.bias mask buffers
} edit;

static void rewrite(const char *path, const edit *e) {
    mech_err err = {0};
    mech_safetensors *st;
    assert_int_equal(mech_safetensors_open(FIX "model.safetensors", &st, &err), MECH_OK);
    mech_st_write *w = calloc(st->n + 4, sizeof *w);
    char **names = calloc(st->n + 4, sizeof *names);
    void **bufs = calloc(st->n + 4, sizeof *bufs);
    size_t k = 0;
    static float four[4] = {1, 2, 3, 4};
    static uint8_t mask[16];
    for (size_t i = 0; i < st->n; i++) {
        const mech_st_tensor *t = &st->tensors[i];
        if (e->drop && !strcmp(t->name, e->drop)) continue;
        names[k] = malloc(strlen(t->name) + 32);
        sprintf(names[k], "%s%s", e->prefix ? e->prefix : "", t->name);
        w[k].name = names[k];
        w[k].dtype = e->dtype;
        w[k].ndim = t->ndim;
        memcpy(w[k].shape, t->shape, sizeof t->shape);
        size_t n = t->nbytes / 4;
        if (e->reshape && !strcmp(t->name, e->reshape)) {
            w[k].shape[0]--;
            n = n / (size_t)t->shape[0] * (size_t)(t->shape[0] - 1);
        }
        const float *src = t->data;
        if (e->dtype == MECH_DT_F32) {
            w[k].data = src;
        } else {
            uint16_t *h = malloc(n * 2);
            for (size_t j = 0; j < n; j++) h[j] = e->dtype == MECH_DT_F16 ? mech_f32_to_f16(src[j]) : mech_f32_to_bf16(src[j]);
            w[k].data = bufs[k] = h;
        }
        k++;
    }
    if (e->extra) {
        w[k++] = (mech_st_write){.name = e->extra, .dtype = MECH_DT_F32, .ndim = 1, .shape = {4}, .data = four};
    }
    if (e->with_masks) {
        w[k++] = (mech_st_write){.name = "h.0.attn.bias", .dtype = MECH_DT_U8, .ndim = 2, .shape = {4, 4}, .data = mask};
        w[k++] = (mech_st_write){.name = "h.1.attn.masked_bias", .dtype = MECH_DT_U8, .ndim = 1, .shape = {1}, .data = mask};
    }
    assert_int_equal(mech_safetensors_write(path, w, k, NULL, NULL, 0, &err), MECH_OK);
    for (size_t i = 0; i < st->n + 4; i++) free(names[i]), free(bufs[i]);
    free(names);
    free(bufs);
    free(w);
    mech_safetensors_close(st);
}

// A directory with the rewritten model and the fixture's config.json.
static const char *model_dir(const char *name, const edit *e, int with_config) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s", mech_test_tmp(name));
    mkdir(dir, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    rewrite(path, e);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (with_config) {
        size_t n;
        char *cfg = mech_test_read(FIX "config.json", &n);
        FILE *f = fopen(path, "wb");
        fwrite(cfg, 1, n, f);
        fclose(f);
        free(cfg);
    } else {
        unlink(path);
    }
    return dir;
}

static void test_model_loads_fixture_in_place(void **state) {
    mech_model *m = load(FIX);
    assert_int_equal(m->cfg.n_layers, 2);
    assert_int_equal(m->cfg.n_heads, 4);
    assert_int_equal(m->cfg.d_model, 64);
    assert_int_equal(m->cfg.d_mlp, 256);
    assert_int_equal(m->cfg.n_ctx, 128);
    assert_int_equal(m->cfg.d_vocab, 1000);
    assert_int_equal(m->cfg.act, MECH_ACT_GELU_NEW);
    assert_true(m->cfg.tied_unembed);
    assert_ptr_equal(m->unembed, m->wte);
    // F32 weights are used where they lie in the mapping: no copy.
    const char *base = m->st->map;
    assert_true((const char *)m->wte >= base && (const char *)m->wte < base + m->st->map_len);
    assert_null(m->owned);
    // a .safetensors path works as well as its directory
    mech_model *f = load(FIX "model.safetensors");
    assert_int_equal(f->cfg.n_heads, 4);
    mech_model_free(f);
    mech_model_free(m);
}

static void test_model_prefix_and_mask_buffers(void **state) {
    mech_model *ref = load(FIX);
    float *want = logits_of(ref);
    edit e = {.prefix = "transformer.", .dtype = MECH_DT_F32, .with_masks = 1};
    mech_model *m = load(model_dir("prefixed", &e, 1));
    float *got = logits_of(m);
    mech_assert_close(got, want, 16 * 1000, 0, 0, "transformer. prefix");
    free(got);
    mech_model_free(m);
    free(want);
    mech_model_free(ref);
}

static void test_model_half_precision(void **state) {
    mech_model *ref = load(FIX);
    float *want = logits_of(ref);
    mech_dtype types[2] = {MECH_DT_F16, MECH_DT_BF16};
    double tol[2] = {5e-3, 5e-2};
    for (int i = 0; i < 2; i++) {
        edit e = {.dtype = types[i]};
        mech_model *m = load(model_dir(i ? "bf16" : "f16", &e, 1));
        assert_non_null(m->owned);
        // converted weights equal the rounded originals
        for (int j = 0; j < 64; j++) {
            uint16_t h = types[i] == MECH_DT_F16 ? mech_f32_to_f16(ref->wte[j]) : mech_f32_to_bf16(ref->wte[j]);
            float back = types[i] == MECH_DT_F16 ? mech_f16_to_f32(h) : mech_bf16_to_f32(h);
            assert_true(m->wte[j] == back);
        }
        float *got = logits_of(m);
        double d = mech_max_abs_diff(got, want, 16 * 1000);
        assert_true(d > 0 && d < tol[i]);
        free(got);
        mech_model_free(m);
    }
    free(want);
    mech_model_free(ref);
}

static void test_model_config_inferred_without_config_json(void **state) {
    edit e = {.dtype = MECH_DT_F32};
    mech_model *m = load(model_dir("noconfig", &e, 0));
    assert_int_equal(m->cfg.n_layers, 2);
    assert_int_equal(m->cfg.d_model, 64);
    assert_int_equal(m->cfg.d_mlp, 256);
    assert_int_equal(m->cfg.n_ctx, 128);
    assert_int_equal(m->cfg.d_vocab, 1000);
    // shapes cannot tell the head count: GPT-2's 64-wide heads are assumed
    assert_int_equal(m->cfg.d_head, 64);
    assert_int_equal(m->cfg.n_heads, 1);
    mech_model_free(m);
}

static void test_model_save_round_trip_with_metadata(void **state) {
    mech_config c = {.n_layers = 2, .n_heads = 3, .d_model = 12, .d_head = 5, .d_mlp = 0, .n_ctx = 16, .d_vocab = 20,
                     .act = MECH_ACT_RELU, .norm = MECH_NORM_NONE, .attn_only = 1, .causal = 0, .ln_eps = 1e-5f,
                     .tied_unembed = 0, .unembed_bias = 1};
    mech_err err = {0};
    mech_model *m;
    assert_int_equal(mech_model_random(&c, 5, &m, &err), MECH_OK);
    const char *path = mech_test_tmp("own.safetensors");
    char saved[512];
    snprintf(saved, sizeof saved, "%s", path);
    const char *k[] = {"mech.program"}, *v[] = {"output tokens;"};
    assert_int_equal(mech_model_save(m, saved, MECH_DT_F32, k, v, 1, &err), MECH_OK);
    mech_model *l = load(saved);
    assert_memory_equal(&l->cfg, &c, sizeof c);
    assert_string_equal(mech_model_meta(l, "mech.program"), "output tokens;");
    assert_non_null(mech_model_meta(l, "mech.config"));
    assert_memory_equal(l->unembed_b, m->unembed_b, 20 * sizeof(float));
    assert_memory_equal(l->layers[1].o_w, m->layers[1].o_w, 15 * 12 * sizeof(float));
    float *a = logits_of(m), *b = logits_of(l);
    mech_assert_close(b, a, 16 * 20, 0, 0, "saved and reloaded model");
    free(a);
    free(b);
    mech_model_free(l);
    mech_model_free(m);
}

static void expect_error(const char *dir, mech_status code, const char *needle) {
    mech_err err = {0};
    mech_model *m = NULL;
    assert_int_equal(mech_model_load(dir, &m, &err), code);
    assert_null(m);
    if (!strstr(err.msg, needle)) fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void test_model_errors(void **state) {
    edit drop = {.dtype = MECH_DT_F32, .drop = "h.1.mlp.c_fc.bias"};
    expect_error(model_dir("drop", &drop, 1), MECH_ERR_FORMAT, "missing tensor 'h.1.mlp.c_fc.bias'");
    edit shape = {.dtype = MECH_DT_F32, .reshape = "h.0.attn.c_proj.weight"};
    expect_error(model_dir("shape", &shape, 1), MECH_ERR_SHAPE, "h.0.attn.c_proj.weight: shape [63,64], expected [64,64]");
    edit extra = {.dtype = MECH_DT_F32, .extra = "h.0.attn.rotary"};
    expect_error(model_dir("extra", &extra, 1), MECH_ERR_FORMAT, "unexpected tensor 'h.0.attn.rotary'");
    edit three = {.dtype = MECH_DT_F32, .extra = "h.2.ln_1.weight"};
    expect_error(model_dir("layer3", &three, 1), MECH_ERR_FORMAT, "unexpected tensor 'h.2.ln_1.weight'");
    edit zero = {.dtype = MECH_DT_F32, .extra = "h.00.ln_1.weight"};
    expect_error(model_dir("h00", &zero, 1), MECH_ERR_FORMAT, "unexpected tensor 'h.00.ln_1.weight'");
    expect_error("/nonexistent/gpt2", MECH_ERR_IO, "/nonexistent/gpt2");
    // a config.json that disagrees with the tensors, or is not JSON
    edit ok = {.dtype = MECH_DT_F32};
    const char *dir = model_dir("badcfg", &ok, 0);
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    static const struct { const char *json; mech_status code; const char *needle; } cfgs[] = {
        {"{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 64, \"vocab_size\": 999, \"n_positions\": 128}",
         MECH_ERR_SHAPE, "wte.weight: shape [1000,64], expected [999,64]"},
        {"{\"n_layer\": 2, \"n_head\": ", MECH_ERR_FORMAT, "config.json"},
        {"{\"n_layer\": \"two\"}", MECH_ERR_TYPE, "n_layer"},
        {"{\"activation_function\": \"swish\"}", MECH_ERR_TYPE, "activation_function"},
        {"{\"model_type\": \"gpt2\", \"scale_attn_by_inverse_layer_idx\": true}", MECH_ERR_FORMAT,
         "scale_attn_by_inverse_layer_idx"},
        {"{\"n_layer\": 2, \"n_head\": 3, \"n_embd\": 64}", MECH_ERR_RANGE,
         "n_embd = 64 is not divisible by n_head = 3"},
        {"{\"model_type\": \"gpt_neox\"}", MECH_ERR_FORMAT, "model_type 'gpt_neox'"},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) {
        FILE *f = fopen(path, "wb");
        fputs(cfgs[i].json, f);
        fclose(f);
        expect_error(dir, cfgs[i].code, cfgs[i].needle);
    }
}

static void test_config_json_round_trip(void **state) {
    mech_config c = mech_config_gpt2_small();
    c.causal = 0;
    c.act = MECH_ACT_GELU;
    mech_buf b = {0};
    mech_config_to_json(&c, &b);
    mech_json *j;
    mech_err err = {0};
    assert_int_equal(mech_json_parse(b.data, b.len, &j, &err), MECH_OK);
    mech_config d = {0};
    assert_int_equal(mech_config_from_json(j, &d, &err), MECH_OK);
    assert_memory_equal(&c, &d, sizeof c);
    assert_int_equal(mech_config_n_params(&c), 124439808);
    mech_json_free(j);
    mech_buf_free(&b);
    c.n_heads = 0;
    assert_int_equal(mech_config_validate(&c, &err), MECH_ERR_RANGE);
    assert_non_null(strstr(err.msg, "n_heads"));
}

// ---------------------------------------------------------------------------
// LayerNorm-free GPT-2 (Heimersheim 2024, gpt2_noLN) as it is shipped: a
// GPT2LMHeadModel safetensors ("transformer." names, no mech metadata) whose
// config.json sets layer_norm_epsilon 1e12, with ln_1/ln_2 weights 1e6 and
// biases 0 and ln_f's weights scaled by 1e6, so that every LayerNorm computes
// (x - mean(x)) times a constant. The logits must match a float64 forward
// pass of the same file with the LayerNorm formula taken literally.

enum { NL = 2, NNH = 2, NC = 16, NHS = 8, NM = 32, NV = 50, NT = 7 };

static double gelu_new_d(double x) { return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

// y[C] = LayerNorm(x[C]) in double: (x - mean) / sqrt(var + eps) * w + b.
static void ln_d(double *y, const double *x, const float *w, const float *b, double eps) {
    double mean = 0, var = 0;
    for (int c = 0; c < NC; c++) mean += x[c];
    mean /= NC;
    for (int c = 0; c < NC; c++) var += (x[c] - mean) * (x[c] - mean);
    var /= NC;
    for (int c = 0; c < NC; c++) y[c] = (x[c] - mean) / sqrt(var + eps) * w[c] + b[c];
}

// The float64 forward of m on ids[NT]: logits[NT * NV].
static void forward_d(const mech_model *m, const int32_t *ids, double eps, double *logits) {
    static double x[NT][NC], h[NT][NC], q[NT][NNH * NHS], k[NT][NNH * NHS], v[NT][NNH * NHS], z[NT][NNH * NHS];
    static double f[NT][NM];
    const int A = NNH * NHS;
    for (int t = 0; t < NT; t++)
        for (int c = 0; c < NC; c++) x[t][c] = (double)m->wte[ids[t] * NC + c] + m->wpe[t * NC + c];
    for (int l = 0; l < NL; l++) {
        const mech_layer_weights *w = &m->layers[l];
        for (int t = 0; t < NT; t++) {
            ln_d(h[t], x[t], w->ln1_w, w->ln1_b, eps);
            for (int o = 0; o < 3 * A; o++) {
                double acc = w->qkv_b[o];
                for (int c = 0; c < NC; c++) acc += h[t][c] * w->qkv_w[c * 3 * A + o];
                (o < A ? q[t] : o < 2 * A ? k[t] : v[t])[o % A] = acc;
            }
        }
        for (int hd = 0; hd < NNH; hd++)
            for (int i = 0; i < NT; i++) {
                double s[NT], mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    s[j] = 0;
                    for (int d = 0; d < NHS; d++) s[j] += q[i][hd * NHS + d] * k[j][hd * NHS + d];
                    s[j] /= sqrt((double)NHS);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j <= i; j++) sum += s[j] = exp(s[j] - mx);
                for (int d = 0; d < NHS; d++) {
                    double acc = 0;
                    for (int j = 0; j <= i; j++) acc += s[j] / sum * v[j][hd * NHS + d];
                    z[i][hd * NHS + d] = acc;
                }
            }
        for (int t = 0; t < NT; t++)
            for (int c = 0; c < NC; c++) {
                double acc = w->o_b[c];
                for (int a = 0; a < A; a++) acc += z[t][a] * w->o_w[a * NC + c];
                x[t][c] += acc;
            }
        for (int t = 0; t < NT; t++) {
            ln_d(h[t], x[t], w->ln2_w, w->ln2_b, eps);
            for (int o = 0; o < NM; o++) {
                double acc = w->fc_b[o];
                for (int c = 0; c < NC; c++) acc += h[t][c] * w->fc_w[c * NM + o];
                f[t][o] = gelu_new_d(acc);
            }
            for (int c = 0; c < NC; c++) {
                double acc = w->proj_b[c];
                for (int o = 0; o < NM; o++) acc += f[t][o] * w->proj_w[o * NC + c];
                x[t][c] += acc;
            }
        }
    }
    for (int t = 0; t < NT; t++) {
        ln_d(h[t], x[t], m->lnf_w, m->lnf_b, eps);
        for (int u = 0; u < NV; u++) {
            double acc = 0;
            for (int c = 0; c < NC; c++) acc += h[t][c] * m->unembed[u * NC + c];
            logits[t * NV + u] = acc;
        }
    }
}

// Writes the LayerNorm-free model as shipped into dir; returns dir.
static const char *write_noln(void) {
    mech_config c = {.n_layers = NL, .n_heads = NNH, .d_model = NC, .d_head = NHS, .d_mlp = NM, .n_ctx = 32,
                     .d_vocab = NV, .act = MECH_ACT_GELU_NEW, .norm = MECH_NORM_LAYERNORM, .causal = 1,
                     .ln_eps = 1e12f, .tied_unembed = 1};
    mech_err err = {0};
    mech_model *m = NULL;
    assert_int_equal(mech_model_random(&c, 11, &m, &err), MECH_OK);
    char name[64];
    for (int l = 0; l < NL; l++)
        for (int which = 1; which <= 2; which++) {
            snprintf(name, sizeof name, "h.%d.ln_%d.weight", l, which);
            float *w = mech_model_param(m, name);
            assert_non_null(w);
            for (int i = 0; i < NC; i++) w[i] = 1e6f;
        }
    // ln_f: the fine-tuned model's final weights and biases, times 1e6
    float *fw = mech_model_param(m, "ln_f.weight"), *fb = mech_model_param(m, "ln_f.bias");
    for (int i = 0; i < NC; i++) fw[i] = 1e6f * (1.0f + 0.05f * (float)((i * 7) % 5 - 2)), fb[i] = 0.01f * (float)(i % 3);
    mech_model_tensor *t = NULL;
    size_t n = 0;
    assert_int_equal(mech_model_tensors(m, &t, &n, &err), MECH_OK);
    mech_st_write *w = calloc(n, sizeof *w);
    char (*names)[80] = calloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "transformer.%s", t[i].name);
        w[i] = (mech_st_write){.name = names[i], .dtype = MECH_DT_F32, .ndim = t[i].ndim, .data = t[i].data};
        for (int d = 0; d < t[i].ndim; d++) w[i].shape[d] = t[i].shape[d];
    }
    static char dir[512];
    snprintf(dir, sizeof dir, "%s", mech_test_tmp("gpt2_noLN"));
    mkdir(dir, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(mech_safetensors_write(path, w, n, NULL, NULL, 0, &err), MECH_OK);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    fprintf(f, "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"n_layer\": %d, \"n_head\": %d, "
               "\"n_embd\": %d, \"n_inner\": %d, \"n_positions\": 32, \"vocab_size\": %d, "
               "\"activation_function\": \"gelu_new\", \"layer_norm_epsilon\": 1e12}\n",
            NL, NNH, NC, NM, NV);
    fclose(f);
    free(names);
    free(w);
    mech_free(t);
    mech_model_free(m);
    return dir;
}

static void test_model_layernorm_free_gpt2(void **state) {
    mech_model *m = load(write_noln());
    assert_true(m->cfg.ln_eps == 1e12f);
    assert_true(m->lnf_w[0] > 5e5f);
    int32_t ids[NT] = {3, 17, 42, 8, 8, 49, 0};
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, 1, NT, &r, &err) || mech_run_cache(r, "blocks.0.ln1.hook_scale", &err) ||
        mech_run_forward(r, ids, &err))
        fail_msg("%s", err.msg);
    static double want[NT * NV];
    static float wantf[NT * NV];
    forward_d(m, ids, 1e12, want);
    for (int i = 0; i < NT * NV; i++) wantf[i] = (float)want[i];
    // float32 against float64: rounding only
    mech_assert_close(mech_run_logits(r), wantf, NT * NV, 1e-5, 1e-4, "gpt2_noLN logits");
    double lmax = 0;
    for (int i = 0; i < NT * NV; i++) lmax = fmax(lmax, fabs(want[i]));
    assert_true(lmax > 0.01); // the logits are not trivially 0
    // each LayerNorm is x - mean(x) (times w / 1e6): the scale is sqrt(eps)
    const float *scale = mech_run_get(r, "blocks.0.ln1.hook_scale")->data;
    for (int t = 0; t < NT; t++) assert_true(fabs(scale[t] / 1e6 - 1) < 1e-6);
    mech_run_free(r);
    mech_model_free(m);
    // config: large epsilons load; 0, negative, inf and values float32 cannot hold do not
    mech_config c = mech_config_gpt2_small();
    c.ln_eps = 1e12f;
    assert_int_equal(mech_config_validate(&c, &err), MECH_OK);
    c.ln_eps = INFINITY;
    assert_int_equal(mech_config_validate(&c, &err), MECH_ERR_RANGE);
    static const char *const bad[] = {"{\"layer_norm_epsilon\": 0}", "{\"layer_norm_epsilon\": -1}",
                                      "{\"layer_norm_epsilon\": 1e39}", "{\"layer_norm_epsilon\": \"1e12\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mech_json *j = NULL;
        assert_int_equal(mech_json_parse(bad[i], strlen(bad[i]), &j, &err), MECH_OK);
        mech_config d = mech_config_gpt2_small();
        assert_int_equal(mech_config_from_json(j, &d, &err), MECH_ERR_TYPE);
        assert_non_null(strstr(err.msg, "layer_norm_epsilon"));
        mech_json_free(j);
    }
}

// A model built by hand: 0 layers, no LayerNorm, separate unembedding.
static void test_model_built_in_memory(void **state) {
    mech_config c = {.n_layers = 0, .n_heads = 1, .d_model = 4, .d_head = 4, .d_mlp = 0, .n_ctx = 3, .d_vocab = 4,
                     .act = MECH_ACT_RELU, .norm = MECH_NORM_NONE, .attn_only = 1, .causal = 1, .ln_eps = 1e-5f,
                     .tied_unembed = 0, .unembed_bias = 1};
    mech_err err = {0};
    mech_model *m;
    assert_int_equal(mech_model_zeros(&c, &m, &err), MECH_OK);
    float *wte = mech_model_param(m, "wte.weight"), *wpe = mech_model_param(m, "transformer.wpe.weight");
    float *lm = mech_model_param(m, "lm_head.weight"), *lb = mech_model_param(m, "lm_head.bias");
    assert_non_null(wte);
    assert_non_null(wpe);
    assert_non_null(lm);
    assert_non_null(lb);
    assert_null(mech_model_param(m, "h.0.attn.c_attn.weight"));
    assert_null(mech_model_param(m, "ln_f.weight"));
    for (int i = 0; i < 4; i++) wte[i * 4 + i] = 1, lm[i * 4 + i] = 2;
    wpe[1 * 4 + 2] = 5;
    lb[3] = 1;
    mech_run *r;
    assert_int_equal(mech_run_new(m, 1, 3, &r, &err), MECH_OK);
    int32_t ids[3] = {0, 3, 1};
    assert_int_equal(mech_run_forward(r, ids, &err), MECH_OK);
    float want[12] = {2, 0, 0, 1, 0, 0, 10, 3, 0, 2, 0, 1};
    mech_assert_close(mech_run_logits(r), want, 12, 0, 0, "hand-built logits");
    mech_run_free(r);
    mech_model_free(m);
    // tensors of a memory-mapped model are writable too (copy-on-write:
    // tests/test_core_startup.c checks the file stays unchanged)
    mech_model *f = load(FIX);
    assert_ptr_equal(mech_model_param(f, "wte.weight"), f->wte);
    mech_model_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_loads_fixture_in_place),
        cmocka_unit_test(test_model_prefix_and_mask_buffers),
        cmocka_unit_test(test_model_half_precision),
        cmocka_unit_test(test_model_config_inferred_without_config_json),
        cmocka_unit_test(test_model_save_round_trip_with_metadata),
        cmocka_unit_test(test_model_errors),
        cmocka_unit_test(test_config_json_round_trip),
        cmocka_unit_test(test_model_built_in_memory),
        cmocka_unit_test(test_model_layernorm_free_gpt2),
    };
    return cmocka_run_group_tests_name("core_model", tests, NULL, NULL);
}
