/*
** compiler/rasp_value.c: RASP values and their operators, with Python's
** semantics (the language's lambdas are Python expressions in Tracr):
** // floors, % takes the divisor's sign, / is true division, round() halves
** to even, 1 == 1.0 == true, comparisons across unrelated types fail.
** Differences, all errors rather than silent surprises: ints are int64 and
** overflow is an error; a float result that is not finite is an error.
** Every operator returns 0, or -1 with the reason in a rasp_fail.
*/
#include "compiler/rasp_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// Heap

struct rasp_chunk {
    struct rasp_chunk *next;
    size_t size;
};

#define CHUNK_HDR ((sizeof(struct rasp_chunk) + 15) & ~(size_t)15)

mech_rasp_heap *mech_rasp_heap_new(void) { return mech_calloc(1, sizeof(mech_rasp_heap)); }

void mech_rasp_heap_free(mech_rasp_heap *h) {
    if (!h) return;
    for (struct rasp_chunk *c = h->head, *next; c; c = next) {
        next = c->next;
        mech_free(c);
    }
    mech_free(h);
}

void *rasp_alloc(mech_rasp_heap *h, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (n > h->left) {
        size_t size = n > 32768 ? n : 32768;
        struct rasp_chunk *c = mech_malloc(CHUNK_HDR + size);
        if (!c) return NULL;
        c->size = size;
        c->next = h->head;
        h->head = c;
        h->p = (char *)c + CHUNK_HDR;
        h->left = size;
    }
    void *r = h->p;
    h->p += n;
    h->left -= n;
    memset(r, 0, n);
    return r;
}

char *rasp_strndup(mech_rasp_heap *h, const char *s, size_t n) {
    char *d = rasp_alloc(h, n + 1);
    if (d && n) memcpy(d, s, n);
    return d;
}

// ---------------------------------------------------------------------------
// Construction

mech_rasp_value mech_rasp_none(void) { return (mech_rasp_value){.type = MECH_RASP_NONE}; }
mech_rasp_value mech_rasp_bool(int b) { return (mech_rasp_value){.type = MECH_RASP_BOOL, .b = !!b}; }
mech_rasp_value mech_rasp_int(int64_t i) { return (mech_rasp_value){.type = MECH_RASP_INT, .i = i}; }
mech_rasp_value mech_rasp_float(double f) { return (mech_rasp_value){.type = MECH_RASP_FLOAT, .f = f}; }

int rasp_failf(rasp_fail *f, const char *fmt, ...) {
    if (f) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->msg, sizeof f->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int nomem(rasp_fail *f) {
    if (f) f->nomem = 1;
    return rasp_failf(f, "out of memory");
}

const char *rasp_type_name(const mech_rasp_value *v) {
    static const char *const names[] = {"none", "bool", "int", "float", "str", "tuple"};
    return v->type <= MECH_RASP_TUPLE ? names[v->type] : "?";
}

int rasp_make_str(mech_rasp_heap *h, const char *s, size_t n, mech_rasp_value *out, rasp_fail *f) {
    if (n > RASP_MAX_STR) return rasp_failf(f, "string of %zu bytes is longer than the limit of %d", n, RASP_MAX_STR);
    char *d = rasp_strndup(h, s, n);
    if (!d) return nomem(f);
    *out = (mech_rasp_value){.type = MECH_RASP_STR, .n = (uint32_t)n, .s = d};
    return 0;
}

int rasp_make_tuple(mech_rasp_heap *h, const mech_rasp_value *items, size_t n, mech_rasp_value *out,
                    rasp_fail *f) {
    if (n > RASP_MAX_TUPLE) return rasp_failf(f, "tuple of %zu items is longer than the limit of %d", n, RASP_MAX_TUPLE);
    int depth = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].depth > depth) depth = items[i].depth;
    if (depth + 1 > RASP_MAX_TUPLE_DEPTH) return rasp_failf(f, "tuples nested deeper than %d", RASP_MAX_TUPLE_DEPTH);
    mech_rasp_value *d = rasp_alloc(h, (n ? n : 1) * sizeof *d);
    if (!d) return nomem(f);
    if (n) memcpy(d, items, n * sizeof *d);
    *out = (mech_rasp_value){.type = MECH_RASP_TUPLE, .depth = (uint8_t)(depth + 1), .n = (uint32_t)n, .t = d};
    return 0;
}

static mech_status fail_to_err(const rasp_fail *f, mech_err *err) {
    return mech_err_set(err, f->nomem ? MECH_ERR_NOMEM : MECH_ERR_ARG, "%s", f->msg);
}

