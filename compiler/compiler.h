/*
** compiler/compiler.h: mech's RASP front end: the language of docs/rasp.md
** parsed into a DAG of s-op and selector nodes (the IR), and the reference
** interpreter that evaluates that DAG. The compiler to weights consumes the
** same IR, so the interpreter and the compiled model share one semantics.
**
** Worked example: parse a program, evaluate it on "a b c", print JSON.
**
**   mech_err err = {0};
**   mech_rasp_program *p;
**   if (mech_rasp_parse("rev.rasp", src, len, &p, &err)) { fputs(err.msg, stderr); ... }
**   mech_rasp_value *in, *out;
**   size_t n;
**   if (mech_rasp_input_parse(p, "a b c", &in, &n, &err)) ...;
**   if (mech_rasp_eval(p, in, n, &out, &err)) ...;       // err.msg: file:line:col: error: ...
**   mech_buf b = {0};
**   mech_rasp_values_json(&b, out, n);                    // ["c","b","a"]
**   mech_free(in); mech_free(out); mech_buf_free(&b); mech_rasp_program_free(p);
**
** The IR (read-only after parsing): nodes[0..n) in topological order (every
** input id is smaller than its consumer's id); only the nodes the output
** depends on are kept. Each node has a kind, an encoding, its inputs, the
** lambda it applies (an expression tree over parameters and constants), the
** RASP variable it was assigned to and a unique label for residual names.
** Operators on s-ops (`length - indices - 1`, `tokens == "a"`, `x if c else
** y`, abs/min/max/round on s-ops) are already lowered to MAP (one input) or
** ZIPMAP (several) nodes whose lambda holds the whole operator expression;
** defs are expanded; identical nodes are shared.
**
** Errors in source text (syntax, unknown names, arity, types) and in
** evaluation (a failing lambda, a categorical aggregate over differing
** values) come back in err->msg as
**   file:line:col: error: message
**   <the source line>
**   <spaces>^
** Syntax errors are MECH_ERR_PARSE, name/type/arity errors MECH_ERR_TYPE,
** evaluation errors MECH_ERR_TYPE (lambda failures, aggregate conflicts) and
** bad inputs MECH_ERR_RANGE. The library never prints.
*/
#ifndef MECH_COMPILER_H
#define MECH_COMPILER_H

#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------
// Values (compiler/rasp_value.c)
//
// Python's semantics: 1 == 1.0 == true, "a" != 1, (1, 2) == (1.0, 2);
// ints are int64 (overflow is an error, not a bignum), floats are always
// finite (overflow to inf is an error). Strings and tuples point into memory
// owned by whoever made the value (the program, a heap, a packed array).

typedef enum mech_rasp_vtype {
    MECH_RASP_NONE,
    MECH_RASP_BOOL,
    MECH_RASP_INT,
    MECH_RASP_FLOAT,
    MECH_RASP_STR,
    MECH_RASP_TUPLE,
} mech_rasp_vtype;

typedef struct mech_rasp_value mech_rasp_value;
struct mech_rasp_value {
    uint8_t type;  // mech_rasp_vtype
    uint8_t depth; // tuple nesting: 0 for scalars, 1 + max over items for tuples
    uint32_t n;    // STR: byte length; TUPLE: item count
    union {
        int b;                      // BOOL: 0 or 1
        int64_t i;                  // INT
        double f;                   // FLOAT
        const char *s;              // STR: n bytes, not NUL-terminated
        const mech_rasp_value *t;   // TUPLE: n items
    };
};

mech_rasp_value mech_rasp_none(void);
mech_rasp_value mech_rasp_bool(int b);
mech_rasp_value mech_rasp_int(int64_t i);
mech_rasp_value mech_rasp_float(double f); // f must be finite

// A bump allocator for values made while evaluating lambdas (strings and
// tuples). Everything allocated from it lives until mech_rasp_heap_free.
typedef struct mech_rasp_heap mech_rasp_heap;
mech_rasp_heap *mech_rasp_heap_new(void);
void mech_rasp_heap_free(mech_rasp_heap *h);
// A string value holding a copy of s[0..n) (NULL on out of memory).
mech_status mech_rasp_value_str(mech_rasp_heap *h, const char *s, size_t n, mech_rasp_value *out,
                                mech_err *err);
// A tuple value holding a copy of items[0..n) (the items' own strings and
// tuples are shared, not copied).
mech_status mech_rasp_value_tuple(mech_rasp_heap *h, const mech_rasp_value *items, size_t n,
                                  mech_rasp_value *out, mech_err *err);

