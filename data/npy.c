/*
** data/npy.c: float32 .npy files (read and write) and .npz archives (write),
** following numpy/lib/format.py and the PKWARE APPNOTE (ZIP, ZIP64).
**
** Invariants:
** - Files go through mech_outfile (core/file.c): a unique temporary file
**   renamed over path, so path is either the old file or the complete new one.
** - .npy: version 1.0 header, padded with spaces and ended by '\n' so that
**   magic + header is a multiple of 64 bytes (the data is 64-byte aligned).
** - .npz: members are stored (method 0), written in one pass: the CRC-32 is
**   computed over the in-memory array before its local header is written, so
**   no data descriptors are needed. Times are fixed at 1980-01-01 00:00 so
**   archives are reproducible. A size or offset >= 4 GiB - 1 goes into a
**   ZIP64 extra field (0xFFFFFFFF in the 32-bit slot), and the archive ends
**   with ZIP64 end records when the directory's offset, size or count
**   overflow the classic record.
** - Data on disk is little-endian; big-endian hosts byte-swap.
*/
#include "data/data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

// Sizes and offsets at or above this use ZIP64 records. Not static so that
// tests can lower it to exercise ZIP64 without writing 4 GiB; not part of
// the public API.
uint64_t mech_npz_zip64_limit_ = 0xFFFFFFFFu;

#define NPY_MAX_HEADER (1u << 20) // readers reject larger headers as corrupt

// ---------------------------------------------------------------------------
// Shared helpers

static int host_le(void) {
    const uint16_t one = 1;
    unsigned char c;
    memcpy(&c, &one, 1);
    return c == 1;
}

static void swap4(void *p, size_t n) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++, b += 4) {
        unsigned char t = b[0];
        b[0] = b[3], b[3] = t;
        t = b[1];
        b[1] = b[2], b[2] = t;
    }
}

// Validates ndim/shape and gives the element count.
static mech_status check_shape(const char *path, const char *name, int ndim, const int64_t *shape,
                               const void *data, uint64_t *count, mech_err *err) {
    const char *sep = name ? "': " : "";
    const char *pre = name ? "array '" : "";
    if (!name) name = "";
    if (ndim < 0 || ndim > MECH_MAX_DIMS)
        return mech_err_set(err, MECH_ERR_ARG, "%s: %s%s%sndim %d, expected 0..%d", path, pre, name,
                            sep, ndim, MECH_MAX_DIMS);
    if (ndim > 0 && !shape)
        return mech_err_set(err, MECH_ERR_ARG, "%s: %s%s%sshape is NULL", path, pre, name, sep);
    uint64_t c = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return mech_err_set(err, MECH_ERR_ARG, "%s: %s%s%sshape[%d] = %lld is negative", path,
                                pre, name, sep, i, (long long)shape[i]);
        uint64_t v = (uint64_t)shape[i];
        if (v && c > (UINT64_MAX / 4) / v)
            return mech_err_set(err, MECH_ERR_ARG, "%s: %s%s%sshape too large", path, pre, name,
                                sep);
        c *= v;
    }
    if (c > SIZE_MAX / 4)
        return mech_err_set(err, MECH_ERR_ARG, "%s: %s%s%sshape too large", path, pre, name, sep);
    if (c && !data)
        return mech_err_set(err, MECH_ERR_ARG, "%s: %s%s%sdata is NULL for %llu elements", path,
                            pre, name, sep, (unsigned long long)c);
    *count = c;
    return MECH_OK;
}