mech_status mech_rasp_value_str(mech_rasp_heap *h, const char *s, size_t n, mech_rasp_value *out, mech_err *err) {
    rasp_fail f = {0};
    if (!h || (!s && n)) return mech_err_set(err, MECH_ERR_ARG, "mech_rasp_value_str: NULL argument");
    return rasp_make_str(h, s ? s : "", n, out, &f) ? fail_to_err(&f, err) : MECH_OK;
}

mech_status mech_rasp_value_tuple(mech_rasp_heap *h, const mech_rasp_value *items, size_t n, mech_rasp_value *out,
                                  mech_err *err) {
    rasp_fail f = {0};
    if (!h || (!items && n)) return mech_err_set(err, MECH_ERR_ARG, "mech_rasp_value_tuple: NULL argument");
    return rasp_make_tuple(h, items, n, out, &f) ? fail_to_err(&f, err) : MECH_OK;
}

// ---------------------------------------------------------------------------
// Equality, hashing, order

static int is_num(const mech_rasp_value *v) {
    return v->type == MECH_RASP_BOOL || v->type == MECH_RASP_INT || v->type == MECH_RASP_FLOAT;
}

static int64_t as_int(const mech_rasp_value *v) { return v->type == MECH_RASP_BOOL ? v->b : v->i; }

static double as_double(const mech_rasp_value *v) {
    return v->type == MECH_RASP_FLOAT ? v->f : (double)as_int(v);
}

// 2^63 as a double: floats in [-2^63, 2^63) convert to int64 exactly when integral.
#define TWO63 9223372036854775808.0

static int float_is_int(double f, int64_t *out) {
    if (f != floor(f) || f < -TWO63 || f >= TWO63) return 0;
    *out = (int64_t)f;
    return 1;
}

// Exact comparison of two numbers: -1, 0, 1.
static int num_cmp(const mech_rasp_value *a, const mech_rasp_value *b) {
    if (a->type != MECH_RASP_FLOAT && b->type != MECH_RASP_FLOAT) {
        int64_t x = as_int(a), y = as_int(b);
        return (x > y) - (x < y);
    }
    if (a->type == MECH_RASP_FLOAT && b->type == MECH_RASP_FLOAT) return (a->f > b->f) - (a->f < b->f);
    // One int, one float: compare exactly, not through a rounding conversion.
    int flip = a->type == MECH_RASP_FLOAT;
    int64_t i = as_int(flip ? b : a);
    double f = flip ? a->f : b->f, fl = floor(f);
    int r;
    if (fl < -TWO63) r = 1;
    else if (fl >= TWO63) r = -1;
    else {
        int64_t fi = (int64_t)fl;
        if (i != fi) r = i < fi ? -1 : 1;
        else r = f > fl ? -1 : 0;
    }
    return flip ? -r : r;
}

static int bytes_cmp(const char *a, size_t na, const char *b, size_t nb) {
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c < 0 ? -1 : 1;
    return (na > nb) - (na < nb);
}

int mech_rasp_value_eq(const mech_rasp_value *a, const mech_rasp_value *b) {
    if (is_num(a) && is_num(b)) return num_cmp(a, b) == 0;
    if (a->type != b->type) return 0;
    switch (a->type) {
    case MECH_RASP_NONE: return 1;
    case MECH_RASP_STR: return a->n == b->n && (a->n == 0 || !memcmp(a->s, b->s, a->n));
    case MECH_RASP_TUPLE:
        if (a->n != b->n) return 0;
        for (uint32_t i = 0; i < a->n; i++)
            if (!mech_rasp_value_eq(&a->t[i], &b->t[i])) return 0;
        return 1;
    default: return 0;
    }
}

int rasp_value_same(const mech_rasp_value *a, const mech_rasp_value *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case MECH_RASP_FLOAT: return a->f == b->f && signbit(a->f) == signbit(b->f);
    case MECH_RASP_TUPLE:
        if (a->n != b->n) return 0;
        for (uint32_t i = 0; i < a->n; i++)
            if (!rasp_value_same(&a->t[i], &b->t[i])) return 0;
        return 1;
    default: return mech_rasp_value_eq(a, b);
    }
}

static uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t mech_rasp_value_hash(const mech_rasp_value *v) {
    switch (v->type) {
    case MECH_RASP_NONE: return 0x6e6f6e65ULL;
    case MECH_RASP_BOOL:
    case MECH_RASP_INT: return mix((uint64_t)as_int(v));
    case MECH_RASP_FLOAT: {
        int64_t i;
        if (float_is_int(v->f, &i)) return mix((uint64_t)i);
        uint64_t bits;
        memcpy(&bits, &v->f, sizeof bits);
        return mix(bits ^ 0x9e3779b97f4a7c15ULL);
    }
    case MECH_RASP_STR: {
        uint64_t h = 0xcbf29ce484222325ULL;
        for (uint32_t i = 0; i < v->n; i++) h = (h ^ (unsigned char)v->s[i]) * 0x100000001b3ULL;
        return mix(h);
    }
    case MECH_RASP_TUPLE: {
        uint64_t h = 0x7475706cULL + v->n;
        for (uint32_t i = 0; i < v->n; i++) h = mix(h * 31 + mech_rasp_value_hash(&v->t[i]));
        return h;
    }
    }
    return 0;
}

