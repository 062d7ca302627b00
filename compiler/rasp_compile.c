/*
** compiler/rasp_compile.c: RASP IR -> transformer weights.
**
** plan: the value set of every s-op (what it can hold on any input up to
** max_seq_len), its stage (attention sublayer 2l or MLP sublayer 2l+1 of
** layer l, as early as its inputs allow) and its residual dimensions
** (one per value for categorical s-ops, one for numerical ones). emit: one
** block per node (compiler/blocks.c) assembled into a GPT-2-shaped model
** (compiler/build.c). decode: reads the output s-op's dimensions back
** through the unembedding. The plan is a pure function of the program, so
** a compiled model's metadata need only carry the source to be decoded.
**
** Token ids: 0 is BOS, 1..|vocab| the vocabulary in its written order,
** |vocab|+1 is PAD (all-zero embedding: never selected, never counted).
*/
#include "compiler/rasp_int.h"
#include "compiler/build.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHARPNESS 100.0f // attention logit of a selected key

typedef struct vset {
    int n;
    mech_rasp_value *v; // sorted by mech_rasp_value_order, distinct, none excluded
    int has_none;
} vset;

typedef struct pnode {
    vset vs;
    int stage;       // -1: embedding; 2l: attention of layer l; 2l+1: MLP of layer l
    int att_stage;   // selector width: its attention sublayer
    int dim;         // first residual dimension
    int aux;         // selector width: the 1/(w+1) dimension
    int bos_val;     // categorical: index of the value at BOS, -1 for zero
    double bos_num;  // numerical: value at BOS
    int is_sel;
    int pair_a, pair_b; // a composite (index >= the program's nodes): the pair of s-ops it encodes
    char *vlabel;       // a composite's label
} pnode;

struct rasp_plan {
    const mech_rasp_program *p;
    mech_rasp_heap *heap;
    int n;           // the program's nodes
    int n_all;       // plus composites: s-ops encoding pairs, for selectors combined
                     // over different keys or queries
    pnode *nodes;    // [n_all]
    int C, n_layers, N;
    char **labels;   // [C]
};
typedef struct rasp_plan rasp_plan;

// ---------------------------------------------------------------------------
// Value sets

static int cmp_value(const void *a, const void *b) { return mech_rasp_value_order(a, b); }

static int vset_add(vset *s, int *cap, const mech_rasp_value *v) {
    if (v->type == MECH_RASP_NONE) {
        s->has_none = 1;
        return 0;
    }
    for (int i = 0; i < s->n; i++)
        if (mech_rasp_value_eq(&s->v[i], v)) return 0;
    if (s->n == *cap) {
        int nc = *cap ? *cap * 2 : 8;
        mech_rasp_value *g = mech_realloc(s->v, (size_t)nc * sizeof *g);
        if (!g) return -1;
        s->v = g;
        *cap = nc;
    }
    s->v[s->n++] = *v;
    return 0;
}

static void vset_sort(vset *s) { qsort(s->v, (size_t)s->n, sizeof *s->v, cmp_value); }

static int vset_find(const vset *s, const mech_rasp_value *v) {
    for (int i = 0; i < s->n; i++)
        if (mech_rasp_value_eq(&s->v[i], v)) return i;
    return -1;
}

static int is_number(const mech_rasp_value *v) {
    return v->type == MECH_RASP_INT || v->type == MECH_RASP_FLOAT || v->type == MECH_RASP_BOOL;
}

static double num(const mech_rasp_value *v) {
    return v->type == MECH_RASP_FLOAT ? v->f : v->type == MECH_RASP_INT ? (double)v->i : (double)v->b;
}

static mech_status node_error(const rasp_plan *pl, const mech_rasp_node *n, mech_err *err, const char *fmt, ...)
    MECH_PRINTF(4, 5);
static mech_status node_error(const rasp_plan *pl, const mech_rasp_node *n, mech_err *err, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *who = n->name ? n->name : n->context ? n->context : n->label;
    return mech_rasp_error_at(pl->p, n->pos, err, MECH_ERR_TYPE, "'%s': %s", who, msg);
}

static void repr(char *buf, size_t cap, const mech_rasp_value *v) {
    mech_buf b = {0};
    mech_rasp_value_repr(&b, v);
    snprintf(buf, cap, "%s", b.data ? b.data : "?");
    mech_buf_free(&b);
}

// Applies node n's lambda to args; on failure names the variable and args.
static mech_status apply(rasp_plan *pl, const mech_rasp_node *n, const mech_rasp_lambda *fn, const mech_rasp_value *args,
                         int n_args, mech_rasp_value *out, mech_err *err) {
    mech_err e = {0};
    if (mech_rasp_lambda_eval(fn, args, pl->heap, out, NULL, &e) == MECH_OK) return MECH_OK;
    char a[200] = "";
    size_t at = 0;
    for (int i = 0; i < n_args && at < sizeof a - 40; i++) {
        char one[80];
        repr(one, sizeof one, &args[i]);
        at += (size_t)snprintf(a + at, sizeof a - at, "%s%s", i ? ", " : "", one);
    }
    return node_error(pl, n, err, "the lambda fails on (%s): %s; every value the inputs can hold must work", a, e.msg);
}

static mech_status infer(rasp_plan *pl, int id, mech_err *err) {
    const mech_rasp_node *n = mech_rasp_program_node(pl->p, id);
    pnode *pn = &pl->nodes[id];
    vset *s = &pn->vs;
    int cap = 0, N = pl->N;
    mech_status rc = MECH_OK;
    pn->is_sel = mech_rasp_node_is_selector(n);
    if (pn->is_sel) return MECH_OK;
    switch (n->kind) {
    case MECH_RASP_TOKENS: {
        size_t nv;
        const mech_rasp_value *v = mech_rasp_program_vocab(pl->p, &nv);
        for (size_t i = 0; i < nv; i++)
            if (vset_add(s, &cap, &v[i])) goto nomem;
        break;
    }
    case MECH_RASP_INDICES:
    case MECH_RASP_LENGTH:
    case MECH_RASP_SELECTOR_WIDTH:
        for (int i = n->kind == MECH_RASP_LENGTH; i <= (n->kind == MECH_RASP_INDICES ? N - 1 : N); i++) {
            mech_rasp_value v = mech_rasp_int(i);
            if (vset_add(s, &cap, &v)) goto nomem;
        }
        break;
    case MECH_RASP_CONST:
        if (vset_add(s, &cap, &n->value)) goto nomem;
        break;
    case MECH_RASP_MAP:
    case MECH_RASP_ZIPMAP: {
        int k = n->n_in, idx[16] = {0};
        if (k > 16) return node_error(pl, n, err, "a zipmap of %d s-ops; at most 16 are supported", k);
        long total = 1;
        for (int a = 0; a < k; a++) {
            const vset *in = &pl->nodes[n->in[a]].vs;
            if (in->has_none) s->has_none = 1;
            total *= in->n;
            if (total > 100000) return node_error(pl, n, err, "its inputs have more than 100000 value combinations");
        }
        for (long t = 0; t < total; t++) {
            mech_rasp_value args[16], out;
            long rest = t;
            for (int a = k - 1; a >= 0; a--) {
                const vset *in = &pl->nodes[n->in[a]].vs;
                idx[a] = (int)(rest % in->n);
                rest /= in->n;
                args[a] = in->v[idx[a]];
            }
            if ((rc = apply(pl, n, n->fn, args, k, &out, err))) return rc;
            if (vset_add(s, &cap, &out)) goto nomem;
        }
        break;
    }
    case MECH_RASP_AGGREGATE: {
        const mech_rasp_node *sop = mech_rasp_program_node(pl->p, n->in[1]);
        const vset *in = &pl->nodes[n->in[1]].vs;
        if (n->enc != sop->enc)
            return node_error(pl, n, err, "a %s aggregate of the %s s-op '%s'; wrap the s-op in %s(...) first",
                              n->enc == MECH_RASP_NUMERICAL ? "numerical" : "categorical",
                              sop->enc == MECH_RASP_NUMERICAL ? "numerical" : "categorical", sop->label,
                              n->enc == MECH_RASP_NUMERICAL ? "numerical" : "categorical");
        if (n->enc == MECH_RASP_CATEGORICAL) {
            for (int i = 0; i < in->n; i++)
                if (vset_add(s, &cap, &in->v[i])) goto nomem;
            s->has_none |= in->has_none;
        } else {
            for (int i = 0; i < in->n; i++)
                if (!is_number(&in->v[i]) || (num(&in->v[i]) != 0 && num(&in->v[i]) != 1)) {
                    char v[80];
                    repr(v, sizeof v, &in->v[i]);
                    return node_error(pl, n, err,
                                      "a numerical aggregate averages values in {0, 1}, but '%s' can be %s; "
                                      "aggregate a 0/1 indicator (e.g. numerical(x == v)) instead",
                                      sop->label, v);
                }
            // every mean of k ones among m selected keys
            for (int m = 1; m <= N; m++)
                for (int k = 0; k <= m; k++) {
                    mech_rasp_value v = k == 0 ? mech_rasp_int(0) : k == m ? mech_rasp_int(1)
                                                                         : mech_rasp_float((double)k / m);
                    if (vset_add(s, &cap, &v)) goto nomem;
                }
        }
        // with nothing selected: the default
        if (vset_add(s, &cap, &n->value)) goto nomem;
        break;
    }
    default:
        return node_error(pl, n, err, "unsupported node kind %s", mech_rasp_kind_name(n->kind));
    }
    vset_sort(s);
    if (n->enc == MECH_RASP_NUMERICAL) {
        if (s->has_none) return node_error(pl, n, err, "a numerical s-op cannot be none (it has one dimension)");
        for (int i = 0; i < s->n; i++)
            if (!is_number(&s->v[i])) {
                char v[80];
                repr(v, sizeof v, &s->v[i]);
                return node_error(pl, n, err, "a numerical s-op holds numbers, but it can be %s", v);
            }
    }
    return MECH_OK;
nomem:
    return mech_err_set(err, MECH_ERR_NOMEM, "out of memory inferring value sets");
}

