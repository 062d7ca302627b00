/*
** cli/pairs.c: clean/corrupt prompt pairs for the experiment commands, from
** a JSONL or TSV file or a built-in dataset. For GPT-2 a prompt is text
** (tokenized) or an array of token ids; for a compiled RASP model it is an
** input sequence ("a b c" or ["a", "b", "c"]) that gets BOS in front, and
** the answers are output values of the program.
*/
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

// What a compiled model's prompts and answers are read against.
typedef struct compiled_ctx {
    mech_rasp_program *prog;
    mech_json *readout;                // mech.rasp.readout, parsed
    const mech_json *readout_values;   // its "values" array, or NULL (numerical)
    const mech_model *m;
} compiled_ctx;

static int ids_from_array(const char *path, int line, const char *name, const mech_json *v, int32_t **ids,
                          size_t *n) {
    *ids = mech_malloc((v->n ? v->n : 1) * sizeof **ids);
    for (size_t i = 0; i < v->n; i++) {
        if (v->items[i].type != MECH_JSON_NUMBER || !v->items[i].is_int || v->items[i].inum < 0 ||
            v->items[i].inum > INT32_MAX) {
            fprintf(stderr, "%s:%d: error: '%s': item %zu is not a token id\n", path, line, name, i + 1);
            return 1;
        }
        (*ids)[i] = (int32_t)v->items[i].inum;
    }
    *n = v->n;
    return 0;
}

// A compiled model's input: "a b c" or an array of vocab values, BOS added.
static int compiled_tokens(const char *path, int line, const char *name, const mech_json *v, const compiled_ctx *cc,
                           int32_t **ids, size_t *n, char **text) {
    mech_err err = {0};
    mech_buf b = {0};
    if (v && v->type == MECH_JSON_STRING) {
        mech_buf_puts(&b, v->str);
    } else if (v && v->type == MECH_JSON_ARRAY) {
        for (size_t i = 0; i < v->n; i++) {
            const mech_json *x = &v->items[i];
            if (i) mech_buf_puts(&b, " ");
            if (x->type == MECH_JSON_STRING) mech_buf_json_string(&b, x->str, x->len);
            else if (x->type == MECH_JSON_NUMBER && x->is_int) mech_buf_printf(&b, "%lld", (long long)x->inum);
            else if (x->type == MECH_JSON_NUMBER) mech_buf_printf(&b, "%.17g", x->num);
            else {
                fprintf(stderr, "%s:%d: error: '%s': item %zu is not a vocab value (a string or a number)\n", path,
                        line, name, i + 1);
                mech_buf_free(&b);
                return 1;
            }
        }
    } else {
        fprintf(stderr, "%s:%d: error: '%s' must be an input sequence (\"a b c\" or [\"a\", \"b\", \"c\"])\n", path,
                line, name);
        return 1;
    }
    mech_rasp_value *vals = NULL;
    size_t nv = 0;
    if (b.oom || mech_rasp_input_parse(cc->prog, b.data ? b.data : "", &vals, &nv, &err)) {
        fprintf(stderr, "%s:%d: error: '%s': %s\n", path, line, name, b.oom ? "out of memory" : err.msg);
        mech_buf_free(&b);
        return 1;
    }
    *ids = mech_malloc((nv + 1) * sizeof **ids);
    (*ids)[0] = 0; // BOS
    for (size_t i = 0; i < nv; i++) (*ids)[i + 1] = mech_rasp_token_id(cc->prog, &vals[i]);
    *n = nv + 1;
    *text = mech_strdup(b.data ? b.data : "");
    mech_free(vals);
    mech_buf_free(&b);
    return 0;
}

// A field that is text (tokenized) or an array of ids.
static int field_tokens(const char *path, int line, const char *name, const mech_json *v, const mech_tokenizer *tok,
                        const compiled_ctx *cc, int32_t **ids, size_t *n, char **text) {
    mech_err err = {0};
    *ids = NULL, *n = 0, *text = NULL;
    if (cc) return compiled_tokens(path, line, name, v, cc, ids, n, text);
    if (v && v->type == MECH_JSON_STRING) {
        if (mech_tokenizer_encode(tok, v->str, v->len, 0, ids, n, &err)) {
            fprintf(stderr, "%s:%d: error: '%s': %s\n", path, line, name, err.msg);
            return 1;
        }
        *text = mech_strdup(v->str);
        return 0;
    }
    if (v && v->type == MECH_JSON_ARRAY) return ids_from_array(path, line, name, v, ids, n);
    fprintf(stderr, "%s:%d: error: '%s' must be text or an array of token ids\n", path, line, name);
    return 1;
}

