/*
** core/tokenizer.c: GPT-2's byte-level BPE, identical to OpenAI's "gpt2"
** encoding as tiktoken implements it.
**
** Pipeline (tiktoken's CoreBPE::encode_ordinary):
**   1. Pre-tokenize with the gpt2 pattern, hand-coded (no regex library):
**        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
**      \s is Unicode White_Space, as in Rust's regex crate; the classes come
**      from core/unicode_tables.c. Bytes that are not valid UTF-8 count as
**      one codepoint each, of no class, so any byte string is accepted and
**      decode(encode(x)) == x.
**   2. A piece that is itself a token becomes that token (tiktoken's shortcut;
**      this is not always what merging would give, so it matters).
**   3. Otherwise merge, repeatedly, the adjacent pair whose concatenation has
**      the lowest rank, leftmost on ties (tiktoken's _byte_pair_merge). The
**      rank of a token is its merge's position in vocab.bpe (+256); a pair
**      qualifies when its concatenated bytes are a token, whether or not that
**      exact pair is the merge listed in the file (again as tiktoken does).
**      The pair map therefore holds every split of every token into two
**      tokens, keyed by the two ids.
**
** Vocabulary (encoder.json / vocab.json: token -> id; vocab.bpe / merges.txt:
** merges in priority order) is validated as strictly as tiktoken's
** data_gym_to_mergeable_bpe_ranks: ids are 0..n-1, each once; every token is
** a single byte, the result of exactly one merge, or a special "<|...|>"
** token; every merge joins two tokens into a third. Special tokens are only
** recognised when encode is called with allow_special.
**
** Invariants: tokenizers are immutable after loading, so encode and decode
** may run concurrently on one tokenizer.
*/
#include "core/tokenizer_int.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

size_t mech_tokenizer_heap_min = 128;

#define NO_RANK INT32_MAX
#define SIMPLE_MAX 256 // the linear merge uses stack arrays of this size

typedef struct tok_slot {
    uint32_t hash; // high bits of the 64-bit hash, to skip most memcmp
    int32_t id;    // -1: empty
} tok_slot;

typedef struct pair_slot {
    int32_t left, right; // left = -1: empty
    int32_t id;          // token whose bytes are left's followed by right's
    int32_t rank;        // that token's rank
} pair_slot;

struct mech_tokenizer {
    int32_t n;          // vocabulary size; ids are 0..n-1
    char *bytes;        // all token bytes, concatenated (NUL-terminated)
    uint32_t *off;      // [n+1]: token id's bytes are bytes[off[id] .. off[id+1])
    int32_t *rank;      // [n]: BPE rank, or NO_RANK for special tokens
    int32_t byte_id[256];
    tok_slot *tmap;     // token bytes -> id, every token
    size_t tmap_mask;
    pair_slot *pmap;    // (left id, right id) -> merged token
    size_t pmap_mask;
    int32_t *special;   // ids of "<|...|>" tokens no merge produces
    size_t n_special;
    int32_t eot;        // id of <|endoftext|> or -1
    int borrowed;       // the arrays point into a table blob (mech_tokenizer_from_tables), not owned
};

// ---------------------------------------------------------------------------
// Hashing

static inline uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    h = (h ^ v) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 29;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 32;
    return h;
}

static inline uint64_t hash_pair(int32_t a, int32_t b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

// Id of the token with bytes p[0..n), or -1.
static inline int32_t tok_find(const mech_tokenizer *t, const unsigned char *p, size_t n) {
    uint64_t h = hash_bytes(p, n);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = (size_t)h & t->tmap_mask;; i = (i + 1) & t->tmap_mask) {
        const tok_slot *s = &t->tmap[i];
        if (s->id < 0) return -1;
        if (s->hash == tag) {
            uint32_t o = t->off[s->id];
            if (t->off[s->id + 1] - o == n && memcmp(t->bytes + o, p, n) == 0) return s->id;
        }
    }
}

// Inserts id (its bytes must already be in t->bytes); returns the id already
// holding those bytes, or -1 when the insert happened.
static int32_t tok_insert(mech_tokenizer *t, int32_t id) {
    const unsigned char *p = (const unsigned char *)t->bytes + t->off[id];
    size_t n = t->off[id + 1] - t->off[id];
    uint64_t h = hash_bytes(p, n);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = (size_t)h & t->tmap_mask;; i = (i + 1) & t->tmap_mask) {
        tok_slot *s = &t->tmap[i];
        if (s->id < 0) {
            s->id = id;
            s->hash = tag;
            return -1;
        }
        if (s->hash == tag) {
            uint32_t o = t->off[s->id];
            if (t->off[s->id + 1] - o == n && memcmp(t->bytes + o, p, n) == 0) return s->id;
        }
    }
}

static inline const pair_slot *pair_find(const mech_tokenizer *t, int32_t a, int32_t b) {
    for (size_t i = (size_t)hash_pair(a, b) & t->pmap_mask;; i = (i + 1) & t->pmap_mask) {
        const pair_slot *s = &t->pmap[i];
        if (s->left < 0) return NULL;
        if (s->left == a && s->right == b) return s;
    }
}

static void pair_insert(mech_tokenizer *t, int32_t a, int32_t b, int32_t id) {
    size_t i = (size_t)hash_pair(a, b) & t->pmap_mask;
    while (t->pmap[i].left >= 0) i = (i + 1) & t->pmap_mask;
    t->pmap[i] = (pair_slot){a, b, id, t->rank[id]};
}

// ---------------------------------------------------------------------------
// GPT-2's bytes_to_unicode: the printable bytes 33..126, 161..172 and
// 174..255 stand for themselves; the other 68 bytes, in order, become
// U+0100.. U+0143. Vocabulary files spell token bytes with these characters.

