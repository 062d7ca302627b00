/*
** core/core.h: mech's core: errors, buffers, JSON, safetensors, the GPT-2
** tokenizer, matrix kernels, the model and its forward pass with hooks.
**
** Worked example: load a model, cache one activation, overwrite another.
**
**   mech_err err = {0};
**   mech_model *m;
**   if (mech_model_load("gpt2/", &m, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
**   mech_run *run = mech_run_new(m, 1, 3, &err);           // B=1, T=3
**   mech_run_cache(run, "blocks.*.attn.hook_pattern");      // keep every pattern
**   mech_run_hook(run, "blocks.0.hook_mlp_out", zero_fn, NULL);  // zero_fn(t, pt, user) writes t->data
**   int32_t ids[3] = {15496, 995, 0};
**   if (mech_run_forward(run, ids, &err)) ...;
**   const mech_tensor *p = mech_run_get(run, "blocks.1.attn.hook_pattern"); // [B, NH, T, T]
**   const float *logits = mech_run_logits(run);             // [B, T, V]
**   mech_run_free(run); mech_model_free(m);
**
** Ownership: x_new/x_load return heap objects freed by x_free (x_free(NULL)
** is a no-op). Pointers returned by getters are borrowed from their owner and
** live until it is freed or, for run activations, until the next forward.
** The library never prints and never exits: it returns a mech_status and,
** when the caller passes one, fills a mech_err with a message that names the
** file, tensor or field involved.
*/
#ifndef MECH_CORE_H
#define MECH_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MECH_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MECH_PRINTF(a, b)
#endif

// ---------------------------------------------------------------------------
// Errors (core/err.c)

typedef enum mech_status {
    MECH_OK = 0,
    MECH_ERR_NOMEM,     // out of memory
    MECH_ERR_IO,        // file could not be opened, read, written or mapped
    MECH_ERR_FORMAT,    // malformed file (safetensors, JSON, vocab, npy)
    MECH_ERR_SHAPE,     // tensor shape does not match what the config expects
    MECH_ERR_PARSE,     // malformed source text (RASP, specs)
    MECH_ERR_TYPE,      // value of the wrong kind
    MECH_ERR_DB,        // results database error
    MECH_ERR_RANGE,     // index or value out of range (token id, layer, T)
    MECH_ERR_CANCELLED, // a hook or the user asked to stop
    MECH_ERR_ARG,       // invalid argument from the caller
    MECH_ERR_COUNT_
} mech_status;

typedef struct mech_err {
    mech_status code;
    char msg[1024];
} mech_err;

const char *mech_strerror(mech_status code);

// Sets err (if not NULL) to code and the formatted message; returns code.
mech_status mech_err_set(mech_err *err, mech_status code, const char *fmt, ...) MECH_PRINTF(3, 4);

// Allocation wrappers: all library allocation goes through these.
void *mech_malloc(size_t n);
void *mech_calloc(size_t n, size_t size);
void *mech_realloc(void *p, size_t n);
void mech_free(void *p);
char *mech_strdup(const char *s);
// Allocates n bytes aligned to 64 (for SIMD); free with mech_free_aligned.
void *mech_malloc_aligned(size_t n);
void mech_free_aligned(void *p);

// Reads a whole file into a NUL-terminated heap buffer (*out, owned; *len
// excludes the NUL).
mech_status mech_read_file(const char *path, char **out, size_t *len, mech_err *err);

// ---------------------------------------------------------------------------
// Growable byte buffer (core/buf.c)

typedef struct mech_buf {
    char *data; // always NUL-terminated when len > 0 or after any append
    size_t len;
    size_t cap;
    int oom; // set once an append failed; later appends are ignored
} mech_buf;

void mech_buf_append(mech_buf *b, const void *data, size_t n);
void mech_buf_puts(mech_buf *b, const char *s);
void mech_buf_printf(mech_buf *b, const char *fmt, ...) MECH_PRINTF(2, 3);
// Appends s[0..n) as a JSON string literal with quotes and escapes; bytes
// that are not valid UTF-8 become \u00XX of the byte.
void mech_buf_json_string(mech_buf *b, const char *s, size_t n);
void mech_buf_free(mech_buf *b);