// A compiled model's answer: one of the readout's values, as the index of
// its output logit; absent, the model's own output at the last position
// (on the clean input for answer, on the corrupt one for wrong).
static int compiled_answer(const char *path, int line, const char *name, const mech_json *v, const compiled_ctx *cc,
                           const int32_t *ids, size_t n, int32_t *out) {
    mech_err err = {0};
    if (!v || (v->type == MECH_JSON_STRING && v->len == 0)) {
        if (mech_compiled_answer(cc->m, ids, (int)n, out, &err)) {
            fprintf(stderr, "%s:%d: error: '%s': %s\n", path, line, name, err.msg);
            return 1;
        }
        return 0;
    }
    const mech_json *vals = cc->readout_values;
    for (size_t i = 0; vals && i < vals->n; i++) {
        const mech_json *x = &vals->items[i];
        int eq = x->type == v->type &&
                 ((x->type == MECH_JSON_STRING && x->len == v->len && !memcmp(x->str, v->str, v->len)) ||
                  (x->type == MECH_JSON_NUMBER && x->num == v->num) ||
                  (x->type == MECH_JSON_BOOL && x->boolean == v->boolean));
        // TSV columns are strings: match a number's spelling too
        if (!eq && v->type == MECH_JSON_STRING && x->type == MECH_JSON_NUMBER) {
            char *e;
            double d = strtod(v->str, &e);
            eq = e != v->str && !*e && d == x->num;
        }
        if (eq) {
            *out = (int32_t)i;
            return 0;
        }
    }
    if (!vals) {
        fprintf(stderr, "%s:%d: error: '%s': the program's output is numerical; leave answers out and use --metric kl or "
                        "logprob of output 0\n", path, line, name);
        return 1;
    }
    mech_buf b = {0};
    mech_buf_puts(&b, "[");
    for (size_t i = 0; i < vals->n && i < 20; i++) {
        const mech_json *x = &vals->items[i];
        if (i) mech_buf_puts(&b, ", ");
        if (x->type == MECH_JSON_STRING) mech_buf_json_string(&b, x->str, x->len);
        else mech_buf_printf(&b, "%g", x->num);
    }
    mech_buf_puts(&b, vals->n > 20 ? ", ...]" : "]");
    fprintf(stderr, "%s:%d: error: '%s' is not an output value of the program; expected one of %s\n", path, line, name,
            b.data ? b.data : "[]");
    mech_buf_free(&b);
    return 1;
}

