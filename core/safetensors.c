/*
** core/safetensors.c: reading (mmap) and writing the safetensors format, and
** the f16/bf16 <-> f32 conversions.
**
** Format (https://github.com/huggingface/safetensors): an 8-byte little-endian
** header length N, N bytes of UTF-8 JSON, then the data section. The JSON
** maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
** (offsets relative to the data section) plus an optional "__metadata__"
** object of string -> string.
**
** Validation follows the reference Rust implementation: the header starts
** with '{', every entry is complete and consistent (end - begin ==
** prod(shape) * dtype size), and the tensors sorted by offset tile the data
** section exactly: no overlap, no gap, no trailing bytes. Extra fields in a
** tensor entry are ignored, as serde does. Beyond the reference, duplicate
** names and names holding a NUL byte are rejected.
**
** Tensor data pointers point into the read-only mapping and may be
** unaligned when a foreign writer did not pad the header; mech's writer pads
** the header with spaces to a multiple of 8 so the data starts 8-aligned.
*/
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER ((uint64_t)100 << 20) // larger headers are rejected as absurd

// ---------------------------------------------------------------------------
// Dtypes

static const struct {
    const char *name;
    size_t size;
} dtype_info[MECH_DT_COUNT_] = {
    [MECH_DT_F32] = {"F32", 4}, [MECH_DT_F16] = {"F16", 2}, [MECH_DT_BF16] = {"BF16", 2},
    [MECH_DT_F64] = {"F64", 8}, [MECH_DT_I64] = {"I64", 8}, [MECH_DT_I32] = {"I32", 4},
    [MECH_DT_I16] = {"I16", 2}, [MECH_DT_I8] = {"I8", 1},   [MECH_DT_U8] = {"U8", 1},
    [MECH_DT_BOOL] = {"BOOL", 1},
};

#define DTYPE_LIST "F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL"

const char *mech_dtype_name(mech_dtype dt) {
    if ((int)dt < 0 || dt >= MECH_DT_COUNT_) return "?";
    return dtype_info[dt].name;
}

size_t mech_dtype_size(mech_dtype dt) {
    if ((int)dt < 0 || dt >= MECH_DT_COUNT_) return 0;
    return dtype_info[dt].size;
}

static int dtype_from_name(const char *s, size_t len, mech_dtype *out) {
    for (int i = 0; i < MECH_DT_COUNT_; i++) {
        if (strlen(dtype_info[i].name) == len && memcmp(dtype_info[i].name, s, len) == 0) {
            *out = (mech_dtype)i;
            return 1;
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Conversions

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float mech_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1F, m = h & 0x3FF;
    if (e == 0x1F) return bits_f32(sign | 0x7F800000 | (m << 13)); // inf, NaN keeps payload
    if (e == 0) {
        if (m == 0) return bits_f32(sign);
        // Subnormal: m * 2^-24. Normalise so the leading 1 becomes implicit.
        e = 113;
        while (!(m & 0x400)) m <<= 1, e--;
        return bits_f32(sign | (e << 23) | ((m & 0x3FF) << 13));
    }
    return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

float mech_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t mech_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7FFFFFFF;
    if (x >= 0x7F800000) {
        if (x == 0x7F800000) return sign | 0x7C00;
        return (uint16_t)(sign | 0x7E00 | ((x >> 13) & 0x3FF)); // quiet NaN, top payload bits
    }
    // 65520 is halfway between 65504 (max half, odd mantissa) and 65536: ties
    // to even round it up to infinity.
    if (x >= 0x477FF000) return sign | 0x7C00;
    if (x < 0x38800000) { // below 2^-14: half subnormal or zero
        if (x < 0x33000000) return sign; // below 2^-25 (exactly 2^-25 ties to 0 below)
        uint32_t e = x >> 23, m = (x & 0x7FFFFF) | 0x800000;
        uint32_t shift = 126 - e; // 14..24: value in units of 2^-24 is m >> shift
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r); // r == 0x400 is the smallest normal, as it should be
    }
    uint32_t r = (x - 0x38000000) >> 13, rem = x & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++; // may carry into the exponent
    return (uint16_t)(sign | r);
}

uint16_t mech_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)((x >> 16) | 0x40); // quiet NaN
    x += 0x7FFF + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

