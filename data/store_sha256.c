/*
** data/store_sha256.c: SHA-256 (FIPS 180-4) and the fast partial content
** hash of model files that the results store records with every run.
**
** Invariants: the hash input is exactly what data.h documents for
** mech_store_model_hash (size, first and last MiB, safetensors header), so
** a stored hash can be recomputed by any tool; see docs/schema.md.
*/
#include "data/data.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

// ---------------------------------------------------------------------------
// SHA-256

typedef struct sha256 {
    uint32_t h[8];
    uint64_t len; // bytes hashed so far
    unsigned char buf[64];
    size_t nbuf;
} sha256;

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(sha256 *c, const unsigned char *p) {
    uint32_t w[64], a[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(a, c->h, sizeof a);
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ror(a[4], 6) ^ ror(a[4], 11) ^ ror(a[4], 25);
        uint32_t ch = (a[4] & a[5]) ^ (~a[4] & a[6]);
        uint32_t t1 = a[7] + S1 + ch + K[i] + w[i];
        uint32_t S0 = ror(a[0], 2) ^ ror(a[0], 13) ^ ror(a[0], 22);
        uint32_t maj = (a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]);
        memmove(a + 1, a, 7 * sizeof *a);
        a[4] += t1;
        a[0] = t1 + S0 + maj;
    }
    for (int i = 0; i < 8; i++) c->h[i] += a[i];
}

static void sha256_init(sha256 *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->len = 0;
    c->nbuf = 0;
}

static void sha256_update(sha256 *c, const void *data, size_t n) {
    const unsigned char *p = data;
    c->len += n;
    while (n) {
        size_t k = 64 - c->nbuf < n ? 64 - c->nbuf : n;
        memcpy(c->buf + c->nbuf, p, k);
        c->nbuf += k, p += k, n -= k;
        if (c->nbuf == 64) sha256_block(c, c->buf), c->nbuf = 0;
    }
}

static void sha256_hex(sha256 *c, char hex[65]) {
    uint64_t bits = c->len * 8;
    unsigned char pad[72] = {0x80}, lenb[8];
    size_t np = (c->nbuf < 56 ? 56 : 120) - c->nbuf;
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_update(c, pad, np);
    sha256_update(c, lenb, 8);
    for (int i = 0; i < 8; i++) snprintf(hex + 8 * i, 9, "%08x", (unsigned)c->h[i]);
}

// Not public: SHA-256 of a buffer as hex, for the tests' known-answer check.
void mech_store_sha256_(const void *data, size_t n, char hex[65]) {
    sha256 c;
    sha256_init(&c);
    sha256_update(&c, data, n);
    sha256_hex(&c, hex);
}

// ---------------------------------------------------------------------------
// Model hash

#define HASH_SPAN (1u << 20)
#define HASH_MAX_HEADER (100u << 20)

// Hashes len bytes of f from off; 0 on success.
static int hash_range(sha256 *c, FILE *f, uint64_t off, uint64_t len, unsigned char *buf) {
    if (fseeko(f, (off_t)off, SEEK_SET)) return -1;
    while (len) {
        size_t k = len < HASH_SPAN ? (size_t)len : HASH_SPAN;
        if (fread(buf, 1, k, f) != k) return -1;
        sha256_update(c, buf, k);
        len -= k;
    }
    return 0;
}

mech_status mech_store_model_hash(const char *path, char hex[65]) {
    hex[0] = 0;
    if (!path) return MECH_ERR_IO;
    char *file = NULL;
    unsigned char *buf = NULL;
    FILE *f = NULL;
    struct stat sb;
    mech_status st = MECH_ERR_IO;
    if (stat(path, &sb)) return MECH_ERR_IO;
    if (S_ISDIR(sb.st_mode)) {
        // A Hugging Face model directory: the weights are model.safetensors.
        size_t n = strlen(path) + sizeof "/model.safetensors";
        if (!(file = mech_malloc(n))) return MECH_ERR_NOMEM;
        snprintf(file, n, "%s/model.safetensors", path);
        path = file;
    }
    if (!(f = fopen(path, "rb")) || fstat(fileno(f), &sb) || !S_ISREG(sb.st_mode)) goto done;
    if (!(buf = mech_malloc(HASH_SPAN))) {
        st = MECH_ERR_NOMEM;
        goto done;
    }
    uint64_t size = (uint64_t)sb.st_size, head = size < HASH_SPAN ? size : HASH_SPAN;
    unsigned char sz[8], hl[8];
    for (int i = 0; i < 8; i++) sz[i] = (unsigned char)(size >> (8 * i));
    sha256 c;
    sha256_init(&c);
    sha256_update(&c, sz, 8);
    if (hash_range(&c, f, 0, head, buf) || hash_range(&c, f, size - head, head, buf)) goto done;
    if (size >= 8) {
        if (fseeko(f, 0, SEEK_SET) || fread(hl, 1, 8, f) != 8) goto done;
        uint64_t n = 0;
        for (int i = 0; i < 8; i++) n |= (uint64_t)hl[i] << (8 * i);
        if (n <= HASH_MAX_HEADER && n <= size - 8 && hash_range(&c, f, 8, n, buf)) goto done;
    }
    sha256_hex(&c, hex);
    st = MECH_OK;
done:
    if (f) fclose(f);
    mech_free(buf);
    mech_free(file);
    return st;
}