// Python's ==.
int mech_rasp_value_eq(const mech_rasp_value *a, const mech_rasp_value *b);
// A hash consistent with mech_rasp_value_eq (1, 1.0 and true hash alike).
uint64_t mech_rasp_value_hash(const mech_rasp_value *v);
// A total order for sorting value sets deterministically: none < numbers <
// strings < tuples; numbers by value, strings bytewise, tuples
// lexicographically. Returns <0, 0, >0; 0 exactly when mech_rasp_value_eq.
int mech_rasp_value_order(const mech_rasp_value *a, const mech_rasp_value *b);
// Python's truth value: none, false, 0, 0.0, "" and () are false.
int mech_rasp_value_truthy(const mech_rasp_value *v);
// JSON: null, true, 3, 0.333333, "a", [1,"b"] (tuples as arrays). Floats get
// up to 6 significant digits without an exponent (ints print as ints, 2.0 as
// 2); only magnitudes below 1e-5 or from 1e16 use one.
void mech_rasp_value_json(mech_buf *b, const mech_rasp_value *v);
// A JSON array of n values, e.g. ["c","b","a"].
void mech_rasp_values_json(mech_buf *b, const mech_rasp_value *v, size_t n);
// RASP syntax, for messages: none, true, 3, 2.0, "a", (1, "b").
void mech_rasp_value_repr(mech_buf *b, const mech_rasp_value *v);

// ---------------------------------------------------------------------------
// The IR (compiler/rasp_lower.c builds it; compiler/rasp_program.c owns it)

typedef struct mech_rasp_pos {
    const char *file; // borrowed from the program
    int line, col;    // 1-based; col counts bytes
} mech_rasp_pos;

// Lambda expression operators.
typedef enum mech_rasp_op {
    MECH_RASP_X_CONST, // value
    MECH_RASP_X_PARAM, // the lambda's parameter number `param`
    MECH_RASP_X_NEG,   // -a
    MECH_RASP_X_POS,   // +a
    MECH_RASP_X_NOT,   // not a (a bool)
    MECH_RASP_X_ADD,   // a + b (numbers; str + str, tuple + tuple concatenate)
    MECH_RASP_X_SUB,   // a - b
    MECH_RASP_X_MUL,   // a * b
    MECH_RASP_X_DIV,   // a / b, always a float
    MECH_RASP_X_FLOORDIV, // a // b, floors (Python)
    MECH_RASP_X_MOD,   // a % b, takes the divisor's sign (Python)
    MECH_RASP_X_EQ,    // a == b
    MECH_RASP_X_NE,    // a != b
    MECH_RASP_X_LT,    // a < b
    MECH_RASP_X_LE,    // a <= b
    MECH_RASP_X_GT,    // a > b
    MECH_RASP_X_GE,    // a >= b
    MECH_RASP_X_IN,    // a in b (b a tuple, or both strings: substring)
    MECH_RASP_X_AND,   // a and b: a if a is false, else b (short-circuit)
    MECH_RASP_X_OR,    // a or b: a if a is true, else b (short-circuit)
    MECH_RASP_X_IF,    // args: cond, then, else (only the chosen branch runs)
    MECH_RASP_X_TUPLE, // (args...)
    MECH_RASP_X_INDEX, // args[0][args[1]], negative indices count from the end
    MECH_RASP_X_CALL,  // fn(args...)
    MECH_RASP_X_COUNT_
} mech_rasp_op;

// Functions callable in expressions.
typedef enum mech_rasp_fn {
    MECH_RASP_FN_ABS,   // abs(x)
    MECH_RASP_FN_MIN,   // min(a, b, ...) or min(tuple)
    MECH_RASP_FN_MAX,   // max(a, b, ...) or max(tuple)
    MECH_RASP_FN_ROUND, // round(x): int, halves to even; round(x, nd): float
    MECH_RASP_FN_LEN,   // len(tuple or str)
    MECH_RASP_FN_INT,   // int(x): truncates floats, parses strings
    MECH_RASP_FN_FLOAT, // float(x)
    MECH_RASP_FN_BOOL,  // bool(x)
    MECH_RASP_FN_COUNT_
} mech_rasp_fn;

