/*
** compiler/rasp_lower.c: the AST to the IR DAG.
**
** Lowering is an abstract interpretation of the program: every expression
** becomes an lval, which is one of
**   CONST   a value known now (constants fold, with Python's semantics)
**   SOP     an IR node producing a sequence
**   SEL     an IR node producing a selector
**   EXPR    an operator expression over s-ops and constants not yet cut
**           into a node: `length - indices - 1` stays one expression with
**           leaves length and indices until something needs an s-op (an
**           assignment, a function argument), and then becomes one MAP (one
**           distinct leaf) or ZIPMAP (several) node whose lambda is the
**           whole expression. An EXPR without leaves is a constant whose
**           evaluation failed: the failure is reported only if the value
**           is needed, so `x if c else 1/0` behaves as in Python.
**   PRED    a bare comparison operator (select's predicate)
**   LAMBDA  a lambda with the environment it was written in
**   PARAM   a lambda's parameter (only while lowering a lambda's body)
** Calls of defs are expanded in place with the arguments bound to the
** parameters (recursion is an error). Nodes are hash-consed, so identical
** subexpressions are one node. At the end only the nodes the output needs
** are kept, numbered in creation order (which is topological) and labelled.
*/
#include "compiler/rasp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { LV_CONST, LV_SOP, LV_SEL, LV_EXPR, LV_PRED, LV_LAMBDA, LV_PARAM } lv_kind;

typedef struct env env;

typedef struct lval {
    lv_kind k;
    mech_rasp_value v;       // CONST
    rasp_node *n;            // SOP, SEL
    const mech_rasp_expr *e; // EXPR
    int size;                // EXPR: tree size
    int has_var;             // EXPR: refers to a node or a parameter
    int pred;                // PRED
    const rasp_ast *lam;     // LAMBDA
    env *lenv;               // LAMBDA: where it was written
    int param;               // PARAM
} lval;

typedef struct binding {
    const char *name;
    lval v;
    struct binding *next;
} binding;

// Local scopes (a def's body, a lambda's parameters); the globals are the
// fallback after the last parent.
struct env {
    binding *b;
    env *parent;
};

// A string-keyed hash map in the program heap.
typedef struct smap {
    const char **keys;
    void **vals;
    size_t cap, n;
} smap;

typedef struct lower {
    const rasp_src *src;
    mech_rasp_program *p;
    mech_rasp_heap *h;
    smap globals; // name -> lval*
    smap defs;    // name -> rasp_stmt*
    rasp_node **nodes;
    int n_nodes, cap_nodes;
    rasp_node **buckets;
    size_t n_buckets;
    rasp_node *builtin[3]; // tokens, indices, length
    const rasp_stmt *calls[RASP_MAX_CALL_DEPTH];
    int n_calls;
    long work;
    int depth; // lower_expr's recursion, defs' bodies included
    const char *stmt_name;
} lower;

static const char *const builtin_sops[3] = {"tokens", "indices", "length"};

enum {
    F_SELECT, F_AGGREGATE, F_SELECTOR_WIDTH, F_MAP, F_ZIPMAP, F_NUMERICAL, F_CATEGORICAL, F_INDICATOR, F_COUNT
};
static const char *const sop_fns[F_COUNT] = {"select", "aggregate", "selector_width", "map", "zipmap",
                                            "numerical", "categorical", "indicator"};

static lval lower_expr(lower *c, const rasp_ast *a, env *e, int lam);

// ---------------------------------------------------------------------------
// Helpers

// Where expression a starts (binary operators record the operator).
static mech_rasp_pos start_of(const rasp_ast *a) {
    while ((a->kind == A_BINARY || a->kind == A_IF || a->kind == A_INDEX) && a->n) a = a->kids[0];
    return a->pos;
}

static _Noreturn void oom(lower *c) {
    rasp_error(c->src, MECH_ERR_NOMEM, (mech_rasp_pos){c->src->file, 1, 1}, "out of memory");
}

static void *alloc(lower *c, size_t n) {
    void *p = rasp_alloc(c->h, n);
    if (!p) oom(c);
    return p;
}

#define type_error(c, pos, ...) rasp_error((c)->src, MECH_ERR_TYPE, pos, __VA_ARGS__)

static uint64_t str_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static void *smap_get(const smap *m, const char *k) {
    if (!m->cap) return NULL;
    for (size_t i = str_hash(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return NULL;
        if (!strcmp(m->keys[i], k)) return m->vals[i];
    }
}

static void smap_put(lower *c, smap *m, const char *k, void *v) {
    if ((m->n + 1) * 2 > m->cap) {
        smap old = *m;
        m->cap = old.cap ? old.cap * 2 : 64;
        m->keys = alloc(c, m->cap * sizeof *m->keys);
        m->vals = alloc(c, m->cap * sizeof *m->vals);
        m->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.keys[i]) smap_put(c, m, old.keys[i], old.vals[i]);
    }
    size_t i = str_hash(k) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], k)) i = (i + 1) & (m->cap - 1);
    if (!m->keys[i]) m->n++;
    m->keys[i] = k;
    m->vals[i] = v;
}

static const char *describe(const lval *v) {
    switch (v->k) {
    case LV_CONST: return "a constant";
    case LV_SOP: return "an s-op";
    case LV_SEL: return "a selector";
    case LV_EXPR: return v->has_var ? "an s-op" : "a constant";
    case LV_PRED: return "a bare comparison operator";
    case LV_LAMBDA: return "a lambda";
    default: return "a lambda parameter";
    }
}

static int fn_index(const char *name) {
    for (int i = 0; i < F_COUNT; i++)
        if (!strcmp(name, sop_fns[i])) return i;
    return -1;
}

static int value_fn_index(const char *name) {
    for (int i = 0; i < MECH_RASP_FN_COUNT_; i++)
        if (!strcmp(name, rasp_fn_names[i])) return i;
    return -1;
}

static int builtin_index(const char *name) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, builtin_sops[i])) return i;
    return -1;
}

static int is_function_name(lower *c, const char *name) {
    return fn_index(name) >= 0 || value_fn_index(name) >= 0 || smap_get(&c->defs, name);
}

// ---------------------------------------------------------------------------
// "Did you mean": the closest visible name within edit distance 2.

static int edit_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > 40 || nb > 40) return 99;
    int row[41];
    for (size_t j = 0; j <= nb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int prev = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int cur = row[j];
            int best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[nb];
}

static void consider(const char *name, const char *cand, const char **best, int *best_d) {
    int d = edit_distance(name, cand);
    if (d < *best_d && d <= 2 && d < (int)strlen(name)) {
        *best_d = d;
        *best = cand;
    }
}

