/*
** tests/fuzz/fuzz_tokenizer.c: core/tokenizer.c, two targets.
**
** tokenizer_files: tokenizer files from bytes. The input is
**   <layout byte> <vocabulary JSON> NUL <merges text>
** (layout bit 0: vocab.json + merges.txt, else encoder.json + vocab.bpe),
** written to a scratch directory and loaded with mech_tokenizer_load_dir. A
** vocabulary that loads must encode text it can spell so that decoding gives
** the text back, and every id it returns must decode.
**
** tokenize: GPT-2's built-in tokenizer on arbitrary bytes, with and without
** special tokens: decode(encode(x)) == x for every byte string.
*/
#include "tests/fuzz/fuzz.h"

#include "core/core.h"

#include <string.h>
#include <unistd.h>

// Encodes text[0..len) and checks the round trip. A vocabulary without some
// byte may refuse text (an error with a message); it may not garble it.
static int round_trip(const mech_tokenizer *t, const char *text, size_t len, int special) {
    mech_err err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    if (mech_tokenizer_encode(t, text, len, special, &ids, &n, &err)) {
        mech_free(ids);
        return err.msg[0] ? 0 : mech_fuzz_fail("encode failed without a message");
    }
    int V = mech_tokenizer_vocab_size(t);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            mech_free(ids);
            return mech_fuzz_fail("encode gave id %d of a vocabulary of %d", (int)ids[i], V);
        }
    char *back = NULL;
    size_t bl = 0;
    int rc = 0;
    if (mech_tokenizer_decode(t, ids, n, &back, &bl, &err)) rc = mech_fuzz_fail("decode of encode failed: %s", err.msg);
    else if (bl != len || memcmp(back, text, len) || back[bl])
        rc = mech_fuzz_fail("decode(encode(x)) != x (%zu bytes became %zu, special %d)", len, bl, special);
    mech_free(ids);
    mech_free(back);
    return rc;
}

int mech_fuzz_tokenizer_files(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int hf = data[0] & 1;
    const char *d = (const char *)data + 1;
    size_t n = size - 1;
    const char *nul = memchr(d, 0, n);
    size_t vl = nul ? (size_t)(nul - d) : n;
    const char *mg = nul ? nul + 1 : "";
    size_t ml = nul ? n - vl - 1 : 0;
    const char *vpath = mech_fuzz_path("tokenizer_files", hf ? "vocab.json" : "encoder.json");
    const char *mpath = mech_fuzz_path("tokenizer_files", hf ? "merges.txt" : "vocab.bpe");
    // the other layout's files must not linger from the previous input
    unlink(mech_fuzz_path("tokenizer_files", hf ? "encoder.json" : "vocab.json"));
    unlink(mech_fuzz_path("tokenizer_files", hf ? "vocab.bpe" : "merges.txt"));
    if (mech_fuzz_write(vpath, d, vl) || mech_fuzz_write(mpath, mg, ml)) return 0;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", vpath);
    *strrchr(dir, '/') = 0;
    mech_err err = {0};
    mech_tokenizer *t = NULL;
    if (mech_tokenizer_load_dir(dir, &t, &err)) {
        if (t) return mech_fuzz_fail("load failed but returned a tokenizer");
        if (!err.msg[0] || !strstr(err.msg, dir)) return mech_fuzz_fail("load failed without naming the file: %s", err.msg);
        return 0;
    }
    mech_fuzz_accepted = 1;
    int rc = 0;
    int V = mech_tokenizer_vocab_size(t);
    if (V <= 0) rc = mech_fuzz_fail("vocabulary of %d tokens", V);
    for (int32_t id = 0; !rc && id < V && id < 512; id++) {
        size_t tl = 0;
        const char *s = mech_tokenizer_token(t, id, &tl);
        if (!s) rc = mech_fuzz_fail("token %d has no bytes", (int)id);
        else if (id != mech_tokenizer_eot(t)) {
            // each token's own bytes must round-trip (special tokens are plain text here)
            rc = round_trip(t, s, tl, 0);
        }
    }
    int32_t eot = mech_tokenizer_eot(t);
    if (!rc && eot >= V) rc = mech_fuzz_fail("eot %d past the vocabulary", (int)eot);
    static const char *texts[] = {"abc abd", "Hello, world! 123", " \t\n  x", "<|endoftext|>a", "\xC3\xA9t\xC3\xA9"};
    for (size_t i = 0; !rc && i < sizeof texts / sizeof *texts; i++) {
        rc = round_trip(t, texts[i], strlen(texts[i]), 0);
        if (!rc) rc = round_trip(t, texts[i], strlen(texts[i]), 1);
    }
    if (!rc) rc = round_trip(t, (const char *)data, size < 64 ? size : 64, 1);
    // arbitrary ids: decode succeeds exactly for ids in range
    int32_t ids[4] = {-1, V, 0, V - 1};
    for (int i = 0; !rc && i < 4; i++) {
        char *s = NULL;
        size_t sl = 0;
        mech_status st = mech_tokenizer_decode(t, &ids[i], 1, &s, &sl, &err);
        if ((st == MECH_OK) != (ids[i] >= 0 && ids[i] < V)) rc = mech_fuzz_fail("decode of id %d: status %d", ids[i], st);
        mech_free(s);
    }
    mech_tokenizer_free(t);
    return rc;
}

static mech_tokenizer *gpt2;

int mech_fuzz_tokenize(const uint8_t *data, size_t size) {
    mech_err err = {0};
    if (!gpt2 && mech_tokenizer_gpt2(&gpt2, &err)) return mech_fuzz_fail("GPT-2 tokenizer: %s", err.msg);
    mech_fuzz_accepted = 1;
    int rc = round_trip(gpt2, (const char *)data, size, 0);
    if (!rc) rc = round_trip(gpt2, (const char *)data, size, 1);
    return rc;
}