// Python's repr of the shape tuple: (), (5,), (2, 3).
static size_t shape_repr(char *out, size_t cap, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(out, cap, "(");
    for (int i = 0; i < ndim; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    o += (size_t)snprintf(out + o, cap - o, ndim == 1 ? ",)" : ")");
    return o;
}

// The complete .npy preamble (magic, version 1.0, length, dict, padding,
// '\n') into out; returns its length, a multiple of 64.
static size_t npy_header(unsigned char out[512], const char *descr, int ndim, const int64_t *shape) {
    char dims[256];
    shape_repr(dims, sizeof dims, ndim, shape);
    char dict[400];
    int dl = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      descr, dims);
    size_t total = (10 + (size_t)dl + 1 + 63) / 64 * 64;
    size_t hlen = total - 10;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (unsigned char)(hlen & 0xFF);
    out[9] = (unsigned char)(hlen >> 8);
    memcpy(out + 10, dict, (size_t)dl);
    memset(out + 10 + dl, ' ', hlen - (size_t)dl - 1);
    out[total - 1] = '\n';
    return total;
}

// Writes count floats little-endian to f (when f) and/or folds them into
// *crc (when crc). Returns 0 on a write error.
static int emit_floats(FILE *f, const float *d, uint64_t count, uLong *crc) {
    const size_t chunk = 1 << 16; // floats per step: bounded scratch, uInt-safe crc
    float *tmp = NULL;
    int le = host_le();
    if (!le) {
        tmp = mech_malloc(chunk * 4);
        if (!tmp) return 0;
    }
    int ok = 1;
    for (uint64_t i = 0; ok && i < count; i += chunk) {
        size_t m = (size_t)(count - i < chunk ? count - i : chunk);
        const void *p = d + i;
        if (!le) {
            memcpy(tmp, d + i, m * 4);
            swap4(tmp, m);
            p = tmp;
        }
        if (crc) *crc = crc32(*crc, p, (uInt)(m * 4));
        if (f && fwrite(p, 4, m, f) != m) ok = 0;
    }
    mech_free(tmp);
    return ok;
}

// ---------------------------------------------------------------------------
// .npy writing

mech_status mech_npy_write(const char *path, const float *data, int ndim, const int64_t *shape,
                           mech_err *err) {
    if (!path) return mech_err_set(err, MECH_ERR_ARG, "mech_npy_write: path is NULL");
    uint64_t count;
    mech_status st = check_shape(path, NULL, ndim, shape, data, &count, err);
    if (st) return st;
    unsigned char hdr[512];
    size_t hl = npy_header(hdr, "<f4", ndim, shape);
    mech_outfile o;
    if ((st = mech_outfile_open(&o, path, err))) return st;
    if (fwrite(hdr, 1, hl, o.f) != hl || !emit_floats(o.f, data, count, NULL)) {
        st = mech_err_set(err, MECH_ERR_IO, "%s: write failed: %s", path, strerror(errno ? errno : EIO));
        mech_outfile_abort(&o);
        return st;
    }
    return mech_outfile_commit(&o, err);
}

// ---------------------------------------------------------------------------
// .npy reading

typedef struct hparse {
    const char *s;
    size_t n, pos;
} hparse;

static void hp_ws(hparse *h) {
    while (h->pos < h->n && (h->s[h->pos] == ' ' || h->s[h->pos] == '\t' ||
                             h->s[h->pos] == '\n' || h->s[h->pos] == '\r'))
        h->pos++;
}

static int hp_eat(hparse *h, char c) {
    hp_ws(h);
    if (h->pos < h->n && h->s[h->pos] == c) {
        h->pos++;
        return 1;
    }
    return 0;
}

// string = "'" [^'\\]* "'" | '"' [^"\\]* '"'
static int hp_string(hparse *h, const char **s, size_t *len) {
    hp_ws(h);
    if (h->pos >= h->n || (h->s[h->pos] != '\'' && h->s[h->pos] != '"')) return 0;
    char q = h->s[h->pos++];
    size_t b = h->pos;
    while (h->pos < h->n && h->s[h->pos] != q && h->s[h->pos] != '\\') h->pos++;
    if (h->pos >= h->n || h->s[h->pos] != q) return 0;
    *s = h->s + b;
    *len = h->pos - b;
    h->pos++;
    return 1;
}