static void byte_map(uint16_t b2u[256], int16_t u2b[324], int32_t rank_of_byte[256]) {
    int n = 0, r = 0;
    for (int b = 0; b < 256; b++) b2u[b] = 0;
    for (int c = 0; c < 324; c++) u2b[c] = -1;
    // tiktoken ranks the printable bytes first, then the rest (rank_to_intbyte).
    for (int b = 0; b < 256; b++) {
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
            b2u[b] = (uint16_t)b;
            rank_of_byte[b] = r++;
        }
    }
    for (int b = 0; b < 256; b++) {
        if (!b2u[b] && !((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
            b2u[b] = (uint16_t)(256 + n++);
            rank_of_byte[b] = r++;
        }
    }
    for (int b = 0; b < 256; b++) u2b[b2u[b]] = (int16_t)b;
}

// Length of the valid UTF-8 sequence at s[0..n) (1..4) with its codepoint in
// *cp, or 0 when s does not start one (bad lead or continuation byte,
// overlong form, surrogate, beyond U+10FFFF, truncated).
static inline size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t min, v;
    if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80, v = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800, v = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000, v = c & 0x07;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

// Converts a vocabulary spelling (UTF-8 of bytes_to_unicode characters) to
// raw bytes in out (at least n bytes). Returns the byte count, or -1 with
// *bad set to the offending codepoint (0x110000 for invalid UTF-8).
static long unspell(const int16_t u2b[324], const char *s, size_t n, unsigned char *out,
                    uint32_t *bad) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (!l) {
            *bad = 0x110000;
            return -1;
        }
        if (cp >= 324 || u2b[cp] < 0) {
            *bad = cp;
            return -1;
        }
        out[o++] = (unsigned char)u2b[cp];
        i += l;
    }
    return (long)o;
}

// Writes s[0..n) as a quoted, escaped string (cut at 64 bytes) for messages.
static const char *quote(char *dst, size_t cap, const char *s, size_t n) {
    mech_buf b = {0};
    mech_buf_json_string(&b, s, n > 64 ? 64 : n);
    if (n > 64) mech_buf_puts(&b, "...");
    snprintf(dst, cap, "%s", b.oom || !b.data ? "\"?\"" : b.data);
    mech_buf_free(&b);
    return dst;
}

// ---------------------------------------------------------------------------
// Loading

void mech_tokenizer_free(mech_tokenizer *t) {
    if (!t) return;
    if (t->borrowed) {
        mech_free(t);
        return;
    }
    mech_free(t->bytes);
    mech_free(t->off);
    mech_free(t->rank);
    mech_free(t->tmap);
    mech_free(t->pmap);
    mech_free(t->special);
    mech_free(t);
}

typedef struct merge_rec {
    int32_t left, right, result;
    uint32_t line;
} merge_rec;

// vocab = "{" [ member { "," member } ] "}" ;   (any JSON whitespace between)
// member = string ":" integer ;                  (token spelling -> id)
// Fills t->n, t->bytes, t->off and t->tmap.
static mech_status load_vocab(mech_tokenizer *t, const int16_t u2b[324], const char *text,
                              size_t len, const char *name, mech_err *err) {
    mech_json *j = NULL;
    int32_t *key_of = NULL; // id -> index of its member
    mech_status st = mech_json_parse(text, len, &j, err);
    char q[160], q2[160];
    if (st) {
        if (err) {
            char inner[sizeof err->msg];
            snprintf(inner, sizeof inner, "%s", err->msg);
            mech_err_set(err, st, "%s: %s", name, inner);
        }
        return st;
    }
    if (j->type != MECH_JSON_OBJECT) {
        st = mech_err_set(err, MECH_ERR_FORMAT,
                          "%s: expected a JSON object mapping tokens to ids at the top level", name);
        goto fail;
    }
    if (j->n > (size_t)INT32_MAX / 2) {
        st = mech_err_set(err, MECH_ERR_FORMAT, "%s: too many tokens (%zu)", name, j->n);
        goto fail;
    }
    int32_t n = (int32_t)j->n;
    t->n = n;
    size_t total = 0;
    for (size_t i = 0; i < j->n; i++) total += j->key_lens[i];
    if (total >= UINT32_MAX) {
        st = mech_err_set(err, MECH_ERR_FORMAT, "%s: token text too large", name);
        goto fail;
    }
    key_of = mech_malloc((size_t)n * sizeof *key_of);
    t->off = mech_malloc(((size_t)n + 1) * sizeof *t->off);
    t->bytes = mech_malloc(total + 1);
    if (!key_of || !t->off || !t->bytes) goto nomem;
    for (int32_t i = 0; i < n; i++) key_of[i] = -1;
    for (size_t i = 0; i < j->n; i++) {
        const mech_json *v = &j->items[i];
        const char *key = j->keys[i];
        size_t kl = j->key_lens[i];
        if (v->type != MECH_JSON_NUMBER || !v->is_int) {
            st = mech_err_set(err, MECH_ERR_FORMAT, "%s: token %s: id is not an integer", name,
                              quote(q, sizeof q, key, kl));
            goto fail;
        }
        if (v->inum < 0 || v->inum >= n) {
            st = mech_err_set(err, MECH_ERR_FORMAT,
                              "%s: token %s: id %lld out of range; expected 0..%d (ids must be "
                              "0..n-1, each used once)",
                              name, quote(q, sizeof q, key, kl), (long long)v->inum, n - 1);
            goto fail;
        }
        int32_t id = (int32_t)v->inum;
        if (key_of[id] >= 0) {
            st = mech_err_set(err, MECH_ERR_FORMAT, "%s: tokens %s and %s both have id %d", name,
                              quote(q, sizeof q, j->keys[key_of[id]], j->key_lens[key_of[id]]),
                              quote(q2, sizeof q2, key, kl), id);
            goto fail;
        }
        key_of[id] = (int32_t)i;
    }
    // Every id in 0..n-1 is now used exactly once (n keys, n distinct ids).
    size_t o = 0;
    for (int32_t id = 0; id < n; id++) {
        size_t k = (size_t)key_of[id];
        uint32_t bad = 0;
        t->off[id] = (uint32_t)o;
        if (j->key_lens[k] == 0) {
            st = mech_err_set(err, MECH_ERR_FORMAT, "%s: id %d: empty token", name, id);
            goto fail;
        }
        long got = unspell(u2b, j->keys[k], j->key_lens[k], (unsigned char *)t->bytes + o, &bad);
        if (got < 0) {
            st = mech_err_set(err, MECH_ERR_FORMAT,
                              "%s: token %s (id %d): character U+%04X is not one of GPT-2's "
                              "byte-level characters (bytes_to_unicode)",
                              name, quote(q, sizeof q, j->keys[k], j->key_lens[k]), id, bad);
            goto fail;
        }
        o += (size_t)got;
    }
    t->off[n] = (uint32_t)o;
    t->bytes[o] = 0;
    t->tmap_mask = pow2_at_least((size_t)n * 2) - 1;
    t->tmap = mech_malloc((t->tmap_mask + 1) * sizeof *t->tmap);
    if (!t->tmap) goto nomem;
    memset(t->tmap, 0xFF, (t->tmap_mask + 1) * sizeof *t->tmap);
    for (int32_t id = 0; id < n; id++) {
        int32_t dup = tok_insert(t, id);
        if (dup >= 0) {
            st = mech_err_set(err, MECH_ERR_FORMAT, "%s: ids %d and %d are the same token %s",
                              name, dup, id,
                              quote(q, sizeof q, j->keys[key_of[id]], j->key_lens[key_of[id]]));
            goto fail;
        }
    }
    mech_free(key_of);
    mech_json_free(j);
    return MECH_OK;
nomem:
    st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", name);
fail:
    mech_free(key_of);
    mech_json_free(j);
    return st;
}