// A single token: an id, or text that tokenizes to exactly one token.
static int field_token(const char *path, int line, const char *name, const mech_json *v, const mech_tokenizer *tok,
                       int32_t *out) {
    if (v && v->type == MECH_JSON_NUMBER && v->is_int && v->inum >= 0 && v->inum <= INT32_MAX) {
        *out = (int32_t)v->inum;
        return 0;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    char *text = NULL;
    int rc = field_tokens(path, line, name, v, tok, NULL, &ids, &n, &text);
    if (!rc && n != 1) {
        fprintf(stderr, "%s:%d: error: '%s' is %zu tokens, expected exactly one (e.g. \" Mary\" with its space)\n",
                path, line, name, n);
        rc = 1;
    }
    if (!rc) *out = ids[0];
    mech_free(ids);
    mech_free(text);
    return rc;
}

void cli_pairs_free(cli_pair *p, int n) {
    for (int i = 0; i < n; i++) {
        mech_free(p[i].clean), mech_free(p[i].corrupt);
        mech_free(p[i].clean_text), mech_free(p[i].corrupt_text);
    }
    free(p);
}

static void compiled_ctx_free(compiled_ctx *cc) {
    mech_rasp_program_free(cc->prog);
    mech_json_free(cc->readout);
}

// The program and readout of a compiled model; 0 or an exit code.
static int compiled_ctx_init(const char *cmd, const mech_model *m, compiled_ctx *cc) {
    memset(cc, 0, sizeof *cc);
    cc->m = m;
    mech_err err = {0};
    const char *src = mech_model_meta(m, "mech.rasp.source"), *ro = mech_model_meta(m, "mech.rasp.readout");
    mech_json *j = NULL;
    if (mech_rasp_parse("mech.rasp.source", src, strlen(src), &cc->prog, &err)) return cli_fail(cmd, &err);
    if (!ro || mech_json_parse(ro, strlen(ro), &j, &err)) {
        mech_err_set(&err, MECH_ERR_FORMAT, "mech.rasp.readout: missing or malformed");
        compiled_ctx_free(cc);
        return cli_fail(cmd, &err);
    }
    const mech_json *vals = mech_json_get(j, "values");
    cc->readout = j;
    cc->readout_values = vals && vals->type == MECH_JSON_ARRAY ? vals : NULL;
    return 0;
}

int cli_pairs_read(const char *cmd, const char *path, const mech_model *m, const mech_tokenizer *tok, cli_pair **out,
                   int *n_out) {
    mech_err err = {0};
    char *text;
    size_t len;
    compiled_ctx cc, *ccp = NULL;
    if (mech_model_meta(m, "mech.rasp.source")) {
        int rc = compiled_ctx_init(cmd, m, &cc);
        if (rc) return rc;
        ccp = &cc;
    }
    if (mech_read_file(path, &text, &len, &err)) {
        if (ccp) compiled_ctx_free(ccp);
        return cli_fail(cmd, &err);
    }
    cli_pair *p = NULL;
    int n = 0, cap = 0, line = 0, rc = 0;
    // Lines are C strings below: a NUL byte would silently end the file there.
    const char *nul = memchr(text, 0, len);
    if (nul) {
        int at = 1;
        for (const char *c = text; c < nul; c++) at += *c == '\n';
        fprintf(stderr, "%s:%d: error: a NUL byte; expected JSONL or TSV text\n", path, at);
        rc = 2;
    }
    for (char *s = text, *e; s && *s && !rc; s = e ? e + 1 : NULL) {
        e = strchr(s, '\n');
        if (e) *e = 0;
        line++;
        size_t ll = strlen(s);
        if (ll && s[ll - 1] == '\r') s[--ll] = 0;
        if (!ll || s[0] == '#') continue;
        mech_json *j = NULL;
        if (s[0] == '{') {
            if (mech_json_parse(s, ll, &j, &err)) {
                fprintf(stderr, "%s:%d: error: %s\n", path, line, err.msg);
                rc = 2;
                break;
            }
            if (j->type != MECH_JSON_OBJECT) {
                fprintf(stderr, "%s:%d: error: expected an object {\"clean\", \"corrupt\", \"answer\", \"wrong\"}\n",
                        path, line);
                mech_json_free(j);
                rc = 2;
                break;
            }
        } else {
            // TSV: build the same object from the columns. They must be UTF-8,
            // as JSONL is: JSON-quoting other bytes would change the text.
            for (size_t k = 0; k < ll;) {
                size_t u = (unsigned char)s[k] < 0x80 ? 1 : mech_utf8_len((const unsigned char *)s + k, ll - k);
                if (!u) {
                    fprintf(stderr, "%s:%d: error: byte %zu is not UTF-8 text\n", path, line, k + 1);
                    rc = 2;
                    break;
                }
                k += u;
            }
            if (rc) break;
            mech_buf b = {0};
            const char *names[4] = {"clean", "corrupt", "answer", "wrong"};
            mech_buf_puts(&b, "{");
            char *col = s;
            for (int c = 0; c < 4 && col; c++) {
                char *tab = strchr(col, '\t');
                if (tab) *tab = 0;
                mech_buf_printf(&b, "%s\"%s\": ", c ? ", " : "", names[c]);
                mech_buf_json_string(&b, col, strlen(col));
                col = tab ? tab + 1 : NULL;
            }
            mech_buf_puts(&b, "}");
            if (b.oom || mech_json_parse(b.data, b.len, &j, &err)) rc = 1;
            mech_buf_free(&b);
            if (rc) break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            cli_pair *g = realloc(p, (size_t)cap * sizeof *g);
            if (!g) {
                rc = 1;
                mech_json_free(j);
                break;
            }
            p = g;
        }
        cli_pair *q = &p[n++];
        memset(q, 0, sizeof *q);
        q->line = line, q->wrong = -1;
        const mech_json *a = mech_json_get(j, "answer"), *w = mech_json_get(j, "wrong");
        int no_wrong = !w || (w->type == MECH_JSON_STRING && w->len == 0);
        rc = field_tokens(path, line, "clean", mech_json_get(j, "clean"), tok, ccp, &q->clean, &q->n_clean,
                          &q->clean_text) ||
             field_tokens(path, line, "corrupt", mech_json_get(j, "corrupt"), tok, ccp, &q->corrupt, &q->n_corrupt,
                          &q->corrupt_text);
        if (!rc && ccp) {
            rc = compiled_answer(path, line, "answer", a, ccp, q->clean, q->n_clean, &q->answer) ||
                 compiled_answer(path, line, "wrong", no_wrong ? NULL : w, ccp, q->corrupt, q->n_corrupt, &q->wrong);
        } else if (!rc) {
            rc = field_token(path, line, "answer", a, tok, &q->answer) ||
                 (!no_wrong && field_token(path, line, "wrong", w, tok, &q->wrong));
        }
        if (!rc && q->n_clean != q->n_corrupt) {
            fprintf(stderr, "%s:%d: error: clean is %zu tokens but corrupt is %zu; patching needs equal lengths\n", path,
                    line, q->n_clean, q->n_corrupt);
            rc = 2;
        }
        if (!rc && (q->n_clean == 0 || q->n_clean > (size_t)m->cfg.n_ctx)) {
            fprintf(stderr, "%s:%d: error: prompts of %zu tokens; this model takes 1 to %d\n", path, line, q->n_clean,
                    m->cfg.n_ctx);
            rc = 2;
        }
        if (rc == 1) rc = 2;
        mech_json_free(j);
    }
    mech_free(text);
    if (ccp) compiled_ctx_free(ccp);
    if (!rc && !n) {
        fprintf(stderr, "%s: error: no pairs in the file\n", path);
        rc = 2;
    }
    if (rc) {
        cli_pairs_free(p, n);
        return rc;
    }
    *out = p, *n_out = n;
    return 0;
}

int cli_pairs_dataset(const char *cmd, const char *name, long n, long *len_io, long seed, const char *corruption,
                      const mech_model *m, const mech_tokenizer *tok, cli_pair **out, int *n_out) {
    mech_err err = {0};
    mech_pair *d = NULL;
    mech_status st;
    long len = *len_io;
    if (n <= 0) n = !strcmp(name, "compiled") ? MECH_DATASET_COMPILED_N : 20;
    if (len <= 0 && !strcmp(name, "induction")) len = 10;
    if (!strcmp(name, "ioi")) st = mech_dataset_ioi(tok, (int)n, (uint64_t)seed, &d, &err);
    else if (!strcmp(name, "greater_than")) st = mech_dataset_greater_than(tok, (int)n, (uint64_t)seed, &d, &err);
    else if (!strcmp(name, "induction"))
        st = mech_dataset_induction(m->cfg.d_vocab, (int)n, (int)len, (uint64_t)seed, m->cfg.d_vocab > 200 ? 100 : 0, -1,
                                    &d, &err);
    else if (!strcmp(name, "compiled"))
        st = mech_dataset_compiled(m, (int)n, (int)len, (uint64_t)seed, corruption ? corruption : "random", &d, &err);
    else return cli_usage(cmd, "--dataset '%s': expected ioi, greater_than, induction or compiled", name);
    if (st) return err.code == MECH_ERR_ARG || err.code == MECH_ERR_RANGE ? cli_usage(cmd, "%s", err.msg)
                                                                          : cli_fail(cmd, &err);
    cli_pair *p = calloc((size_t)n, sizeof *p);
    int rc = p ? 0 : 1;
    for (long i = 0; !rc && i < n; i++) {
        p[i].n_clean = p[i].n_corrupt = (size_t)d[i].n;
        p[i].clean = mech_malloc((size_t)d[i].n * sizeof(int32_t));
        p[i].corrupt = mech_malloc((size_t)d[i].n * sizeof(int32_t));
        if (!p[i].clean || !p[i].corrupt) {
            rc = 1;
            break;
        }
        memcpy(p[i].clean, d[i].clean, (size_t)d[i].n * sizeof(int32_t));
        memcpy(p[i].corrupt, d[i].corrupt, (size_t)d[i].n * sizeof(int32_t));
        p[i].clean_text = d[i].clean_text ? mech_strdup(d[i].clean_text) : NULL;
        p[i].corrupt_text = d[i].corrupt_text ? mech_strdup(d[i].corrupt_text) : NULL;
        p[i].answer = d[i].answer, p[i].wrong = d[i].wrong, p[i].line = (int)i + 1;
    }
    mech_pairs_free(d, (int)n);
    if (rc) {
        if (p) cli_pairs_free(p, (int)n);
        fprintf(stderr, "mech %s: error: out of memory\n", cmd);
        return 1;
    }
    size_t T = p[0].n_clean;
    if ((long)T > m->cfg.n_ctx) {
        cli_pairs_free(p, (int)n);
        return cli_usage(cmd, "--dataset %s: prompts of %zu tokens, but this model takes at most %d", name, T,
                         m->cfg.n_ctx);
    }
    if (!strcmp(name, "compiled")) {
        len = (long)T - 1; // the library's default when none was given
        int varies = 1;
        mech_pair *q = calloc((size_t)n, sizeof *q);
        for (long i = 0; q && i < n; i++) q[i].clean = p[i].clean, q[i].n = (int)p[i].n_clean;
        // (one input is trivially "the same on all")
        if (n > 1 && q && mech_compiled_outputs_vary(m, q, (int)n, &varies, &err) == MECH_OK && !varies)
            fprintf(stderr, "mech %s: warning: --dataset compiled: the program's output is the same on all %ld inputs of "
                    "length %ld, so clean and corrupt runs compare equal outputs (resample ablation and patching see "
                    "nothing); try another --len, or more inputs with --n\n", cmd, n, len);
        free(q);
    }
    *len_io = len;
    *out = p, *n_out = (int)n;
    return 0;
}