static int type_rank(const mech_rasp_value *v) {
    switch (v->type) {
    case MECH_RASP_NONE: return 0;
    case MECH_RASP_STR: return 2;
    case MECH_RASP_TUPLE: return 3;
    default: return 1;
    }
}

int mech_rasp_value_order(const mech_rasp_value *a, const mech_rasp_value *b) {
    int ra = type_rank(a), rb = type_rank(b);
    if (ra != rb) return ra < rb ? -1 : 1;
    switch (ra) {
    case 0: return 0;
    case 1: return num_cmp(a, b);
    case 2: return bytes_cmp(a->s, a->n, b->s, b->n);
    default:
        for (uint32_t i = 0; i < a->n && i < b->n; i++) {
            int c = mech_rasp_value_order(&a->t[i], &b->t[i]);
            if (c) return c;
        }
        return (a->n > b->n) - (a->n < b->n);
    }
}

int mech_rasp_value_truthy(const mech_rasp_value *v) {
    switch (v->type) {
    case MECH_RASP_NONE: return 0;
    case MECH_RASP_BOOL: return v->b;
    case MECH_RASP_INT: return v->i != 0;
    case MECH_RASP_FLOAT: return v->f != 0;
    default: return v->n != 0;
    }
}

// ---------------------------------------------------------------------------
// Printing

void rasp_float_json(char *buf, size_t cap, double v) {
    double a = fabs(v);
    if (v == 0) {
        snprintf(buf, cap, "0");
        return;
    }
    if (a < 1e-5 || a >= 1e16) {
        snprintf(buf, cap, "%.6g", v);
        return;
    }
    int decimals = 5 - (int)floor(log10(a));
    if (decimals < 0) decimals = 0;
    snprintf(buf, cap, "%.*f", decimals, v);
    char *dot = strchr(buf, '.');
    if (dot) {
        char *e = buf + strlen(buf) - 1;
        while (e > dot && *e == '0') *e-- = 0;
        if (e == dot) *e = 0;
    }
    if (!strcmp(buf, "-0")) snprintf(buf, cap, "0");
}

void mech_rasp_value_json(mech_buf *b, const mech_rasp_value *v) {
    char tmp[64];
    switch (v->type) {
    case MECH_RASP_NONE: mech_buf_puts(b, "null"); break;
    case MECH_RASP_BOOL: mech_buf_puts(b, v->b ? "true" : "false"); break;
    case MECH_RASP_INT: mech_buf_printf(b, "%lld", (long long)v->i); break;
    case MECH_RASP_FLOAT:
        rasp_float_json(tmp, sizeof tmp, v->f);
        mech_buf_puts(b, tmp);
        break;
    case MECH_RASP_STR: mech_buf_json_string(b, v->s, v->n); break;
    case MECH_RASP_TUPLE: mech_rasp_values_json(b, v->t, v->n); break;
    }
}

void mech_rasp_values_json(mech_buf *b, const mech_rasp_value *v, size_t n) {
    mech_buf_puts(b, "[");
    for (size_t i = 0; i < n; i++) {
        if (i) mech_buf_puts(b, ",");
        mech_rasp_value_json(b, &v[i]);
    }
    mech_buf_puts(b, "]");
}

void mech_rasp_value_repr(mech_buf *b, const mech_rasp_value *v) {
    char tmp[64];
    switch (v->type) {
    case MECH_RASP_NONE: mech_buf_puts(b, "none"); break;
    case MECH_RASP_BOOL: mech_buf_puts(b, v->b ? "true" : "false"); break;
    case MECH_RASP_INT: mech_buf_printf(b, "%lld", (long long)v->i); break;
    case MECH_RASP_FLOAT:
        rasp_float_json(tmp, sizeof tmp, v->f);
        mech_buf_puts(b, tmp);
        if (!strpbrk(tmp, ".e")) mech_buf_puts(b, ".0");
        break;
    case MECH_RASP_STR:
        mech_buf_puts(b, "\"");
        for (uint32_t i = 0; i < v->n; i++) {
            unsigned char c = (unsigned char)v->s[i];
            if (c == '"' || c == '\\') mech_buf_printf(b, "\\%c", c);
            else if (c == '\n') mech_buf_puts(b, "\\n");
            else if (c == '\t') mech_buf_puts(b, "\\t");
            else if (c == '\r') mech_buf_puts(b, "\\r");
            else if (c < 0x20 || c == 0x7f) mech_buf_printf(b, "\\x%02x", c);
            else mech_buf_append(b, &v->s[i], 1);
        }
        mech_buf_puts(b, "\"");
        break;
    case MECH_RASP_TUPLE:
        mech_buf_puts(b, "(");
        for (uint32_t i = 0; i < v->n; i++) {
            if (i) mech_buf_puts(b, ", ");
            mech_rasp_value_repr(b, &v->t[i]);
        }
        mech_buf_puts(b, v->n == 1 ? ",)" : ")");
        break;
    }
}

