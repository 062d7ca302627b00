/*
** interp/faithfulness.c: faithfulness curves of circuits chosen by scores,
** as the MIB benchmark's circuit track measures them (Mueller et al. 2025;
** docs/eap.md). For circuits of increasing size (the top n counted edges by
** |score|) the clean run is evaluated with every edge outside the circuit
** ablated exactly as ACDC ablates a removed edge (its receiver reads the
** sender's corrupted output; a DIRECT edge's head its corrupted q/k/v),
** through ACDC's own context and fast evaluator (interp/acdc_int.h), and
**   f(n) = (m(circuit) - m(empty)) / (m(full) - m(empty)).
** CPR is the area under f over the fraction of edges, CMD the area between
** f and 1 (|1 - f|), both by the trapezoidal rule over the sizes measured,
** as MIB's evaluate_area_under_curve.
*/
#include "interp/acdc_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct faith_rank {
    double a;
    int e;
} faith_rank;

static int by_abs_desc(const void *pa, const void *pb) {
    const faith_rank *a = pa, *b = pb;
    if (a->a != b->a) return a->a > b->a ? -1 : 1;
    return a->e - b->e;
}

static int by_frac(const void *pa, const void *pb) {
    const mech_faith_point *a = pa, *b = pb;
    return (a->frac > b->frac) - (a->frac < b->frac);
}

void mech_faith_areas(const mech_faith_point *p, int n, double *cpr, double *cmd) {
    double under = 0, from1 = 0;
    for (int i = 0; i + 1 < n; i++) {
        double dx = p[i + 1].frac - p[i].frac;
        under += dx * (p[i].f + p[i + 1].f) / 2;
        from1 += dx * (fabs(1 - p[i].f) + fabs(1 - p[i + 1].f)) / 2;
    }
    if (cpr) *cpr = under;
    if (cmd) *cmd = from1;
}

void mech_faith_finish(mech_faith_point *p, int n, double m_full, double m_empty, mech_faith_result *res) {
    double span = m_full - m_empty;
    for (int i = 0; i < n; i++) p[i].f = span != 0 ? (p[i].metric - m_empty) / span + 0.0 : NAN; // + 0.0: no -0
    res->m_full = m_full, res->m_empty = m_empty;
    mech_faith_areas(p, n, &res->cpr, &res->cmd);
}

mech_status mech_eap_faithfulness(const mech_model *m, const mech_acdc_graph *g, const double *scores,
                                  const int32_t *clean, const int32_t *corrupt, int B, int T,
                                  const mech_acdc_opts *o, const double *fracs, int n_fracs, mech_faith_point *out,
                                  mech_faith_result *res, mech_err *err) {
    if (!m || !g || !scores || !clean || !o || !fracs || n_fracs < 1 || !out || !res || B < 1 || T < 1)
        return mech_err_set(err, MECH_ERR_ARG, "faithfulness: model, graph, scores, inputs, options and sizes are required");
    if (o->ablation == MECH_ACDC_RESAMPLE && !corrupt)
        return mech_err_set(err, MECH_ERR_ARG, "faithfulness: resample ablation needs corrupted inputs");
    const mech_config *c = &m->cfg;
    if (g->n_layers != c->n_layers || g->n_heads != c->n_heads || g->attn_only != !!c->attn_only)
        return mech_err_set(err, MECH_ERR_ARG, "faithfulness: the graph was built for another model shape");
    if (T > c->n_ctx) return mech_err_set(err, MECH_ERR_RANGE, "faithfulness: %d tokens exceed the context of %d", T, c->n_ctx);
    for (int i = 0; i < n_fracs; i++)
        if (!(fracs[i] >= 0 && fracs[i] <= 1))
            return mech_err_set(err, MECH_ERR_ARG, "faithfulness: size %g is not a fraction of the edges in [0, 1]", fracs[i]);
    for (int i = 0; i < B * T; i++)
        if (clean[i] < 0 || clean[i] >= c->d_vocab || (corrupt && (corrupt[i] < 0 || corrupt[i] >= c->d_vocab)))
            return mech_err_set(err, MECH_ERR_RANGE, "faithfulness: token id at sequence %d, position %d is outside the "
                                "vocabulary of %d", i / T + 1, i % T + 1, c->d_vocab);
    // A graph of our own: the circuits are its present flags.
    mech_acdc_graph *own = NULL;
    mech_status rc = mech_acdc_graph_new(c, g->split_embed, &own, err);
    if (rc) return rc;
    acdc_ctx x;
    acdc_eval *ev = NULL;
    faith_rank *rank = mech_malloc((size_t)(own->n_edges ? own->n_edges : 1) * sizeof *rank);
    if (!rank) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        memset(&x, 0, sizeof x);
        goto done;
    }
    if ((rc = acdc_ctx_open(&x, m, own, o, clean, corrupt, B, T, err)) || (rc = acdc_eval_fast_new(&x, &ev, err)))
        goto done;
    int n = 0;
    for (int e = 0; e < own->n_edges; e++)
        if (own->edges[e].type != MECH_ACDC_PLACEHOLDER) rank[n++] = (faith_rank){fabs(scores[e]), e};
    qsort(rank, (size_t)n, sizeof *rank, by_abs_desc);
    // The metric with the top k counted edges present (placeholders always are).
    double m_full = 0, m_empty = 0;
    for (int pass = -2; pass < n_fracs; pass++) {
        int k = pass == -2 ? n : pass == -1 ? 0 : (int)(fracs[pass] * n); // MIB: int(pct * n_edges)
        for (int i = 0; i < n; i++) own->edges[rank[i].e].present = i < k;
        ev->dropped(ev, -1); // the flags changed: the evaluator rebuilds from them
        double v;
        if ((rc = ev->metric(ev, &v, err))) goto done;
        if (pass == -2) m_full = v;
        else if (pass == -1) m_empty = v;
        else out[pass] = (mech_faith_point){.frac = n ? (double)k / n : 0, .n_edges = k, .metric = v};
    }
    qsort(out, (size_t)n_fracs, sizeof *out, by_frac);
    mech_faith_finish(out, n_fracs, m_full, m_empty, res);
done:
    if (ev) ev->free(ev);
    acdc_ctx_close(&x);
    mech_free(rank);
    mech_acdc_graph_free(own);
    return rc;
}
