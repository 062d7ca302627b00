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
#include <stdio.h>

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
// Test hook (allocation-failure injection): the n-th allocation through the
// wrappers above from now on fails, once (n >= 1); n = 0 disarms. Returns
// how many allocations the previous arming still had to go (0 when it
// fired or was off), so a test can fail allocation 1, 2, ... of an
// operation until one run no longer reaches the armed allocation.
long mech_alloc_fail_after(long n);

// Reads a whole file into a NUL-terminated heap buffer (*out, owned; *len
// excludes the NUL).
mech_status mech_read_file(const char *path, char **out, size_t *len, mech_err *err);

// An output file that is never left half-written (core/file.c): a regular
// file is written to a unique temporary file beside its target (symlinks are
// followed) and renamed over it by commit; a device or FIFO is written
// directly. Errors name the destination path.
typedef struct mech_outfile {
    FILE *f;      // write here between open and commit/abort
    char *path;   // as given
    char *target; // the file that commit replaces
    char *tmp;    // the temporary file, or NULL when writing directly
    int direct;
} mech_outfile;

mech_status mech_outfile_open(mech_outfile *o, const char *path, mech_err *err);
// Flushes, syncs and renames into place; frees o either way.
mech_status mech_outfile_commit(mech_outfile *o, mech_err *err);
// Discards the temporary file; frees o. Safe after a failed open.
void mech_outfile_abort(mech_outfile *o);

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
// Length (1..4) of the valid UTF-8 sequence at s[0..n), or 0 when it is not
// one (overlong, surrogate, past U+10FFFF, truncated). n must be >= 1.
size_t mech_utf8_len(const unsigned char *s, size_t n);

// ---------------------------------------------------------------------------
// Random numbers (core/rng.c)

// The next number of a SplitMix64 stream; *state is the stream (any value,
// e.g. the seed) and advances by one draw.
uint64_t mech_splitmix64(uint64_t *state);

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
    int is_int;      // written without fraction or exponent and fits in int64
    int64_t inum;    // the exact value when is_int
    char *str;       // STRING: decoded UTF-8, NUL-terminated (may hold NULs: see len)
    size_t len;      // STRING: byte length
    size_t n;        // ARRAY/OBJECT: number of items
    mech_json *items; // ARRAY/OBJECT: values
    char **keys;     // OBJECT: keys (NUL-terminated)
    size_t *key_lens;
};

// Parses text[0..len). On error the message gives line, column, byte offset
// and what was expected (no file name: callers prefix it). *out is owned by
// the caller and freed whole with mech_json_free (the tree is one arena, so
// only roots may be freed). Lone surrogates, invalid UTF-8 and nesting
// deeper than 512 are errors; with duplicate keys mech_json_get finds the first.
mech_status mech_json_parse(const char *text, size_t len, mech_json **out, mech_err *err);
void mech_json_free(mech_json *j);
// Object member by key, or NULL (also NULL when obj is not an object).
const mech_json *mech_json_get(const mech_json *obj, const char *key);
// Typed members, for reading stored parameters: the number (dflt when the
// member is missing or not a number), the boolean (0 likewise), the string
// (dflt likewise; borrowed from obj).
double mech_json_num(const mech_json *obj, const char *key, double dflt);
int mech_json_bool(const mech_json *obj, const char *key);
const char *mech_json_str(const mech_json *obj, const char *key, const char *dflt);

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
    const void *data; // borrowed: points into the file's mapping; may be
                      // unaligned in files whose writer did not pad the header
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
// path.tmp, then renamed. Header entries keep the given order; data is laid
// out largest element size first so every tensor is aligned. Duplicate
// names, names that are not UTF-8 and "__metadata__" are refused. meta is n_meta key/value string pairs stored in
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

// Seconds on the monotonic clock (for timings and progress lines).
double mech_now(void);

// A pool of n threads (n <= 0: one per online CPU). The calling thread takes
// part, so n = 1 starts no thread.
mech_pool *mech_pool_new(int n);
// Makes n <= 0 in later mech_pool_new calls mean n threads instead (the
// command line's --threads); n <= 0 restores one per online CPU.
void mech_pool_set_default(int n);
void mech_pool_free(mech_pool *p);
int mech_pool_size(const mech_pool *p); // 1 for NULL
// Runs fn(ctx, i) for i in [0, n) spread over the pool; returns when all are
// done. With p NULL runs serially. Not reentrant: a call made while the pool
// is busy (from fn, or from another thread) runs serially on its caller, so
// it is slow but correct.
void mech_pool_for(mech_pool *p, int n, void (*fn)(void *ctx, int i), void *ctx);
// Same, but fn also gets the index of the thread running it: 0 for the
// calling thread, 1..size-1 for the workers, or -1 when the pool was busy
// (a nested or concurrent call: it then runs serially on the calling thread).
// Two calls running at once never share an index >= 0.
void mech_pool_run(mech_pool *p, int n, void (*fn)(void *ctx, int i, int thread), void *ctx);
// A scratch buffer of at least bytes, 64-byte aligned, for the job running as
// thread (an index passed to a mech_pool_run job). Borrowed from the pool:
// valid until the next mech_pool_scratch call with the same index (the
// matmuls make such calls when given this pool) or mech_pool_free; contents
// are not preserved when it grows. NULL when p is NULL, thread < 0 or out of
// memory (the caller then allocates its own).
void *mech_pool_scratch(mech_pool *p, int thread, size_t bytes);
// A buffer of at least bytes, 64-byte aligned, lent to one borrower at a
// time until mech_pool_return (the matmuls' operand copies, outside jobs);
// kept by the pool for the next borrower. NULL when p is NULL, the buffer is
// lent already or out of memory (the caller then does without).
void *mech_pool_borrow(mech_pool *p, size_t bytes);
void mech_pool_return(mech_pool *p);

