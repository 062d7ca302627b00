/*
** interp/interp.h: mech's interpretability methods on top of the core
** forward pass: logit and decoder lenses, direct logit attribution, head
** scores (interp/lens.c, interp/heads.c; formulas in docs/lens.md) and
** activation patching (interp/patch.c; docs/patching.md) and built-in
** prompt-pair datasets (interp/datasets.c).
*/
#ifndef MECH_INTERP_H
#define MECH_INTERP_H

#include "core/core.h"

// ---------------------------------------------------------------------------
// Lenses and attribution read a run's cache. Residual "layers" are numbered
// 0..L: l < L is blocks.l.hook_resid_pre, L the last block's hook_resid_post.

// Caches every hook the functions below read: hook_embed, hook_pos_embed,
// blocks.*.hook_resid_pre, blocks.*.hook_resid_post, blocks.*.attn.hook_result
// (opt-in), blocks.*.attn.hook_pattern, blocks.*.hook_mlp_out (unless
// attn_only) and ln_final.hook_scale (unless the model has no LayerNorm).
mech_status mech_lens_cache(mech_run *run, mech_err *err);

// ---------------------------------------------------------------------------
// Logit lens (interp/lens.c)

#define MECH_LENS_MAX_K 32

typedef struct mech_lens_row {
    int layer;     // 0..L (see above)
    int batch;
    int pos;
    int k;         // entries of top_ids/top_probs filled
    int32_t top_ids[MECH_LENS_MAX_K];   // most probable first (ties: lower id first)
    double top_probs[MECH_LENS_MAX_K];
    int32_t target;        // the target token, or -1
    int64_t target_rank;   // tokens with a strictly larger logit (0 = top); -1 without target
    double target_prob;    // 0 without target
    double kl;             // KL(final || this layer), nats; exactly 0 at layer L
    double entropy;        // of this layer's distribution, nats
} mech_lens_row;

// Logit lens of every residual layer 0..L, batch item and position: the
// residual through the final LayerNorm with its statistics recomputed for
// that residual (TransformerLens's accumulated_resid(apply_ln=True)), then
// the unembedding (with its bias). Probabilities, KL and entropy are
// computed in double. k in [0, MECH_LENS_MAX_K]. targets: B*T token ids
// (one per batch item and position; -1 for none) or NULL.
// OUT: *rows (owned, mech_free), *n_rows = (L+1)*B*T, ordered layer, batch,
// position: rows[(l*B + b)*T + t]. In a padded batch (a run with an attention
// mask) only each sequence's own positions have rows, numbered from its
// first token (pos 0..len-1, as when run alone): (L+1) * sum(len) rows in the
// same order; targets stay indexed by the padded position.
// Needs: blocks.*.hook_resid_pre and blocks.{L-1}.hook_resid_post.
// Errors: MECH_ERR_ARG (k out of range, missing cache), MECH_ERR_RANGE (a
// target >= V), MECH_ERR_NOMEM.
mech_status mech_lens_logit(const mech_model *m, const mech_run *run, int k, const int32_t *targets,
                            mech_lens_row **rows, size_t *n_rows, mech_err *err);

// ---------------------------------------------------------------------------
// Decoder lens for compiled RASP models (interp/lens.c)

typedef struct mech_lens_var {
    char *name;      // the label's name part ("reverse", "length.bos_share", "bos", "one")
    int numerical;   // a single dimension labelled without ":value"
    int first_dim;   // its dimensions are first_dim .. first_dim+n_dims-1
    int n_dims;
    int from_layer;  // the first lens layer that holds it (0: the embedding, "bos" and "one";
                     // l+1: computed by a head or MLP of block l); -1 unknown (see mech_lens_decode)
} mech_lens_var;

typedef struct mech_lens_vars {
    int n_dims;          // d_model
    int n_vars;
    mech_lens_var *vars; // in residual order
    char **values;       // [n_dims]: the value part of "name:value" (JSON text, e.g. "\"a\"", "3"),
                         // NULL for numerical dimensions
} mech_lens_vars;

// Parses the residual labels (mech.rasp.residual: a JSON array of
// "name:value" / "name" strings) and groups consecutive dimensions with the
// same name into variables. OUT: *out owned (mech_lens_vars_free).
// Errors: MECH_ERR_FORMAT (not an array of strings), MECH_ERR_NOMEM.
mech_status mech_lens_vars_parse(const char *residual_json, mech_lens_vars **out, mech_err *err);
// Sets every variable's from_layer from the compiler's circuit (metadata
// mech.rasp.circuit: nodes with "dims": [start, end) and "component":
// "embed" or "layer": l), so that a variable whose value is 0 still reads
// as computed. Errors: MECH_ERR_FORMAT (not such a circuit).
mech_status mech_lens_vars_layers(mech_lens_vars *v, const char *circuit_json, mech_err *err);
void mech_lens_vars_free(mech_lens_vars *v);

typedef struct mech_lens_decoded {
    int layer;          // 0..L
    int batch;
    int pos;
    int var;            // index into vars->vars
    int present;        // the variable has been computed at this layer (see mech_lens_decode)
    int has_value;      // categorical: the largest dimension is > 0.5; numerical: present
    double number;      // numerical: the value; categorical: the largest dimension
    const char *value;  // categorical with has_value: the value text, borrowed from vars; else NULL
} mech_lens_decoded;

// Decodes each residual layer 0..L into the variables of vars (categorical:
// the argmax of its one-hot dimensions when above 0.5, else none; numerical:
// the number, with |x| < 1e-6 read as exactly 0: float32 noise, not a value).
// A variable is present from its from_layer on; when that is unknown (-1),
// from the first layer where some dimension exceeds tol (<= 0 means 1e-3),
// which misses a variable that is 0 everywhere. Needs blocks.*.hook_resid_pre and
// blocks.{L-1}.hook_resid_post; vars->n_dims must equal d_model.
// OUT: *rows (owned, mech_free), *n_rows = (L+1)*B*n_vars*T, ordered layer,
// batch, variable, position: rows[((l*B + b)*n_vars + v)*T + t].
// Errors: MECH_ERR_SHAPE (n_dims != d_model), MECH_ERR_ARG, MECH_ERR_NOMEM.
mech_status mech_lens_decode(const mech_model *m, const mech_run *run, const mech_lens_vars *vars, double tol,
                             mech_lens_decoded **rows, size_t *n_rows, mech_err *err);

// ---------------------------------------------------------------------------
// Direct logit attribution (interp/lens.c)

typedef struct mech_dla {
    int n_comp;        // 1 + L*(NH + 1 + has_mlp)
    int B;
    int n_layers;      // L
    char (*labels)[32]; // [n_comp]: "embed", then per layer l: "L{l}H{h}" for each head,
                        // "L{l}.attn_bias", "L{l}.mlp" (not for attn_only models)
    double *attr;      // [n_comp * B]: attr[c*B + b]
    double *accum;     // [(L+1) * B]: accum[l*B + b], the projection of residual layer l
    double *bias;      // [B]: lnf_b . d + unembed_b[answer] - unembed_b[wrong]
    double *logit;     // [B]: the model's logit (difference) at pos, from the run's logits
} mech_dla;

// Direct logit attribution at position pos (-1: the last; counted within
// each sequence of a padded batch, so -1 is each one's own last token) of
// every batch item: the final residual stream split into embedding (hook_embed +
// hook_pos_embed), each head (attn.hook_result), each layer's attention
// output bias b_O and each MLP (hook_mlp_out); each component is centred,
// divided by the cached ln_final.hook_scale (no centring and no scale
// without LayerNorm) and dotted with d = lnf_w * (W_U[answer] - W_U[wrong]).
// answer: [B] token ids; wrong: [B] token ids or NULL (plain logit; an
// entry < 0 also means none). sum_c attr[c] + bias = logit (up to float
// rounding); accum[L] + bias = logit too.
// Needs hook_embed, hook_pos_embed, blocks.*.attn.hook_result,
// blocks.*.hook_mlp_out, ln_final.hook_scale, blocks.*.hook_resid_pre,
// blocks.{L-1}.hook_resid_post. OUT: *out owned (mech_dla_free).
// Errors: MECH_ERR_ARG, MECH_ERR_RANGE (pos or a token out of range), MECH_ERR_NOMEM.
mech_status mech_lens_dla(const mech_model *m, const mech_run *run, int pos, const int32_t *answer,
                          const int32_t *wrong, mech_dla **out, mech_err *err);