static const char *suggest(lower *c, env *e, const char *name, int functions) {
    const char *best = NULL;
    int best_d = 99;
    if (functions) {
        for (int i = 0; i < F_COUNT; i++) consider(name, sop_fns[i], &best, &best_d);
        for (int i = 0; i < MECH_RASP_FN_COUNT_; i++) consider(name, rasp_fn_names[i], &best, &best_d);
        for (size_t i = 0; i < c->defs.cap; i++)
            if (c->defs.keys[i]) consider(name, c->defs.keys[i], &best, &best_d);
        return best;
    }
    for (env *x = e; x; x = x->parent)
        for (binding *b = x->b; b; b = b->next) consider(name, b->name, &best, &best_d);
    for (size_t i = 0; i < c->globals.cap; i++)
        if (c->globals.keys[i]) consider(name, c->globals.keys[i], &best, &best_d);
    for (int i = 0; i < 3; i++) consider(name, builtin_sops[i], &best, &best_d);
    consider(name, "max_seq_len", &best, &best_d);
    return best;
}

// ---------------------------------------------------------------------------
// Nodes

static uint64_t node_hash(const rasp_node *n) {
    const mech_rasp_node *p = &n->pub;
    uint64_t h = 0x12345 + (uint64_t)p->kind * 0x9e3779b97f4a7c15ULL + (uint64_t)p->enc * 31 + (uint64_t)p->pred * 7;
    for (int i = 0; i < p->n_in; i++) h = (h ^ (uint64_t)n->ins[i]->index) * 0x100000001b3ULL;
    if (p->fn) h ^= rasp_expr_hash(p->fn->body) + (uint64_t)p->fn->n_params;
    if (p->kind == MECH_RASP_CONST || p->kind == MECH_RASP_AGGREGATE) h ^= mech_rasp_value_hash(&p->value) * 3 + p->value.type;
    return h;
}

static int node_equal(const rasp_node *a, const rasp_node *b) {
    const mech_rasp_node *x = &a->pub, *y = &b->pub;
    if (x->kind != y->kind || x->enc != y->enc || x->pred != y->pred || x->n_in != y->n_in) return 0;
    for (int i = 0; i < x->n_in; i++)
        if (a->ins[i] != b->ins[i]) return 0;
    if (!x->fn != !y->fn) return 0;
    if (x->fn && (x->fn->n_params != y->fn->n_params || !rasp_expr_equal(x->fn->body, y->fn->body))) return 0;
    if ((x->kind == MECH_RASP_CONST || x->kind == MECH_RASP_AGGREGATE) && !rasp_value_same(&x->value, &y->value)) return 0;
    return 1;
}

// The node described by proto (kind, enc, ins, pred, fn, value, pos): an
// existing identical one, or a new one.
static rasp_node *intern(lower *c, const rasp_node *proto) {
    uint64_t h = node_hash(proto);
    if (c->n_buckets) {
        for (rasp_node *n = c->buckets[h & (c->n_buckets - 1)]; n; n = n->next)
            if (n->hash == h && node_equal(n, proto)) return n;
    }
    if (c->n_nodes >= RASP_MAX_NODES)
        type_error(c, proto->pub.pos, "the program needs more than %d nodes", RASP_MAX_NODES);
    rasp_node *n = alloc(c, sizeof *n);
    *n = *proto;
    n->hash = h;
    n->index = c->n_nodes;
    n->name_depth = 1 << 30;
    n->pub.context = c->stmt_name;
    if (proto->pub.n_in) {
        n->ins = alloc(c, (size_t)proto->pub.n_in * sizeof *n->ins);
        memcpy(n->ins, proto->ins, (size_t)proto->pub.n_in * sizeof *n->ins);
    }
    if (c->n_nodes == c->cap_nodes) {
        int cap = c->cap_nodes ? c->cap_nodes * 2 : 64;
        rasp_node **v = alloc(c, (size_t)cap * sizeof *v);
        if (c->n_nodes) memcpy(v, c->nodes, (size_t)c->n_nodes * sizeof *v);
        c->nodes = v;
        c->cap_nodes = cap;
    }
    c->nodes[c->n_nodes++] = n;
    if ((size_t)c->n_nodes > c->n_buckets) {
        size_t nb = c->n_buckets ? c->n_buckets * 4 : 256;
        rasp_node **b = alloc(c, nb * sizeof *b);
        for (int i = 0; i < c->n_nodes; i++) {
            rasp_node *x = c->nodes[i];
            x->next = b[x->hash & (nb - 1)];
            b[x->hash & (nb - 1)] = x;
        }
        c->buckets = b;
        c->n_buckets = nb;
    } else {
        n->next = c->buckets[h & (c->n_buckets - 1)];
        c->buckets[h & (c->n_buckets - 1)] = n;
    }
    return n;
}

static rasp_node proto_of(mech_rasp_kind kind, mech_rasp_enc enc, mech_rasp_pos pos) {
    rasp_node p;
    memset(&p, 0, sizeof p);
    p.pub.kind = kind;
    p.pub.enc = enc;
    p.pub.pos = pos;
    return p;
}

static rasp_node *builtin_node(lower *c, int which, mech_rasp_pos pos) {
    if (!c->builtin[which]) {
        static const mech_rasp_kind kinds[3] = {MECH_RASP_TOKENS, MECH_RASP_INDICES, MECH_RASP_LENGTH};
        rasp_node p = proto_of(kinds[which], MECH_RASP_CATEGORICAL, pos);
        const char *saved = c->stmt_name;
        c->stmt_name = builtin_sops[which];
        rasp_node *n = intern(c, &p);
        c->stmt_name = saved;
        n->pub.name = builtin_sops[which];
        n->name_depth = -1;
        c->builtin[which] = n;
    }
    return c->builtin[which];
}

static rasp_node *const_node(lower *c, mech_rasp_value v, mech_rasp_enc enc, mech_rasp_pos pos) {
    rasp_node p = proto_of(MECH_RASP_CONST, enc, pos);
    p.pub.value = v;
    return intern(c, &p);
}

static void name_node(rasp_node *n, const char *name, int depth) {
    if (!n->pub.name || depth < n->name_depth) {
        n->pub.name = name;
        n->name_depth = depth;
    }
}

// ---------------------------------------------------------------------------
// Expressions (lambda bodies and pending operator expressions)

static mech_rasp_expr *new_expr(lower *c, int op, int n, mech_rasp_pos pos) {
    mech_rasp_expr *e = alloc(c, sizeof *e);
    e->op = (mech_rasp_op)op;
    e->n = n;
    e->pos = pos;
    if (n) e->args = alloc(c, (size_t)n * sizeof *e->args);
    return e;
}

