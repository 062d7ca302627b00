/*
** interp/capi.c: the long interpretability calls bracketed for language
** bindings (core/capi.c explains why): patching, with the process-wide
** cancellation flag as the sweep's cancel pointer.
*/
#include "interp/interp.h"

#include <string.h>

// The options one by one and the results through out-parameters: a binding
// that mirrors neither struct keeps working when they grow.
mech_status mech_capi_patch_new(const mech_model *m, const int32_t *clean, int n_clean, const int32_t *corrupt,
                                int n_corrupt, int metric, int32_t answer, int32_t wrong, int pos, int naive,
                                int batch, mech_patch **out, int catch_sigint, int *flag, mech_err *err) {
    mech_patch_opts o = {.metric = (mech_patch_metric)metric, .answer = answer, .wrong = wrong, .pos = pos,
                         .naive = naive, .batch = batch, .cancel = mech_cancel_flag()};
    mech_capi_call_begin(catch_sigint);
    mech_status rc = mech_patch_new(m, clean, n_clean, corrupt, n_corrupt, &o, out, err);
    *flag = mech_capi_call_end(catch_sigint);
    return rc;
}

// Moves r into the out-parameters (raw and norm change owner).
static void patch_result_out(mech_patch_result *r, int *ndim, int64_t shape[3], float **raw, float **norm,
                             double *clean, double *corrupted, int64_t *done) {
    *ndim = r->ndim;
    for (int i = 0; i < 3; i++) shape[i] = r->shape[i];
    *raw = r->raw;
    *norm = r->norm;
    *clean = r->clean;
    *corrupted = r->corrupted;
    *done = r->done;
    r->raw = r->norm = NULL;
}

mech_status mech_capi_patch_sweep(mech_patch *p, int site, int *ndim, int64_t shape[3], float **raw, float **norm,
                                  double *clean, double *corrupted, int64_t *done, int catch_sigint, int *flag,
                                  mech_err *err) {
    mech_patch_result r = {0};
    mech_capi_call_begin(catch_sigint);
    mech_status rc = mech_patch_sweep(p, (mech_patch_site)site, &r, err);
    *flag = mech_capi_call_end(catch_sigint);
    patch_result_out(&r, ndim, shape, raw, norm, clean, corrupted, done);
    mech_patch_result_deinit(&r);
    return rc;
}

mech_status mech_capi_patch_path(mech_patch *p, const int32_t *layer, const int32_t *head, const int32_t *input,
                                 int n_recv, int *ndim, int64_t shape[3], float **raw, float **norm, double *clean,
                                 double *corrupted, int64_t *done, int catch_sigint, int *flag, mech_err *err) {
    mech_patch_result r = {0};
    mech_patch_receiver *recv = mech_calloc((size_t)(n_recv > 0 ? n_recv : 1), sizeof *recv);
    *flag = 0;
    if (!recv) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for %d receivers", n_recv);
    for (int i = 0; i < n_recv; i++)
        recv[i] = (mech_patch_receiver){.layer = layer[i], .head = head[i], .input = (mech_patch_input)input[i]};
    mech_capi_call_begin(catch_sigint);
    mech_status rc = mech_patch_path(p, recv, n_recv, &r, err);
    *flag = mech_capi_call_end(catch_sigint);
    mech_free(recv);
    patch_result_out(&r, ndim, shape, raw, norm, clean, corrupted, done);
    mech_patch_result_deinit(&r);
    return rc;
}

size_t mech_capi_interp_sizeof(const char *type) {
    if (!strcmp(type, "mech_lens_row")) return sizeof(mech_lens_row);
    if (!strcmp(type, "mech_dla")) return sizeof(mech_dla);
    return 0;
}

mech_status mech_capi_acdc(const mech_model *m, const int32_t *clean, const int32_t *corrupt, int B, int T,
                           const mech_capi_acdc_args *a, mech_acdc_graph **g_out, double *metric_final,
                           int64_t *n_trials, int catch_sigint, int *flag, mech_err *err) {
    *g_out = NULL;
    *flag = 0;
    mech_acdc_graph *g = NULL;
    mech_status rc = mech_acdc_graph_new(&m->cfg, a->split_embed, &g, err);
    if (rc) return rc;
    // Only the options a binding sets: the opts struct may grow, callers of
    // this function need not follow it.
    mech_acdc_opts o = {.metric = (mech_acdc_metric)a->metric, .ablation = (mech_acdc_ablation)a->ablation,
                        .tau = a->tau, .abs_value = a->abs_value, .heads_ascending = a->heads_ascending,
                        .answer = a->answer, .wrong = a->wrong, .mask = a->mask, .n_out = a->n_out,
                        .pos_perm = a->pos_perm, .threads = a->threads,
                        .cancel = (volatile int *)mech_cancel_flag()};
    mech_acdc_result res = {0};
    mech_capi_call_begin(catch_sigint);
    rc = mech_acdc_run(m, clean, a->ablation == MECH_ACDC_ZERO ? NULL : corrupt, B, T, &o, g, &res, err);
    *flag = mech_capi_call_end(catch_sigint);
    if (rc) {
        mech_acdc_graph_free(g);
        return rc;
    }
    *metric_final = res.metric_final;
    *n_trials = res.n_trials;
    *g_out = g;
    return MECH_OK;
}

int mech_capi_acdc_n_nodes(const mech_acdc_graph *g) { return g->n_nodes; }

int mech_capi_acdc_n_edges(const mech_acdc_graph *g) { return g->n_edges; }

const char *mech_capi_acdc_node_name(const mech_acdc_graph *g, int i) {
    return i >= 0 && i < g->n_nodes ? g->nodes[i].name : NULL;
}

void mech_capi_acdc_edges(const mech_acdc_graph *g, int32_t *sender, int32_t *receiver, int32_t *type,
                          uint8_t *present, double *effect) {
    for (int e = 0; e < g->n_edges; e++) {
        const mech_acdc_edge *x = &g->edges[e];
        sender[e] = x->sender;
        receiver[e] = x->receiver;
        type[e] = (int32_t)x->type;
        present[e] = (uint8_t)x->present;
        effect[e] = x->effect;
    }
}

mech_status mech_capi_eap(const mech_model *m, const int32_t *clean, const int32_t *corrupt, int B, int T,
                          int metric, int pos, const int32_t *answer, const int32_t *wrong, int split_embed,
                          int threads, mech_acdc_graph **g_out, double **scores_out, double *value, int catch_sigint,
                          int *flag, mech_err *err) {
    *g_out = NULL;
    *scores_out = NULL;
    *flag = 0;
    mech_acdc_graph *g = NULL;
    mech_status rc = mech_acdc_graph_new(&m->cfg, split_embed, &g, err);
    if (rc) return rc;
    double *scores = mech_calloc((size_t)g->n_edges, sizeof *scores);
    if (!scores) {
        mech_acdc_graph_free(g);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for %d edge scores", g->n_edges);
    }
    mech_metric mt = {.kind = (mech_metric_kind)metric, .pos = pos, .answer = answer,
                      .wrong = metric == MECH_METRIC_LOGIT_DIFF ? wrong : NULL};
    mech_capi_call_begin(catch_sigint);
    rc = mech_eap_scores(m, g, clean, corrupt, B, T, &mt, threads, scores, value, err);
    *flag = mech_capi_call_end(catch_sigint);
    if (rc) {
        mech_free(scores);
        mech_acdc_graph_free(g);
        return rc;
    }
    *g_out = g;
    *scores_out = scores;
    return MECH_OK;
}
