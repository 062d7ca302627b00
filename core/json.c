/*
** core/json.c: an RFC 8259 JSON parser producing a DOM (mech_json).
**
** Invariants and choices:
** - The whole tree lives in one arena of large chunks hung off the root; the
**   root is the first member of a private struct, so mech_json_free(root)
**   releases everything at once. Only roots returned by mech_json_parse may
**   be passed to mech_json_free.
** - Children of an array or object are collected on a shared scratch stack
**   while parsing and copied into the arena as one contiguous block when the
**   container closes: no per-item malloc, no realloc of items.
** - Strings must be valid UTF-8; escapes are decoded, \u0000 is kept (see
**   mech_json.len). A lone or mismatched UTF-16 surrogate in a \u escape is an
**   error (not replaced by U+FFFD), so a round trip never silently changes
**   text.
** - Numbers follow the RFC grammar. is_int is set only for numbers written
**   without fraction or exponent whose value fits int64 (then inum is exact);
**   num always holds the nearest double. Numbers too large for a double
**   (e.g. 1e400) are errors.
** - Nesting deeper than JSON_MAX_DEPTH is an error, so hostile input cannot
**   exhaust the C stack.
** - A UTF-8 byte order mark at the start is skipped; anything but whitespace
**   after the top-level value is an error.
** - Duplicate object keys are kept in order; mech_json_get returns the first.
*/
#include "core/core.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 512

// ---------------------------------------------------------------------------
// Arena

typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    alignas(max_align_t) unsigned char data[];
} chunk;

typedef struct json_root {
    mech_json root; // must stay first: mech_json_free casts back
    chunk *chunks;
    size_t next_cap;
} json_root;

#define ARENA_ALIGN (alignof(max_align_t))

static void *arena_alloc(json_root *r, size_t n) {
    n = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    chunk *c = r->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = r->next_cap;
        if (cap < n) cap = n;
        c = mech_malloc(sizeof(chunk) + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = r->chunks;
        r->chunks = c;
        // Grow geometrically so that a big document needs few chunks.
        if (r->next_cap < ((size_t)64 << 20)) r->next_cap *= 2;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

// ---------------------------------------------------------------------------
// Parser state

typedef struct key_ent {
    char *key;
    size_t len;
} key_ent;

typedef struct parser {
    const unsigned char *s;
    size_t len, pos;
    json_root *root;
    mech_err *err;
    mech_status status;
    mech_json *vals; // scratch stack of finished children
    size_t nvals, capvals;
    key_ent *keys; // scratch stack of object keys
    size_t nkeys, capkeys;
} parser;

static void describe_at(const parser *p, size_t pos, char *out, size_t n) {
    if (pos >= p->len) {
        snprintf(out, n, "end of input");
        return;
    }
    unsigned c = p->s[pos];
    if (c >= 0x20 && c < 0x7F) snprintf(out, n, "'%c'", (char)c);
    else snprintf(out, n, "byte 0x%02X", c);
}

// Records an error at byte offset pos: "line L, column C (byte B): <what>".
static mech_status fail_at(parser *p, size_t pos, mech_status code, const char *what) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos && i < p->len; i++) {
        if (p->s[i] == '\n') line++, col = 1;
        else col++;
    }
    mech_err_set(p->err, code, "JSON line %zu, column %zu (byte %zu): %s", line, col, pos, what);
    p->status = code;
    return code;
}

// "expected X, got Y" at the current position.
static mech_status fail_expected(parser *p, const char *expected) {
    char got[32], msg[256];
    describe_at(p, p->pos, got, sizeof got);
    snprintf(msg, sizeof msg, "expected %s, got %s", expected, got);
    return fail_at(p, p->pos, MECH_ERR_FORMAT, msg);
}

static mech_status fail_nomem(parser *p) {
    return fail_at(p, p->pos, MECH_ERR_NOMEM, "out of memory");
}

static void skip_ws(parser *p) {
    const unsigned char *s = p->s;
    size_t i = p->pos, n = p->len;
    while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++;
    p->pos = i;
}

static int push_val(parser *p, const mech_json *v) {
    if (p->nvals == p->capvals) {
        size_t cap = p->capvals ? p->capvals * 2 : 256;
        mech_json *d = mech_realloc(p->vals, cap * sizeof *d);
        if (!d) return 0;
        p->vals = d;
        p->capvals = cap;
    }
    p->vals[p->nvals++] = *v;
    return 1;
}

static int push_key(parser *p, char *key, size_t len) {
    if (p->nkeys == p->capkeys) {
        size_t cap = p->capkeys ? p->capkeys * 2 : 256;
        key_ent *d = mech_realloc(p->keys, cap * sizeof *d);
        if (!d) return 0;
        p->keys = d;
        p->capkeys = cap;
    }
    p->keys[p->nkeys].key = key;
    p->keys[p->nkeys].len = len;
    p->nkeys++;
    return 1;
}

