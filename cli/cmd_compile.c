/*
** cli/cmd_compile.c: `mech compile FILE.rasp -o OUT.safetensors`: RASP to
** weights, verified against the interpreter before anything is written.
*/
#include "cli/cli.h"

#include <string.h>

int cmd_compile(int argc, char **argv) {
    const char *cmd = "compile", *src = NULL, *out = NULL;
    int verify = 1, explain = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "-o", &out)) || (r = cli_opt(cmd, argc, argv, &i, "--output", &out))) {
            if (r < 0) return 2;
        } else if (!strcmp(argv[i], "--no-verify")) verify = 0;
        else if (!strcmp(argv[i], "--explain")) explain = 1;
        else if (argv[i][0] == '-') return cli_usage(cmd, "unknown option '%s'", argv[i]);
        else if (src) return cli_usage(cmd, "one program at a time ('%s' and '%s')", src, argv[i]);
        else src = argv[i];
    }
    if (!src) return cli_usage(cmd, "no program given");
    if (!out && !explain) return cli_usage(cmd, "-o OUT.safetensors is required (or --explain)");
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    mech_rasp_compiled *c = NULL;
    mech_status st = mech_rasp_load(src, &p, &err);
    if (st) {
        fprintf(stderr, "%s\n", err.msg);
        return st == MECH_ERR_IO || st == MECH_ERR_NOMEM ? 1 : 2;
    }
    double t0 = mech_now();
    st = mech_rasp_compile(p, &c, &err);
    double t_compile = mech_now() - t0;
    if (st) {
        fprintf(stderr, "%s\n", err.msg);
        mech_rasp_program_free(p);
        return st == MECH_ERR_NOMEM ? 1 : 2;
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
    int rc = 0;
    if (verify) {
        size_t checked = 0, all = 0;
        t0 = mech_now();
        st = mech_rasp_verify(p, c->model, 1, &checked, &all, &err);
        if (st) {
            fprintf(stderr, "mech compile: error: %s\n", err.msg);
            rc = st == MECH_ERR_FORMAT ? 1 : 2;
        } else {
            fprintf(stderr, "verified %zu/%zu inputs (%s) in %.2f s\n", checked, checked,
                    all ? "every input up to max_seq_len" : "a seeded random sample", mech_now() - t0);
        }
    }
    if (!rc && out) {
        if (mech_model_save(c->model, out, MECH_DT_F32, (const char *const *)c->meta_keys,
                            (const char *const *)c->meta_values, c->n_meta, &err))
            rc = cli_fail(cmd, &err);
        else fprintf(stderr, "wrote %s\n", out);
    }
    mech_rasp_compiled_free(c);
    mech_rasp_program_free(p);
    return rc;
}