// out[m*ldo + n] = sum_k inp[m*ldi + k] * w[k*ldw + n] + (bias ? bias[n] : 0)
// for m < M, n < N. w is [K, N] (Hugging Face Conv1D layout).
// Multithreaded over pool (NULL: the calling thread only).
void mech_matmul(mech_pool *pool, float *out, int ldo, const float *inp, int ldi,
                 const float *w, int ldw, const float *bias, int M, int K, int N);
// dst[c*ldd + r] = src[r*lds + c] for r < rows, c < cols (16 x 16 blocks in
// registers where the CPU has AVX-512).
void mech_transpose(float *dst, size_t ldd, const float *src, size_t lds, int rows, int cols);
// The same with streaming stores where dst's lines are whole and aligned: for
// a destination read much later, which need not be fetched into the cache
// first only to be overwritten (the backward's dK and dV, 256 bytes a row).
void mech_transpose_stream(float *dst, size_t ldd, const float *src, size_t lds, int rows, int cols);
// out += inp @ w, as mech_matmul computes the product (each K block's sum
// added to out in order): the backward's accumulated attention gradients.
void mech_matmul_add(mech_pool *pool, float *out, int ldo, const float *inp, int ldi, const float *w, int ldw, int M,
                     int K, int N);
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
// For tests and benchmarks: mech_matmul (nt == 0) or mech_matmul_nt (nt != 0)
// with the kernel named ("avx512", "avx2", "portable"; NULL: the best one).
// Returns -1 without doing anything when this CPU or build lacks it, else 0.
int mech_matmul_with(const char *kernel, int nt, mech_pool *pool, float *out, int ldo,
                     const float *inp, int ldi, const float *w, int ldw, const float *bias, int M,
                     int K, int N);

// Vector math (core/vecmath.c), vectorised and dispatched at run time like
// the matmul. out == in is allowed everywhere.
//
// GELU, tanh approximation (GPT-2's gelu_new):
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), computed as
// x / (1 + exp(-2u)) so that both tails keep full relative precision.
// gelu(+inf) = +inf, gelu(-inf) = -0, NaN stays NaN.
void mech_vec_gelu_new(float *out, const float *in, size_t n);
// GELU, exact: 0.5 x (1 + erf(x / sqrt 2)) (as 0.5 x erfc(-x / sqrt 2)).
void mech_vec_gelu_erf(float *out, const float *in, size_t n);
// max(x, 0); NaN stays NaN.
void mech_vec_relu(float *out, const float *in, size_t n);
// In place: x[i] = exp(x[i] - max) / sum_j exp(x[j] - max). Entries equal to
// -inf become 0; when all are -inf (or n == 0) the row becomes all 0, as
// TransformerLens's NaN-to-zero does. Returns the max (-inf for such rows).
float mech_vec_softmax(float *x, size_t n);
// One row of n: out = (x - mean) / scale with scale = sqrt(var + eps), var
// the biased variance (TransformerLens's hook_normalized: no weight, no
// bias). *scale_out (if not NULL) gets the scale. Mean and variance are
// accumulated in double, two passes.
void mech_vec_layernorm(float *out, float *scale_out, const float *in, size_t n, float eps);
// For tests and benchmarks: the functions above as one kernel implements
// them ("avx512", "avx2", "portable"; NULL: the one the mech_vec_ functions
// use). NULL when this CPU or build lacks that kernel. Static, never freed.
typedef struct mech_vec_ops {
    const char *name;
    void (*gelu_new)(float *out, const float *in, size_t n);
    void (*gelu_erf)(float *out, const float *in, size_t n);
    void (*relu)(float *out, const float *in, size_t n);
    float (*softmax)(float *x, size_t n);
    void (*layernorm)(float *out, float *scale_out, const float *in, size_t n, float eps);
} mech_vec_ops;
const mech_vec_ops *mech_vec_ops_get(const char *kernel);

// ---------------------------------------------------------------------------
// GPT-2 tokenizer (core/tokenizer.c; sources: core/tokenizer_data.c):
// byte-level BPE identical to OpenAI's "gpt2" encoding.

typedef struct mech_tokenizer mech_tokenizer;

// The GPT-2 vocabulary built into the library (data/gpt2/, embedded at build
// time): nothing is read from disk.
mech_status mech_tokenizer_gpt2(mech_tokenizer **out, mech_err *err);
// Whether GPT-2's vocabulary can name a model's tokens: d_vocab of at least
// its 50,257. A smaller model without tokenizer files of its own (one mech
// trained on random ids) has no text: its tokens are ids.
int mech_tokenizer_gpt2_fits(int d_vocab);
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