static lval lv_const(mech_rasp_value v) { return (lval){.k = LV_CONST, .v = v}; }
static lval lv_sop(rasp_node *n) { return (lval){.k = mech_rasp_node_is_selector(&n->pub) ? LV_SEL : LV_SOP, .n = n}; }

static const mech_rasp_expr *expr_of(lower *c, const lval *v, mech_rasp_pos pos) {
    mech_rasp_expr *e;
    switch (v->k) {
    case LV_CONST:
        e = new_expr(c, MECH_RASP_X_CONST, 0, pos);
        e->value = v->v;
        return e;
    case LV_SOP:
        e = new_expr(c, RASP_X_LEAF, 0, pos);
        e->param = v->n->index;
        return e;
    case LV_PARAM:
        e = new_expr(c, MECH_RASP_X_PARAM, 0, pos);
        e->param = v->param;
        return e;
    case LV_EXPR: return v->e;
    default: type_error(c, pos, "internal: %s in an expression", describe(v));
    }
}

static int lv_size(const lval *v) { return v->k == LV_EXPR ? v->size : 1; }
static int lv_has_var(const lval *v) { return v->k == LV_SOP || v->k == LV_PARAM || (v->k == LV_EXPR && v->has_var); }

// Evaluates a constant expression; on failure reports it at the operator.
static mech_rasp_value eval_const(lower *c, const mech_rasp_expr *e) {
    rasp_fail f = {0};
    mech_rasp_value out;
    if (rasp_expr_eval(e, NULL, 0, c->h, &out, &f)) {
        if (f.nomem) oom(c);
        rasp_error(c->src, MECH_ERR_TYPE, f.has_pos ? f.pos : e->pos, "%s", f.msg);
    }
    return out;
}

static void reject_in_expr(lower *c, const lval *v, mech_rasp_pos pos) {
    switch (v->k) {
    case LV_SEL:
        type_error(c, pos, "a selector cannot be used in an expression: only 'and', 'or' and 'not' combine selectors");
    case LV_PRED:
        type_error(c, pos, "a bare comparison operator is only allowed as the predicate of select");
    case LV_LAMBDA:
        type_error(c, pos, "a lambda is only allowed as the first argument of map or zipmap, or as the predicate of select");
    default: break;
    }
}

static rasp_node *materialize(lower *c, const lval *v, mech_rasp_enc enc, mech_rasp_pos pos);

// op (or fn) applied to ops[0..n): folds constants, otherwise an EXPR.
static lval combine(lower *c, int op, int fn, lval *ops, int n, mech_rasp_pos pos, int lam) {
    int size = 1;
    for (int i = 0; i < n; i++) {
        reject_in_expr(c, &ops[i], pos);
        size += lv_size(&ops[i]);
    }
    if (!lam && size > RASP_PENDING_SIZE) {
        // Cut large expressions into nodes, so lambdas stay small.
        size = 1;
        for (int i = 0; i < n; i++) {
            if (ops[i].k == LV_EXPR && ops[i].has_var) ops[i] = lv_sop(materialize(c, &ops[i], MECH_RASP_CATEGORICAL, pos));
            size += lv_size(&ops[i]);
        }
    }
    mech_rasp_expr *e = new_expr(c, op, n, pos);
    e->fn = fn;
    int has_var = 0;
    for (int i = 0; i < n; i++) {
        ((const mech_rasp_expr **)e->args)[i] = expr_of(c, &ops[i], pos);
        has_var |= lv_has_var(&ops[i]);
    }
    lval r = {.k = LV_EXPR, .e = e, .size = size, .has_var = has_var};
    if (!has_var) {
        rasp_fail f = {0};
        mech_rasp_value out;
        if (rasp_expr_eval(e, NULL, 0, c->h, &out, &f) == 0) return lv_const(out);
        if (f.nomem) oom(c);
    }
    return r;
}

// Rewrites leaves (IR nodes) into parameters; collects the distinct leaves.
static const mech_rasp_expr *rewrite_leaves(lower *c, const mech_rasp_expr *e, rasp_node **leaves, int *n_leaves) {
    if ((int)e->op == RASP_X_LEAF) {
        int k = 0;
        while (k < *n_leaves && leaves[k]->index != e->param) k++;
        if (k == *n_leaves) leaves[(*n_leaves)++] = c->nodes[e->param];
        mech_rasp_expr *r = new_expr(c, MECH_RASP_X_PARAM, 0, e->pos);
        r->param = k;
        return r;
    }
    if (!e->n) return e;
    const mech_rasp_expr **args = alloc(c, (size_t)e->n * sizeof *args);
    int changed = 0;
    for (int i = 0; i < e->n; i++) {
        args[i] = rewrite_leaves(c, e->args[i], leaves, n_leaves);
        changed |= args[i] != e->args[i];
    }
    if (!changed) return e;
    mech_rasp_expr *r = alloc(c, sizeof *r);
    *r = *e;
    r->args = args;
    return r;
}

static const mech_rasp_lambda *make_lambda(lower *c, const mech_rasp_expr *body, int n_params, const char **names) {
    mech_rasp_lambda *f = alloc(c, sizeof *f);
    f->n_params = n_params;
    f->params = names;
    f->body = body;
    return f;
}

// A MAP or ZIPMAP node computing the pending expression v.
static rasp_node *materialize(lower *c, const lval *v, mech_rasp_enc enc, mech_rasp_pos pos) {
    int cap = v->size + 1;
    rasp_node **leaves = alloc(c, (size_t)cap * sizeof *leaves);
    int n = 0;
    const mech_rasp_expr *body = rewrite_leaves(c, v->e, leaves, &n);
    // Parameters are named after their s-ops (for printing); anonymous or
    // repeated names become x<i>, made distinct from every leaf's name.
    const char **names = alloc(c, (size_t)(n + 1) * sizeof *names);
    for (int i = 0; i < n; i++) {
        const char *nm = leaves[i]->pub.name;
        for (int j = 0; nm && j < i; j++)
            if (!strcmp(names[j], nm)) nm = NULL;
        if (!nm) {
            char buf[64];
            snprintf(buf, sizeof buf, "x%d", i);
            for (int j = 0; j < n; j++) {
                const char *other = j < i ? names[j] : leaves[j]->pub.name;
                if (other && !strcmp(other, buf) && strlen(buf) < sizeof buf - 1) {
                    memmove(buf + 1, buf, strlen(buf) + 1);
                    buf[0] = '_';
                    j = -1; // check the new name against all again
                }
            }
            nm = rasp_strndup(c->h, buf, strlen(buf));
            if (!nm) oom(c);
        }
        names[i] = nm;
    }
    rasp_node p = proto_of(n == 1 ? MECH_RASP_MAP : MECH_RASP_ZIPMAP, enc, pos);
    p.pub.n_in = n;
    p.ins = leaves;
    p.pub.fn = make_lambda(c, body, n, names);
    return intern(c, &p);
}