// A value's repr for a message, cut to fit.
static const char *repr(const mech_rasp_value *v, char *buf, size_t cap) {
    mech_buf b = {0};
    mech_rasp_value_repr(&b, v);
    if (!b.data) snprintf(buf, cap, "?");
    else if (b.len < cap) snprintf(buf, cap, "%s", b.data);
    else snprintf(buf, cap, "%.*s...", (int)(cap - 4), b.data);
    mech_buf_free(&b);
    return buf;
}

// ---------------------------------------------------------------------------
// Packing (values with their strings and tuples in one allocation)

size_t rasp_value_deep_size(const mech_rasp_value *v) {
    if (v->type == MECH_RASP_STR) return (v->n + 16) & ~(size_t)15;
    if (v->type != MECH_RASP_TUPLE) return 0;
    size_t s = (v->n * sizeof(mech_rasp_value) + 15) & ~(size_t)15;
    for (uint32_t i = 0; i < v->n; i++) s += rasp_value_deep_size(&v->t[i]);
    return s;
}

mech_rasp_value rasp_value_deep_copy(const mech_rasp_value *v, char **pool) {
    mech_rasp_value r = *v;
    if (v->type == MECH_RASP_STR) {
        char *d = *pool;
        if (v->n) memcpy(d, v->s, v->n);
        d[v->n] = 0;
        *pool += (v->n + 16) & ~(size_t)15;
        r.s = d;
    } else if (v->type == MECH_RASP_TUPLE) {
        mech_rasp_value *d = (mech_rasp_value *)(void *)*pool;
        *pool += (v->n * sizeof(mech_rasp_value) + 15) & ~(size_t)15;
        for (uint32_t i = 0; i < v->n; i++) d[i] = rasp_value_deep_copy(&v->t[i], pool);
        r.t = d;
    }
    return r;
}

// ---------------------------------------------------------------------------
// Operators

const char *rasp_op_text(mech_rasp_op op) {
    switch (op) {
    case MECH_RASP_X_ADD: return "+";
    case MECH_RASP_X_SUB: return "-";
    case MECH_RASP_X_MUL: return "*";
    case MECH_RASP_X_DIV: return "/";
    case MECH_RASP_X_FLOORDIV: return "//";
    case MECH_RASP_X_MOD: return "%";
    case MECH_RASP_X_EQ: return "==";
    case MECH_RASP_X_NE: return "!=";
    case MECH_RASP_X_LT: return "<";
    case MECH_RASP_X_LE: return "<=";
    case MECH_RASP_X_GT: return ">";
    case MECH_RASP_X_GE: return ">=";
    case MECH_RASP_X_IN: return "in";
    case MECH_RASP_X_NEG: return "-";
    case MECH_RASP_X_POS: return "+";
    case MECH_RASP_X_NOT: return "not";
    case MECH_RASP_X_AND: return "and";
    case MECH_RASP_X_OR: return "or";
    default: return "?";
    }
}

static int bad_operands(mech_rasp_op op, const mech_rasp_value *a, const mech_rasp_value *b, rasp_fail *f) {
    char x[64], y[64];
    return rasp_failf(f, "unsupported operand types for %s: %s %s and %s %s", rasp_op_text(op), rasp_type_name(a),
                      repr(a, x, sizeof x), rasp_type_name(b), repr(b, y, sizeof y));
}

static int float_result(double r, mech_rasp_value *out, rasp_fail *f) {
    if (!isfinite(r)) return rasp_failf(f, "float overflow");
    *out = mech_rasp_float(r);
    return 0;
}

static int int_overflow(rasp_fail *f) { return rasp_failf(f, "integer overflow (ints are 64-bit)"); }