// ---------------------------------------------------------------------------
// Model config (core/config.c), in the manner of TransformerLens's
// HookedTransformerConfig.

typedef enum mech_act { MECH_ACT_GELU_NEW, MECH_ACT_GELU, MECH_ACT_RELU } mech_act;
typedef enum mech_norm { MECH_NORM_LAYERNORM, MECH_NORM_NONE } mech_norm;

typedef struct mech_config {
    int n_layers;     // L
    int n_heads;      // NH
    int d_model;      // C
    int d_head;       // HS (NH*HS need not equal C)
    int d_mlp;        // 0 when attn_only
    int n_ctx;        // maxT: rows of the positional embedding
    int d_vocab;      // V
    mech_act act;
    mech_norm norm;
    int attn_only;    // no MLPs (and no ln2)
    int causal;       // 1: causal mask; 0: bidirectional attention
    float ln_eps;
    int tied_unembed; // unembedding = wte^T
    int unembed_bias; // separate unembedding has a bias [V]
} mech_config;

// GPT-2 small (124M) with random-weight friendly defaults; handy for tests
// and benchmarks.
mech_config mech_config_gpt2_small(void);
// Checks ranges and consistency; the message names the field.
mech_status mech_config_validate(const mech_config *cfg, mech_err *err);
// Reads a Hugging Face GPT-2 config.json (n_layer, n_head, n_embd, n_inner,
// n_positions/n_ctx, vocab_size, activation_function, layer_norm_epsilon,
// tie_word_embeddings) or mech's own keys (the names of mech_config's fields,
// as written by mech_config_to_json). Fields absent from j keep cfg's values.
mech_status mech_config_from_json(const mech_json *j, mech_config *cfg, mech_err *err);
// mech's own JSON form of cfg (every field), appended to b.
void mech_config_to_json(const mech_config *cfg, mech_buf *b);
// Parameter count of a model with this config.
int64_t mech_config_n_params(const mech_config *cfg);
const char *mech_act_name(mech_act a);

// ---------------------------------------------------------------------------
// Models (core/model.c): weights in Hugging Face GPT-2 layout, memory-mapped.

typedef struct mech_layer_weights {
    const float *ln1_w, *ln1_b;   // (C), (C)             NULL when norm = none
    const float *qkv_w;           // (C, 3*NH*HS)         Conv1D [in, out]
    const float *qkv_b;           // (3*NH*HS)
    const float *o_w;             // (NH*HS, C)
    const float *o_b;             // (C)
    const float *ln2_w, *ln2_b;   // (C), (C)             NULL when norm = none or attn_only
    const float *fc_w, *fc_b;     // (C, d_mlp), (d_mlp)  NULL when attn_only
    const float *proj_w, *proj_b; // (d_mlp, C), (C)
} mech_layer_weights;

typedef struct mech_model {
    mech_config cfg;
    const float *wte;       // (V, C)
    const float *wpe;       // (maxT, C)
    mech_layer_weights *layers; // [L]
    const float *lnf_w, *lnf_b; // (C)  NULL when norm = none
    const float *unembed;   // (V, C): wte when tied, else lm_head.weight
    const float *unembed_b; // (V) or NULL
    char *path;             // the safetensors file
    mech_safetensors *st;   // the mapping the weights point into (F32, aligned)
    float *owned;           // converted copies of F16/BF16/unaligned tensors, or
                            // every tensor of a model built in memory
    size_t owned_floats;    // length of owned
    mech_tokenizer *tok;    // tokenizer files found beside the model, or NULL
} mech_model;

// Loads path: a .safetensors file, or a directory holding model.safetensors
// (+ config.json, + vocab.json/merges.txt or encoder.json/vocab.bpe). Tensor
// names may carry a "transformer." prefix; attention mask buffers (attn.bias,
// attn.masked_bias) are ignored. The config comes from the file's
// __metadata__ "mech.config", else config.json beside it, else the shapes
// (n_heads = C/64 then). F32 tensors are used in place; F16/BF16 are
// converted once. *out is owned (mech_model_free).
mech_status mech_model_load(const char *path, mech_model **out, mech_err *err);
void mech_model_free(mech_model *m);
// __metadata__ value of the model file, or NULL.
const char *mech_model_meta(const mech_model *m, const char *key);
// Whether a model's tokens are text (GPT-2's when it has no tokenizer files):
// not when mech trained it on a task of ids (`mech train --task induction`,
// `rasp:FILE`; its "mech.train.task" says so), whose tokens are only ids.
int mech_model_reads_text(const mech_model *m);

// One tensor to save: Hugging Face name and shape.
typedef struct mech_model_tensor {
    char name[64];
    int ndim;
    int64_t shape[2];
    const float *data;
} mech_model_tensor;
// Lists the tensors of m under their Hugging Face names (no prefix); *out is
// owned (mech_free).
mech_status mech_model_tensors(const mech_model *m, mech_model_tensor **out, size_t *n, mech_err *err);
// Writes m as safetensors (F32, or F16/BF16 when dtype says so) with its config
// in __metadata__ "mech.config", plus extra metadata pairs.
mech_status mech_model_save(const mech_model *m, const char *path, mech_dtype dtype,
                            const char *const *meta_keys, const char *const *meta_values,
                            size_t n_meta, mech_err *err);
