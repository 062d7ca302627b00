/*
** cli/compiled.c: what the commands share about models from `mech compile`:
** their program (from the model's metadata), an --input sequence as token
** ids (BOS first), and token names from the program's vocabulary, so no
** command reads a compiled model's ids through GPT-2's tokenizer.
*/
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

int cli_compiled_program(const char *cmd, const mech_model *m, const char *path, mech_rasp_program **p) {
    *p = NULL;
    const char *src = mech_model_meta(m, "mech.rasp.source");
    if (!src) return 0;
    mech_err err = {0};
    if (mech_rasp_parse(path, src, strlen(src), p, &err)) return cli_fail(cmd, &err);
    return 0;
}

int cli_compiled_ids(const char *cmd, const mech_rasp_program *p, const char *input, int32_t **ids, size_t *n) {
    mech_err err = {0};
    mech_rasp_value *in = NULL;
    size_t len = 0;
    *ids = NULL, *n = 0;
    if (mech_rasp_input_parse(p, input, &in, &len, &err)) {
        // a token outside the vocab is the user's input, as in `mech rasp`
        if (err.code == MECH_ERR_NOMEM) return cli_fail(cmd, &err);
        return cli_usage(cmd, "--input '%s': %s", input, err.msg);
    }
    if (len == 0) {
        mech_free(in);
        return cli_usage(cmd, "--input is empty: give at least one token");
    }
    int32_t *v = malloc((len + 1) * sizeof *v);
    if (!v) {
        mech_free(in);
        fprintf(stderr, "mech %s: error: out of memory\n", cmd);
        return 1;
    }
    v[0] = 0; // BOS
    for (size_t i = 0; i < len; i++) v[i + 1] = mech_rasp_token_id(p, &in[i]); // parsed: in the vocab
    mech_free(in);
    *ids = v, *n = len + 1;
    return 0;
}

int cli_compiled_input_check(const char *cmd, const mech_model *m, const char *const *texts, const int *kinds, int n,
                             mech_rasp_program **p) {
    int n_input = 0, n_prompt = 0, rc;
    for (int i = 0; i < n; i++) n_input += kinds[i] == 2, n_prompt += kinds[i] == 0;
    (void)texts;
    if ((rc = cli_compiled_program(cmd, m, m->path, p))) return rc;
    if (n_input && !*p)
        return cli_usage(cmd, "--input is for models from `mech compile`; %s is not one (no mech.rasp.source "
                         "metadata): give --prompt or --ids", m->path);
    if (*p && n_prompt) {
        mech_rasp_program_free(*p);
        *p = NULL;
        return cli_usage(cmd, "%s is a compiled RASP model: give its input with --input \"a b c\" (or --ids), "
                         "not --prompt", m->path);
    }
    return 0;
}

void cli_compiled_token(mech_buf *b, const mech_rasp_program *p, int32_t id) {
    size_t nv = 0;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(p, &nv);
    if (id == 0) mech_buf_puts(b, "BOS");
    else if (id >= 1 && (size_t)id <= nv) mech_rasp_value_json(b, &vocab[id - 1]);
    else if ((size_t)id == nv + 1) mech_buf_puts(b, "PAD");
    else mech_buf_printf(b, "<%d>", (int)id);
}
