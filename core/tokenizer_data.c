/*
** core/tokenizer_data.c: embeds GPT-2's vocabulary (data/gpt2/encoder.json
** and data/gpt2/vocab.bpe, see data/gpt2/README.md) into the library, so that
** mech_tokenizer_gpt2 reads nothing from disk, and with it the tokenizer's
** tables built from those files at compile time (MECH_GPT2_TABLES, the path
** of the blob tools/gen_tokenizer_tables.c writes), so that it builds
** nothing either: the vocabulary's JSON parse and the hash maps cost about
** 25 ms, a third of a one-token `mech run`. A build without the blob (the
** macro undefined) builds the tokenizer from the embedded files, with the
** same result; tests/test_core_startup.c checks the blob against the files.
**
** .incbin paths are relative to the compiler's working directory, which is
** the repository root (the Makefile runs from there). ELF only (gcc, clang).
** Each blob is followed by a NUL byte that is not part of [start, end).
*/
#include "core/tokenizer_int.h"

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
