/*
** compiler/rasp_eval.c: the reference interpreter. It evaluates the IR DAG
** (not the AST), node by node in id order, so it and the compiler share one
** meaning of every node:
**   tokens, indices, length   the input, 0..n-1, n
**   map / zipmap              the lambda per position; a none input gives
**                             none without calling it
**   select                    pred(key, query) per (query, key); a none key
**                             or query is never selected; causal mode also
**                             drops keys after the query (for every
**                             selector node: select, and, or, not)
**   aggregate, categorical    the value every selected key holds (differing
**                             values are an error), the default when none
**   aggregate, numerical      the mean of the selected values as a float
**                             (bools count as 0/1), the default when none
**   selector_width            how many keys are selected
** Failures name the variable, the position and the values involved.
*/
#include "compiler/rasp_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct trace_impl {
    mech_rasp_trace pub;
    mech_rasp_heap *h;
} trace_impl;

typedef struct evaluator {
    const mech_rasp_program *p;
    size_t n;
    mech_rasp_heap *h;
    mech_rasp_value *vals;  // [n_nodes * n]
    unsigned char **sel;    // [n_nodes], n*n each for selectors
    mech_err *err;
} evaluator;

static const char *who(const mech_rasp_node *x) {
    return x->name ? x->name : x->context ? x->context : x->label;
}

static void append_repr(mech_buf *b, const mech_rasp_value *v) {
    mech_buf t = {0};
    mech_rasp_value_repr(&t, v);
    if (t.data && t.len > 80) mech_buf_printf(b, "%.77s...", t.data);
    else if (t.data) mech_buf_puts(b, t.data);
    mech_buf_free(&t);
}

static mech_status node_fail(evaluator *E, const mech_rasp_node *x, mech_rasp_pos pos, mech_status code, mech_buf *msg) {
    mech_status st = msg->oom ? MECH_ERR_NOMEM : code;
    mech_rasp_error_at(E->p, pos, E->err, st, "in '%s': %s", who(x), msg->data ? msg->data : "out of memory");
    mech_buf_free(msg);
    return st;
}

// A lambda failed: say where, why, and with which arguments.
static mech_status lambda_fail(evaluator *E, const mech_rasp_node *x, const rasp_fail *f, const mech_rasp_value *args,
                               const char *where) {
    if (f->nomem) return mech_err_set(E->err, MECH_ERR_NOMEM, "out of memory");
    mech_buf b = {0};
    mech_buf_printf(&b, "%s %s (", f->msg, where);
    for (int i = 0; i < x->fn->n_params; i++) {
        const char *nm = x->fn->params && x->fn->params[i] ? x->fn->params[i] : "x";
        mech_buf_printf(&b, "%s%s = ", i ? ", " : "", nm);
        append_repr(&b, &args[i]);
    }
    mech_buf_puts(&b, ")");
    return node_fail(E, x, f->has_pos ? f->pos : x->pos, MECH_ERR_TYPE, &b);
}

static mech_status eval_map(evaluator *E, const mech_rasp_node *x, mech_rasp_value *out) {
    mech_rasp_value small[8], *args = small;
    if (x->n_in > 8 && !(args = rasp_alloc(E->h, (size_t)x->n_in * sizeof *args)))
        return mech_err_set(E->err, MECH_ERR_NOMEM, "out of memory");
    for (size_t j = 0; j < E->n; j++) {
        int none = 0;
        for (int k = 0; k < x->n_in; k++) {
            args[k] = E->vals[(size_t)x->in[k] * E->n + j];
            none |= args[k].type == MECH_RASP_NONE;
        }
        if (none) {
            out[j] = mech_rasp_none();
            continue;
        }
        rasp_fail f = {0};
        if (rasp_expr_eval(x->fn->body, args, x->n_in, E->h, &out[j], &f)) {
            char where[64];
            snprintf(where, sizeof where, "at position %zu", j);
            return lambda_fail(E, x, &f, args, where);
        }
    }
    return MECH_OK;
}

