/*
** compiler/rasp_parse.c: tokens to the AST, by recursive descent, one
** function per grammar rule with its EBNF above it. Operator precedence is
** Python's (lowest first): lambda ->, x if c else y, or, and, not,
** comparisons (which do not chain), + -, * / // %, unary - +, indexing and
** calls. Every AST node and statement keeps the position of its first
** token (binary operators: the operator) for error messages.
**
** Words that start pragmas (vocab, max_seq_len, causal, output) are not
** reserved: `output = x;` is an assignment, `output x;` a pragma.
*/
#include "compiler/rasp_int.h"

#include <stdio.h>
#include <string.h>

typedef struct parser {
    const rasp_src *src;
    mech_rasp_heap *h;
    rasp_tok *t;
    int n, i;
    int depth;
} parser;

// ---------------------------------------------------------------------------
// Helpers

static _Noreturn void oom(parser *P) { rasp_error(P->src, MECH_ERR_NOMEM, P->t[P->i].pos, "out of memory"); }

static void *alloc(parser *P, size_t n) {
    void *p = rasp_alloc(P->h, n);
    if (!p) oom(P);
    return p;
}

static rasp_tok *peek(parser *P) { return &P->t[P->i]; }
static rasp_tok *peek_at(parser *P, int k) { return &P->t[P->i + k < P->n ? P->i + k : P->n - 1]; }
static rasp_tok *next(parser *P) {
    rasp_tok *t = &P->t[P->i];
    if (P->i < P->n - 1) P->i++;
    return t;
}

static int tok_is_punct(const rasp_tok *t, int p) { return t->kind == TK_PUNCT && t->sub == p; }
static int tok_is_kw(const rasp_tok *t, int k) { return t->kind == TK_KW && t->sub == k; }
static int is_punct(parser *P, int p) { return tok_is_punct(peek(P), p); }
static int is_kw(parser *P, int k) { return tok_is_kw(peek(P), k); }

static int accept(parser *P, int p) {
    if (!is_punct(P, p)) return 0;
    next(P);
    return 1;
}

static _Noreturn void error_here(parser *P, const char *what) {
    char d[80];
    rasp_error(P->src, MECH_ERR_PARSE, peek(P)->pos, "%s, got %s", what, rasp_tok_describe(peek(P), d, sizeof d));
}

static rasp_tok *expect(parser *P, int p, const char *ctx) {
    if (!is_punct(P, p)) {
        char what[160];
        snprintf(what, sizeof what, "expected '%s' %s", rasp_punct_text(p), ctx);
        // A token missing at the end of a line is reported there, as gcc
        // does, not at the start of the next statement.
        const rasp_tok *prev = P->i > 0 ? &P->t[P->i - 1] : NULL;
        if (prev && peek(P)->kind != TK_EOF && peek(P)->pos.line > prev->pos.line) {
            char d[80];
            mech_rasp_pos end = prev->pos;
            end.col += (int)prev->len;
            rasp_error(P->src, MECH_ERR_PARSE, end, "%s, before %s on line %d", what,
                       rasp_tok_describe(peek(P), d, sizeof d), peek(P)->pos.line);
        }
        error_here(P, what);
    }
    return next(P);
}

static rasp_tok *expect_id(parser *P, const char *what) {
    if (peek(P)->kind != TK_ID) {
        if (peek(P)->kind == TK_KW) {
            char msg[160];
            snprintf(msg, sizeof msg, "expected %s, got keyword '%s' (keywords cannot be names)", what,
                     rasp_kw_text(peek(P)->sub));
            rasp_error(P->src, MECH_ERR_PARSE, peek(P)->pos, "%s", msg);
        }
        char msg[160];
        snprintf(msg, sizeof msg, "expected %s", what);
        error_here(P, msg);
    }
    return next(P);
}

// A growable array of pointers in the heap.
typedef struct vec {
    void **v;
    int n, cap;
} vec;

static void vec_push(parser *P, vec *a, void *x) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 4;
        void **v = alloc(P, (size_t)cap * sizeof *v);
        if (a->n) memcpy(v, a->v, (size_t)a->n * sizeof *v);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

static rasp_ast *new_ast(parser *P, rasp_ast_kind kind, mech_rasp_pos pos) {
    rasp_ast *a = alloc(P, sizeof *a);
    a->kind = kind;
    a->pos = pos;
    a->height = 1;
    return a;
}