// A model with owned random weights (normal(0, 0.02) as GPT-2's init; LayerNorm
// weight 1, biases 0), deterministic in seed. For tests, demos and benchmarks.
mech_status mech_model_random(const mech_config *cfg, uint64_t seed, mech_model **out, mech_err *err);
// A model with owned weights all 0 but LayerNorm weights (1), to be filled in
// through mech_model_param (the RASP compiler builds its models this way).
mech_status mech_model_zeros(const mech_config *cfg, mech_model **out, mech_err *err);
// Writable pointer to a tensor by Hugging Face name (e.g.
// "h.0.attn.c_attn.weight"), or NULL when the name is unknown for this
// config. Tensors of a loaded model live in a private copy-on-write mapping
// of its file: writes change this model only, never the file.
float *mech_model_param(mech_model *m, const char *name);

// ---------------------------------------------------------------------------
// Activations and hooks (core/hooks.c)

// A non-owning view of one activation, contiguous, row-major.
typedef struct mech_tensor {
    float *data;
    int ndim;
    int64_t shape[5];
    const char *name; // TransformerLens hook name, e.g. "blocks.3.attn.hook_pattern"
} mech_tensor;

size_t mech_tensor_numel(const mech_tensor *t);

// A hook reads act and may overwrite act->data in place. layer is the block
// index (-1 for hook_embed, hook_pos_embed and ln_final.*). Return 0 to go on,
// non-zero to stop the run (mech_run_forward then returns MECH_ERR_CANCELLED).
typedef int (*mech_hook_fn)(mech_tensor *act, int layer, void *user);

// Every hook name of a model with this config, in firing order. With opt_in,
// includes hook_result, hook_q_input/k_input/v_input and hook_mlp_in.
// Returns the count; names[i] are written to *names (owned array of owned
// strings: free with mech_hook_names_free) when names is not NULL.
int mech_hook_names(const mech_config *cfg, int opt_in, char ***names);
void mech_hook_names_free(char **names, int n);
// The shape of hook `name` in a run of B x T (TransformerLens's order, e.g.
// [B, NH, T, T] for attn.hook_pattern): returns ndim, or -1 for no such hook.
int mech_hook_shape(const mech_config *cfg, const char *name, int B, int T, int64_t shape[MECH_MAX_DIMS]);
// Glob match with '*' (any run of characters, dots included) and '?'.
int mech_glob_match(const char *pattern, const char *name);

// ---------------------------------------------------------------------------
// Forward pass (core/forward.c)

typedef struct mech_run mech_run;

// A workspace for running m on batches of B sequences of T tokens, with its
// own thread pool (one thread per CPU). m is borrowed and must outlive it.
mech_status mech_run_new(const mech_model *m, int B, int T, mech_run **out, mech_err *err);
void mech_run_free(mech_run *r);
// Threads of the run's pool (n <= 0: one per CPU).
mech_status mech_run_set_threads(mech_run *r, int n, mech_err *err);

// Registers fn on every hook point whose name matches glob (exact name or
// glob). Hooks at one point fire in registration order. Registering an
// opt-in hook (hook_result, hook_q_input, ...) switches that computation on.
// MECH_ERR_ARG when the glob matches no hook point of this model.
mech_status mech_run_hook(mech_run *r, const char *glob, mech_hook_fn fn, void *user, mech_err *err);
// Keeps every matching activation after each forward (the value after all
// hooks at that point ran, i.e. what the model used downstream). Caching
// costs memory, not copies: the forward writes straight into the cache.
mech_status mech_run_cache(mech_run *r, const char *glob, mech_err *err);
// What a run of B x T caching the hooks matching globs will hold, in bytes:
// the weights (as float32), mech_run_new's activations, the logits and the
// cache. MECH_ERR_NOMEM (the message names each part and the limit) when the
// total exceeds 80 % of have (0: this machine's physical memory); *out is
// filled either way. Check before mech_run_new: with overcommit, a run too
// large is not refused by malloc but killed when the forward touches it.
typedef struct mech_run_bytes {
    double weights, activations, logits, cache, total, limit;
} mech_run_bytes;
mech_status mech_run_memory(const mech_model *m, int B, int T, const char *const *globs, int n_globs,
                            double have, mech_run_bytes *out, mech_err *err);
// Removes every hook and cache entry.
void mech_run_reset(mech_run *r);

typedef struct mech_run_opts {
    int start_layer;         // first block to run (0: from the tokens)
    const float *start_resid; // (B, T, C) resid_pre of start_layer; required when start_layer > 0
    int stop_layer;          // run blocks [start_layer, stop_layer); <= 0 or > L: all, then unembed
} mech_run_opts;

// Runs ids (B*T token ids, row-major; may be NULL when starting at a later
// block) through the model. Errors: MECH_ERR_RANGE for an id >= V,
// MECH_ERR_CANCELLED when a hook asked to stop.
mech_status mech_run_forward(mech_run *r, const int32_t *ids, mech_err *err);
mech_status mech_run_forward_ex(mech_run *r, const int32_t *ids, const mech_run_opts *opts, mech_err *err);

