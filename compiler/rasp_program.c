/*
** compiler/rasp_program.c: the RASP program object: parsing entry points
** (lex -> parse -> lower under one setjmp, everything in one heap that the
** program owns), accessors, the IR listing and positioned error messages.
*/
#include "compiler/rasp_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const kind_names[MECH_RASP_KIND_COUNT_] = {
    [MECH_RASP_TOKENS] = "tokens",
    [MECH_RASP_INDICES] = "indices",
    [MECH_RASP_LENGTH] = "length",
    [MECH_RASP_CONST] = "const",
    [MECH_RASP_MAP] = "map",
    [MECH_RASP_ZIPMAP] = "zipmap",
    [MECH_RASP_SELECT] = "select",
    [MECH_RASP_AGGREGATE] = "aggregate",
    [MECH_RASP_SELECTOR_WIDTH] = "selector_width",
    [MECH_RASP_SEL_AND] = "and",
    [MECH_RASP_SEL_OR] = "or",
    [MECH_RASP_SEL_NOT] = "not",
};

static const char *const pred_names[MECH_RASP_PRED_COUNT_] = {
    [MECH_RASP_PRED_EQ] = "==",     [MECH_RASP_PRED_NE] = "!=",      [MECH_RASP_PRED_LT] = "<",
    [MECH_RASP_PRED_LE] = "<=",     [MECH_RASP_PRED_GT] = ">",       [MECH_RASP_PRED_GE] = ">=",
    [MECH_RASP_PRED_TRUE] = "true", [MECH_RASP_PRED_FALSE] = "false", [MECH_RASP_PRED_LAMBDA] = "lambda",
};

const char *mech_rasp_kind_name(mech_rasp_kind k) {
    return (int)k >= 0 && k < MECH_RASP_KIND_COUNT_ ? kind_names[k] : "?";
}

const char *mech_rasp_pred_name(mech_rasp_pred p) {
    return (int)p >= 0 && p < MECH_RASP_PRED_COUNT_ ? pred_names[p] : "?";
}

int mech_rasp_node_is_selector(const mech_rasp_node *n) {
    return n->kind == MECH_RASP_SELECT || n->kind == MECH_RASP_SEL_AND || n->kind == MECH_RASP_SEL_OR ||
           n->kind == MECH_RASP_SEL_NOT;
}

// ---------------------------------------------------------------------------
// Parsing

mech_status mech_rasp_parse(const char *path, const char *src, size_t len, mech_rasp_program **out, mech_err *err) {
    if (!out) return mech_err_set(err, MECH_ERR_ARG, "mech_rasp_parse: out is NULL");
    *out = NULL;
    if (!src && len) return mech_err_set(err, MECH_ERR_ARG, "mech_rasp_parse: src is NULL");
    if (!path) path = "<input>";
    mech_rasp_program *p = mech_calloc(1, sizeof *p);
    mech_rasp_heap *h = mech_rasp_heap_new();
    char *path_copy = h ? rasp_strndup(h, path, strlen(path)) : NULL;
    char *src_copy = h ? rasp_strndup(h, src ? src : "", len) : NULL;
    if (!p || !h || !path_copy || !src_copy) {
        mech_free(p);
        mech_rasp_heap_free(h);
        return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
    }
    p->heap = h;
    p->path = path_copy;
    p->src = src_copy;
    p->len = len;
    p->output = -1;
    // The stages report through a local mech_err, so the status is known
    // even when the caller passed none.
    mech_err local = {0};
    jmp_buf jump;
    rasp_src s = {p->path, p->src, p->len, &local, &jump};
    if (setjmp(jump)) {
        mech_rasp_program_free(p);
        if (err) *err = local;
        return local.code ? local.code : MECH_ERR_PARSE;
    }
    rasp_ast_program ast;
    rasp_parse_program(&s, h, &ast);
    rasp_lower_program(&s, &ast, p);
    *out = p;
    return MECH_OK;
}

