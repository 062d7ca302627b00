/*
** cli/cmd_info.c: `mech info MODEL`: config, parameter count, hook names.
*/
#include "cli/cli.h"

#include <string.h>

// A hook's shape with the batch and length named: [B, T, 768]. Found by
// asking for two run sizes and seeing which dimensions follow B and T.
static void print_shape(const mech_config *c, const char *name) {
    int64_t s1[MECH_MAX_DIMS], s2[MECH_MAX_DIMS];
    int n1 = mech_hook_shape(c, name, 1, 1, s1), n2 = mech_hook_shape(c, name, 2, 3, s2);
    if (n1 < 0 || n1 != n2) return;
    printf(" [");
    for (int d = 0; d < n1; d++) {
        if (d) printf(", ");
        if (s1[d] == 1 && s2[d] == 2) printf("B");
        else if (s1[d] == 1 && s2[d] == 3) printf("T");
        else printf("%lld", (long long)s1[d]);
    }
    printf("]");
}

// What `mech compile` stored: the program's vocabulary, max_seq_len, the
// residual stream's labels, where each variable is computed, the source.
static int print_compiled(const char *cmd, const mech_model *m) {
    const char *vocab = mech_model_meta(m, "mech.rasp.vocab"), *len = mech_model_meta(m, "mech.rasp.max_seq_len");
    const char *labels = mech_model_meta(m, "mech.rasp.residual"), *circuit = mech_model_meta(m, "mech.rasp.circuit");
    const char *src = mech_model_meta(m, "mech.rasp.source");
    mech_err err = {0};
    mech_json *lj = NULL;
    int rc = 0;
    printf("compiled:     a RASP program (mech compile); token ids: 0 BOS, 1.. the vocab in order, then PAD\n");
    printf("vocab:        %s\n", vocab ? vocab : "?");
    printf("max_seq_len:  %s\n", len ? len : "?");
    if (labels && mech_json_parse(labels, strlen(labels), &lj, &err) == MECH_OK && lj->type == MECH_JSON_ARRAY) {
        printf("residual:     %zu dimensions (name:value, or name for a number)\n ", lj->n);
        for (size_t i = 0, col = 1; i < lj->n; i++) {
            const char *l = lj->items[i].type == MECH_JSON_STRING ? lj->items[i].str : "?";
            if (col + strlen(l) + 1 > 100) printf("\n "), col = 1;
            col += (size_t)printf(" %s", l);
        }
        printf("\n");
    } else {
        fprintf(stderr, "mech %s: warning: the residual labels (mech.rasp.residual) cannot be read\n", cmd);
    }
    mech_rasp_circuit *c = NULL;
    if (circuit && mech_rasp_circuit_parse(circuit, &c, &err) == MECH_OK) {
        printf("variables:    %d (where each is computed; resid = its residual dimensions)\n", c->n);
        for (int i = 0; i < c->n; i++) {
            const mech_rasp_circuit_node *nd = &c->nodes[i];
            char where[64];
            mech_rasp_circuit_where(nd, where, sizeof where);
            printf("  %-16s %-14s %-12s %-20s", nd->label, nd->kind, nd->numerical ? "numerical" : "categorical", where);
            if (nd->dim_to - 1 <= nd->dim_from) printf(" resid %d", nd->dim_from);
            else printf(" resid %d..%d", nd->dim_from, nd->dim_to - 1);
            printf("\n");
        }
        mech_rasp_circuit_free(c);
    } else if (circuit) {
        fprintf(stderr, "mech %s: warning: the circuit (mech.rasp.circuit) cannot be read: %s\n", cmd, err.msg);
    }
    if (src) {
        printf("source:\n");
        for (const char *p = src; *p;) {
            const char *e = strchr(p, '\n');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            printf("  %.*s\n", (int)n, p);
            p += n + (e ? 1 : 0);
        }
    }
    mech_json_free(lj);
    return rc;
}

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
    int compiled = mech_model_meta(m, "mech.rasp.source") != NULL;
    if (compiled) print_compiled(cmd, m);
    else printf("tokenizer:    %s\n", m->tok ? "from the model's directory" : "none beside the model (built-in GPT-2 is used)");
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
    for (int i = 0; i < n; i++) {
        printf("  %-32s", names[i]);
        print_shape(c, names[i]);
        printf("\n");
    }
    mech_hook_names_free(names, n);
    mech_model_free(m);
    return 0;
}
