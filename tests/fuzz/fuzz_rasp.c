/*
** tests/fuzz/fuzz_rasp.c: libFuzzer harness for the RASP front end. Each
** input is a program: it is lexed, parsed and lowered; when that succeeds
** the IR is listed and the program is evaluated (plain and traced) on a few
** inputs made of its vocab, and the input parser gets the program's last
** line. Every failure must be a clean status with a positioned message;
** ASan and UBSan catch the rest.
**
** Not built by `make`. From the repository root:
**
**   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_rasp.c \
**       compiler/rasp_value.c compiler/rasp_expr.c compiler/rasp_lex.c \
**       compiler/rasp_parse.c compiler/rasp_lower.c compiler/rasp_program.c \
**       compiler/rasp_eval.c core/err.c core/buf.c -lm -o build/fuzz_rasp
**   mkdir -p build/fuzz-rasp-corpus
**   ./build/fuzz_rasp build/fuzz-rasp-corpus examples/rasp -max_total_time=60 -max_len=4096
**
** (The front end needs only core/err.c and core/buf.c; linking every file
** of compiler/ and core/ with -lz -pthread works too.) New inputs go to the
** first directory; examples/rasp seeds it.
** On Debian the fuzzer runtime is in libclang-rt-14-dev.
*/
#include "compiler/compiler.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_msg(const mech_err *err) {
    // Program errors carry a position; anything else is a bug.
    if (strncmp(err->msg, "f.rasp:", 7) || !strstr(err->msg, ": error: ")) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    mech_status st = mech_rasp_parse("f.rasp", (const char *)data, size, &p, &err);
    if (st) {
        if (st != MECH_ERR_PARSE && st != MECH_ERR_TYPE && st != MECH_ERR_NOMEM) abort();
        if (st != MECH_ERR_NOMEM) check_msg(&err);
        if (p) abort();
        return 0;
    }
    mech_buf b = {0};
    mech_rasp_program_dump(&b, p);
    mech_buf_free(&b);
    size_t nv;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(p, &nv);
    int n = mech_rasp_program_max_seq_len(p);
    if (n > 8) n = 8;
    mech_rasp_value in[8];
    for (int round = 0; round < 3; round++) {
        int len = n - round > 0 ? n - round : 0;
        for (int j = 0; j < len; j++) in[j] = vocab[(size_t)(j * (round + 2) + round) % nv];
        mech_rasp_value *out = NULL;
        st = mech_rasp_eval(p, in, (size_t)len, &out, &err);
        if (st && st != MECH_ERR_TYPE && st != MECH_ERR_NOMEM) abort();
        if (st == MECH_ERR_TYPE) check_msg(&err);
        if (!st) {
            mech_rasp_values_json(&b, out, (size_t)len);
            mech_buf_free(&b);
        }
        mech_free(out);
        if (round == 0) {
            mech_rasp_trace *t = NULL;
            mech_status st2 = mech_rasp_eval_trace(p, in, (size_t)len, &t, &err);
            if (st2 != st) abort(); // the traced run must agree
            mech_rasp_trace_free(t);
        }
    }
    // The input parser, on the program's last line.
    const char *last = (const char *)data;
    for (size_t i = 0; i + 1 < size; i++)
        if (data[i] == '\n') last = (const char *)data + i + 1;
    size_t ll = size - (size_t)(last - (const char *)data);
    char *line = malloc(ll + 1);
    if (line) {
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
        free(line);
    }
    mech_rasp_program_free(p);
    return 0;
}
