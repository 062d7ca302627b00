/*
** compiler/rasp_expr.c: lambda expressions: the interpreter (Python
** semantics: and/or/if short-circuit, so a branch that is not taken cannot
** fail), structural hashing and equality (for sharing identical nodes), and
** a printer that writes the language's own syntax with minimal parentheses.
*/
#include "compiler/rasp_int.h"

#include <stdio.h>
#include <string.h>

// ---------------------------------------------------------------------------
// Evaluation

static int fail_at(rasp_fail *f, const mech_rasp_expr *e) {
    if (f && !f->has_pos) {
        f->pos = e->pos;
        f->has_pos = 1;
    }
    return -1;
}

int rasp_expr_eval(const mech_rasp_expr *e, const mech_rasp_value *args, int n_args, mech_rasp_heap *h,
                   mech_rasp_value *out, rasp_fail *f) {
    mech_rasp_value a, b;
    switch ((int)e->op) {
    case MECH_RASP_X_CONST: *out = e->value; return 0;
    case MECH_RASP_X_PARAM:
        if (e->param < 0 || e->param >= n_args) {
            rasp_failf(f, "internal: parameter %d of %d", e->param, n_args);
            return fail_at(f, e);
        }
        *out = args[e->param];
        return 0;
    case MECH_RASP_X_NEG:
    case MECH_RASP_X_POS:
    case MECH_RASP_X_NOT:
        if (rasp_expr_eval(e->args[0], args, n_args, h, &a, f)) return -1;
        return rasp_unary(e->op, &a, out, f) ? fail_at(f, e) : 0;
    case MECH_RASP_X_AND:
    case MECH_RASP_X_OR:
        if (rasp_expr_eval(e->args[0], args, n_args, h, &a, f)) return -1;
        if (mech_rasp_value_truthy(&a) == (e->op == MECH_RASP_X_OR)) {
            *out = a;
            return 0;
        }
        return rasp_expr_eval(e->args[1], args, n_args, h, out, f);
    case MECH_RASP_X_IF:
        if (rasp_expr_eval(e->args[0], args, n_args, h, &a, f)) return -1;
        return rasp_expr_eval(e->args[mech_rasp_value_truthy(&a) ? 1 : 2], args, n_args, h, out, f);
    case MECH_RASP_X_INDEX:
        if (rasp_expr_eval(e->args[0], args, n_args, h, &a, f)) return -1;
        if (rasp_expr_eval(e->args[1], args, n_args, h, &b, f)) return -1;
        return rasp_index(&a, &b, h, out, f) ? fail_at(f, e) : 0;
    case MECH_RASP_X_TUPLE:
    case MECH_RASP_X_CALL: {
        mech_rasp_value small[8], *v = small;
        if (e->n > 8 && !(v = rasp_alloc(h, (size_t)e->n * sizeof *v))) {
            if (f) f->nomem = 1;
            rasp_failf(f, "out of memory");
            return fail_at(f, e);
        }
        for (int i = 0; i < e->n; i++)
            if (rasp_expr_eval(e->args[i], args, n_args, h, &v[i], f)) return -1;
        int r = e->op == MECH_RASP_X_TUPLE ? rasp_make_tuple(h, v, (size_t)e->n, out, f)
                                           : rasp_call((mech_rasp_fn)e->fn, v, e->n, h, out, f);
        return r ? fail_at(f, e) : 0;
    }
    default:
        if (e->op >= MECH_RASP_X_ADD && e->op <= MECH_RASP_X_IN) {
            if (rasp_expr_eval(e->args[0], args, n_args, h, &a, f)) return -1;
            if (rasp_expr_eval(e->args[1], args, n_args, h, &b, f)) return -1;
            return rasp_binary(e->op, &a, &b, h, out, f) ? fail_at(f, e) : 0;
        }
        rasp_failf(f, "internal: expression still refers to an s-op");
        return fail_at(f, e);
    }
}

mech_status mech_rasp_lambda_eval(const mech_rasp_lambda *fn, const mech_rasp_value *args, mech_rasp_heap *h,
                                  mech_rasp_value *out, mech_rasp_pos *where, mech_err *err) {
    if (!fn || !fn->body || !h || !out || (fn->n_params && !args))
        return mech_err_set(err, MECH_ERR_ARG, "mech_rasp_lambda_eval: NULL argument");
    rasp_fail f = {0};
    if (rasp_expr_eval(fn->body, args, fn->n_params, h, out, &f) == 0) return MECH_OK;
    if (where) *where = f.pos;
    return mech_err_set(err, f.nomem ? MECH_ERR_NOMEM : MECH_ERR_TYPE, "%s", f.msg);
}

// ---------------------------------------------------------------------------
// Structure

uint64_t rasp_expr_hash(const mech_rasp_expr *e) {
    uint64_t h = 0x9e3779b97f4a7c15ULL * (uint64_t)(e->op + 1);
    h ^= (uint64_t)(e->fn * 131 + e->param * 7 + e->n);
    if (e->op == MECH_RASP_X_CONST) h ^= mech_rasp_value_hash(&e->value) + e->value.type;
    for (int i = 0; i < e->n; i++) h = (h ^ rasp_expr_hash(e->args[i])) * 0x100000001b3ULL;
    return h;
}

int rasp_expr_equal(const mech_rasp_expr *a, const mech_rasp_expr *b) {
    if (a == b) return 1;
    if (a->op != b->op || a->fn != b->fn || a->param != b->param || a->n != b->n) return 0;
    if (a->op == MECH_RASP_X_CONST && !rasp_value_same(&a->value, &b->value)) return 0;
    for (int i = 0; i < a->n; i++)
        if (!rasp_expr_equal(a->args[i], b->args[i])) return 0;
    return 1;
}