static _Noreturn void too_deep(parser *P, mech_rasp_pos pos) {
    rasp_error(P->src, MECH_ERR_PARSE, pos, "expression nested deeper than %d", RASP_MAX_DEPTH);
}

// Sets a's height from its kids. The parser's own recursion is bounded by
// enter(), but loops build chains (`x + x + ... + x`, `t[0][0]...`) whose
// height only this bounds, and every later walk recurses along the height.
static rasp_ast *grown(parser *P, rasp_ast *a) {
    int h = 0;
    for (int i = 0; i < a->n; i++)
        if (a->kids[i]->height > h) h = a->kids[i]->height;
    a->height = h + 1;
    if (a->height > RASP_MAX_DEPTH) too_deep(P, a->pos);
    return a;
}

static rasp_ast *new_binary(parser *P, int op, rasp_ast *l, rasp_ast *r, mech_rasp_pos pos) {
    rasp_ast *a = new_ast(P, A_BINARY, pos);
    a->op = op;
    a->n = 2;
    a->kids = alloc(P, 2 * sizeof *a->kids);
    a->kids[0] = l;
    a->kids[1] = r;
    return grown(P, a);
}

// Every recursion of the parser goes through enter(): its depth never
// exceeds the height of the tree being built (parentheses count one level),
// so both are bounded by the same RASP_MAX_DEPTH.
static void enter(parser *P) {
    if (++P->depth > RASP_MAX_DEPTH) too_deep(P, peek(P)->pos);
}

// ---------------------------------------------------------------------------
// Expressions

static rasp_ast *expr(parser *P);

// Is the parser at the start of a lambda: `x ->` or `(a, b) ->` or `() ->`?
static int at_lambda(parser *P) {
    if (peek(P)->kind == TK_ID) return tok_is_punct(peek_at(P, 1), P_ARROW);
    if (!is_punct(P, P_LPAREN)) return 0;
    int k = 1;
    if (tok_is_punct(peek_at(P, k), P_RPAREN)) return tok_is_punct(peek_at(P, k + 1), P_ARROW);
    for (;;) {
        if (peek_at(P, k)->kind != TK_ID) return 0;
        k++;
        if (tok_is_punct(peek_at(P, k), P_RPAREN)) return tok_is_punct(peek_at(P, k + 1), P_ARROW);
        if (!tok_is_punct(peek_at(P, k), P_COMMA)) return 0;
        k++;
        if (P->i + k >= P->n) return 0;
    }
}

// lambda = ( ID | "(" [ ID { "," ID } ] ")" ) "->" expr
static rasp_ast *lambda(parser *P) {
    rasp_ast *a = new_ast(P, A_LAMBDA, peek(P)->pos);
    vec names = {0}, poss = {0};
    if (peek(P)->kind == TK_ID) {
        rasp_tok *t = next(P);
        vec_push(P, &names, (void *)t->str);
        vec_push(P, &poss, &t->pos);
    } else {
        expect(P, P_LPAREN, "to start the lambda's parameters");
        if (!is_punct(P, P_RPAREN)) {
            do {
                rasp_tok *t = expect_id(P, "a parameter name");
                vec_push(P, &names, (void *)t->str);
                vec_push(P, &poss, &t->pos);
            } while (accept(P, P_COMMA));
        }
        expect(P, P_RPAREN, "after the lambda's parameters");
    }
    expect(P, P_ARROW, "after the lambda's parameters");
    a->n_params = names.n;
    a->params = alloc(P, (size_t)(names.n + 1) * sizeof *a->params);
    a->param_pos = alloc(P, (size_t)(names.n + 1) * sizeof *a->param_pos);
    for (int i = 0; i < names.n; i++) {
        a->params[i] = names.v[i];
        a->param_pos[i] = *(mech_rasp_pos *)poss.v[i];
    }
    a->n = 1;
    a->kids = alloc(P, sizeof *a->kids);
    a->kids[0] = expr(P);
    return grown(P, a);
}

// cmp_op = "==" | "!=" | "<" | "<=" | ">" | ">="
static int cmp_op_of(const rasp_tok *t, int *pred) {
    static const struct { int punct, op, pred; } map[] = {
        {P_EQ, MECH_RASP_X_EQ, MECH_RASP_PRED_EQ}, {P_NE, MECH_RASP_X_NE, MECH_RASP_PRED_NE},
        {P_LT, MECH_RASP_X_LT, MECH_RASP_PRED_LT}, {P_LE, MECH_RASP_X_LE, MECH_RASP_PRED_LE},
        {P_GT, MECH_RASP_X_GT, MECH_RASP_PRED_GT}, {P_GE, MECH_RASP_X_GE, MECH_RASP_PRED_GE},
    };
    if (t->kind != TK_PUNCT) return -1;
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (t->sub == map[i].punct) {
            if (pred) *pred = map[i].pred;
            return map[i].op;
        }
    return -1;
}