// (B, T, V) logits of the last full forward, or NULL when it stopped early.
// After mech_run_set_logits_rows(r, first, n): (B, n, V).
const float *mech_run_logits(const mech_run *r);
// Which logits the forward computes and keeps: positions first .. first+n-1
// of every sequence (the unembedding is a third of a long forward's work and
// the logits its largest buffer; a next-token prediction needs one row).
// first = MECH_LOGITS_LAST with n = 1: each sequence's last real token (its
// own under mech_run_set_mask). n = 0: all (B, T) rows, the default. Rows
// of padding read 0. In grad mode a metric may read only these rows
// (mech_run_backward refuses one that reads others, such as the loss over
// every position); the unembedding's backward then costs those rows only.
#define MECH_LOGITS_LAST (-1)
mech_status mech_run_set_logits_rows(mech_run *r, int first, int n, mech_err *err);
// (B, T, C): the residual stream where the last forward stopped (resid_pre of
// stop_layer, or resid_post of the last block).
const float *mech_run_resid(const mech_run *r);
// A cached activation by exact name, or NULL when it is not cached.
const mech_tensor *mech_run_get(const mech_run *r, const char *name);
// Every cached activation in firing order; *n set to the count. Borrowed.
const mech_tensor *mech_run_cached(const mech_run *r, size_t *n);
int mech_run_batch(const mech_run *r);
int mech_run_seq_len(const mech_run *r);

// Padded batches. Sequences of unequal lengths run together as B rows of T
// tokens with an attention mask (B, T): 1 for a real token, 0 for padding;
// each row's 1s are one contiguous run (padding on the right, on the left or
// both). As TransformerLens's attention_mask: keys at padding positions get
// zero attention; positions count from the row's first real token (a
// left-padded sequence sees the positional embeddings it would see alone);
// padding tokens get a positional embedding of 0, attend to nothing (pattern
// row 0, scores -inf, z 0) and read 0 in the logits and in every cached
// activation of shape (B, T, ...) after the forward. Every value at a real
// position equals, bit for bit, the value of that sequence run alone.
// The mask is copied and holds for every later forward; NULL removes it.
// MECH_ERR_ARG for a row without real tokens or with a gap.
mech_status mech_run_set_mask(mech_run *r, const uint8_t *mask, mech_err *err);
// Row b's real tokens are positions [*start, *start + *len) of T.
void mech_run_row(const mech_run *r, int b, int *start, int *len);

typedef enum mech_pad_side { MECH_PAD_RIGHT = 0, MECH_PAD_LEFT = 1 } mech_pad_side;
// Lays n sequences (seqs[i] of lens[i] >= 1 tokens) out as one batch of n
// rows of *T tokens, *T the longest length, the shorter ones filled with pad
// on side (TransformerLens's padding_side; right is its default). OUT: *ids
// (n, T) and *mask (n, T, 1 = real token), both owned (mech_free).
mech_status mech_batch_pad(const int32_t *const *seqs, const int *lens, int n, int32_t pad, mech_pad_side side,
                           int32_t **ids, uint8_t **mask, int *T, mech_err *err);

// ---------------------------------------------------------------------------
// Backward pass (core/backward.c)
//
// Exact gradients of a scalar metric of the logits with respect to every
// parameter and every hook point, through the forward pass above (every
// config it runs, padded batches included).
//
//   mech_run_enable_grad(run, MECH_GRAD_PARAMS, &err);   // before the forward
//   mech_run_cache_grad(run, "blocks.*.attn.hook_z", &err);
//   mech_run_forward(run, ids, &err);
//   mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = a, .wrong = w};
//   double value;
//   mech_run_backward(run, &mt, &value, &err);
//   const mech_tensor *g = mech_run_grad(run, "blocks.0.attn.hook_z"); // d value / d z
//   const mech_model *pg = mech_run_param_grads(run); // pg->layers[0].qkv_w = d value / d W_qkv
//
// Forward hooks and the gradient: what a forward hook leaves in a buffer is
// what the model used, so the local derivatives downstream are taken at that
// value; an element the hook changed (patching) is a constant: the gradient
// reaches it (mech_run_grad shows it) but goes no further, to what produced
// it. Elements a hook left bit-for-bit unchanged are not patched.

typedef enum mech_metric_kind {
    MECH_METRIC_LOSS,       // mean cross-entropy of the next token over positions
    MECH_METRIC_LOGIT_DIFF, // logit[answer] - logit[wrong] at pos, mean over rows
    MECH_METRIC_LOGPROB,    // log softmax[answer] at pos, mean over rows
    MECH_METRIC_KL,         // KL(softmax(ref) || softmax(logits)) at pos, mean over rows
    MECH_METRIC_COUNT_
} mech_metric_kind;

// pos: every real position of each row, averaged (LOGIT_DIFF, LOGPROB, KL).
#define MECH_POS_ALL (-2147483647 - 1)

