/*
** core/model.c: GPT-2 weights in Hugging Face's layout, memory-mapped from
** safetensors. F32 tensors that are 4-byte aligned are used in place (the
** mapping is the only copy); F16, BF16 and unaligned F32 are converted once
** into one owned arena. The mapping is private and made writable
** (copy-on-write), so every tensor of a loaded model can be written through
** mech_model_param (training, patching) while the file stays as it was: a
** written page becomes the process's own copy, pages only read stay shared
** with the page cache. The config comes from mech's own metadata, else
** config.json, else the tensor shapes, and every tensor's shape is checked
** against it.
*/
#include "core/core.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

// ---------------------------------------------------------------------------
// Tensor names

enum { T_WTE, T_WPE, T_LNF_W, T_LNF_B, T_LM_W, T_LM_B, N_GLOBAL };
enum { L_LN1_W, L_LN1_B, L_QKV_W, L_QKV_B, L_O_W, L_O_B, L_LN2_W, L_LN2_B,
       L_FC_W, L_FC_B, L_PROJ_W, L_PROJ_B, N_PER_LAYER };

static const char *const global_names[N_GLOBAL] = {
    "wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias", "lm_head.weight", "lm_head.bias",
};
static const char *const layer_names[N_PER_LAYER] = {
    "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
    "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
    "mlp.c_proj.weight", "mlp.c_proj.bias",
};

// Expected shape of one tensor under cfg; returns 0 when the config has no
// such tensor.
static int expected_shape(const mech_config *c, int layer, int which, int64_t shape[2], int *ndim) {
    int64_t C = c->d_model, A = (int64_t)c->n_heads * c->d_head, M = c->d_mlp, V = c->d_vocab;
    int ln = c->norm == MECH_NORM_LAYERNORM;
    *ndim = 1;
    shape[1] = 0;
    if (layer < 0) {
        switch (which) {
        case T_WTE: *ndim = 2; shape[0] = V; shape[1] = C; return 1;
        case T_WPE: *ndim = 2; shape[0] = c->n_ctx; shape[1] = C; return 1;
        case T_LNF_W: case T_LNF_B: shape[0] = C; return ln;
        case T_LM_W: *ndim = 2; shape[0] = V; shape[1] = C; return !c->tied_unembed;
        case T_LM_B: shape[0] = V; return !c->tied_unembed && c->unembed_bias;
        }
        return 0;
    }
    int mlp = !c->attn_only;
    switch (which) {
    case L_LN1_W: case L_LN1_B: shape[0] = C; return ln;
    case L_QKV_W: *ndim = 2; shape[0] = C; shape[1] = 3 * A; return 1;
    case L_QKV_B: shape[0] = 3 * A; return 1;
    case L_O_W: *ndim = 2; shape[0] = A; shape[1] = C; return 1;
    case L_O_B: shape[0] = C; return 1;
    case L_LN2_W: case L_LN2_B: shape[0] = C; return ln && mlp;
    case L_FC_W: *ndim = 2; shape[0] = C; shape[1] = M; return mlp;
    case L_FC_B: shape[0] = M; return mlp;
    case L_PROJ_W: *ndim = 2; shape[0] = M; shape[1] = C; return mlp;
    case L_PROJ_B: shape[0] = C; return mlp;
    }
    return 0;
}

static const char *strip_prefix(const char *name) {
    return strncmp(name, "transformer.", 12) == 0 ? name + 12 : name;
}

// Parses "h.<l>.<rest>"; returns the layer or -1.
static int layer_of(const char *name, const char **rest) {
    // "h.00" is not "h.0": one spelling per layer, or a file could carry two.
    if (strncmp(name, "h.", 2) != 0 || (name[2] == '0' && name[3] >= '0' && name[3] <= '9')) return -1;
    char *end;
    errno = 0;
    long l = strtol(name + 2, &end, 10);
    if (end == name + 2 || *end != '.' || l < 0 || l > 1 << 20 || errno) return -1;
    *rest = end + 1;
    return (int)l;
}

// Finds a tensor by its unprefixed name in either spelling.
static const mech_st_tensor *find_tensor(const mech_safetensors *st, const char *name) {
    const mech_st_tensor *t = mech_safetensors_find(st, name);
    if (t) return t;
    char full[192];
    snprintf(full, sizeof full, "transformer.%s", name);
    return mech_safetensors_find(st, full);
}