static mech_status eval_select(evaluator *E, const mech_rasp_node *x, unsigned char *s) {
    size_t n = E->n;
    const mech_rasp_value *keys = &E->vals[(size_t)x->in[0] * n], *queries = &E->vals[(size_t)x->in[1] * n];
    static const mech_rasp_op ops[] = {[MECH_RASP_PRED_LT] = MECH_RASP_X_LT, [MECH_RASP_PRED_LE] = MECH_RASP_X_LE,
                                       [MECH_RASP_PRED_GT] = MECH_RASP_X_GT, [MECH_RASP_PRED_GE] = MECH_RASP_X_GE};
    for (size_t q = 0; q < n; q++) {
        for (size_t k = 0; k < n; k++) {
            unsigned char on = 0;
            const mech_rasp_value *kv = &keys[k], *qv = &queries[q];
            if ((E->p->causal && k > q) || kv->type == MECH_RASP_NONE || qv->type == MECH_RASP_NONE) {
                s[q * n + k] = 0;
                continue;
            }
            rasp_fail f = {0};
            mech_rasp_value r;
            switch (x->pred) {
            case MECH_RASP_PRED_EQ: on = (unsigned char)mech_rasp_value_eq(kv, qv); break;
            case MECH_RASP_PRED_NE: on = (unsigned char)!mech_rasp_value_eq(kv, qv); break;
            case MECH_RASP_PRED_TRUE: on = 1; break;
            case MECH_RASP_PRED_FALSE: on = 0; break;
            case MECH_RASP_PRED_LAMBDA: {
                mech_rasp_value args[2] = {*kv, *qv};
                if (rasp_expr_eval(x->fn->body, args, 2, E->h, &r, &f)) {
                    char where[80];
                    snprintf(where, sizeof where, "at query %zu, key %zu", q, k);
                    return lambda_fail(E, x, &f, args, where);
                }
                on = (unsigned char)mech_rasp_value_truthy(&r);
                break;
            }
            default:
                if (rasp_binary(ops[x->pred], kv, qv, E->h, &r, &f)) {
                    mech_buf b = {0};
                    mech_buf_printf(&b, "select %s fails at query %zu, key %zu: %s", mech_rasp_pred_name(x->pred), q, k,
                                    f.msg);
                    return node_fail(E, x, x->pos, MECH_ERR_TYPE, &b);
                }
                on = (unsigned char)r.b;
                break;
            }
            s[q * n + k] = on;
        }
    }
    return MECH_OK;
}

static int is_number(const mech_rasp_value *v) {
    return v->type == MECH_RASP_BOOL || v->type == MECH_RASP_INT || v->type == MECH_RASP_FLOAT;
}

static mech_status eval_aggregate(evaluator *E, const mech_rasp_node *x, mech_rasp_value *out) {
    size_t n = E->n;
    const unsigned char *s = E->sel[x->in[0]];
    const mech_rasp_value *v = &E->vals[(size_t)x->in[1] * n];
    for (size_t q = 0; q < n; q++) {
        const unsigned char *row = s + q * n;
        size_t first = n, count = 0;
        double sum = 0;
        for (size_t k = 0; k < n; k++) {
            if (!row[k]) continue;
            if (x->enc == MECH_RASP_NUMERICAL) {
                if (!is_number(&v[k])) {
                    mech_buf b = {0};
                    mech_buf_printf(&b, "numerical aggregate at position %zu selects key %zu, which holds ", q, k);
                    append_repr(&b, &v[k]);
                    mech_buf_puts(&b, ": a numerical aggregate averages numbers");
                    return node_fail(E, x, x->pos, MECH_ERR_TYPE, &b);
                }
                sum += v[k].type == MECH_RASP_FLOAT ? v[k].f : (double)(v[k].type == MECH_RASP_INT ? v[k].i : v[k].b);
            } else if (first < n && !mech_rasp_value_eq(&v[first], &v[k])) {
                mech_buf b = {0};
                mech_buf_printf(&b, "categorical aggregate at position %zu selects differing values: key %zu holds ", q, first);
                append_repr(&b, &v[first]);
                mech_buf_printf(&b, ", key %zu holds ", k);
                append_repr(&b, &v[k]);
                mech_buf_puts(&b, " (a categorical aggregate needs all selected keys to agree; "
                                  "numerical(...) averages instead)");
                return node_fail(E, x, x->pos, MECH_ERR_TYPE, &b);
            }
            if (first == n) first = k;
            count++;
        }
        if (!count) out[q] = x->value;
        else if (x->enc == MECH_RASP_NUMERICAL) {
            double m = sum / (double)count;
            if (!isfinite(m)) {
                mech_buf b = {0};
                mech_buf_printf(&b, "numerical aggregate at position %zu overflows", q);
                return node_fail(E, x, x->pos, MECH_ERR_TYPE, &b);
            }
            out[q] = mech_rasp_float(m);
        } else out[q] = v[first];
    }
    return MECH_OK;
}

