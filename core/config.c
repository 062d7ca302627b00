/*
** core/config.c: the model config: GPT-2 defaults, validation, and JSON in
** both Hugging Face's config.json form and mech's own form (the field names
** of mech_config), which mech writes into its safetensors __metadata__.
*/
#include "core/core.h"

#include <math.h>
#include <string.h>

static const char *const act_names[] = {
    [MECH_ACT_GELU_NEW] = "gelu_new",
    [MECH_ACT_GELU] = "gelu",
    [MECH_ACT_RELU] = "relu",
};

const char *mech_act_name(mech_act a) {
    return (unsigned)a < sizeof act_names / sizeof *act_names ? act_names[a] : "?";
}

mech_config mech_config_gpt2_small(void) {
    mech_config c = {
        .n_layers = 12, .n_heads = 12, .d_model = 768, .d_head = 64, .d_mlp = 3072,
        .n_ctx = 1024, .d_vocab = 50257, .act = MECH_ACT_GELU_NEW,
        .norm = MECH_NORM_LAYERNORM, .attn_only = 0, .causal = 1, .ln_eps = 1e-5f,
        .tied_unembed = 1, .unembed_bias = 0,
    };
    return c;
}

mech_status mech_config_validate(const mech_config *c, mech_err *err) {
    // Limits keep every size computation well inside int and size_t.
    struct { const char *name; int v, lo, hi; } f[] = {
        {"n_layers", c->n_layers, 0, 4096},  {"n_heads", c->n_heads, 1, 4096},
        {"d_model", c->d_model, 1, 1 << 16}, {"d_head", c->d_head, 1, 1 << 16},
        {"d_mlp", c->d_mlp, 0, 1 << 20},     {"n_ctx", c->n_ctx, 1, 1 << 20},
        {"d_vocab", c->d_vocab, 1, 1 << 24},
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (f[i].v < f[i].lo || f[i].v > f[i].hi)
            return mech_err_set(err, MECH_ERR_RANGE, "config: %s = %d, expected %d..%d", f[i].name,
                                f[i].v, f[i].lo, f[i].hi);
    if ((int64_t)c->n_heads * c->d_head > (1 << 20))
        return mech_err_set(err, MECH_ERR_RANGE, "config: n_heads*d_head = %lld is too large",
                            (long long)c->n_heads * c->d_head);
    if (!c->attn_only && c->d_mlp < 1)
        return mech_err_set(err, MECH_ERR_RANGE, "config: d_mlp = %d, expected >= 1 unless attn_only", c->d_mlp);
    if ((unsigned)c->act > MECH_ACT_RELU)
        return mech_err_set(err, MECH_ERR_RANGE, "config: act = %d, expected gelu_new, gelu or relu", (int)c->act);
    if ((unsigned)c->norm > MECH_NORM_NONE)
        return mech_err_set(err, MECH_ERR_RANGE, "config: normalization = %d, expected layernorm or none", (int)c->norm);
    // Large epsilons are legitimate: LayerNorm-free GPT-2 (gpt2_noLN) ships
    // eps 1e12 with LayerNorm weights 1e6, so that each LayerNorm computes
    // x - mean(x) (the statistics are accumulated in double: no overflow).
    if (c->norm == MECH_NORM_LAYERNORM && !(c->ln_eps > 0 && isfinite(c->ln_eps)))
        return mech_err_set(err, MECH_ERR_RANGE, "config: ln_eps = %g, expected a finite eps > 0", (double)c->ln_eps);
    if (c->tied_unembed && c->unembed_bias)
        return mech_err_set(err, MECH_ERR_ARG, "config: a tied unembedding has no bias");
    return MECH_OK;
}

int64_t mech_config_n_params(const mech_config *c) {
    int64_t C = c->d_model, A = (int64_t)c->n_heads * c->d_head, M = c->d_mlp, V = c->d_vocab;
    int64_t ln = c->norm == MECH_NORM_LAYERNORM ? 2 * C : 0;
    int64_t per = ln + C * 3 * A + 3 * A + A * C + C;
    if (!c->attn_only) per += ln + C * M + M + M * C + C;
    int64_t n = V * C + (int64_t)c->n_ctx * C + c->n_layers * per + ln;
    if (!c->tied_unembed) n += V * C + (c->unembed_bias ? V : 0);
    return n;
}

// Reads an integer field into *dst when present.
static mech_status get_int(const mech_json *j, const char *key, int *dst, mech_err *err) {
    const mech_json *v = mech_json_get(j, key);
    if (!v || v->type == MECH_JSON_NULL) return MECH_OK;
    if (v->type != MECH_JSON_NUMBER || !v->is_int || v->inum < 0 || v->inum > (1 << 30))
        return mech_err_set(err, MECH_ERR_TYPE, "config: field '%s' must be an integer from 0 to %d", key, 1 << 30);
    *dst = (int)v->inum;
    return MECH_OK;
}

static mech_status get_bool(const mech_json *j, const char *key, int *dst, mech_err *err) {
    const mech_json *v = mech_json_get(j, key);
    if (!v || v->type == MECH_JSON_NULL) return MECH_OK;
    if (v->type != MECH_JSON_BOOL) return mech_err_set(err, MECH_ERR_TYPE, "config: field '%s' must be true or false", key);
    *dst = v->boolean;
    return MECH_OK;
}

static mech_status get_act(const mech_json *j, const char *key, mech_act *dst, mech_err *err) {
    const mech_json *v = mech_json_get(j, key);
    if (!v || v->type == MECH_JSON_NULL) return MECH_OK;
    if (v->type == MECH_JSON_STRING) {
        // Hugging Face spells tanh-GELU several ways.
        static const struct { const char *name; mech_act act; } names[] = {
            {"gelu_new", MECH_ACT_GELU_NEW}, {"gelu_pytorch_tanh", MECH_ACT_GELU_NEW},
            {"gelu_fast", MECH_ACT_GELU_NEW}, {"gelu", MECH_ACT_GELU}, {"relu", MECH_ACT_RELU},
        };
        for (size_t i = 0; i < sizeof names / sizeof *names; i++)
            if (!strcmp(v->str, names[i].name)) {
                *dst = names[i].act;
                return MECH_OK;
            }
    }
    return mech_err_set(err, MECH_ERR_TYPE, "config: field '%s' must be one of gelu_new, gelu, relu", key);
}

mech_status mech_config_from_json(const mech_json *j, mech_config *c, mech_err *err) {
    if (!j || j->type != MECH_JSON_OBJECT) return mech_err_set(err, MECH_ERR_TYPE, "config: expected a JSON object");
    mech_status rc = MECH_OK;
    // Hugging Face names first, then mech's (which win when both are given).
    int n_embd_set = mech_json_get(j, "n_embd") != NULL;
    int n_inner = -1;
#define TRY(x) if ((rc = (x)) != MECH_OK) return rc
    TRY(get_int(j, "n_layer", &c->n_layers, err));
    TRY(get_int(j, "n_head", &c->n_heads, err));
    TRY(get_int(j, "n_embd", &c->d_model, err));
    TRY(get_int(j, "n_positions", &c->n_ctx, err));
    if (!mech_json_get(j, "n_positions")) TRY(get_int(j, "n_ctx", &c->n_ctx, err));
    TRY(get_int(j, "vocab_size", &c->d_vocab, err));
    TRY(get_int(j, "n_inner", &n_inner, err));
    TRY(get_act(j, "activation_function", &c->act, err));
    TRY(get_bool(j, "tie_word_embeddings", &c->tied_unembed, err));
    const mech_json *eps = mech_json_get(j, "layer_norm_epsilon");
    if (!eps) eps = mech_json_get(j, "ln_eps");
    if (eps) {
        if (eps->type != MECH_JSON_NUMBER || !(eps->num > 0) || (float)eps->num == 0 || !isfinite((float)eps->num))
            return mech_err_set(err, MECH_ERR_TYPE, "config: layer_norm_epsilon must be a number > 0 that float32 can "
                                "hold (1e-38 to 3e38)");
        c->ln_eps = (float)eps->num;
    }
    if (n_embd_set && c->n_heads > 0 && c->d_model % c->n_heads != 0)
        return mech_err_set(err, MECH_ERR_RANGE, "config: n_embd = %d is not divisible by n_head = %d", c->d_model,
                            c->n_heads);
    if (n_embd_set && c->n_heads > 0) {
        // Hugging Face GPT-2 has no d_head or d_mlp: they follow from n_embd.
        c->d_head = c->d_model / c->n_heads;
        // in 64 bits: n_embd may be up to 2^30 here (validate refuses it later)
        int64_t mlp = n_inner > 0 ? n_inner : 4 * (int64_t)c->d_model;
        c->d_mlp = mlp > INT32_MAX ? INT32_MAX : (int)mlp;
    }
    TRY(get_int(j, "n_layers", &c->n_layers, err));
    TRY(get_int(j, "n_heads", &c->n_heads, err));
    TRY(get_int(j, "d_model", &c->d_model, err));
    TRY(get_int(j, "d_head", &c->d_head, err));
    TRY(get_int(j, "d_mlp", &c->d_mlp, err));
    TRY(get_int(j, "d_vocab", &c->d_vocab, err));
    TRY(get_act(j, "act", &c->act, err));
    TRY(get_bool(j, "attn_only", &c->attn_only, err));
    TRY(get_bool(j, "causal", &c->causal, err));
    TRY(get_bool(j, "tied_unembed", &c->tied_unembed, err));
    TRY(get_bool(j, "unembed_bias", &c->unembed_bias, err));
#undef TRY
    // Hugging Face GPT-2 options that change the maths: refuse rather than
    // compute something else.
    static const struct { const char *key; int ok_value; } unsupported[] = {
        {"scale_attn_by_inverse_layer_idx", 0}, {"scale_attn_weights", 1}, {"add_cross_attention", 0},
    };
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++) {
        const mech_json *u = mech_json_get(j, unsupported[i].key);
        if (u && u->type == MECH_JSON_BOOL && u->boolean != unsupported[i].ok_value)
            return mech_err_set(err, MECH_ERR_FORMAT, "config: '%s': %s is not supported (expected %s)",
                                unsupported[i].key, u->boolean ? "true" : "false",
                                unsupported[i].ok_value ? "true" : "false");
    }
    const mech_json *mt = mech_json_get(j, "model_type");
    if (mt && mt->type == MECH_JSON_STRING && strcmp(mt->str, "gpt2") != 0)
        return mech_err_set(err, MECH_ERR_FORMAT, "config: model_type '%s' is not supported (expected \"gpt2\")", mt->str);
    const mech_json *norm = mech_json_get(j, "normalization");
    if (norm) {
        if (norm->type == MECH_JSON_STRING && !strcmp(norm->str, "layernorm")) c->norm = MECH_NORM_LAYERNORM;
        else if (norm->type == MECH_JSON_STRING && !strcmp(norm->str, "none")) c->norm = MECH_NORM_NONE;
        else return mech_err_set(err, MECH_ERR_TYPE, "config: field 'normalization' must be \"layernorm\" or \"none\"");
    }
    if (c->attn_only) c->d_mlp = 0;
    return mech_config_validate(c, err);
}

void mech_config_to_json(const mech_config *c, mech_buf *b) {
    mech_buf_printf(b,
                    "{\"n_layers\": %d, \"n_heads\": %d, \"d_model\": %d, \"d_head\": %d, \"d_mlp\": %d, "
                    "\"n_ctx\": %d, \"d_vocab\": %d, \"act\": \"%s\", \"normalization\": \"%s\", "
                    "\"attn_only\": %s, \"causal\": %s, \"ln_eps\": %.9g, \"tied_unembed\": %s, "
                    "\"unembed_bias\": %s}",
                    c->n_layers, c->n_heads, c->d_model, c->d_head, c->d_mlp, c->n_ctx, c->d_vocab,
                    mech_act_name(c->act), c->norm == MECH_NORM_NONE ? "none" : "layernorm",
                    c->attn_only ? "true" : "false", c->causal ? "true" : "false", (double)c->ln_eps,
                    c->tied_unembed ? "true" : "false", c->unembed_bias ? "true" : "false");
}