mech_status mech_rasp_load(const char *path, mech_rasp_program **out, mech_err *err) {
    if (out) *out = NULL;
    if (!path) return mech_err_set(err, MECH_ERR_ARG, "mech_rasp_load: path is NULL");
    char *src;
    size_t len;
    mech_status st = mech_read_file(path, &src, &len, err);
    if (st) return st;
    st = mech_rasp_parse(path, src, len, out, err);
    mech_free(src);
    return st;
}

void mech_rasp_program_free(mech_rasp_program *p) {
    if (!p) return;
    mech_rasp_heap_free(p->heap);
    mech_free(p);
}

// ---------------------------------------------------------------------------
// Accessors

const mech_rasp_value *mech_rasp_program_vocab(const mech_rasp_program *p, size_t *n) {
    if (n) *n = p->n_vocab;
    return p->vocab;
}
int mech_rasp_program_max_seq_len(const mech_rasp_program *p) { return p->max_seq_len; }
int mech_rasp_program_causal(const mech_rasp_program *p) { return p->causal; }
int mech_rasp_program_output(const mech_rasp_program *p) { return p->output; }
int mech_rasp_program_n_nodes(const mech_rasp_program *p) { return p->n_nodes; }
const char *mech_rasp_program_path(const mech_rasp_program *p) { return p->path; }

const mech_rasp_node *mech_rasp_program_node(const mech_rasp_program *p, int id) {
    return id >= 0 && id < p->n_nodes ? p->nodes[id] : NULL;
}

const char *mech_rasp_program_source(const mech_rasp_program *p, size_t *len) {
    if (len) *len = p->len;
    return p->src;
}

const mech_rasp_node *mech_rasp_program_find(const mech_rasp_program *p, const char *label) {
    for (int i = 0; label && i < p->n_nodes; i++)
        if (!strcmp(p->nodes[i]->label, label)) return p->nodes[i];
    return NULL;
}

mech_status mech_rasp_error_at(const mech_rasp_program *p, mech_rasp_pos pos, mech_err *err, mech_status code,
                               const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rasp_diag(err, code, pos.file ? pos.file : p->path, p->src, p->len, pos, msg);
    return code;
}

// ---------------------------------------------------------------------------
// Listing

void mech_rasp_program_dump(mech_buf *b, const mech_rasp_program *p) {
    mech_buf_puts(b, "vocab {");
    for (size_t i = 0; i < p->n_vocab; i++) {
        if (i) mech_buf_puts(b, ", ");
        mech_rasp_value_repr(b, &p->vocab[i]);
    }
    mech_buf_printf(b, "}; max_seq_len %d;%s\n", p->max_seq_len, p->causal ? " causal true;" : "");
    for (int i = 0; i < p->n_nodes; i++) {
        const mech_rasp_node *n = p->nodes[i];
        mech_buf_printf(b, "%%%d %s = %s%s(", n->id, n->label, n->enc == MECH_RASP_NUMERICAL ? "numerical " : "",
                        mech_rasp_kind_name(n->kind));
        for (int k = 0; k < n->n_in; k++)
            mech_buf_printf(b, "%s%%%d %s", k ? ", " : "", n->in[k], p->nodes[n->in[k]]->label);
        if (n->kind == MECH_RASP_SELECT && n->pred != MECH_RASP_PRED_LAMBDA)
            mech_buf_printf(b, ", %s", mech_rasp_pred_name(n->pred));
        if (n->kind == MECH_RASP_CONST) mech_rasp_value_repr(b, &n->value);
        if (n->kind == MECH_RASP_AGGREGATE) {
            mech_buf_puts(b, ", default ");
            mech_rasp_value_repr(b, &n->value);
        }
        mech_buf_puts(b, ")");
        if (n->fn) {
            mech_buf_puts(b, ": ");
            mech_rasp_lambda_print(b, n->fn);
        }
        mech_buf_puts(b, "\n");
    }
    if (p->output >= 0) mech_buf_printf(b, "output %%%d %s\n", p->output, p->nodes[p->output]->label);
}
