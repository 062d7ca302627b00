/*
** cli/cmd_init.c: `mech init`: write a random-weight GPT-2 as safetensors.
*/
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

int cmd_init(int argc, char **argv) {
    const char *cmd = "init", *out = NULL, *v;
    mech_config c = mech_config_gpt2_small();
    c.n_layers = 2, c.n_heads = 4, c.d_model = 64, c.d_head = 16, c.d_mlp = 256, c.n_ctx = 128;
    long seed = 1, x;
    const char *mlp_opt = NULL; // an MLP option, refused with --attn-only
    mech_dtype dtype = MECH_DT_F32;
    struct { const char *opt; int *field; long lo, hi; } ints[] = {
        {"--layers", &c.n_layers, 1, 4096}, {"--heads", &c.n_heads, 1, 4096}, {"--d-model", &c.d_model, 1, 65536},
        {"--d-head", &c.d_head, 1, 65536},  {"--d-mlp", &c.d_mlp, 0, 1 << 20}, {"--n-ctx", &c.n_ctx, 1, 1 << 20},
        {"--vocab", &c.d_vocab, 1, 1 << 24},
    };
    // The preset is the base the other options change, wherever it is given.
    for (int i = 1; i < argc; i++) {
        const char *pv = NULL;
        int r = cli_opt(cmd, argc, argv, &i, "--preset", &pv);
        if (r < 0) return 2;
        if (r && !strcmp(pv, "gpt2-small")) c = mech_config_gpt2_small();
        else if (r && strcmp(pv, "tiny") != 0) return cli_usage(cmd, "--preset '%s': expected tiny or gpt2-small", pv);
    }
    for (int i = 1; i < argc; i++) {
        int r = 0, done = 0;
        for (size_t k = 0; k < sizeof ints / sizeof *ints && !done; k++)
            if ((r = cli_opt(cmd, argc, argv, &i, ints[k].opt, &v))) {
                if (r < 0 || cli_int(cmd, ints[k].opt, v, ints[k].lo, ints[k].hi, &x)) return 2;
                *ints[k].field = (int)x;
                if (ints[k].field == &c.d_mlp) mlp_opt = "--d-mlp";
                done = 1;
            }
        if (done) continue;
        if ((r = cli_opt(cmd, argc, argv, &i, "-o", &out)) || (r = cli_opt(cmd, argc, argv, &i, "--output", &out))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--seed", &v))) {
            if (r < 0 || cli_int(cmd, "--seed", v, 0, 2147483647L, &seed)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--preset", &v))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--dtype", &v))) {
            if (r < 0) return 2;
            if (!strcmp(v, "f32")) dtype = MECH_DT_F32;
            else if (!strcmp(v, "f16")) dtype = MECH_DT_F16;
            else if (!strcmp(v, "bf16")) dtype = MECH_DT_BF16;
            else return cli_usage(cmd, "--dtype '%s': expected f32, f16 or bf16", v);
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--act", &v))) {
            if (r < 0) return 2;
            if (!strcmp(v, "gelu_new")) c.act = MECH_ACT_GELU_NEW;
            else if (!strcmp(v, "gelu")) c.act = MECH_ACT_GELU;
            else if (!strcmp(v, "relu")) c.act = MECH_ACT_RELU;
            else return cli_usage(cmd, "--act '%s': expected gelu_new, gelu or relu", v);
            mlp_opt = "--act";
        } else if (!strcmp(argv[i], "--no-layernorm")) c.norm = MECH_NORM_NONE;
        else if (!strcmp(argv[i], "--attn-only")) c.attn_only = 1;
        else if (!strcmp(argv[i], "--bidirectional")) c.causal = 0;
        else if (!strcmp(argv[i], "--untied")) c.tied_unembed = 0;
        else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    if (!out) return cli_usage(cmd, "-o FILE.safetensors is required");
    if (c.attn_only && mlp_opt) return cli_usage(cmd, "%s: an --attn-only model has no MLP", mlp_opt);
    if (c.attn_only) c.d_mlp = 0;
    mech_err err = {0};
    if (mech_config_validate(&c, &err)) return cli_usage(cmd, "%s", err.msg);
    mech_model *m = NULL;
    if (mech_model_random(&c, (uint64_t)seed, &m, &err)) return cli_fail(cmd, &err);
    char seed_s[32];
    snprintf(seed_s, sizeof seed_s, "%ld", seed);
    const char *keys[] = {"mech.generator", "mech.seed"}, *vals[] = {"mech init (normal(0, 0.02) weights)", seed_s};
    int rc = mech_model_save(m, out, dtype, keys, vals, 2, &err) ? cli_fail(cmd, &err) : 0;
    if (!rc)
        printf("wrote %s: %d layer%s, %d head%s, d_model %d, d_vocab %d, %lld parameters (%s)\n", out, c.n_layers,
               cli_s(c.n_layers), c.n_heads, cli_s(c.n_heads), c.d_model, c.d_vocab, (long long)mech_config_n_params(&c), mech_dtype_name(dtype));
    mech_model_free(m);
    return rc;
}