// The value of v, which must be a constant.
static mech_rasp_value to_value(lower *c, const lval *v, const char *what, mech_rasp_pos pos) {
    if (v->k == LV_CONST) return v->v;
    if (v->k == LV_EXPR && !v->has_var) return eval_const(c, v->e);
    type_error(c, pos, "%s must be a constant, got %s", what, describe(v));
}

// The node holding s-op v (constants are broadcast).
static rasp_node *to_sop(lower *c, const lval *v, const char *what, mech_rasp_pos pos) {
    switch (v->k) {
    case LV_SOP: return v->n;
    case LV_CONST: return const_node(c, v->v, MECH_RASP_CATEGORICAL, pos);
    case LV_EXPR:
        if (v->has_var) return materialize(c, v, MECH_RASP_CATEGORICAL, pos);
        return const_node(c, eval_const(c, v->e), MECH_RASP_CATEGORICAL, pos);
    default: type_error(c, pos, "%s must be an s-op, got %s", what, describe(v));
    }
}

static rasp_node *to_sel(lower *c, const lval *v, const char *what, mech_rasp_pos pos) {
    if (v->k != LV_SEL) type_error(c, pos, "%s must be a selector (made by select), got %s", what, describe(v));
    return v->n;
}

// An assigned or passed value: pending expressions become nodes, failed
// constants are reported.
static lval settle(lower *c, lval v, mech_rasp_pos pos) {
    if (v.k != LV_EXPR) return v;
    if (v.has_var) return lv_sop(materialize(c, &v, MECH_RASP_CATEGORICAL, pos));
    return lv_const(eval_const(c, v.e));
}

// ---------------------------------------------------------------------------
// Names

static lval *lookup(lower *c, env *e, const char *name) {
    for (env *x = e; x; x = x->parent)
        for (binding *b = x->b; b; b = b->next)
            if (!strcmp(b->name, name)) return &b->v;
    return smap_get(&c->globals, name);
}

static void bind(lower *c, env *e, const char *name, lval v) {
    binding *b = alloc(c, sizeof *b);
    b->name = name;
    b->v = v;
    b->next = e->b;
    e->b = b;
}

static _Noreturn void unknown_name(lower *c, env *e, const char *name, mech_rasp_pos pos) {
    if (is_function_name(c, name)) type_error(c, pos, "'%s' is a function: call it as %s(...)", name, name);
    const char *s = suggest(c, e, name, 0);
    if (s) type_error(c, pos, "unknown name '%s' (did you mean '%s'?)", name, s);
    type_error(c, pos, "unknown name '%s'", name);
}

static lval lower_name(lower *c, const rasp_ast *a, env *e, int lam) {
    lval *v = lookup(c, e, a->name);
    if (v) {
        if (!lam) return *v;
        switch (v->k) {
        case LV_PARAM: {
            lval r = {.k = LV_EXPR, .size = 1, .has_var = 1};
            r.e = expr_of(c, v, a->pos);
            return r;
        }
        case LV_CONST: return *v;
        case LV_SOP:
        case LV_SEL:
            type_error(c, a->pos,
                       "the lambda's body refers to %s '%s': a lambda sees only its parameters and constants "
                       "(pass s-ops to zipmap as arguments)",
                       v->k == LV_SOP ? "s-op" : "selector", a->name);
        default: type_error(c, a->pos, "'%s' is %s and cannot be used as a value", a->name, describe(v));
        }
    }
    int b = builtin_index(a->name);
    if (b >= 0) {
        if (lam)
            type_error(c, a->pos,
                       "the lambda's body refers to s-op '%s': a lambda sees only its parameters and constants "
                       "(pass s-ops to zipmap as arguments)",
                       a->name);
        return lv_sop(builtin_node(c, b, a->pos));
    }
    if (!strcmp(a->name, "max_seq_len")) return lv_const(mech_rasp_int(c->p->max_seq_len));
    unknown_name(c, e, a->name, a->pos);
}

// ---------------------------------------------------------------------------
// Lambdas

// Lowers lambda lam's body with its parameters bound to binds[0..n) (PARAM
// or CONST); the result is a CONST or an EXPR over PARAMs.
static lval lower_lambda(lower *c, const lval *lam, const lval *binds, int n, const char *who) {
    const rasp_ast *L = lam->lam;
    if (L->n_params != n)
        type_error(c, L->pos, "%s needs a lambda of %d parameter%s, but this one has %d", who, n, n == 1 ? "" : "s",
                   L->n_params);
    env le = {NULL, lam->lenv};
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < i; j++)
            if (!strcmp(L->params[i], L->params[j]))
                type_error(c, L->param_pos[i], "duplicate parameter '%s'", L->params[i]);
        bind(c, &le, L->params[i], binds[i]);
    }
    lval r = lower_expr(c, L->kids[0], &le, 1);
    if (r.k != LV_CONST && r.k != LV_EXPR) type_error(c, start_of(L->kids[0]), "a lambda must compute a value, not %s", describe(&r));
    return r;
}

// ---------------------------------------------------------------------------
// Built-in s-op functions

static void arity(lower *c, const rasp_ast *a, int lo, int hi, const char *sig) {
    if (a->n < lo || a->n > hi) type_error(c, a->pos, "%s takes %s, got %d argument%s", a->name, sig, a->n, a->n == 1 ? "" : "s");
}

static lval lower_select(lower *c, const rasp_ast *a, env *e) {
    arity(c, a, 3, 3, "3 arguments (keys, queries, predicate)");
    lval k = lower_expr(c, a->kids[0], e, 0), q = lower_expr(c, a->kids[1], e, 0);
    lval pr = lower_expr(c, a->kids[2], e, 0);
    rasp_node p = proto_of(MECH_RASP_SELECT, MECH_RASP_CATEGORICAL, a->pos);
    p.sel_depth = 1;
    rasp_node *ins[2] = {to_sop(c, &k, "select's keys", start_of(a->kids[0])), to_sop(c, &q, "select's queries", start_of(a->kids[1]))};
    p.pub.n_in = 2;
    p.ins = ins;
    if (pr.k == LV_PRED) {
        p.pub.pred = (mech_rasp_pred)pr.pred;
    } else if (pr.k == LV_CONST && pr.v.type == MECH_RASP_BOOL) {
        p.pub.pred = pr.v.b ? MECH_RASP_PRED_TRUE : MECH_RASP_PRED_FALSE;
    } else if (pr.k == LV_LAMBDA) {
        lval binds[2] = {{.k = LV_PARAM, .param = 0}, {.k = LV_PARAM, .param = 1}};
        lval body = lower_lambda(c, &pr, binds, 2, "select");
        const char **names = alloc(c, 2 * sizeof *names);
        names[0] = pr.lam->params[0];
        names[1] = pr.lam->params[1];
        p.pub.pred = MECH_RASP_PRED_LAMBDA;
        p.pub.fn = make_lambda(c, expr_of(c, &body, pr.lam->pos), 2, names);
    } else {
        type_error(c, start_of(a->kids[2]),
                   "select's predicate must be ==, !=, <, <=, >, >=, true, false or a lambda (k, q) -> ..., got %s",
                   describe(&pr));
    }
    return lv_sop(intern(c, &p));
}