static int is_float_dtype(mech_dtype d) { return d == MECH_DT_F32 || d == MECH_DT_F16 || d == MECH_DT_BF16; }

// ---------------------------------------------------------------------------
// Config inference

static mech_status infer_config(const mech_safetensors *st, const char *path, mech_config *c, mech_err *err) {
    *c = mech_config_gpt2_small();
    const mech_st_tensor *wte = find_tensor(st, "wte.weight");
    const mech_st_tensor *wpe = find_tensor(st, "wpe.weight");
    if (!wte || wte->ndim != 2)
        return mech_err_set(err, MECH_ERR_FORMAT, "%s: no 2-d tensor 'wte.weight': not a GPT-2 model in Hugging Face layout", path);
    if (!wpe || wpe->ndim != 2)
        return mech_err_set(err, MECH_ERR_FORMAT, "%s: no 2-d tensor 'wpe.weight': not a GPT-2 model in Hugging Face layout", path);
    c->d_vocab = (int)wte->shape[0];
    c->d_model = (int)wte->shape[1];
    c->n_ctx = (int)wpe->shape[0];
    int n_layers = 0;
    for (size_t i = 0; i < st->n; i++) {
        const char *rest;
        int l = layer_of(strip_prefix(st->tensors[i].name), &rest);
        if (l >= n_layers) n_layers = l + 1;
    }
    c->n_layers = n_layers;
    const mech_st_tensor *qkv = find_tensor(st, "h.0.attn.c_attn.weight");
    int64_t A = qkv && qkv->ndim == 2 ? qkv->shape[1] / 3 : c->d_model;
    // Shapes do not tell the head count; GPT-2 always uses 64-wide heads.
    c->d_head = A % 64 == 0 ? 64 : (int)A;
    c->n_heads = (int)(A / c->d_head);
    const mech_st_tensor *fc = find_tensor(st, "h.0.mlp.c_fc.weight");
    c->attn_only = n_layers > 0 && !fc;
    c->d_mlp = fc && fc->ndim == 2 ? (int)fc->shape[1] : 0;
    c->norm = find_tensor(st, "ln_f.weight") ? MECH_NORM_LAYERNORM : MECH_NORM_NONE;
    c->tied_unembed = find_tensor(st, "lm_head.weight") == NULL;
    c->unembed_bias = find_tensor(st, "lm_head.bias") != NULL;
    return MECH_OK;
}

// Prefixes err's message with where it happened (copying first: the
// message may not be both source and destination of one format).
static mech_status err_prefix(mech_err *err, mech_status rc, const char *where, const char *what) {
    if (!err) return rc;
    char msg[sizeof err->msg];
    memcpy(msg, err->msg, sizeof msg);
    return mech_err_set(err, rc, "%s: %s%s", where, what, msg);
}