// ---------------------------------------------------------------------------
// Reading

typedef struct name_ent {
    const char *name;
    size_t idx;
} name_ent;

typedef struct off_ent {
    uint64_t begin, end;
    size_t idx;
} off_ent;

typedef struct st_priv {
    mech_safetensors pub; // must stay first: close casts back
    name_ent *by_name;    // sorted by name for _find
    char *strings;        // one block holding every name, key and value
} st_priv;

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const name_ent *)a)->name, ((const name_ent *)b)->name);
}

static int cmp_off(const void *a, const void *b) {
    const off_ent *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static const char *json_kind(const mech_json *j) {
    switch (j->type) {
    case MECH_JSON_NULL: return "null";
    case MECH_JSON_BOOL: return "a boolean";
    case MECH_JSON_NUMBER: return "a number";
    case MECH_JSON_STRING: return "a string";
    case MECH_JSON_ARRAY: return "an array";
    case MECH_JSON_OBJECT: return "an object";
    }
    return "?";
}

// Describes a value that should have been a non-negative integer.
static void describe_value(char *out, size_t cap, const mech_json *d) {
    if (d->type != MECH_JSON_NUMBER) snprintf(out, cap, "%s", json_kind(d));
    else if (d->is_int) snprintf(out, cap, "%lld", (long long)d->inum);
    else snprintf(out, cap, "%g (not an integer in int64 range)", d->num);
}

// Formats an int64 list as "[a, b, c]" into out.
static void fmt_dims(char *out, size_t cap, const int64_t *d, int n) {
    size_t o = 0;
    o += (size_t)snprintf(out + o, cap - o, "[");
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (o < cap) snprintf(out + o, cap - o, "]");
}

// Validates one tensor entry and fills t (name excluded). data_len is the
// size of the data section.
static mech_status parse_entry(const char *path, const char *name, const mech_json *e,
                               uint64_t data_len, mech_st_tensor *t, uint64_t off[2],
                               mech_err *err) {
    if (e->type != MECH_JSON_OBJECT)
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "%s: tensor '%s': entry is %s, expected an object with dtype, "
                            "shape and data_offsets",
                            path, name, json_kind(e));
    const mech_json *dt = mech_json_get(e, "dtype");
    const mech_json *sh = mech_json_get(e, "shape");
    const mech_json *of = mech_json_get(e, "data_offsets");
    if (!dt)
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "%s: tensor '%s': missing field 'dtype' (expected one of " DTYPE_LIST
                            ")",
                            path, name);
    if (dt->type != MECH_JSON_STRING)
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "%s: tensor '%s': field 'dtype' is %s, expected a string (one of " DTYPE_LIST
                            ")",
                            path, name, json_kind(dt));
    if (!dtype_from_name(dt->str, dt->len, &t->dtype))
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "%s: tensor '%s': unknown dtype '%.40s', expected one of " DTYPE_LIST,
                            path, name, dt->str);
    if (!sh)
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "%s: tensor '%s': missing field 'shape' (expected an array of "
                            "non-negative integers)",
                            path, name);
    if (sh->type != MECH_JSON_ARRAY)
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "%s: tensor '%s': field 'shape' is %s, expected an array of "
                            "non-negative integers",
                            path, name, json_kind(sh));
    if (sh->n > MECH_MAX_DIMS)
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "%s: tensor '%s': field 'shape' has %zu dimensions, at most %d "
                            "supported",
                            path, name, sh->n, MECH_MAX_DIMS);
    t->ndim = (int)sh->n;
    // Element count with overflow detection; saturates at UINT64_MAX which
    // can never match a span inside a real file.
    uint64_t count = 1;
    int sat = 0;
    for (size_t i = 0; i < sh->n; i++) {
        const mech_json *d = &sh->items[i];
        if (d->type != MECH_JSON_NUMBER || !d->is_int || d->inum < 0) {
            char what[64];
            describe_value(what, sizeof what, d);
            return mech_err_set(err, MECH_ERR_FORMAT,
                                "%s: tensor '%s': shape[%zu] is %s, expected a non-negative "
                                "integer",
                                path, name, i, what);
        }
        t->shape[i] = d->inum;
        uint64_t v = (uint64_t)d->inum;
        if (v && count > UINT64_MAX / v) sat = 1;
        else count *= v;
    }
    char dims[256];
    fmt_dims(dims, sizeof dims, t->shape, t->ndim);
    if (!of)
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "%s: tensor '%s': missing field 'data_offsets' (expected [begin, "
                            "end])",
                            path, name);
    if (of->type != MECH_JSON_ARRAY || of->n != 2)
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "%s: tensor '%s': field 'data_offsets' is %s%s, expected [begin, end]",
                            path, name, json_kind(of),
                            of->type == MECH_JSON_ARRAY ? (of->n < 2 ? " with fewer than 2 items"
                                                                     : " with more than 2 items")
                                                        : "");
    for (int i = 0; i < 2; i++) {
        const mech_json *d = &of->items[i];
        if (d->type != MECH_JSON_NUMBER || !d->is_int || d->inum < 0) {
            char what[64];
            describe_value(what, sizeof what, d);
            return mech_err_set(err, MECH_ERR_FORMAT,
                                "%s: tensor '%s': data_offsets[%d] is %s, expected a "
                                "non-negative integer",
                                path, name, i, what);
        }
        off[i] = (uint64_t)d->inum;
    }
    if (off[0] > off[1])
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] has begin after end",
                            path, name, (unsigned long long)off[0], (unsigned long long)off[1]);
    if (off[1] > data_len)
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] end past the data section "
                            "(%llu bytes)",
                            path, name, (unsigned long long)off[0], (unsigned long long)off[1],
                            (unsigned long long)data_len);
    size_t es = dtype_info[t->dtype].size;
    uint64_t span = off[1] - off[0];
    if (sat || count > UINT64_MAX / es || count * es != span) {
        char want[64];
        if (sat || count > UINT64_MAX / es) snprintf(want, sizeof want, "more than 2^64");
        else snprintf(want, sizeof want, "%llu", (unsigned long long)(count * es));
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] span %llu bytes, expected "
                            "prod(shape %s) * %zu (%s) = %s",
                            path, name, (unsigned long long)off[0], (unsigned long long)off[1],
                            (unsigned long long)span, dims, es, dtype_info[t->dtype].name, want);
    }
    t->nbytes = (size_t)span;
    return MECH_OK;
}