static lval lower_aggregate(lower *c, const rasp_ast *a, env *e) {
    arity(c, a, 2, 3, "2 or 3 arguments (selector, s-op[, default])");
    lval s = lower_expr(c, a->kids[0], e, 0), v = lower_expr(c, a->kids[1], e, 0);
    rasp_node *ins[2] = {to_sel(c, &s, "aggregate's first argument", start_of(a->kids[0])),
                         to_sop(c, &v, "aggregate's second argument", start_of(a->kids[1]))};
    mech_rasp_enc enc = ins[1]->pub.enc;
    mech_rasp_value def = enc == MECH_RASP_NUMERICAL ? mech_rasp_float(0) : mech_rasp_none();
    if (a->n == 3) {
        lval d = lower_expr(c, a->kids[2], e, 0);
        def = to_value(c, &d, "aggregate's default", start_of(a->kids[2]));
        if (enc == MECH_RASP_NUMERICAL && (def.type == MECH_RASP_INT || def.type == MECH_RASP_BOOL))
            def = mech_rasp_float(def.type == MECH_RASP_INT ? (double)def.i : def.b);
    }
    rasp_node p = proto_of(MECH_RASP_AGGREGATE, enc, a->pos);
    p.pub.n_in = 2;
    p.ins = ins;
    p.pub.value = def;
    return lv_sop(intern(c, &p));
}

static lval lower_selector_width(lower *c, const rasp_ast *a, env *e) {
    arity(c, a, 1, 1, "1 argument (a selector)");
    lval s = lower_expr(c, a->kids[0], e, 0);
    rasp_node *in = to_sel(c, &s, "selector_width's argument", start_of(a->kids[0]));
    rasp_node p = proto_of(MECH_RASP_SELECTOR_WIDTH, MECH_RASP_CATEGORICAL, a->pos);
    p.pub.n_in = 1;
    p.ins = &in;
    return lv_sop(intern(c, &p));
}

static const lval *lambda_arg(lower *c, const rasp_ast *a, lval *slot, env *e) {
    *slot = lower_expr(c, a->kids[0], e, 0);
    if (slot->k != LV_LAMBDA)
        type_error(c, start_of(a->kids[0]), "%s's first argument must be a lambda such as x -> x + 1, got %s", a->name,
                   describe(slot));
    return slot;
}

// map(f, s) and zipmap(f, s1, ..., sk).
static lval lower_map(lower *c, const rasp_ast *a, env *e, int zip) {
    if (zip) arity(c, a, 2, 1 << 30, "a lambda and at least one s-op");
    else arity(c, a, 2, 2, "2 arguments (a lambda and an s-op)");
    lval fslot;
    const lval *f = lambda_arg(c, a, &fslot, e);
    int k = a->n - 1;
    lval *binds = alloc(c, (size_t)k * sizeof *binds);
    rasp_node **ins = alloc(c, (size_t)k * sizeof *ins);
    const char **names = alloc(c, (size_t)(k + 1) * sizeof *names);
    int n_ins = 0, none = 0;
    for (int i = 0; i < k; i++) {
        const rasp_ast *arg = a->kids[i + 1];
        lval v = lower_expr(c, arg, e, 0);
        if (v.k == LV_CONST || (v.k == LV_EXPR && !v.has_var)) {
            binds[i] = lv_const(to_value(c, &v, "argument", start_of(arg)));
            none |= binds[i].v.type == MECH_RASP_NONE;
            continue;
        }
        char what[64];
        snprintf(what, sizeof what, "%s's argument %d", a->name, i + 2);
        rasp_node *n = to_sop(c, &v, what, start_of(arg));
        int j = 0;
        while (j < n_ins && ins[j] != n) j++;
        if (j == n_ins) {
            ins[n_ins] = n;
            names[n_ins++] = f->lam->n_params == k ? f->lam->params[i] : NULL;
        }
        binds[i] = (lval){.k = LV_PARAM, .param = j};
    }
    lval body = lower_lambda(c, f, binds, k, a->name);
    // none propagates: a none argument makes the result none without a call.
    if (none) return lv_const(mech_rasp_none());
    if (n_ins == 0) return lv_const(to_value(c, &body, "the lambda's result", a->pos));
    rasp_node p = proto_of(n_ins == 1 ? MECH_RASP_MAP : MECH_RASP_ZIPMAP, MECH_RASP_CATEGORICAL, a->pos);
    p.pub.n_in = n_ins;
    p.ins = ins;
    p.pub.fn = make_lambda(c, expr_of(c, &body, f->lam->pos), n_ins, names);
    return lv_sop(intern(c, &p));
}

static mech_rasp_lambda *identity_lambda(lower *c, mech_rasp_pos pos) {
    mech_rasp_lambda *f = alloc(c, sizeof *f);
    const char **names = alloc(c, sizeof *names);
    names[0] = "x";
    mech_rasp_expr *e = new_expr(c, MECH_RASP_X_PARAM, 0, pos);
    f->n_params = 1;
    f->params = names;
    f->body = e;
    return f;
}

// v as an s-op with encoding enc: the node itself when it already has it; a
// copy of it with enc when it computes element-wise (a map's MLP can emit
// either encoding); otherwise an identity map that converts.
static rasp_node *with_encoding(lower *c, const lval *v, mech_rasp_enc enc, const char *who, mech_rasp_pos pos) {
    if (v->k == LV_CONST || (v->k == LV_EXPR && !v->has_var)) return const_node(c, to_value(c, v, "value", pos), enc, pos);
    if (v->k == LV_EXPR) return materialize(c, v, enc, pos);
    if (v->k != LV_SOP) type_error(c, pos, "%s's argument must be an s-op, got %s", who, describe(v));
    rasp_node *n = v->n;
    if (n->pub.enc == enc) return n;
    rasp_node p;
    mech_rasp_kind k = n->pub.kind;
    if (k == MECH_RASP_MAP || k == MECH_RASP_ZIPMAP || k == MECH_RASP_CONST || k == MECH_RASP_SELECTOR_WIDTH) {
        p = *n;
        p.pub.enc = enc;
        p.pub.pos = pos;
        p.pub.name = NULL;
        p.next = NULL;
    } else {
        p = proto_of(MECH_RASP_MAP, enc, pos);
        p.pub.n_in = 1;
        p.ins = &n;
        p.pub.fn = identity_lambda(c, pos);
    }
    return intern(c, &p);
}