// Applies mech.config metadata or config.json over the inferred config.
static mech_status read_config(const mech_safetensors *st, const char *model_path, const char *config_path,
                               mech_config *c, mech_err *err) {
    const char *meta = mech_safetensors_meta(st, "mech.config");
    mech_json *j = NULL;
    mech_status rc;
    if (meta) {
        rc = mech_json_parse(meta, strlen(meta), &j, err);
        if (rc) return err_prefix(err, rc, model_path, "__metadata__ 'mech.config': ");
        rc = mech_config_from_json(j, c, err);
        mech_json_free(j);
        if (rc) return err_prefix(err, rc, model_path, "__metadata__ 'mech.config': ");
        return MECH_OK;
    }
    struct stat sb;
    if (!config_path || stat(config_path, &sb) != 0) return mech_config_validate(c, err);
    char *text;
    size_t len;
    if ((rc = mech_read_file(config_path, &text, &len, err))) return rc;
    rc = mech_json_parse(text, len, &j, err);
    mech_free(text);
    if (rc) return err_prefix(err, rc, config_path, "");
    rc = mech_config_from_json(j, c, err);
    mech_json_free(j);
    if (rc) return err_prefix(err, rc, config_path, "");
    // config.json may say tied while the file carries lm_head.weight: HF
    // writes the shared tensor under both names at times; the tie wins.
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Loading

static void set_ptr(mech_model *m, int layer, int which, const float *p) {
    if (layer < 0) {
        switch (which) {
        case T_WTE: m->wte = p; break;
        case T_WPE: m->wpe = p; break;
        case T_LNF_W: m->lnf_w = p; break;
        case T_LNF_B: m->lnf_b = p; break;
        case T_LM_W: m->unembed = p; break;
        case T_LM_B: m->unembed_b = p; break;
        }
        return;
    }
    mech_layer_weights *w = &m->layers[layer];
    const float **slots[N_PER_LAYER] = {
        &w->ln1_w, &w->ln1_b, &w->qkv_w, &w->qkv_b, &w->o_w, &w->o_b,
        &w->ln2_w, &w->ln2_b, &w->fc_w, &w->fc_b, &w->proj_w, &w->proj_b,
    };
    *slots[which] = p;
}

static const float *get_ptr(const mech_model *m, int layer, int which) {
    if (layer < 0) {
        const float *g[N_GLOBAL] = {m->wte, m->wpe, m->lnf_w, m->lnf_b, m->unembed, m->unembed_b};
        return g[which];
    }
    const mech_layer_weights *w = &m->layers[layer];
    const float *l[N_PER_LAYER] = {w->ln1_w, w->ln1_b, w->qkv_w, w->qkv_b, w->o_w, w->o_b,
                                   w->ln2_w, w->ln2_b, w->fc_w, w->fc_b, w->proj_w, w->proj_b};
    return l[which];
}

static void convert_to_f32(float *dst, const mech_st_tensor *t, size_t n) {
    const unsigned char *src = t->data;
    for (size_t i = 0; i < n; i++) {
        if (t->dtype == MECH_DT_F32) {
            memcpy(&dst[i], src + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = t->dtype == MECH_DT_F16 ? mech_f16_to_f32(h) : mech_bf16_to_f32(h);
        }
    }
}

static int needs_copy(const mech_st_tensor *t, int copy_all) {
    return copy_all || t->dtype != MECH_DT_F32 || ((uintptr_t)t->data & 3) != 0;
}

// Checks names: every tensor must be one the config expects or a mask
// buffer, under one spelling only.
static mech_status check_names(const mech_safetensors *st, const mech_config *c, mech_err *err) {
    for (size_t i = 0; i < st->n; i++) {
        const char *n = st->tensors[i].name;
        if (!strncmp(n, "transformer.", 12) && mech_safetensors_find(st, n + 12))
            return mech_err_set(err, MECH_ERR_FORMAT, "%s: tensor '%s' is there both with and without the "
                                "'transformer.' prefix; expected one of them", st->path, n + 12);
    }
    if (c->tied_unembed) {
        const mech_st_tensor *lm = find_tensor(st, "lm_head.weight");
        if (lm && (lm->ndim != 2 || lm->shape[0] != c->d_vocab || lm->shape[1] != c->d_model))
            return mech_err_set(err, MECH_ERR_SHAPE, "%s: lm_head.weight: shape does not match wte [%d,%d] of a "
                                "tied unembedding", st->path, c->d_vocab, c->d_model);
    }
    for (size_t i = 0; i < st->n; i++) {
        const char *name = strip_prefix(st->tensors[i].name), *rest;
        int l = layer_of(name, &rest), ndim, known = 0;
        int64_t shape[2];
        if (l >= 0) {
            if (!strcmp(rest, "attn.bias") || !strcmp(rest, "attn.masked_bias")) continue;
            for (int k = 0; k < N_PER_LAYER && !known; k++)
                known = !strcmp(rest, layer_names[k]) && l < c->n_layers && expected_shape(c, l, k, shape, &ndim);
        } else {
            for (int k = 0; k < N_GLOBAL && !known; k++)
                known = !strcmp(name, global_names[k]) &&
                        (expected_shape(c, -1, k, shape, &ndim) || (k == T_LM_W && c->tied_unembed));
        }
        if (!known)
            return mech_err_set(err, MECH_ERR_FORMAT,
                                "%s: unexpected tensor '%s' for a %d-layer%s%s GPT-2 model", st->path,
                                st->tensors[i].name, c->n_layers, c->attn_only ? " attention-only" : "",
                                c->norm == MECH_NORM_NONE ? " LayerNorm-free" : "");
    }
    return MECH_OK;
}

static mech_status bind_weights(mech_model *m, int copy_all, mech_err *err) {
    const mech_config *c = &m->cfg;
    const mech_safetensors *st = m->st;
    size_t owned_floats = 0;
    // Two passes: check and size the owned arena, then bind.
    for (int pass = 0; pass < 2; pass++) {
        size_t at = 0;
        for (int l = -1; l < c->n_layers; l++) {
            int n_which = l < 0 ? N_GLOBAL : N_PER_LAYER;
            for (int k = 0; k < n_which; k++) {
                int64_t shape[2];
                int ndim;
                if (!expected_shape(c, l, k, shape, &ndim)) continue;
                char name[160];
                if (l < 0) snprintf(name, sizeof name, "%s", global_names[k]);
                else snprintf(name, sizeof name, "h.%d.%s", l, layer_names[k]);
                const mech_st_tensor *t = find_tensor(st, name);
                if (!t)
                    return mech_err_set(err, MECH_ERR_FORMAT, "%s: missing tensor '%s'", st->path, name);
                if (!is_float_dtype(t->dtype))
                    return mech_err_set(err, MECH_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected F32, F16 or BF16",
                                        st->path, name, mech_dtype_name(t->dtype));
                int ok = t->ndim == ndim && t->shape[0] == shape[0] && (ndim == 1 || t->shape[1] == shape[1]);
                if (!ok) {
                    char got[128] = "", want[64];
                    size_t g = 0;
                    for (int d = 0; d < t->ndim && g < sizeof got - 24; d++)
                        g += (size_t)snprintf(got + g, sizeof got - g, "%s%lld", d ? "," : "", (long long)t->shape[d]);
                    if (ndim == 1) snprintf(want, sizeof want, "%lld", (long long)shape[0]);
                    else snprintf(want, sizeof want, "%lld,%lld", (long long)shape[0], (long long)shape[1]);
                    return mech_err_set(err, MECH_ERR_SHAPE, "%s: %s: shape [%s], expected [%s]", st->path, name, got, want);
                }
                size_t n = (size_t)shape[0] * (size_t)(ndim == 2 ? shape[1] : 1);
                if (pass == 0) {
                    if (needs_copy(t, copy_all)) owned_floats += n;
                } else if (needs_copy(t, copy_all)) {
                    convert_to_f32(m->owned + at, t, n);
                    set_ptr(m, l, k, m->owned + at);
                    at += n;
                } else {
                    set_ptr(m, l, k, (const float *)t->data);
                }
            }
        }
        if (pass == 0 && owned_floats) {
            m->owned = mech_malloc_aligned(owned_floats * sizeof(float));
            m->owned_floats = owned_floats;
            if (!m->owned) return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory converting weights", st->path);
        }
    }
    if (c->tied_unembed) m->unembed = m->wte;
    return MECH_OK;
}

static char *join_path(const char *dir, const char *file) {
    size_t a = strlen(dir), b = strlen(file);
    char *p = mech_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, file, b + 1);
    return p;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return mech_strdup(".");
    size_t n = (size_t)(slash - path);
    char *d = mech_malloc(n + 2);
    if (!d) return NULL;
    memcpy(d, path, n ? n : 1);
    d[n ? n : 1] = 0;
    return d;
}

mech_status mech_model_load(const char *path, mech_model **out, mech_err *err) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return mech_err_set(err, MECH_ERR_IO, "%s: cannot open model: %s", path, strerror(errno));
    mech_status rc = MECH_OK;
    char *dir = S_ISDIR(sb.st_mode) ? mech_strdup(path) : dir_of(path);
    char *file = S_ISDIR(sb.st_mode) ? join_path(path, "model.safetensors") : mech_strdup(path);
    char *config = dir ? join_path(dir, "config.json") : NULL;
    mech_model *m = mech_calloc(1, sizeof *m);
    if (!dir || !file || !config || !m) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory loading %s", path);
        goto fail;
    }
    if ((rc = mech_safetensors_open(file, &m->st, err))) goto fail;
    m->path = file;
    file = NULL;
    if ((rc = infer_config(m->st, m->path, &m->cfg, err))) goto fail;
    if ((rc = read_config(m->st, m->path, config, &m->cfg, err))) goto fail;
    if ((rc = check_names(m->st, &m->cfg, err))) goto fail;
    m->layers = mech_calloc((size_t)(m->cfg.n_layers ? m->cfg.n_layers : 1), sizeof *m->layers);
    if (!m->layers) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory loading %s", path);
        goto fail;
    }
    // Copy-on-write: tensors used in place stay writable for library users
    // without touching the file. Should the kernel refuse (strict overcommit
    // accounting), every tensor is copied instead: writable either way.
    int copy_all = mprotect(m->st->map, m->st->map_len, PROT_READ | PROT_WRITE) != 0;
    // Huge pages for the weights: a file read from disk through this mapping
    // lands in the page cache as 2 MiB folios, which this and every later
    // process map with one entry each instead of 512; with 4 KiB pages the
    // page tables of a 500 MB model cost ~10 ms to fill and as much to tear
    // down at exit. Only a hint (kernels without THP refuse it: no matter).
    madvise(m->st->map, m->st->map_len, MADV_HUGEPAGE);
    if ((rc = bind_weights(m, copy_all, err))) goto fail;
    // Tokenizer files beside the model are optional; a broken pair is an error.
    mech_status trc = mech_tokenizer_load_dir(dir, &m->tok, err);
    if (trc != MECH_OK && trc != MECH_ERR_IO) {
        rc = trc;
        goto fail;
    }
    mech_free(dir);
    mech_free(config);
    *out = m;
    return MECH_OK;