void mech_dla_free(mech_dla *d);
// How the final LayerNorm enters the attribution. CACHED divides every
// component by the ln_final.hook_scale the run cached (TransformerLens's
// apply_ln_to_stack): the components sum to the logit, but each one depends
// on all the others through that scale. EXACT is for LayerNorm-free models
// (gpt2_noLN: layer_norm_epsilon 1e12, so ln_final computes (x - mean) w /
// sqrt(eps) + b): it divides by sqrt(eps), the same for every input, so each
// component's attribution is a fixed linear function of that component
// alone, with no approximation; refused (MECH_ERR_ARG) when a cached scale
// differs from sqrt(eps) by more than 1e-6 relative (the LayerNorm is not
// linear on this input). Models without LayerNorm: both are the same.
typedef enum mech_dla_ln { MECH_DLA_LN_CACHED, MECH_DLA_LN_EXACT } mech_dla_ln;
mech_status mech_lens_dla_ex(const mech_model *m, const mech_run *run, int pos, const int32_t *answer,
                             const int32_t *wrong, mech_dla_ln ln, mech_dla **out, mech_err *err);

// ---------------------------------------------------------------------------
// Head scores (interp/heads.c): TransformerLens's head_detector

typedef enum mech_head_kind {
    MECH_HEAD_PREV_TOKEN, // D[i][i-1] = 1
    MECH_HEAD_DUPLICATE,  // D[i][j] = 1 for j < i with tok[j] == tok[i]
    MECH_HEAD_INDUCTION,  // D[i][j] = 1 for 1 <= j <= i with tok[j-1] == tok[i], j-1 < i
    MECH_HEAD_KIND_COUNT_
} mech_head_kind;

const char *mech_head_kind_name(mech_head_kind k); // "previous_token", "duplicate_token", "induction"

typedef enum mech_head_measure {
    MECH_HEAD_MUL, // sum(A*D) / sum(A)
    MECH_HEAD_ABS  // 1 - round(mean|A - D| * T, 3)
} mech_head_measure;

// Scores every head against the reference pattern of kind built from each
// batch item's tokens, averaged over the batch. A is the cached
// blocks.l.attn.hook_pattern of the head; exclude_bos zeroes its column 0,
// exclude_current its diagonal (before the score, as TransformerLens).
// tokens: [B*T] (the ids the run was given). In a padded batch (a run with
// an attention mask) each sequence is scored on its own tokens and the block
// of its pattern they span, exactly as when run alone (column 0 is its first
// token). OUT: scores[L*NH] (caller's storage), scores[l*NH + h]. Needs
// blocks.*.attn.hook_pattern and at least 2 tokens in every sequence.
// Errors: MECH_ERR_ARG (missing cache, fewer than 2 tokens, bad kind).
mech_status mech_heads_score(const mech_model *m, const mech_run *run, const int32_t *tokens, mech_head_kind kind,
                             mech_head_measure measure, int exclude_bos, int exclude_current,
                             double *scores, mech_err *err);

// Fills out[B * ((bos >= 0) + 2n)] with B rows of: bos (when bos >= 0), then n
// tokens drawn uniformly from [lo, hi), then the same n tokens again.
// Deterministic in seed. Errors: MECH_ERR_ARG (B or n < 1, lo >= hi).
mech_status mech_heads_repeated_tokens(uint64_t seed, int B, int n, int32_t lo, int32_t hi, int32_t bos,
                                       int32_t *out, mech_err *err);

// ---------------------------------------------------------------------------
// Activation patching (interp/patch.c; docs/patching.md)




// What is measured on the logits at the metric position (all in double).
typedef enum mech_patch_metric {
    MECH_PATCH_LOGIT_DIFF, // logit[answer] - logit[wrong]
    MECH_PATCH_LOGPROB,    // log softmax(logits)[answer]
    MECH_PATCH_PROB,       // softmax(logits)[answer]
    MECH_PATCH_KL,         // KL(clean || run) = sum_v p_clean(v) (log p_clean(v) - log p_run(v))
    MECH_PATCH_METRIC_COUNT_
} mech_patch_metric;

// What a sweep patches, and the shape of its result.
typedef enum mech_patch_site {
    MECH_PATCH_RESID_PRE,        // blocks.L.hook_resid_pre at one position      [L, T]
    MECH_PATCH_RESID_MID,        // blocks.L.hook_resid_mid at one position      [L, T]
    MECH_PATCH_ATTN_OUT,         // blocks.L.hook_attn_out at one position       [L, T]
    MECH_PATCH_MLP_OUT,          // blocks.L.hook_mlp_out at one position        [L, T]
    MECH_PATCH_HEAD_OUT,         // attn.hook_z of one head, every position      [L, NH]
    MECH_PATCH_HEAD_OUT_BY_POS,  // attn.hook_z of one head at one position      [L, T, NH]
    MECH_PATCH_HEAD_Q,           // attn.hook_q of one head, every position      [L, NH]
    MECH_PATCH_HEAD_K,           // attn.hook_k of one head, every position      [L, NH]
    MECH_PATCH_HEAD_V,           // attn.hook_v of one head, every position      [L, NH]
    MECH_PATCH_HEAD_PATTERN,     // attn.hook_pattern of one head (all rows)     [L, NH]
    MECH_PATCH_SITE_COUNT_
} mech_patch_site;

// Name of a site ("resid_pre", "head_out_by_pos", ...) or of a metric
// ("logit_diff", "logprob", "prob", "kl"); static strings.
const char *mech_patch_site_name(mech_patch_site s);
const char *mech_patch_metric_name(mech_patch_metric m);

typedef struct mech_patch_opts {
    mech_patch_metric metric;
    int32_t answer;  // token whose logit / log-prob / prob is measured (not used by KL)
    int32_t wrong;   // the wrong answer (logit difference only)
    int pos;         // metric position; < 0: the last position
    int naive;       // 1: every patched run is a full forward from the tokens, B = 1,
                     // with the one patch hook (the reference the fast mode is tested against)
    int batch;       // fast mode: at most this many patches per forward (rows of one batch);
                     // <= 0: a default that keeps a batch near 4096 token rows, at most 64
    // Called after every patched forward with the cells done so far and the
    // total of the sweep; may be NULL.
    void (*progress)(int64_t done, int64_t total, void *user);
    void *user;
    // Checked before every patched forward; when *cancel != 0 the sweep stops
    // with MECH_ERR_CANCELLED. May be NULL. Set it from another thread or a
    // signal handler.
    const volatile int *cancel;
} mech_patch_opts;

// A sweep's output: the metric of every patched run (raw) and its normalised
// effect (raw - corrupted) / (clean - corrupted), row-major over shape.
typedef struct mech_patch_result {
    int ndim;          // 2 or 3
    int64_t shape[3];  // [L, T], [L, NH] or [L, T, NH] (see mech_patch_site)
    float *raw;        // owned (mech_patch_result_deinit); NaN for cells not computed
    float *norm;       // owned; NaN when clean == corrupted
    double clean;      // the metric on the clean run (0 for KL)
    double corrupted;  // the metric on the corrupted run
    int64_t done;      // cells computed: all of them unless the sweep was cancelled
} mech_patch_result;

void mech_patch_result_deinit(mech_patch_result *r);

typedef struct mech_patch mech_patch;