// Python's float floor division and modulo (Objects/floatobject.c, float_divmod).
static void float_divmod(double a, double b, double *div, double *mod) {
    double m = fmod(a, b);
    double d = (a - m) / b;
    if (m != 0) {
        if ((b < 0) != (m < 0)) {
            m += b;
            d -= 1.0;
        }
    } else {
        m = copysign(0.0, b);
    }
    double fd;
    if (d != 0) {
        fd = floor(d);
        if (d - fd > 0.5) fd += 1.0;
    } else {
        fd = copysign(0.0, a / b);
    }
    *div = fd;
    *mod = m;
}

static int arith(mech_rasp_op op, const mech_rasp_value *a, const mech_rasp_value *b, mech_rasp_value *out,
                 rasp_fail *f) {
    if (a->type != MECH_RASP_FLOAT && b->type != MECH_RASP_FLOAT) {
        int64_t x = as_int(a), y = as_int(b), r;
        switch (op) {
        case MECH_RASP_X_ADD:
            if (__builtin_add_overflow(x, y, &r)) return int_overflow(f);
            break;
        case MECH_RASP_X_SUB:
            if (__builtin_sub_overflow(x, y, &r)) return int_overflow(f);
            break;
        case MECH_RASP_X_MUL:
            if (__builtin_mul_overflow(x, y, &r)) return int_overflow(f);
            break;
        case MECH_RASP_X_DIV:
            if (y == 0) return rasp_failf(f, "division by zero");
            return float_result((double)x / (double)y, out, f);
        case MECH_RASP_X_FLOORDIV:
        case MECH_RASP_X_MOD:
            if (y == 0) return rasp_failf(f, op == MECH_RASP_X_MOD ? "modulo by zero" : "division by zero");
            if (x == INT64_MIN && y == -1) {
                if (op == MECH_RASP_X_FLOORDIV) return int_overflow(f);
                r = 0;
                break;
            }
            {
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {
                    q -= 1;
                    m += y;
                }
                r = op == MECH_RASP_X_FLOORDIV ? q : m;
            }
            break;
        default: return rasp_failf(f, "internal: bad arithmetic operator");
        }
        *out = mech_rasp_int(r);
        return 0;
    }
    double x = as_double(a), y = as_double(b);
    switch (op) {
    case MECH_RASP_X_ADD: return float_result(x + y, out, f);
    case MECH_RASP_X_SUB: return float_result(x - y, out, f);
    case MECH_RASP_X_MUL: return float_result(x * y, out, f);
    case MECH_RASP_X_DIV:
        if (y == 0) return rasp_failf(f, "division by zero");
        return float_result(x / y, out, f);
    case MECH_RASP_X_FLOORDIV:
    case MECH_RASP_X_MOD: {
        if (y == 0) return rasp_failf(f, op == MECH_RASP_X_MOD ? "modulo by zero" : "division by zero");
        double d, m;
        float_divmod(x, y, &d, &m);
        return float_result(op == MECH_RASP_X_FLOORDIV ? d : m, out, f);
    }
    default: return rasp_failf(f, "internal: bad arithmetic operator");
    }
}

// Python's <, for ordering comparisons: -1/0/1, or -2 when a and b cannot
// be ordered (the message is then in f).
static int ordered_cmp(mech_rasp_op op, const mech_rasp_value *a, const mech_rasp_value *b, rasp_fail *f) {
    if (is_num(a) && is_num(b)) return num_cmp(a, b);
    if (a->type == MECH_RASP_STR && b->type == MECH_RASP_STR) return bytes_cmp(a->s, a->n, b->s, b->n);
    if (a->type == MECH_RASP_TUPLE && b->type == MECH_RASP_TUPLE) {
        for (uint32_t i = 0; i < a->n && i < b->n; i++) {
            if (mech_rasp_value_eq(&a->t[i], &b->t[i])) continue;
            return ordered_cmp(op, &a->t[i], &b->t[i], f);
        }
        return (a->n > b->n) - (a->n < b->n);
    }
    char x[64], y[64];
    rasp_failf(f, "cannot compare %s %s and %s %s with %s", rasp_type_name(a), repr(a, x, sizeof x), rasp_type_name(b),
               repr(b, y, sizeof y), rasp_op_text(op));
    return -2;
}