// merges = [ "#version" { char } newline ] { merge newline } [ merge ] ;
// merge  = token " " token ;                 (a "\r" before the newline is ignored)
// token  = char { char } ;                   (bytes_to_unicode characters)
// Fills *recs (owned by the caller) with one record per merge.
static mech_status load_merges(const mech_tokenizer *t, const int16_t u2b[324], const char *text,
                               size_t len, const char *name, const char *vocab_name,
                               merge_rec **recs, size_t *n_recs, mech_err *err) {
    size_t cap = 0, n = 0;
    merge_rec *r = NULL;
    unsigned char *buf = mech_malloc(len + 1);
    mech_status st = MECH_OK;
    char q[160], q2[160];
    if (!buf) goto nomem;
    size_t pos = 0;
    uint32_t line = 0;
    while (pos < len) {
        line++;
        const char *ls = text + pos;
        const char *nl = memchr(ls, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - ls) : len - pos;
        pos += ll + (nl ? 1 : 0);
        if (ll && ls[ll - 1] == '\r') ll--;
        if (line == 1 && ll >= 8 && memcmp(ls, "#version", 8) == 0) continue;
        if (ll == 0) {
            if (pos >= len) break; // the last line may be empty
            st = mech_err_set(err, MECH_ERR_FORMAT, "%s:%u: empty line; expected a merge \"A B\"",
                              name, line);
            goto fail;
        }
        const char *sp = memchr(ls, ' ', ll);
        if (!sp || sp == ls || sp == ls + ll - 1 || memchr(sp + 1, ' ', (size_t)(ls + ll - sp - 1))) {
            st = mech_err_set(err, MECH_ERR_FORMAT,
                              "%s:%u: %s: expected two tokens separated by one space", name, line,
                              quote(q, sizeof q, ls, ll));
            goto fail;
        }
        size_t al = (size_t)(sp - ls), bl = ll - al - 1;
        uint32_t bad = 0;
        long an = unspell(u2b, ls, al, buf, &bad), bn = -1;
        if (an >= 0) bn = unspell(u2b, sp + 1, bl, buf + an, &bad);
        if (an < 0 || bn < 0) {
            if (bad == 0x110000)
                st = mech_err_set(err, MECH_ERR_FORMAT, "%s:%u: invalid UTF-8", name, line);
            else
                st = mech_err_set(err, MECH_ERR_FORMAT,
                                  "%s:%u: %s: character U+%04X is not one of GPT-2's byte-level "
                                  "characters (bytes_to_unicode)",
                                  name, line, quote(q, sizeof q, ls, ll), bad);
            goto fail;
        }
        int32_t a = tok_find(t, buf, (size_t)an);
        int32_t b = tok_find(t, buf + an, (size_t)bn);
        int32_t c = tok_find(t, buf, (size_t)(an + bn));
        if (a < 0 || b < 0 || c < 0) {
            const char *what = a < 0 ? ls : b < 0 ? sp + 1 : ls;
            size_t wl = a < 0 ? al : b < 0 ? bl : ll;
            st = mech_err_set(err, MECH_ERR_FORMAT, "%s:%u: merge %s: %s%s is not in %s", name,
                              line, quote(q, sizeof q, ls, ll), a >= 0 && b >= 0 ? "the result of " : "",
                              quote(q2, sizeof q2, what, wl), vocab_name);
            goto fail;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            merge_rec *nr = mech_realloc(r, cap * sizeof *r);
            if (!nr) goto nomem;
            r = nr;
        }
        r[n++] = (merge_rec){a, b, c, line};
        if (n > (size_t)INT32_MAX / 2) {
            st = mech_err_set(err, MECH_ERR_FORMAT, "%s:%u: too many merges", name, line);
            goto fail;
        }
    }
    mech_free(buf);
    *recs = r;
    *n_recs = n;
    return MECH_OK;
nomem:
    st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", name);
fail:
    mech_free(buf);
    mech_free(r);
    return st;
}