// Runs the clean and the corrupted prompt (n tokens each, B = 1) once, with
// the caches the sweeps need, and computes both baselines of the metric.
// m, clean and corrupt are borrowed (m must outlive *out; the tokens are
// copied); opts is copied. *out is owned (mech_patch_free).
// Errors: MECH_ERR_ARG when the lengths differ (the message gives both), n is
// 0, or the metric is unknown; MECH_ERR_RANGE for a token, answer, wrong
// answer or position outside the model's range; errors of the forward pass.
mech_status mech_patch_new(const mech_model *m, const int32_t *clean, int n_clean, const int32_t *corrupt,
                           int n_corrupt, const mech_patch_opts *opts, mech_patch **out, mech_err *err);
void mech_patch_free(mech_patch *p);

// The metric of the clean run and of the corrupted run (the two ends of the
// normalised effect), as the mode in opts computes them.
double mech_patch_clean_metric(const mech_patch *p);
double mech_patch_corrupted_metric(const mech_patch *p);

// Runs one sweep (one patched run per cell) into *out (caller's struct,
// filled here; release with mech_patch_result_deinit, also after an error).
// Errors: MECH_ERR_ARG for an unknown site or one this model lacks (resid_mid
// and mlp_out in attention-only models); MECH_ERR_CANCELLED when the cancel
// flag was set (out then holds the cells done so far, the rest NaN);
// MECH_ERR_NOMEM; errors of the forward pass.
mech_status mech_patch_sweep(mech_patch *p, mech_patch_site site, mech_patch_result *out, mech_err *err);

// Path patching: which input of a receiver head gets the sender's path.
typedef enum mech_patch_input { MECH_PATCH_INPUT_Q, MECH_PATCH_INPUT_K, MECH_PATCH_INPUT_V } mech_patch_input;

typedef struct mech_patch_receiver {
    int layer, head;
    mech_patch_input input;
} mech_patch_receiver;

// Path patching of every sender head (l, h) into the receivers: the cell
// [l, h] of the [L, NH] result is the metric of the corrupted run in which
// each receiver in a later layer than l sees, on its q, k or v input,
// corrupted resid_pre + (clean result of (l, h) - corrupted result of (l, h))
// at every position (the per-head input, before the head's own LayerNorm),
// and nothing else is patched. Downstream of the receivers the run goes on
// as usual. A sender no receiver comes after gets the corrupted metric
// exactly (effect 0) without a run. Exact semantics: docs/patching.md.
// Errors: MECH_ERR_ARG when n_recv < 1 or an input kind is unknown;
// MECH_ERR_RANGE for a receiver's layer or head out of range; as
// mech_patch_sweep otherwise.
mech_status mech_patch_path(mech_patch *p, const mech_patch_receiver *recv, int n_recv, mech_patch_result *out,
                            mech_err *err);
// The receivers' check both path patchings run (exact and attribution):
// MECH_ERR_ARG when n_recv < 1 or an input kind is unknown, MECH_ERR_RANGE
// for a layer or head out of cfg's range; *lmin, *lmax (may be NULL) get the
// lowest and highest receiver layer.
mech_status mech_patch_receivers_check(const mech_config *cfg, const mech_patch_receiver *recv, int n_recv,
                                       int *lmin, int *lmax, mech_err *err);

// The metric of one row of logits (V of them). clean_logits (V) is needed by
// MECH_PATCH_KL only (else may be NULL). Computed in double.
double mech_patch_metric_eval(mech_patch_metric metric, const float *logits, const float *clean_logits, int V,
                              int32_t answer, int32_t wrong);
// (metric - corrupted) / (clean - corrupted); NaN when clean == corrupted.
double mech_patch_normalise(double metric, double clean, double corrupted);

// ---------------------------------------------------------------------------
// Built-in prompt-pair datasets (interp/datasets.c)


// One clean/corrupted pair. clean and corrupt hold n token ids each; answer
// and wrong are the tokens compared at the last position (answer - wrong is
// the logit difference of mech_patch). clean_text and corrupt_text are the
// prompts as text (NUL-terminated) for the text tasks, NULL for induction.
// Every array is owned by the pair: release a dataset with mech_pairs_free.
typedef struct mech_pair {
    int32_t *clean, *corrupt;
    int n;
    int32_t answer, wrong;
    char *clean_text, *corrupt_text;
} mech_pair;

// Frees the n pairs' arrays and the array p itself (NULL is fine).
void mech_pairs_free(mech_pair *p, int n);
// Puts bos (>= 0; <|endoftext|>, 50256, for GPT-2) in front of both prompts
// of every pair (n grows by one; answers and texts unchanged), as
// TransformerLens's prepend_bos. The GPT-2 datasets below follow the ACDC
// reference, which tokenizes them without BOS (its greater-than metric
// reads fixed positions), so they have none unless this is called. All pairs
// or none: MECH_ERR_NOMEM leaves p as it was.
mech_status mech_pairs_prepend_bos(mech_pair *p, int n, int32_t bos, mech_err *err);

// Indirect object identification, ABBA order, no BOS, final " IO" dropped:
//   "When Mary and John went to the store, John gave a drink to"
//   answer " Mary" (IO), wrong " John" (S).
// 15 templates of the IOI paper (Wang et al. 2022, ioi_dataset.py) with
// places and objects; names from its list, keeping only those that are one
// token with a leading space in tok. The corruption is ACDC's "ABC" dataset:
// the same template, place and object with the three name slots (IO, S1, S2)
// filled by three distinct names none of which is IO or S:
//   "When Paul and Laura went to the store, Kevin gave a drink to".
// n >= 1. *out gets n pairs (free with mech_pairs_free).
mech_status mech_dataset_ioi(const mech_tokenizer *tok, int n, uint64_t seed, mech_pair **out,
                             mech_err *err);

// Greater-than (Hanna et al. 2023; ACDC's greaterthan task), no BOS:
//   clean   "The war lasted from the year 1742 to 17"
//   corrupt "The war lasted from the year 1701 to 17"
// noun from Hanna et al.'s list (single tokens " noun" only), century XX in
// 11..17, YY in 02..98, keeping only years that tokenize as " XX" + "YY"
// (so the corruption "01" keeps the length). The answer is the token of the
// two digits YY+1 (a year greater than YY), wrong the token of YY-1 (a
// smaller one); ACDC's own metric sums P over all YY' > YY versus YY' <= YY,
// which a caller can compute from the same prompts.
mech_status mech_dataset_greater_than(const mech_tokenizer *tok, int n, uint64_t seed,
                                      mech_pair **out, mech_err *err);

// Induction on repeated random tokens (no tokenizer: ids only, texts NULL).
// r = len distinct ids drawn uniformly from [lo, vocab); the clean prompt is
//   [bos] r[0..len) r[0..len-1)          (bos < 0: no BOS)
// so the last position's induction prediction is answer = r[len-1]. ACDC
// corrupts induction by permuting the batch (each prompt replaced by an
// unrelated one from the same distribution); the generator does the same
// without needing a batch: the corrupt prompt is [bos] r' r'[0..len-1) for
// an independent random r' whose last token is not in r, and wrong =
// r'[len-1] (the token induction predicts on the corrupted prompt). Both
// prompts have 2*len - 1 (+1 with BOS) tokens.
// Needs len >= 2 and vocab - lo >= len + 1.
mech_status mech_dataset_induction(int vocab, int n, int len, uint64_t seed, int lo, int32_t bos,
                                   mech_pair **out, mech_err *err);

// Random inputs for a compiled RASP model (its mech.rasp.* metadata): each
// clean prompt is [BOS] x[0..len) with x drawn uniformly from the program's
// vocab (len <= max_seq_len). corruption: "random" (an independent random
// input), "shuffle" (the clean values in a random order that differs from
// the clean one where possible). answer and wrong are the output-logit indices of the
// program's output at the last position on the clean and the corrupt input
// (the readout value index; 0 for a numerical readout). Texts are the values
// separated by spaces, as `mech run --input` takes them.
// Output logits of a compiled RASP model: its readout's values (1 for a
// numerical readout); 0 when m is not a compiled model.
int mech_compiled_n_out(const mech_model *m);
// The output-logit index of a compiled model's output at the last of T
// positions of ids (the largest of its first mech_compiled_n_out logits).
mech_status mech_compiled_answer(const mech_model *m, const int32_t *ids, int T, int32_t *out, mech_err *err);
// The default number of inputs of a compiled model's dataset: tiny models,
// and some circuits are exercised only by rare inputs (a Dyck language's
// paths of one bracket kind: ACDC recovers shuffle_dyck2/3 exactly from 200
// inputs, not from 20).
#define MECH_DATASET_COMPILED_N 200
// len <= 0: the default length, the same for every command: the longest
// below max_seq_len at which the clean outputs of these n inputs differ
// (mech_compiled_outputs_vary), trying at most 16 lengths; when none does,
// max_seq_len - 1 (max_seq_len for 1). The length used is out[0].n - 1.
mech_status mech_dataset_compiled(const mech_model *m, int n, int len, uint64_t seed, const char *corruption,
                                  mech_pair **out, mech_err *err);