int rasp_binary(mech_rasp_op op, const mech_rasp_value *a, const mech_rasp_value *b, mech_rasp_heap *h,
                mech_rasp_value *out, rasp_fail *f) {
    switch (op) {
    case MECH_RASP_X_ADD:
        if (a->type == MECH_RASP_STR && b->type == MECH_RASP_STR) {
            size_t n = (size_t)a->n + b->n;
            if (n > RASP_MAX_STR) return rasp_failf(f, "string of %zu bytes is longer than the limit of %d", n, RASP_MAX_STR);
            char *d = rasp_alloc(h, n + 1);
            if (!d) return nomem(f);
            if (a->n) memcpy(d, a->s, a->n);
            if (b->n) memcpy(d + a->n, b->s, b->n);
            *out = (mech_rasp_value){.type = MECH_RASP_STR, .n = (uint32_t)n, .s = d};
            return 0;
        }
        if (a->type == MECH_RASP_TUPLE && b->type == MECH_RASP_TUPLE) {
            size_t n = (size_t)a->n + b->n;
            if (n > RASP_MAX_TUPLE) return rasp_failf(f, "tuple of %zu items is longer than the limit of %d", n, RASP_MAX_TUPLE);
            mech_rasp_value *d = rasp_alloc(h, (n ? n : 1) * sizeof *d);
            if (!d) return nomem(f);
            if (a->n) memcpy(d, a->t, a->n * sizeof *d);
            if (b->n) memcpy(d + a->n, b->t, b->n * sizeof *d);
            *out = (mech_rasp_value){.type = MECH_RASP_TUPLE, .depth = a->depth > b->depth ? a->depth : b->depth,
                                     .n = (uint32_t)n, .t = d};
            return 0;
        }
        // fall through
    case MECH_RASP_X_SUB:
    case MECH_RASP_X_MUL:
    case MECH_RASP_X_DIV:
    case MECH_RASP_X_FLOORDIV:
    case MECH_RASP_X_MOD:
        if (!is_num(a) || !is_num(b)) return bad_operands(op, a, b, f);
        return arith(op, a, b, out, f);
    case MECH_RASP_X_EQ: *out = mech_rasp_bool(mech_rasp_value_eq(a, b)); return 0;
    case MECH_RASP_X_NE: *out = mech_rasp_bool(!mech_rasp_value_eq(a, b)); return 0;
    case MECH_RASP_X_LT:
    case MECH_RASP_X_LE:
    case MECH_RASP_X_GT:
    case MECH_RASP_X_GE: {
        int c = ordered_cmp(op, a, b, f);
        if (c == -2) return -1;
        int r = op == MECH_RASP_X_LT ? c < 0 : op == MECH_RASP_X_LE ? c <= 0 : op == MECH_RASP_X_GT ? c > 0 : c >= 0;
        *out = mech_rasp_bool(r);
        return 0;
    }
    case MECH_RASP_X_IN:
        if (b->type == MECH_RASP_TUPLE) {
            int r = 0;
            for (uint32_t i = 0; i < b->n && !r; i++) r = mech_rasp_value_eq(a, &b->t[i]);
            *out = mech_rasp_bool(r);
            return 0;
        }
        if (b->type == MECH_RASP_STR) {
            if (a->type != MECH_RASP_STR) {
                char x[64];
                return rasp_failf(f, "'in <str>' needs a str on the left, got %s %s", rasp_type_name(a), repr(a, x, sizeof x));
            }
            int r = a->n == 0;
            for (uint32_t i = 0; !r && i + a->n <= b->n; i++) r = !memcmp(b->s + i, a->s, a->n);
            *out = mech_rasp_bool(r);
            return 0;
        }
        {
            char y[64];
            return rasp_failf(f, "'in' needs a tuple or str on the right, got %s %s", rasp_type_name(b), repr(b, y, sizeof y));
        }
    default: return rasp_failf(f, "internal: bad binary operator");
    }
}

int rasp_unary(mech_rasp_op op, const mech_rasp_value *a, mech_rasp_value *out, rasp_fail *f) {
    char x[64];
    switch (op) {
    case MECH_RASP_X_NOT: *out = mech_rasp_bool(!mech_rasp_value_truthy(a)); return 0;
    case MECH_RASP_X_NEG:
    case MECH_RASP_X_POS:
        if (!is_num(a))
            return rasp_failf(f, "bad operand type for unary %s: %s %s", rasp_op_text(op), rasp_type_name(a), repr(a, x, sizeof x));
        if (a->type == MECH_RASP_FLOAT) {
            *out = mech_rasp_float(op == MECH_RASP_X_NEG ? -a->f : a->f);
            if (out->f == 0) out->f = 0; // no -0.0
            return 0;
        }
        if (op == MECH_RASP_X_NEG && as_int(a) == INT64_MIN) return int_overflow(f);
        *out = mech_rasp_int(op == MECH_RASP_X_NEG ? -as_int(a) : as_int(a));
        return 0;
    default: return rasp_failf(f, "internal: bad unary operator");
    }
}