static int is_special_form(const char *s, size_t n) {
    return n >= 5 && memcmp(s, "<|", 2) == 0 && memcmp(s + n - 2, "|>", 2) == 0;
}

mech_status mech_tokenizer_from_memory(const char *vocab_json, size_t vocab_len,
                                       const char *vocab_name, const char *merges,
                                       size_t merges_len, const char *merges_name,
                                       mech_tokenizer **out, mech_err *err) {
    if (!out) return mech_err_set(err, MECH_ERR_ARG, "mech_tokenizer: out is NULL");
    *out = NULL;
    if ((!vocab_json && vocab_len) || (!merges && merges_len))
        return mech_err_set(err, MECH_ERR_ARG, "mech_tokenizer: text is NULL");
    uint16_t b2u[256];
    int16_t u2b[324];
    int32_t rank_of_byte[256];
    byte_map(b2u, u2b, rank_of_byte);
    merge_rec *recs = NULL;
    size_t n_recs = 0;
    uint32_t *made_by = NULL; // id -> line of the merge producing it, 0: none
    merge_rec *cuts = NULL;   // pair map entries (left, right, result) before insertion
    char q[160];
    mech_status st;
    mech_tokenizer *t = mech_calloc(1, sizeof *t);
    if (!t) return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", vocab_name);
    t->eot = -1;
    st = load_vocab(t, u2b, vocab_json, vocab_len, vocab_name, err);
    if (st) goto fail;
    int32_t n = t->n;
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        t->byte_id[b] = tok_find(t, &c, 1);
        if (t->byte_id[b] < 0) {
            char sp[8];
            size_t l = b2u[b] < 0x80 ? 1 : 2;
            sp[0] = l == 1 ? (char)b2u[b] : (char)(0xC0 | (b2u[b] >> 6));
            sp[1] = (char)(0x80 | (b2u[b] & 0x3F));
            st = mech_err_set(err, MECH_ERR_FORMAT,
                              "%s: byte 0x%02X (spelled %s) has no token; every byte needs one",
                              vocab_name, b, quote(q, sizeof q, sp, l));
            goto fail;
        }
    }
    st = load_merges(t, u2b, merges, merges_len, merges_name, vocab_name, &recs, &n_recs, err);
    if (st) goto fail;
    t->rank = mech_malloc((size_t)n * sizeof *t->rank);
    made_by = mech_calloc((size_t)n, sizeof *made_by);
    if (!t->rank || !made_by) goto nomem;
    for (int32_t id = 0; id < n; id++) t->rank[id] = NO_RANK;
    for (int b = 0; b < 256; b++) t->rank[t->byte_id[b]] = rank_of_byte[b];
    for (size_t i = 0; i < n_recs; i++) {
        int32_t c = recs[i].result;
        if (made_by[c]) {
            uint32_t o = t->off[c];
            st = mech_err_set(err, MECH_ERR_FORMAT,
                              "%s:%u: merge produces %s, which line %u already produces",
                              merges_name, recs[i].line,
                              quote(q, sizeof q, t->bytes + o, t->off[c + 1] - o), made_by[c]);
            goto fail;
        }
        made_by[c] = recs[i].line;
        t->rank[c] = (int32_t)(256 + i);
    }
    size_t n_special = 0;
    for (int32_t id = 0; id < n; id++) {
        if (t->rank[id] != NO_RANK) continue;
        uint32_t o = t->off[id];
        size_t l = t->off[id + 1] - o;
        if (!is_special_form(t->bytes + o, l)) {
            st = mech_err_set(err, MECH_ERR_FORMAT,
                              "%s: token %s (id %d) is neither a byte, nor made by a merge in %s, "
                              "nor a special <|...|> token (is %s truncated?)",
                              vocab_name, quote(q, sizeof q, t->bytes + o, l), id, merges_name,
                              merges_name);
            goto fail;
        }
        n_special++;
    }
    t->special = mech_malloc((n_special ? n_special : 1) * sizeof *t->special);
    if (!t->special) goto nomem;
    for (int32_t id = 0; id < n; id++) {
        if (t->rank[id] != NO_RANK) continue;
        t->special[t->n_special++] = id;
        uint32_t o = t->off[id];
        if (t->off[id + 1] - o == 13 && memcmp(t->bytes + o, "<|endoftext|>", 13) == 0) t->eot = id;
    }
    for (size_t i = 0; i < n_recs; i++) {
        int32_t side = t->rank[recs[i].left] == NO_RANK ? recs[i].left
                       : t->rank[recs[i].right] == NO_RANK ? recs[i].right : -1;
        if (side >= 0) {
            uint32_t o = t->off[side];
            st = mech_err_set(err, MECH_ERR_FORMAT, "%s:%u: merge uses the special token %s",
                              merges_name, recs[i].line,
                              quote(q, sizeof q, t->bytes + o, t->off[side + 1] - o));
            goto fail;
        }
    }
    // Pair map: every way to cut a mergeable token into two mergeable tokens.
    // One sweep of lookups (they are most of the build's cost, cache misses
    // in tmap) collects the cuts; the map is then sized and filled from them.
    size_t n_cuts = 0, n_pairs = 0;
    for (int32_t id = 0; id < n; id++)
        if (t->rank[id] != NO_RANK) n_cuts += t->off[id + 1] - t->off[id] - 1;
    cuts = mech_malloc((n_cuts ? n_cuts : 1) * sizeof *cuts);
    if (!cuts) goto nomem;
    for (int32_t id = 0; id < n; id++) {
        if (t->rank[id] == NO_RANK) continue;
        const unsigned char *p = (const unsigned char *)t->bytes + t->off[id];
        size_t l = t->off[id + 1] - t->off[id];
        for (size_t k = 1; k < l; k++) {
            int32_t a = tok_find(t, p, k), b;
            if (a < 0 || t->rank[a] == NO_RANK) continue;
            b = tok_find(t, p + k, l - k);
            if (b < 0 || t->rank[b] == NO_RANK) continue;
            cuts[n_pairs++] = (merge_rec){a, b, id, 0};
        }
    }
    t->pmap_mask = pow2_at_least(n_pairs * 2) - 1;
    t->pmap = mech_malloc((t->pmap_mask + 1) * sizeof *t->pmap);
    if (!t->pmap) goto nomem;
    memset(t->pmap, 0xFF, (t->pmap_mask + 1) * sizeof *t->pmap);
    for (size_t i = 0; i < n_pairs; i++) pair_insert(t, cuts[i].left, cuts[i].right, cuts[i].result);
    mech_free(cuts);
    cuts = NULL;
    mech_free(recs);
    mech_free(made_by);
    *out = t;
    return MECH_OK;