// ---------------------------------------------------------------------------
// Selectors: keys, queries and the predicate matrix over their value sets
// (none included as a value when an s-op can be none).

typedef struct selmat {
    int keys, queries;      // node ids
    int nk, nq;             // values incl. none
    unsigned char *pred;    // [nk * nq]
} selmat;

// Value i of node s's extended set (index n is none).
static mech_rasp_value ext_value(const rasp_plan *pl, int id, int i) {
    const vset *s = &pl->nodes[id].vs;
    return i < s->n ? s->v[i] : mech_rasp_none();
}

static int ext_n(const rasp_plan *pl, int id) { return pl->nodes[id].vs.n + pl->nodes[id].vs.has_none; }

static mech_status eval_pred(rasp_plan *pl, const mech_rasp_node *n, const mech_rasp_value *k, const mech_rasp_value *q,
                             int *out, mech_err *err) {
    static const mech_rasp_op ops[] = {
        [MECH_RASP_PRED_EQ] = MECH_RASP_X_EQ, [MECH_RASP_PRED_NE] = MECH_RASP_X_NE, [MECH_RASP_PRED_LT] = MECH_RASP_X_LT,
        [MECH_RASP_PRED_LE] = MECH_RASP_X_LE, [MECH_RASP_PRED_GT] = MECH_RASP_X_GT, [MECH_RASP_PRED_GE] = MECH_RASP_X_GE,
    };
    if (n->pred == MECH_RASP_PRED_TRUE || n->pred == MECH_RASP_PRED_FALSE) {
        *out = n->pred == MECH_RASP_PRED_TRUE;
        return MECH_OK;
    }
    mech_rasp_value r, args[2] = {*k, *q};
    if (n->pred == MECH_RASP_PRED_LAMBDA) {
        mech_status rc = apply(pl, n, n->fn, args, 2, &r, err);
        if (rc) return rc;
    } else {
        rasp_fail f = {0};
        if (rasp_binary(ops[n->pred], k, q, pl->heap, &r, &f)) {
            char a[80], b[80];
            repr(a, sizeof a, k);
            repr(b, sizeof b, q);
            return node_error(pl, n, err, "the predicate %s fails on key %s, query %s: %s", mech_rasp_pred_name(n->pred),
                              a, b, f.msg);
        }
    }
    *out = mech_rasp_value_truthy(&r);
    return MECH_OK;
}

static int sel_side(rasp_plan *pl, int sel, int side);