static lval lower_encoding(lower *c, const rasp_ast *a, env *e, mech_rasp_enc enc) {
    arity(c, a, 1, 1, "1 argument (an s-op)");
    lval v = lower_expr(c, a->kids[0], e, 0);
    return lv_sop(with_encoding(c, &v, enc, a->name, start_of(a->kids[0])));
}

// indicator(b) = numerical(1 if b else 0)
static lval lower_indicator(lower *c, const rasp_ast *a, env *e) {
    arity(c, a, 1, 1, "1 argument");
    lval ops[3];
    ops[0] = lower_expr(c, a->kids[0], e, 0);
    ops[1] = lv_const(mech_rasp_int(1));
    ops[2] = lv_const(mech_rasp_int(0));
    lval r = combine(c, MECH_RASP_X_IF, 0, ops, 3, a->pos, 0);
    return lv_sop(with_encoding(c, &r, MECH_RASP_NUMERICAL, "indicator", a->pos));
}

// ---------------------------------------------------------------------------
// Calls

static lval expand_def(lower *c, const rasp_stmt *d, const rasp_ast *a, env *e) {
    if (a->n != d->n_params)
        type_error(c, a->pos, "'%s' takes %d argument%s, got %d", d->name, d->n_params, d->n_params == 1 ? "" : "s", a->n);
    for (int i = 0; i < c->n_calls; i++)
        if (c->calls[i] == d)
            type_error(c, a->pos, "recursive call to '%s': defs are expanded at each call, so they cannot call themselves",
                       d->name);
    if (c->n_calls >= RASP_MAX_CALL_DEPTH)
        type_error(c, a->pos, "defs nested more than %d calls deep", RASP_MAX_CALL_DEPTH);
    env local = {NULL, NULL};
    for (int i = 0; i < a->n; i++) bind(c, &local, d->params[i], settle(c, lower_expr(c, a->kids[i], e, 0), start_of(a->kids[i])));
    c->calls[c->n_calls++] = d;
    const char *caller = c->stmt_name;
    for (int i = 0; i < d->n_body; i++) {
        const rasp_stmt *s = d->body[i];
        c->stmt_name = s->name;
        lval v = settle(c, lower_expr(c, s->expr, &local, 0), start_of(s->expr));
        if (v.k == LV_SOP || v.k == LV_SEL) name_node(v.n, s->name, c->n_calls);
        bind(c, &local, s->name, v);
    }
    c->stmt_name = caller;
    lval r = lower_expr(c, d->expr, &local, 0);
    c->n_calls--;
    return r;
}

static lval lower_call(lower *c, const rasp_ast *a, env *e, int lam) {
    int vf = value_fn_index(a->name);
    if (vf >= 0) {
        if (vf == MECH_RASP_FN_MIN || vf == MECH_RASP_FN_MAX) arity(c, a, 1, 1 << 30, "at least 1 argument");
        else if (vf == MECH_RASP_FN_ROUND) arity(c, a, 1, 2, "1 or 2 arguments");
        else arity(c, a, 1, 1, "1 argument");
        lval *ops = alloc(c, (size_t)a->n * sizeof *ops);
        for (int i = 0; i < a->n; i++) ops[i] = lower_expr(c, a->kids[i], e, lam);
        return combine(c, MECH_RASP_X_CALL, vf, ops, a->n, a->pos, lam);
    }
    int f = fn_index(a->name);
    const rasp_stmt *d = smap_get(&c->defs, a->name);
    if (lam && (f >= 0 || d))
        type_error(c, a->pos, "%s() cannot be called inside a lambda: lambdas compute on values, not s-ops", a->name);
    switch (f) {
    case F_SELECT: return lower_select(c, a, e);
    case F_AGGREGATE: return lower_aggregate(c, a, e);
    case F_SELECTOR_WIDTH: return lower_selector_width(c, a, e);
    case F_MAP: return lower_map(c, a, e, 0);
    case F_ZIPMAP: return lower_map(c, a, e, 1);
    case F_NUMERICAL: return lower_encoding(c, a, e, MECH_RASP_NUMERICAL);
    case F_CATEGORICAL: return lower_encoding(c, a, e, MECH_RASP_CATEGORICAL);
    case F_INDICATOR: return lower_indicator(c, a, e);
    default: break;
    }
    if (d) return expand_def(c, d, a, e);
    if (lookup(c, e, a->name) || builtin_index(a->name) >= 0)
        type_error(c, a->pos, "'%s' is not a function", a->name);
    const char *s = suggest(c, e, a->name, 1);
    if (s) type_error(c, a->pos, "unknown function '%s' (did you mean '%s'?)", a->name, s);
    type_error(c, a->pos, "unknown function '%s'", a->name);
}

// ---------------------------------------------------------------------------
// Expressions

static MECH_NOINLINE lval lower_expr_at(lower *c, const rasp_ast *a, env *e, int lam);

// The parser bounds each expression's height, but a def's body is lowered
// inside the expression that calls it, so the recursion is bounded here
// too (errors jump out, so only the normal return unwinds the count).
static lval lower_expr(lower *c, const rasp_ast *a, env *e, int lam) {
    if (++c->work > RASP_MAX_WORK)
        type_error(c, a->pos, "the program is too large once its defs are expanded (more than %d expression steps)",
                   RASP_MAX_WORK);
    if (++c->depth > RASP_MAX_DEPTH)
        type_error(c, a->pos, "expression nested deeper than %d once the defs it calls are expanded", RASP_MAX_DEPTH);
    lval r = lower_expr_at(c, a, e, lam);
    c->depth--;
    return r;
}

// A selector combining ins[0..n): its nesting is bounded so that the
// compiler's walks over selectors (compiler/rasp_compile.c) stay shallow.
static void sel_nesting(lower *c, rasp_node *p, rasp_node *const *ins, int n) {
    int d = 0;
    for (int i = 0; i < n; i++)
        if (ins[i]->sel_depth > d) d = ins[i]->sel_depth;
    p->sel_depth = d + 1;
    if (p->sel_depth > RASP_MAX_DEPTH)
        type_error(c, p->pub.pos, "selectors combined with and/or/not nested deeper than %d", RASP_MAX_DEPTH);
}