typedef struct mech_rasp_expr mech_rasp_expr;
struct mech_rasp_expr {
    mech_rasp_op op;
    int fn;                               // CALL: a mech_rasp_fn
    int param;                            // PARAM: parameter index
    mech_rasp_value value;                // CONST
    int n;                                // number of args
    const mech_rasp_expr *const *args;    // operands, in source order (IF: cond, then, else)
    mech_rasp_pos pos;                    // the operator (or literal, or name) in the source
};

// A function of n_params values. The body may share subtrees.
typedef struct mech_rasp_lambda {
    int n_params;
    const char *const *params; // parameter names (for printing only)
    const mech_rasp_expr *body;
} mech_rasp_lambda;

typedef enum mech_rasp_kind {
    MECH_RASP_TOKENS,         // the input
    MECH_RASP_INDICES,        // 0, 1, ..., n-1
    MECH_RASP_LENGTH,         // n at every position
    MECH_RASP_CONST,          // value at every position
    MECH_RASP_MAP,            // fn(in[0]) per position
    MECH_RASP_ZIPMAP,         // fn(in[0], ..., in[n_in-1]) per position (n_in >= 2)
    MECH_RASP_SELECT,         // selector: keys in[0], queries in[1], pred (or fn(key, query))
    MECH_RASP_AGGREGATE,      // selector in[0], s-op in[1], default value
    MECH_RASP_SELECTOR_WIDTH, // how many keys selector in[0] selects per query
    MECH_RASP_SEL_AND,        // selector in[0] and selector in[1]
    MECH_RASP_SEL_OR,         // selector in[0] or selector in[1]
    MECH_RASP_SEL_NOT,        // not selector in[0]
    MECH_RASP_KIND_COUNT_
} mech_rasp_kind;

typedef enum mech_rasp_enc {
    MECH_RASP_CATEGORICAL, // one residual dimension per value (the default)
    MECH_RASP_NUMERICAL,   // one dimension holding the value
} mech_rasp_enc;

// select's predicate, applied as pred(key, query): LT selects key < query.
typedef enum mech_rasp_pred {
    MECH_RASP_PRED_EQ,
    MECH_RASP_PRED_NE,
    MECH_RASP_PRED_LT,
    MECH_RASP_PRED_LE,
    MECH_RASP_PRED_GT,
    MECH_RASP_PRED_GE,
    MECH_RASP_PRED_TRUE,
    MECH_RASP_PRED_FALSE,
    MECH_RASP_PRED_LAMBDA, // fn(key, query), truthy selects
    MECH_RASP_PRED_COUNT_
} mech_rasp_pred;

typedef struct mech_rasp_node {
    int id;                     // index in the program's nodes
    mech_rasp_kind kind;
    mech_rasp_enc enc;          // s-ops; selectors are always CATEGORICAL
    int n_in;
    const int *in;              // input node ids (all < id)
    mech_rasp_pred pred;        // SELECT
    const mech_rasp_lambda *fn; // MAP, ZIPMAP (n_params == n_in), SELECT with PRED_LAMBDA (2)
    mech_rasp_value value;      // CONST: the value; AGGREGATE: the default
    const char *name;           // the RASP variable this node was assigned to, or NULL
    const char *label;          // unique among the nodes: name, name_2, map_7, ...
    const char *context;        // the variable of the statement that created it (for messages)
    mech_rasp_pos pos;          // where it was written
} mech_rasp_node;

int mech_rasp_node_is_selector(const mech_rasp_node *n);
const char *mech_rasp_kind_name(mech_rasp_kind k); // "map", "select", ...
const char *mech_rasp_pred_name(mech_rasp_pred p); // "==", "true", "lambda", ...

// ---------------------------------------------------------------------------
// Programs (compiler/rasp_program.c)

typedef struct mech_rasp_program mech_rasp_program;

// Parses, type-checks and lowers src[0..len) (path is used in messages) into
// *out (owned; free with mech_rasp_program_free). Syntax errors:
// MECH_ERR_PARSE; unknown names, wrong arity, misused selectors and lambdas,
// recursion, missing pragmas: MECH_ERR_TYPE. Either way err->msg holds
// "path:line:col: error: ...", the source line and a caret.
mech_status mech_rasp_parse(const char *path, const char *src, size_t len, mech_rasp_program **out,
                            mech_err *err);
// Reads path and parses it (MECH_ERR_IO when it cannot be read).
mech_status mech_rasp_load(const char *path, mech_rasp_program **out, mech_err *err);
void mech_rasp_program_free(mech_rasp_program *p);

