/*
** compiler/rasp_int.h: private to compiler/: the structs each stage of the
** RASP front end owns, under a banner naming the file that owns them.
**
** Work flows one way: rasp_lex.c (tokens) -> rasp_parse.c (AST with
** positions) -> rasp_lower.c (defs expanded, operators lowered to maps, the
** DAG IR with shared subexpressions) -> rasp_eval.c (the reference
** interpreter over the IR). rasp_value.c holds the value semantics and
** rasp_expr.c the lambda interpreter every stage uses; rasp_program.c owns the
** program and the public entry points.
**
** Errors inside a stage unwind with longjmp to the stage's entry point, so
** every allocation made inside one comes from a heap (mech_rasp_heap) that
** the entry point frees or hands over: nothing leaks when an error jumps.
*/
#ifndef MECH_RASP_INT_H
#define MECH_RASP_INT_H

#include "compiler/compiler.h"

#include <setjmp.h>

// Limits that keep hostile input from exhausting the stack or memory.
// RASP_MAX_DEPTH bounds every recursive walk over what the user wrote: the
// parser's recursion, the height of the AST (a chain `a + b + c` is a tree
// of height 3, so flat chains count too), the lowering's recursion with
// defs expanded, the lambdas' expression trees (evaluation, printing,
// hashing) and chains of selector `and`/`or`/`not` (the compiler's selector
// walks). Each walk recurses at most this deep, which keeps it well inside
// an 8 MiB stack also under AddressSanitizer.
#define RASP_MAX_DEPTH 1000       // expression nesting (see above)
// Keeps a helper's frame out of a recursive caller's (see rasp_lower.c).
#if defined(__GNUC__) || defined(__clang__)
#define MECH_NOINLINE __attribute__((noinline))
#else
#define MECH_NOINLINE
#endif
#define RASP_MAX_TUPLE_DEPTH 32   // tuple nesting in values
#define RASP_MAX_STR 65536        // bytes in a string value
#define RASP_MAX_TUPLE 65536      // items in a tuple value
#define RASP_MAX_SEQ_LEN 4096     // max_seq_len
#define RASP_MAX_CALL_DEPTH 64    // nested def expansions
#define RASP_MAX_NODES 100000     // IR nodes
#define RASP_MAX_WORK 2000000     // expression lowerings (defs expanded)
#define RASP_PENDING_SIZE 256     // operator-expression size before it is cut into nodes

// ---------------------------------------------------------------------------
// rasp_value.c: heap, values and their operators

struct mech_rasp_heap {
    struct rasp_chunk *head;
    char *p;     // next free byte in head
    size_t left; // bytes left in head
};

void *rasp_alloc(mech_rasp_heap *h, size_t n); // 16-aligned, zeroed; NULL when out of memory
char *rasp_strndup(mech_rasp_heap *h, const char *s, size_t n); // NUL-terminated copy

// Why an operation failed: a message, the operator's position, and whether
// it was memory (then the caller reports MECH_ERR_NOMEM).
typedef struct rasp_fail {
    char msg[400];
    mech_rasp_pos pos;
    int has_pos;
    int nomem;
} rasp_fail;

int rasp_failf(rasp_fail *f, const char *fmt, ...) MECH_PRINTF(2, 3); // sets msg; returns -1
const char *rasp_type_name(const mech_rasp_value *v);      // "int", "str", ...
const char *rasp_op_text(mech_rasp_op op);                  // "+", "//", "not", "and", ...
int rasp_make_str(mech_rasp_heap *h, const char *s, size_t n, mech_rasp_value *out, rasp_fail *f);
int rasp_make_tuple(mech_rasp_heap *h, const mech_rasp_value *items, size_t n, mech_rasp_value *out,
                    rasp_fail *f);
// a op b for the arithmetic and comparison operators (ADD .. IN).
int rasp_binary(mech_rasp_op op, const mech_rasp_value *a, const mech_rasp_value *b, mech_rasp_heap *h,
                mech_rasp_value *out, rasp_fail *f);
