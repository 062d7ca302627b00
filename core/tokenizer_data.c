/*
** core/tokenizer_data.c: embeds GPT-2's vocabulary (data/gpt2/encoder.json
** and data/gpt2/vocab.bpe, see data/gpt2/README.md) into the library, so that
** mech_tokenizer_gpt2 reads nothing from disk. core/tokenizer.c parses these
** bytes with the same code that reads the files.
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