fail:
    mech_free(dir);
    mech_free(file);
    mech_free(config);
    mech_model_free(m);
    return rc;
}

void mech_model_free(mech_model *m) {
    if (!m) return;
    mech_safetensors_close(m->st);
    mech_free_aligned(m->owned);
    mech_free(m->layers);
    mech_free(m->path);
    mech_tokenizer_free(m->tok);
    mech_free(m);
}

int mech_model_reads_text(const mech_model *m) {
    const char *task = mech_model_meta(m, "mech.train.task");
    return !task || !strncmp(task, "text", 4);
}

const char *mech_model_meta(const mech_model *m, const char *key) {
    return m->st ? mech_safetensors_meta(m->st, key) : NULL;
}

// ---------------------------------------------------------------------------
// Listing, saving, random models

mech_status mech_model_tensors(const mech_model *m, mech_model_tensor **out, size_t *n, mech_err *err) {
    const mech_config *c = &m->cfg;
    size_t cap = N_GLOBAL + (size_t)c->n_layers * N_PER_LAYER, k = 0;
    mech_model_tensor *t = mech_calloc(cap, sizeof *t);
    if (!t) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory listing tensors");
    for (int l = -1; l < c->n_layers; l++) {
        int n_which = l < 0 ? N_GLOBAL : N_PER_LAYER;
        for (int w = 0; w < n_which; w++) {
            if (!expected_shape(c, l, w, t[k].shape, &t[k].ndim)) continue;
            if (l < 0) snprintf(t[k].name, sizeof t[k].name, "%s", global_names[w]);
            else snprintf(t[k].name, sizeof t[k].name, "h.%d.%s", l, layer_names[w]);
            t[k].data = get_ptr(m, l, w);
            k++;
        }
    }
    *out = t;
    *n = k;
    return MECH_OK;
}

