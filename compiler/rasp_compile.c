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
#include <unistd.h>

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
    int64_t max_values; // per s-op (composites included)
    int too_big;        // sel_side: the selector whose composite exceeded max_values
    int64_t too_big_n;  // and its size
    const mech_rasp_limits *lim; // compiling: cancel and progress (NULL when decoding)
};
typedef struct rasp_plan rasp_plan;

// ---------------------------------------------------------------------------
// Value sets

// Values are appended as they come and made distinct once, in vset_sort:
// a set of n values costs O(n log n), not O(n^2) (vocabularies and value
// sets run to a million values).
static int vset_add(vset *s, int *cap, const mech_rasp_value *v) {
    if (v->type == MECH_RASP_NONE) {
        s->has_none = 1;
        return 0;
    }
    if (s->n == *cap) {
        if (*cap > INT32_MAX / 2) return -1;
        int nc = *cap ? *cap * 2 : 8;
        mech_rasp_value *g = mech_realloc(s->v, (size_t)nc * sizeof *g);
        if (!g) return -1;
        s->v = g;
        *cap = nc;
    }
    s->v[s->n++] = *v;
    return 0;
}

typedef struct vslot {
    mech_rasp_value v;
    int at; // order of arrival: of equal values (1, 1.0, true) the first is kept
} vslot;

static int cmp_slot(const void *a, const void *b) {
    const vslot *x = a, *y = b;
    int r = mech_rasp_value_order(&x->v, &y->v);
    return r ? r : (x->at > y->at) - (x->at < y->at);
}

// Sorts s (mech_rasp_value_order) and drops repeats. -1 out of memory.
static int vset_sort(vset *s) {
    if (s->n < 2) return 0;
    vslot *t = mech_malloc((size_t)s->n * sizeof *t);
    if (!t) return -1;
    for (int i = 0; i < s->n; i++) t[i] = (vslot){s->v[i], i};
    qsort(t, (size_t)s->n, sizeof *t, cmp_slot);
    int k = 0;
    for (int i = 0; i < s->n; i++)
        if (!k || mech_rasp_value_order(&s->v[k - 1], &t[i].v) != 0) s->v[k++] = t[i].v;
    s->n = k;
    mech_free(t);
    return 0;
}