typedef struct mech_metric {
    mech_metric_kind kind;
    // Position within each row's real tokens (0 = its first), negative from
    // the end (-1 = its last), or MECH_POS_ALL. Not used by LOSS.
    int pos;
    const int32_t *answer;   // (B) LOGIT_DIFF, LOGPROB: each row's token
    const int32_t *wrong;    // (B) LOGIT_DIFF
    const float *ref_logits; // (B, T, V) KL: the reference run's logits; (B, n, V)
                             // when this run computes n rows (mech_run_set_logits_rows)
    // LOSS: (B, T) the target of each position (-1: none), or NULL: the
    // next real token of the row (every position but the row's last).
    const int32_t *targets;
} mech_metric;

const char *mech_metric_name(mech_metric_kind k); // "loss", "logit_diff", "logprob", "kl"

enum {
    MECH_GRAD_ACTS = 1,   // gradients at hook points only
    MECH_GRAD_PARAMS = 3, // and at every parameter
};

// Grad mode for the later forwards: they keep what the backward needs (about
// 14 x B x T x d_model floats per block for GPT-2's shapes) and record what
// forward hooks change. flags: MECH_GRAD_ACTS or MECH_GRAD_PARAMS; 0 turns
// grad mode off and frees its memory.
mech_status mech_run_enable_grad(mech_run *r, int flags, mech_err *err);
// In grad mode the forward also keeps each block's attention pattern (B x
// n_heads x about T^2/2 floats, causal) so that the backward need not
// recompute it, when all blocks' together fit max_bytes (default 1 GiB);
// 0 keeps none. The gradients are the same either way, bit for bit.
// MECH_ERR_ARG when grad mode is off.
mech_status mech_run_set_grad_pattern_bytes(mech_run *r, size_t max_bytes, mech_err *err);
// Value of the metric on the last forward's logits. MECH_ERR_ARG (a field
// missing, or given where it does not apply), MECH_ERR_RANGE (a token or
// position out of range), MECH_ERR_ARG when the last forward stopped early.
mech_status mech_metric_eval(const mech_run *r, const mech_metric *mt, double *value, mech_err *err);
// Gradient of the metric through the last forward, which must have run in
// grad mode to the logits; *value (may be NULL) gets the metric. Fills the
// gradient caches, runs the backward hooks (last hook point first) and, with
// MECH_GRAD_PARAMS, the parameter gradients. A forward that started at a
// later block (mech_run_forward_ex) is differentiated down to that block's
// resid_pre; earlier parameters get 0. Errors as mech_metric_eval, plus
// MECH_ERR_CANCELLED when a backward hook asked to stop.
mech_status mech_run_backward(mech_run *r, const mech_metric *mt, double *value, mech_err *err);
// Backward hooks: fn gets the gradient at each matching point (act->data,
// the shape of the activation) and may overwrite it; what it leaves there is
// what flows on. Globs as mech_run_hook; opt-in points (hook_q_input, ...,
// hook_result, hook_mlp_in) make the backward compute the gradient there.
mech_status mech_run_grad_hook(mech_run *r, const char *glob, mech_hook_fn fn, void *user, mech_err *err);
// Keeps the gradient at every matching point (after its backward hooks).
mech_status mech_run_cache_grad(mech_run *r, const char *glob, mech_err *err);
// A cached gradient by exact hook name, or NULL. Borrowed until the next
// backward, mech_run_reset or mech_run_free.
const mech_tensor *mech_run_grad(const mech_run *r, const char *name);
// Every cached gradient in forward firing order; *n set to the count.
const mech_tensor *mech_run_grads_cached(const mech_run *r, size_t *n);
// Parameter gradients of the last backward (MECH_GRAD_PARAMS), as a model
// whose tensors are the gradients: the same layout and, through
// mech_model_tensors, the same names as the model's weights. NULL before.
// Borrowed from the run.
const mech_model *mech_run_param_grads(const mech_run *r);

// ---------------------------------------------------------------------------
// Training (core/optim.c, core/train.c)
//
// AdamW with decoupled weight decay, a linear warm-up then cosine decay of
// the learning rate, global-norm gradient clipping and gradient
// accumulation, over the exact gradients of the backward pass. Seeded and
// deterministic for a given thread count: a batch is a function of its
// index, and a checkpoint holds the weights, both Adam moments and the step,
// so a resumed run equals an uninterrupted one bit for bit.
//
//   mech_train_opts o;
//   mech_train_opts_default(&o);
//   o.B = 8, o.T = 64, o.steps = 1000, o.lr = 1e-3;
//   mech_trainer *t;
//   mech_trainer_new(init_model, &o, &t, &err);         // copies the weights
//   while (mech_trainer_steps_done(t) < o.steps)
//       mech_trainer_step(t, my_batches, my_ctx, &st, &err); // st.loss, st.lr, ...
//   mech_trainer_save(t, "ckpt.safetensors", NULL, NULL, 0, &err);
//   mech_trainer_free(t);

typedef struct mech_adamw {
    double beta1, beta2, eps, weight_decay;
} mech_adamw;

