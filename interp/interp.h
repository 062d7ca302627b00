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

// Runs ACDC on g (edges already absent stay absent) over B sequences of T
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