// A selector node combining ins[0..n) (kept out of lower_expr_at, whose
// frame is on the stack once per level of nesting).
static MECH_NOINLINE lval sel_combine(lower *c, mech_rasp_kind kind, rasp_node **ins, int n, mech_rasp_pos pos) {
    rasp_node p = proto_of(kind, MECH_RASP_CATEGORICAL, pos);
    p.pub.n_in = n;
    p.ins = ins;
    sel_nesting(c, &p, ins, n);
    return lv_sop(intern(c, &p));
}

static MECH_NOINLINE _Noreturn void logic_mismatch(lower *c, const rasp_ast *a, const lval *ops) {
    type_error(c, a->pos, "'%s' combines two selectors or two values, not %s and %s",
               a->op == MECH_RASP_X_AND ? "and" : "or", describe(&ops[0]), describe(&ops[1]));
}

// Operands live in the heap, not in this frame: it recurses once per level
// of nesting, up to RASP_MAX_DEPTH times.
static MECH_NOINLINE lval lower_expr_at(lower *c, const rasp_ast *a, env *e, int lam) {
    switch (a->kind) {
    case A_CONST: return lv_const(a->value);
    case A_NAME: return lower_name(c, a, e, lam);
    case A_OPREF:
        if (lam) type_error(c, a->pos, "a bare comparison operator is only allowed as the predicate of select");
        return (lval){.k = LV_PRED, .pred = a->op};
    case A_LAMBDA:
        if (lam) type_error(c, a->pos, "lambdas cannot be nested");
        return (lval){.k = LV_LAMBDA, .lam = a, .lenv = e};
    case A_CALL: return lower_call(c, a, e, lam);
    case A_TUPLE:
    case A_INDEX: {
        lval *ops = alloc(c, (size_t)(a->n ? a->n : 1) * sizeof *ops);
        for (int i = 0; i < a->n; i++) ops[i] = lower_expr(c, a->kids[i], e, lam);
        return combine(c, a->kind == A_TUPLE ? MECH_RASP_X_TUPLE : MECH_RASP_X_INDEX, 0, ops, a->n, a->pos, lam);
    }
    case A_UNARY: {
        lval *v = alloc(c, sizeof *v);
        *v = lower_expr(c, a->kids[0], e, lam);
        if (a->op == MECH_RASP_X_NOT && v->k == LV_SEL) return sel_combine(c, MECH_RASP_SEL_NOT, &v->n, 1, a->pos);
        return combine(c, a->op, 0, v, 1, a->pos, lam);
    }
    case A_BINARY: {
        lval *ops = alloc(c, 2 * sizeof *ops);
        ops[0] = lower_expr(c, a->kids[0], e, lam);
        int logic = a->op == MECH_RASP_X_AND || a->op == MECH_RASP_X_OR;
        if (logic && ops[0].k == LV_CONST && mech_rasp_value_truthy(&ops[0].v) == (a->op == MECH_RASP_X_OR))
            return ops[0]; // short-circuit, as Python
        ops[1] = lower_expr(c, a->kids[1], e, lam);
        if (logic && (ops[0].k == LV_SEL || ops[1].k == LV_SEL)) {
            if (ops[0].k != LV_SEL || ops[1].k != LV_SEL) logic_mismatch(c, a, ops);
            rasp_node **ins = alloc(c, 2 * sizeof *ins);
            ins[0] = ops[0].n, ins[1] = ops[1].n;
            return sel_combine(c, a->op == MECH_RASP_X_AND ? MECH_RASP_SEL_AND : MECH_RASP_SEL_OR, ins, 2, a->pos);
        }
        if (logic && ops[0].k == LV_CONST) return ops[1]; // `true and x` is x
        return combine(c, a->op, 0, ops, 2, a->pos, lam);
    }
    case A_IF: {
        lval *ops = alloc(c, 3 * sizeof *ops);
        ops[0] = lower_expr(c, a->kids[1], e, lam);
        if (ops[0].k == LV_CONST) return lower_expr(c, a->kids[mech_rasp_value_truthy(&ops[0].v) ? 0 : 2], e, lam);
        if (ops[0].k == LV_SEL) type_error(c, start_of(a->kids[1]), "the condition of 'x if c else y' cannot be a selector");
        ops[1] = lower_expr(c, a->kids[0], e, lam);
        ops[2] = lower_expr(c, a->kids[2], e, lam);
        return combine(c, MECH_RASP_X_IF, 0, ops, 3, a->pos, lam);
    }
    }
    type_error(c, a->pos, "internal: unknown expression");
}

// ---------------------------------------------------------------------------
// The program

static int cmp_vocab(const void *x, const void *y) {
    const mech_rasp_value *a = *(const mech_rasp_value *const *)x, *b = *(const mech_rasp_value *const *)y;
    int r = mech_rasp_value_order(a, b);
    return r ? r : (a < b ? -1 : a > b);
}

static void pragmas(lower *c, const rasp_ast_program *ast, const rasp_stmt **output) {
    mech_rasp_program *p = c->p;
    const rasp_stmt *vocab = NULL, *maxlen = NULL, *causal = NULL;
    for (int i = 0; i < ast->n; i++) {
        const rasp_stmt *s = ast->stmts[i];
        const rasp_stmt **slot = s->kind == S_VOCAB ? &vocab : s->kind == S_MAXLEN ? &maxlen
                               : s->kind == S_CAUSAL ? &causal : s->kind == S_OUTPUT ? output : NULL;
        if (!slot) continue;
        if (*slot) type_error(c, s->pos, "duplicate pragma (the first one is on line %d)", (*slot)->pos.line);
        *slot = s;
    }
    mech_rasp_pos start = {c->src->file, 1, 1};
    if (!vocab) type_error(c, start, "the program has no vocab pragma: add one such as 'vocab {a, b, c};'");
    if (!maxlen) type_error(c, start, "the program has no max_seq_len pragma: add one such as 'max_seq_len 5;'");
    if (vocab->n_values == 0) type_error(c, vocab->pos, "the vocab is empty");
    if (maxlen->ival < 1 || maxlen->ival > RASP_MAX_SEQ_LEN)
        type_error(c, maxlen->name_pos, "max_seq_len must be from 1 to %d, got %lld", RASP_MAX_SEQ_LEN, (long long)maxlen->ival);
    // Duplicates: sort pointers by value; equal neighbours are duplicates.
    size_t n = (size_t)vocab->n_values;
    const mech_rasp_value **sorted = alloc(c, n * sizeof *sorted);
    for (size_t i = 0; i < n; i++) sorted[i] = &vocab->values[i];
    qsort(sorted, n, sizeof *sorted, cmp_vocab);
    for (size_t i = 1; i < n; i++)
        if (mech_rasp_value_eq(sorted[i - 1], sorted[i])) {
            const mech_rasp_value *later = sorted[i] > sorted[i - 1] ? sorted[i] : sorted[i - 1];
            mech_buf b = {0};
            mech_rasp_value_repr(&b, later);
            char msg[200];
            snprintf(msg, sizeof msg, "%s appears twice in the vocab", b.data ? b.data : "a value");
            mech_buf_free(&b);
            type_error(c, vocab->value_pos[later - vocab->values], "%s", msg);
        }
    p->vocab = vocab->values;
    p->n_vocab = n;
    p->max_seq_len = (int)maxlen->ival;
    p->causal = causal ? (int)causal->ival : 0;
}

