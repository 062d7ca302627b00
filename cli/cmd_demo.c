/*
** cli/cmd_demo.c: `mech demo`: the main job on the built-in default, with
** nothing downloaded: tokenize, write a model, load it back, run it with
** every hook cached, and look at the results.
*/
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static void show_token(const mech_tokenizer *tok, int32_t id) {
    mech_buf b = {0};
    cli_token_text(&b, tok, id);
    printf(" %s", b.data ? b.data : "?");
    mech_buf_free(&b);
}

int cmd_demo(int argc, char **argv) {
    const char *cmd = "demo", *out_dir = NULL;
    for (int i = 1; i < argc; i++) {
        int r = cli_opt(cmd, argc, argv, &i, "--out", &out_dir);
        if (r < 0) return 2;
        if (!r) return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    const char *text = "Mechanistic interpretability reverse-engineers the circuits inside a transformer, head by head.";
    // The model goes to --out DIR, else to a temporary folder removed at the
    // end: the demo leaves nothing in the directory it is run from.
    char tmp_dir[4096] = "", path[4200];
    if (out_dir) {
        if (mkdir(out_dir, 0755) && errno != EEXIST) {
            fprintf(stderr, "mech demo: error: --out %s: %s\n", out_dir, strerror(errno));
            return 1;
        }
        snprintf(path, sizeof path, "%s/demo-model.safetensors", out_dir);
    } else {
        const char *t = getenv("TMPDIR");
        snprintf(tmp_dir, sizeof tmp_dir, "%s/mech-demo.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(tmp_dir)) {
            fprintf(stderr, "mech demo: error: a temporary folder in %s: %s (give --out DIR)\n", t && *t ? t : "/tmp",
                    strerror(errno));
            return 1;
        }
        snprintf(path, sizeof path, "%s/demo-model.safetensors", tmp_dir);
    }
    mech_err err = {0};
    mech_tokenizer *tok = NULL;
    mech_model *gen = NULL, *m = NULL;
    mech_run *run = NULL;
    int32_t *ids = NULL;
    size_t n = 0, rn = 0;
    int rc = 1;
    mech_rasp_program *prog = NULL;
    mech_rasp_compiled *compiled = NULL;
    mech_rasp_runner *runner = NULL;
    mech_rasp_value *rin = NULL;

    printf("== 1. tokenize with the built-in GPT-2 byte-level BPE ==\n%s\n", text);
    if (mech_tokenizer_gpt2(&tok, &err) || mech_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n, &err)) goto fail;
    printf("%zu token%s:", n, cli_s((long long)n));
    for (size_t i = 0; i < n; i++) printf(" %d", (int)ids[i]);
    printf("\n");
    for (size_t i = 0; i < n; i++) show_token(tok, ids[i]);
    printf("\n\n");

    printf("== 2. write a small random-weight GPT-2 and load it back from disk ==\n");
    mech_config c = mech_config_gpt2_small();
    c.n_layers = 2, c.n_heads = 4, c.d_model = 64, c.d_head = 16, c.d_mlp = 256, c.n_ctx = 128;
    if (mech_model_random(&c, 1, &gen, &err) || mech_model_save(gen, path, MECH_DT_F32, NULL, NULL, 0, &err)) goto fail;
    double t0 = mech_now();
    if (mech_model_load(path, &m, &err)) goto fail;
    printf("%s: %d layer%s, %d head%s, d_model %d, d_vocab %d, %lld parameters; loaded (memory-mapped) in %.2f ms\n",
           path, m->cfg.n_layers, cli_s(m->cfg.n_layers), m->cfg.n_heads, cli_s(m->cfg.n_heads), m->cfg.d_model, m->cfg.d_vocab,
           (long long)mech_config_n_params(&m->cfg), (mech_now() - t0) * 1e3);
    printf("(random weights: the predictions below are noise; use any Hugging Face GPT-2 with `mech run --model DIR`)\n\n");

    printf("== 3. forward pass with every hook cached ==\n");
    if (mech_run_new(m, 1, (int)n, &run, &err) || mech_run_cache(run, "*", &err)) goto fail;
    t0 = mech_now();
    if (mech_run_forward(run, ids, &err)) goto fail;
    double ms = (mech_now() - t0) * 1e3;
    size_t n_cached = 0, floats = 0;
    const mech_tensor *cached = mech_run_cached(run, &n_cached);
    for (size_t i = 0; i < n_cached; i++) floats += mech_tensor_numel(&cached[i]);
    printf("%zu hooks cached (%.1f KB) in %.2f ms; e.g. %s [%lld, %lld, %lld, %lld]\n", n_cached, floats * 4 / 1024.0, ms,
           "blocks.1.attn.hook_pattern", 1LL, (long long)c.n_heads, (long long)n, (long long)n);
    printf("top-5 next tokens after");
    show_token(tok, ids[n - 1]);
    printf(":\n");
    cli_print_top_k(tok, mech_run_logits(run) + (n - 1) * (size_t)c.d_vocab, c.d_vocab, 5);

    printf("\n== 4. where each head of block 1 looks from the last position ==\n");
    const mech_tensor *pat = mech_run_get(run, "blocks.1.attn.hook_pattern");
    for (int h = 0; h < c.n_heads; h++) {
        const float *row = pat->data + ((size_t)h * n + (n - 1)) * n;
        size_t best = 0;
        double ent = 0;
        for (size_t k = 0; k < n; k++) {
            if (row[k] > row[best]) best = k;
            if (row[k] > 0) ent -= row[k] * log(row[k]);
        }
        printf("  head %d: strongest on position %2zu", h, best);
        show_token(tok, ids[best]);
        printf(" (%.3f), entropy %.3f nats\n", row[best], ent);
    }

    printf("\n== 5. compile a RASP program into weights and run it ==\n");
    static const char reverse[] =
        "# reverse a sequence\n"
        "vocab {a, b, c, d};\n"
        "max_seq_len 5;\n"
        "length = selector_width(select(tokens, tokens, true));\n"
        "opp = length - indices - 1;\n"
        "reverse = aggregate(select(indices, opp, ==), tokens);\n"
        "output reverse;\n";
    fputs(reverse, stdout);
    if (mech_rasp_parse("reverse.rasp", reverse, sizeof reverse - 1, &prog, &err) ||
        mech_rasp_compile(prog, &compiled, &err))
        goto fail;
    const mech_config *rc_cfg = &compiled->model->cfg;
    printf("compiled: %d layer%s, %d head%s, d_model %d, d_head %d, d_mlp %d, %lld parameters\n", rc_cfg->n_layers,
           cli_s(rc_cfg->n_layers), rc_cfg->n_heads, cli_s(rc_cfg->n_heads), rc_cfg->d_model, rc_cfg->d_head, rc_cfg->d_mlp, (long long)mech_config_n_params(rc_cfg));
    mech_buf ex = {0};
    mech_rasp_compiled_explain(compiled, &ex);
    fputs(ex.data ? ex.data : "", stdout);
    mech_buf_free(&ex);
    size_t checked = 0, all = 0;
    if (mech_rasp_verify(prog, compiled->model, 1, &checked, &all, &err)) goto fail;
    printf("verified %zu/%zu inputs against the interpreter\n", checked, checked);
    if (mech_rasp_runner_new(prog, compiled->model, &runner, &err) ||
        mech_rasp_input_parse(prog, "a b c d", &rin, &rn, &err))
        goto fail;
    mech_rasp_value rout[8];
    if (mech_rasp_runner_run(runner, rin, 1, rn, rout, &err)) goto fail;
    mech_buf js = {0};
    mech_rasp_values_json(&js, rout, rn);
    printf("the compiled model on \"a b c d\": %s\n", js.data);
    mech_buf_free(&js);
    rc = 0;
    goto done;
fail:
    rc = cli_fail(cmd, &err);
done:
    mech_rasp_runner_free(runner);
    mech_free(rin);
    mech_rasp_compiled_free(compiled);
    mech_rasp_program_free(prog);
    mech_free(ids);
    mech_run_free(run);
    mech_model_free(m);
    mech_model_free(gen);
    mech_tokenizer_free(tok);
    if (tmp_dir[0]) {
        remove(path);
        rmdir(tmp_dir);
    }
    return rc;
}