// The longest input a compiled model takes: mech.rasp.max_seq_len (bounded
// by its context less BOS).
int mech_dataset_compiled_max_len(const mech_model *m);
// *varies = 1 when some clean input of p[0..n) makes the compiled model m
// output something else than the first one does, at some position after BOS
// (the readout's value, or its number within 1e-3 relative for a numerical
// readout). Constant outputs make a dataset uninformative: resample ablation
// and patching compare equal outputs. Errors: MECH_ERR_ARG (not a compiled
// model), those of the forward pass.
mech_status mech_compiled_outputs_vary(const mech_model *m, const mech_pair *p, int n, int *varies, mech_err *err);

// ---------------------------------------------------------------------------
// ACDC: automatic circuit discovery (Conmy et al. 2023), with the reference
// code's graph, order and greedy decisions (interp/acdc_graph.c: the graph;
// interp/acdc.c: the search; interp/acdc_truth.c: scoring against a compiled
// model's circuit). Full description: docs/acdc.md.

typedef enum mech_acdc_node_kind {
    MECH_ACDC_EMBED,      // blocks.0.hook_resid_pre, or hook_embed with split embeddings (sender)
    MECH_ACDC_POS_EMBED,  // hook_pos_embed, split embeddings only (sender)
    MECH_ACDC_RESULT,     // blocks.L.attn.hook_result[:, :, h] (sender, without b_O)
    MECH_ACDC_MLP_OUT,    // blocks.L.hook_mlp_out (sender)
    MECH_ACDC_Q_INPUT,    // blocks.L.hook_q_input[:, :, h] (receiver, pre-LayerNorm)
    MECH_ACDC_K_INPUT,
    MECH_ACDC_V_INPUT,
    MECH_ACDC_Q,          // blocks.L.attn.hook_q[:, :, h] (fed by q_input by a DIRECT edge)
    MECH_ACDC_K,
    MECH_ACDC_V,
    MECH_ACDC_MLP_IN,     // blocks.L.hook_mlp_in (receiver)
    MECH_ACDC_RESID_POST, // blocks.{n_layers-1}.hook_resid_post (the final receiver)
} mech_acdc_node_kind;

typedef enum mech_acdc_edge_type {
    MECH_ACDC_ADDITION,    // writer -> later residual reader; tested and counted
    MECH_ACDC_DIRECT,      // q_input -> q (k, v) of one head; tested and counted
    MECH_ACDC_PLACEHOLDER, // q/k/v -> result, mlp_in -> mlp_out; never tested, not counted
} mech_acdc_edge_type;

typedef struct mech_acdc_node {
    mech_acdc_node_kind kind;
    int layer, head;  // head -1 for whole-hook nodes; layer -1 for the embeddings
    char name[64];    // reference spelling: "blocks.3.attn.hook_result[:, :, 5]", "blocks.3.hook_mlp_in[:]"
} mech_acdc_node;

typedef struct mech_acdc_edge {
    int sender, receiver;     // node indices
    mech_acdc_edge_type type;
    int present;              // 1 while the edge is in the circuit
    double effect;            // metric change when it was tried (NAN if never tried)
} mech_acdc_edge;

typedef struct mech_acdc_graph {
    mech_acdc_node *nodes;
    int n_nodes;
    mech_acdc_edge *edges;
    int n_edges;
    int n_addition, n_direct, n_placeholder; // counted edges = n_addition + n_direct
    int split_embed;
    int n_layers, n_heads, attn_only;        // the shape it was built for
    // Edges are grouped by receiver: the edges into node v are
    // first_in[v] .. first_in[v+1]-1 ([n_nodes + 1]), each group in the
    // reference's default parent order (latest sender layer first, heads
    // n_heads-1..0 within a layer, the embeddings last).
    int *first_in;
} mech_acdc_graph;

// The full graph of a model with cfg's shape, every edge present.
// split_embed: hook_embed and hook_pos_embed as two senders (compiled
// models, as the reference's Tracr tasks) instead of blocks.0.hook_resid_pre.
// Nodes come in forward order: the embedding(s); then per layer
// hook_q_input[h], hook_k_input[h], hook_v_input[h], attn.hook_q[h],
// attn.hook_k[h], attn.hook_v[h], attn.hook_result[h] (h = 0..NH-1 within
// each name), hook_mlp_in, hook_mlp_out; last blocks.{L-1}.hook_resid_post.
// *out is owned (mech_acdc_graph_free).
mech_status mech_acdc_graph_new(const mech_config *cfg, int split_embed, mech_acdc_graph **out, mech_err *err);
void mech_acdc_graph_free(mech_acdc_graph *g);
// Index of the node with that exact name, or -1.
int mech_acdc_graph_node(const mech_acdc_graph *g, const char *name);
// Index of the edge sender -> receiver (node indices), or -1.
int mech_acdc_graph_edge(const mech_acdc_graph *g, int sender, int receiver);
// Present counted edges (ADDITION + DIRECT).
int mech_acdc_graph_count_present(const mech_acdc_graph *g);

typedef enum mech_acdc_metric {
    MECH_ACDC_KL,         // KL(full || current) at the metric positions, batch mean
    MECH_ACDC_LOGIT_DIFF, // -(answer logit - wrong logit) at the last position, batch mean
    MECH_ACDC_L2,         // mean squared error of the first n_out logits (a compiled model's decoded
                          // output) to the full model's over batch, positions >= 1 and outputs
                          // (the reference's l2_metric)
} mech_acdc_metric;

typedef enum mech_acdc_ablation {
    MECH_ACDC_RESAMPLE, // corrupted activations from a forward pass on the corrupt inputs
    MECH_ACDC_ZERO,     // every residual writer zeroed (biases only)
} mech_acdc_ablation;

// One edge trial: the metric before and after removing the edge, and
// whether it stayed removed (after - before < tau).
typedef struct mech_acdc_trial {
    int edge;
    double before, after;
    int removed;
    int64_t macs;   // multiply-adds the run has spent up to and including this trial (0: unknown)
    double seconds; // the run's time up to the end of this trial (0: unknown)
} mech_acdc_trial;

typedef struct mech_acdc_progress {
    int receivers_done, receivers_total;
    int64_t trials, edges_removed;
    double seconds;
} mech_acdc_progress;

typedef struct mech_acdc_opts {
    mech_acdc_metric metric;
    mech_acdc_ablation ablation;
    double tau;
    int abs_value;         // compare |after - before| with tau (the reference's --abs-value-threshold)
    int heads_ascending;   // try a receiver's sender heads 0..H-1 (the reference's indices_mode
                           // "reverse"); default H-1..0. Receivers are always visited H-1..0.
    int naive;             // one full forward pass per trial through the hook API (the oracle)
    const int32_t *answer, *wrong; // [B] tokens for MECH_ACDC_LOGIT_DIFF
    const uint8_t *mask;   // [B*T] metric positions for MECH_ACDC_KL; NULL: the last position
    int n_out;             // logits compared by MECH_ACDC_L2 (0: all)
    // [T] or NULL. With MECH_ACDC_RESAMPLE and split embeddings, the
    // corrupted pass reads hook_pos_embed at positions pos_perm[t], as the
    // reference's Tracr tasks do (pos_perm = mech_acdc_torch_randperm(49, T)).
    const int32_t *pos_perm;
    // Resume: the run's own first n_replay trials, as on_trial reported
    // them. Those before the last receiver group they reach into are applied
    // without evaluating; that group's are evaluated again (a decision that
    // comes out differently is MECH_ERR_ARG), so every later value is bit for
    // bit the uninterrupted run's, and macs continue from the records.
    const mech_acdc_trial *replay;
    int n_replay;
    // Called after every new trial (e.g. to store it); non-zero stops the run (MECH_ERR_CANCELLED).
    int (*on_trial)(const mech_acdc_trial *t, void *user);
    void (*progress)(const mech_acdc_progress *p, void *user);
    void *user;
    volatile int *cancel;  // set non-zero (e.g. from SIGINT) to stop after the current trial
    int threads;           // 0: the default
} mech_acdc_opts;