static mech_status eval_node(evaluator *E, const mech_rasp_node *x) {
    size_t n = E->n, nn = n * n;
    mech_rasp_value *out = &E->vals[(size_t)x->id * n];
    if (mech_rasp_node_is_selector(x)) {
        unsigned char *s = rasp_alloc(E->h, nn ? nn : 1);
        if (!s) return mech_err_set(E->err, MECH_ERR_NOMEM, "out of memory");
        E->sel[x->id] = s;
        for (size_t j = 0; j < n; j++) out[j] = mech_rasp_none();
        if (x->kind == MECH_RASP_SELECT) return eval_select(E, x, s);
        const unsigned char *a = E->sel[x->in[0]], *b = x->n_in > 1 ? E->sel[x->in[1]] : NULL;
        for (size_t i = 0; i < nn; i++) {
            size_t q = i / n, k = i % n;
            unsigned char on = x->kind == MECH_RASP_SEL_AND ? a[i] && b[i] : x->kind == MECH_RASP_SEL_OR ? a[i] || b[i] : !a[i];
            s[i] = on && !(E->p->causal && k > q);
        }
        return MECH_OK;
    }
    switch (x->kind) {
    case MECH_RASP_TOKENS: return MECH_OK; // filled in by the caller
    case MECH_RASP_INDICES:
        for (size_t j = 0; j < n; j++) out[j] = mech_rasp_int((int64_t)j);
        return MECH_OK;
    case MECH_RASP_LENGTH:
        for (size_t j = 0; j < n; j++) out[j] = mech_rasp_int((int64_t)n);
        return MECH_OK;
    case MECH_RASP_CONST:
        for (size_t j = 0; j < n; j++) out[j] = x->value;
        return MECH_OK;
    case MECH_RASP_MAP:
    case MECH_RASP_ZIPMAP: return eval_map(E, x, out);
    case MECH_RASP_AGGREGATE: return eval_aggregate(E, x, out);
    case MECH_RASP_SELECTOR_WIDTH: {
        const unsigned char *s = E->sel[x->in[0]];
        for (size_t q = 0; q < n; q++) {
            int64_t w = 0;
            for (size_t k = 0; k < n; k++) w += s[q * n + k];
            out[q] = mech_rasp_int(w);
        }
        return MECH_OK;
    }
    default: return mech_err_set(E->err, MECH_ERR_ARG, "internal: node %d has kind %d", x->id, (int)x->kind);
    }
}

// The vocab entry equal to v, or NULL.
static const mech_rasp_value *in_vocab(const mech_rasp_program *p, const mech_rasp_value *v) {
    for (size_t i = 0; i < p->n_vocab; i++)
        if (mech_rasp_value_eq(&p->vocab[i], v)) return &p->vocab[i];
    return NULL;
}

static void vocab_list(mech_buf *b, const mech_rasp_program *p) {
    mech_buf_puts(b, "{");
    for (size_t i = 0; i < p->n_vocab; i++) {
        if (i == 40) {
            mech_buf_printf(b, ", ... (%zu in all)", p->n_vocab);
            break;
        }
        if (i) mech_buf_puts(b, ", ");
        mech_rasp_value_repr(b, &p->vocab[i]);
    }
    mech_buf_puts(b, "}");
}