// int = [0-9]+ 'L'?   (Python 2 era numpy wrote 3L)
static int hp_int(hparse *h, int64_t *v) {
    hp_ws(h);
    if (h->pos >= h->n || h->s[h->pos] < '0' || h->s[h->pos] > '9') return 0;
    uint64_t x = 0;
    while (h->pos < h->n && h->s[h->pos] >= '0' && h->s[h->pos] <= '9') {
        unsigned d = (unsigned)(h->s[h->pos++] - '0');
        if (x > ((uint64_t)INT64_MAX - d) / 10) return 0;
        x = x * 10 + d;
    }
    if (h->pos < h->n && h->s[h->pos] == 'L') h->pos++;
    *v = (int64_t)x;
    return 1;
}

static int hp_word(hparse *h, const char *w) {
    hp_ws(h);
    size_t l = strlen(w);
    if (h->n - h->pos < l || memcmp(h->s + h->pos, w, l) != 0) return 0;
    h->pos += l;
    return 1;
}

static const char *descr_name(const char *d, size_t n) {
    static const struct {
        const char *descr, *name;
    } known[] = {
        {"<f8", "float64"}, {"<f2", "float16"}, {">f4", "big-endian float32"},
        {">f8", "big-endian float64"}, {"<i8", "int64"}, {"<i4", "int32"}, {"<i2", "int16"},
        {"|i1", "int8"}, {"|u1", "uint8"}, {"|b1", "bool"}, {"<u4", "uint32"},
        {"<c8", "complex64"}, {"<c16", "complex128"}, {"|O", "object"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i].descr) == n && memcmp(known[i].descr, d, n) == 0) return known[i].name;
    return "not float32";
}