mech_status mech_safetensors_open(const char *path, mech_safetensors **out, mech_err *err) {
    if (!out) return mech_err_set(err, MECH_ERR_ARG, "mech_safetensors_open: out is NULL");
    *out = NULL;
    if (!path) return mech_err_set(err, MECH_ERR_ARG, "mech_safetensors_open: path is NULL");
    mech_status st = MECH_OK;
    mech_json *hdr = NULL;
    off_ent *offs = NULL;
    st_priv *p = mech_calloc(1, sizeof *p);
    if (!p) return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
    mech_safetensors *s = &p->pub;
    s->path = mech_strdup(path);
    if (!s->path) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }

    // O_NONBLOCK: opening a FIFO must not hang; it is refused below.
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        st = mech_err_set(err, MECH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = mech_err_set(err, MECH_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        st = mech_err_set(err, MECH_ERR_IO,
                          "%s: is a directory, expected a .safetensors file (for a model "
                          "directory, open its model.safetensors)",
                          path);
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        st = mech_err_set(err, MECH_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    if (sb.st_size < 8) {
        close(fd);
        st = mech_err_set(err, MECH_ERR_FORMAT,
                          "%s: file is %lld bytes, expected at least 8 (the header length)%s", path,
                          (long long)sb.st_size, sb.st_size == 0 ? "; the file is empty" : "");
        goto fail;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        st = mech_err_set(err, MECH_ERR_IO, "%s: file too large to map", path);
        goto fail;
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        st = mech_err_set(err, MECH_ERR_IO, "%s: cannot map: %s", path, strerror(map_errno));
        goto fail;
    }
    s->map = map;
    s->map_len = (size_t)sb.st_size;

    const unsigned char *b = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | b[i];
    if (hlen > ST_MAX_HEADER) {
        st = mech_err_set(err, MECH_ERR_FORMAT,
                          "%s: header length %llu is absurdly large (limit %llu bytes); not a "
                          "safetensors file?",
                          path, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > s->map_len - 8) {
        st = mech_err_set(err, MECH_ERR_FORMAT,
                          "%s: header length %llu runs past the end of the file (%zu bytes, so "
                          "at most %zu); file truncated?",
                          path, (unsigned long long)hlen, s->map_len, s->map_len - 8);
        goto fail;
    }
    if (hlen < 2 || b[8] != '{') {
        st = mech_err_set(err, MECH_ERR_FORMAT,
                          "%s: header (%llu bytes at offset 8) does not start with '{', expected "
                          "a JSON object",
                          path, (unsigned long long)hlen);
        goto fail;
    }
    const char *data = (const char *)map + 8 + hlen;
    uint64_t data_len = s->map_len - 8 - hlen;
    mech_err jerr = {0};
    if (mech_json_parse((const char *)b + 8, (size_t)hlen, &hdr, &jerr)) {
        st = mech_err_set(err, jerr.code,
                          "%s: header (%llu bytes at file offset 8) is not valid JSON: %s", path,
                          (unsigned long long)hlen, jerr.msg);
        goto fail;
    }
    if (hdr->type != MECH_JSON_OBJECT) {
        st = mech_err_set(err, MECH_ERR_FORMAT, "%s: header is %s, expected a JSON object", path,
                          json_kind(hdr));
        goto fail;
    }

    // Count entries and string bytes so names and metadata share one block.
    const mech_json *meta = NULL;
    size_t n = 0, str_bytes = 0;
    for (size_t i = 0; i < hdr->n; i++) {
        if (strcmp(hdr->keys[i], "__metadata__") == 0 && hdr->key_lens[i] == 12) {
            if (meta) {
                st = mech_err_set(err, MECH_ERR_FORMAT,
                                  "%s: field '__metadata__' appears twice in the header", path);
                goto fail;
            }
            meta = &hdr->items[i];
            if (meta->type != MECH_JSON_OBJECT) {
                st = mech_err_set(err, MECH_ERR_FORMAT,
                                  "%s: field '__metadata__' is %s, expected an object of string "
                                  "-> string",
                                  path, json_kind(meta));
                goto fail;
            }
            for (size_t k = 0; k < meta->n; k++) {
                const mech_json *v = &meta->items[k];
                if (v->type != MECH_JSON_STRING) {
                    st = mech_err_set(err, MECH_ERR_FORMAT,
                                      "%s: field '__metadata__': key '%s' has %s value, expected "
                                      "a string",
                                      path, meta->keys[k], json_kind(v));
                    goto fail;
                }
                str_bytes += meta->key_lens[k] + 1 + v->len + 1;
            }
            continue;
        }
        if (strlen(hdr->keys[i]) != hdr->key_lens[i]) {
            st = mech_err_set(err, MECH_ERR_FORMAT,
                              "%s: tensor '%s...': name contains a NUL byte", path, hdr->keys[i]);
            goto fail;
        }
        n++;
        str_bytes += hdr->key_lens[i] + 1;
    }

    s->tensors = mech_calloc(n, sizeof *s->tensors);
    p->by_name = mech_calloc(n, sizeof *p->by_name);
    offs = mech_calloc(n, sizeof *offs);
    p->strings = mech_malloc(str_bytes);
    size_t nm = meta ? meta->n : 0;
    s->meta_keys = mech_calloc(nm, sizeof(char *));
    s->meta_values = mech_calloc(nm, sizeof(char *));
    if (!s->tensors || !p->by_name || !offs || !p->strings || !s->meta_keys || !s->meta_values) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory for %zu tensors", path, n);
        goto fail;
    }
    char *sp = p->strings;
    for (size_t k = 0; k < nm; k++) {
        memcpy(sp, meta->keys[k], meta->key_lens[k] + 1);
        s->meta_keys[k] = sp;
        sp += meta->key_lens[k] + 1;
        memcpy(sp, meta->items[k].str, meta->items[k].len + 1);
        s->meta_values[k] = sp;
        sp += meta->items[k].len + 1;
    }
    s->n_meta = nm;

    size_t t = 0;
    for (size_t i = 0; i < hdr->n; i++) {
        if (&hdr->items[i] == meta) continue;
        mech_st_tensor *ten = &s->tensors[t];
        memcpy(sp, hdr->keys[i], hdr->key_lens[i] + 1);
        ten->name = sp;
        sp += hdr->key_lens[i] + 1;
        uint64_t off[2] = {0, 0};
        st = parse_entry(path, ten->name, &hdr->items[i], data_len, ten, off, err);
        if (st) goto fail;
        ten->data = data + off[0];
        offs[t] = (off_ent){off[0], off[1], t};
        p->by_name[t] = (name_ent){ten->name, t};
        t++;
    }
    s->n = n;

    qsort(p->by_name, n, sizeof *p->by_name, cmp_name);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(p->by_name[i - 1].name, p->by_name[i].name) == 0) {
            st = mech_err_set(err, MECH_ERR_FORMAT,
                              "%s: tensor '%s': name appears more than once in the header", path,
                              p->by_name[i].name);
            goto fail;
        }
    }

    // Tile check: sorted by offset, each tensor must begin where the previous
    // one ended, and the last must end at the end of the file.
    qsort(offs, n, sizeof *offs, cmp_off);
    uint64_t at = 0;
    const char *prev = NULL;
    uint64_t prev_begin = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = s->tensors[offs[i].idx].name;
        if (offs[i].begin < at) {
            st = mech_err_set(err, MECH_ERR_FORMAT,
                              "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' "
                              "[%llu, %llu]",
                              path, name, (unsigned long long)offs[i].begin,
                              (unsigned long long)offs[i].end, prev, (unsigned long long)prev_begin,
                              (unsigned long long)at);
            goto fail;
        }
        if (offs[i].begin > at) {
            if (prev)
                st = mech_err_set(err, MECH_ERR_FORMAT,
                                  "%s: tensor '%s': data_offsets [%llu, %llu] leave a gap of %llu "
                                  "bytes after tensor '%s' (which ends at %llu); tensors must "
                                  "cover the data section contiguously",
                                  path, name, (unsigned long long)offs[i].begin,
                                  (unsigned long long)offs[i].end,
                                  (unsigned long long)(offs[i].begin - at), prev,
                                  (unsigned long long)at);
            else
                st = mech_err_set(err, MECH_ERR_FORMAT,
                                  "%s: tensor '%s': data_offsets [%llu, %llu] leave a gap of %llu "
                                  "bytes at the start of the data section; tensors must cover it "
                                  "contiguously from offset 0",
                                  path, name, (unsigned long long)offs[i].begin,
                                  (unsigned long long)offs[i].end,
                                  (unsigned long long)offs[i].begin);
            goto fail;
        }
        prev = name;
        prev_begin = offs[i].begin;
        at = offs[i].end;
    }
    if (at != data_len) {
        if (prev)
            st = mech_err_set(err, MECH_ERR_FORMAT,
                              "%s: data section is %llu bytes but the tensors cover only %llu "
                              "(last tensor '%s' ends at %llu): %llu trailing bytes",
                              path, (unsigned long long)data_len, (unsigned long long)at, prev,
                              (unsigned long long)at, (unsigned long long)(data_len - at));
        else
            st = mech_err_set(err, MECH_ERR_FORMAT,
                              "%s: data section is %llu bytes but the header lists no tensors",
                              path, (unsigned long long)data_len);
        goto fail;
    }

    mech_free(offs);
    mech_json_free(hdr);
    *out = s;
    return MECH_OK;