static int vset_find(const vset *s, const mech_rasp_value *v) {
    int lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, r = mech_rasp_value_order(&s->v[mid], v);
        if (!r) return mid;
        if (r < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static int gcd(int a, int b) {
    while (b) {
        int t = a % b;
        a = b, b = t;
    }
    return a;
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
            if (total > pl->max_values)
                return node_error(pl, n, err, "its inputs have more than %lld value combinations (one MLP unit each; "
                                  "mech compile --max-values raises the limit)", (long long)pl->max_values);
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
            // every mean of k ones among m selected keys: 0, 1 and each
            // fraction in lowest terms once (about 0.3 N^2 of them)
            long count = 2;
            for (int m = 2; m <= N; m++)
                for (int k = 1; k < m; k++) count += gcd(k, m) == 1;
            if (count > pl->max_values)
                return node_error(pl, n, err,
                                  "a numerical mean over up to %d positions can take %ld values, more than the limit "
                                  "of %lld values per s-op (mech compile --max-values raises it)",
                                  N, count, (long long)pl->max_values);
            mech_rasp_value zero = mech_rasp_int(0), one = mech_rasp_int(1);
            if (vset_add(s, &cap, &zero) || vset_add(s, &cap, &one)) goto nomem;
            for (int m = 2; m <= N; m++)
                for (int k = 1; k < m; k++) {
                    if (gcd(k, m) != 1) continue;
                    mech_rasp_value v = mech_rasp_float((double)k / m);
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
    if (vset_sort(s)) goto nomem;
    if (s->n > pl->max_values)
        return node_error(pl, n, err, "can hold %d values, more than the limit of %lld values per s-op "
                          "(mech compile --max-values raises it)", s->n, (long long)pl->max_values);
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
    int x = sel_side(pl, n->in[0], side), y = x < 0 ? x : sel_side(pl, n->in[1], side);
    if (x < 0 || y < 0) return x < 0 ? x : y;
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
    if ((int64_t)nx * ny > pl->max_values) {
        // `and`/`or` over different s-ops read the pair of their values:
        // pairs of pairs multiply, so this is where such programs explode
        pl->too_big = sel, pl->too_big_n = (int64_t)nx * ny;
        return -2;
    }
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
            int k = sel_side(pl, n->in[i], 0), q = k < 0 ? k : sel_side(pl, n->in[i], 1);
            if (k < 0 || q < 0) return (k < 0 ? k : q) == -2 ? -4 : -3;
            s = pl->nodes[k].stage > pl->nodes[q].stage ? pl->nodes[k].stage : pl->nodes[q].stage;
        }
        if (s > st) st = s;
    }
    return st;
}

static void plan_free(rasp_plan *pl) {
    if (!pl) return;
    for (int i = 0; pl->nodes && i < pl->n_all; i++) mech_free(pl->nodes[i].vs.v), mech_free(pl->nodes[i].vlabel);
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

// The buffer's text (owned), or NULL when it ran out of memory (then freed).
static char *buf_take(mech_buf *b) {
    if (b->oom || !b->data) {
        mech_buf_free(b);
        return NULL;
    }
    return b->data;
}

static char *label_of(const char *name, const mech_rasp_value *v) {
    mech_buf b = {0};
    mech_buf_puts(&b, name);
    if (v) {
        mech_buf_puts(&b, ":");
        mech_rasp_value_json(&b, v);
    }
    return buf_take(&b);
}

static mech_status plan_check(rasp_plan *pl, mech_err *err);

static int cancelled(const rasp_plan *pl) { return pl->lim && pl->lim->cancel && *pl->lim->cancel; }

static void progress(const rasp_plan *pl, const char *stage, int64_t done, int64_t total) {
    if (pl->lim && pl->lim->progress) pl->lim->progress(pl->lim->user, stage, done, total);
}

// The plan of p. lim (NULL when decoding a model that already exists) gives
// the limits checked on the way and the cancel flag.
static mech_status plan_new(const mech_rasp_program *p, const mech_rasp_limits *lim, rasp_plan **out, mech_err *err) {
    *out = NULL;
    rasp_plan *pl = mech_calloc(1, sizeof *pl);
    if (!pl) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    pl->lim = lim;
    pl->max_values = lim && lim->max_values > 0 ? lim->max_values : lim ? MECH_RASP_MAX_VALUES : INT32_MAX;
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
        if (cancelled(pl)) {
            rc = mech_err_set(err, MECH_ERR_CANCELLED, "%s: compile interrupted", mech_rasp_program_path(p));
            goto fail;
        }
        if ((i & 255) == 0) progress(pl, "planning", i, pl->n);
        if ((rc = infer(pl, i, err))) goto fail;
        const mech_rasp_node *n = mech_rasp_program_node(p, i);
        pnode *pn = &pl->nodes[i];
        pn->bos_val = -1;
        int ms = n->n_in ? max_in_stage(pl, n) : -1;
        if (ms == -4) {
            const mech_rasp_node *sel = mech_rasp_program_node(p, pl->too_big);
            rc = node_error(pl, n, err, "its selector '%s' combines selectors over different s-ops, whose pairs of "
                            "values take %lld values, more than the limit of %lld values per s-op (mech compile "
                            "--max-values raises it)", sel->label, (long long)pl->too_big_n, (long long)pl->max_values);
            goto fail;
        }
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
    // Before labels, blocks and weights: is the model within the limits?
    if (lim && (rc = plan_check(pl, err))) goto fail;
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
// Size: the model's shape from the plan alone, before anything is built

static int ext_side(rasp_plan *pl, int sel, int side) {
    int id = sel_side(pl, sel, side);
    return id < 0 ? 1 : ext_n(pl, id);
}

static int out_dim(const rasp_plan *pl, int id, const mech_rasp_value *v);

// The config the plan's blocks will assemble into (exactly: the blocks'
// widths are computed as the constructors in blocks.c will make them).
static mech_status plan_config(rasp_plan *pl, mech_config *cfg, mech_err *err) {
    int L = pl->n_layers;
    int64_t *heads = mech_calloc((size_t)L, sizeof *heads), *hidden = mech_calloc((size_t)L, sizeof *hidden);
    if (!heads || !hidden) {
        mech_free(heads), mech_free(hidden);
        return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", mech_rasp_program_path(pl->p));
    }
    int64_t d_head = 1, nh = 1, dm = 1;
    for (int i = 0; i < pl->n_all; i++) {
        const pnode *pn = &pl->nodes[i];
        int64_t h = 0, dq = 0, dv = 0;
        int att = -1;
        if (i >= pl->n) {
            h = pn->vs.n ? pn->vs.n : 1;
        } else {
            const mech_rasp_node *n = mech_rasp_program_node(pl->p, i);
            int N = pl->N;
            switch (n->kind) {
            case MECH_RASP_MAP: {
                const mech_rasp_node *in = mech_rasp_program_node(pl->p, n->in[0]);
                int64_t nv = pl->nodes[n->in[0]].vs.n;
                if (in->enc == MECH_RASP_CATEGORICAL) {
                    h = n->enc == MECH_RASP_NUMERICAL ? 2 : nv;
                } else {
                    // a unit, and two per step where the output changes (block_map_num)
                    h = 1;
                    mech_rasp_value prev = mech_rasp_none(), cur;
                    for (int64_t k = 0; k < nv; k++, prev = cur) {
                        mech_status st = apply(pl, n, n->fn, &pl->nodes[n->in[0]].vs.v[k], 1, &cur, err);
                        if (st) {
                            mech_free(heads), mech_free(hidden);
                            return st;
                        }
                        if (!k) continue;
                        if (n->enc == MECH_RASP_NUMERICAL ? num(&cur) != num(&prev)
                                                          : out_dim(pl, i, &cur) != out_dim(pl, i, &prev))
                            h += 2;
                    }
                }
                break;
            }
            case MECH_RASP_ZIPMAP:
                if (mech_rasp_program_node(pl->p, n->in[0])->enc == MECH_RASP_NUMERICAL) {
                    h = 2 * n->n_in + 1;
                } else {
                    h = 1;
                    for (int a = 0; a < n->n_in; a++) h *= pl->nodes[n->in[a]].vs.n;
                }
                break;
            case MECH_RASP_AGGREGATE:
                att = pn->stage / 2;
                dq = ext_side(pl, n->in[0], 1) + 1;
                dv = (n->enc == MECH_RASP_NUMERICAL ? 1 : pl->nodes[n->in[1]].vs.n) + 1;
                break;
            case MECH_RASP_SELECTOR_WIDTH:
            case MECH_RASP_LENGTH:
                att = pn->att_stage / 2;
                dq = n->kind == MECH_RASP_LENGTH ? 2 : ext_side(pl, n->in[0], 1) + 1;
                dv = 1;
                h = 2 * (int64_t)N + 1;
                break;
            default: break;
            }
        }
        if (h > 0 && pn->stage >= 0) hidden[pn->stage / 2] += h;
        if (att >= 0) {
            heads[att]++;
            if (dq > d_head) d_head = dq;
            if (dv > d_head) d_head = dv;
        }
    }
    for (int l = 0; l < L; l++) {
        if (heads[l] > nh) nh = heads[l];
        if (hidden[l] > dm) dm = hidden[l];
    }
    mech_free(heads), mech_free(hidden);
    size_t nv;
    mech_rasp_program_vocab(pl->p, &nv);
    int out = mech_rasp_program_output(pl->p);
    int64_t V = (int64_t)nv + 2,
            n_out = mech_rasp_program_node(pl->p, out)->enc == MECH_RASP_NUMERICAL ? 1 : pl->nodes[out].vs.n;
    if (n_out > V) V = n_out;
    memset(cfg, 0, sizeof *cfg);
    // saturate: the checks below report the size, they must not wrap
    cfg->n_layers = L, cfg->n_heads = (int)(nh < INT32_MAX ? nh : INT32_MAX);
    cfg->d_model = pl->C, cfg->d_head = (int)(d_head < INT32_MAX ? d_head : INT32_MAX);
    cfg->d_mlp = (int)(dm < INT32_MAX ? dm : INT32_MAX), cfg->n_ctx = pl->N + 1;
    cfg->d_vocab = (int)(V < INT32_MAX ? V : INT32_MAX);
    cfg->act = MECH_ACT_RELU, cfg->norm = MECH_NORM_NONE, cfg->causal = mech_rasp_program_causal(pl->p);
    cfg->ln_eps = 1e-5f;
    return MECH_OK;
}

// Physical memory in bytes, or 0 when unknown.
static double phys_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && size > 0 ? (double)pages * size : 0;
}

static mech_status plan_check(rasp_plan *pl, mech_err *err) {
    const char *path = mech_rasp_program_path(pl->p);
    mech_config cfg;
    mech_status st = plan_config(pl, &cfg, err);
    if (st) return st;
    mech_err e = {0};
    char shape[200];
    snprintf(shape, sizeof shape, "%d layer%s, %d head%s of width %d, d_model %d, d_mlp %d, vocab %d, context %d",
             cfg.n_layers, cfg.n_layers == 1 ? "" : "s", cfg.n_heads, cfg.n_heads == 1 ? "" : "s", cfg.d_head,
             cfg.d_model, cfg.d_mlp, cfg.d_vocab, cfg.n_ctx);
    if (mech_config_validate(&cfg, &e)) {
        const char *why = strncmp(e.msg, "config: ", 8) ? e.msg : e.msg + 8;
        return mech_err_set(err, MECH_ERR_RANGE, "%s: the program needs a model (%s) beyond what mech can hold: %s",
                            path, shape, why);
    }
    double params = (double)mech_config_n_params(&cfg);
    int64_t max = pl->lim->max_params > 0 ? pl->lim->max_params : MECH_RASP_MAX_PARAMS;
    if (params > (double)max)
        return mech_err_set(err, MECH_ERR_RANGE, "%s: the compiled model would have %.0f parameters (%.1f GB as float32; "
                            "%s), more than the limit of %lld (mech compile --max-params raises it)",
                            path, params, params * 4 / 1e9, shape, (long long)max);
    // Building holds the blocks and the model at once: at most twice the model.
    double need = params * 4 * 2, have = phys_bytes();
    if (have > 0 && need > 0.8 * have)
        return mech_err_set(err, MECH_ERR_NOMEM, "%s: compiling needs about %.1f GB for a model of %.0f parameters (%s), "
                            "but this machine has %.1f GB", path, need / 1e9, params, shape, have / 1e9);
    return MECH_OK;
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

// Takes ownership of h's arrays (freed here when it fails).
static int push_head(emitter *e, build_head h) {
    if (!build_head_ok(&h)) goto fail;
    if (e->b.n_heads == e->cap_heads) {
        int nc = e->cap_heads ? 2 * e->cap_heads : 8;
        build_head *g = mech_realloc(e->b.heads, (size_t)nc * sizeof *g);
        if (!g) goto fail;
        e->b.heads = g, e->cap_heads = nc;
    }
    e->b.heads[e->b.n_heads++] = h;
    return 0;
fail:
    mech_free(h.wq), mech_free(h.wk), mech_free(h.wv), mech_free(h.wo);
    return -1;
}

// Takes ownership of m's arrays (freed here when it fails).
static int push_mlp(emitter *e, build_mlp m) {
    if (!build_mlp_ok(&m)) goto fail;
    if (e->b.n_mlps == e->cap_mlps) {
        int nc = e->cap_mlps ? 2 * e->cap_mlps : 8;
        build_mlp *g = mech_realloc(e->b.mlps, (size_t)nc * sizeof *g);
        if (!g) goto fail;
        e->b.mlps = g, e->cap_mlps = nc;
    }
    e->b.mlps[e->b.n_mlps++] = m;
    return 0;
fail:
    mech_free(m.w_in), mech_free(m.b_in), mech_free(m.w_out), mech_free(m.b_out);
    return -1;
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
            if (numerical_out && build_mlp_ok(&m))
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
        if (cancelled(pl)) {
            st = mech_err_set(err, MECH_ERR_CANCELLED, "%s: compile interrupted", mech_rasp_program_path(pl->p));
            goto done;
        }
        if ((i & 63) == 0) progress(pl, "building", i, pl->n);
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
    return mech_rasp_compile_limited(p, NULL, out, err);
}

mech_status mech_rasp_compile_limited(const mech_rasp_program *p, const mech_rasp_limits *lim, mech_rasp_compiled **out,
                                      mech_err *err) {
    static const mech_rasp_limits defaults = {0};
    *out = NULL;
    rasp_plan *pl = NULL;
    mech_status st = plan_new(p, lim ? lim : &defaults, &pl, err);
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
    bad |= meta_add(c, "mech.rasp.vocab", buf_take(&b));
    b = (mech_buf){0};
    mech_buf_printf(&b, "%d", pl->N);
    bad |= meta_add(c, "mech.rasp.max_seq_len", buf_take(&b));
    bad |= meta_add(c, "mech.rasp.causal", mech_strdup(mech_rasp_program_causal(p) ? "true" : "false"));
    b = (mech_buf){0};
    mech_buf_printf(&b, "{\"bos\": 0, \"vocab\": [1, %zu], \"pad\": %zu}", nv, nv + 1);
    bad |= meta_add(c, "mech.rasp.tokens", buf_take(&b));
    b = (mech_buf){0};
    mech_buf_puts(&b, "[");
    for (int i = 0; i < pl->C; i++) {
        if (i) mech_buf_puts(&b, ", ");
        mech_buf_json_string(&b, pl->labels[i], strlen(pl->labels[i]));
    }
    mech_buf_puts(&b, "]");
    bad |= meta_add(c, "mech.rasp.residual", buf_take(&b));
    int outn = mech_rasp_program_output(p);
    const mech_rasp_node *on = mech_rasp_program_node(p, outn);
    b = (mech_buf){0};
    mech_buf_puts(&b, "{\"node\": ");
    mech_buf_json_string(&b, on->label, strlen(on->label));
    mech_buf_printf(&b, ", \"encoding\": \"%s\", \"values\": ",
                    on->enc == MECH_RASP_NUMERICAL ? "numerical" : "categorical");
    mech_rasp_values_json(&b, pl->nodes[outn].vs.v, (size_t)pl->nodes[outn].vs.n);
    mech_buf_puts(&b, "}");
    bad |= meta_add(c, "mech.rasp.readout", buf_take(&b));
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
    mech_status st = plan_new(p, NULL, &r->pl, err);
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

// The cost of one input of n tokens, in multiply-adds of a matmul: the
// model's matmuls (T = n + 1 with BOS), its attention (per head and pair of
// positions: q.k, the softmax's exp and the stored pattern, measured at
// about 100 multiply-adds' time besides the 2 d_head of the products), and
// the interpreter (selectors and aggregates are n x n; a step per node and
// pair, also measured at about 100).
static double input_cost(const mech_model *m, int n_nodes, int n) {
    const mech_config *c = &m->cfg;
    double T = n + 1, C = c->d_model, A = (double)c->n_heads * c->d_head, M = c->d_mlp, V = c->d_vocab;
    double per_token = c->n_layers * (C * 3 * A + A * C + 2 * C * M) + V * C;
    return T * per_token + c->n_layers * (double)c->n_heads * (2.0 * c->d_head + 100) * T * T +
           100.0 * n_nodes * n * n;
}

// The inputs verification runs: `count` inputs of each length in lens.
typedef struct vgroup {
    int len;
    double count;
} vgroup;

// Plans the verification within opts' cost: every input when there are at
// most 100,000 and they fit; else about 10,000 seeded random ones spread
// over every length; else as many as fit, their lengths spread evenly up to
// max_seq_len. groups (owned) gets the plan, n_groups its size.
static mech_status verify_plan(const mech_rasp_program *p, const mech_model *m, const mech_rasp_verify_opts *o,
                               mech_rasp_verify_result *res, vgroup **groups, int *n_groups, mech_err *err) {
    size_t nv;
    mech_rasp_program_vocab(p, &nv);
    int N = mech_rasp_program_max_seq_len(p), nodes = mech_rasp_program_n_nodes(p);
    double max_cost = o && o->max_cost > 0 ? o->max_cost : MECH_RASP_VERIFY_COST;
    memset(res, 0, sizeof *res);
    vgroup *g = mech_calloc((size_t)N, sizeof *g);
    if (!g) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    double all = 0, all_cost = 0, per = ceil(10000.0 / N), sampled_cost = 0;
    for (int n = 1; n <= N; n++) {
        double k = pow((double)nv, n), c = input_cost(m, nodes, n);
        all += k, all_cost += k * c;
        sampled_cost += per * c;
    }
    res->all_inputs = all, res->exhaustive_cost = all_cost;
    int ng = 0;
    if (all <= 100000 && all_cost <= max_cost) {
        for (int n = 1; n <= N; n++) g[ng++] = (vgroup){n, pow((double)nv, n)};
        res->exhaustive = 1, res->cost = all_cost;
    } else if (sampled_cost <= max_cost) {
        for (int n = 1; n <= N; n++) g[ng++] = (vgroup){n, per};
        res->cost = sampled_cost;
    } else {
        // S inputs, the i-th of length ceil((i + 1) N / S): the largest S that fits
        int lo = 0, hi = (int)(per * N < 10000 ? per * N : 10000);
        while (lo < hi) {
            int S = lo + (hi - lo + 1) / 2;
            double cost = 0;
            for (int i = 0; i < S; i++) cost += input_cost(m, nodes, (int)(((int64_t)(i + 1) * N + S - 1) / S));
            if (cost <= max_cost) lo = S;
            else hi = S - 1;
        }
        if (lo == 0) {
            mech_free(g);
            return mech_err_set(err, MECH_ERR_RANGE, "%s: verifying even one input of length %d takes about %.3g "
                                "multiply-adds, more than the limit of %.3g (mech compile --max-verify raises it, "
                                "--no-verify skips verification)", mech_rasp_program_path(p), N, input_cost(m, nodes, N),
                                max_cost);
        }
        for (int i = 0; i < lo; i++) {
            int len = (int)(((int64_t)(i + 1) * N + lo - 1) / lo);
            if (ng && g[ng - 1].len == len) g[ng - 1].count++;
            else g[ng++] = (vgroup){len, 1};
            res->cost += input_cost(m, nodes, len);
        }
    }
    for (int i = 0; i < ng; i++) res->total += (size_t)g[i].count;
    *groups = g, *n_groups = ng;
    return MECH_OK;
}

mech_status mech_rasp_verify_estimate(const mech_rasp_program *p, const mech_model *m, const mech_rasp_verify_opts *opts,
                                      mech_rasp_verify_result *res, mech_err *err) {
    vgroup *g = NULL;
    int ng = 0;
    mech_status st = verify_plan(p, m, opts, res, &g, &ng, err);
    mech_free(g);
    return st;
}

mech_status mech_rasp_verify_ex(const mech_rasp_program *p, const mech_model *m, const mech_rasp_verify_opts *opts,
                                mech_rasp_verify_result *res, mech_err *err) {
    size_t nv;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(p, &nv);
    int N = mech_rasp_program_max_seq_len(p);
    vgroup *groups = NULL;
    int n_groups = 0;
    mech_status st = verify_plan(p, m, opts, res, &groups, &n_groups, err);
    if (st) return st;
    mech_rasp_runner *r = NULL;
    if ((st = mech_rasp_runner_new(p, m, &r, err))) {
        mech_free(groups);
        return st;
    }
    // Batches hold at most about 64 MB of activations (attention is T x T).
    const mech_config *c = &m->cfg;
    double T = N + 1, per_input = 4 * (T * (3.0 * c->n_heads * c->d_head + 4.0 * c->d_model + c->d_mlp + c->d_vocab) +
                                       (double)c->n_heads * T * T);
    int BATCH = (int)fmin(256, fmax(1, 64e6 / per_input));
    mech_rasp_value *in = mech_malloc((size_t)BATCH * N * sizeof *in), *got = mech_malloc((size_t)BATCH * N * sizeof *got);
    if (!in || !got) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    uint64_t rng = opts ? opts->seed : 0;
    size_t done = 0;
    for (int gi = 0; gi < n_groups && !st; gi++) {
        int n = groups[gi].len;
        size_t count = (size_t)groups[gi].count;
        for (size_t at = 0; at < count && !st; at += (size_t)BATCH) {
            if (opts && opts->cancel && *opts->cancel) {
                st = mech_err_set(err, MECH_ERR_CANCELLED, "verification interrupted after %zu of %zu inputs", done,
                                  res->total);
                break;
            }
            int B = (int)(count - at < (size_t)BATCH ? count - at : (size_t)BATCH);
            for (int b = 0; b < B; b++) {
                size_t code = at + (size_t)b;
                for (int t = n - 1; t >= 0; t--) {
                    size_t pick = res->exhaustive ? code % nv : (size_t)(mech_splitmix64(&rng) % nv);
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
                    st = e.code == MECH_ERR_NOMEM ? mech_err_set(err, e.code, "%s", e.msg)
                                                  : mech_err_set(err, e.code, "on input %s the program itself fails:\n%s",
                                                                 x.oom ? "?" : x.data, e.msg);
                } else {
                    mech_rasp_values_json(&a, got + (size_t)b * n, (size_t)n);
                    mech_rasp_values_json(&w, want, (size_t)n);
                    if (x.oom || a.oom || w.oom) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory verifying");
                    else if (strcmp(a.data, w.data) != 0)
                        st = mech_err_set(err, MECH_ERR_FORMAT,
                                          "compiler bug: the model disagrees with the interpreter\n  input:    %s\n"
                                          "  expected: %s\n  model:    %s",
                                          x.data, w.data, a.data);
                    else res->checked++;
                }
                mech_free(want);
                mech_buf_free(&a), mech_buf_free(&w), mech_buf_free(&x);
            }
            done += (size_t)B;
            if (opts && opts->progress) opts->progress(opts->user, (int64_t)done, (int64_t)res->total);
        }
    }
done:
    mech_free(groups);
    mech_free(in);
    mech_free(got);
    mech_rasp_runner_free(r);
    return st;
}

mech_status mech_rasp_verify(const mech_rasp_program *p, const mech_model *m, uint64_t seed, size_t *checked,
                             size_t *exhaustive, mech_err *err) {
    mech_rasp_verify_opts o = {.seed = seed};
    mech_rasp_verify_result res;
    mech_status st = mech_rasp_verify_ex(p, m, &o, &res, err);
    *checked = res.checked;
    *exhaustive = (size_t)res.exhaustive;
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
