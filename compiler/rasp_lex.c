/*
** compiler/rasp_lex.c: RASP source text to tokens, and the error format
** every stage shares (chibicc's, with gcc's "error:" tag):
**
**   prog.rasp:3:14: error: unknown name 'tokns' (did you mean 'tokens'?)
**   opp = length - tokns;
**                  ^
**
** Tokens: identifiers and keywords, integers (int64), floats (1.5, .5, 1e3),
** strings in "..." or '...' with \\ \" \' \n \t \r \0 \xHH escapes, the
** operators + - * / // % == != < <= > >= = -> and ( ) [ ] { } , ;.
** `#` starts a comment that runs to the end of the line. Columns count
** bytes from 1.
*/
#include "compiler/rasp_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// Diagnostics

void rasp_diag(mech_err *err, mech_status code, const char *file, const char *text, size_t len,
               mech_rasp_pos pos, const char *msg) {
    if (!err) return;
    mech_buf b = {0};
    mech_buf_printf(&b, "%s:%d:%d: error: %s", file ? file : "<input>", pos.line, pos.col, msg);
    // Find the line.
    size_t start = 0;
    int line = 1;
    for (size_t i = 0; i < len && line < pos.line; i++)
        if (text[i] == '\n') line++, start = i + 1;
    if (text && line == pos.line && start <= len) {
        size_t end = start;
        while (end < len && text[end] != '\n') end++;
        if (end > start && text[end - 1] == '\r') end--;
        size_t col = pos.col > 0 ? (size_t)pos.col - 1 : 0;
        if (col > end - start) col = end - start;
        // Show at most 100 bytes around the column.
        size_t from = start, to = end;
        if (col > 60) from = start + col - 60;
        if (to - from > 100) to = from + 100;
        // Do not start or end inside a UTF-8 sequence.
        while (from > start && from < end && ((unsigned char)text[from] & 0xC0) == 0x80) from--;
        while (to < end && ((unsigned char)text[to] & 0xC0) == 0x80) to++;
        mech_buf_puts(&b, "\n");
        size_t lead = 0;
        if (from > start) mech_buf_puts(&b, "..."), lead = 3;
        for (size_t i = from; i < to; i++) {
            unsigned char c = (unsigned char)text[i];
            char ch = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
            mech_buf_append(&b, &ch, 1);
        }
        if (to < end) mech_buf_puts(&b, "...");
        mech_buf_puts(&b, "\n");
        for (size_t i = 0; i < lead; i++) mech_buf_puts(&b, " ");
        for (size_t i = from; i < start + col; i++) {
            unsigned char c = (unsigned char)text[i];
            if (c == '\t') mech_buf_puts(&b, "\t");
            else if ((c & 0xC0) != 0x80) mech_buf_puts(&b, " ");
        }
        mech_buf_puts(&b, "^");
    }
    if (b.oom || !b.data) mech_err_set(err, code, "%s", msg);
    else mech_err_set(err, code, "%s", b.data);
    mech_buf_free(&b);
}

void rasp_error(const rasp_src *src, mech_status code, mech_rasp_pos pos, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rasp_diag(src->err, code, src->file, src->text, src->len, pos, msg);
    longjmp(*src->jump, 1);
}

// ---------------------------------------------------------------------------
// Tokens

static const char *const kw_text[] = {
    [KW_DEF] = "def", [KW_RETURN] = "return", [KW_IF] = "if",     [KW_ELSE] = "else",
    [KW_AND] = "and", [KW_OR] = "or",         [KW_NOT] = "not",   [KW_IN] = "in",
    [KW_TRUE] = "true", [KW_FALSE] = "false", [KW_NONE] = "none",
};

static const char *const punct_text[] = {
    [P_PLUS] = "+",     [P_MINUS] = "-",    [P_STAR] = "*",     [P_SLASH] = "/",     [P_DSLASH] = "//",
    [P_PERCENT] = "%",  [P_EQ] = "==",      [P_NE] = "!=",      [P_LT] = "<",        [P_LE] = "<=",
    [P_GT] = ">",       [P_GE] = ">=",      [P_ASSIGN] = "=",   [P_LPAREN] = "(",    [P_RPAREN] = ")",
    [P_LBRACKET] = "[", [P_RBRACKET] = "]", [P_LBRACE] = "{",   [P_RBRACE] = "}",    [P_COMMA] = ",",
    [P_SEMI] = ";",     [P_ARROW] = "->",
};

const char *rasp_punct_text(int p) { return p >= 0 && p <= P_ARROW ? punct_text[p] : "?"; }
const char *rasp_kw_text(int k) { return k >= 0 && k <= KW_NONE ? kw_text[k] : "?"; }

const char *rasp_tok_describe(const rasp_tok *t, char *buf, size_t cap) {
    switch (t->kind) {
    case TK_EOF: snprintf(buf, cap, "end of file"); break;
    case TK_STR: snprintf(buf, cap, "string %.*s%s", t->len > 40 ? 40 : (int)t->len, t->text, t->len > 40 ? "..." : ""); break;
    default: snprintf(buf, cap, "'%.*s%s'", t->len > 40 ? 40 : (int)t->len, t->text, t->len > 40 ? "..." : ""); break;
    }
    return buf;
}