typedef struct mech_acdc_result {
    double metric_final;     // metric of the final circuit (set on success only)
    int64_t n_trials;        // trials run (replayed ones excluded)
    int64_t macs;            // multiply-adds spent in trials and state rebuilds (naive: one full forward per
                             // trial), for the benchmark; a resumed run's include the replayed trials' (their macs)
    double seconds;          // a resumed run's include the replayed trials' (their seconds)
} mech_acdc_result;

// Runs ACDC on g (edges already absent stay absent: ablated from the first
// evaluation and never tried, e.g. after mech_acdc_prefilter) over B sequences of T
// tokens: clean[B*T] is the data; corrupt[B*T] the corrupted inputs
// (MECH_ACDC_RESAMPLE; NULL with MECH_ACDC_ZERO, whose pass runs on clean).
// On return g's present flags are the circuit and every tried edge has its
// effect. Trials run in the reference's order (docs/acdc.md): nodes from
// resid_post down, heads n_heads-1..0 (with heads_ascending, the heads among
// a receiver's senders are tried 0..n_heads-1).
// Resuming: pass the trials the stopped run reported (on_trial) as replay,
// with g as that run started (e.g. a fresh mech_acdc_graph_new); a replay
// that is not this search's is MECH_ERR_ARG. MECH_ERR_CANCELLED (opts.cancel
// or on_trial) leaves g as decided so far and res->n_trials counting them.
// res may be NULL.
// torch.manual_seed(seed); torch.randperm(n) on the CPU generator, exactly
// (mt19937 and aten's randperm_cpu): out[0..n) a permutation of 0..n-1.
void mech_acdc_torch_randperm(uint64_t seed, int n, int32_t *out);

mech_status mech_acdc_run(const mech_model *m, const int32_t *clean, const int32_t *corrupt, int B, int T,
                          const mech_acdc_opts *o, mech_acdc_graph *g, mech_acdc_result *res, mech_err *err);

// ---------------------------------------------------------------------------
// ACDC ground truth, scores and export (interp/acdc_truth.c; docs/acdc.md)

// The circuit a compiled RASP model computes its output with, as edges of
// g (g built for m's config; split_embed 1 as the reference's Tracr tasks,
// 0 folds hook_embed and hook_pos_embed into blocks.0.hook_resid_pre).
// Candidates come from the compiler's metadata ("mech.rasp.circuit",
// "mech.rasp.readout"): each variable's inputs into the head or MLP that
// computes it, the embedding into every head and MLP (the bos and one
// dimensions), a selector width's head into its MLP, the output's writer
// into resid_post, and the DIRECT edges of the heads' q, k and v. A
// candidate is kept when zero-ablating it alone (the receiver loses the
// sender's output; a DIRECT edge sets q/k/v to its bias) changes a readout
// logit at a position >= 1 by more than 1e-3 on some input: every input up
// to max_seq_len, or a seeded sample of 1024 per length when there are
// more; a q/k/v port whose DIRECT edge is not kept loses its inputs too (the
// reference tries hook_q before hook_q_input). meta_keys/meta_values: n_meta metadata pairs holding at least
// mech.rasp.circuit, mech.rasp.readout, mech.rasp.tokens and
// mech.rasp.max_seq_len (a mech_rasp_compiled's meta_* arrays).
// OUT: truth[g->n_edges] (caller's storage; 1 = in the circuit, counted
// edges only), *n_true (may be NULL). Errors: MECH_ERR_FORMAT (missing or
// malformed metadata, a component the graph lacks), MECH_ERR_NOMEM, and
// errors of the forward pass.
mech_status mech_acdc_truth_edges(const mech_model *m, const char *const *meta_keys, const char *const *meta_values,
                                  size_t n_meta, const mech_acdc_graph *g, uint8_t *truth, int *n_true, mech_err *err);
// The same with the metadata of m's file (mech_model_meta). MECH_ERR_FORMAT
// when m is not a compiled RASP model.
mech_status mech_acdc_truth_model(const mech_model *m, const mech_acdc_graph *g, uint8_t *truth, int *n_true,
                                  mech_err *err);
// Readout logits a compiled model's output occupies (the metric's n_out):
// the number of "values" of a categorical mech.rasp.readout, 1 for a
// numerical one; 0 when readout_json is NULL or malformed.
int mech_acdc_truth_n_out(const char *readout_json);

// A discovered circuit (g's present counted edges) against a truth, counting
// ADDITION and DIRECT edges only, as the reference's get_edge_stats:
// tpr = tp / |truth|, fpr = fp / (counted - |truth|) (0 when a denominator is 0).
typedef struct mech_acdc_score {
    int n_counted, n_truth, n_found; // counted edges, truth edges, present edges
    int tp, fp, fn;
    double tpr, fpr;
} mech_acdc_score;
mech_acdc_score mech_acdc_truth_score(const mech_acdc_graph *g, const uint8_t *truth);

// One point of a ROC curve (one threshold).
typedef struct mech_acdc_roc_point {
    double fpr, tpr;
} mech_acdc_roc_point;

// The curve the reference's ROC plots draw: pts plus the end points (0, 0)
// and (1, 1), less every point another strictly beats on both axes (lower
// fpr and higher tpr), sorted by fpr then tpr. OUT: out[n + 2] (caller's
// storage); returns the number written.
int mech_acdc_roc(const mech_acdc_roc_point *pts, int n, mech_acdc_roc_point *out);
// The reference's pessimistic AUC (acdc_graphics.pessimistic_auc) of the
// curve mech_acdc_roc makes from pts: sum over i >= 1 of
// (1 - fpr_i) * (tpr_i - tpr_{i-1}). 1 when some threshold finds the truth
// exactly; 0 for n = 0.
double mech_acdc_auc(const mech_acdc_roc_point *pts, int n);

// Appends a Graphviz graph of g's present counted edges to b: one cluster
// per layer (rank=same), the embeddings on top and resid_post at the
// bottom, every edge labelled with its effect. With truth (may be NULL):
// true positives solid, false positives red, missed truth edges dashed grey.
void mech_acdc_export_dot(const mech_acdc_graph *g, const uint8_t *truth, mech_buf *b);
// Appends the circuit as JSON: {"n_edges", "n_counted", "edges": [{"sender",
// "receiver", "type", "effect", "truth"}...]} (present counted edges;
// "truth" only with truth; effect null when never tried, else in the fewest
// digits that read back as the same float: the metrics are float precision).
void mech_acdc_export_json(const mech_acdc_graph *g, const uint8_t *truth, mech_buf *b);


// ---------------------------------------------------------------------------
// Edge attribution patching (interp/eap.c; docs/eap.md)