nomem:
    st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", vocab_name);
fail:
    mech_free(cuts);
    mech_free(recs);
    mech_free(made_by);
    mech_tokenizer_free(t);
    return st;
}

// ---------------------------------------------------------------------------
// Tables: a built tokenizer as one blob, so that a program can embed GPT-2's
// (core/tokenizer_data.c, made at build time by tools/gen_tokenizer_tables.c)
// and start without parsing the vocabulary or building the maps (about 25 ms
// of every `mech run`). Native byte order: the blob is made on the machine
// that builds the library.
//
// Layout: the header below, then off [n+1], rank [n], tmap, pmap, special
// and bytes (bytes_len + 1, NUL last), each array starting at a multiple of
// 16 bytes. The probing maps are stored as built, so lookups find exactly
// what they find in a tokenizer built from the files.

#define TABLES_MAGIC "MECHTOK1"

typedef struct tables_hdr {
    char magic[8];
    uint32_t n, n_special, tmap_slots, pmap_slots, bytes_len;
    int32_t eot;
    int32_t byte_id[256];
} tables_hdr;

typedef struct tables_layout {
    uint64_t off, rank, tmap, pmap, special, bytes, total; // byte offsets in the blob
} tables_layout;

static uint64_t align16(uint64_t x) { return (x + 15) & ~(uint64_t)15; }

// Offsets of each array; counts come from a header (up to 2^32 each, so
// 64-bit sums cannot overflow).
static tables_layout layout_of(const tables_hdr *h) {
    tables_layout l;
    l.off = align16(sizeof *h);
    l.rank = align16(l.off + ((uint64_t)h->n + 1) * 4);
    l.tmap = align16(l.rank + (uint64_t)h->n * 4);
    l.pmap = align16(l.tmap + (uint64_t)h->tmap_slots * sizeof(tok_slot));
    l.special = align16(l.pmap + (uint64_t)h->pmap_slots * sizeof(pair_slot));
    l.bytes = align16(l.special + (uint64_t)h->n_special * 4);
    l.total = l.bytes + (uint64_t)h->bytes_len + 1;
    return l;
}

mech_status mech_tokenizer_tables(const mech_tokenizer *t, mech_buf *out, mech_err *err) {
    tables_hdr h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, TABLES_MAGIC, 8);
    h.n = (uint32_t)t->n;
    h.n_special = (uint32_t)t->n_special;
    h.tmap_slots = (uint32_t)(t->tmap_mask + 1);
    h.pmap_slots = (uint32_t)(t->pmap_mask + 1);
    h.bytes_len = t->off[t->n];
    h.eot = t->eot;
    memcpy(h.byte_id, t->byte_id, sizeof h.byte_id);
    tables_layout l = layout_of(&h);
    static const char zeros[16];
    out->len = 0;
#define PUT_AT(at, p, nbytes)                                                       \
    do {                                                                            \
        mech_buf_append(out, zeros, (size_t)((at) - (uint64_t)out->len));          \
        mech_buf_append(out, (p), (size_t)(nbytes));                               \
    } while (0)
    PUT_AT(0, &h, sizeof h);
    PUT_AT(l.off, t->off, ((size_t)t->n + 1) * 4);
    PUT_AT(l.rank, t->rank, (size_t)t->n * 4);
    PUT_AT(l.tmap, t->tmap, (size_t)h.tmap_slots * sizeof(tok_slot));
    PUT_AT(l.pmap, t->pmap, (size_t)h.pmap_slots * sizeof(pair_slot));
    PUT_AT(l.special, t->special, t->n_special * 4);
    PUT_AT(l.bytes, t->bytes, (size_t)h.bytes_len + 1);
#undef PUT_AT
    if (out->oom) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory writing tokenizer tables");
    return MECH_OK;
}

static int is_pow2(uint32_t x) { return x && !(x & (x - 1)); }