static mech_status check_input(const mech_rasp_program *p, const mech_rasp_value *input, size_t n, mech_err *err) {
    if (n > (size_t)p->max_seq_len)
        return mech_err_set(err, MECH_ERR_RANGE, "%s: the input has %zu tokens, more than max_seq_len %d", p->path, n,
                            p->max_seq_len);
    for (size_t j = 0; j < n; j++) {
        if (in_vocab(p, &input[j])) continue;
        mech_buf b = {0};
        mech_rasp_value_repr(&b, &input[j]);
        mech_buf_printf(&b, " at position %zu is not in the vocab ", j);
        vocab_list(&b, p);
        mech_err_set(err, MECH_ERR_RANGE, "%s: input token %s", p->path, b.data ? b.data : "?");
        mech_buf_free(&b);
        return MECH_ERR_RANGE;
    }
    return MECH_OK;
}

static mech_status run(const mech_rasp_program *p, const mech_rasp_value *input, size_t n, mech_rasp_heap *h,
                       evaluator *E, mech_err *err) {
    if (!p || (!input && n)) return mech_err_set(err, MECH_ERR_ARG, "mech_rasp_eval: NULL argument");
    mech_status st = check_input(p, input, n, err);
    if (st) return st;
    *E = (evaluator){.p = p, .n = n, .h = h, .err = err};
    E->vals = rasp_alloc(h, (size_t)p->n_nodes * (n ? n : 1) * sizeof *E->vals);
    E->sel = rasp_alloc(h, (size_t)p->n_nodes * sizeof *E->sel);
    if (!E->vals || !E->sel) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (int i = 0; i < p->n_nodes; i++) {
        const mech_rasp_node *x = p->nodes[i];
        if (x->kind == MECH_RASP_TOKENS)
            for (size_t j = 0; j < n; j++) E->vals[(size_t)i * n + j] = *in_vocab(p, &input[j]);
        if ((st = eval_node(E, x))) return st;
    }
    return MECH_OK;
}

// Copies n values and their strings and tuples into one allocation.
static mech_rasp_value *pack(const mech_rasp_value *v, size_t n) {
    size_t head = (n * sizeof *v + 15) & ~(size_t)15, total = head;
    for (size_t i = 0; i < n; i++) total += rasp_value_deep_size(&v[i]);
    mech_rasp_value *out = mech_malloc(total ? total : 1);
    if (!out) return NULL;
    char *pool = (char *)out + head;
    for (size_t i = 0; i < n; i++) out[i] = rasp_value_deep_copy(&v[i], &pool);
    return out;
}

mech_status mech_rasp_eval(const mech_rasp_program *p, const mech_rasp_value *input, size_t n, mech_rasp_value **out,
                           mech_err *err) {
    if (!out) return mech_err_set(err, MECH_ERR_ARG, "mech_rasp_eval: out is NULL");
    *out = NULL;
    mech_rasp_heap *h = mech_rasp_heap_new();
    if (!h) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    evaluator E;
    mech_status st = run(p, input, n, h, &E, err);
    if (!st && !(*out = pack(&E.vals[(size_t)p->output * n], n))) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    mech_rasp_heap_free(h);
    return st;
}