fail:
    mech_free(offs);
    mech_json_free(hdr);
    mech_safetensors_close(s);
    return st;
}

void mech_safetensors_close(mech_safetensors *s) {
    if (!s) return;
    st_priv *p = (st_priv *)s;
    if (s->map) munmap(s->map, s->map_len);
    mech_free(s->path);
    mech_free(s->tensors);
    mech_free(s->meta_keys);
    mech_free(s->meta_values);
    mech_free(p->by_name);
    mech_free(p->strings);
    mech_free(p);
}

const mech_st_tensor *mech_safetensors_find(const mech_safetensors *s, const char *name) {
    if (!s || !name) return NULL;
    const st_priv *p = (const st_priv *)s;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(p->by_name[mid].name, name);
        if (c == 0) return &s->tensors[p->by_name[mid].idx];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *mech_safetensors_meta(const mech_safetensors *s, const char *key) {
    if (!s || !key) return NULL;
    for (size_t i = 0; i < s->n_meta; i++)
        if (strcmp(s->meta_keys[i], key) == 0) return s->meta_values[i];
    return NULL;
}

// ---------------------------------------------------------------------------
// Writing

// 1 when s is valid UTF-8 (mech_buf_json_string would rewrite invalid bytes,
// so such names could not be read back unchanged).
static int utf8_ok(const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    for (size_t n = strlen(str), len; n; s += len, n -= len)
        if (!(len = mech_utf8_len(s, n))) return 0;
    return 1;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

mech_status mech_safetensors_write(const char *path, const mech_st_write *tensors, size_t n,
                                   const char *const *meta_keys, const char *const *meta_values,
                                   size_t n_meta, mech_err *err) {
    if (!path) return mech_err_set(err, MECH_ERR_ARG, "mech_safetensors_write: path is NULL");
    if (n && !tensors)
        return mech_err_set(err, MECH_ERR_ARG, "%s: %zu tensors but the array is NULL", path, n);
    if (n_meta && (!meta_keys || !meta_values))
        return mech_err_set(err, MECH_ERR_ARG, "%s: %zu metadata pairs but keys or values NULL",
                            path, n_meta);
    mech_status st = MECH_OK;
    mech_buf h = {0};
    const char **names = NULL;
    uint64_t *offs = NULL;
    size_t *order = NULL;
    size_t *nbytes = mech_calloc(n, sizeof *nbytes);
    if (!nbytes) return mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);

    for (size_t i = 0; i < n; i++) {
        const mech_st_write *t = &tensors[i];
        if (!t->name || !*t->name) {
            st = mech_err_set(err, MECH_ERR_ARG, "%s: tensor %zu has no name", path, i);
            goto fail;
        }
        if (strcmp(t->name, "__metadata__") == 0 || !utf8_ok(t->name)) {
            st = mech_err_set(err, MECH_ERR_ARG,
                              "%s: tensor '%s': name is reserved or not valid UTF-8", path,
                              t->name);
            goto fail;
        }
        if ((int)t->dtype < 0 || t->dtype >= MECH_DT_COUNT_) {
            st = mech_err_set(err, MECH_ERR_ARG, "%s: tensor '%s': invalid dtype %d", path,
                              t->name, (int)t->dtype);
            goto fail;
        }
        if (t->ndim < 0 || t->ndim > MECH_MAX_DIMS) {
            st = mech_err_set(err, MECH_ERR_ARG, "%s: tensor '%s': ndim %d, expected 0..%d", path,
                              t->name, t->ndim, MECH_MAX_DIMS);
            goto fail;
        }
        uint64_t count = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) {
                st = mech_err_set(err, MECH_ERR_ARG, "%s: tensor '%s': shape[%d] = %lld is negative",
                                  path, t->name, d, (long long)t->shape[d]);
                goto fail;
            }
            uint64_t v = (uint64_t)t->shape[d];
            if (v && count > (uint64_t)SIZE_MAX / v) {
                st = mech_err_set(err, MECH_ERR_ARG, "%s: tensor '%s': shape too large", path,
                                  t->name);
                goto fail;
            }
            count *= v;
        }
        size_t es = dtype_info[t->dtype].size;
        if (count > SIZE_MAX / es) {
            st = mech_err_set(err, MECH_ERR_ARG, "%s: tensor '%s': shape too large", path, t->name);
            goto fail;
        }
        nbytes[i] = (size_t)count * es;
        if (nbytes[i] && !t->data) {
            st = mech_err_set(err, MECH_ERR_ARG, "%s: tensor '%s': data is NULL", path, t->name);
            goto fail;
        }
    }
    names = mech_calloc(n, sizeof *names);
    if (!names) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) names[i] = tensors[i].name;
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            st = mech_err_set(err, MECH_ERR_ARG, "%s: tensor '%s': name given more than once", path,
                              names[i]);
            goto fail;
        }
    }

    // Data layout: back to back, by element size descending (8, 4, 2, 1),
    // each class in the order given. As the data section starts 8-aligned,
    // every tensor is then aligned to its element size, as in the Python
    // writer, and no padding between tensors is needed (the format forbids
    // gaps).
    offs = mech_calloc(n, sizeof *offs);
    order = mech_calloc(n, sizeof *order);
    if (!offs || !order) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    uint64_t off = 0;
    size_t no = 0;
    for (size_t es = 8; es >= 1; es /= 2) {
        for (size_t i = 0; i < n; i++) {
            if (dtype_info[tensors[i].dtype].size != es) continue;
            offs[i] = off;
            off += nbytes[i];
            order[no++] = i;
        }
    }

    // Header JSON: __metadata__ first, then the tensors in the order given.
    mech_buf_puts(&h, "{");
    if (n_meta) {
        mech_buf_puts(&h, "\"__metadata__\":{");
        for (size_t k = 0; k < n_meta; k++) {
            if (!meta_keys[k] || !meta_values[k]) {
                st = mech_err_set(err, MECH_ERR_ARG, "%s: metadata pair %zu has a NULL key or value",
                                  path, k);
                goto fail;
            }
            if (k) mech_buf_puts(&h, ",");
            mech_buf_json_string(&h, meta_keys[k], strlen(meta_keys[k]));
            mech_buf_puts(&h, ":");
            mech_buf_json_string(&h, meta_values[k], strlen(meta_values[k]));
        }
        mech_buf_puts(&h, "}");
    }
    for (size_t i = 0; i < n; i++) {
        const mech_st_write *t = &tensors[i];
        if (i || n_meta) mech_buf_puts(&h, ",");
        mech_buf_json_string(&h, t->name, strlen(t->name));
        mech_buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", dtype_info[t->dtype].name);
        for (int d = 0; d < t->ndim; d++)
            mech_buf_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        mech_buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offs[i],
                        (unsigned long long)(offs[i] + nbytes[i]));
    }
    mech_buf_puts(&h, "}");
    while (h.len % 8) mech_buf_puts(&h, " ");
    if (h.oom) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "%s: out of memory building the header", path);
        goto fail;
    }

    mech_outfile o;
    if ((st = mech_outfile_open(&o, path, err))) goto fail;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    int ok = fwrite(len8, 1, 8, o.f) == 8 && fwrite(h.data, 1, h.len, o.f) == h.len;
    for (size_t k = 0; ok && k < n; k++) {
        size_t i = order[k];
        if (nbytes[i]) ok = fwrite(tensors[i].data, 1, nbytes[i], o.f) == nbytes[i];
    }
    if (!ok) {
        st = mech_err_set(err, MECH_ERR_IO, "%s: write failed: %s", path, strerror(errno ? errno : EIO));
        mech_outfile_abort(&o);
        goto fail;
    }
    if ((st = mech_outfile_commit(&o, err))) goto fail;
    mech_free(names);
    mech_free(offs);
    mech_free(order);
    mech_free(nbytes);
    mech_buf_free(&h);
    return MECH_OK;

fail:
    mech_free(names);
    mech_free(offs);
    mech_free(order);
    mech_free(nbytes);
    mech_buf_free(&h);
    return st;
}
