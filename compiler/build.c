/*
** compiler/build.c: assembling residual-coordinate blocks into a mech_model.
** Heads of a layer become the layer's attention heads (each padded to the
** widest head), MLPs of a layer share one hidden layer side by side. Empty
** layers stay zero, which the residual stream passes through unchanged.
*/
#include "compiler/build.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

float *build_zeros(size_t n) { return mech_calloc(n ? n : 1, sizeof(float)); }

void build_config(const build_model *b, mech_config *c) {
    int heads = 1, d_head = 1, hidden = 1;
    for (int l = 0; l < b->n_layers; l++) {
        int nh = 0, nm = 0;
        for (int i = 0; i < b->n_heads; i++)
            if (b->heads[i].layer == l) nh++;
        for (int i = 0; i < b->n_mlps; i++)
            if (b->mlps[i].layer == l) nm += b->mlps[i].hidden;
        if (nh > heads) heads = nh;
        if (nm > hidden) hidden = nm;
    }
    for (int i = 0; i < b->n_heads; i++) {
        if (b->heads[i].d_qk > d_head) d_head = b->heads[i].d_qk;
        if (b->heads[i].d_v > d_head) d_head = b->heads[i].d_v;
    }
    memset(c, 0, sizeof *c);
    c->n_layers = b->n_layers;
    c->n_heads = heads;
    c->d_model = b->C;
    c->d_head = d_head;
    c->d_mlp = hidden;
    c->n_ctx = b->n_ctx;
    c->d_vocab = b->d_vocab;
    c->act = MECH_ACT_RELU;
    c->norm = MECH_NORM_NONE;
    c->attn_only = 0;
    c->causal = b->causal;
    c->ln_eps = 1e-5f;
    c->tied_unembed = 0;
    c->unembed_bias = 0;
}

static float *param(mech_model *m, const char *fmt, int layer) {
    char name[96];
    snprintf(name, sizeof name, fmt, layer);
    return mech_model_param(m, name);
}

mech_status build_assemble(const build_model *b, mech_model **out, mech_err *err) {
    mech_config c;
    build_config(b, &c);
    for (int i = 0; i < b->n_heads; i++)
        if (b->heads[i].layer < 0 || b->heads[i].layer >= b->n_layers)
            return mech_err_set(err, MECH_ERR_RANGE, "head %d placed in layer %d of %d", i, b->heads[i].layer, b->n_layers);
    for (int i = 0; i < b->n_mlps; i++)
        if (b->mlps[i].layer < 0 || b->mlps[i].layer >= b->n_layers)
            return mech_err_set(err, MECH_ERR_RANGE, "MLP %d placed in layer %d of %d", i, b->mlps[i].layer, b->n_layers);
    mech_model *m;
    mech_status rc = mech_model_zeros(&c, &m, err);
    if (rc) return rc;
    size_t C = (size_t)c.d_model, V = (size_t)c.d_vocab, HS = (size_t)c.d_head, A = (size_t)c.n_heads * HS;
    memcpy(mech_model_param(m, "wte.weight"), b->embed, V * C * sizeof(float));
    memcpy(mech_model_param(m, "wpe.weight"), b->pos, (size_t)c.n_ctx * C * sizeof(float));
    memcpy(mech_model_param(m, "lm_head.weight"), b->unembed, V * C * sizeof(float));
    // The forward pass divides q.k by sqrt(d_head); the query carries it back.
    float root = (float)sqrt((double)HS);
    for (int l = 0; l < b->n_layers; l++) {
        float *qkv = param(m, "h.%d.attn.c_attn.weight", l), *o = param(m, "h.%d.attn.c_proj.weight", l);
        int slot = 0;
        for (int i = 0; i < b->n_heads; i++) {
            const build_head *h = &b->heads[i];
            if (h->layer != l) continue;
            size_t q0 = (size_t)slot * HS, k0 = A + q0, v0 = 2 * A + q0;
            for (size_t r = 0; r < C; r++) {
                for (int d = 0; d < h->d_qk; d++) {
                    qkv[r * 3 * A + q0 + (size_t)d] = h->wq[r * (size_t)h->d_qk + (size_t)d] * h->scale * root;
                    qkv[r * 3 * A + k0 + (size_t)d] = h->wk[r * (size_t)h->d_qk + (size_t)d];
                }
                for (int d = 0; d < h->d_v; d++) qkv[r * 3 * A + v0 + (size_t)d] = h->wv[r * (size_t)h->d_v + (size_t)d];
            }
            for (int d = 0; d < h->d_v; d++)
                memcpy(o + (q0 + (size_t)d) * C, h->wo + (size_t)d * C, C * sizeof(float));
            slot++;
        }
        float *fc = param(m, "h.%d.mlp.c_fc.weight", l), *fcb = param(m, "h.%d.mlp.c_fc.bias", l);
        float *pr = param(m, "h.%d.mlp.c_proj.weight", l), *prb = param(m, "h.%d.mlp.c_proj.bias", l);
        size_t H = (size_t)c.d_mlp, at = 0;
        for (int i = 0; i < b->n_mlps; i++) {
            const build_mlp *p = &b->mlps[i];
            if (p->layer != l) continue;
            for (size_t r = 0; r < C; r++)
                memcpy(fc + r * H + at, p->w_in + r * (size_t)p->hidden, (size_t)p->hidden * sizeof(float));
            memcpy(fcb + at, p->b_in, (size_t)p->hidden * sizeof(float));
            memcpy(pr + at * C, p->w_out, (size_t)p->hidden * C * sizeof(float));
            if (p->b_out)
                for (size_t k = 0; k < C; k++) prb[k] += p->b_out[k];
            at += (size_t)p->hidden;
        }
    }
    *out = m;
    return MECH_OK;
}

void build_model_clear(build_model *b) {
    for (int i = 0; i < b->n_heads; i++) {
        mech_free(b->heads[i].wq);
        mech_free(b->heads[i].wk);
        mech_free(b->heads[i].wv);
        mech_free(b->heads[i].wo);
    }
    for (int i = 0; i < b->n_mlps; i++) {
        mech_free(b->mlps[i].w_in);
        mech_free(b->mlps[i].b_in);
        mech_free(b->mlps[i].w_out);
        mech_free(b->mlps[i].b_out);
    }
    mech_free(b->heads);
    mech_free(b->mlps);
    mech_free(b->embed);
    mech_free(b->pos);
    mech_free(b->unembed);
    memset(b, 0, sizeof *b);
}