// dict  = '{' (key ':' value (',' key ':' value)* ','?)? '}'
// value = string | 'True' | 'False' | tuple
// tuple = '(' (int (',' int)* ','?)? ')'
// Exactly the keys descr, fortran_order and shape, as numpy requires.
static mech_status parse_npy_header(const char *path, const char *text, size_t n, int *ndim,
                                    int64_t shape[MECH_MAX_DIMS], mech_err *err) {
    hparse h = {text, n, 0};
    int have_descr = 0, have_fo = 0, have_shape = 0;
    // Trim the trailing padding for messages.
    int shown = (int)n;
    while (shown > 0 && (text[shown - 1] == ' ' || text[shown - 1] == '\n')) shown--;
    if (shown > 200) shown = 200;
    const char *what = NULL;
    if (!hp_eat(&h, '{')) {
        what = "expected '{' opening the header dict";
        goto bad;
    }
    while (!hp_eat(&h, '}')) {
        const char *k;
        size_t kl;
        if (!hp_string(&h, &k, &kl)) {
            what = "expected a quoted key or '}'";
            goto bad;
        }
        if (!hp_eat(&h, ':')) {
            what = "expected ':' after a key";
            goto bad;
        }
        if (kl == 5 && memcmp(k, "descr", 5) == 0) {
            const char *d;
            size_t dl;
            if (!hp_string(&h, &d, &dl)) {
                hp_ws(&h);
                if (h.pos < h.n && h.s[h.pos] == '[')
                    return mech_err_set(err, MECH_ERR_FORMAT,
                                        "%s: structured dtype (descr is a list), expected '<f4' "
                                        "(float32, little-endian)",
                                        path);
                what = "expected a quoted string for 'descr'";
                goto bad;
            }
            if (!(dl == 3 && memcmp(d, "<f4", 3) == 0))
                return mech_err_set(err, MECH_ERR_FORMAT,
                                    "%s: dtype '%.*s' (%s), expected '<f4' (float32, "
                                    "little-endian); save with arr.astype('<f4')",
                                    path, (int)(dl > 32 ? 32 : dl), d, descr_name(d, dl));
            have_descr = 1;
        } else if (kl == 13 && memcmp(k, "fortran_order", 13) == 0) {
            if (hp_word(&h, "True"))
                return mech_err_set(err, MECH_ERR_FORMAT,
                                    "%s: fortran_order is True, expected False (C order); save "
                                    "np.ascontiguousarray(arr)",
                                    path);
            if (!hp_word(&h, "False")) {
                what = "expected True or False for 'fortran_order'";
                goto bad;
            }
            have_fo = 1;
        } else if (kl == 5 && memcmp(k, "shape", 5) == 0) {
            if (!hp_eat(&h, '(')) {
                what = "expected a tuple for 'shape'";
                goto bad;
            }
            int nd = 0;
            while (!hp_eat(&h, ')')) {
                int64_t v;
                if (!hp_int(&h, &v)) {
                    what = "expected a non-negative integer or ')' in 'shape'";
                    goto bad;
                }
                if (nd == MECH_MAX_DIMS)
                    return mech_err_set(err, MECH_ERR_FORMAT,
                                        "%s: shape has more than %d dimensions (header: %.*s)",
                                        path, MECH_MAX_DIMS, shown, text);
                shape[nd++] = v;
                if (!hp_eat(&h, ',')) {
                    if (!hp_eat(&h, ')')) {
                        what = "expected ',' or ')' in 'shape'";
                        goto bad;
                    }
                    break;
                }
            }
            *ndim = nd;
            have_shape = 1;
        } else {
            return mech_err_set(err, MECH_ERR_FORMAT,
                                "%s: unexpected key '%.*s' in the header, expected only 'descr', "
                                "'fortran_order' and 'shape'",
                                path, (int)(kl > 32 ? 32 : kl), k);
        }
        if (!hp_eat(&h, ',')) {
            if (!hp_eat(&h, '}')) {
                what = "expected ',' or '}' after a value";
                goto bad;
            }
            break;
        }
    }
    hp_ws(&h);
    if (h.pos != h.n) {
        what = "unexpected text after the header dict";
        goto bad;
    }
    if (!have_descr || !have_fo || !have_shape)
        return mech_err_set(err, MECH_ERR_FORMAT, "%s: header lacks '%s' (header: %.*s)", path,
                            !have_descr ? "descr" : !have_fo ? "fortran_order" : "shape", shown,
                            text);
    return MECH_OK;
bad:
    return mech_err_set(err, MECH_ERR_FORMAT, "%s: malformed header at byte %zu: %s (header: %.*s)",
                        path, h.pos, what, shown, text);
}

