/*
** core/tokenizer_data.c: where a tokenizer's vocabulary comes from: the
** files on disk (mech_tokenizer_load, _load_dir) or GPT-2's built into the
** library (mech_tokenizer_gpt2). Embeds GPT-2's vocabulary (data/gpt2/encoder.json
** and data/gpt2/vocab.bpe, see data/gpt2/README.md) into the library, so that
** mech_tokenizer_gpt2 reads nothing from disk, and with it the tokenizer's
** tables built from those files at compile time (MECH_GPT2_TABLES, the path
** of the blob tools/gen_tokenizer_tables.c writes), so that it builds
** nothing either: the vocabulary's JSON parse and the hash maps cost about
** 25 ms, a third of a one-token `mech run`. A build without the blob (the
** macro undefined) builds the tokenizer from the embedded files, with the
** same result; tests/test_core_startup.c checks the blob against the files.
** Files on disk that are byte for byte GPT-2's (Hugging Face's gpt2
** vocab.json and merges.txt are OpenAI's two files renamed) get the built-in
** tables too.
**
** .incbin paths are relative to the compiler's working directory, which is
** the repository root (the Makefile runs from there). ELF only (gcc, clang).
** Each blob is followed by a NUL byte that is not part of [start, end).
*/
#include "core/tokenizer_int.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define MECH_INCBIN(sym, file)                                                                     \
    ".pushsection .rodata\n"                                                                       \
    ".global " sym "\n"                                                                            \
    ".global " sym "_end\n"                                                                        \
    ".type " sym ", @object\n"                                                                     \
    ".balign 16\n" sym ":\n"                                                                       \
    ".incbin \"" file "\"\n" sym "_end:\n"                                                         \
    ".byte 0\n"                                                                                    \
    ".size " sym ", . - " sym "\n"                                                                 \
    ".popsection\n"

__asm__(MECH_INCBIN("mech_gpt2_encoder_json", "data/gpt2/encoder.json")
        MECH_INCBIN("mech_gpt2_vocab_bpe", "data/gpt2/vocab.bpe"));

#ifdef MECH_GPT2_TABLES
__asm__(MECH_INCBIN("mech_gpt2_tables_blob", MECH_GPT2_TABLES));
extern const char mech_gpt2_tables_blob[];
extern const char mech_gpt2_tables_blob_end[];

const void *mech_gpt2_tables(size_t *len) {
    *len = (size_t)(mech_gpt2_tables_blob_end - mech_gpt2_tables_blob);
    return mech_gpt2_tables_blob;
}
#else
const void *mech_gpt2_tables(size_t *len) {
    *len = 0;
    return NULL;
}
#endif

int mech_tokenizer_gpt2_fits(int d_vocab) { return d_vocab >= 50257; }

mech_status mech_tokenizer_gpt2(mech_tokenizer **out, mech_err *err) {
    size_t len;
    const void *tables = mech_gpt2_tables(&len);
    if (tables) return mech_tokenizer_from_tables(tables, len, "GPT-2 tokenizer tables (built in)", 1, out, err);
    return mech_tokenizer_from_memory(
        mech_gpt2_encoder_json, (size_t)(mech_gpt2_encoder_json_end - mech_gpt2_encoder_json),
        "data/gpt2/encoder.json (built in)", mech_gpt2_vocab_bpe,
        (size_t)(mech_gpt2_vocab_bpe_end - mech_gpt2_vocab_bpe), "data/gpt2/vocab.bpe (built in)",
        out, err);
}

// The texts are GPT-2's own files, byte for byte, and this build has their
// tables: checking costs a read and a compare of 1.5 MB, building 25 ms.
static int same_as_builtin(const char *vj, size_t vl, const char *mg, size_t ml) {
    size_t tl;
    size_t ejl = (size_t)(mech_gpt2_encoder_json_end - mech_gpt2_encoder_json);
    size_t vbl = (size_t)(mech_gpt2_vocab_bpe_end - mech_gpt2_vocab_bpe);
    return mech_gpt2_tables(&tl) && vl == ejl && ml == vbl && memcmp(vj, mech_gpt2_encoder_json, vl) == 0 &&
           memcmp(mg, mech_gpt2_vocab_bpe, ml) == 0;
}

mech_status mech_tokenizer_load(const char *vocab_json_path, const char *merges_path,
                                mech_tokenizer **out, mech_err *err) {
    if (!out) return mech_err_set(err, MECH_ERR_ARG, "mech_tokenizer_load: out is NULL");
    *out = NULL;
    if (!vocab_json_path || !merges_path)
        return mech_err_set(err, MECH_ERR_ARG, "mech_tokenizer_load: path is NULL");
    char *vj = NULL, *mg = NULL;
    size_t vl = 0, ml = 0;
    mech_status st = mech_read_file(vocab_json_path, &vj, &vl, err);
    if (!st) st = mech_read_file(merges_path, &mg, &ml, err);
    if (!st && same_as_builtin(vj, vl, mg, ml))
        st = mech_tokenizer_gpt2(out, err);
    else if (!st)
        st = mech_tokenizer_from_memory(vj, vl, vocab_json_path, mg, ml, merges_path, out, err);
    mech_free(vj);
    mech_free(mg);
    return st;
}

// stat, not open: opening a FIFO would block.
static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

mech_status mech_tokenizer_load_dir(const char *dir, mech_tokenizer **out, mech_err *err) {
    if (!out) return mech_err_set(err, MECH_ERR_ARG, "mech_tokenizer_load_dir: out is NULL");
    *out = NULL;
    if (!dir) return mech_err_set(err, MECH_ERR_ARG, "mech_tokenizer_load_dir: dir is NULL");
    static const char *const layouts[2][2] = {{"vocab.json", "merges.txt"},
                                              {"encoder.json", "vocab.bpe"}};
    mech_buf a = {0}, b = {0};
    mech_status st = MECH_OK;
    for (int i = 0; i < 2; i++) {
        a.len = b.len = 0;
        mech_buf_printf(&a, "%s/%s", dir, layouts[i][0]);
        mech_buf_printf(&b, "%s/%s", dir, layouts[i][1]);
        if (a.oom || b.oom) {
            st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", dir);
            goto done;
        }
        int ha = file_exists(a.data), hb = file_exists(b.data);
        if (ha && hb) {
            st = mech_tokenizer_load(a.data, b.data, out, err);
            goto done;
        }
        if (ha || hb) {
            st = mech_err_set(err, MECH_ERR_FORMAT, "%s is there but %s is missing: tokenizer files come in pairs",
                              ha ? a.data : b.data, ha ? b.data : a.data);
            goto done;
        }
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        st = mech_err_set(err, MECH_ERR_IO, "%s: %s, expected a directory holding tokenizer files", dir,
                          stat(dir, &sb) != 0 ? strerror(errno) : "not a directory");
        goto done;
    }
    st = mech_err_set(err, MECH_ERR_IO,
                      "%s: no tokenizer files; expected vocab.json + merges.txt (Hugging Face) "
                      "or encoder.json + vocab.bpe (OpenAI)",
                      dir);
done:
    mech_buf_free(&a);
    mech_buf_free(&b);
    return st;
}