// ---------------------------------------------------------------------------
// JSON (core/json.c): a small DOM parser, enough for safetensors headers,
// config.json, encoder.json and vocab.json.

typedef enum mech_json_type {
    MECH_JSON_NULL,
    MECH_JSON_BOOL,
    MECH_JSON_NUMBER,
    MECH_JSON_STRING,
    MECH_JSON_ARRAY,
    MECH_JSON_OBJECT
} mech_json_type;

typedef struct mech_json mech_json;
struct mech_json {
    mech_json_type type;
    int boolean;
    double num;
    int is_int;      // number was written without fraction or exponent
    int64_t inum;    // exact value when is_int (and it fits)
    char *str;       // STRING: decoded UTF-8, NUL-terminated (may hold NULs: see len)
    size_t len;      // STRING: byte length
    size_t n;        // ARRAY/OBJECT: number of items
    mech_json *items; // ARRAY/OBJECT: values
    char **keys;     // OBJECT: keys (NUL-terminated)
    size_t *key_lens;
};

// Parses text[0..len). On error the message gives the byte offset and what
// was expected. *out is owned by the caller (mech_json_free).
mech_status mech_json_parse(const char *text, size_t len, mech_json **out, mech_err *err);
void mech_json_free(mech_json *j);
// Object member by key, or NULL (also NULL when obj is not an object).
const mech_json *mech_json_get(const mech_json *obj, const char *key);

// ---------------------------------------------------------------------------
// Safetensors (core/safetensors.c)

typedef enum mech_dtype {
    MECH_DT_F32,
    MECH_DT_F16,
    MECH_DT_BF16,
    MECH_DT_F64,
    MECH_DT_I64,
    MECH_DT_I32,
    MECH_DT_I16,
    MECH_DT_I8,
    MECH_DT_U8,
    MECH_DT_BOOL,
    MECH_DT_COUNT_
} mech_dtype;

const char *mech_dtype_name(mech_dtype dt); // "F32", "F16", ...
size_t mech_dtype_size(mech_dtype dt);

#define MECH_MAX_DIMS 8

typedef struct mech_st_tensor {
    char *name;
    mech_dtype dtype;
    int ndim;
    int64_t shape[MECH_MAX_DIMS];
    const void *data; // borrowed: points into the file's mapping
    size_t nbytes;
} mech_st_tensor;

typedef struct mech_safetensors {
    char *path;
    void *map;       // read-only mapping of the whole file
    size_t map_len;
    size_t n;
    mech_st_tensor *tensors; // in header order
    size_t n_meta;           // __metadata__ string pairs
    char **meta_keys;
    char **meta_values;
} mech_safetensors;

// Maps path and validates the header completely (sizes, dtypes, shapes,
// offsets in range, contiguous and not overlapping). Errors name the file and
// the tensor or field at fault.
mech_status mech_safetensors_open(const char *path, mech_safetensors **out, mech_err *err);
void mech_safetensors_close(mech_safetensors *st);
const mech_st_tensor *mech_safetensors_find(const mech_safetensors *st, const char *name);
const char *mech_safetensors_meta(const mech_safetensors *st, const char *key); // or NULL

typedef struct mech_st_write {
    const char *name;
    mech_dtype dtype;
    int ndim;
    int64_t shape[MECH_MAX_DIMS];
    const void *data; // nbytes = prod(shape) * dtype size
} mech_st_write;

// Writes a safetensors file (header padded to 8 bytes) atomically: to
// path.tmp, then renamed. meta is n_meta key/value string pairs stored in
// __metadata__ (may be 0).
mech_status mech_safetensors_write(const char *path, const mech_st_write *tensors, size_t n,
                                   const char *const *meta_keys, const char *const *meta_values,
                                   size_t n_meta, mech_err *err);

// ---------------------------------------------------------------------------
// Numeric conversions (core/safetensors.c)

float mech_f16_to_f32(uint16_t h);
float mech_bf16_to_f32(uint16_t h);
uint16_t mech_f32_to_f16(float f);   // round to nearest even
uint16_t mech_f32_to_bf16(float f);  // round to nearest even

// ---------------------------------------------------------------------------
// Thread pool and matrix kernels (core/pool.c, core/matmul.c)

