/*
** tools/gen_tokenizer_tables.c: builds GPT-2's tokenizer from its files
** (data/gpt2/encoder.json, data/gpt2/vocab.bpe) with the library's own
** builder (mech_tokenizer_from_memory) and writes its tables (mech_tokenizer_tables) to OUT. The Makefile
** runs it at build time; core/tokenizer_data.c embeds OUT, so programs start
** with the tokenizer built. The output depends only on the two files and
** the loader's code: the same inputs give the same bytes.
**
**   gen_tokenizer_tables encoder.json vocab.bpe OUT
*/
#include "core/tokenizer_int.h"

#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: gen_tokenizer_tables ENCODER.json VOCAB.bpe OUT\n");
        return 2;
    }
    mech_err err = {0};
    mech_tokenizer *t = NULL;
    mech_buf b = {0};
    int rc = 1;
    char *vj = NULL, *mg = NULL;
    size_t vl = 0, ml = 0;
    // from the texts, never through mech_tokenizer_load: that would use the
    // tables this program makes (and links core/tokenizer_data.c, which holds them)
    mech_status st = mech_read_file(argv[1], &vj, &vl, &err);
    if (!st) st = mech_read_file(argv[2], &mg, &ml, &err);
    if (!st) st = mech_tokenizer_from_memory(vj, vl, argv[1], mg, ml, argv[2], &t, &err);
    mech_free(vj);
    mech_free(mg);
    if (st || mech_tokenizer_tables(t, &b, &err)) goto done;
    // written whole under a temporary name, then renamed: make never sees half a file
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[3]);
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0 || rename(tmp, argv[3]) != 0) {
        perror(argv[3]);
        if (f) remove(tmp);
        goto out;
    }
    rc = 0;
    goto out;
done:
    fprintf(stderr, "gen_tokenizer_tables: %s\n", err.msg);
out:
    mech_buf_free(&b);
    mech_tokenizer_free(t);
    return rc;
}