static void check_assignable(lower *c, const char *name, mech_rasp_pos pos) {
    if (!strcmp(name, "tokens") || !strcmp(name, "indices") || !strcmp(name, "max_seq_len"))
        type_error(c, pos, "cannot assign to the built-in '%s'", name);
    if (fn_index(name) >= 0 || value_fn_index(name) >= 0)
        type_error(c, pos, "cannot assign to '%s': it is a built-in function", name);
    if (smap_get(&c->defs, name)) type_error(c, pos, "cannot assign to '%s': it is a def", name);
}

static void define(lower *c, const rasp_stmt *s) {
    if (fn_index(s->name) >= 0 || value_fn_index(s->name) >= 0)
        type_error(c, s->name_pos, "cannot define '%s': it is a built-in function", s->name);
    if (builtin_index(s->name) >= 0 || !strcmp(s->name, "max_seq_len"))
        type_error(c, s->name_pos, "cannot define '%s': it is a built-in s-op", s->name);
    const rasp_stmt *old = smap_get(&c->defs, s->name);
    if (old) type_error(c, s->name_pos, "'%s' is already defined on line %d", s->name, old->pos.line);
    if (smap_get(&c->globals, s->name))
        type_error(c, s->name_pos, "cannot define '%s': it is already a variable", s->name);
    for (int i = 0; i < s->n_params; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(s->params[i], s->params[j])) type_error(c, s->param_pos[i], "duplicate parameter '%s'", s->params[i]);
    for (int i = 0; i < s->n_body; i++) check_assignable(c, s->body[i]->name, s->body[i]->name_pos);
    smap_put(c, &c->defs, s->name, (void *)s);
}

// The output node: the named variable, or the last assignment's.
static rasp_node *resolve_output(lower *c, const rasp_stmt *out, const rasp_stmt *last) {
    const char *name = out ? out->name : last ? last->name : NULL;
    mech_rasp_pos pos = out ? out->name_pos : last ? last->name_pos : (mech_rasp_pos){c->src->file, 1, 1};
    if (!name) type_error(c, pos, "the program assigns nothing, so it has no output");
    c->stmt_name = name;
    lval *v = smap_get(&c->globals, name);
    lval b;
    if (!v) {
        int k = builtin_index(name);
        if (k < 0) unknown_name(c, NULL, name, pos);
        b = lv_sop(builtin_node(c, k, pos));
        v = &b;
    }
    if (v->k == LV_CONST) {
        rasp_node *n = const_node(c, v->v, MECH_RASP_CATEGORICAL, pos);
        name_node(n, name, 0);
        return n;
    }
    if (v->k != LV_SOP) type_error(c, pos, "the output '%s' must be an s-op, but it is %s", name, describe(v));
    return v->n;
}

// Keeps the nodes the output needs, numbers and labels them.
static void finish(lower *c, rasp_node *out) {
    mech_rasp_program *p = c->p;
    out->live = 1;
    for (int i = c->n_nodes - 1; i >= 0; i--)
        if (c->nodes[i]->live)
            for (int k = 0; k < c->nodes[i]->pub.n_in; k++) c->nodes[i]->ins[k]->live = 1;
    int n = 0;
    for (int i = 0; i < c->n_nodes; i++)
        if (c->nodes[i]->live) c->nodes[i]->pub.id = n++;
    p->nodes = alloc(c, (size_t)(n ? n : 1) * sizeof *p->nodes);
    p->n_nodes = n;
    smap used = {0};
    for (int i = 0, k = 0; i < c->n_nodes; i++) {
        rasp_node *x = c->nodes[i];
        if (!x->live) continue;
        int *in = alloc(c, (size_t)(x->pub.n_in ? x->pub.n_in : 1) * sizeof *in);
        for (int j = 0; j < x->pub.n_in; j++) in[j] = x->ins[j]->pub.id;
        x->pub.in = in;
        if (!x->pub.context) x->pub.context = x->pub.name;
        p->nodes[k++] = &x->pub;
        // Names are claimed first, in order; the rest get suffixes below.
        if (x->pub.name && !smap_get(&used, x->pub.name)) {
            x->pub.label = x->pub.name;
            smap_put(c, &used, x->pub.label, x);
        }
    }
    for (int k = 0; k < n; k++) {
        mech_rasp_node *x = p->nodes[k];
        if (x->label) continue;
        const char *base = x->name ? x->name : mech_rasp_kind_name(x->kind);
        char buf[160];
        int suffix = x->name ? 2 : x->id;
        do {
            snprintf(buf, sizeof buf, "%.120s_%d", base, suffix++);
        } while (smap_get(&used, buf));
        x->label = rasp_strndup(c->h, buf, strlen(buf));
        if (!x->label) oom(c);
        smap_put(c, &used, x->label, x);
    }
    p->output = out->pub.id;
}

void rasp_lower_program(const rasp_src *src, const rasp_ast_program *ast, mech_rasp_program *p) {
    lower c = {.src = src, .p = p, .h = p->heap};
    const rasp_stmt *output = NULL, *last = NULL;
    pragmas(&c, ast, &output);
    for (int i = 0; i < ast->n; i++) {
        const rasp_stmt *s = ast->stmts[i];
        if (s->kind == S_DEF) {
            define(&c, s);
        } else if (s->kind == S_ASSIGN) {
            check_assignable(&c, s->name, s->name_pos);
            c.stmt_name = s->name;
            lval v = settle(&c, lower_expr(&c, s->expr, NULL, 0), start_of(s->expr));
            if (v.k == LV_SOP || v.k == LV_SEL) name_node(v.n, s->name, 0);
            lval *slot = alloc(&c, sizeof *slot);
            *slot = v;
            smap_put(&c, &c.globals, s->name, slot);
            last = s;
        }
    }
    finish(&c, resolve_output(&c, output, last));
}
