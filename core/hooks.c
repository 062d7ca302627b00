/*
** core/hooks.c: hook point names and shapes in TransformerLens's convention,
** glob matching, and the list of names a model offers.
*/
#include "core/forward_int.h"

#include <stdio.h>
#include <string.h>

static const char *const suffix[HK_COUNT] = {
    [HK_EMBED] = "hook_embed",
    [HK_POS_EMBED] = "hook_pos_embed",
    [HK_RESID_PRE] = "hook_resid_pre",
    [HK_Q_INPUT] = "hook_q_input",
    [HK_K_INPUT] = "hook_k_input",
    [HK_V_INPUT] = "hook_v_input",
    [HK_LN1_SCALE] = "ln1.hook_scale",
    [HK_LN1_NORM] = "ln1.hook_normalized",
    [HK_Q] = "attn.hook_q",
    [HK_K] = "attn.hook_k",
    [HK_V] = "attn.hook_v",
    [HK_SCORES] = "attn.hook_attn_scores",
    [HK_PATTERN] = "attn.hook_pattern",
    [HK_Z] = "attn.hook_z",
    [HK_RESULT] = "attn.hook_result",
    [HK_ATTN_OUT] = "hook_attn_out",
    [HK_RESID_MID] = "hook_resid_mid",
    [HK_MLP_IN] = "hook_mlp_in",
    [HK_LN2_SCALE] = "ln2.hook_scale",
    [HK_LN2_NORM] = "ln2.hook_normalized",
    [HK_MLP_PRE] = "mlp.hook_pre",
    [HK_MLP_POST] = "mlp.hook_post",
    [HK_MLP_OUT] = "hook_mlp_out",
    [HK_RESID_POST] = "hook_resid_post",
    [HK_LNF_SCALE] = "ln_final.hook_scale",
    [HK_LNF_NORM] = "ln_final.hook_normalized",
};

const char *hook_kind_suffix(int kind) { return suffix[kind]; }

int hook_point_count(const mech_config *cfg) { return 4 + cfg->n_layers * HK_PER_BLOCK; }

int hook_point_index(const mech_config *cfg, int layer, int kind) {
    if (kind < HK_RESID_PRE) return kind;
    if (kind > HK_RESID_POST) return 2 + cfg->n_layers * HK_PER_BLOCK + (kind - HK_LNF_SCALE);
    return 2 + layer * HK_PER_BLOCK + (kind - HK_RESID_PRE);
}

static int kind_is_opt_in(int k) {
    return k == HK_Q_INPUT || k == HK_K_INPUT || k == HK_V_INPUT || k == HK_RESULT || k == HK_MLP_IN;
}

static int kind_exists(const mech_config *c, int k) {
    int ln = c->norm == MECH_NORM_LAYERNORM, mlp = !c->attn_only;
    switch (k) {
    case HK_LN1_SCALE: case HK_LN1_NORM: case HK_LNF_SCALE: case HK_LNF_NORM: return ln;
    case HK_LN2_SCALE: case HK_LN2_NORM: return ln && mlp;
    case HK_RESID_MID: case HK_MLP_IN: case HK_MLP_PRE: case HK_MLP_POST: case HK_MLP_OUT: return mlp;
    default: return 1;
    }
}

static void set_shape(mech_tensor *t, int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t s[4] = {a, b, c, d};
    t->ndim = ndim;
    for (int i = 0; i < 4; i++) t->shape[i] = i < ndim ? s[i] : 0;
}

void hook_points_init(const mech_config *c, int B, int T, hook_point *pts) {
    int n = hook_point_count(c);
    int64_t C = c->d_model, NH = c->n_heads, HS = c->d_head, M = c->d_mlp;
    for (int i = 0; i < n; i++) {
        hook_point *p = &pts[i];
        int layer, kind;
        if (i < 2) layer = -1, kind = i;
        else if (i >= n - 2) layer = -1, kind = HK_LNF_SCALE + (i - (n - 2));
        else layer = (i - 2) / HK_PER_BLOCK, kind = HK_RESID_PRE + (i - 2) % HK_PER_BLOCK;
        memset(p, 0, sizeof *p);
        p->layer = layer;
        p->kind = kind;
        p->exists = kind_exists(c, kind);
        p->opt_in = kind_is_opt_in(kind);
        if (layer < 0) snprintf(p->name, sizeof p->name, "%s", suffix[kind]);
        else snprintf(p->name, sizeof p->name, "blocks.%d.%s", layer, suffix[kind]);
        p->view.name = p->name;
        mech_tensor *t = &p->view;
        switch (kind) {
        case HK_LN1_SCALE: case HK_LN2_SCALE: case HK_LNF_SCALE: set_shape(t, 3, B, T, 1, 0); break;
        case HK_Q_INPUT: case HK_K_INPUT: case HK_V_INPUT: case HK_RESULT: set_shape(t, 4, B, T, NH, C); break;
        case HK_Q: case HK_K: case HK_V: case HK_Z: set_shape(t, 4, B, T, NH, HS); break;
        case HK_SCORES: case HK_PATTERN: set_shape(t, 4, B, NH, T, T); break;
        case HK_MLP_PRE: case HK_MLP_POST: set_shape(t, 3, B, T, M, 0); break;
        default: set_shape(t, 3, B, T, C, 0); break;
        }
    }
}

size_t mech_tensor_numel(const mech_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

int mech_glob_match(const char *p, const char *s) {
    // Iterative wildcard match with single-star backtracking: linear enough
    // for hook names and never recursive.
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p == '?' || *p == *s) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*p == '*') p++;
    return *p == 0;
}

int mech_hook_names(const mech_config *cfg, int opt_in, char ***names) {
    int n = hook_point_count(cfg), count = 0;
    hook_point *pts = mech_calloc((size_t)n, sizeof *pts);
    if (!pts) return -1;
    hook_points_init(cfg, 1, 1, pts);
    char **out = names ? mech_calloc((size_t)n, sizeof *out) : NULL;
    if (names && !out) {
        mech_free(pts);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (!pts[i].exists || (pts[i].opt_in && !opt_in)) continue;
        if (out && !(out[count] = mech_strdup(pts[i].name))) {
            mech_hook_names_free(out, count);
            mech_free(pts);
            return -1;
        }
        count++;
    }
    mech_free(pts);
    if (names) *names = out;
    return count;
}

int mech_hook_shape(const mech_config *cfg, const char *name, int B, int T, int64_t shape[MECH_MAX_DIMS]) {
    int n = hook_point_count(cfg), ndim = -1;
    hook_point *pts = mech_calloc((size_t)n, sizeof *pts);
    if (!pts) return -1;
    hook_points_init(cfg, B, T, pts);
    for (int i = 0; i < n && ndim < 0; i++)
        if (pts[i].exists && !strcmp(pts[i].name, name)) {
            ndim = pts[i].view.ndim;
            for (int d = 0; d < ndim; d++) shape[d] = pts[i].view.shape[d];
        }
    mech_free(pts);
    return ndim;
}

void mech_hook_names_free(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) mech_free(names[i]);
    mech_free(names);
}