mech_status mech_tokenizer_from_tables(const void *blob, size_t len, const char *name, int trusted,
                                       mech_tokenizer **out, mech_err *err) {
    if (!out) return mech_err_set(err, MECH_ERR_ARG, "mech_tokenizer_from_tables: out is NULL");
    *out = NULL;
    const unsigned char *b = blob;
    tables_hdr h;
    if (!b || len < sizeof h)
        return mech_err_set(err, MECH_ERR_FORMAT, "%s: %zu bytes, too short for tokenizer tables", name, len);
    if ((uintptr_t)b % 8)
        return mech_err_set(err, MECH_ERR_ARG, "%s: tokenizer tables must be 8-byte aligned in memory", name);
    memcpy(&h, b, sizeof h);
    if (memcmp(h.magic, TABLES_MAGIC, 8))
        return mech_err_set(err, MECH_ERR_FORMAT, "%s: not mech tokenizer tables (no %s magic)", name, TABLES_MAGIC);
    if (h.n < 1 || h.n > (uint32_t)INT32_MAX / 2 || h.n_special > h.n || !is_pow2(h.tmap_slots) ||
        !is_pow2(h.pmap_slots) || h.tmap_slots <= h.n || h.bytes_len >= UINT32_MAX)
        return mech_err_set(err, MECH_ERR_FORMAT, "%s: tokenizer tables: bad counts in the header", name);
    tables_layout l = layout_of(&h);
    if (l.total != len)
        return mech_err_set(err, MECH_ERR_FORMAT, "%s: tokenizer tables of %zu bytes, expected %llu (truncated?)", name,
                            len, (unsigned long long)l.total);
    int32_t n = (int32_t)h.n;
    const uint32_t *off = (const uint32_t *)(b + l.off);
    const int32_t *rank = (const int32_t *)(b + l.rank), *special = (const int32_t *)(b + l.special);
    const tok_slot *tmap = (const tok_slot *)(b + l.tmap);
    const pair_slot *pmap = (const pair_slot *)(b + l.pmap);
    const char *bytes = (const char *)(b + l.bytes);
    // Every index the lookups follow is checked once here, so a damaged blob
    // gives wrong tokens at worst, never a read outside it; an empty slot in
    // each map ends every probe.
    int ok = off[0] == 0 && off[n] == h.bytes_len && bytes[h.bytes_len] == 0 && (h.eot == -1 || (uint32_t)h.eot < h.n);
    if (trusted) goto checked;
    for (int32_t i = 0; ok && i < n; i++) ok = off[i] <= off[i + 1] && rank[i] >= 0;
    for (int c = 0; ok && c < 256; c++) ok = h.byte_id[c] >= 0 && (uint32_t)h.byte_id[c] < h.n;
    for (uint32_t i = 0; ok && i < h.n_special; i++) ok = special[i] >= 0 && special[i] < n;
    size_t empty = 0;
    for (uint32_t i = 0; ok && i < h.tmap_slots; i++) {
        empty += tmap[i].id == -1;
        ok = tmap[i].id >= -1 && tmap[i].id < n;
    }
    ok = ok && empty > 0;
    empty = 0;
    for (uint32_t i = 0; ok && i < h.pmap_slots; i++) {
        const pair_slot *s = &pmap[i];
        if (s->left == -1) empty++;
        else ok = s->left >= 0 && s->left < n && s->right >= 0 && s->right < n && s->id >= 0 && s->id < n;
    }
    ok = ok && empty > 0;
checked:
    if (!ok) return mech_err_set(err, MECH_ERR_FORMAT, "%s: tokenizer tables: an index out of range", name);
    mech_tokenizer *t = mech_calloc(1, sizeof *t);
    if (!t) return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", name);
    // The tokenizer only reads its arrays once built: borrowing them as
    // non-const pointers is safe, and read-only memory holds them fine.
    t->n = n;
    t->bytes = (char *)(uintptr_t)bytes;
    t->off = (uint32_t *)(uintptr_t)off;
    t->rank = (int32_t *)(uintptr_t)rank;
    memcpy(t->byte_id, h.byte_id, sizeof t->byte_id);
    t->tmap = (tok_slot *)(uintptr_t)tmap;
    t->tmap_mask = h.tmap_slots - 1;
    t->pmap = (pair_slot *)(uintptr_t)pmap;
    t->pmap_mask = h.pmap_slots - 1;
    t->special = (int32_t *)(uintptr_t)special;
    t->n_special = h.n_special;
    t->eot = h.eot;
    t->borrowed = 1;
    *out = t;
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// Accessors

int mech_tokenizer_vocab_size(const mech_tokenizer *t) { return t ? t->n : 0; }

int32_t mech_tokenizer_eot(const mech_tokenizer *t) { return t ? t->eot : -1; }

const char *mech_tokenizer_token(const mech_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->off[id + 1] - t->off[id];
    return t->bytes + t->off[id];
}

// ---------------------------------------------------------------------------
// Unicode classes

int mech_uni_class(uint32_t cp) {
    size_t lo = 0, hi = mech_uni_n_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < mech_uni_ranges[mid].lo) hi = mid;
        else if (cp > mech_uni_ranges[mid].hi) lo = mid + 1;
        else return (int)mech_uni_ranges[mid].cls;
    }
    return MECH_UNI_OTHER;
}

static inline int ascii_class(unsigned c) {
    if ((unsigned)((c | 0x20) - 'a') < 26) return MECH_UNI_L;
    if ((unsigned)(c - '0') < 10) return MECH_UNI_N;
    if (c == ' ' || (unsigned)(c - 9) < 5) return MECH_UNI_WS;
    return MECH_UNI_OTHER;
}

// Class and length of the codepoint at s[i] (i < n); an invalid UTF-8 byte
// is a codepoint of length 1 and no class.
static inline size_t cp_class(const unsigned char *s, size_t i, size_t n, int *cls) {
    if (s[i] < 0x80) {
        *cls = ascii_class(s[i]);
        return 1;
    }
    uint32_t cp;
    size_t l = utf8_decode(s + i, n - i, &cp);
    if (!l) {
        *cls = MECH_UNI_OTHER;
        return 1;
    }
    *cls = mech_uni_class(cp);
    return l;
}

// ---------------------------------------------------------------------------
// Pre-tokenizer