typedef struct lexer {
    const rasp_src *src;
    mech_rasp_heap *h;
    const char *s;
    size_t len, i;
    int line;
    size_t line_start;
    rasp_tok *toks;
    int n, cap;
} lexer;

static mech_rasp_pos pos_at(const lexer *L, size_t i) {
    return (mech_rasp_pos){L->src->file, L->line, (int)(i - L->line_start) + 1};
}

static _Noreturn void oom(const lexer *L) {
    rasp_error(L->src, MECH_ERR_NOMEM, pos_at(L, L->i), "out of memory");
}

static rasp_tok *push(lexer *L, rasp_tok_kind kind, size_t start) {
    if (L->n == L->cap) {
        int cap = L->cap ? L->cap * 2 : 256;
        rasp_tok *t = rasp_alloc(L->h, (size_t)cap * sizeof *t);
        if (!t) oom(L);
        if (L->n) memcpy(t, L->toks, (size_t)L->n * sizeof *t);
        L->toks = t;
        L->cap = cap;
    }
    rasp_tok *t = &L->toks[L->n++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->text = L->s + start;
    t->len = L->i - start;
    t->pos = pos_at(L, start);
    return t;
}

static int is_id_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void lex_string(lexer *L) {
    size_t start = L->i;
    char q = L->s[L->i++];
    mech_buf b = {0};
    for (;;) {
        if (L->i >= L->len || L->s[L->i] == '\n') {
            mech_buf_free(&b);
            rasp_error(L->src, MECH_ERR_PARSE, pos_at(L, start), "unterminated string");
        }
        char c = L->s[L->i];
        if (c == q) {
            L->i++;
            break;
        }
        if (c != '\\') {
            mech_buf_append(&b, &c, 1);
            L->i++;
            continue;
        }
        size_t esc = L->i;
        if (L->i + 1 >= L->len) {
            mech_buf_free(&b);
            rasp_error(L->src, MECH_ERR_PARSE, pos_at(L, start), "unterminated string");
        }
        char e = L->s[L->i + 1], out;
        L->i += 2;
        switch (e) {
        case 'n': out = '\n'; break;
        case 't': out = '\t'; break;
        case 'r': out = '\r'; break;
        case '0': out = 0; break;
        case '\\': out = '\\'; break;
        case '"': out = '"'; break;
        case '\'': out = '\''; break;
        case 'x': {
            int h1 = L->i < L->len ? hexval((unsigned char)L->s[L->i]) : -1;
            int h2 = L->i + 1 < L->len ? hexval((unsigned char)L->s[L->i + 1]) : -1;
            if (h1 < 0 || h2 < 0) {
                mech_buf_free(&b);
                rasp_error(L->src, MECH_ERR_PARSE, pos_at(L, esc), "\\x needs two hex digits");
            }
            out = (char)(h1 * 16 + h2);
            L->i += 2;
            break;
        }
        default: {
            mech_buf_free(&b);
            unsigned char ue = (unsigned char)e;
            if (ue >= 0x20 && ue < 0x7f) rasp_error(L->src, MECH_ERR_PARSE, pos_at(L, esc), "unknown escape '\\%c'", e);
            rasp_error(L->src, MECH_ERR_PARSE, pos_at(L, esc), "unknown escape after '\\'");
        }
        }
        mech_buf_append(&b, &out, 1);
    }
    if (b.oom) {
        mech_buf_free(&b);
        oom(L);
    }
    if (b.len > RASP_MAX_STR) {
        mech_buf_free(&b);
        rasp_error(L->src, MECH_ERR_PARSE, pos_at(L, start), "string literal longer than %d bytes", RASP_MAX_STR);
    }
    size_t slen = b.len;
    char *str = rasp_strndup(L->h, b.data ? b.data : "", b.len);
    mech_buf_free(&b);
    if (!str) oom(L);
    rasp_tok *t = push(L, TK_STR, start);
    t->slen = slen;
    t->str = str;
}

static void lex_number(lexer *L) {
    size_t start = L->i;
    int is_float = 0;
    while (L->i < L->len && is_digit(L->s[L->i])) L->i++;
    if (L->i < L->len && L->s[L->i] == '.') {
        is_float = 1;
        L->i++;
        while (L->i < L->len && is_digit(L->s[L->i])) L->i++;
    }
    if (L->i < L->len && (L->s[L->i] == 'e' || L->s[L->i] == 'E')) {
        size_t j = L->i + 1;
        if (j < L->len && (L->s[j] == '+' || L->s[j] == '-')) j++;
        if (j < L->len && is_digit(L->s[j])) {
            is_float = 1;
            L->i = j;
            while (L->i < L->len && is_digit(L->s[L->i])) L->i++;
        }
    }
    if (L->i < L->len && (is_id_start((unsigned char)L->s[L->i]) || is_digit(L->s[L->i])))
        rasp_error(L->src, MECH_ERR_PARSE, pos_at(L, L->i), "invalid character '%c' in number", L->s[L->i]);
    size_t n = L->i - start;
    char buf[400];
    if (n >= sizeof buf) rasp_error(L->src, MECH_ERR_PARSE, pos_at(L, start), "number too long");
    memcpy(buf, L->s + start, n);
    buf[n] = 0;
    rasp_tok *t = push(L, is_float ? TK_FLOAT : TK_INT, start);
    errno = 0;
    if (is_float) {
        t->f = strtod(buf, NULL);
        if (!isfinite(t->f)) rasp_error(L->src, MECH_ERR_PARSE, t->pos, "float literal %s is out of range", buf);
    } else {
        t->i = strtoll(buf, NULL, 10);
        if (errno == ERANGE)
            rasp_error(L->src, MECH_ERR_PARSE, t->pos, "integer literal %s does not fit in 64 bits", buf);
    }
}

static int punct_at(const lexer *L, int *len) {
    const char *s = L->s + L->i;
    size_t left = L->len - L->i;
    char c = s[0], d = left > 1 ? s[1] : 0;
    *len = 2;
    if (c == '/' && d == '/') return P_DSLASH;
    if (c == '=' && d == '=') return P_EQ;
    if (c == '!' && d == '=') return P_NE;
    if (c == '<' && d == '=') return P_LE;
    if (c == '>' && d == '=') return P_GE;
    if (c == '-' && d == '>') return P_ARROW;
    *len = 1;
    switch (c) {
    case '+': return P_PLUS;
    case '-': return P_MINUS;
    case '*': return P_STAR;
    case '/': return P_SLASH;
    case '%': return P_PERCENT;
    case '<': return P_LT;
    case '>': return P_GT;
    case '=': return P_ASSIGN;
    case '(': return P_LPAREN;
    case ')': return P_RPAREN;
    case '[': return P_LBRACKET;
    case ']': return P_RBRACKET;
    case '{': return P_LBRACE;
    case '}': return P_RBRACE;
    case ',': return P_COMMA;
    case ';': return P_SEMI;
    default: return -1;
    }
}

rasp_tok *rasp_lex(const rasp_src *src, mech_rasp_heap *h, int *n_tok) {
    lexer L = {.src = src, .h = h, .s = src->text, .len = src->len, .line = 1};
    while (L.i < L.len) {
        unsigned char c = (unsigned char)L.s[L.i];
        if (c == '\n') {
            L.i++;
            L.line++;
            L.line_start = L.i;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            L.i++;
            continue;
        }
        if (c == '#') {
            while (L.i < L.len && L.s[L.i] != '\n') L.i++;
            continue;
        }
        size_t start = L.i;
        if (is_id_start(c)) {
            while (L.i < L.len && (is_id_start((unsigned char)L.s[L.i]) || is_digit(L.s[L.i]))) L.i++;
            size_t n = L.i - start;
            int kw = -1;
            for (int k = 0; k <= KW_NONE; k++)
                if (strlen(kw_text[k]) == n && !memcmp(kw_text[k], L.s + start, n)) kw = k;
            // Python's spellings of the constants are accepted too.
            if (n == 4 && !memcmp(L.s + start, "True", 4)) kw = KW_TRUE;
            if (n == 5 && !memcmp(L.s + start, "False", 5)) kw = KW_FALSE;
            if (n == 4 && !memcmp(L.s + start, "None", 4)) kw = KW_NONE;
            rasp_tok *t = push(&L, kw >= 0 ? TK_KW : TK_ID, start);
            t->sub = kw;
            t->str = rasp_strndup(h, L.s + start, n);
            t->slen = n;
            if (!t->str) oom(&L);
            continue;
        }
        if (is_digit(c) || (c == '.' && L.i + 1 < L.len && is_digit(L.s[L.i + 1]))) {
            lex_number(&L);
            continue;
        }
        if (c == '"' || c == '\'') {
            lex_string(&L);
            continue;
        }
        int plen, p = punct_at(&L, &plen);
        if (p < 0) {
            if (c >= 0x21 && c < 0x7f)
                rasp_error(src, MECH_ERR_PARSE, pos_at(&L, start), "unexpected character '%c'", c);
            rasp_error(src, MECH_ERR_PARSE, pos_at(&L, start), "unexpected byte 0x%02x", c);
        }
        L.i += (size_t)plen;
        push(&L, TK_PUNCT, start)->sub = p;
    }
    // End of file is reported right after the last token.
    mech_rasp_pos end = pos_at(&L, L.i);
    if (L.n) {
        end = L.toks[L.n - 1].pos;
        end.col += (int)L.toks[L.n - 1].len;
    }
    push(&L, TK_EOF, L.i)->pos = end;
    *n_tok = L.n;
    return L.toks;
}