// arg = cmp_op (followed by "," or ")": select's predicate) | expr
static rasp_ast *arg(parser *P) {
    int pred;
    rasp_tok *t = peek(P);
    if (cmp_op_of(t, &pred) >= 0 && (tok_is_punct(peek_at(P, 1), P_COMMA) || tok_is_punct(peek_at(P, 1), P_RPAREN))) {
        next(P);
        rasp_ast *a = new_ast(P, A_OPREF, t->pos);
        a->op = pred;
        return a;
    }
    return expr(P);
}

// primary = INT | FLOAT | STRING | "true" | "false" | "none"
//         | ID [ "(" [ arg { "," arg } [ "," ] ] ")" ]
//         | "(" ")" | "(" expr ")" | "(" expr "," [ expr { "," expr } [ "," ] ] ")"
static rasp_ast *primary(parser *P) {
    rasp_tok *t = peek(P);
    rasp_ast *a;
    switch (t->kind) {
    case TK_INT:
        next(P);
        a = new_ast(P, A_CONST, t->pos);
        a->value = mech_rasp_int(t->i);
        return a;
    case TK_FLOAT:
        next(P);
        a = new_ast(P, A_CONST, t->pos);
        a->value = mech_rasp_float(t->f);
        return a;
    case TK_STR:
        next(P);
        a = new_ast(P, A_CONST, t->pos);
        a->value = (mech_rasp_value){.type = MECH_RASP_STR, .n = (uint32_t)t->slen, .s = t->str};
        return a;
    case TK_KW:
        if (t->sub == KW_TRUE || t->sub == KW_FALSE || t->sub == KW_NONE) {
            next(P);
            a = new_ast(P, A_CONST, t->pos);
            a->value = t->sub == KW_NONE ? mech_rasp_none() : mech_rasp_bool(t->sub == KW_TRUE);
            return a;
        }
        break;
    case TK_ID:
        next(P);
        if (!is_punct(P, P_LPAREN)) {
            a = new_ast(P, A_NAME, t->pos);
            a->name = t->str;
            return a;
        }
        next(P);
        a = new_ast(P, A_CALL, t->pos);
        a->name = t->str;
        {
            vec args = {0};
            while (!is_punct(P, P_RPAREN)) {
                vec_push(P, &args, arg(P));
                if (!accept(P, P_COMMA)) break;
            }
            char ctx[120];
            snprintf(ctx, sizeof ctx, "after the arguments of %.60s()", t->str);
            expect(P, P_RPAREN, ctx);
            a->n = args.n;
            a->kids = (rasp_ast **)args.v;
        }
        return grown(P, a);
    case TK_PUNCT:
        if (t->sub != P_LPAREN) break;
        next(P);
        if (accept(P, P_RPAREN)) {
            a = new_ast(P, A_TUPLE, t->pos);
            return a;
        }
        {
            rasp_ast *first = expr(P);
            if (!is_punct(P, P_COMMA)) {
                expect(P, P_RPAREN, "to close the parenthesis");
                if (++first->height > RASP_MAX_DEPTH) too_deep(P, t->pos);
                return first;
            }
            vec items = {0};
            vec_push(P, &items, first);
            while (accept(P, P_COMMA)) {
                if (is_punct(P, P_RPAREN)) break;
                vec_push(P, &items, expr(P));
            }
            expect(P, P_RPAREN, "to close the tuple");
            a = new_ast(P, A_TUPLE, t->pos);
            a->n = items.n;
            a->kids = (rasp_ast **)items.v;
            return grown(P, a);
        }
    default: break;
    }
    error_here(P, "expected an expression");
}

// postfix = primary { "[" expr "]" }
static rasp_ast *postfix(parser *P) {
    rasp_ast *a = primary(P);
    while (is_punct(P, P_LBRACKET)) {
        mech_rasp_pos pos = next(P)->pos;
        rasp_ast *idx = expr(P);
        expect(P, P_RBRACKET, "to close the index");
        rasp_ast *b = new_ast(P, A_INDEX, pos);
        b->n = 2;
        b->kids = alloc(P, 2 * sizeof *b->kids);
        b->kids[0] = a;
        b->kids[1] = idx;
        a = grown(P, b);
    }
    return a;
}