typedef struct mech_pool mech_pool;

// A pool of n threads (n <= 0: one per online CPU). The calling thread takes
// part, so n = 1 starts no thread.
mech_pool *mech_pool_new(int n);
void mech_pool_free(mech_pool *p);
int mech_pool_size(const mech_pool *p); // 1 for NULL
// Runs fn(ctx, i) for i in [0, n) spread over the pool; returns when all are
// done. With p NULL runs serially. Not reentrant: fn must not call back into
// the same pool.
void mech_pool_for(mech_pool *p, int n, void (*fn)(void *ctx, int i), void *ctx);

// out[m*ldo + n] = sum_k inp[m*ldi + k] * w[k*ldw + n] + (bias ? bias[n] : 0)
// for m < M, n < N. w is [K, N] (Hugging Face Conv1D layout).
// Multithreaded over pool (NULL: the calling thread only).
void mech_matmul(mech_pool *pool, float *out, int ldo, const float *inp, int ldi,
                 const float *w, int ldw, const float *bias, int M, int K, int N);
// Same with w transposed: w is [N, K], out = inp @ w^T + bias
// (the tied unembedding, q @ k^T).
void mech_matmul_nt(mech_pool *pool, float *out, int ldo, const float *inp, int ldi,
                    const float *w, int ldw, const float *bias, int M, int K, int N);
// Obviously correct versions, the reference the fast ones are tested against.
void mech_matmul_naive(float *out, int ldo, const float *inp, int ldi,
                       const float *w, int ldw, const float *bias, int M, int K, int N);
void mech_matmul_nt_naive(float *out, int ldo, const float *inp, int ldi,
                          const float *w, int ldw, const float *bias, int M, int K, int N);
// Which kernel runs on this CPU: "avx512", "avx2" or "portable".
const char *mech_matmul_kernel(void);

// ---------------------------------------------------------------------------
// GPT-2 tokenizer (core/tokenizer.c): byte-level BPE identical to OpenAI's
// "gpt2" encoding.

typedef struct mech_tokenizer mech_tokenizer;

// The GPT-2 vocabulary built into the library (data/gpt2/, embedded at build
// time): nothing is read from disk.
mech_status mech_tokenizer_gpt2(mech_tokenizer **out, mech_err *err);
// Loads encoder.json + vocab.bpe (OpenAI) or vocab.json + merges.txt (Hugging
// Face); the two layouts are the same data.
mech_status mech_tokenizer_load(const char *vocab_json_path, const char *merges_path,
                                mech_tokenizer **out, mech_err *err);
// Looks in dir for vocab.json + merges.txt, then encoder.json + vocab.bpe.
// Returns MECH_ERR_IO when neither pair is there.
mech_status mech_tokenizer_load_dir(const char *dir, mech_tokenizer **out, mech_err *err);
void mech_tokenizer_free(mech_tokenizer *tok);

// Encodes text[0..len) (any bytes; invalid UTF-8 is encoded byte-wise as
// tiktoken does). allow_special = 0 is tiktoken's encode_ordinary: special
// tokens such as <|endoftext|> are plain text. *ids is owned by the caller
// (mech_free).
mech_status mech_tokenizer_encode(const mech_tokenizer *tok, const char *text, size_t len,
                                  int allow_special, int32_t **ids, size_t *n_ids, mech_err *err);
// Decodes ids to raw bytes (*text owned, NUL-terminated, *len excludes it).
// Unknown ids give MECH_ERR_RANGE naming the position.
mech_status mech_tokenizer_decode(const mech_tokenizer *tok, const int32_t *ids, size_t n_ids,
                                  char **text, size_t *len, mech_err *err);
int mech_tokenizer_vocab_size(const mech_tokenizer *tok);
// Raw bytes of one token (borrowed), or NULL for an unknown id.
const char *mech_tokenizer_token(const mech_tokenizer *tok, int32_t id, size_t *len);
// Id of <|endoftext|> (50256 for GPT-2), or -1 when the vocabulary has none.
int32_t mech_tokenizer_eot(const mech_tokenizer *tok);

#ifdef __cplusplus
}
#endif
#endif