int rasp_expr_size(const mech_rasp_expr *e) {
    int s = 1;
    for (int i = 0; i < e->n; i++) s += rasp_expr_size(e->args[i]);
    return s;
}

// ---------------------------------------------------------------------------
// Printing

enum { PREC_IF = 1, PREC_OR, PREC_AND, PREC_NOT, PREC_CMP, PREC_SUM, PREC_TERM, PREC_UNARY, PREC_ATOM };

static int prec_of(const mech_rasp_expr *e) {
    switch ((int)e->op) {
    case MECH_RASP_X_IF: return PREC_IF;
    case MECH_RASP_X_OR: return PREC_OR;
    case MECH_RASP_X_AND: return PREC_AND;
    case MECH_RASP_X_NOT: return PREC_NOT;
    case MECH_RASP_X_ADD:
    case MECH_RASP_X_SUB: return PREC_SUM;
    case MECH_RASP_X_MUL:
    case MECH_RASP_X_DIV:
    case MECH_RASP_X_FLOORDIV:
    case MECH_RASP_X_MOD: return PREC_TERM;
    case MECH_RASP_X_NEG:
    case MECH_RASP_X_POS: return PREC_UNARY;
    case MECH_RASP_X_CONST:
        if ((e->value.type == MECH_RASP_INT && e->value.i < 0) || (e->value.type == MECH_RASP_FLOAT && e->value.f < 0))
            return PREC_UNARY;
        return PREC_ATOM;
    default:
        if (e->op >= MECH_RASP_X_EQ && e->op <= MECH_RASP_X_IN) return PREC_CMP;
        return PREC_ATOM;
    }
}

static void print_expr(mech_buf *b, const mech_rasp_expr *e, const char *const *params, int need) {
    int p = prec_of(e);
    if (p < need) mech_buf_puts(b, "(");
    switch ((int)e->op) {
    case MECH_RASP_X_CONST: mech_rasp_value_repr(b, &e->value); break;
    case MECH_RASP_X_PARAM:
        if (params && params[e->param]) mech_buf_puts(b, params[e->param]);
        else mech_buf_printf(b, "x%d", e->param);
        break;
    case RASP_X_LEAF: mech_buf_printf(b, "%%node%d", e->param); break;
    case MECH_RASP_X_NEG:
    case MECH_RASP_X_POS:
        mech_buf_puts(b, e->op == MECH_RASP_X_NEG ? "-" : "+");
        print_expr(b, e->args[0], params, PREC_UNARY);
        break;
    case MECH_RASP_X_NOT:
        mech_buf_puts(b, "not ");
        print_expr(b, e->args[0], params, PREC_NOT);
        break;
    case MECH_RASP_X_IF:
        print_expr(b, e->args[1], params, PREC_OR);
        mech_buf_puts(b, " if ");
        print_expr(b, e->args[0], params, PREC_OR);
        mech_buf_puts(b, " else ");
        print_expr(b, e->args[2], params, PREC_IF);
        break;
    case MECH_RASP_X_TUPLE:
        mech_buf_puts(b, "(");
        for (int i = 0; i < e->n; i++) {
            if (i) mech_buf_puts(b, ", ");
            print_expr(b, e->args[i], params, PREC_IF);
        }
        mech_buf_puts(b, e->n == 1 ? ",)" : ")");
        break;
    case MECH_RASP_X_INDEX:
        print_expr(b, e->args[0], params, PREC_ATOM);
        mech_buf_puts(b, "[");
        print_expr(b, e->args[1], params, PREC_IF);
        mech_buf_puts(b, "]");
        break;
    case MECH_RASP_X_CALL:
        mech_buf_printf(b, "%s(", e->fn >= 0 && e->fn < MECH_RASP_FN_COUNT_ ? rasp_fn_names[e->fn] : "?");
        for (int i = 0; i < e->n; i++) {
            if (i) mech_buf_puts(b, ", ");
            print_expr(b, e->args[i], params, PREC_IF);
        }
        mech_buf_puts(b, ")");
        break;
    default: {
        // Binary: left-associative; comparisons do not chain.
        int cmp = p == PREC_CMP;
        print_expr(b, e->args[0], params, cmp ? p + 1 : p);
        mech_buf_printf(b, " %s ", rasp_op_text((mech_rasp_op)e->op));
        print_expr(b, e->args[1], params, p + 1);
        break;
    }
    }
    if (p < need) mech_buf_puts(b, ")");
}

void mech_rasp_expr_print(mech_buf *b, const mech_rasp_expr *e, const char *const *params) {
    print_expr(b, e, params, PREC_IF);
}

void mech_rasp_lambda_print(mech_buf *b, const mech_rasp_lambda *f) {
    if (f->n_params == 1) {
        mech_buf_puts(b, f->params && f->params[0] ? f->params[0] : "x0");
    } else {
        mech_buf_puts(b, "(");
        for (int i = 0; i < f->n_params; i++) {
            if (i) mech_buf_puts(b, ", ");
            if (f->params && f->params[i]) mech_buf_puts(b, f->params[i]);
            else mech_buf_printf(b, "x%d", i);
        }
        mech_buf_puts(b, ")");
    }
    mech_buf_puts(b, " -> ");
    mech_rasp_expr_print(b, f->body, f->params);
}
