/*
** cli/cmd_rasp.c: `mech rasp FILE.rasp --input "a b c"`: runs a RASP program
** with the reference interpreter and prints its output as one JSON array.
** Exit status: 0 ok; 2 for a syntax or type error in the program (printed
** as FILE:LINE:COL: error: ... with the source line and a caret), a bad
** input or bad arguments; 1 when evaluation fails or the file cannot be read.
*/
#include "cli/cli.h"

#include <string.h>

static void print_diag(const mech_err *err) {
    const char *m = err->msg[0] ? err->msg : mech_strerror(err->code);
    fprintf(stderr, "%s\n", m);
}

int cmd_rasp(int argc, char **argv) {
    const char *cmd = "rasp", *path = NULL, *input = NULL;
    int dag = 0, trace = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--input", &input))) {
            if (r < 0) return 2;
        } else if (!strcmp(argv[i], "--dag")) dag = 1;
        else if (!strcmp(argv[i], "--trace")) trace = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_usage(cmd, "unknown option '%s'", argv[i]);
        else if (path) return cli_usage(cmd, "one program at a time ('%s' and '%s')", path, argv[i]);
        else path = argv[i];
    }
    if (!path) return cli_usage(cmd, "no program given");
    if (!input && !dag) return cli_usage(cmd, "--input is required (e.g. --input \"a b c\")");
    if (trace && !input) return cli_usage(cmd, "--trace traces an evaluation: give --input \"a b c\"");
    mech_err err = {0};
    char *src;
    size_t len;
    if (mech_read_file(path, &src, &len, &err)) return cli_fail(cmd, &err);
    mech_rasp_program *p = NULL;
    mech_status st = mech_rasp_parse(path, src, len, &p, &err);
    mech_free(src);
    if (st == MECH_ERR_NOMEM) return cli_fail(cmd, &err);
    if (st) {
        print_diag(&err);
        return 2;
    }
    int rc = 0;
    mech_buf b = {0};
    if (dag) {
        mech_rasp_program_dump(&b, p);
        fputs(b.data ? b.data : "", stdout);
        b.len = 0;
    }
    if (input) {
        mech_rasp_value *in = NULL;
        size_t n = 0;
        if (mech_rasp_input_parse(p, input, &in, &n, &err)) {
            rc = err.code == MECH_ERR_NOMEM ? cli_fail(cmd, &err) : (fprintf(stderr, "mech rasp: error: %s\n", err.msg), 2);
        } else if (trace) {
            mech_rasp_trace *t = NULL;
            if (mech_rasp_eval_trace(p, in, n, &t, &err)) {
                print_diag(&err);
                rc = 1;
            } else {
                for (int i = 0; i < t->n_nodes; i++) {
                    const mech_rasp_node *x = mech_rasp_program_node(p, i);
                    if (mech_rasp_node_is_selector(x)) continue;
                    mech_buf_printf(&b, "%-20s ", x->label);
                    mech_rasp_values_json(&b, &t->vals[(size_t)i * n], n);
                    mech_buf_puts(&b, "\n");
                }
                mech_buf_puts(&b, "output: ");
                mech_rasp_values_json(&b, &t->vals[(size_t)mech_rasp_program_output(p) * n], n);
                mech_buf_puts(&b, "\n");
                fputs(b.data ? b.data : "", stdout);
                mech_rasp_trace_free(t);
            }
        } else {
            mech_rasp_value *out = NULL;
            if (mech_rasp_eval(p, in, n, &out, &err)) {
                print_diag(&err);
                rc = 1;
            } else {
                mech_rasp_values_json(&b, out, n);
                mech_buf_puts(&b, "\n");
                fputs(b.data ? b.data : "", stdout);
                mech_free(out);
            }
        }
        mech_free(in);
    }
    if (b.oom) {
        fprintf(stderr, "mech rasp: error: out of memory\n");
        rc = 1;
    }
    mech_buf_free(&b);
    mech_rasp_program_free(p);
    return rc;
}