mech_status mech_model_save(const mech_model *m, const char *path, mech_dtype dtype,
                            const char *const *meta_keys, const char *const *meta_values,
                            size_t n_meta, mech_err *err) {
    if (dtype != MECH_DT_F32 && dtype != MECH_DT_F16 && dtype != MECH_DT_BF16)
        return mech_err_set(err, MECH_ERR_ARG, "%s: models are saved as F32, F16 or BF16", path);
    mech_model_tensor *t = NULL;
    size_t n = 0;
    mech_status rc = mech_model_tensors(m, &t, &n, err);
    if (rc) return rc;
    mech_st_write *w = mech_calloc(n, sizeof *w);
    uint16_t **half = mech_calloc(n, sizeof *half);
    const char **keys = mech_calloc(n_meta + 1, sizeof *keys), **vals = mech_calloc(n_meta + 1, sizeof *vals);
    mech_buf cfg = {0};
    mech_config_to_json(&m->cfg, &cfg);
    if (!w || !half || !keys || !vals || cfg.oom) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory saving model", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        size_t count = (size_t)t[i].shape[0] * (size_t)(t[i].ndim == 2 ? t[i].shape[1] : 1);
        w[i].name = t[i].name;
        w[i].dtype = dtype;
        w[i].ndim = t[i].ndim;
        memcpy(w[i].shape, t[i].shape, sizeof t[i].shape);
        w[i].data = t[i].data;
        if (dtype != MECH_DT_F32) {
            half[i] = mech_malloc(count * 2);
            if (!half[i]) {
                rc = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory saving model", path);
                goto done;
            }
            for (size_t j = 0; j < count; j++)
                half[i][j] = dtype == MECH_DT_F16 ? mech_f32_to_f16(t[i].data[j]) : mech_f32_to_bf16(t[i].data[j]);
            w[i].data = half[i];
        }
    }
    keys[0] = "mech.config";
    vals[0] = cfg.data;
    for (size_t i = 0; i < n_meta; i++) keys[i + 1] = meta_keys[i], vals[i + 1] = meta_values[i];
    rc = mech_safetensors_write(path, w, n, keys, vals, n_meta + 1, err);