// unary = ( "-" | "+" ) unary | postfix
static rasp_ast *unary(parser *P) {
    if (is_punct(P, P_MINUS) || is_punct(P, P_PLUS)) {
        rasp_tok *t = next(P);
        enter(P);
        rasp_ast *a = new_ast(P, A_UNARY, t->pos);
        a->op = t->sub == P_MINUS ? MECH_RASP_X_NEG : MECH_RASP_X_POS;
        a->n = 1;
        a->kids = alloc(P, sizeof *a->kids);
        a->kids[0] = unary(P);
        P->depth--;
        return grown(P, a);
    }
    return postfix(P);
}

// term = unary { ( "*" | "/" | "//" | "%" ) unary }
static rasp_ast *term(parser *P) {
    rasp_ast *a = unary(P);
    for (;;) {
        int op;
        if (is_punct(P, P_STAR)) op = MECH_RASP_X_MUL;
        else if (is_punct(P, P_SLASH)) op = MECH_RASP_X_DIV;
        else if (is_punct(P, P_DSLASH)) op = MECH_RASP_X_FLOORDIV;
        else if (is_punct(P, P_PERCENT)) op = MECH_RASP_X_MOD;
        else return a;
        mech_rasp_pos pos = next(P)->pos;
        a = new_binary(P, op, a, unary(P), pos);
    }
}

// sum = term { ( "+" | "-" ) term }
static rasp_ast *sum(parser *P) {
    rasp_ast *a = term(P);
    for (;;) {
        int op;
        if (is_punct(P, P_PLUS)) op = MECH_RASP_X_ADD;
        else if (is_punct(P, P_MINUS)) op = MECH_RASP_X_SUB;
        else return a;
        mech_rasp_pos pos = next(P)->pos;
        a = new_binary(P, op, a, term(P), pos);
    }
}

// cmp = sum [ ( cmp_op | "in" ) sum ]      (comparisons do not chain)
static rasp_ast *cmp(parser *P) {
    rasp_ast *a = sum(P);
    int op = cmp_op_of(peek(P), NULL);
    if (op < 0 && is_kw(P, KW_IN)) op = MECH_RASP_X_IN;
    if (op < 0) return a;
    mech_rasp_pos pos = next(P)->pos;
    a = new_binary(P, op, a, sum(P), pos);
    if (cmp_op_of(peek(P), NULL) >= 0 || is_kw(P, KW_IN))
        rasp_error(P->src, MECH_ERR_PARSE, peek(P)->pos,
                   "comparisons do not chain: write 'a < b and b < c' instead of 'a < b < c'");
    return a;
}

// not_expr = "not" not_expr | cmp
static rasp_ast *not_expr(parser *P) {
    if (!is_kw(P, KW_NOT)) return cmp(P);
    mech_rasp_pos pos = next(P)->pos;
    enter(P);
    rasp_ast *a = new_ast(P, A_UNARY, pos);
    a->op = MECH_RASP_X_NOT;
    a->n = 1;
    a->kids = alloc(P, sizeof *a->kids);
    a->kids[0] = not_expr(P);
    P->depth--;
    return grown(P, a);
}

// and_expr = not_expr { "and" not_expr }
static rasp_ast *and_expr(parser *P) {
    rasp_ast *a = not_expr(P);
    while (is_kw(P, KW_AND)) {
        mech_rasp_pos pos = next(P)->pos;
        a = new_binary(P, MECH_RASP_X_AND, a, not_expr(P), pos);
    }
    return a;
}

// or_expr = and_expr { "or" and_expr }
static rasp_ast *or_expr(parser *P) {
    rasp_ast *a = and_expr(P);
    while (is_kw(P, KW_OR)) {
        mech_rasp_pos pos = next(P)->pos;
        a = new_binary(P, MECH_RASP_X_OR, a, and_expr(P), pos);
    }
    return a;
}

// ternary = or_expr [ "if" or_expr "else" expr ]
static rasp_ast *ternary(parser *P) {
    rasp_ast *a = or_expr(P);
    if (!is_kw(P, KW_IF)) return a;
    mech_rasp_pos pos = next(P)->pos;
    rasp_ast *c = or_expr(P);
    if (!is_kw(P, KW_ELSE)) error_here(P, "expected 'else' in 'x if c else y'");
    next(P);
    rasp_ast *e = expr(P);
    rasp_ast *r = new_ast(P, A_IF, pos);
    r->n = 3;
    r->kids = alloc(P, 3 * sizeof *r->kids);
    r->kids[0] = a;
    r->kids[1] = c;
    r->kids[2] = e;
    return grown(P, r);
}