// Offset of code point i in s[0..n) (invalid bytes count as one), or -1.
static long utf8_offset(const char *s, size_t n, int64_t i, size_t *cp_len) {
    size_t off = 0;
    for (int64_t k = 0; off < n; k++) {
        size_t l = mech_utf8_len((const unsigned char *)s + off, n - off);
        if (!l) l = 1;
        if (k == i) {
            *cp_len = l;
            return (long)off;
        }
        off += l;
    }
    return -1;
}

static int64_t utf8_count(const char *s, size_t n) {
    int64_t k = 0;
    for (size_t off = 0; off < n; k++) {
        size_t l = mech_utf8_len((const unsigned char *)s + off, n - off);
        off += l ? l : 1;
    }
    return k;
}

int rasp_index(const mech_rasp_value *a, const mech_rasp_value *i, mech_rasp_heap *h, mech_rasp_value *out,
               rasp_fail *f) {
    char x[64];
    if (a->type != MECH_RASP_TUPLE && a->type != MECH_RASP_STR)
        return rasp_failf(f, "%s %s cannot be indexed (only tuples and strings)", rasp_type_name(a), repr(a, x, sizeof x));
    if (i->type != MECH_RASP_INT && i->type != MECH_RASP_BOOL)
        return rasp_failf(f, "index must be an int, got %s %s", rasp_type_name(i), repr(i, x, sizeof x));
    int64_t len = a->type == MECH_RASP_TUPLE ? (int64_t)a->n : utf8_count(a->s, a->n);
    int64_t k = as_int(i);
    if (k < 0 && k >= -len) k += len;
    if (k < 0 || k >= len)
        return rasp_failf(f, "index %lld out of range for %s %s of length %lld", (long long)as_int(i), rasp_type_name(a),
                          repr(a, x, sizeof x), (long long)len);
    if (a->type == MECH_RASP_TUPLE) {
        *out = a->t[k];
        return 0;
    }
    size_t l = 0;
    long off = utf8_offset(a->s, a->n, k, &l);
    return rasp_make_str(h, a->s + off, l, out, f);
}

const char *const rasp_fn_names[MECH_RASP_FN_COUNT_] = {
    [MECH_RASP_FN_ABS] = "abs", [MECH_RASP_FN_MIN] = "min",     [MECH_RASP_FN_MAX] = "max",
    [MECH_RASP_FN_ROUND] = "round", [MECH_RASP_FN_LEN] = "len", [MECH_RASP_FN_INT] = "int",
    [MECH_RASP_FN_FLOAT] = "float", [MECH_RASP_FN_BOOL] = "bool",
};

static int float_to_int(double d, mech_rasp_value *out, rasp_fail *f, const char *what) {
    if (!(d >= -TWO63 && d < TWO63)) return rasp_failf(f, "%s: float %g is out of the int range", what, d);
    *out = mech_rasp_int((int64_t)d);
    return 0;
}

static int do_round(const mech_rasp_value *args, int n, mech_rasp_value *out, rasp_fail *f) {
    char x[64];
    const mech_rasp_value *a = &args[0];
    if (!is_num(a)) return rasp_failf(f, "round() needs a number, got %s %s", rasp_type_name(a), repr(a, x, sizeof x));
    if (n == 1) {
        if (a->type != MECH_RASP_FLOAT) {
            *out = mech_rasp_int(as_int(a));
            return 0;
        }
        return float_to_int(nearbyint(a->f), out, f, "round()");
    }
    const mech_rasp_value *d = &args[1];
    if (d->type != MECH_RASP_INT && d->type != MECH_RASP_BOOL)
        return rasp_failf(f, "round(): ndigits must be an int, got %s %s", rasp_type_name(d), repr(d, x, sizeof x));
    int64_t nd = as_int(d);
    if (a->type != MECH_RASP_FLOAT) {
        int64_t v = as_int(a);
        if (nd >= 0) {
            *out = mech_rasp_int(v);
            return 0;
        }
        if (nd < -18) {
            *out = mech_rasp_int(0);
            return 0;
        }
        int64_t p = 1;
        for (int64_t k = 0; k < -nd; k++) p *= 10;
        int64_t q = v / p, r = v % p;
        if (r < 0) {
            q -= 1;
            r += p;
        }
        if (r * 2 > p || (r * 2 == p && (q & 1))) q += 1; // halves go to the even multiple
        int64_t res;
        if (__builtin_mul_overflow(q, p, &res)) return int_overflow(f);
        *out = mech_rasp_int(res);
        return 0;
    }
    if (nd > 300) {
        *out = *a;
        return 0;
    }
    if (nd >= 0) {
        // printf rounds the exact binary value half to even, as Python does.
        char buf[720]; // 309 integer digits + 300 decimals
        snprintf(buf, sizeof buf, "%.*f", (int)nd, a->f);
        return float_result(strtod(buf, NULL), out, f);
    }
    if (nd < -308) return float_result(0.0, out, f);
    double p = pow(10.0, (double)-nd);
    return float_result(nearbyint(a->f / p) * p, out, f);
}

