/*
** cli/cmd_info.c: `mech info MODEL`: config, parameter count, hook names.
*/
#include "cli/cli.h"

#include <string.h>

int cmd_info(int argc, char **argv) {
    const char *cmd = "info", *path = NULL;
    int opt_in = 0, tensors = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--opt-in")) opt_in = 1;
        else if (!strcmp(argv[i], "--tensors")) tensors = 1;
        else if (argv[i][0] == '-') return cli_usage(cmd, "unknown option '%s'", argv[i]);
        else if (path) return cli_usage(cmd, "one model at a time ('%s' and '%s')", path, argv[i]);
        else path = argv[i];
    }
    if (!path) return cli_usage(cmd, "no model given");
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load(path, &m, &err)) return cli_fail(cmd, &err);
    const mech_config *c = &m->cfg;
    printf("model:        %s\n", m->path);
    printf("n_layers:     %d\nn_heads:      %d\nd_model:      %d\nd_head:       %d\nd_mlp:        %d\n",
           c->n_layers, c->n_heads, c->d_model, c->d_head, c->d_mlp);
    printf("n_ctx:        %d\nd_vocab:      %d\nact:          %s\nnormalization: %s (eps %g)\n", c->n_ctx,
           c->d_vocab, mech_act_name(c->act), c->norm == MECH_NORM_NONE ? "none" : "layernorm", (double)c->ln_eps);
    printf("attn_only:    %s\nattention:    %s\nunembed:      %s%s\n", c->attn_only ? "yes" : "no",
           c->causal ? "causal" : "bidirectional", c->tied_unembed ? "tied to wte" : "separate",
           c->unembed_bias ? " with bias" : "");
    printf("parameters:   %lld\n", (long long)mech_config_n_params(c));
    printf("tokenizer:    %s\n", m->tok ? "from the model's directory" : "none beside the model (built-in GPT-2 is used)");
    if (tensors) {
        mech_model_tensor *t = NULL;
        size_t n = 0;
        if (mech_model_tensors(m, &t, &n, &err)) {
            mech_model_free(m);
            return cli_fail(cmd, &err);
        }
        printf("tensors:      %zu\n", n);
        for (size_t i = 0; i < n; i++) {
            if (t[i].ndim == 1) printf("  %-28s [%lld]\n", t[i].name, (long long)t[i].shape[0]);
            else printf("  %-28s [%lld, %lld]\n", t[i].name, (long long)t[i].shape[0], (long long)t[i].shape[1]);
        }
        mech_free(t);
    }
    char **names = NULL;
    int n = mech_hook_names(c, opt_in, &names);
    if (n < 0) {
        mech_model_free(m);
        fprintf(stderr, "mech info: error: out of memory\n");
        return 1;
    }
    printf("hooks:        %d%s (shapes with batch B and length T)\n", n, opt_in ? " incl. opt-in" : "");
    for (int i = 0; i < n; i++) printf("  %s\n", names[i]);
    mech_hook_names_free(names, n);
    mech_model_free(m);
    return 0;
}