// beta1 0.9, beta2 0.95, eps 1e-8, weight decay 0.1.
void mech_adamw_defaults(mech_adamw *o);
// One AdamW update of n parameters p (in place) with gradient g * gscale and
// the first and second moments m, v (in place), at step t >= 1 (for the bias
// corrections) with learning rate lr:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd p)
// wd is o->weight_decay when decay, else 0. Float arithmetic.
void mech_adamw_update(float *p, const float *g, float gscale, float *m, float *v, size_t n, double lr,
                       const mech_adamw *o, int decay, int64_t t);
// The learning rate of step (0-based) of a run of total steps: linear warm-up
// lr (step + 1) / warmup over the first warmup steps, then cosine decay from
// lr at step warmup to min_lr at step total - 1 (min_lr after it).
double mech_lr_cosine(int64_t step, int64_t total, int64_t warmup, double lr, double min_lr);
// Global L2 norm of k gradient tensors (g[j] of n[j] floats), summed in
// double over fixed chunks in a fixed order (the same bits for any pool
// size); pool may be NULL. NaN when out of memory.
double mech_grad_norm(mech_pool *pool, float *const *g, const size_t *n, size_t k);
// The factor global-norm clipping multiplies the gradients by: clip / norm
// when clip > 0 and norm > clip, else 1.
double mech_clip_scale(double norm, double clip);

typedef struct mech_train_opts {
    int B, T;          // micro-batch: rows and positions
    int accum;         // micro-batches per optimizer step (gradient accumulation)
    int64_t steps;     // optimizer steps of the whole run (the schedule's length)
    int64_t warmup;    // warm-up steps
    double lr, min_lr; // peak and final learning rate
    mech_adamw adamw;
    double clip;       // global-norm clipping threshold; <= 0: off
    uint64_t seed;     // the run's seed (stored; batch sources read it)
    int threads;       // <= 0: the default pool size (stored in checkpoints: a resumed
                       // run uses the same count, so it stays bit for bit)
} mech_train_opts;

// B 8, T 64, accum 1, steps 1000, warmup 100, lr 1e-3, min_lr 1e-4,
// mech_adamw_defaults, clip 1, seed 1, threads 0.
void mech_train_opts_default(mech_train_opts *o);

// A batch source: fills micro-batch number index (step * accum + k, over the
// whole run) as ids (B, T) and loss targets (B, T; -1 where a position has
// none). It must depend on index only (and its own fixed settings), so that a
// resumed run sees the same batches as an uninterrupted one.
typedef mech_status (*mech_batch_fn)(void *user, int64_t index, int B, int T, int32_t *ids, int32_t *targets,
                                     mech_err *err);

typedef struct mech_trainer mech_trainer;

typedef struct mech_train_step {
    int64_t step;     // steps done after this one (1 for the first)
    double loss;      // mean cross-entropy over the step's micro-batches
    double grad_norm; // global norm of the averaged gradient, before clipping
    double lr;        // the learning rate used
} mech_train_step;

// A trainer at step 0 whose model is a copy of init's weights (init may be
// freed after). Weight decay applies to the matrices (every 2-D tensor:
// embeddings, attention, MLP, unembedding), not to biases and LayerNorm
// gains. MECH_ERR_ARG for options out of range.
mech_status mech_trainer_new(const mech_model *init, const mech_train_opts *o, mech_trainer **out, mech_err *err);
// Resumes the checkpoint at path (mech_trainer_save's two files): weights,
// Adam moments, step and options. o (may be NULL) replaces the stored
// options when given; an exact resume keeps them. MECH_ERR_FORMAT, naming
// the file and what is wrong, for a truncated, malformed or mismatched pair.
mech_status mech_trainer_load(const char *path, const mech_train_opts *o, mech_trainer **out, mech_err *err);
void mech_trainer_free(mech_trainer *t);
// One optimizer step: accum forwards and backwards of batches from fn,
// gradients averaged, clipped, one AdamW update.
mech_status mech_trainer_step(mech_trainer *t, mech_batch_fn fn, void *user, mech_train_step *out, mech_err *err);
// Writes the checkpoint: path is the model (F32 under the model file's
// names, loadable by mech_model_load, with the options and the step in
// __metadata__ "mech.train" plus the extra pairs given) and
// mech_trainer_optim_path(path) the optimizer state (tensors adam_m.NAME,
// adam_v.NAME, and the same step). Each file is replaced atomically.
mech_status mech_trainer_save(const mech_trainer *t, const char *path, const char *const *meta_keys,
                              const char *const *meta_values, size_t n_meta, mech_err *err);
// The optimizer file beside a checkpoint: "x.safetensors" -> "x.optim.safetensors",
// else path + ".optim". Owned (mech_free).
char *mech_trainer_optim_path(const char *path);
const mech_model *mech_trainer_model(const mech_trainer *t);
const mech_train_opts *mech_trainer_opts(const mech_trainer *t);
int64_t mech_trainer_steps_done(const mech_trainer *t);
// __metadata__ of the checkpoint a trainer was loaded from, or NULL.
const char *mech_trainer_meta(const mech_trainer *t, const char *key);
// For language bindings (core/capi.c; python/mech uses these)