// Accessors; every pointer is borrowed from p.
const mech_rasp_value *mech_rasp_program_vocab(const mech_rasp_program *p, size_t *n);
int mech_rasp_program_max_seq_len(const mech_rasp_program *p);
int mech_rasp_program_causal(const mech_rasp_program *p);
int mech_rasp_program_output(const mech_rasp_program *p); // node id
int mech_rasp_program_n_nodes(const mech_rasp_program *p);
const mech_rasp_node *mech_rasp_program_node(const mech_rasp_program *p, int id);
const char *mech_rasp_program_path(const mech_rasp_program *p);
const char *mech_rasp_program_source(const mech_rasp_program *p, size_t *len);
// The node labelled label, or NULL.
const mech_rasp_node *mech_rasp_program_find(const mech_rasp_program *p, const char *label);

// Appends a listing of the IR, one node per line:
//   %3 opp = zipmap(%2 length, %1 indices) (length, indices) -> length - indices - 1
void mech_rasp_program_dump(mech_buf *b, const mech_rasp_program *p);
// Appends a lambda in the language's syntax: (k, q) -> q == k + 1
void mech_rasp_lambda_print(mech_buf *b, const mech_rasp_lambda *f);
void mech_rasp_expr_print(mech_buf *b, const mech_rasp_expr *e, const char *const *params);

// Sets err to code and "file:line:col: error: <fmt>" with p's source line
// and a caret under pos (pos.file may be NULL: then the program's path).
// For the compiler's own messages about nodes. Returns code.
mech_status mech_rasp_error_at(const mech_rasp_program *p, mech_rasp_pos pos, mech_err *err,
                               mech_status code, const char *fmt, ...) MECH_PRINTF(5, 6);

// Evaluates f on args[0..f->n_params) with Python's semantics; strings and
// tuples it makes are allocated from h. On failure (division by zero, a bad
// index, a type mismatch: MECH_ERR_TYPE) err->msg is the bare reason, e.g.
// "division by zero", and *where (when not NULL) the failing operator.
mech_status mech_rasp_lambda_eval(const mech_rasp_lambda *f, const mech_rasp_value *args,
                                  mech_rasp_heap *h, mech_rasp_value *out, mech_rasp_pos *where,
                                  mech_err *err);

// ---------------------------------------------------------------------------
// The reference interpreter (compiler/rasp_eval.c)

// Splits text at whitespace and matches each piece against p's vocab: a
// quoted piece ("a b", '(') is a string; a bare integer is the vocab's int
// when it has one; anything else must be one of its strings. *out (owned,
// one allocation: mech_free) gets *n values. MECH_ERR_RANGE for a piece
// that is not in the vocab (the message lists it) or more than max_seq_len
// pieces.
mech_status mech_rasp_input_parse(const mech_rasp_program *p, const char *text, mech_rasp_value **out,
                                  size_t *n, mech_err *err);

// Runs p on input[0..n) (vocab values, n <= max_seq_len) and sets *out
// (owned, one allocation holding the values and their strings and tuples:
// mech_free) to the output node's n values. Errors: MECH_ERR_RANGE for an
// input that is too long or not in the vocab; MECH_ERR_TYPE when a lambda
// fails or a categorical aggregate selects differing values (the message
// names the variable, the position and the values).
mech_status mech_rasp_eval(const mech_rasp_program *p, const mech_rasp_value *input, size_t n,
                           mech_rasp_value **out, mech_err *err);

// Every node's values on one input.
typedef struct mech_rasp_trace {
    size_t n;                      // input length
    int n_nodes;
    const mech_rasp_value *vals;   // [n_nodes * n]: s-op node i at position j is vals[i*n + j]
                                   // (selector nodes: none)
    const unsigned char *const *sel; // [n_nodes]: selector node i selects key k for query q
                                   // when sel[i][q*n + k] (causal mask applied); NULL for s-ops
} mech_rasp_trace;

// Like mech_rasp_eval but keeps every node's values. *out is owned: free with
// mech_rasp_trace_free.
mech_status mech_rasp_eval_trace(const mech_rasp_program *p, const mech_rasp_value *input, size_t n,
                                 mech_rasp_trace **out, mech_err *err);
void mech_rasp_trace_free(mech_rasp_trace *t);