mech_status mech_rasp_eval_trace(const mech_rasp_program *p, const mech_rasp_value *input, size_t n,
                                 mech_rasp_trace **out, mech_err *err) {
    if (!out) return mech_err_set(err, MECH_ERR_ARG, "mech_rasp_eval_trace: out is NULL");
    *out = NULL;
    trace_impl *t = mech_calloc(1, sizeof *t);
    mech_rasp_heap *h = mech_rasp_heap_new();
    if (!t || !h) {
        mech_free(t);
        mech_rasp_heap_free(h);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    evaluator E;
    mech_status st = run(p, input, n, h, &E, err);
    if (st) {
        mech_rasp_heap_free(h);
        mech_free(t);
        return st;
    }
    t->h = h;
    t->pub.n = n;
    t->pub.n_nodes = p->n_nodes;
    t->pub.vals = E.vals;
    t->pub.sel = (const unsigned char *const *)E.sel;
    *out = &t->pub;
    return MECH_OK;
}

void mech_rasp_trace_free(mech_rasp_trace *t) {
    if (!t) return;
    trace_impl *impl = (trace_impl *)t;
    mech_rasp_heap_free(impl->h);
    mech_free(impl);
}

// ---------------------------------------------------------------------------
// Input text

mech_status mech_rasp_input_parse(const mech_rasp_program *p, const char *text, mech_rasp_value **out, size_t *n,
                                  mech_err *err) {
    if (!out || !n || !p || !text) return mech_err_set(err, MECH_ERR_ARG, "mech_rasp_input_parse: NULL argument");
    *out = NULL;
    *n = 0;
    size_t cap = 16, k = 0;
    mech_rasp_value *v = mech_malloc(cap * sizeof *v);
    mech_buf piece = {0};
    mech_status st = MECH_OK;
    if (!v) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    const char *s = text;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v') s++;
        if (!*s) break;
        const char *start = s;
        int quoted = *s == '"' || *s == '\'';
        piece.len = 0;
        mech_buf_append(&piece, "", 0);
        if (quoted) {
            char q = *s++;
            while (*s && *s != q) {
                char c = *s++;
                if (c == '\\' && *s) {
                    c = *s++;
                    if (c == 'n') c = '\n';
                    else if (c == 't') c = '\t';
                    else if (c == 'r') c = '\r';
                }
                mech_buf_append(&piece, &c, 1);
            }
            if (*s != q) {
                st = mech_err_set(err, MECH_ERR_RANGE, "%s: input item %zu: unterminated quote", p->path, k + 1);
                goto done;
            }
            s++;
        } else {
            while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != '\f' && *s != '\v') s++;
            mech_buf_append(&piece, start, (size_t)(s - start));
        }
        if (piece.oom) {
            st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
            goto done;
        }
        const mech_rasp_value *match = NULL;
        mech_rasp_value str = {.type = MECH_RASP_STR, .n = (uint32_t)piece.len, .s = piece.data};
        if (!quoted) {
            // A bare integer is the vocab's int when it has one.
            const char *d = piece.data + (piece.data[0] == '-');
            size_t digits = strspn(d, "0123456789");
            if (digits && !d[digits] && digits < 19) {
                mech_rasp_value iv = mech_rasp_int(strtoll(piece.data, NULL, 10));
                for (size_t i = 0; i < p->n_vocab && !match; i++)
                    if (p->vocab[i].type == MECH_RASP_INT && mech_rasp_value_eq(&p->vocab[i], &iv)) match = &p->vocab[i];
            }
        }
        for (size_t i = 0; i < p->n_vocab && !match; i++)
            if (p->vocab[i].type == MECH_RASP_STR && mech_rasp_value_eq(&p->vocab[i], &str)) match = &p->vocab[i];
        if (!match) {
            mech_buf b = {0};
            vocab_list(&b, p);
            st = mech_err_set(err, MECH_ERR_RANGE, "%s: input token '%.*s' (item %zu) is not in the vocab %s", p->path,
                              (int)(piece.len > 60 ? 60 : piece.len), piece.data, k + 1, b.data ? b.data : "");
            mech_buf_free(&b);
            goto done;
        }
        if (k == (size_t)p->max_seq_len) {
            st = mech_err_set(err, MECH_ERR_RANGE, "%s: the input has more than max_seq_len %d tokens", p->path,
                              p->max_seq_len);
            goto done;
        }
        if (k == cap) {
            mech_rasp_value *g = mech_realloc(v, (cap *= 2) * sizeof *v);
            if (!g) {
                st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
                goto done;
            }
            v = g;
        }
        v[k++] = *match;
    }
    if (!(*out = pack(v, k))) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    else *n = k;
done:
    mech_buf_free(&piece);
    mech_free(v);
    return st;
}