// A process-wide cancellation flag: mech_run_forward checks it before every
// block and returns MECH_ERR_CANCELLED when set; pass mech_cancel_flag() as
// the cancel pointer of patch sweeps and ACDC. Set by mech_cancel_request
// (any thread) or by SIGINT while a call between mech_capi_call_begin(1) and
// mech_capi_call_end(1) runs. Cleared when the last such call ends.
void mech_cancel_request(void);
int mech_cancel_pending(void);
const volatile int *mech_cancel_flag(void);
// Brackets one binding call. catch_sigint (the main thread only): SIGINT
// sets the flag (and still reaches the previous handler) until the matching
// end. end returns the flag as it was: 0, 1 (SIGINT) or 2 (a request).
void mech_capi_call_begin(int catch_sigint);
int mech_capi_call_end(int catch_sigint);
// mech_run_forward bracketed by begin/end (*flag: what end returned).
mech_status mech_capi_forward(mech_run *r, const int32_t *ids, int catch_sigint, int *flag, mech_err *err);
// m->tok (the tokenizer found beside the model), or NULL.
const mech_tokenizer *mech_capi_model_tokenizer(const mech_model *m);
// m's config as mech_config_to_json writes it (owned: mech_free), or NULL.
char *mech_capi_model_config_json(const mech_model *m);
// mech_model_random on GPT-2 small's config overridden by the JSON object
// config_json (mech_config_from_json's keys).
mech_status mech_capi_model_random(const char *config_json, uint64_t seed, mech_model **out, mech_err *err);
// sizeof of a public struct a binding mirrors ("mech_err", "mech_tensor",
// "mech_buf", "mech_metric"), 0 for other names: the binding checks its layouts.
size_t mech_capi_sizeof(const char *type);
// LayerNorm backward outside a run (core/backward.c)

// The backward of rows of y = n * w + b, n = (x - mean) / s, for callers that
// differentiate a LayerNorm themselves (the tuned lens): the same kernel as
// mech_run_backward's. n (rows, C) and s (rows) are mech_vec_layernorm's out
// and scale for each row; w (C) the weight, or NULL for 1. dy (rows, C) is
// d/dy and is overwritten; dx (rows, C) gets d/dx.
void mech_layernorm_backward(float *dx, float *dy, const float *n, const float *s, const float *w, size_t rows,
                             size_t C);
// Backward kernels (core/vecmath.c)

// g[i] *= gelu_new'(x[i]), vectorised as the mech_vec_ functions are.
void mech_vec_gelu_new_grad(float *g, const float *x, size_t n);
// out = gelu_new(in) and d = gelu_new'(in) in one pass: out bit for bit
// mech_vec_gelu_new's, and g[i] * d[i] bit for bit mech_vec_gelu_new_grad's.
void mech_vec_gelu_new_fwd_grad(float *out, float *d, const float *in, size_t n);
// sum_i a[i] * b[i] (b NULL: sum_i a[i]) in double, vectorised (the
// summation order is the vector lanes', fixed for a CPU): the LayerNorm
// backward's row sums.
double mech_vec_dot_f64(const float *a, const float *b, size_t n);
// dst[i] = src[i] with streaming stores where the CPU has them: for data
// read again much later (not soon enough to be worth a place in the cache).
void mech_copy_stream(float *dst, const float *src, size_t n);
// x[i] /= d, each an IEEE division (as the scalar loop it replaces): the
// attention scores' 1/sqrt(d_head) in the forward and the backward.
void mech_vec_div(float *x, size_t n, float d);
// The backward of one softmax row p: ds[i] = p[i] (dp[i] - sum_j p[j] dp[j]),
// the sum in double, each ds in double rounded once.
void mech_vec_softmax_grad(float *ds, const float *p, const float *dp, size_t n);
// out[i] = softmax(x)[i] * scale (out != x): the softmax bit for bit
// mech_vec_softmax's on a copy of x, each value then multiplied by scale.
// *pmax (unless NULL) gets the largest softmax value before scaling.
// Returns the largest x (-inf: out all 0, *pmax 0).
float mech_vec_softmax_scaled(float *out, const float *x, size_t n, float scale, float *pmax);

// Weight-gradient products (core/matmul.c)

// out[m*ldo + n] = sum_k inp[k*ldi + m] * w[k*ldw + n] for m < M, n < N:
// out (M, N) = inp^T w with inp stored (K, M) and w (K, N). Equals
// mech_matmul on a transposed copy of inp bit for bit. Up to one K block
// (K <= 384) inp is read in place; beyond it, with a pool of 2 or more
// threads and AVX-512, the pool's threads make that transposed copy (in a
// buffer mech_pool_borrow lends, at most 64 MiB; else in place again). When
// wsum is not NULL it also gets w's column sums, wsum[n] = sum_k w[k*ldw + n]
// (a bias's gradient), accumulated in double over k in order and rounded
// once, from the blocks the product packs anyway. Multithreaded over pool.
void mech_matmul_tn(mech_pool *pool, float *out, int ldo, const float *inp, int ldi, const float *w, int ldw,
                    float *wsum, int M, int K, int N);
// For tests: mech_matmul_tn with the kernel named, as mech_matmul_with.
int mech_matmul_tn_with(const char *kernel, mech_pool *pool, float *out, int ldo, const float *inp, int ldi,
                        const float *w, int ldw, float *wsum, int M, int K, int N);

#ifdef __cplusplus
}
#endif
#endif