// ---------------------------------------------------------------------------
// Strings

static int hex4(const unsigned char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        v = (v << 4) | d;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(unsigned char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

// string = '"' char* '"'; p->pos is at the opening quote. The decoded text
// goes into the arena (never longer than the raw text).
static mech_status parse_string(parser *p, char **out, size_t *out_len) {
    const unsigned char *s = p->s;
    size_t n = p->len, start = ++p->pos, i = start;
    // Fast scan to the closing quote; escapes or non-ASCII send us to the
    // slow decoding loop.
    while (i < n && s[i] != '"' && s[i] != '\\' && s[i] >= 0x20 && s[i] < 0x80) i++;
    if (i < n && s[i] == '"') {
        size_t len = i - start;
        char *d = arena_alloc(p->root, len + 1);
        if (!d) return fail_nomem(p);
        memcpy(d, s + start, len);
        d[len] = 0;
        *out = d;
        *out_len = len;
        p->pos = i + 1;
        return MECH_OK;
    }
    // Find the end first to size the output: the decoded text is never
    // longer than the raw bytes between the quotes.
    size_t end = i;
    while (end < n && s[end] != '"') end += (s[end] == '\\') ? 2 : 1;
    size_t cap = (end < n ? end : n) - start;
    unsigned char *d = arena_alloc(p->root, cap + 1);
    if (!d) return fail_nomem(p);
    size_t o = i - start;
    memcpy(d, s + start, o);
    for (;;) {
        if (i >= n) {
            p->pos = i;
            return fail_at(p, start - 1, MECH_ERR_FORMAT, "unterminated string");
        }
        unsigned c = s[i];
        if (c == '"') break;
        if (c < 0x20) {
            char msg[96];
            snprintf(msg, sizeof msg, "control character 0x%02X in string (must be escaped)", c);
            return fail_at(p, i, MECH_ERR_FORMAT, msg);
        }
        if (c < 0x80) {
            if (c != '\\') {
                d[o++] = (unsigned char)c;
                i++;
                continue;
            }
            if (i + 1 >= n) return fail_at(p, i, MECH_ERR_FORMAT, "unterminated escape in string");
            unsigned e = s[i + 1];
            switch (e) {
            case '"': d[o++] = '"'; break;
            case '\\': d[o++] = '\\'; break;
            case '/': d[o++] = '/'; break;
            case 'b': d[o++] = '\b'; break;
            case 'f': d[o++] = '\f'; break;
            case 'n': d[o++] = '\n'; break;
            case 'r': d[o++] = '\r'; break;
            case 't': d[o++] = '\t'; break;
            case 'u': {
                unsigned cp, lo;
                if (i + 6 > n || !hex4(s + i + 2, &cp))
                    return fail_at(p, i, MECH_ERR_FORMAT,
                                   "bad \\u escape: expected 4 hex digits after \\u");
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return fail_at(p, i, MECH_ERR_FORMAT,
                                   "lone low surrogate in \\u escape (expected a high surrogate "
                                   "\\uD800-\\uDBFF first)");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (i + 12 > n || s[i + 6] != '\\' || s[i + 7] != 'u' || !hex4(s + i + 8, &lo) ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return fail_at(p, i, MECH_ERR_FORMAT,
                                       "lone high surrogate in \\u escape (expected a low "
                                       "surrogate \\uDC00-\\uDFFF after it)");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
                o += put_utf8(d + o, cp);
                i += 6;
                continue;
            }
            default: {
                char msg[128];
                if (e >= 0x20 && e < 0x7F)
                    snprintf(msg, sizeof msg, "bad escape \\%c in string: expected one of "
                             "\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX", (char)e);
                else
                    snprintf(msg, sizeof msg, "bad escape in string: backslash followed by byte "
                             "0x%02X", e);
                return fail_at(p, i, MECH_ERR_FORMAT, msg);
            }
            }
            i += 2;
            continue;
        }
        size_t l = mech_utf8_len(s + i, n - i);
        if (!l) {
            char msg[96];
            snprintf(msg, sizeof msg, "invalid UTF-8 byte 0x%02X in string", c);
            return fail_at(p, i, MECH_ERR_FORMAT, msg);
        }
        memcpy(d + o, s + i, l);
        o += l;
        i += l;
    }
    d[o] = 0;
    *out = (char *)d;
    *out_len = o;
    p->pos = i + 1;
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Numbers

// number = '-'? ('0' | [1-9][0-9]*) ('.' [0-9]+)? ([eE] [+-]? [0-9]+)?
static mech_status parse_number(parser *p, mech_json *v) {
    const unsigned char *s = p->s;
    size_t n = p->len, start = p->pos, i = start;
    int neg = 0, is_int = 1;
    if (s[i] == '-') neg = 1, i++;
    if (i >= n || s[i] < '0' || s[i] > '9') {
        p->pos = i;
        return fail_expected(p, "a digit in number");
    }
    // Accumulate the magnitude as unsigned for the exact int64 fast path.
    uint64_t mag = 0;
    int overflow = 0;
    if (s[i] == '0') {
        i++;
        if (i < n && s[i] >= '0' && s[i] <= '9')
            return fail_at(p, i, MECH_ERR_FORMAT, "leading zero in number");
    } else {
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            unsigned d = s[i] - '0';
            if (mag > (UINT64_MAX - d) / 10) overflow = 1;
            else mag = mag * 10 + d;
            i++;
        }
    }
    if (i < n && s[i] == '.') {
        is_int = 0;
        i++;
        if (i >= n || s[i] < '0' || s[i] > '9') {
            p->pos = i;
            return fail_expected(p, "a digit after '.' in number");
        }
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        is_int = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || s[i] < '0' || s[i] > '9') {
            p->pos = i;
            return fail_expected(p, "a digit in exponent of number");
        }
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    v->type = MECH_JSON_NUMBER;
    p->pos = i;
    uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (is_int && !overflow && mag <= lim) {
        v->is_int = 1;
        v->inum = neg ? (mag == lim ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
        v->num = neg && mag == 0 ? -0.0 : (double)v->inum; // keep the sign of "-0"
        return MECH_OK;
    }
    // General case: strtod on a NUL-terminated copy, with '.' replaced by the
    // locale's decimal point so a caller's setlocale() cannot change results.
    size_t len = i - start;
    char small[128], *buf = small;
    const char *dp = localeconv()->decimal_point;
    size_t dpl = dp && *dp ? strlen(dp) : 1;
    if (len * dpl + 1 > sizeof small) {
        buf = mech_malloc(len * dpl + 1);
        if (!buf) return fail_nomem(p);
    }
    size_t o = 0;
    for (size_t k = start; k < i; k++) {
        if (s[k] == '.' && dp && *dp) {
            memcpy(buf + o, dp, dpl);
            o += dpl;
        } else {
            buf[o++] = (char)s[k];
        }
    }
    buf[o] = 0;
    errno = 0;
    double d = strtod(buf, NULL);
    if (buf != small) mech_free(buf);
    if (isinf(d)) return fail_at(p, start, MECH_ERR_FORMAT, "number out of range for a double");
    v->num = d;
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Values

static mech_status parse_value(parser *p, mech_json *v, int depth);

// array = '[' (value (',' value)*)? ']'
// object = '{' (string ':' value (',' string ':' value)*)? '}'
static mech_status parse_container(parser *p, mech_json *v, int depth, int is_obj) {
    size_t open = p->pos;
    if (depth >= JSON_MAX_DEPTH) {
        char msg[96];
        snprintf(msg, sizeof msg, "nesting deeper than %d levels", JSON_MAX_DEPTH);
        return fail_at(p, open, MECH_ERR_FORMAT, msg);
    }
    char close = is_obj ? '}' : ']';
    size_t vbase = p->nvals, kbase = p->nkeys;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
    } else {
        for (;;) {
            if (is_obj) {
                if (p->pos >= p->len || p->s[p->pos] != '"')
                    return fail_expected(p, p->nvals == vbase ? "a string key or '}' in object"
                                                              : "a string key in object");
                char *key;
                size_t klen;
                if (parse_string(p, &key, &klen)) return p->status;
                if (!push_key(p, key, klen)) return fail_nomem(p);
                skip_ws(p);
                if (p->pos >= p->len || p->s[p->pos] != ':')
                    return fail_expected(p, "':' after object key");
                p->pos++;
                skip_ws(p);
            }
            mech_json child;
            if (parse_value(p, &child, depth + 1)) return p->status;
            if (!push_val(p, &child)) return fail_nomem(p);
            skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                skip_ws(p);
                continue;
            }
            if (p->pos < p->len && p->s[p->pos] == close) {
                p->pos++;
                break;
            }
            return fail_expected(p, is_obj ? "',' or '}' after object member"
                                           : "',' or ']' after array element");
        }
    }
    size_t n = p->nvals - vbase;
    memset(v, 0, sizeof *v);
    v->type = is_obj ? MECH_JSON_OBJECT : MECH_JSON_ARRAY;
    v->n = n;
    if (n) {
        v->items = arena_alloc(p->root, n * sizeof(mech_json));
        if (!v->items) return fail_nomem(p);
        memcpy(v->items, p->vals + vbase, n * sizeof(mech_json));
        if (is_obj) {
            v->keys = arena_alloc(p->root, n * sizeof(char *));
            v->key_lens = arena_alloc(p->root, n * sizeof(size_t));
            if (!v->keys || !v->key_lens) return fail_nomem(p);
            for (size_t k = 0; k < n; k++) {
                v->keys[k] = p->keys[kbase + k].key;
                v->key_lens[k] = p->keys[kbase + k].len;
            }
        }
    }
    p->nvals = vbase;
    p->nkeys = kbase;
    return MECH_OK;
}

static int match_lit(parser *p, const char *lit, size_t n) {
    if (p->len - p->pos < n || memcmp(p->s + p->pos, lit, n) != 0) return 0;
    p->pos += n;
    return 1;
}

// value = object | array | string | number | 'true' | 'false' | 'null'
static mech_status parse_value(parser *p, mech_json *v, int depth) {
    memset(v, 0, sizeof *v);
    if (p->pos >= p->len) return fail_expected(p, "a value");
    switch (p->s[p->pos]) {
    case '{': return parse_container(p, v, depth, 1);
    case '[': return parse_container(p, v, depth, 0);
    case '"':
        v->type = MECH_JSON_STRING;
        return parse_string(p, &v->str, &v->len);
    case 't':
        if (!match_lit(p, "true", 4)) break;
        v->type = MECH_JSON_BOOL;
        v->boolean = 1;
        return MECH_OK;
    case 'f':
        if (!match_lit(p, "false", 5)) break;
        v->type = MECH_JSON_BOOL;
        return MECH_OK;
    case 'n':
        if (!match_lit(p, "null", 4)) break;
        v->type = MECH_JSON_NULL;
        return MECH_OK;
    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return parse_number(p, v);
    default: break;
    }
    return fail_expected(p, "a value (object, array, string, number, true, false or null)");
}

// ---------------------------------------------------------------------------
// Public API

mech_status mech_json_parse(const char *text, size_t len, mech_json **out, mech_err *err) {
    if (!out) return mech_err_set(err, MECH_ERR_ARG, "mech_json_parse: out is NULL");
    *out = NULL;
    if (!text && len) return mech_err_set(err, MECH_ERR_ARG, "mech_json_parse: text is NULL");
    json_root *r = mech_calloc(1, sizeof *r);
    if (!r) return mech_err_set(err, MECH_ERR_NOMEM, "JSON: out of memory");
    // First chunk sized from the input: strings need at most len bytes and
    // items a few times that for dense documents.
    r->next_cap = len < 4096 ? 4096 : len;
    if (r->next_cap > ((size_t)64 << 20)) r->next_cap = (size_t)64 << 20;
    parser p = {.s = (const unsigned char *)(text ? text : ""), .len = len, .root = r, .err = err};
    if (len >= 3 && memcmp(p.s, "\xEF\xBB\xBF", 3) == 0) p.pos = 3;
    skip_ws(&p);
    mech_status st = parse_value(&p, &r->root, 0);
    if (!st) {
        skip_ws(&p);
        if (p.pos < p.len) st = fail_expected(&p, "end of input after the top-level value");
    }
    mech_free(p.vals);
    mech_free(p.keys);
    if (st) {
        mech_json_free(&r->root);
        return st;
    }
    *out = &r->root;
    return MECH_OK;
}

void mech_json_free(mech_json *j) {
    if (!j) return;
    json_root *r = (json_root *)j;
    chunk *c = r->chunks;
    while (c) {
        chunk *next = c->next;
        mech_free(c);
        c = next;
    }
    mech_free(r);
}

const mech_json *mech_json_get(const mech_json *obj, const char *key) {
    if (!obj || obj->type != MECH_JSON_OBJECT || !key) return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < obj->n; i++)
        if (obj->key_lens[i] == kl && memcmp(obj->keys[i], key, kl) == 0) return &obj->items[i];
    return NULL;
}

double mech_json_num(const mech_json *obj, const char *key, double dflt) {
    const mech_json *v = mech_json_get(obj, key);
    return v && v->type == MECH_JSON_NUMBER ? v->num : dflt;
}

int mech_json_bool(const mech_json *obj, const char *key) {
    const mech_json *v = mech_json_get(obj, key);
    return v && v->type == MECH_JSON_BOOL && v->boolean;
}

const char *mech_json_str(const mech_json *obj, const char *key, const char *dflt) {
    const mech_json *v = mech_json_get(obj, key);
    return v && v->type == MECH_JSON_STRING ? v->str : dflt;
}
