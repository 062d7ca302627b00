/*
** cli/cmd_tokenize.c: `mech tokenize`: text to GPT-2 token ids and back.
*/
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *read_stdin(size_t *len) {
    mech_buf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, stdin)) > 0) mech_buf_append(&b, chunk, got);
    if (!b.data) mech_buf_append(&b, "", 0);
    if (ferror(stdin)) {
        fprintf(stderr, "mech tokenize: error: cannot read standard input: %s\n", strerror(errno ? errno : EIO));
        mech_buf_free(&b);
        return NULL;
    }
    if (b.oom) {
        fprintf(stderr, "mech tokenize: error: out of memory reading standard input\n");
        mech_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return b.data;
}

int cmd_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize", *text = NULL, *model = NULL;
    int decode = 0, special = 0, bos = 0, bos_given = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--text", &text))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--allow-special")) special = 1;
        // Off by default, unlike the commands that run a model: the ids
        // printed here decode back to exactly the text.
        else if (!strcmp(argv[i], "--prepend-bos")) bos = 1, bos_given = 1;
        else if (!strcmp(argv[i], "--no-prepend-bos")) bos = 0, bos_given = 1;
        else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    if (decode && special) return cli_usage(cmd, "--allow-special applies to encoding text, not to --decode");
    if (decode && bos_given)
        return cli_usage(cmd, "%s applies to encoding text, not to --decode (the ids are decoded as given)",
                         bos ? "--prepend-bos" : "--no-prepend-bos");
    mech_err err = {0};
    mech_tokenizer *tok = NULL;
    if (model ? mech_tokenizer_load_dir(model, &tok, &err) : mech_tokenizer_gpt2(&tok, &err)) return cli_fail(cmd, &err);
    if (bos && !decode && mech_tokenizer_eot(tok) < 0) {
        mech_tokenizer_free(tok);
        return cli_usage(cmd, "--prepend-bos: this vocabulary has no <|endoftext|> token");
    }
    size_t len = 0;
    char *owned = NULL;
    if (!text) {
        if (!(owned = read_stdin(&len))) {
            mech_tokenizer_free(tok);
            return 1;
        }
        text = owned;
    } else {
        len = strlen(text);
    }
    int rc = 0;
    if (decode) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (cli_ids(cmd, text, &ids, &n)) {
            rc = 2;
        } else {
            char *out = NULL;
            size_t out_len = 0;
            // an id outside the vocabulary is the user's input (exit 2)
            if (mech_tokenizer_decode(tok, ids, n, &out, &out_len, &err))
                rc = err.code == MECH_ERR_NOMEM ? cli_fail(cmd, &err) : cli_usage(cmd, "--decode: %s", err.msg);
            else {
                fwrite(out, 1, out_len, stdout);
                // On a terminal, end the line so the prompt does not follow the
                // text; into a pipe or file the bytes stay exact, so that
                // `mech tokenize < f | mech tokenize --decode` reproduces f.
                if (isatty(1) && (out_len == 0 || out[out_len - 1] != '\n')) putchar('\n');
            }
            mech_free(out);
            free(ids);
        }
    } else {
        int32_t *ids = NULL;
        size_t n = 0;
        if (mech_tokenizer_encode(tok, text, len, special, &ids, &n, &err)) {
            rc = cli_fail(cmd, &err);
        } else {
            if (bos) printf(n ? "%d " : "%d", (int)mech_tokenizer_eot(tok));
            for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
            printf("\n");
        }
        mech_free(ids);
    }
    free(owned);
    mech_tokenizer_free(tok);
    return rc;
}