// NEG, POS, NOT.
int rasp_unary(mech_rasp_op op, const mech_rasp_value *a, mech_rasp_value *out, rasp_fail *f);
int rasp_index(const mech_rasp_value *a, const mech_rasp_value *i, mech_rasp_heap *h, mech_rasp_value *out,
               rasp_fail *f);
int rasp_call(mech_rasp_fn fn, const mech_rasp_value *args, int n, mech_rasp_heap *h, mech_rasp_value *out,
              rasp_fail *f);
// Like mech_rasp_value_eq but 1, 1.0 and true differ (for sharing constants).
int rasp_value_same(const mech_rasp_value *a, const mech_rasp_value *b);
// Deep size in bytes of v's strings and tuples, and a deep copy into dst
// (advancing *pool) for packing values into one allocation.
size_t rasp_value_deep_size(const mech_rasp_value *v);
mech_rasp_value rasp_value_deep_copy(const mech_rasp_value *v, char **pool);
void rasp_float_json(char *buf, size_t cap, double v); // the JSON float format
extern const char *const rasp_fn_names[MECH_RASP_FN_COUNT_];

// ---------------------------------------------------------------------------
// rasp_expr.c: the lambda interpreter and printer

// Internal operator used only while lowering: a reference to an IR node
// (param = its creation index) that materialisation turns into a PARAM.
#define RASP_X_LEAF MECH_RASP_X_COUNT_

int rasp_expr_eval(const mech_rasp_expr *e, const mech_rasp_value *args, int n_args, mech_rasp_heap *h,
                   mech_rasp_value *out, rasp_fail *f);
uint64_t rasp_expr_hash(const mech_rasp_expr *e);
int rasp_expr_equal(const mech_rasp_expr *a, const mech_rasp_expr *b);
int rasp_expr_size(const mech_rasp_expr *e); // tree size, shared subtrees counted each time

// ---------------------------------------------------------------------------
// rasp_lex.c: tokens

typedef enum rasp_tok_kind {
    TK_EOF,
    TK_ID,
    TK_KW,     // sub: rasp_kw
    TK_PUNCT,  // sub: rasp_punct
    TK_INT,
    TK_FLOAT,
    TK_STR,
} rasp_tok_kind;

typedef enum rasp_kw {
    KW_DEF, KW_RETURN, KW_IF, KW_ELSE, KW_AND, KW_OR, KW_NOT, KW_IN, KW_TRUE, KW_FALSE, KW_NONE,
} rasp_kw;

typedef enum rasp_punct {
    P_PLUS, P_MINUS, P_STAR, P_SLASH, P_DSLASH, P_PERCENT,
    P_EQ, P_NE, P_LT, P_LE, P_GT, P_GE,
    P_ASSIGN, P_LPAREN, P_RPAREN, P_LBRACKET, P_RBRACKET, P_LBRACE, P_RBRACE,
    P_COMMA, P_SEMI, P_ARROW,
} rasp_punct;

typedef struct rasp_tok {
    rasp_tok_kind kind;
    int sub;          // KW: rasp_kw; PUNCT: rasp_punct
    const char *text; // in the source
    size_t len;
    mech_rasp_pos pos;
    int64_t i;        // INT
    double f;         // FLOAT
    const char *str;  // STR: decoded bytes (NUL-terminated copy), ID: the name
    size_t slen;
} rasp_tok;

// Where a stage reports errors: the source for the caret line, and the
// jump back to the stage's entry point.
typedef struct rasp_src {
    const char *file;
    const char *text;
    size_t len;
    mech_err *err;
    jmp_buf *jump;
} rasp_src;

// Sets src->err to "file:line:col: error: msg" + source line + caret and
// jumps to src->jump.
_Noreturn void rasp_error(const rasp_src *src, mech_status code, mech_rasp_pos pos, const char *fmt, ...)
    MECH_PRINTF(4, 5);
// The same message without jumping.
void rasp_diag(mech_err *err, mech_status code, const char *file, const char *text, size_t len,
               mech_rasp_pos pos, const char *msg);

