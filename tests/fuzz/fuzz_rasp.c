/*
** tests/fuzz/fuzz_rasp.c: the RASP front end and compiler. Each input is a
** program: it is lexed, parsed and lowered; when that succeeds the IR is
** listed and the program is evaluated (plain and traced) on a few inputs made
** of its vocab, and the input parser gets the program's last line. A small
** program (vocab, max_seq_len and node count bounded below, so each input
** compiles in milliseconds) is then compiled to weights and the compiled
** model runs on the same inputs (no exhaustive verification: the fuzzer
** looks for crashes, hangs and unclean errors). With MECH_FUZZ_RASP_DIFF set,
** a compiled model whose output differs from the interpreter's is a finding
** too. Every front-end failure must be a clean status with a positioned
** message; ASan and UBSan catch the rest.
*/
#include "tests/fuzz/fuzz.h"

#include "compiler/compiler.h"

#include <stdlib.h>
#include <string.h>

#define COMPILE_MAX_VOCAB 6
#define COMPILE_MAX_LEN 6
#define COMPILE_MAX_NODES 40

static int check_msg(const mech_err *err) {
    // Program errors carry a position; anything else is a bug.
    if (strncmp(err->msg, "f.rasp:", 7) || !strstr(err->msg, ": error: "))
        return mech_fuzz_fail("message without a position: %.200s", err->msg);
    return 0;
}

static int compile_and_run(const mech_rasp_program *p, const mech_rasp_value *inputs, const size_t *lens,
                           mech_rasp_value *const *want) {
    size_t nv;
    mech_rasp_program_vocab(p, &nv);
    if (nv > COMPILE_MAX_VOCAB || mech_rasp_program_max_seq_len(p) > COMPILE_MAX_LEN ||
        mech_rasp_program_n_nodes(p) > COMPILE_MAX_NODES)
        return 0;
    mech_err err = {0};
    mech_rasp_compiled *c = NULL;
    if (mech_rasp_compile(p, &c, &err)) {
        if (c) return mech_fuzz_fail("compile failed but returned a model");
        if (!err.msg[0]) return mech_fuzz_fail("compile failed without a message");
        return 0;
    }
    mech_buf b = {0};
    mech_rasp_compiled_explain(c, &b);
    mech_buf_free(&b);
    int rc = 0;
    mech_rasp_runner *r = NULL;
    if (mech_rasp_runner_new(p, c->model, &r, &err)) {
        rc = err.msg[0] ? 0 : mech_fuzz_fail("runner failed without a message");
    } else {
        for (int round = 0; !rc && round < 3; round++) {
            size_t len = lens[round];
            if (!len) continue;
            mech_rasp_value out[COMPILE_MAX_LEN];
            if (mech_rasp_runner_run(r, inputs + round * 8, 1, len, out, &err)) {
                if (!err.msg[0]) rc = mech_fuzz_fail("compiled run failed without a message");
                continue;
            }
            if (want[round] && getenv("MECH_FUZZ_RASP_DIFF"))
                for (size_t j = 0; !rc && j < len; j++)
                    if (!mech_rasp_value_eq(&out[j], &want[round][j]))
                        rc = mech_fuzz_fail("compiled model differs from the interpreter at position %zu", j);
        }
        mech_rasp_runner_free(r);
    }
    mech_rasp_compiled_free(c);
    return rc;
}

int mech_fuzz_rasp(const uint8_t *data, size_t size) {
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    mech_status st = mech_rasp_parse("f.rasp", (const char *)data, size, &p, &err);
    if (st) {
        if (st != MECH_ERR_PARSE && st != MECH_ERR_TYPE && st != MECH_ERR_NOMEM)
            return mech_fuzz_fail("parse status %d: %s", (int)st, err.msg);
        if (p) return mech_fuzz_fail("parse failed but returned a program");
        return st == MECH_ERR_NOMEM ? 0 : check_msg(&err);
    }
    mech_fuzz_accepted = 1;
    int rc = 0;
    mech_buf b = {0};
    mech_rasp_program_dump(&b, p);
    mech_buf_free(&b);
    size_t nv;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(p, &nv);
    int n = mech_rasp_program_max_seq_len(p);
    if (n > 8) n = 8;
    if (!nv) n = 0;
    mech_rasp_value in[3 * 8];
    size_t lens[3];
    mech_rasp_value *outs[3] = {NULL, NULL, NULL};
    for (int round = 0; !rc && round < 3; round++) {
        size_t len = (size_t)(n - round > 0 ? n - round : 0);
        lens[round] = len;
        for (size_t j = 0; j < len; j++) in[round * 8 + j] = vocab[(j * (size_t)(round + 2) + (size_t)round) % nv];
        st = mech_rasp_eval(p, in + round * 8, len, &outs[round], &err);
        if (st && st != MECH_ERR_TYPE && st != MECH_ERR_NOMEM) rc = mech_fuzz_fail("eval status %d", (int)st);
        else if (st == MECH_ERR_TYPE) rc = check_msg(&err);
        else if (!st) {
            mech_rasp_values_json(&b, outs[round], len);
            mech_buf_free(&b);
        }
        if (st) {
            mech_free(outs[round]);
            outs[round] = NULL;
        }
        if (!rc && round == 0) {
            mech_rasp_trace *t = NULL;
            mech_status st2 = mech_rasp_eval_trace(p, in, len, &t, &err);
            if (st2 != st) rc = mech_fuzz_fail("traced eval gave %d, plain eval %d", (int)st2, (int)st);
            mech_rasp_trace_free(t);
        }
    }
    // The input parser, on the program's last line.
    const char *last = (const char *)data;
    for (size_t i = 0; i + 1 < size; i++)
        if (data[i] == '\n') last = (const char *)data + i + 1;
    size_t ll = size - (size_t)(last - (const char *)data);
    char *line = malloc(ll + 1);
    if (!rc && line) {
        memcpy(line, last, ll);
        line[ll] = 0;
        mech_rasp_value *vals = NULL;
        size_t k = 0;
        if (mech_rasp_input_parse(p, line, &vals, &k, &err) == MECH_OK) {
            mech_rasp_value *out = NULL;
            mech_rasp_eval(p, vals, k, &out, &err);
            mech_free(out);
        }
        mech_free(vals);
    }
    free(line);
    if (!rc) rc = compile_and_run(p, in, lens, outs);
    for (int i = 0; i < 3; i++) mech_free(outs[i]);
    mech_rasp_program_free(p);
    return rc;
}