// ---------------------------------------------------------------------------
// The compiler to weights (compiler/rasp_compile.c)
//
// A program compiles to a GPT-2-shaped model (no LayerNorm, ReLU MLPs, BOS
// at position 0; token ids: 0 BOS, 1..|vocab| the vocab in written order,
// |vocab|+1 PAD) that runs on the core forward pass. Value sets are inferred
// per node, every node gets its residual dimensions (labels "name:value",
// "name" for numerical s-ops, "bos", "one"), and nodes go to the earliest
// sublayer their inputs allow. The metadata (mech.rasp.*) carries the
// source, vocab, tokens, residual labels, readout and the ground-truth
// circuit; the layout is recomputed from the source to decode outputs.

typedef struct mech_rasp_compiled {
    mech_model *model;  // owned
    size_t n_meta;      // metadata to save with it (mech.rasp.*)
    char **meta_keys, **meta_values;
    char *circuit;      // JSON: nodes with their layer, head, MLP units, dimensions and inputs
} mech_rasp_compiled;

mech_status mech_rasp_compile(const mech_rasp_program *p, mech_rasp_compiled **out, mech_err *err);

// What the compiler refuses, checked from its plan (value sets, layers,
// residual layout) before it builds blocks or allocates the model.
#define MECH_RASP_MAX_PARAMS 100000000 // parameters of the compiled model (400 MB as float32)
#define MECH_RASP_MAX_VALUES 1000000   // values one s-op can hold (one residual dimension each)
typedef struct mech_rasp_limits {
    int64_t max_params;   // 0: MECH_RASP_MAX_PARAMS
    int64_t max_values;   // 0: MECH_RASP_MAX_VALUES
    volatile int *cancel; // when set (e.g. on SIGINT) the compile stops: MECH_ERR_CANCELLED
    // Called now and then with the stage ("planning", "building") and the
    // nodes done out of total.
    void (*progress)(void *user, const char *stage, int64_t done, int64_t total);
    void *user;
} mech_rasp_limits;
// mech_rasp_compile with limits (lim NULL: the defaults; mech_rasp_compile
// is this with NULL). Beyond a limit: MECH_ERR_RANGE (a value set, the
// model's parameters, or a shape no model can have: more than 4096 layers,
// d_model above 65536, ...), or MECH_ERR_NOMEM when building it would not
// fit in 80% of physical memory; the message names the program's file, the
// size asked for and what raises the limit.
mech_status mech_rasp_compile_limited(const mech_rasp_program *p, const mech_rasp_limits *lim,
                                      mech_rasp_compiled **out, mech_err *err);
void mech_rasp_compiled_free(mech_rasp_compiled *c);
void mech_rasp_compiled_explain(const mech_rasp_compiled *c, mech_buf *b);

// The model's token id of a vocab value (1 + its index in the written
// vocab; 0 is BOS), or -1 when v is not in the vocab.
int32_t mech_rasp_token_id(const mech_rasp_program *p, const mech_rasp_value *v);

typedef struct mech_rasp_runner mech_rasp_runner;
mech_status mech_rasp_runner_new(const mech_rasp_program *p, const mech_model *m, mech_rasp_runner **out,
                                 mech_err *err);
void mech_rasp_runner_free(mech_rasp_runner *r);
// Runs n_inputs inputs of len values each (row-major) and decodes the output
// s-op into outputs[n_inputs * len] (values borrowed from the runner).
mech_status mech_rasp_runner_run(mech_rasp_runner *r, const mech_rasp_value *inputs, size_t n_inputs, size_t len,
                                 mech_rasp_value *outputs, mech_err *err);
// Every input up to max_seq_len when there are at most 100,000, else about
// 10,000 random ones (seeded); the first disagreement is an error.
// (mech_rasp_verify_ex with the default cost limit.)
mech_status mech_rasp_verify(const mech_rasp_program *p, const mech_model *m, uint64_t seed, size_t *checked,
                             size_t *exhaustive, mech_err *err);