int rasp_call(mech_rasp_fn fn, const mech_rasp_value *args, int n, mech_rasp_heap *h, mech_rasp_value *out,
              rasp_fail *f) {
    char x[64];
    (void)h;
    const char *name = fn < MECH_RASP_FN_COUNT_ ? rasp_fn_names[fn] : "?";
    int lo = 1, hi = 1;
    if (fn == MECH_RASP_FN_MIN || fn == MECH_RASP_FN_MAX) hi = 1 << 30;
    if (fn == MECH_RASP_FN_ROUND) hi = 2;
    if (n < lo || n > hi) {
        if (lo == hi) return rasp_failf(f, "%s() takes 1 argument, got %d", name, n);
        if (hi == 2) return rasp_failf(f, "%s() takes 1 or 2 arguments, got %d", name, n);
        return rasp_failf(f, "%s() needs at least 1 argument", name);
    }
    const mech_rasp_value *a = &args[0];
    switch (fn) {
    case MECH_RASP_FN_ABS:
        if (!is_num(a)) return rasp_failf(f, "abs() needs a number, got %s %s", rasp_type_name(a), repr(a, x, sizeof x));
        if (a->type == MECH_RASP_FLOAT) return float_result(fabs(a->f), out, f);
        if (as_int(a) == INT64_MIN) return int_overflow(f);
        *out = mech_rasp_int(as_int(a) < 0 ? -as_int(a) : as_int(a));
        return 0;
    case MECH_RASP_FN_MIN:
    case MECH_RASP_FN_MAX: {
        const mech_rasp_value *items = args;
        int k = n;
        if (n == 1) {
            if (a->type != MECH_RASP_TUPLE)
                return rasp_failf(f, "%s() of one argument needs a tuple, got %s %s", name, rasp_type_name(a),
                                  repr(a, x, sizeof x));
            if (a->n == 0) return rasp_failf(f, "%s() of an empty tuple", name);
            items = a->t;
            k = (int)a->n;
        }
        const mech_rasp_value *best = &items[0];
        for (int i = 1; i < k; i++) {
            int c = ordered_cmp(fn == MECH_RASP_FN_MIN ? MECH_RASP_X_LT : MECH_RASP_X_GT, &items[i], best, f);
            if (c == -2) return -1;
            if (fn == MECH_RASP_FN_MIN ? c < 0 : c > 0) best = &items[i];
        }
        *out = *best;
        return 0;
    }
    case MECH_RASP_FN_ROUND: return do_round(args, n, out, f);
    case MECH_RASP_FN_LEN:
        if (a->type == MECH_RASP_TUPLE) *out = mech_rasp_int(a->n);
        else if (a->type == MECH_RASP_STR) *out = mech_rasp_int(utf8_count(a->s, a->n));
        else return rasp_failf(f, "len() needs a tuple or str, got %s %s", rasp_type_name(a), repr(a, x, sizeof x));
        return 0;
    case MECH_RASP_FN_INT:
        if (a->type == MECH_RASP_FLOAT) return float_to_int(trunc(a->f), out, f, "int()");
        if (a->type == MECH_RASP_INT || a->type == MECH_RASP_BOOL) {
            *out = mech_rasp_int(as_int(a));
            return 0;
        }
        if (a->type == MECH_RASP_STR && a->n > 0 && a->n < 32) {
            char buf[32], *end;
            memcpy(buf, a->s, a->n);
            buf[a->n] = 0;
            errno = 0;
            long long v = strtoll(buf, &end, 10);
            if (!*end && !errno && end != buf) {
                *out = mech_rasp_int(v);
                return 0;
            }
        }
        return rasp_failf(f, "int() cannot convert %s %s", rasp_type_name(a), repr(a, x, sizeof x));
    case MECH_RASP_FN_FLOAT:
        if (is_num(a)) return float_result(as_double(a), out, f);
        if (a->type == MECH_RASP_STR && a->n > 0 && a->n < 64) {
            char buf[64], *end;
            memcpy(buf, a->s, a->n);
            buf[a->n] = 0;
            double v = strtod(buf, &end);
            if (!*end && end != buf && isfinite(v)) return float_result(v, out, f);
        }
        return rasp_failf(f, "float() cannot convert %s %s", rasp_type_name(a), repr(a, x, sizeof x));
    case MECH_RASP_FN_BOOL: *out = mech_rasp_bool(mech_rasp_value_truthy(a)); return 0;
    default: return rasp_failf(f, "internal: bad function");
    }
}