// EAP (Syed, Rager, Conmy 2023) on ACDC's graph g (built for m's config):
// scores[e] for every edge of g, in g's order. An ADDITION edge u -> v gets
//   sum over rows, positions and d_model of (u's output on corrupt - on clean) . dm/d(v's input)
// with the gradient of the metric mt taken on the clean run; mt is a batch
// mean, so this is the mean over the B prompts of each prompt's score. A
// DIRECT edge q_input[h] -> q[h] (k, v alike) gets (q(corrupt) - q(clean)) .
// dm/dq; PLACEHOLDER edges 0. One corrupted forward, one clean forward and
// one backward. With KL to the clean run's own logits the gradient on the
// clean run is 0 (the KL is at its minimum): every score is 0. *value (may
// be NULL) gets the metric on the clean run. threads <= 0: the default.
// Errors: MECH_ERR_ARG (a graph of another shape), MECH_ERR_NOMEM, and those
// of the forward and backward passes (a metric field missing or out of range).
mech_status mech_eap_scores(const mech_model *m, const mech_acdc_graph *g, const int32_t *clean,
                            const int32_t *corrupt, int B, int T, const mech_metric *mt, int threads,
                            double *scores, double *value, mech_err *err);

// The attribution methods (Hanna, Pezzelle, Belinkov 2024, "Have Faith in
// Faithfulness"; hannamw/EAP-IG). Every one scores an edge with the same
// activation difference as EAP (the sender's output, or the head's q/k/v for
// a DIRECT edge, corrupted - clean) times a mean of gradients at the receiver:
typedef enum mech_eap_method {
    MECH_EAP_PLAIN,           // "eap": the gradient on the clean run (1 backward)
    MECH_EAP_IG_INPUTS,       // "eap-ig-inputs": the input embeddings (blocks.0.hook_resid_pre, or hook_embed
                              // and hook_pos_embed) at alpha = k/m of the way from corrupted to clean,
                              // k = 0..m-1, the rest of the run clean; the mean of the m gradients (m backwards)
    MECH_EAP_IG_ACTIVATIONS,  // "eap-ig-activations": per sender group (the input; per layer its q/k/v, its
                              // heads' results, its MLP) that group's output at alpha = k/m, k = 1..m; an
                              // edge gets the mean of its sender group's m gradients ((1 + 3L) m backwards)
    MECH_EAP_CLEAN_CORRUPTED, // "clean-corrupted": the mean of the gradients on the clean and the corrupted
                              // run (2 backwards)
} mech_eap_method;

typedef struct mech_eap_opts {
    mech_eap_method method;
    int ig_steps; // m of the IG variants (<= 0: 5, the EAP-IG repository's example)
    int threads;  // <= 0: the default
    // For benchmarks, or NULL: seconds of [0] the corrupted forward, [1] the
    // clean forwards, [2] the backwards, [3] the rest (gathering the senders,
    // packing the gradients, the score products, the interpolation hooks'
    // forwards are in [1]).
    double *timing;
} mech_eap_opts;

// mech_eap_scores with a method. Errors as mech_eap_scores, plus MECH_ERR_ARG
// for an unknown method or more than 10000 steps.
mech_status mech_eap_scores_opts(const mech_model *m, const mech_acdc_graph *g, const int32_t *clean,
                                 const int32_t *corrupt, int B, int T, const mech_metric *mt, const mech_eap_opts *o,
                                 double *scores, double *value, mech_err *err);
// "eap", "eap-ig-inputs", "eap-ig-activations", "clean-corrupted"; NULL for
// another value. parse: 0 and *out set, or -1 for an unknown name.
const char *mech_eap_method_name(mech_eap_method method);
int mech_eap_method_parse(const char *s, mech_eap_method *out);

// A circuit from scores: g's counted edges present when among the top_n by
// |score| (top_n >= 0; ties in graph order) or, with top_n < 0, when |score|
// >= threshold; never an edge whose score is 0; every counted edge's effect set to its score (so
// mech_acdc_export_dot/json label the edges with it; placeholders NAN).
mech_status mech_eap_select(mech_acdc_graph *g, const double *scores, int top_n, double threshold, mech_err *err);
// The pessimistic ROC AUC (mech_acdc_auc) of |score| against truth over g's
// counted edges: one point per distinct |score| (edges tied at a score enter
// together). NAN when out of memory.
double mech_eap_auc(const mech_acdc_graph *g, const double *scores, const uint8_t *truth);

// ---------------------------------------------------------------------------
// Attribution patching (interp/patch_attrib.c; docs/patching.md)

// B clean/corrupted prompt pairs of T tokens each, run as one batch.
typedef struct mech_patch_pairs {
    const int32_t *clean, *corrupt; // (B, T)
    const int32_t *answer;          // (B) as mech_patch_opts.answer (not used by KL: may be NULL)
    const int32_t *wrong;           // (B) logit difference only (else may be NULL)
    int B, T;
    int pos;                        // metric position; < 0: the last
} mech_patch_pairs;

// The first-order estimate of every cell of mech_patch_sweep(site) for each
// pair at once (Nanda's attribution patching): out[b] gets pair b's result in
// the exact sweep's layout and convention (raw: the metric of the corrupted
// run with the cell's activation patched to its clean value; norm: the
// normalised effect; clean, corrupted: the two runs' metrics), with
//   raw = corrupted + sum over the cell's elements of (clean - corrupted
//         activation) * d metric / d activation on the corrupted run,
// from one clean forward, one corrupted forward and one backward for the
// whole batch. Exact where the metric is linear in the patched activation
// (e.g. the logit difference and the last block's attn_out, mlp_out or a
// head's z or v in a model without LayerNorm). A pair's result does not
// depend on the other pairs. out: B results (caller's storage, filled here;
// mech_patch_result_deinit each, also after an error). Errors: MECH_ERR_ARG
// (no pairs, an unknown metric or site, a site this model lacks),
// MECH_ERR_RANGE (a token, answer, wrong answer or position out of range),
// MECH_ERR_NOMEM, and those of the forward and backward passes.
mech_status mech_patch_attrib_sweep(const mech_model *m, const mech_patch_pairs *pp, mech_patch_metric metric,
                                    mech_patch_site site, mech_patch_result *out, mech_err *err);
// The same for mech_patch_path: each receiver's input gradient (on the
// corrupted run, with the other receivers' inputs held fixed as the exact
// patch holds them) times every earlier sender's clean - corrupted result.
// A sender no receiver comes after gets the corrupted metric (effect 0).
// Errors as mech_patch_path and mech_patch_attrib_sweep.
mech_status mech_patch_attrib_path(const mech_model *m, const mech_patch_pairs *pp, mech_patch_metric metric,
                                   const mech_patch_receiver *recv, int n_recv, mech_patch_result *out,
                                   mech_err *err);

// ACDC's --prefilter (interp/acdc.c; docs/acdc.md): EAP (mech_eap_scores)
// on ACDC's own inputs and metric ranks the edges, and ACDC tries only the
// best. The EAP metric follows o->metric: logit_diff is EAP's own (the
// gradient on the clean run); KL and L2, whose gradient on the clean run is
// 0, become the KL to the clean run's logits with the gradient on the
// corrupted run (clean and corrupted swapped), at the last position, or at
// every position for L2 and a KL with a mask. EAP's corrupted run reads the
// corrupted tokens as they are (o->pos_perm is not applied). scores
// [g->n_edges]: caller's storage. Errors: MECH_ERR_ARG for zero ablation (no
// corrupted inputs), and those of mech_eap_scores.
mech_status mech_acdc_eap_scores(const mech_model *m, const mech_acdc_graph *g, const int32_t *clean,
                                 const int32_t *corrupt, int B, int T, const mech_acdc_opts *o, double *scores,
                                 mech_err *err);
// Keeps the keep counted edges of g with the largest |score| (ties: graph
// order; NaN counts as 0) and makes every other counted edge absent, which
// mech_acdc_run then treats as removed (ablated from its first evaluation,
// never tried). rank (may be NULL): caller's [g->n_edges], each counted
// edge's place in the ranking (0 = the largest |score|), -1 for
// placeholders. keep >= the counted edges leaves g as it is.
mech_status mech_acdc_prefilter(mech_acdc_graph *g, const double *scores, int keep, int *rank, mech_err *err);
// Training tasks (interp/train_tasks.c; docs/train.md): batch sources for
// mech_trainer_step (pass mech_task_batch with the task as user). Each row
// of each batch is a function of (seed, batch index, row) only.

typedef struct mech_task mech_task;
typedef struct mech_rasp_program mech_rasp_program; // compiler/compiler.h

