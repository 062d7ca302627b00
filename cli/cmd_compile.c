/*
** cli/cmd_compile.c: `mech compile FILE.rasp -o OUT.safetensors`: RASP to
** weights, verified against the interpreter before anything is written.
** The size limits are checked by the library from its plan, before any
** large allocation; verification picks its inputs within a cost limit.
** Both show progress on a terminal and stop on Ctrl-C (exit 130).
*/
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static void compile_progress(void *user, const char *stage, int64_t done, int64_t total) {
    cli_progress *p = user;
    p->what = stage;
    cli_progress_update(p, done);
    (void)total;
}

static void verify_progress(void *user, int64_t done, int64_t total) {
    cli_progress *p = user;
    p->total = total;
    cli_progress_update(p, done);
}

// Errors at a place in the program print as FILE:LINE:COL: error: ...
// (editors jump there); every other error names the command and the file.
static void print_error(const char *src, const mech_err *err) {
    size_t n = strlen(src);
    int at_source = !strncmp(err->msg, src, n) && err->msg[n] == ':' && err->msg[n + 1] >= '0' && err->msg[n + 1] <= '9';
    if (at_source) fprintf(stderr, "%s\n", err->msg);
    else if (!strncmp(err->msg, src, n) && err->msg[n] == ':') fprintf(stderr, "mech compile: %s\n", err->msg);
    else fprintf(stderr, "mech compile: %s: %s\n", src, err->msg);
}

// Parses a positive count such as 100000000 or 1e8 into *out.
static int parse_limit(const char *cmd, const char *opt, const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= 1) || v > 1e18) return cli_usage(cmd, "%s: '%s' is not a count from 1 to 1e18", opt, s);
    *out = v;
    return 0;
}

int cmd_compile(int argc, char **argv) {
    const char *cmd = "compile", *src = NULL, *out = NULL, *v;
    int verify = 1, explain = 0, max_verify_given = 0;
    double max_params = MECH_RASP_MAX_PARAMS, max_values = MECH_RASP_MAX_VALUES, max_verify = MECH_RASP_VERIFY_COST;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "-o", &out)) || (r = cli_opt(cmd, argc, argv, &i, "--output", &out))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--max-params", &v))) {
            if (r < 0 || parse_limit(cmd, "--max-params", v, &max_params)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--max-values", &v))) {
            if (r < 0 || parse_limit(cmd, "--max-values", v, &max_values)) return 2;
            if (max_values > 2e9) return cli_usage(cmd, "--max-values: at most 2e9");
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--max-verify", &v))) {
            if (r < 0 || parse_limit(cmd, "--max-verify", v, &max_verify)) return 2;
            max_verify_given = 1;
        } else if (!strcmp(argv[i], "--no-verify")) verify = 0;
        else if (!strcmp(argv[i], "--explain")) explain = 1;
        else if (argv[i][0] == '-') return cli_usage(cmd, "unknown option '%s'", argv[i]);
        else if (src) return cli_usage(cmd, "one program at a time ('%s' and '%s')", src, argv[i]);
        else src = argv[i];
    }
    if (!src) return cli_usage(cmd, "no program given");
    if (!verify && max_verify_given) return cli_usage(cmd, "--max-verify is the budget of verification, which --no-verify skips");
    if (!out && !explain) return cli_usage(cmd, "-o OUT.safetensors is required (or --explain)");
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    mech_rasp_compiled *c = NULL;
    mech_status st = mech_rasp_load(src, &p, &err);
    if (st) {
        fprintf(stderr, "%s\n", err.msg);
        return st == MECH_ERR_IO || st == MECH_ERR_NOMEM ? 1 : 2;
    }
    volatile int *stop = cli_interrupts_catch();
    cli_progress prog;
    cli_progress_start(&prog, "planning", mech_rasp_program_n_nodes(p));
    mech_rasp_limits lim = {.max_params = (int64_t)max_params, .max_values = (int64_t)max_values, .cancel = stop,
                            .progress = compile_progress, .user = &prog};
    double t0 = mech_now();
    st = mech_rasp_compile_limited(p, &lim, &c, &err);
    double t_compile = mech_now() - t0;
    cli_progress_end(&prog);
    int rc = 0;
    if (st) {
        print_error(src, &err);
        rc = st == MECH_ERR_CANCELLED ? 130 : st == MECH_ERR_NOMEM ? 1 : 2;
        goto done;
    }
    const mech_config *cfg = &c->model->cfg;
    fprintf(stderr, "%s: %d layer%s, %d head%s, d_model %d, d_head %d, d_mlp %d, %lld parameters (compiled in %.3f s)\n",
            src, cfg->n_layers, cli_s(cfg->n_layers), cfg->n_heads, cli_s(cfg->n_heads), cfg->d_model, cfg->d_head, cfg->d_mlp,
            (long long)mech_config_n_params(cfg), t_compile);
    if (explain) {
        mech_buf b = {0};
        mech_rasp_compiled_explain(c, &b);
        fputs(b.data ? b.data : "", stdout);
        mech_buf_free(&b);
    }
    if (verify) {
        mech_rasp_verify_opts vo = {.seed = 1, .max_cost = max_verify, .cancel = stop, .progress = verify_progress,
                                    .user = &prog};
        mech_rasp_verify_result res;
        if ((st = mech_rasp_verify_estimate(p, c->model, &vo, &res, &err))) {
            print_error(src, &err);
            rc = 2;
            goto done;
        }
        if (!res.exhaustive && res.all_inputs <= 100000)
            fprintf(stderr, "%s: checking all %.0f inputs would take about %.2g multiply-adds (more than --max-verify "
                    "%.2g): verifying a seeded sample instead\n", src, res.all_inputs, res.exhaustive_cost, max_verify);
        int N = mech_rasp_program_max_seq_len(p);
        size_t usual = (size_t)((10000 + N - 1) / N) * (size_t)N; // the sample when it fits
        if (!res.exhaustive && res.total < usual)
            fprintf(stderr, "%s: verifying %zu sampled inputs (about %.2g multiply-adds; more would exceed "
                    "--max-verify %.2g)\n", src, res.total, res.cost, max_verify);
        cli_progress_start(&prog, "verifying", (int64_t)res.total);
        t0 = mech_now();
        st = mech_rasp_verify_ex(p, c->model, &vo, &res, &err);
        cli_progress_end(&prog);
        if (st) {
            if (st == MECH_ERR_CANCELLED) fprintf(stderr, "mech compile: %s: %s; nothing written\n", src, err.msg);
            else if (st == MECH_ERR_FORMAT) fprintf(stderr, "mech compile: error: %s\n", err.msg);
            else print_error(src, &err);
            rc = st == MECH_ERR_CANCELLED ? 130 : st == MECH_ERR_FORMAT || st == MECH_ERR_NOMEM ? 1 : 2;
        } else {
            fprintf(stderr, "verified %zu/%zu inputs (%s) in %.2f s\n", res.checked, res.checked,
                    res.exhaustive ? "every input up to max_seq_len" : "a seeded random sample", mech_now() - t0);
        }
    }
    if (!rc && out) {
        if (mech_model_save(c->model, out, MECH_DT_F32, (const char *const *)c->meta_keys,
                            (const char *const *)c->meta_values, c->n_meta, &err))
            rc = cli_fail(cmd, &err);
        else fprintf(stderr, "wrote %s\n", out);
    }
done:
    cli_interrupts_release();
    mech_rasp_compiled_free(c);
    mech_rasp_program_free(p);
    return rc;
}