mech_status mech_npy_read(const char *path, float **data, int *ndim, int64_t shape[MECH_MAX_DIMS],
                          mech_err *err) {
    if (!path || !data || !ndim || !shape)
        return mech_err_set(err, MECH_ERR_ARG, "mech_npy_read: NULL argument");
    *data = NULL;
    *ndim = 0;
    mech_status st = MECH_OK;
    char *text = NULL;
    float *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return mech_err_set(err, MECH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = mech_err_set(err, MECH_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    unsigned char pre[12];
    size_t got = fread(pre, 1, sizeof pre, f);
    if (got < 6 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = mech_err_set(err, MECH_ERR_FORMAT,
                          "%s: not a .npy file: %s, expected the magic \\x93NUMPY", path,
                          got < 6 ? "file too short for the magic" : "wrong magic bytes");
        goto done;
    }
    if (got < 10) {
        st = mech_err_set(err, MECH_ERR_FORMAT,
                          "%s: truncated: %zu bytes, expected at least 10 (magic, version, header "
                          "length)",
                          path, got);
        goto done;
    }
    unsigned major = pre[6], minor = pre[7];
    uint64_t hlen, hstart;
    if (major == 1) {
        hlen = pre[8] | (unsigned)pre[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (got < 12) {
            st = mech_err_set(err, MECH_ERR_FORMAT,
                              "%s: truncated: %zu bytes, expected at least 12 for version %u.%u",
                              path, got, major, minor);
            goto done;
        }
        hlen = pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
        hstart = 12;
    } else {
        st = mech_err_set(err, MECH_ERR_FORMAT,
                          "%s: unsupported .npy format version %u.%u, expected 1.0, 2.0 or 3.0",
                          path, major, minor);
        goto done;
    }
    if (hlen > NPY_MAX_HEADER) {
        st = mech_err_set(err, MECH_ERR_FORMAT, "%s: header length %llu is implausibly large", path,
                          (unsigned long long)hlen);
        goto done;
    }
    if (hstart + hlen > fsize) {
        st = mech_err_set(err, MECH_ERR_FORMAT,
                          "%s: truncated header: %llu bytes declared, file has %llu after the "
                          "preamble",
                          path, (unsigned long long)hlen, (unsigned long long)(fsize - hstart));
        goto done;
    }
    text = mech_malloc((size_t)hlen + 1);
    if (!text) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fseek(f, (long)hstart, SEEK_SET) != 0 || fread(text, 1, (size_t)hlen, f) != hlen) {
        st = mech_err_set(err, MECH_ERR_IO, "%s: read error in the header", path);
        goto done;
    }
    text[hlen] = 0;
    int nd = 0;
    int64_t sh[MECH_MAX_DIMS] = {0};
    st = parse_npy_header(path, text, (size_t)hlen, &nd, sh, err);
    if (st) goto done;
    uint64_t count = 1;
    for (int i = 0; i < nd; i++) {
        uint64_t v = (uint64_t)sh[i];
        if (v && count > (UINT64_MAX / 4) / v) {
            st = mech_err_set(err, MECH_ERR_FORMAT, "%s: shape too large", path);
            goto done;
        }
        count *= v;
    }
    uint64_t have = fsize - hstart - hlen, want = count * 4;
    if (have != want) {
        char dims[256];
        shape_repr(dims, sizeof dims, nd, sh);
        st = mech_err_set(err, MECH_ERR_FORMAT,
                          "%s: %s data: %llu bytes, expected prod(shape %s) * 4 = %llu", path,
                          have < want ? "truncated" : "extra bytes after the", (unsigned long long)have,
                          dims, (unsigned long long)want);
        goto done;
    }
    if (want > SIZE_MAX) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "%s: too large for memory", path);
        goto done;
    }
    out = mech_malloc(want ? (size_t)want : 4);
    if (!out) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory for %llu bytes", path,
                          (unsigned long long)want);
        goto done;
    }
    if (count && fread(out, 4, (size_t)count, f) != count) {
        st = mech_err_set(err, MECH_ERR_IO, "%s: read error in the data", path);
        goto done;
    }
    if (!host_le()) swap4(out, (size_t)count);
    *data = out;
    out = NULL;
    *ndim = nd;
    memcpy(shape, sh, sizeof sh);
done:
    fclose(f);
    mech_free(text);
    mech_free(out);
    return st;
}

// ---------------------------------------------------------------------------
// .npz writing

typedef struct npz_entry {
    char *name; // "NAME.npy"
    uint32_t crc;
    uint64_t size, offset;
} npz_entry;

struct mech_npz {
    char *path;
    mech_outfile out; // out.f is the archive being written
    uint64_t pos; // bytes written so far
    npz_entry *e;
    size_t n, cap;
    int failed; // an I/O error happened: the archive can only be discarded
    int fail_errno;
};

static void put16(unsigned char **p, unsigned v) {
    (*p)[0] = (unsigned char)v, (*p)[1] = (unsigned char)(v >> 8);
    *p += 2;
}

static void put32(unsigned char **p, uint32_t v) {
    for (int i = 0; i < 4; i++) (*p)[i] = (unsigned char)(v >> (8 * i));
    *p += 4;
}

static void put64(unsigned char **p, uint64_t v) {
    for (int i = 0; i < 8; i++) (*p)[i] = (unsigned char)(v >> (8 * i));
    *p += 8;
}