static mech_status selector(rasp_plan *pl, int id, selmat *m, mech_err *err) {
    const mech_rasp_node *n = mech_rasp_program_node(pl->p, id);
    mech_status rc;
    if (n->kind == MECH_RASP_SELECT) {
        m->keys = n->in[0], m->queries = n->in[1];
        const mech_rasp_node *kn = mech_rasp_program_node(pl->p, m->keys), *qn = mech_rasp_program_node(pl->p, m->queries);
        if (kn->enc != MECH_RASP_CATEGORICAL || qn->enc != MECH_RASP_CATEGORICAL)
            return node_error(pl, n, err, "select needs categorical keys and queries ('%s' is numerical)",
                              kn->enc != MECH_RASP_CATEGORICAL ? kn->label : qn->label);
        m->nk = ext_n(pl, m->keys), m->nq = ext_n(pl, m->queries);
        m->pred = mech_calloc((size_t)m->nk * m->nq + 1, 1);
        if (!m->pred) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        for (int k = 0; k < m->nk; k++)
            for (int q = 0; q < m->nq; q++) {
                mech_rasp_value kv = ext_value(pl, m->keys, k), qv = ext_value(pl, m->queries, q);
                int sel = 0;
                // The interpreter never selects a none key or query: none
                // propagates, it does not compare.
                if (kv.type != MECH_RASP_NONE && qv.type != MECH_RASP_NONE &&
                    (rc = eval_pred(pl, n, &kv, &qv, &sel, err))) {
                    mech_free(m->pred);
                    return rc;
                }
                m->pred[k * m->nq + q] = (unsigned char)sel;
            }
        return MECH_OK;
    }
    selmat a = {0}, b = {0};
    if ((rc = selector(pl, n->in[0], &a, err))) return rc;
    if (n->kind == MECH_RASP_SEL_NOT) {
        for (int i = 0; i < a.nk * a.nq; i++) a.pred[i] = !a.pred[i];
        *m = a;
        return MECH_OK;
    }
    if ((rc = selector(pl, n->in[1], &b, err))) {
        mech_free(a.pred);
        return rc;
    }
    // Over the same keys and queries the two fold into one predicate; else
    // they read composites (pairs of values) planned by sel_side.
    selmat r = {.keys = sel_side(pl, id, 0), .queries = sel_side(pl, id, 1)};
    r.nk = ext_n(pl, r.keys), r.nq = ext_n(pl, r.queries);
    r.pred = mech_calloc((size_t)r.nk * r.nq + 1, 1);
    if (!r.pred) {
        mech_free(a.pred), mech_free(b.pred);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    int kpair = r.keys != a.keys || r.keys != b.keys, qpair = r.queries != a.queries || r.queries != b.queries;
    for (int k = 0; k < r.nk; k++)
        for (int q = 0; q < r.nq; q++) {
            int ka = kpair ? k / b.nk : k, kb = kpair ? k % b.nk : k;
            int qa = qpair ? q / b.nq : q, qb = qpair ? q % b.nq : q;
            int x = a.pred[ka * a.nq + qa], y = b.pred[kb * b.nq + qb];
            r.pred[k * r.nq + q] = (unsigned char)(n->kind == MECH_RASP_SEL_AND ? (x && y) : (x || y));
        }
    mech_free(a.pred);
    mech_free(b.pred);
    *m = r;
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Plan

static int next_stage(int after, int parity) {
    int s = after + 1;
    if ((s & 1) != parity) s++;
    return s < 0 ? parity : s;
}

// The s-op a selector reads on one side (0: keys, 1: queries). `and`/`or`
// over different s-ops read a composite holding both (made here once per
// pair: an MLP that one-hot encodes the pair of values, none included).
static int sel_side(rasp_plan *pl, int sel, int side) {
    const mech_rasp_node *n = mech_rasp_program_node(pl->p, sel);
    if (n->kind == MECH_RASP_SELECT) return n->in[side];
    if (n->kind == MECH_RASP_SEL_NOT) return sel_side(pl, n->in[0], side);
    int x = sel_side(pl, n->in[0], side), y = sel_side(pl, n->in[1], side);
    if (x < 0 || y < 0) return -1;
    if (x == y) return x;
    for (int i = pl->n; i < pl->n_all; i++)
        if (pl->nodes[i].pair_a == x && pl->nodes[i].pair_b == y) return i;
    int id = pl->n_all++;
    pnode *c = &pl->nodes[id];
    memset(c, 0, sizeof *c);
    c->pair_a = x, c->pair_b = y, c->bos_val = -1;
    int sx = pl->nodes[x].stage, sy = pl->nodes[y].stage;
    c->stage = next_stage(sx > sy ? sx : sy, 1);
    mech_buf lb = {0};
    mech_buf_printf(&lb, "%s.%s", n->label, side ? "queries" : "keys");
    c->vlabel = lb.data;
    int nx = pl->nodes[x].vs.n + pl->nodes[x].vs.has_none, ny = pl->nodes[y].vs.n + pl->nodes[y].vs.has_none;
    c->vs.v = mech_calloc((size_t)(nx * ny > 0 ? nx * ny : 1), sizeof *c->vs.v);
    if (!c->vs.v || lb.oom) return -1;
    for (int i = 0; i < nx; i++)
        for (int j = 0; j < ny; j++) {
            mech_rasp_value items[2] = {i < pl->nodes[x].vs.n ? pl->nodes[x].vs.v[i] : mech_rasp_none(),
                                        j < pl->nodes[y].vs.n ? pl->nodes[y].vs.v[j] : mech_rasp_none()};
            if (mech_rasp_value_tuple(pl->heap, items, 2, &c->vs.v[c->vs.n++], NULL)) return -1;
        }
    return id;
}

static int max_in_stage(rasp_plan *pl, const mech_rasp_node *n) {
    int st = -1;
    for (int i = 0; i < n->n_in; i++) {
        const pnode *in = &pl->nodes[n->in[i]];
        int s = in->stage;
        if (in->is_sel) {
            // a selector is read where it is used: its keys and queries must be ready
            int k = sel_side(pl, n->in[i], 0), q = sel_side(pl, n->in[i], 1);
            if (k < 0 || q < 0) return -3;
            s = pl->nodes[k].stage > pl->nodes[q].stage ? pl->nodes[k].stage : pl->nodes[q].stage;
        }
        if (s > st) st = s;
    }
    return st;
}

static void plan_free(rasp_plan *pl) {
    if (!pl) return;
    for (int i = 0; i < pl->n_all; i++) mech_free(pl->nodes[i].vs.v), mech_free(pl->nodes[i].vlabel);
    mech_free(pl->nodes);
    if (pl->labels)
        for (int i = 0; i < pl->C; i++) mech_free(pl->labels[i]);
    mech_free(pl->labels);
    mech_rasp_heap_free(pl->heap);
    mech_free(pl);
}

// Coefficients of a zipmap of numerical s-ops when it is linear on every
// combination of their values: out = sum w[a] x_a + c. Anything else cannot
// be built from one numerical MLP exactly, so it is an error.
static mech_status linear_coefficients(rasp_plan *pl, int id, double *w, double *c, mech_err *err) {
    const mech_rasp_node *n = mech_rasp_program_node(pl->p, id);
    int k = n->n_in;
    mech_rasp_value args[16], out;
    mech_status st;
    for (int a = 0; a < k; a++) args[a] = pl->nodes[n->in[a]].vs.v[0];
    if ((st = apply(pl, n, n->fn, args, k, &out, err))) return st;
    double base = num(&out);
    *c = base;
    for (int a = 0; a < k; a++) {
        const vset *s = &pl->nodes[n->in[a]].vs;
        w[a] = 0;
        if (s->n > 1) {
            args[a] = s->v[1];
            if ((st = apply(pl, n, n->fn, args, k, &out, err))) return st;
            w[a] = (num(&out) - base) / (num(&s->v[1]) - num(&s->v[0]));
            args[a] = s->v[0];
        }
        *c -= w[a] * num(&s->v[0]);
    }
    long total = 1;
    for (int a = 0; a < k; a++) total *= pl->nodes[n->in[a]].vs.n;
    for (long t = 0; t < total; t++) {
        long rest = t;
        double want = *c;
        for (int a = k - 1; a >= 0; a--) {
            const vset *s = &pl->nodes[n->in[a]].vs;
            args[a] = s->v[rest % s->n];
            rest /= s->n;
            want += w[a] * num(&args[a]);
        }
        if ((st = apply(pl, n, n->fn, args, k, &out, err))) return st;
        if (fabs(num(&out) - want) > 1e-9 * (1 + fabs(want)))
            return node_error(pl, n, err, "a zipmap of numerical s-ops must be linear in them (a*x + b*y + c); "
                              "make the inputs categorical(...) for any other function");
    }
    return MECH_OK;
}

static char *label_of(const char *name, const mech_rasp_value *v) {
    mech_buf b = {0};
    mech_buf_puts(&b, name);
    if (v) {
        mech_buf_puts(&b, ":");
        mech_rasp_value_json(&b, v);
    }
    return b.oom ? NULL : b.data;
}

static mech_status plan_new(const mech_rasp_program *p, rasp_plan **out, mech_err *err) {
    *out = NULL;
    rasp_plan *pl = mech_calloc(1, sizeof *pl);
    if (!pl) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    pl->p = p;
    pl->n = mech_rasp_program_n_nodes(p);
    pl->N = mech_rasp_program_max_seq_len(p);
    pl->heap = mech_rasp_heap_new();
    int combos = 0;
    for (int i = 0; i < pl->n; i++) {
        mech_rasp_kind k = mech_rasp_program_node(p, i)->kind;
        combos += k == MECH_RASP_SEL_AND || k == MECH_RASP_SEL_OR;
    }
    pl->n_all = pl->n;
    pl->nodes = mech_calloc((size_t)(pl->n + 2 * combos + 1), sizeof *pl->nodes);
    mech_status rc = MECH_OK;
    if (!pl->heap || !pl->nodes) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    int causal = mech_rasp_program_causal(p);
    for (int i = 0; i < pl->n; i++) {
        if ((rc = infer(pl, i, err))) goto fail;
        const mech_rasp_node *n = mech_rasp_program_node(p, i);
        pnode *pn = &pl->nodes[i];
        pn->bos_val = -1;
        int ms = n->n_in ? max_in_stage(pl, n) : -1;
        if (ms < -2) {
            rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
            goto fail;
        }
        switch (n->kind) {
        case MECH_RASP_TOKENS: case MECH_RASP_INDICES: case MECH_RASP_CONST:
            pn->stage = -1;
            break;
        case MECH_RASP_LENGTH:
            if (causal) {
                rc = node_error(pl, n, err, "length is not known to a causal model at early positions");
                goto fail;
            }
            pn->att_stage = 0, pn->stage = 1;
            break;
        case MECH_RASP_MAP: case MECH_RASP_ZIPMAP:
            pn->stage = next_stage(ms, 1);
            break;
        case MECH_RASP_AGGREGATE:
            pn->stage = next_stage(ms, 0);
            if (n->value.type != MECH_RASP_NONE) {
                pn->bos_val = vset_find(&pn->vs, &n->value);
                pn->bos_num = is_number(&n->value) ? num(&n->value) : 0;
            }
            break;
        case MECH_RASP_SELECTOR_WIDTH:
            pn->att_stage = next_stage(ms, 0);
            pn->stage = pn->att_stage + 1;
            break;
        default:
            pn->stage = -2; // selectors
        }
        if (n->kind == MECH_RASP_ZIPMAP) {
            int numerical = 0;
            for (int a = 0; a < n->n_in; a++) numerical += mech_rasp_program_node(p, n->in[a])->enc == MECH_RASP_NUMERICAL;
            double w[16], c;
            if (numerical && (numerical < n->n_in || n->enc != MECH_RASP_NUMERICAL)) {
                rc = node_error(pl, n, err, "a zipmap takes categorical s-ops, or numerical ones into a numerical "
                                "s-op; wrap the inputs in categorical(...) or the result in numerical(...)");
                goto fail;
            }
            if (numerical && (rc = linear_coefficients(pl, i, w, &c, err))) goto fail;
        }
    }
    // Residual layout: bos, one, then every s-op's dimensions in node order.
    int C = 2, max_stage = 0;
    for (int i = 0; i < pl->n_all; i++) {
        pnode *pn = &pl->nodes[i];
        if (pn->is_sel) continue;
        pn->dim = C;
        if (i >= pl->n) {
            C += pn->vs.n;
        } else {
            const mech_rasp_node *n = mech_rasp_program_node(p, i);
            C += n->enc == MECH_RASP_NUMERICAL ? 1 : pn->vs.n;
            if (n->kind == MECH_RASP_SELECTOR_WIDTH || n->kind == MECH_RASP_LENGTH) pn->aux = C++;
        }
        if (pn->stage > max_stage) max_stage = pn->stage;
    }
    pl->C = C;
    pl->n_layers = max_stage / 2 + 1;
    pl->labels = mech_calloc((size_t)C, sizeof *pl->labels);
    if (!pl->labels) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    pl->labels[0] = mech_strdup("bos");
    pl->labels[1] = mech_strdup("one");
    for (int i = pl->n; i < pl->n_all; i++)
        for (int v = 0; v < pl->nodes[i].vs.n; v++)
            pl->labels[pl->nodes[i].dim + v] = label_of(pl->nodes[i].vlabel, &pl->nodes[i].vs.v[v]);
    for (int i = 0; i < pl->n; i++) {
        const mech_rasp_node *n = mech_rasp_program_node(p, i);
        pnode *pn = &pl->nodes[i];
        if (pn->is_sel) continue;
        if (n->enc == MECH_RASP_NUMERICAL) pl->labels[pn->dim] = label_of(n->label, NULL);
        else
            for (int v = 0; v < pn->vs.n; v++) pl->labels[pn->dim + v] = label_of(n->label, &pn->vs.v[v]);
        if (n->kind == MECH_RASP_SELECTOR_WIDTH || n->kind == MECH_RASP_LENGTH) {
            char aux[300];
            snprintf(aux, sizeof aux, "%s.bos_share", n->label);
            pl->labels[pn->aux] = mech_strdup(aux);
        }
    }
    for (int i = 0; i < C; i++)
        if (!pl->labels[i]) {
            rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
            goto fail;
        }
    *out = pl;
    return MECH_OK;
fail:
    plan_free(pl);
    return rc;
}

// ---------------------------------------------------------------------------
// Emission

typedef struct emitter {
    rasp_plan *pl;
    build_model b;
    int cap_heads, cap_mlps;
    int *head_slot;          // [n]: the node's head within its layer, or -1
    int *mlp_from, *mlp_len; // [n]: the node's hidden units within its layer's MLP
} emitter;

static int layer_heads(const emitter *e, int layer) {
    int k = 0;
    for (int i = 0; i < e->b.n_heads; i++) k += e->b.heads[i].layer == layer;
    return k;
}

static int layer_units(const emitter *e, int layer) {
    int k = 0;
    for (int i = 0; i < e->b.n_mlps; i++)
        if (e->b.mlps[i].layer == layer) k += e->b.mlps[i].hidden;
    return k;
}

static int push_head(emitter *e, build_head h) {
    if (e->b.n_heads == e->cap_heads) {
        int nc = e->cap_heads ? 2 * e->cap_heads : 8;
        build_head *g = mech_realloc(e->b.heads, (size_t)nc * sizeof *g);
        if (!g) return -1;
        e->b.heads = g, e->cap_heads = nc;
    }
    e->b.heads[e->b.n_heads++] = h;
    return 0;
}

static int push_mlp(emitter *e, build_mlp m) {
    if (e->b.n_mlps == e->cap_mlps) {
        int nc = e->cap_mlps ? 2 * e->cap_mlps : 8;
        build_mlp *g = mech_realloc(e->b.mlps, (size_t)nc * sizeof *g);
        if (!g) return -1;
        e->b.mlps = g, e->cap_mlps = nc;
    }
    e->b.mlps[e->b.n_mlps++] = m;
    return 0;
}

// Dimensions of a categorical node's extended set (none -> -1).
static int *ext_dims(const rasp_plan *pl, int id) {
    int n = ext_n(pl, id);
    int *d = mech_malloc((size_t)(n ? n : 1) * sizeof *d);
    if (!d) return NULL;
    for (int i = 0; i < n; i++) d[i] = i < pl->nodes[id].vs.n ? pl->nodes[id].dim + i : -1;
    return d;
}

// Output dimension of value v of node id (categorical), -1 for none.
static int out_dim(const rasp_plan *pl, int id, const mech_rasp_value *v) {
    int i = vset_find(&pl->nodes[id].vs, v);
    return i < 0 ? -1 : pl->nodes[id].dim + i;
}

// Selector width (and length): attention into aux, then 1/(w+1) -> w.
static mech_status emit_width(emitter *e, int id, const selmat *m, mech_err *err) {
    rasp_plan *pl = e->pl;
    const pnode *pn = &pl->nodes[id];
    const mech_rasp_node *n = mech_rasp_program_node(pl->p, id);
    int *qd = ext_dims(pl, m->queries), *kd = ext_dims(pl, m->keys);
    if (!qd || !kd) {
        mech_free(qd), mech_free(kd);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    attend_spec s = {.q_dims = qd, .k_dims = kd, .nq = m->nq, .nk = m->nk, .pred = m->pred, .nv = 0,
                     .def_out = pn->aux, .def_value = 1, .always_bos = 1,
                     .k_bos = pl->nodes[m->keys].bos_val, .v_bos = -1};
    int rc = push_head(e, block_attend(pl->C, pn->att_stage / 2, 0, 1, &s, SHARPNESS));
    mech_free(qd), mech_free(kd);
    int N = pl->N;
    double *xs = mech_malloc((size_t)(N + 1) * sizeof *xs), *f = mech_malloc((size_t)(N + 1) * sizeof *f);
    int *oc = mech_malloc((size_t)(N + 1) * sizeof *oc);
    if (rc || !xs || !f || !oc) {
        mech_free(xs), mech_free(f), mech_free(oc);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    int lo = n->kind == MECH_RASP_LENGTH; // length counts at least 1
    int cnt = 0;
    for (int w = N; w >= lo; w--) { // ascending 1/(w+1)
        mech_rasp_value v = mech_rasp_int(w);
        xs[cnt] = 1.0 / (w + 1), f[cnt] = w, oc[cnt] = out_dim(pl, id, &v);
        cnt++;
    }
    int numerical = n->enc == MECH_RASP_NUMERICAL;
    rc = push_mlp(e, block_map_num(pl->C, pn->stage / 2, 1, pn->aux, xs, cnt, numerical ? pn->dim : -1, f, oc));
    mech_free(xs), mech_free(f), mech_free(oc);
    return rc ? mech_err_set(err, MECH_ERR_NOMEM, "out of memory") : MECH_OK;
}

static mech_status emit_node(emitter *e, int id, mech_err *err) {
    rasp_plan *pl = e->pl;
    const mech_rasp_node *n = mech_rasp_program_node(pl->p, id);
    const pnode *pn = &pl->nodes[id];
    int C = pl->C, layer = pn->stage / 2, rc = 0;
    mech_status st = MECH_OK;
    switch (n->kind) {
    case MECH_RASP_MAP: {
        int in = n->in[0];
        const mech_rasp_node *inn = mech_rasp_program_node(pl->p, in);
        const vset *vs = &pl->nodes[in].vs;
        int nv = vs->n ? vs->n : 0;
        double *fnum = mech_calloc((size_t)nv + 1, sizeof *fnum);
        int *oc = mech_calloc((size_t)nv + 1, sizeof *oc), *id_in = mech_calloc((size_t)nv + 1, sizeof *id_in);
        double *xs = mech_calloc((size_t)nv + 1, sizeof *xs);
        if (!fnum || !oc || !id_in || !xs) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        for (int v = 0; !st && v < nv; v++) {
            mech_rasp_value out;
            if ((st = apply(pl, n, n->fn, &vs->v[v], 1, &out, err))) break;
            fnum[v] = is_number(&out) ? num(&out) : 0;
            oc[v] = out_dim(pl, id, &out);
            id_in[v] = pl->nodes[in].dim + v;
            xs[v] = is_number(&vs->v[v]) ? num(&vs->v[v]) : 0;
        }
        if (!st) {
            int numerical_out = n->enc == MECH_RASP_NUMERICAL;
            if (inn->enc == MECH_RASP_CATEGORICAL)
                rc = numerical_out ? push_mlp(e, block_map_cat_to_num(C, layer, 1, id_in, nv, pn->dim, fnum))
                                   : push_mlp(e, block_map_cat(C, layer, 1, id_in, nv, oc));
            else
                rc = push_mlp(e, block_map_num(C, layer, 1, pl->nodes[in].dim, xs, nv, numerical_out ? pn->dim : -1, fnum, oc));
        }
        mech_free(fnum), mech_free(oc), mech_free(id_in), mech_free(xs);
        break;
    }
    case MECH_RASP_ZIPMAP: {
        if (mech_rasp_program_node(pl->p, n->in[0])->enc == MECH_RASP_NUMERICAL) {
            double w[16], c, bound[16];
            int dims[16];
            if ((st = linear_coefficients(pl, id, w, &c, err))) return st;
            for (int a = 0; a < n->n_in; a++) {
                const pnode *in = &pl->nodes[n->in[a]];
                dims[a] = in->dim;
                bound[a] = fabs(in->bos_num);
                for (int v = 0; v < in->vs.n; v++)
                    if (fabs(num(&in->vs.v[v])) > bound[a]) bound[a] = fabs(num(&in->vs.v[v]));
            }
            rc = push_mlp(e, block_linear(C, layer, 1, n->n_in, dims, w, bound, c, pn->dim));
            break;
        }
        int k = n->n_in, sizes[16];
        const int *dims[16];
        int *owned[16] = {0};
        long total = 1;
        for (int a = 0; a < k; a++) {
            const pnode *in = &pl->nodes[n->in[a]];
            sizes[a] = in->vs.n;
            total *= sizes[a];
            owned[a] = mech_malloc((size_t)(sizes[a] ? sizes[a] : 1) * sizeof(int));
            if (!owned[a]) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
            for (int v = 0; owned[a] && v < sizes[a]; v++) owned[a][v] = in->dim + v;
            dims[a] = owned[a];
        }
        int *oc = mech_malloc((size_t)(total ? total : 1) * sizeof *oc);
        double *fnum = mech_malloc((size_t)(total ? total : 1) * sizeof *fnum);
        if (!oc || !fnum) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        for (long t = 0; !st && t < total; t++) {
            mech_rasp_value args[16], out;
            long rest = t;
            for (int a = k - 1; a >= 0; a--) {
                args[a] = pl->nodes[n->in[a]].vs.v[rest % sizes[a]];
                rest /= sizes[a];
            }
            if ((st = apply(pl, n, n->fn, args, k, &out, err))) break;
            oc[t] = out_dim(pl, id, &out);
            fnum[t] = is_number(&out) ? num(&out) : 0;
        }
        if (!st) {
            int numerical_out = n->enc == MECH_RASP_NUMERICAL;
            build_mlp m = block_zipmap_cat(C, layer, 1, k, dims, sizes, numerical_out ? NULL : oc);
            if (numerical_out)
                for (long t = 0; t < total; t++) m.w_out[(size_t)t * C + pn->dim] = (float)fnum[t];
            rc = push_mlp(e, m);
        }
        for (int a = 0; a < k; a++) mech_free(owned[a]);
        mech_free(oc), mech_free(fnum);
        break;
    }
    case MECH_RASP_AGGREGATE: {
        selmat m = {0};
        if ((st = selector(pl, n->in[0], &m, err))) return st;
        int sop = n->in[1];
        const pnode *sp = &pl->nodes[sop];
        int numerical = n->enc == MECH_RASP_NUMERICAL;
        int nv = numerical ? 1 : sp->vs.n;
        int *qd = ext_dims(pl, m.queries), *kd = ext_dims(pl, m.keys);
        int *vin = mech_malloc((size_t)(nv ? nv : 1) * sizeof *vin), *vout = mech_malloc((size_t)(nv ? nv : 1) * sizeof *vout);
        if (!qd || !kd || !vin || !vout) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        for (int v = 0; !st && v < nv; v++) {
            vin[v] = sp->dim + v;
            vout[v] = numerical ? pn->dim : out_dim(pl, id, &sp->vs.v[v]);
        }
        if (!st) {
            int def_out = numerical ? (n->value.type == MECH_RASP_NONE ? -1 : pn->dim) : out_dim(pl, id, &n->value);
            double def_value = numerical ? (n->value.type == MECH_RASP_NONE ? 0 : num(&n->value)) : 1;
            attend_spec s = {.q_dims = qd, .k_dims = kd, .nq = m.nq, .nk = m.nk, .pred = m.pred, .val_in = vin,
                             .val_out = vout, .nv = nv, .def_out = def_value != 0 ? def_out : -1,
                             .def_value = def_value, .k_bos = pl->nodes[m.keys].bos_val,
                             .v_bos = numerical ? -1 : sp->bos_val, .v_bos_num = numerical ? sp->bos_num : 0};
            rc = push_head(e, block_attend(C, layer, 0, 1, &s, SHARPNESS));
        }
        mech_free(qd), mech_free(kd), mech_free(vin), mech_free(vout), mech_free(m.pred);
        break;
    }
    case MECH_RASP_SELECTOR_WIDTH: {
        selmat m = {0};
        if ((st = selector(pl, n->in[0], &m, err))) return st;
        st = emit_width(e, id, &m, err);
        mech_free(m.pred);
        break;
    }
    case MECH_RASP_LENGTH: {
        // length = selector_width(select(tokens, tokens, true)); tokens is node 0's
        // set when present, otherwise any key: every non-BOS key is selected.
        selmat m = {.keys = id, .queries = id, .nk = 1, .nq = 1};
        unsigned char all = 1;
        m.pred = &all;
        // keys and queries: the `one` dimension stands for "a token is here"
        int one = 1;
        attend_spec s = {.q_dims = &one, .k_dims = &one, .nq = 1, .nk = 1, .pred = &all, .nv = 0,
                         .def_out = pn->aux, .def_value = 1, .always_bos = 1, .k_bos = -1, .v_bos = -1};
        rc = push_head(e, block_attend(C, pn->att_stage / 2, 0, 1, &s, SHARPNESS));
        if (!rc) {
            int N = pl->N, cnt = 0;
            double *xs = mech_malloc((size_t)N * sizeof *xs), *f = mech_malloc((size_t)N * sizeof *f);
            int *oc = mech_malloc((size_t)N * sizeof *oc);
            if (!xs || !f || !oc) rc = -1;
            for (int w = N; !rc && w >= 1; w--) {
                mech_rasp_value v = mech_rasp_int(w);
                xs[cnt] = 1.0 / (w + 1), f[cnt] = w, oc[cnt] = out_dim(pl, id, &v);
                cnt++;
            }
            if (!rc)
                rc = push_mlp(e, block_map_num(C, pn->stage / 2, 1, pn->aux, xs, cnt,
                                               n->enc == MECH_RASP_NUMERICAL ? pn->dim : -1, f, oc));
            mech_free(xs), mech_free(f), mech_free(oc);
        }
        (void)m;
        break;
    }
    default:
        break;
    }
    if (!st && rc) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    return st;
}

// A composite: one hidden unit per pair (i, j) of values of its two s-ops,
// none included (its indicator is one - the sum of the value dimensions),
// firing iff both hold: relu(ind_i + ind_j + one - 2).
static mech_status emit_composite(emitter *e, int id, mech_err *err) {
    rasp_plan *pl = e->pl;
    const pnode *c = &pl->nodes[id];
    int C = pl->C, ids[2] = {c->pair_a, c->pair_b}, n[2];
    for (int s = 0; s < 2; s++) n[s] = pl->nodes[ids[s]].vs.n + pl->nodes[ids[s]].vs.has_none;
    build_mlp m = {.layer = c->stage / 2, .hidden = c->vs.n ? c->vs.n : 1};
    m.w_in = build_zeros((size_t)C * m.hidden), m.b_in = build_zeros((size_t)m.hidden);
    m.w_out = build_zeros((size_t)m.hidden * C);
    if (!m.w_in || !m.b_in || !m.w_out) {
        mech_free(m.w_in), mech_free(m.b_in), mech_free(m.w_out);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    int H = m.hidden;
    for (int t = 0; t < c->vs.n; t++) {
        int idx[2] = {t / n[1], t % n[1]};
        for (int s = 0; s < 2; s++) {
            const pnode *in = &pl->nodes[ids[s]];
            if (idx[s] < in->vs.n) {
                m.w_in[(size_t)(in->dim + idx[s]) * H + t] += 1;
            } else {
                m.w_in[(size_t)1 * H + t] += 1;
                for (int v = 0; v < in->vs.n; v++) m.w_in[(size_t)(in->dim + v) * H + t] -= 1;
            }
        }
        m.w_in[(size_t)1 * H + t] += 1;
        m.b_in[t] = -2;
        m.w_out[(size_t)t * C + c->dim + t] = 1;
    }
    return push_mlp(e, m) ? mech_err_set(err, MECH_ERR_NOMEM, "out of memory") : MECH_OK;
}

static mech_status emit_embeddings(emitter *e, mech_err *err) {
    rasp_plan *pl = e->pl;
    int C = pl->C, N = pl->N;
    size_t nv;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(pl->p, &nv);
    int out = mech_rasp_program_output(pl->p);
    const mech_rasp_node *on = mech_rasp_program_node(pl->p, out);
    int n_out = on->enc == MECH_RASP_NUMERICAL ? 1 : pl->nodes[out].vs.n;
    int V = (int)nv + 2; // BOS, vocab, PAD
    if (n_out > V) V = n_out;
    build_model *b = &e->b;
    b->C = C, b->n_layers = pl->n_layers, b->n_ctx = N + 1, b->d_vocab = V;
    b->causal = mech_rasp_program_causal(pl->p);
    b->embed = build_zeros((size_t)V * C), b->pos = build_zeros((size_t)(N + 1) * C);
    b->unembed = build_zeros((size_t)V * C);
    if (!b->embed || !b->pos || !b->unembed) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    b->embed[0 * C + 0] = 1; // BOS
    for (size_t t = 0; t < nv; t++) {
        float *row = b->embed + (t + 1) * C;
        row[1] = 1; // one
        for (int i = 0; i < pl->n; i++) {
            const mech_rasp_node *n = mech_rasp_program_node(pl->p, i);
            if (n->kind == MECH_RASP_TOKENS) {
                int d = out_dim(pl, i, &vocab[t]);
                if (d >= 0) row[d] = 1;
            } else if (n->kind == MECH_RASP_CONST && n->value.type != MECH_RASP_NONE) {
                if (n->enc == MECH_RASP_NUMERICAL) row[pl->nodes[i].dim] = (float)num(&n->value);
                else row[pl->nodes[i].dim] = 1;
            }
        }
    }
    for (int p = 1; p <= N; p++)
        for (int i = 0; i < pl->n; i++) {
            const mech_rasp_node *n = mech_rasp_program_node(pl->p, i);
            if (n->kind != MECH_RASP_INDICES) continue;
            if (n->enc == MECH_RASP_NUMERICAL) b->pos[(size_t)p * C + pl->nodes[i].dim] = (float)(p - 1);
            else b->pos[(size_t)p * C + pl->nodes[i].dim + (p - 1)] = 1;
        }
    // Readout: class c of the output is its c-th value (numerical: class 0).
    for (int c = 0; c < n_out; c++) b->unembed[(size_t)c * C + pl->nodes[out].dim + c] = 1;
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Compile

static void circuit_json(const emitter *e, mech_buf *b) {
    const rasp_plan *pl = e->pl;
    mech_buf_puts(b, "{\"nodes\": [");
    int first = 1;
    for (int i = 0; i < pl->n; i++) {
        const mech_rasp_node *n = mech_rasp_program_node(pl->p, i);
        const pnode *pn = &pl->nodes[i];
        if (pn->is_sel) continue;
        mech_buf_puts(b, first ? "\n  {" : ",\n  {");
        first = 0;
        mech_buf_puts(b, "\"label\": ");
        mech_buf_json_string(b, n->label, strlen(n->label));
        if (n->name) {
            mech_buf_puts(b, ", \"name\": ");
            mech_buf_json_string(b, n->name, strlen(n->name));
        }
        mech_buf_printf(b, ", \"kind\": \"%s\", \"encoding\": \"%s\"", mech_rasp_kind_name(n->kind),
                        n->enc == MECH_RASP_NUMERICAL ? "numerical" : "categorical");
        if (pn->stage < 0) mech_buf_puts(b, ", \"component\": \"embed\"");
        else mech_buf_printf(b, ", \"layer\": %d", pn->stage / 2);
        if (e->head_slot[i] >= 0)
            mech_buf_printf(b, ", \"head\": [%d, %d]",
                            (n->kind == MECH_RASP_AGGREGATE ? pn->stage : pn->att_stage) / 2, e->head_slot[i]);
        if (e->mlp_len[i] > 0)
            mech_buf_printf(b, ", \"mlp\": [%d, %d, %d]", pn->stage / 2, e->mlp_from[i], e->mlp_from[i] + e->mlp_len[i]);
        int width = n->enc == MECH_RASP_NUMERICAL ? 1 : pn->vs.n;
        mech_buf_printf(b, ", \"dims\": [%d, %d]", pn->dim, pn->dim + width);
        mech_buf_puts(b, ", \"inputs\": [");
        // selectors are not components: their keys and queries are the inputs
        int k = 0;
        for (int a = 0; a < n->n_in; a++) {
            int xs[2] = {n->in[a], -1}, nx = 1;
            if (pl->nodes[n->in[a]].is_sel) {
                // a selector is not a component: its keys and queries are the inputs
                xs[0] = sel_side((rasp_plan *)pl, n->in[a], 0), xs[1] = sel_side((rasp_plan *)pl, n->in[a], 1), nx = 2;
            }
            for (int s = 0; s < nx; s++) {
                int x = xs[s];
                const char *lab = x >= pl->n ? pl->nodes[x].vlabel : mech_rasp_program_node(pl->p, x)->label;
                mech_buf_puts(b, k++ ? ", " : "");
                mech_buf_json_string(b, lab, strlen(lab));
            }
        }
        mech_buf_puts(b, "]}");
    }
    for (int i = pl->n; i < pl->n_all; i++) {
        const pnode *pn = &pl->nodes[i];
        mech_buf_puts(b, first ? "\n  {" : ",\n  {");
        first = 0;
        mech_buf_puts(b, "\"label\": ");
        mech_buf_json_string(b, pn->vlabel, strlen(pn->vlabel));
        mech_buf_printf(b, ", \"kind\": \"zipmap\", \"encoding\": \"categorical\", \"layer\": %d, \"mlp\": [%d, %d, %d]",
                        pn->stage / 2, pn->stage / 2, e->mlp_from[i], e->mlp_from[i] + e->mlp_len[i]);
        mech_buf_printf(b, ", \"dims\": [%d, %d], \"inputs\": [", pn->dim, pn->dim + pn->vs.n);
        for (int s = 0; s < 2; s++) {
            int x = s ? pn->pair_b : pn->pair_a;
            const char *lab = x >= pl->n ? pl->nodes[x].vlabel : mech_rasp_program_node(pl->p, x)->label;
            mech_buf_puts(b, s ? ", " : "");
            mech_buf_json_string(b, lab, strlen(lab));
        }
        mech_buf_puts(b, "]}");
    }
    mech_buf_puts(b, "\n]}");
}

static mech_status plan_emit(rasp_plan *pl, mech_model **model, mech_buf *circuit, mech_err *err) {
    emitter e = {.pl = pl};
    mech_status st = MECH_OK;
    e.head_slot = mech_malloc((size_t)(pl->n_all + 1) * sizeof(int));
    e.mlp_from = mech_calloc((size_t)(pl->n_all + 1), sizeof(int));
    e.mlp_len = mech_calloc((size_t)(pl->n_all + 1), sizeof(int));
    if (!e.head_slot || !e.mlp_from || !e.mlp_len) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = emit_embeddings(&e, err))) goto done;
    for (int i = 0; i < pl->n; i++) {
        const pnode *pn = &pl->nodes[i];
        const mech_rasp_node *n = mech_rasp_program_node(pl->p, i);
        e.head_slot[i] = -1;
        if (pn->is_sel || pn->stage < 0) continue;
        int att_layer = (n->kind == MECH_RASP_AGGREGATE ? pn->stage : pn->att_stage) / 2;
        int heads_before = e.b.n_heads, head_slot = layer_heads(&e, att_layer);
        int mlp_before = e.b.n_mlps, unit_from = layer_units(&e, pn->stage / 2);
        if ((st = emit_node(&e, i, err))) goto done;
        if (e.b.n_heads > heads_before) e.head_slot[i] = head_slot;
        if (e.b.n_mlps > mlp_before) e.mlp_from[i] = unit_from, e.mlp_len[i] = e.b.mlps[e.b.n_mlps - 1].hidden;
    }
    for (int i = pl->n; i < pl->n_all; i++) {
        int unit_from = layer_units(&e, pl->nodes[i].stage / 2);
        e.head_slot[i] = -1;
        if ((st = emit_composite(&e, i, err))) goto done;
        e.mlp_from[i] = unit_from, e.mlp_len[i] = e.b.mlps[e.b.n_mlps - 1].hidden;
    }
    if ((st = build_assemble(&e.b, model, err))) goto done;
    if (circuit) circuit_json(&e, circuit);
done:
    build_model_clear(&e.b);
    mech_free(e.head_slot);
    mech_free(e.mlp_from);
    mech_free(e.mlp_len);
    return st;
}

void mech_rasp_compiled_free(mech_rasp_compiled *c) {
    if (!c) return;
    mech_model_free(c->model);
    for (size_t i = 0; i < c->n_meta; i++) mech_free(c->meta_keys[i]), mech_free(c->meta_values[i]);
    mech_free(c->meta_keys);
    mech_free(c->meta_values);
    mech_free(c->circuit);
    mech_free(c);
}

static int meta_add(mech_rasp_compiled *c, const char *key, char *value) {
    if (!value) return -1;
    char *k = mech_strdup(key);
    char **ks = mech_realloc(c->meta_keys, (c->n_meta + 1) * sizeof *ks);
    if (ks) c->meta_keys = ks;
    char **vs = mech_realloc(c->meta_values, (c->n_meta + 1) * sizeof *vs);
    if (vs) c->meta_values = vs;
    if (!k || !ks || !vs) {
        mech_free(k), mech_free(value);
        return -1;
    }
    c->meta_keys[c->n_meta] = k;
    c->meta_values[c->n_meta++] = value;
    return 0;
}

mech_status mech_rasp_compile(const mech_rasp_program *p, mech_rasp_compiled **out, mech_err *err) {
    *out = NULL;
    rasp_plan *pl = NULL;
    mech_status st = plan_new(p, &pl, err);
    if (st) return st;
    mech_rasp_compiled *c = mech_calloc(1, sizeof *c);
    mech_buf circuit = {0};
    if (!c) {
        plan_free(pl);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    if ((st = plan_emit(pl, &c->model, &circuit, err))) goto fail;
    size_t len, nv;
    const char *src = mech_rasp_program_source(p, &len);
    const mech_rasp_value *vocab = mech_rasp_program_vocab(p, &nv);
    mech_buf b = {0};
    char *srcs = mech_malloc(len + 1);
    if (srcs) memcpy(srcs, src, len), srcs[len] = 0;
    int bad = meta_add(c, "mech.rasp.source", srcs);
    mech_rasp_values_json(&b, vocab, nv);
    bad |= meta_add(c, "mech.rasp.vocab", b.oom ? NULL : b.data);
    b = (mech_buf){0};
    mech_buf_printf(&b, "%d", pl->N);
    bad |= meta_add(c, "mech.rasp.max_seq_len", b.data);
    bad |= meta_add(c, "mech.rasp.causal", mech_strdup(mech_rasp_program_causal(p) ? "true" : "false"));
    b = (mech_buf){0};
    mech_buf_printf(&b, "{\"bos\": 0, \"vocab\": [1, %zu], \"pad\": %zu}", nv, nv + 1);
    bad |= meta_add(c, "mech.rasp.tokens", b.data);
    b = (mech_buf){0};
    mech_buf_puts(&b, "[");
    for (int i = 0; i < pl->C; i++) {
        if (i) mech_buf_puts(&b, ", ");
        mech_buf_json_string(&b, pl->labels[i], strlen(pl->labels[i]));
    }
    mech_buf_puts(&b, "]");
    bad |= meta_add(c, "mech.rasp.residual", b.oom ? NULL : b.data);
    int outn = mech_rasp_program_output(p);
    const mech_rasp_node *on = mech_rasp_program_node(p, outn);
    b = (mech_buf){0};
    mech_buf_puts(&b, "{\"node\": ");
    mech_buf_json_string(&b, on->label, strlen(on->label));
    mech_buf_printf(&b, ", \"encoding\": \"%s\", \"values\": ",
                    on->enc == MECH_RASP_NUMERICAL ? "numerical" : "categorical");
    mech_rasp_values_json(&b, pl->nodes[outn].vs.v, (size_t)pl->nodes[outn].vs.n);
    mech_buf_puts(&b, "}");
    bad |= meta_add(c, "mech.rasp.readout", b.oom ? NULL : b.data);
    c->circuit = circuit.oom ? NULL : mech_strdup(circuit.data ? circuit.data : "{}");
    bad |= meta_add(c, "mech.rasp.circuit", c->circuit ? mech_strdup(c->circuit) : NULL);
    mech_buf_free(&circuit);
    if (bad) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory writing metadata");
        goto fail;
    }
    plan_free(pl);
    *out = c;
    return MECH_OK;
fail:
    mech_buf_free(&circuit);
    plan_free(pl);
    mech_rasp_compiled_free(c);
    return st;
}

// ---------------------------------------------------------------------------
// Running a compiled model on RASP inputs

struct mech_rasp_runner {
    rasp_plan *pl;
    const mech_model *m;
    mech_run *run;
    int B, T;
};

mech_status mech_rasp_runner_new(const mech_rasp_program *p, const mech_model *m, mech_rasp_runner **out,
                                 mech_err *err) {
    *out = NULL;
    mech_rasp_runner *r = mech_calloc(1, sizeof *r);
    if (!r) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    mech_status st = plan_new(p, &r->pl, err);
    if (st) {
        mech_free(r);
        return st;
    }
    r->m = m;
    if (m->cfg.d_model != r->pl->C || m->cfg.n_ctx != r->pl->N + 1) {
        mech_rasp_runner_free(r);
        return mech_err_set(err, MECH_ERR_SHAPE, "the model (d_model %d, n_ctx %d) was not compiled from this program "
                            "(d_model %d, n_ctx %d)", m->cfg.d_model, m->cfg.n_ctx, r->pl->C, r->pl->N + 1);
    }
    *out = r;
    return MECH_OK;
}

void mech_rasp_runner_free(mech_rasp_runner *r) {
    if (!r) return;
    mech_run_free(r->run);
    plan_free(r->pl);
    mech_free(r);
}

int32_t mech_rasp_token_id(const mech_rasp_program *p, const mech_rasp_value *v) {
    size_t nv;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(p, &nv);
    for (size_t i = 0; i < nv; i++)
        if (mech_rasp_value_eq(&vocab[i], v)) return (int)i + 1;
    return -1;
}

mech_status mech_rasp_runner_run(mech_rasp_runner *r, const mech_rasp_value *inputs, size_t n_inputs, size_t len,
                                 mech_rasp_value *outputs, mech_err *err) {
    rasp_plan *pl = r->pl;
    if (len < 1 || (int)len > pl->N)
        return mech_err_set(err, MECH_ERR_RANGE, "input of %zu tokens: expected 1 to %d", len, pl->N);
    int T = (int)len + 1, B = (int)n_inputs;
    if (!r->run || r->B != B || r->T != T) {
        mech_run_free(r->run);
        r->run = NULL;
        mech_status st = mech_run_new(r->m, B, T, &r->run, err);
        if (st) return st;
        r->B = B, r->T = T;
    }
    int32_t *ids = mech_malloc((size_t)B * T * sizeof *ids);
    if (!ids) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (int b = 0; b < B; b++) {
        ids[b * T] = 0;
        for (size_t t = 0; t < len; t++) {
            int id = mech_rasp_token_id(pl->p, &inputs[(size_t)b * len + t]);
            if (id < 0) {
                mech_free(ids);
                return mech_err_set(err, MECH_ERR_RANGE, "input %d, position %zu: not in the vocabulary", b + 1, t + 1);
            }
            ids[b * T + (int)t + 1] = id;
        }
    }
    mech_status st = mech_run_forward(r->run, ids, err);
    mech_free(ids);
    if (st) return st;
    const float *logits = mech_run_logits(r->run);
    int outn = mech_rasp_program_output(pl->p), V = r->m->cfg.d_vocab;
    const vset *vs = &pl->nodes[outn].vs;
    int numerical = mech_rasp_program_node(pl->p, outn)->enc == MECH_RASP_NUMERICAL;
    for (int b = 0; b < B; b++)
        for (size_t t = 0; t < len; t++) {
            const float *row = logits + ((size_t)b * T + t + 1) * V;
            mech_rasp_value *o = &outputs[(size_t)b * len + t];
            if (numerical) {
                // the nearest value the output can hold
                int best = 0;
                for (int i = 1; i < vs->n; i++)
                    if (fabs(num(&vs->v[i]) - row[0]) < fabs(num(&vs->v[best]) - row[0])) best = i;
                *o = vs->n ? vs->v[best] : mech_rasp_float(row[0]);
                if (vs->n && fabs(num(&vs->v[best]) - row[0]) > 1e-3 * (1 + fabs(row[0]))) *o = mech_rasp_float(row[0]);
            } else {
                int best = -1;
                for (int i = 0; i < vs->n; i++)
                    if (row[i] > 0.5f && (best < 0 || row[i] > row[best])) best = i;
                *o = best < 0 ? mech_rasp_none() : vs->v[best];
            }
        }
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Verification: the compiled model against the interpreter

static uint64_t next_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

mech_status mech_rasp_verify(const mech_rasp_program *p, const mech_model *m, uint64_t seed, size_t *checked,
                             size_t *exhaustive, mech_err *err) {
    size_t nv;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(p, &nv);
    int N = mech_rasp_program_max_seq_len(p);
    double total = 0;
    for (int n = 1; n <= N; n++) total += pow((double)nv, n);
    int all = total <= 100000;
    *checked = 0;
    *exhaustive = (size_t)all;
    mech_rasp_runner *r = NULL;
    mech_status st = mech_rasp_runner_new(p, m, &r, err);
    if (st) return st;
    enum { BATCH = 256 };
    mech_rasp_value *in = mech_malloc((size_t)BATCH * N * sizeof *in), *got = mech_malloc((size_t)BATCH * N * sizeof *got);
    if (!in || !got) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    uint64_t rng = seed;
    for (int n = 1; n <= N && !st; n++) {
        double count_d = all ? pow((double)nv, n) : ceil(10000.0 / N);
        size_t count = (size_t)count_d;
        for (size_t at = 0; at < count && !st; at += BATCH) {
            int B = (int)(count - at < BATCH ? count - at : BATCH);
            for (int b = 0; b < B; b++) {
                size_t code = at + (size_t)b;
                for (int t = n - 1; t >= 0; t--) {
                    size_t pick = all ? code % nv : (size_t)(next_rand(&rng) % nv);
                    code /= nv;
                    in[(size_t)b * n + t] = vocab[pick];
                }
            }
            if ((st = mech_rasp_runner_run(r, in, (size_t)B, (size_t)n, got, err))) break;
            for (int b = 0; b < B && !st; b++) {
                mech_rasp_value *want = NULL;
                mech_err e = {0};
                mech_buf a = {0}, w = {0}, x = {0};
                mech_rasp_values_json(&x, in + (size_t)b * n, (size_t)n);
                if (mech_rasp_eval(p, in + (size_t)b * n, (size_t)n, &want, &e)) {
                    st = mech_err_set(err, e.code, "on input %s the program itself fails:\n%s", x.data, e.msg);
                } else {
                    mech_rasp_values_json(&a, got + (size_t)b * n, (size_t)n);
                    mech_rasp_values_json(&w, want, (size_t)n);
                    if (strcmp(a.data, w.data) != 0)
                        st = mech_err_set(err, MECH_ERR_FORMAT,
                                          "compiler bug: the model disagrees with the interpreter\n  input:    %s\n"
                                          "  expected: %s\n  model:    %s",
                                          x.data, w.data, a.data);
                    else (*checked)++;
                }
                mech_free(want);
                mech_buf_free(&a), mech_buf_free(&w), mech_buf_free(&x);
            }
        }
    }
done:
    mech_free(in);
    mech_free(got);
    mech_rasp_runner_free(r);
    return st;
}

// ---------------------------------------------------------------------------
// Explain

void mech_rasp_compiled_explain(const mech_rasp_compiled *c, mech_buf *b) {
    mech_json *j = NULL;
    if (!c->circuit || mech_json_parse(c->circuit, strlen(c->circuit), &j, NULL)) return;
    const mech_json *nodes = mech_json_get(j, "nodes");
    for (size_t i = 0; nodes && i < nodes->n; i++) {
        const mech_json *n = &nodes->items[i];
        const mech_json *label = mech_json_get(n, "label"), *kind = mech_json_get(n, "kind");
        const mech_json *head = mech_json_get(n, "head"), *mlp = mech_json_get(n, "mlp"), *dims = mech_json_get(n, "dims");
        const mech_json *ins = mech_json_get(n, "inputs");
        mech_buf_printf(b, "%-16s %-15s", label ? label->str : "?", kind ? kind->str : "?");
        if (!head && !mlp) mech_buf_puts(b, " embedding       ");
        if (head) mech_buf_printf(b, " L%lld head %-3lld   ", (long long)head->items[0].inum, (long long)head->items[1].inum);
        if (mlp)
            mech_buf_printf(b, " L%lld mlp %lld..%lld", (long long)mlp->items[0].inum, (long long)mlp->items[1].inum,
                            (long long)mlp->items[2].inum - 1);
        if (dims) mech_buf_printf(b, "  resid %lld..%lld", (long long)dims->items[0].inum, (long long)dims->items[1].inum - 1);
        if (ins && ins->n) {
            mech_buf_puts(b, "  <- ");
            for (size_t k = 0; k < ins->n; k++) mech_buf_printf(b, "%s%s", k ? ", " : "", ins->items[k].str);
        }
        mech_buf_puts(b, "\n");
    }
    mech_json_free(j);
}