// End of the piece that starts at s[i] (i < n). The pattern's alternatives,
// tried in order at i (leftmost-first, as fancy-regex does):
//   's 't 're 've 'm 'll 'd      contractions, case-sensitive ASCII
//   ' '? L+ | ' '? N+ | ' '? O+  a run of one class, with one optional space
//                                (O = not whitespace, letter or number)
//   \s+(?!\S)                    whitespace not followed by non-whitespace:
//                                before a non-space, the run gives back its
//                                last codepoint (which then starts the next
//                                piece, e.g. " word")
//   \s+                          a single whitespace codepoint before a non-space
static inline size_t piece_end(const unsigned char *s, size_t i, size_t n) {
    unsigned c = s[i];
    if (c == '\'' && i + 1 < n) {
        unsigned d = s[i + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
        if (i + 2 < n) {
            unsigned e = s[i + 2];
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l'))
                return i + 3;
        }
    }
    int cls, run;
    size_t j = i + cp_class(s, i, n, &cls);
    if (cls != MECH_UNI_WS) {
        run = cls;
    } else {
        if (c == ' ' && j < n) {
            size_t l = cp_class(s, j, n, &run);
            if (run != MECH_UNI_WS) { // ' ' then a letter, number or other joins that run
                j += l;
                goto scan;
            }
        }
        // Whitespace run [i, j) whose last codepoint starts at last.
        size_t last = i;
        j = i;
        while (j < n) {
            int c2;
            size_t l = cp_class(s, j, n, &c2);
            if (c2 != MECH_UNI_WS) break;
            last = j;
            j += l;
        }
        if (j == n || last == i) return j;
        return last;
    }
scan:
    while (j < n) {
        unsigned b = s[j];
        if (b < 0x80) {
            if (ascii_class(b) != run) break;
            j++;
            continue;
        }
        int c2;
        size_t l = cp_class(s, j, n, &c2);
        if (c2 != run) break;
        j += l;
    }
    return j;
}

int mech_tokenizer_split(const char *text, size_t len,
                         int (*fn)(void *user, size_t start, size_t end), void *user) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        size_t e = piece_end(s, i, len);
        int r = fn(user, i, e);
        if (r) return r;
        i = e;
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Byte pair merging

typedef struct id_out {
    int32_t *ids;
    size_t n, cap;
    int oom;
} id_out;

static inline void out_push(id_out *o, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *p = mech_realloc(o->ids, cap * sizeof *p);
        if (!p) {
            o->oom = 1;
            return;
        }
        o->ids = p;
        o->cap = cap;
    }
    o->ids[o->n++] = id;
}

static inline void pair_rank(const mech_tokenizer *t, int32_t a, int32_t b, int32_t *rank,
                             int32_t *id) {
    const pair_slot *s = pair_find(t, a, b);
    *rank = s ? s->rank : NO_RANK;
    *id = s ? s->id : -1;
}

// tiktoken's _byte_pair_merge for short pieces: rescan for the lowest rank.
static void bpe_linear(const mech_tokenizer *t, const unsigned char *p, size_t n, id_out *o) {
    int32_t ids[SIMPLE_MAX], rank[SIMPLE_MAX], mid[SIMPLE_MAX];
    size_t m = n;
    for (size_t k = 0; k < n; k++) ids[k] = t->byte_id[p[k]];
    for (size_t k = 0; k + 1 < m; k++) pair_rank(t, ids[k], ids[k + 1], &rank[k], &mid[k]);
    for (;;) {
        int32_t best = NO_RANK;
        size_t at = 0;
        for (size_t k = 0; k + 1 < m; k++)
            if (rank[k] < best) best = rank[k], at = k;
        if (best == NO_RANK) break;
        ids[at] = mid[at];
        m--;
        memmove(&ids[at + 1], &ids[at + 2], (m - at - 1) * sizeof *ids);
        memmove(&rank[at + 1], &rank[at + 2], (m - at - 1) * sizeof *rank);
        memmove(&mid[at + 1], &mid[at + 2], (m - at - 1) * sizeof *mid);
        if (at > 0) pair_rank(t, ids[at - 1], ids[at], &rank[at - 1], &mid[at - 1]);
        if (at + 1 < m) pair_rank(t, ids[at], ids[at + 1], &rank[at], &mid[at]);
    }
    for (size_t k = 0; k < m; k++) out_push(o, ids[k]);
}

// Min-heap of (rank << 32 | position) keys.
static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent] <= v) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = v;
    return top;
}

// The same merges for long pieces in O(n log n): parts form a linked list
// indexed by their first byte; the heap holds (rank, first byte) of candidate
// pairs and stale entries are skipped when popped. The lowest (rank, first
// byte) is exactly tiktoken's choice (lowest rank, leftmost). An entry is
// current when its part is alive and its pair still has that rank: equal
// rank means equal bytes from the same position, hence the same merge.
static int bpe_heap(const mech_tokenizer *t, const unsigned char *p, size_t n, id_out *o) {
    int32_t *ids = mech_malloc(n * sizeof *ids), *rank = mech_malloc(n * sizeof *rank);
    int32_t *mid = mech_malloc(n * sizeof *mid);
    uint32_t *next = mech_malloc(n * sizeof *next), *prev = mech_malloc(n * sizeof *prev);
    uint64_t *heap = mech_malloc(3 * n * sizeof *heap);
    size_t hn = 0;
    int ok = ids && rank && mid && next && prev && heap && n < UINT32_MAX;
    if (ok) {
        for (size_t k = 0; k < n; k++) {
            ids[k] = t->byte_id[p[k]];
            next[k] = (uint32_t)(k + 1);
            prev[k] = (uint32_t)(k - 1); // wraps for k = 0: "none"
        }
        for (size_t k = 0; k + 1 < n; k++) {
            pair_rank(t, ids[k], ids[k + 1], &rank[k], &mid[k]);
            if (rank[k] != NO_RANK) heap_push(heap, &hn, (uint64_t)rank[k] << 32 | k);
        }
        rank[n - 1] = NO_RANK;
        while (hn) {
            uint64_t top = heap_pop(heap, &hn);
            uint32_t k = (uint32_t)top;
            int32_t r = (int32_t)(top >> 32);
            if (ids[k] < 0 || rank[k] != r) continue; // stale
            uint32_t q = next[k];
            ids[k] = mid[k];
            ids[q] = -1;
            next[k] = next[q];
            if (next[k] < n) prev[next[k]] = k;
            if (next[k] < n) {
                pair_rank(t, ids[k], ids[next[k]], &rank[k], &mid[k]);
                if (rank[k] != NO_RANK) heap_push(heap, &hn, (uint64_t)rank[k] << 32 | k);
            } else {
                rank[k] = NO_RANK;
            }
            uint32_t pk = prev[k];
            if (pk < n) {
                pair_rank(t, ids[pk], ids[k], &rank[pk], &mid[pk]);
                if (rank[pk] != NO_RANK) heap_push(heap, &hn, (uint64_t)rank[pk] << 32 | pk);
            }
        }
        for (size_t k = 0; k < n; k = next[k]) out_push(o, ids[k]);
    }
    mech_free(ids);
    mech_free(rank);
    mech_free(mid);
    mech_free(next);
    mech_free(prev);
    mech_free(heap);
    return ok;
}