// Verification's cost is counted in multiply-adds (the model's forward pass
// plus the interpreter, per input); at about 1e10 a second (one core)
// the default is half a minute.
#define MECH_RASP_VERIFY_COST 3e11
typedef struct mech_rasp_verify_opts {
    uint64_t seed;
    double max_cost;      // 0: MECH_RASP_VERIFY_COST
    volatile int *cancel; // when set, stops after the current batch: MECH_ERR_CANCELLED
    void (*progress)(void *user, int64_t done, int64_t total); // after each batch of inputs
    void *user;
} mech_rasp_verify_opts;
typedef struct mech_rasp_verify_result {
    size_t checked;        // inputs that agreed
    size_t total;          // inputs planned
    int exhaustive;        // every input up to max_seq_len
    double all_inputs;     // how many inputs there are up to max_seq_len
    double exhaustive_cost; // what checking all of them would cost
    double cost;           // what the planned ones cost
} mech_rasp_verify_result;
// Checks m against the interpreter: every input when there are at most
// 100,000 and that fits max_cost; else about 10,000 seeded random ones over
// every length; else as many as fit max_cost, with lengths spread evenly up
// to max_seq_len (res->total says how many). MECH_ERR_RANGE when not even
// one input of the longest length fits; MECH_ERR_FORMAT for a disagreement.
mech_status mech_rasp_verify_ex(const mech_rasp_program *p, const mech_model *m, const mech_rasp_verify_opts *opts,
                                mech_rasp_verify_result *res, mech_err *err);
// Only the plan (res without checked), nothing is run.
mech_status mech_rasp_verify_estimate(const mech_rasp_program *p, const mech_model *m,
                                      const mech_rasp_verify_opts *opts, mech_rasp_verify_result *res, mech_err *err);

// ---------------------------------------------------------------------------
// A compiled model's circuit (compiler/rasp_circuit.c): where the compiler
// put each s-op, read back from the metadata mech.rasp.circuit.

typedef struct mech_rasp_circuit_node {
    char *label;        // the IR node's label ("opp", "map_3"), or a helper node's
    char *name;         // the RASP variable, or NULL
    char *kind;         // "tokens", "zipmap", "selector_width", ...
    int numerical;      // one residual dimension holding the value
    int layer;          // the block that writes it; -1: the embedding
    int head_layer, head; // the attention head that computes it (selector_width: that feeds its MLP); -1: none
    int mlp_layer, mlp_from, mlp_to; // hidden units [mlp_from, mlp_to) of block mlp_layer's MLP; -1: none
    int dim_from, dim_to; // its residual dimensions [dim_from, dim_to)
    int n_inputs;
    char **inputs;      // labels of the nodes it reads (a selector's keys and queries)
} mech_rasp_circuit_node;

typedef struct mech_rasp_circuit {
    int n;
    mech_rasp_circuit_node *nodes; // in the compiler's order (inputs first)
} mech_rasp_circuit;

// Parses the metadata mech.rasp.circuit. OUT: *out owned (mech_rasp_circuit_free).
// Errors: MECH_ERR_FORMAT (json NULL or not such a circuit), MECH_ERR_NOMEM.
mech_status mech_rasp_circuit_parse(const char *json, mech_rasp_circuit **out, mech_err *err);
void mech_rasp_circuit_free(mech_rasp_circuit *c);
// The node labelled label (borrowed from c), or NULL.
const mech_rasp_circuit_node *mech_rasp_circuit_find(const mech_rasp_circuit *c, const char *label);
// Where n is computed, for people: "embedding", "L2 head 0", "L1 mlp",
// "L0 head 0 + L0 mlp" (selector_width).
void mech_rasp_circuit_where(const mech_rasp_circuit_node *n, char *buf, size_t cap);

// ---------------------------------------------------------------------------
// For language bindings (compiler/rasp_capi.c): compile, verify and run
// bracketed by mech_capi_call_begin/end (core/core.h) and cancelled by the
// process-wide flag; *flag gets what mech_capi_call_end returned.
// Limits as mech_rasp_limits (0: the defaults); verification as
// mech_rasp_verify_ex with the default cost (*checked: inputs that agreed).
mech_status mech_capi_rasp_compile(const mech_rasp_program *p, int64_t max_params, int64_t max_values,
                                   mech_rasp_compiled **out, int catch_sigint, int *flag, mech_err *err);
mech_status mech_capi_rasp_verify(const mech_rasp_program *p, const mech_model *m, uint64_t seed, size_t *checked,
                                  int catch_sigint, int *flag, mech_err *err);
mech_status mech_capi_rasp_run(mech_rasp_runner *r, const mech_rasp_value *inputs, size_t n_inputs, size_t len,
                               mech_rasp_value *outputs, int catch_sigint, int *flag, mech_err *err);
// sizeof of the structs a binding mirrors ("mech_rasp_value",
// "mech_rasp_compiled"), 0 for other names.
size_t mech_capi_rasp_sizeof(const char *type);

#ifdef __cplusplus
}
#endif
#endif