done:
    if (half)
        for (size_t i = 0; i < n; i++) mech_free(half[i]);
    mech_free(half);
    mech_free(w);
    mech_free(t);
    mech_free(keys);
    mech_free(vals);
    mech_buf_free(&cfg);
    return rc;
}

static double uniform01(uint64_t *s) { return ((mech_splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

// A model whose every tensor lives in one owned arena; init 0: LayerNorm
// weights 1, everything else 0; init 1: GPT-2's normal(0, 0.02) for
// matrices, 0 for biases.
static mech_status model_owned(const mech_config *cfg, int init, uint64_t seed, mech_model **out, mech_err *err) {
    *out = NULL;
    mech_status rc = mech_config_validate(cfg, err);
    if (rc) return rc;
    mech_model *m = mech_calloc(1, sizeof *m);
    if (!m) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    m->cfg = *cfg;
    m->layers = mech_calloc((size_t)(cfg->n_layers ? cfg->n_layers : 1), sizeof *m->layers);
    size_t total = 0;
    for (int l = -1; l < cfg->n_layers; l++)
        for (int k = 0; k < (l < 0 ? N_GLOBAL : N_PER_LAYER); k++) {
            int64_t shape[2];
            int ndim;
            if (expected_shape(cfg, l, k, shape, &ndim))
                total += ((size_t)shape[0] * (size_t)(ndim == 2 ? shape[1] : 1) + 15) & ~(size_t)15;
        }
    m->owned = mech_malloc_aligned(total * sizeof(float));
    m->owned_floats = total;
    if (!m->layers || !m->owned) {
        mech_model_free(m);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for a model of %zu floats", total);
    }
    uint64_t s = seed;
    size_t at = 0;
    for (int l = -1; l < cfg->n_layers; l++)
        for (int k = 0; k < (l < 0 ? N_GLOBAL : N_PER_LAYER); k++) {
            int64_t shape[2];
            int ndim;
            if (!expected_shape(cfg, l, k, shape, &ndim)) continue;
            size_t n = (size_t)shape[0] * (size_t)(ndim == 2 ? shape[1] : 1);
            float *p = m->owned + at;
            int is_ln_w = (l < 0 && k == T_LNF_W) || (l >= 0 && (k == L_LN1_W || k == L_LN2_W));
            for (size_t i = 0; i < n; i++) {
                if (is_ln_w) p[i] = 1.0f;
                else if (ndim == 1 || !init) p[i] = 0.0f;
                else {
                    double u1 = uniform01(&s), u2 = uniform01(&s);
                    p[i] = (float)(0.02 * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
                }
            }
            set_ptr(m, l, k, p);
            at += (n + 15) & ~(size_t)15;
        }
    if (cfg->tied_unembed) m->unembed = m->wte;
    *out = m;
    return MECH_OK;
}

mech_status mech_model_random(const mech_config *cfg, uint64_t seed, mech_model **out, mech_err *err) {
    return model_owned(cfg, 1, seed, out, err);
}

mech_status mech_model_zeros(const mech_config *cfg, mech_model **out, mech_err *err) {
    return model_owned(cfg, 0, 0, out, err);
}

float *mech_model_param(mech_model *m, const char *name) {
    const char *rest;
    int l = layer_of(strip_prefix(name), &rest);
    const float *p = NULL;
    if (l >= 0 && l < m->cfg.n_layers) {
        for (int k = 0; k < N_PER_LAYER && !p; k++)
            if (!strcmp(rest, layer_names[k])) p = get_ptr(m, l, k);
    } else if (l < 0) {
        for (int k = 0; k < N_GLOBAL && !p; k++)
            if (!strcmp(strip_prefix(name), global_names[k])) p = get_ptr(m, -1, k);
    }
    // Every bound tensor is writable: owned, or in the copy-on-write mapping.
    return (float *)(uintptr_t)p;
}