static int zip_write(mech_npz *z, const void *b, size_t n) {
    if (z->failed) return 0;
    if (n && fwrite(b, 1, n, z->out.f) != n) {
        z->failed = 1;
        z->fail_errno = errno ? errno : EIO;
        return 0;
    }
    z->pos += n;
    return 1;
}

static int utf8_flag(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 0x800; // general purpose bit 11: UTF-8 name
    return 0;
}

#define DOS_TIME 0      // 00:00:00
#define DOS_DATE 0x0021 // 1980-01-01

static void npz_free(mech_npz *z) {
    for (size_t i = 0; i < z->n; i++) mech_free(z->e[i].name);
    mech_free(z->e);
    mech_free(z->path);
    mech_free(z);
}

mech_status mech_npz_create(const char *path, mech_npz **out, mech_err *err) {
    if (!out) return mech_err_set(err, MECH_ERR_ARG, "mech_npz_create: out is NULL");
    *out = NULL;
    if (!path) return mech_err_set(err, MECH_ERR_ARG, "mech_npz_create: path is NULL");
    mech_npz *z = mech_calloc(1, sizeof *z);
    if (!z) return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
    z->path = mech_strdup(path);
    if (!z->path) {
        npz_free(z);
        return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
    }
    mech_status st = mech_outfile_open(&z->out, path, err);
    if (st) {
        npz_free(z);
        return st;
    }
    *out = z;
    return MECH_OK;
}

// Appends a member of 4-byte little-endian words: wpe words per element
// (float32 and int32: 1; '<Uw' strings: w UTF-32 code units).
static mech_status npz_add(mech_npz *z, const char *name, const char *descr, const void *data, int wpe,
                           int ndim, const int64_t *shape, mech_err *err) {
    if (!z) return mech_err_set(err, MECH_ERR_ARG, "mech_npz_add: archive is NULL");
    if (z->failed)
        return mech_err_set(err, MECH_ERR_IO, "%s: an earlier write failed: %s", z->path,
                            strerror(z->fail_errno));
    if (!name || !*name)
        return mech_err_set(err, MECH_ERR_ARG, "%s: array name is empty", z->path);
    size_t nl = strlen(name);
    if (nl + 4 > 0xFFFF)
        return mech_err_set(err, MECH_ERR_ARG, "%s: array '%.40s...': name too long", z->path, name);
    for (size_t i = 0; i < z->n; i++)
        if (strlen(z->e[i].name) == nl + 4 && memcmp(z->e[i].name, name, nl) == 0)
            return mech_err_set(err, MECH_ERR_ARG, "%s: array '%s': name added twice", z->path,
                                name);
    uint64_t count;
    mech_status st = check_shape(z->path, name, ndim, shape, data, &count, err);
    if (st) return st;
    if (count > UINT64_MAX / 4 / (uint64_t)wpe)
        return mech_err_set(err, MECH_ERR_ARG, "%s: array '%s': shape too large", z->path, name);
    count *= (uint64_t)wpe;
    if (z->n == z->cap) {
        size_t cap = z->cap ? z->cap * 2 : 16;
        npz_entry *e = mech_realloc(z->e, cap * sizeof *e);
        if (!e) return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", z->path);
        z->e = e;
        z->cap = cap;
    }
    char *member = mech_malloc(nl + 5);
    if (!member) return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", z->path);
    memcpy(member, name, nl);
    memcpy(member + nl, ".npy", 5);

    unsigned char npy[512];
    size_t hl = npy_header(npy, descr, ndim, shape);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, npy, (uInt)hl);
    emit_floats(NULL, (const float *)data, count, &crc);
    uint64_t size = hl + count * 4;
    int big = size >= mech_npz_zip64_limit_;

    unsigned char lh[30 + 20], *p = lh;
    put32(&p, 0x04034b50);
    put16(&p, big ? 45 : 20);
    put16(&p, (unsigned)utf8_flag(name));
    put16(&p, 0); // stored
    put16(&p, DOS_TIME);
    put16(&p, DOS_DATE);
    put32(&p, (uint32_t)crc);
    put32(&p, big ? 0xFFFFFFFFu : (uint32_t)size); // compressed
    put32(&p, big ? 0xFFFFFFFFu : (uint32_t)size); // uncompressed
    put16(&p, (unsigned)(nl + 4));
    put16(&p, big ? 20 : 0);
    unsigned char *extra = p;
    if (big) {
        put16(&extra, 0x0001);
        put16(&extra, 16);
        put64(&extra, size); // uncompressed first, as APPNOTE 4.5.3 orders them
        put64(&extra, size);
    }
    uint64_t offset = z->pos;
    int ok = zip_write(z, lh, 30) && zip_write(z, member, nl + 4) && zip_write(z, p, big ? 20 : 0) &&
             zip_write(z, npy, hl);
    if (ok && !emit_floats(z->out.f, (const float *)data, count, NULL)) {
        z->failed = 1;
        z->fail_errno = errno ? errno : EIO;
        ok = 0;
    }
    if (!ok) {
        mech_free(member);
        return mech_err_set(err, MECH_ERR_IO, "%s: array '%s': write failed: %s", z->path, name,
                            strerror(z->fail_errno));
    }
    z->pos += count * 4;
    z->e[z->n++] = (npz_entry){member, (uint32_t)crc, size, offset};
    return MECH_OK;
}