// Tokenizes the whole source into h (the array ends with TK_EOF).
rasp_tok *rasp_lex(const rasp_src *src, mech_rasp_heap *h, int *n_tok);
const char *rasp_tok_describe(const rasp_tok *t, char *buf, size_t cap); // "'foo'", "end of file"
const char *rasp_punct_text(int p);
const char *rasp_kw_text(int k);

// ---------------------------------------------------------------------------
// rasp_parse.c: the AST

typedef enum rasp_ast_kind {
    A_CONST,  // value
    A_NAME,   // name
    A_TUPLE,  // kids[0..n)
    A_UNARY,  // op (NEG, POS, NOT) kids[0]
    A_BINARY, // op (ADD .. IN, AND, OR) kids[0], kids[1]
    A_IF,     // kids: then, cond, else (source order)
    A_CALL,   // name(kids[0..n))
    A_INDEX,  // kids[0][kids[1]]
    A_LAMBDA, // (params) -> kids[0]
    A_OPREF,  // a bare comparison operator as select's predicate: pred
} rasp_ast_kind;

typedef struct rasp_ast rasp_ast;
struct rasp_ast {
    rasp_ast_kind kind;
    int op;                 // UNARY/BINARY: mech_rasp_op; OPREF: mech_rasp_pred
    mech_rasp_value value;  // CONST
    const char *name;       // NAME, CALL
    int n;
    rasp_ast **kids;
    int n_params;           // LAMBDA
    const char **params;
    mech_rasp_pos *param_pos;
    mech_rasp_pos pos;
    int height;             // 1 + the tallest kid (a parenthesis adds 1): bounded by RASP_MAX_DEPTH
};

typedef enum rasp_stmt_kind {
    S_ASSIGN,  // name = expr
    S_DEF,     // def name(params) { body } with ret
    S_VOCAB,   // vocab {values}
    S_MAXLEN,  // max_seq_len ival
    S_CAUSAL,  // causal ival
    S_OUTPUT,  // output name
} rasp_stmt_kind;

typedef struct rasp_stmt rasp_stmt;
struct rasp_stmt {
    rasp_stmt_kind kind;
    const char *name;
    mech_rasp_pos pos;      // the statement's first token
    mech_rasp_pos name_pos;
    rasp_ast *expr;         // ASSIGN; DEF: the return expression
    int n_params;           // DEF
    const char **params;
    mech_rasp_pos *param_pos;
    int n_body;             // DEF: assignments before return
    rasp_stmt **body;
    int n_values;           // VOCAB
    mech_rasp_value *values;
    mech_rasp_pos *value_pos;
    int64_t ival;           // MAXLEN, CAUSAL
};

typedef struct rasp_ast_program {
    int n;
    rasp_stmt **stmts;
} rasp_ast_program;

// Parses the whole source into h; errors jump to src->jump.
void rasp_parse_program(const rasp_src *src, mech_rasp_heap *h, rasp_ast_program *out);

// ---------------------------------------------------------------------------
// rasp_lower.c: AST -> IR

// The IR while it is being built: the public node plus what lowering needs.
typedef struct rasp_node rasp_node;
struct rasp_node {
    mech_rasp_node pub;
    rasp_node **ins;
    int index;       // creation order
    int name_depth;  // call depth of the assignment that named it (-1: built-in)
    int live;        // reachable from the output
    int sel_depth;   // selectors: and/or/not nesting (1 for select), bounded by RASP_MAX_DEPTH
    uint64_t hash;
    rasp_node *next; // hash chain for sharing
};

// ---------------------------------------------------------------------------
// rasp_program.c: the program

struct mech_rasp_program {
    mech_rasp_heap *heap; // owns everything below
    const char *path;
    const char *src;
    size_t len;
    mech_rasp_value *vocab;
    size_t n_vocab;
    int max_seq_len;
    int causal;
    int output;
    int n_nodes;
    mech_rasp_node **nodes;
};

// Lowers an AST into p (vocab, pragmas, nodes); errors jump to src->jump.
void rasp_lower_program(const rasp_src *src, const rasp_ast_program *ast, mech_rasp_program *p);

#endif
