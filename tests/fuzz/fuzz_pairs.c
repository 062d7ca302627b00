/*
** tests/fuzz/fuzz_pairs.c: cli/pairs.c, a pairs file (JSONL or TSV) from
** bytes, read against one of two models chosen by the first byte's low bit:
** a tiny random GPT-2 (text prompts through GPT-2's tokenizer, or ids) or a
** compiled RASP model (input sequences, output values as answers). A file
** that reads must give pairs a patching run can use; one that does not must
** say why, naming the file.
*/
#include "tests/fuzz/fuzz.h"

#include "cli/cli.h"

#include <string.h>

static mech_model *gpt, *rasp;
static mech_tokenizer *tok;

// reverse over {a, b, c} (examples/rasp/reverse.rasp, shorter).
static const char rasp_src[] = "vocab {a, b, c};\nmax_seq_len 4;\n"
                               "length = selector_width(select(tokens, tokens, true));\n"
                               "opp = length - indices - 1;\n"
                               "flip = select(indices, opp, ==);\n"
                               "reverse = aggregate(flip, tokens);\noutput reverse;\n";

static int setup(void) {
    mech_err err = {0};
    if (mech_tokenizer_gpt2(&tok, &err)) return mech_fuzz_fail("tokenizer: %s", err.msg);
    mech_config c = mech_config_gpt2_small();
    c.n_layers = 1, c.n_heads = 1, c.d_model = 8, c.d_head = 8, c.d_mlp = 16, c.n_ctx = 6, c.d_vocab = 64;
    if (mech_model_random(&c, 1, &gpt, &err)) return mech_fuzz_fail("random model: %s", err.msg);
    mech_rasp_program *p = NULL;
    mech_rasp_compiled *cm = NULL;
    const char *path = mech_fuzz_path("pairs", "reverse.safetensors");
    if (mech_rasp_parse("reverse.rasp", rasp_src, strlen(rasp_src), &p, &err) || mech_rasp_compile(p, &cm, &err) ||
        mech_model_save(cm->model, path, MECH_DT_F32, (const char *const *)cm->meta_keys,
                        (const char *const *)cm->meta_values, cm->n_meta, &err) ||
        mech_model_load(path, &rasp, &err)) {
        mech_rasp_program_free(p);
        mech_rasp_compiled_free(cm);
        return mech_fuzz_fail("compiled model: %s", err.msg);
    }
    mech_rasp_program_free(p);
    mech_rasp_compiled_free(cm);
    return 0;
}

int mech_fuzz_pairs(const uint8_t *data, size_t size) {
    if (!rasp && setup()) return 1;
    if (size < 1) return 0;
    const mech_model *m = data[0] & 1 ? rasp : gpt;
    const char *path = mech_fuzz_path("pairs", "pairs.jsonl");
    if (mech_fuzz_write(path, data + 1, size - 1)) return 0;
    cli_pair *p = NULL;
    int n = -1;
    mech_fuzz_quiet_begin();
    int rc = cli_pairs_read("patch", path, m, tok, &p, &n);
    size_t ml;
    const char *msg = mech_fuzz_quiet_end(&ml);
    if (rc) {
        if (rc != 1 && rc != 2) return mech_fuzz_fail("exit code %d", rc);
        if (!strstr(msg, path)) return mech_fuzz_fail("error (exit %d) without naming the file: '%s'", rc, msg);
        return 0;
    }
    mech_fuzz_accepted = 1;
    int bad = 0;
    if (!p || n < 1) bad = mech_fuzz_fail("ok with %d pairs", n);
    // A text file with a NUL byte, or a TSV line that is not UTF-8, must be
    // refused: the first cut the file short, the second re-read the bytes as
    // Latin-1 and changed the prompt.
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (!bad && memchr(text, 0, len)) bad = mech_fuzz_fail("accepted a file holding a NUL byte");
    for (size_t i = 0; !bad && i < len;) {
        const char *e = memchr(text + i, '\n', len - i);
        size_t ll = e ? (size_t)(e - (text + i)) : len - i;
        int tsv = ll && text[i] != '{' && text[i] != '#' && !(ll == 1 && text[i] == '\r');
        for (size_t k = 0; tsv && !bad && k < ll;) {
            size_t u = (unsigned char)text[i + k] < 0x80 ? 1 : mech_utf8_len((const unsigned char *)text + i + k, ll - k);
            if (!u) bad = mech_fuzz_fail("accepted a TSV line that is not UTF-8");
            k += u ? u : 1;
        }
        i += ll + 1;
    }
    for (int i = 0; !bad && i < n; i++) {
        const cli_pair *q = &p[i];
        if (q->n_clean != q->n_corrupt || q->n_clean < 1 || q->n_clean > (size_t)m->cfg.n_ctx)
            bad = mech_fuzz_fail("pair %d: lengths %zu and %zu", i, q->n_clean, q->n_corrupt);
        else if (q->answer < 0 || q->wrong < -1)
            bad = mech_fuzz_fail("pair %d: answer %d, wrong %d", i, (int)q->answer, (int)q->wrong);
        for (size_t k = 0; !bad && m == rasp && k < q->n_clean; k++)
            if (q->clean[k] < 0 || q->clean[k] >= m->cfg.d_vocab || q->corrupt[k] < 0 ||
                q->corrupt[k] >= m->cfg.d_vocab)
                bad = mech_fuzz_fail("pair %d: token %zu outside the compiled vocabulary", i, k);
        if (!bad && m == rasp && (q->clean[0] != 0 || q->corrupt[0] != 0))
            bad = mech_fuzz_fail("pair %d: no BOS", i);
    }
    cli_pairs_free(p, n);
    return bad;
}