mech_status mech_npz_add(mech_npz *z, const char *name, const float *data, int ndim,
                         const int64_t *shape, mech_err *err) {
    return npz_add(z, name, "<f4", data, 1, ndim, shape, err);
}

mech_status mech_npz_add_i32(mech_npz *z, const char *name, const int32_t *data, int ndim,
                             const int64_t *shape, mech_err *err) {
    return npz_add(z, name, "<i4", data, 1, ndim, shape, err);
}

// One UTF-8 code point at s (n bytes left) into *cp; returns its length, or
// 1 with U+FFFD for a byte that starts no valid sequence.
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    int len = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    uint32_t c = len == 1 ? s[0] : len == 2 ? s[0] & 0x1Fu : len == 3 ? s[0] & 0x0Fu : s[0] & 0x07u;
    if (!len || (size_t)len > n) len = 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) len = 0;
        else c = c << 6 | (s[i] & 0x3Fu);
    }
    if (!len) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = c;
    return (size_t)len;
}

mech_status mech_npz_add_str(mech_npz *z, const char *name, const char *const *strs, int ndim,
                             const int64_t *shape, mech_err *err) {
    uint64_t count;
    mech_status st = check_shape(z ? z->path : "npz", name, ndim, shape, strs, &count, err);
    if (st) return st;
    size_t width = 1; // numpy has no '<U0'
    for (uint64_t i = 0; i < count; i++) {
        size_t w = 0, n = strlen(strs[i]);
        uint32_t cp;
        for (size_t k = 0; k < n; k += utf8_next((const unsigned char *)strs[i] + k, n - k, &cp)) w++;
        if (w > width) width = w;
    }
    if (width > 1u << 20 || count > SIZE_MAX / 4 / width)
        return mech_err_set(err, MECH_ERR_ARG, "%s: array '%s': strings too long", z ? z->path : "npz", name);
    uint32_t *u = mech_calloc(count * width + 1, sizeof *u);
    if (!u) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < count; i++) {
        size_t n = strlen(strs[i]), w = 0;
        for (size_t k = 0; k < n; w++) k += utf8_next((const unsigned char *)strs[i] + k, n - k, &u[i * width + w]);
    }
    char descr[32];
    snprintf(descr, sizeof descr, "<U%zu", width);
    st = npz_add(z, name, descr, u, (int)width, ndim, shape, err);
    mech_free(u);
    return st;
}