// Induction on repeated random tokens: each row is p distinct ids drawn
// uniformly from [0, vocab) repeated to fill T (x[t] = x[t - p]), the period p
// uniform in [min_period, T/2] per row; loss targets on the repeated part
// (positions t >= p, whose next token the earlier copy determines).
mech_status mech_task_induction(int vocab, int min_period, uint64_t seed, mech_task **out, mech_err *err);
// Next-token prediction on the text file at path, tokenized once with tok:
// each row a window of T tokens at a random offset, every position's target
// the token after it.
mech_status mech_task_text(const char *path, const mech_tokenizer *tok, uint64_t seed, mech_task **out, mech_err *err);
// The task of the RASP program at path (compiler/): rows [BOS] x1..xn SEP
// y1..yn with x random inputs (n = (T - 2) / 2 <= max_seq_len) and y the
// reference interpreter's output; targets on y. Token ids: 0 BOS, 1..|vocab|
// the input values (the compiler's numbering), |vocab| + 1 SEP, then the
// output values (found by running the program on random inputs of every
// length, sorted). MECH_ERR_RANGE when the output takes more than 4096 values.
mech_status mech_task_rasp(const char *path, uint64_t seed, mech_task **out, mech_err *err);
void mech_task_free(mech_task *t);
// The d_vocab a model needs for the task (induction: at least this).
int mech_task_vocab(const mech_task *t);
// The text task's token count (0 for the others); the RASP task's program
// (NULL for the others; borrowed).
size_t mech_task_text_tokens(const mech_task *t);
const mech_rasp_program *mech_task_rasp_program(const mech_task *t);
// MECH_ERR_ARG, saying why, when a model of d_vocab vocab cannot train on
// rows of T tokens of the task.
mech_status mech_task_check(const mech_task *t, int vocab, int T, mech_err *err);
// A mech_batch_fn: task is a mech_task.
mech_status mech_task_batch(void *task, int64_t index, int B, int T, int32_t *ids, int32_t *targets, mech_err *err);

typedef struct mech_task_score {
    double token_acc; // targets predicted (argmax) right
    double seq_acc;   // rows with every target right
    double loss;      // mean cross-entropy over the targets (NaN for RASP)
    int64_t tokens, seqs;
} mech_task_score;
// Scores m on n held-out rows of T tokens (batch indices no training run
// reaches). RASP: greedy decoding after SEP, each output from the input and
// the model's own earlier outputs, checked against the reference
// interpreter; the others: next-token argmax on the true prefix.
mech_status mech_task_accuracy(const mech_task *t, const mech_model *m, int T, int n, int threads,
                               mech_task_score *out, mech_err *err);

// ---------------------------------------------------------------------------
// For language bindings (interp/capi.c): patching with the options one by
// one (those of mech_patch_opts; cancel is the process-wide flag) and each
// result through out-parameters (*raw and *norm owned: mech_free; set also
// after a cancelled sweep), bracketed by mech_capi_call_begin/end
// (core/core.h); *flag gets what mech_capi_call_end returned. Path
// receivers as three arrays of n_recv (input: mech_patch_input).
mech_status mech_capi_patch_new(const mech_model *m, const int32_t *clean, int n_clean, const int32_t *corrupt,
                                int n_corrupt, int metric, int32_t answer, int32_t wrong, int pos, int naive,
                                int batch, mech_patch **out, int catch_sigint, int *flag, mech_err *err);
mech_status mech_capi_patch_sweep(mech_patch *p, int site, int *ndim, int64_t shape[3], float **raw, float **norm,
                                  double *clean, double *corrupted, int64_t *done, int catch_sigint, int *flag,
                                  mech_err *err);
mech_status mech_capi_patch_path(mech_patch *p, const int32_t *layer, const int32_t *head, const int32_t *input,
                                 int n_recv, int *ndim, int64_t shape[3], float **raw, float **norm, double *clean,
                                 double *corrupted, int64_t *done, int catch_sigint, int *flag, mech_err *err);
// sizeof of the structs a binding mirrors ("mech_lens_row", "mech_dla"), 0
// for other names.
size_t mech_capi_interp_sizeof(const char *type);
// ACDC on a new graph of m's shape with only these options (so that a
// binding's view of them does not change when mech_acdc_opts grows); the
// rest as mech_acdc_opts' defaults, cancelled by the process-wide flag.
// OUT: *g_out (owned: mech_acdc_graph_free) only on success.
typedef struct mech_capi_acdc_args {
    int metric, ablation;          // mech_acdc_metric, mech_acdc_ablation
    double tau;
    int abs_value, heads_ascending;
    const int32_t *answer, *wrong; // [B] or NULL
    const uint8_t *mask;           // [B*T] or NULL
    int n_out;
    const int32_t *pos_perm;       // [T] or NULL
    int split_embed, threads;
} mech_capi_acdc_args;
mech_status mech_capi_acdc(const mech_model *m, const int32_t *clean, const int32_t *corrupt, int B, int T,
                           const mech_capi_acdc_args *a, mech_acdc_graph **g_out, double *metric_final,
                           int64_t *n_trials, int catch_sigint, int *flag, mech_err *err);
// A graph read without mirroring its structs: node and edge counts, a
// node's name (borrowed), every edge's fields into caller arrays [n_edges].
int mech_capi_acdc_n_nodes(const mech_acdc_graph *g);
int mech_capi_acdc_n_edges(const mech_acdc_graph *g);
const char *mech_capi_acdc_node_name(const mech_acdc_graph *g, int i);
void mech_capi_acdc_edges(const mech_acdc_graph *g, int32_t *sender, int32_t *receiver, int32_t *type,
                          uint8_t *present, double *effect);
// EAP scores (mech_eap_scores) of every edge of a new graph of m's shape,
// with the metric kind (MECH_METRIC_LOGIT_DIFF or _LOGPROB), pos, answer
// and wrong ([B]) of a mech_metric. OUT on success: *g_out
// (mech_acdc_graph_free) and *scores_out ([n_edges], mech_free).
mech_status mech_capi_eap(const mech_model *m, const int32_t *clean, const int32_t *corrupt, int B, int T,
                          int metric, int pos, const int32_t *answer, const int32_t *wrong, int split_embed,
                          int threads, mech_acdc_graph **g_out, double **scores_out, double *value, int catch_sigint,
                          int *flag, mech_err *err);
// Tuned lens (interp/tuned_lens.c; docs/lens.md)
//
// Belrose et al. 2023 ("Eliciting Latent Predictions from Transformers with
// the Tuned Lens"): residual layer l < L is read as the logit lens reads it
// after an affine translator h -> h + A_l h + b_l (A_l (C, C), b_l (C)), trained
// to minimise KL(final output || lens output) averaged over positions and
// prompts. A = 0, b = 0 is the logit lens exactly. Layer L has no translator.

typedef struct mech_tuned_lens {
    int n_layers;         // L: translators for residual layers 0..L-1
    int d_model;          // C
    float *weight;        // (L, C, C): A_l[i][j] = weight[(l*C + i)*C + j], (A_l h)_i = sum_j A_l[i][j] h_j
    float *bias;          // (L, C)
    mech_config cfg;      // the config of the model the lens is for
    uint64_t fingerprint; // mech_tuned_lens_fingerprint of that model
} mech_tuned_lens;

// A lens of zeros (the logit lens) for m. OUT: *out owned (mech_tuned_lens_free).
mech_status mech_tuned_lens_new(const mech_model *m, mech_tuned_lens **out, mech_err *err);
void mech_tuned_lens_free(mech_tuned_lens *t);
// FNV-1a (64 bits) of the weights the lens reads through: the final LayerNorm
// and the unembedding (with its bias). Ties a lens to its model's weights.
uint64_t mech_tuned_lens_fingerprint(const mech_model *m);
// MECH_OK when t was made for m: same config (else MECH_ERR_SHAPE naming the
// first field that differs) and same fingerprint (else MECH_ERR_ARG).
mech_status mech_tuned_lens_check(const mech_tuned_lens *t, const mech_model *m, mech_err *err);