// expr = lambda | ternary
static rasp_ast *expr(parser *P) {
    enter(P);
    rasp_ast *a = at_lambda(P) ? lambda(P) : ternary(P);
    P->depth--;
    return a;
}

// ---------------------------------------------------------------------------
// Statements

static rasp_stmt *new_stmt(parser *P, rasp_stmt_kind kind, mech_rasp_pos pos) {
    rasp_stmt *s = alloc(P, sizeof *s);
    s->kind = kind;
    s->pos = pos;
    return s;
}

// assign = ID "=" expr ";"
static rasp_stmt *assign(parser *P) {
    rasp_tok *t = expect_id(P, "a variable name");
    rasp_stmt *s = new_stmt(P, S_ASSIGN, t->pos);
    s->name = t->str;
    s->name_pos = t->pos;
    expect(P, P_ASSIGN, "after the variable name");
    s->expr = expr(P);
    expect(P, P_SEMI, "after the assignment");
    return s;
}

// def = "def" ID "(" [ ID { "," ID } ] ")" "{" { assign } "return" expr ";" "}"
static rasp_stmt *def(parser *P) {
    mech_rasp_pos pos = next(P)->pos;
    rasp_tok *t = expect_id(P, "the function's name after 'def'");
    rasp_stmt *s = new_stmt(P, S_DEF, pos);
    s->name = t->str;
    s->name_pos = t->pos;
    expect(P, P_LPAREN, "after the function's name");
    vec names = {0}, poss = {0};
    if (!is_punct(P, P_RPAREN)) {
        do {
            rasp_tok *p = expect_id(P, "a parameter name");
            vec_push(P, &names, (void *)p->str);
            vec_push(P, &poss, &p->pos);
        } while (accept(P, P_COMMA));
    }
    expect(P, P_RPAREN, "after the parameters");
    s->n_params = names.n;
    s->params = alloc(P, (size_t)(names.n + 1) * sizeof *s->params);
    s->param_pos = alloc(P, (size_t)(names.n + 1) * sizeof *s->param_pos);
    for (int i = 0; i < names.n; i++) {
        s->params[i] = names.v[i];
        s->param_pos[i] = *(mech_rasp_pos *)poss.v[i];
    }
    expect(P, P_LBRACE, "to open the function's body");
    vec body = {0};
    while (!is_kw(P, KW_RETURN)) {
        if (is_punct(P, P_RBRACE)) error_here(P, "expected 'return EXPR;' at the end of the function's body");
        if (is_kw(P, KW_DEF)) rasp_error(P->src, MECH_ERR_PARSE, peek(P)->pos, "a def cannot be nested in another def");
        if (peek(P)->kind == TK_ID && !tok_is_punct(peek_at(P, 1), P_ASSIGN)) {
            const char *w = peek(P)->str;
            if (!strcmp(w, "vocab") || !strcmp(w, "max_seq_len") || !strcmp(w, "causal") || !strcmp(w, "output"))
                rasp_error(P->src, MECH_ERR_PARSE, peek(P)->pos, "'%s' is a pragma: pragmas are only allowed at the top level", w);
        }
        if (peek(P)->kind != TK_ID) error_here(P, "expected an assignment or 'return' in the function's body");
        vec_push(P, &body, assign(P));
    }
    next(P);
    s->expr = expr(P);
    expect(P, P_SEMI, "after the return expression");
    if (!is_punct(P, P_RBRACE)) {
        if (peek(P)->kind != TK_EOF)
            rasp_error(P->src, MECH_ERR_PARSE, peek(P)->pos, "'return' must be the last statement of the function's body");
        expect(P, P_RBRACE, "to close the function's body");
    }
    next(P);
    s->n_body = body.n;
    s->body = (rasp_stmt **)body.v;
    return s;
}