static int encode_piece(const mech_tokenizer *t, const unsigned char *p, size_t n, id_out *o) {
    if (n == 1) {
        out_push(o, t->byte_id[p[0]]);
        return 1;
    }
    int32_t id = tok_find(t, p, n);
    if (id >= 0 && t->rank[id] != NO_RANK) {
        out_push(o, id);
        return 1;
    }
    size_t lim = mech_tokenizer_heap_min < SIMPLE_MAX ? mech_tokenizer_heap_min : SIMPLE_MAX;
    if (n < lim) {
        bpe_linear(t, p, n, o);
        return 1;
    }
    return bpe_heap(t, p, n, o);
}

static int encode_ordinary(const mech_tokenizer *t, const unsigned char *s, size_t len, id_out *o) {
    size_t i = 0;
    while (i < len) {
        size_t e = piece_end(s, i, len);
        if (!encode_piece(t, s + i, e - i, o) || o->oom) return 0;
        i = e;
    }
    return 1;
}

// Id of the longest special token at s[0..n), or -1.
static int32_t special_at(const mech_tokenizer *t, const unsigned char *s, size_t n) {
    int32_t best = -1;
    size_t best_len = 0;
    for (size_t k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        size_t l = t->off[id + 1] - t->off[id];
        if (l <= n && l > best_len && memcmp(s, t->bytes + t->off[id], l) == 0) {
            best = id;
            best_len = l;
        }
    }
    return best;
}

mech_status mech_tokenizer_encode(const mech_tokenizer *t, const char *text, size_t len,
                                  int allow_special, int32_t **ids, size_t *n_ids, mech_err *err) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!t || !ids || !n_ids)
        return mech_err_set(err, MECH_ERR_ARG, "mech_tokenizer_encode: NULL argument");
    if (!text && len) return mech_err_set(err, MECH_ERR_ARG, "mech_tokenizer_encode: text is NULL");
    const unsigned char *s = (const unsigned char *)(text ? text : "");
    id_out o = {0};
    // Each token covers at least one byte; English averages about 4.
    o.cap = len / 3 + 16;
    o.ids = mech_malloc(o.cap * sizeof *o.ids);
    int ok = o.ids != NULL;
    if (ok && allow_special && t->n_special) {
        // Special tokens all start with "<|": split the text around them and
        // encode the text between as separate strings (tiktoken does too, so
        // "\s+(?!\S)" sees the end of the segment, not the special token).
        size_t i = 0, seg = 0;
        while (ok && i + 1 < len) {
            const unsigned char *hit = memmem(s + i, len - i, "<|", 2);
            if (!hit) break;
            size_t at = (size_t)(hit - s);
            int32_t id = special_at(t, hit, len - at);
            if (id < 0) {
                i = at + 1;
                continue;
            }
            ok = encode_ordinary(t, s + seg, at - seg, &o);
            out_push(&o, id);
            seg = i = at + (t->off[id + 1] - t->off[id]);
        }
        if (ok) ok = encode_ordinary(t, s + seg, len - seg, &o);
    } else if (ok) {
        ok = encode_ordinary(t, s, len, &o);
    }
    if (!ok || o.oom) {
        mech_free(o.ids);
        return mech_err_set(err, MECH_ERR_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
    }
    *ids = o.ids;
    *n_ids = o.n;
    return MECH_OK;
}

mech_status mech_tokenizer_decode(const mech_tokenizer *t, const int32_t *ids, size_t n_ids,
                                  char **text, size_t *len, mech_err *err) {
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!t || !text || (!ids && n_ids))
        return mech_err_set(err, MECH_ERR_ARG, "mech_tokenizer_decode: NULL argument");
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= t->n)
            return mech_err_set(err, MECH_ERR_RANGE,
                                "tokenizer: ids[%zu] = %d is not a token id; expected 0..%d", i,
                                ids[i], t->n - 1);
        total += t->off[ids[i] + 1] - t->off[ids[i]];
    }
    char *buf = mech_malloc(total + 1);
    if (!buf)
        return mech_err_set(err, MECH_ERR_NOMEM, "tokenizer: out of memory decoding %zu ids", n_ids);
    size_t o = 0;
    for (size_t i = 0; i < n_ids; i++) {
        size_t l = t->off[ids[i] + 1] - t->off[ids[i]];
        memcpy(buf + o, t->bytes + t->off[ids[i]], l);
        o += l;
    }
    buf[o] = 0;
    *text = buf;
    if (len) *len = o;
    return MECH_OK;
}