// The gradient of translator `layer` on n residual rows h (n, C) of that
// layer, against the reference logits ref (n, V) (the model's own, rows in
// the same order): kl = mean over rows of KL(softmax(ref) || softmax(lens
// logits)) and its derivatives grad_w (C, C), grad_b (C) (caller's storage;
// either may be NULL). Analytic: dKL/dz = (p - q)/n back
// through the unembedding and the final LayerNorm (mech_layernorm_backward).
// Errors: MECH_ERR_ARG (layer out of range, n < 1), those of
// mech_tuned_lens_check (t not for m), MECH_ERR_NOMEM.
mech_status mech_tuned_lens_grad(const mech_model *m, const mech_tuned_lens *t, int layer, const float *h,
                                 const float *ref, int n, double *kl, float *grad_w, float *grad_b, mech_err *err);

typedef struct mech_tuned_lens_opts {
    int steps;           // optimiser steps (250)
    int batch;           // prompts per step (8; at most the number given)
    double lr;           // 1.0: the step size is lr * (1 - momentum), decayed linearly to 0
    double momentum;     // 0.9 (Nesterov)
    double weight_decay; // 1e-3 (L2, on A and b, towards the identity map)
    double clip;         // 1.0: the gradient of all translators together is scaled to this norm
                         // when larger; <= 0: no clipping
    uint64_t seed;       // 1: the order prompts are drawn in
    int threads;         // 0: one per CPU
    // Called after each step with its number (1..steps) and the mean over
    // layers of the batch's KL before the step; non-zero stops the training
    // (MECH_ERR_CANCELLED, no lens). May be NULL.
    int (*progress)(void *user, int step, int steps, double kl);
    void *user;
} mech_tuned_lens_opts;

// The defaults above (tuned-lens's own: SGD with Nesterov momentum 0.9,
// lr 1 x (1 - 0.9), linear decay, weight decay 1e-3, clipping at 1, 250 steps).
mech_tuned_lens_opts mech_tuned_lens_defaults(void);

// Trains a tuned lens for m on n prompts (prompts[i]: lens[i] >= 1 token ids,
// BOS included if wanted): each step runs `batch` prompts through the model
// (drawn without replacement, reshuffled each epoch, from seed) and takes
// one step of every translator on its KL over all their positions.
// Deterministic for given inputs, options and thread count.
// OUT: *out owned (mech_tuned_lens_free). Errors: MECH_ERR_ARG (n < 1, a bad
// option, a prompt longer than n_ctx), MECH_ERR_RANGE (a token >= V),
// MECH_ERR_CANCELLED (progress said stop), MECH_ERR_NOMEM.
mech_status mech_tuned_lens_fit(const mech_model *m, const int32_t *const *prompts, const int *lens, int n,
                                const mech_tuned_lens_opts *o, mech_tuned_lens **out, mech_err *err);

// The logit lens of the residual streams res[0..L] (each (B, T, C), laid out
// as the run's) in place of the run's cached ones (interp/lens.c): the run
// gives B, T and its padding. Otherwise mech_lens_logit.
mech_status mech_lens_logit_resid(const mech_model *m, const mech_run *run, const float *const *res, int k,
                                  const int32_t *targets, mech_lens_row **rows, size_t *n_rows, mech_err *err);
// The tuned lens: mech_lens_logit with layer l < L's residual translated by t
// first (rows, statistics and KL to the final layer as there). Needs the
// caches mech_lens_logit needs. Errors: those of mech_lens_logit and
// mech_tuned_lens_check.
mech_status mech_lens_tuned(const mech_model *m, const mech_run *run, const mech_tuned_lens *t, int k,
                            const int32_t *targets, mech_lens_row **rows, size_t *n_rows, mech_err *err);
// The mean KL of each layer 0..L over rows (of mech_lens_logit or
// mech_lens_tuned): out[L + 1] (caller's storage; 0 for a layer without rows).
void mech_lens_kl_by_layer(const mech_lens_row *rows, size_t n_rows, int L, double *out);

// The mean KL per layer 0..L of the logit lens and of the tuned lens t over
// every position of n prompts (each run on its own): out kl_logit[L + 1],
// kl_tuned[L + 1] (caller's storage). The held-out figures of docs/lens.md.
// Errors: those of the forward pass, mech_lens_logit and mech_lens_tuned.
mech_status mech_tuned_lens_eval(const mech_model *m, const mech_tuned_lens *t, const int32_t *const *prompts,
                                 const int *lens, int n, double *kl_logit, double *kl_tuned, mech_err *err);

// Writes t as safetensors: layers.{l}.weight (C, C) and layers.{l}.bias (C),
// F32, with metadata mech.tuned_lens.config (the model's config as JSON) and
// mech.tuned_lens.fingerprint (16 hex digits), plus n_meta extra pairs.
// Atomic (a temporary file renamed into place).
mech_status mech_tuned_lens_save(const mech_tuned_lens *t, const char *path, const char *const *meta_keys,
                                 const char *const *meta_values, size_t n_meta, mech_err *err);
// Reads a file mech_tuned_lens_save wrote, refusing anything else: a
// truncated or malformed file, missing metadata, a tensor missing, extra,
// not F32, of the wrong shape or not finite (MECH_ERR_FORMAT or the
// safetensors reader's error, naming the file and the tensor). With m (may be
// NULL) also mech_tuned_lens_check. OUT: *out owned (mech_tuned_lens_free).
mech_status mech_tuned_lens_load(const char *path, const mech_model *m, mech_tuned_lens **out, mech_err *err);
// Faithfulness curves (interp/faithfulness.c; the MIB benchmark's circuit
// track, Mueller et al. 2025). One point: the circuit of the top n_edges
// counted edges by |score| (ties in graph order, zero scores included, so
// that 100% is the whole model), frac = n_edges / counted edges, metric =
// the ACDC metric of the clean run with every other edge ablated as ACDC
// ablates it, f = (metric - m_empty) / (m_full - m_empty) (NAN when
// m_full == m_empty).
typedef struct mech_faith_point {
    double frac;
    int n_edges;
    double metric, f;
} mech_faith_point;
typedef struct mech_faith_result {
    double m_full, m_empty; // every counted edge present / none
    double cpr, cmd;        // area under f, area between f and 1, over frac (trapezoids)
} mech_faith_result;

// The curve of scores (g's order, e.g. mech_eap_scores') at the sizes
// fracs[0..n_fracs) (fractions of the counted edges in [0, 1]; the circuit of
// a fraction p has floor(p * counted) edges, as MIB's int(pct * n)) on B
// clean sequences of T tokens, ablation and metric o's (mech_acdc_opts:
// metric, ablation, answer/wrong, mask, n_out, threads; corrupt as for
// mech_acdc_run). OUT: out[n_fracs] sorted by frac, *res. g is not changed.
// Errors: MECH_ERR_ARG (missing input, a size outside [0, 1], a graph of
// another shape), MECH_ERR_RANGE (a token or answer out of range, T beyond
// the context), MECH_ERR_NOMEM.
mech_status mech_eap_faithfulness(const mech_model *m, const mech_acdc_graph *g, const double *scores,
                                  const int32_t *clean, const int32_t *corrupt, int B, int T,
                                  const mech_acdc_opts *o, const double *fracs, int n_fracs, mech_faith_point *out,
                                  mech_faith_result *res, mech_err *err);
// f of every point from its metric and the two ends, then CPR and CMD (for
// curves measured in parts, e.g. one batch per prompt length, whose metrics
// the caller has averaged).
void mech_faith_finish(mech_faith_point *p, int n, double m_full, double m_empty, mech_faith_result *res);
// CPR = sum over i of (frac[i+1] - frac[i]) (f[i] + f[i+1]) / 2, CMD the same
// with |1 - f|, over p[0..n) sorted by frac (0 for n < 2). Either may be NULL.
void mech_faith_areas(const mech_faith_point *p, int n, double *cpr, double *cmd);

#endif