// vitem = ID | keyword | STRING | [ "-" ] INT
// pragma = "vocab" "{" [ vitem { "," vitem } [ "," ] ] "}" ";"
static rasp_stmt *vocab(parser *P) {
    rasp_stmt *s = new_stmt(P, S_VOCAB, next(P)->pos);
    expect(P, P_LBRACE, "after 'vocab'");
    int cap = 0;
    while (!is_punct(P, P_RBRACE)) {
        rasp_tok *t = peek(P);
        mech_rasp_value v;
        if (t->kind == TK_ID || t->kind == TK_KW) {
            v = (mech_rasp_value){.type = MECH_RASP_STR, .n = (uint32_t)t->slen, .s = t->str};
        } else if (t->kind == TK_STR) {
            v = (mech_rasp_value){.type = MECH_RASP_STR, .n = (uint32_t)t->slen, .s = t->str};
        } else if (t->kind == TK_INT) {
            v = mech_rasp_int(t->i);
        } else if (tok_is_punct(t, P_MINUS) && peek_at(P, 1)->kind == TK_INT) {
            next(P);
            if (peek(P)->i == INT64_MIN) error_here(P, "integer out of range");
            v = mech_rasp_int(-peek(P)->i);
        } else {
            error_here(P, "expected a vocab item (a name, a quoted string or an integer)");
        }
        next(P);
        if (s->n_values == cap) {
            cap = cap ? cap * 2 : 8;
            mech_rasp_value *nv = alloc(P, (size_t)cap * sizeof *nv);
            mech_rasp_pos *np = alloc(P, (size_t)cap * sizeof *np);
            if (s->n_values) {
                memcpy(nv, s->values, (size_t)s->n_values * sizeof *nv);
                memcpy(np, s->value_pos, (size_t)s->n_values * sizeof *np);
            }
            s->values = nv;
            s->value_pos = np;
        }
        s->value_pos[s->n_values] = t->pos;
        s->values[s->n_values++] = v;
        if (!accept(P, P_COMMA)) break;
    }
    expect(P, P_RBRACE, "to close the vocab");
    expect(P, P_SEMI, "after the vocab");
    return s;
}

// pragma = "max_seq_len" INT ";" | "causal" ( "true" | "false" ) ";" | "output" ID ";"
static rasp_stmt *pragma(parser *P) {
    rasp_tok *w = next(P);
    rasp_stmt *s;
    if (!strcmp(w->str, "max_seq_len")) {
        s = new_stmt(P, S_MAXLEN, w->pos);
        if (peek(P)->kind != TK_INT) error_here(P, "expected an integer after 'max_seq_len'");
        s->name_pos = peek(P)->pos;
        s->ival = next(P)->i;
    } else if (!strcmp(w->str, "causal")) {
        s = new_stmt(P, S_CAUSAL, w->pos);
        if (!is_kw(P, KW_TRUE) && !is_kw(P, KW_FALSE)) error_here(P, "expected 'true' or 'false' after 'causal'");
        s->ival = next(P)->sub == KW_TRUE;
    } else {
        s = new_stmt(P, S_OUTPUT, w->pos);
        rasp_tok *t = expect_id(P, "a variable name after 'output'");
        s->name = t->str;
        s->name_pos = t->pos;
    }
    char ctx[64];
    snprintf(ctx, sizeof ctx, "after the '%s' pragma", w->str);
    expect(P, P_SEMI, ctx);
    return s;
}

// stmt = pragma | def | assign
static rasp_stmt *stmt(parser *P) {
    rasp_tok *t = peek(P);
    if (tok_is_kw(t, KW_DEF)) return def(P);
    if (tok_is_kw(t, KW_RETURN)) rasp_error(P->src, MECH_ERR_PARSE, t->pos, "'return' outside a def");
    if (t->kind != TK_ID) error_here(P, "expected a statement (an assignment, a def or a pragma)");
    if (tok_is_punct(peek_at(P, 1), P_ASSIGN)) return assign(P);
    if (!strcmp(t->str, "vocab")) return vocab(P);
    if (!strcmp(t->str, "max_seq_len") || !strcmp(t->str, "causal") || !strcmp(t->str, "output")) return pragma(P);
    next(P);
    char what[160];
    snprintf(what, sizeof what, "expected '=' after '%.60s'", t->str);
    error_here(P, what);
}

// program = { stmt } EOF
void rasp_parse_program(const rasp_src *src, mech_rasp_heap *h, rasp_ast_program *out) {
    parser P = {.src = src, .h = h};
    P.t = rasp_lex(src, h, &P.n);
    vec stmts = {0};
    while (peek(&P)->kind != TK_EOF) vec_push(&P, &stmts, stmt(&P));
    out->n = stmts.n;
    out->stmts = (rasp_stmt **)stmts.v;
}