mech_status mech_npz_close(mech_npz *z, mech_err *err) {
    if (!z) return mech_err_set(err, MECH_ERR_ARG, "mech_npz_close: archive is NULL");
    mech_status st = MECH_OK;
    uint64_t lim = mech_npz_zip64_limit_;
    uint64_t cd_start = z->pos;
    for (size_t i = 0; i < z->n && !z->failed; i++) {
        const npz_entry *e = &z->e[i];
        int bs = e->size >= lim, bo = e->offset >= lim;
        size_t xl = bs || bo ? 4 + 16 * (size_t)bs + 8 * (size_t)bo : 0;
        size_t nl = strlen(e->name);
        unsigned char ch[46 + 4 + 24], *p = ch;
        put32(&p, 0x02014b50);
        put16(&p, (3 << 8) | 45); // made by: Unix, spec 4.5
        put16(&p, bs || bo ? 45 : 20);
        put16(&p, (unsigned)utf8_flag(e->name));
        put16(&p, 0);
        put16(&p, DOS_TIME);
        put16(&p, DOS_DATE);
        put32(&p, e->crc);
        put32(&p, bs ? 0xFFFFFFFFu : (uint32_t)e->size);
        put32(&p, bs ? 0xFFFFFFFFu : (uint32_t)e->size);
        put16(&p, (unsigned)nl);
        put16(&p, (unsigned)xl);
        put16(&p, 0);                     // comment length
        put16(&p, 0);                     // disk number start
        put16(&p, 0);                     // internal attributes
        put32(&p, (uint32_t)0100644 << 16); // external: regular file, rw-r--r--
        put32(&p, bo ? 0xFFFFFFFFu : (uint32_t)e->offset);
        unsigned char *x = p;
        if (xl) {
            put16(&x, 0x0001);
            put16(&x, (unsigned)(xl - 4));
            if (bs) put64(&x, e->size), put64(&x, e->size);
            if (bo) put64(&x, e->offset);
        }
        if (zip_write(z, ch, 46)) zip_write(z, e->name, nl);
        zip_write(z, p, xl);
    }
    uint64_t cd_size = z->pos - cd_start;
    int big = z->n >= 0xFFFF || cd_size >= lim || cd_start >= lim;
    if (big && !z->failed) {
        uint64_t eocd64 = z->pos;
        unsigned char r[56 + 20], *p = r;
        put32(&p, 0x06064b50);
        put64(&p, 44); // size of the rest of this record
        put16(&p, (3 << 8) | 45);
        put16(&p, 45);
        put32(&p, 0); // this disk
        put32(&p, 0); // disk with the directory
        put64(&p, z->n);
        put64(&p, z->n);
        put64(&p, cd_size);
        put64(&p, cd_start);
        put32(&p, 0x07064b50); // locator
        put32(&p, 0);
        put64(&p, eocd64);
        put32(&p, 1); // total disks
        zip_write(z, r, sizeof r);
    }
    if (!z->failed) {
        unsigned char r[22], *p = r;
        unsigned cnt = z->n >= 0xFFFF ? 0xFFFF : (unsigned)z->n;
        put32(&p, 0x06054b50);
        put16(&p, 0);
        put16(&p, 0);
        put16(&p, cnt);
        put16(&p, cnt);
        put32(&p, cd_size >= lim ? 0xFFFFFFFFu : (uint32_t)cd_size);
        put32(&p, cd_start >= lim ? 0xFFFFFFFFu : (uint32_t)cd_start);
        put16(&p, 0); // comment length
        zip_write(z, r, sizeof r);
    }
    if (z->failed) {
        mech_outfile_abort(&z->out);
        st = mech_err_set(err, MECH_ERR_IO, "%s: write failed: %s", z->path, strerror(z->fail_errno));
    } else {
        st = mech_outfile_commit(&z->out, err);
    }
    npz_free(z);
    return st;
}

void mech_npz_abort(mech_npz *z) {
    if (!z) return;
    mech_outfile_abort(&z->out);
    npz_free(z);
}
