/*
** cli/cli.h: private to the mech command-line tool: command entry points and
** the small argument helpers they share. Exit codes: 0 success, 1 runtime
** error, 2 usage error.
*/
#ifndef MECH_CLI_H
#define MECH_CLI_H

#include "mech.h"

#include <stdio.h>

typedef struct cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv); // argv[0] is the command name
    const char *summary;
    const char *usage; // full --help text
} cli_cmd;

int cmd_tokenize(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_rasp(int argc, char **argv);
int cmd_compile(int argc, char **argv);
int cmd_db(int argc, char **argv);
int cmd_lens(int argc, char **argv);
int cmd_tuned_lens(int argc, char **argv);
int cmd_heads(int argc, char **argv);
int cmd_patch(int argc, char **argv);
int cmd_attrib(int argc, char **argv);
int cmd_acdc(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_eap(int argc, char **argv);
int cmd_tui(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_train(int argc, char **argv);

extern const cli_cmd cli_commands[];
const cli_cmd *cli_find(const char *name);

// Prints "mech CMD: error: ..." and a hint; returns 2.
int cli_usage(const char *cmd, const char *fmt, ...) MECH_PRINTF(2, 3);
// Prints "mech CMD: error: <err->msg>"; returns 1.
int cli_fail(const char *cmd, const mech_err *err);
// Prints the command's --help text to stdout; returns 0.
int cli_help(const char *cmd);

// Matches argv[*i] against --name (taking the value from the next argument
// or from --name=value). Returns 1 and sets *val when it matched, 0 when it
// is another option, -1 when the value is missing (after printing why).
int cli_opt(const char *cmd, int argc, char **argv, int *i, const char *name, const char **val);
// The one parser of numeric option values: the whole string, decimal, no
// leading space or '+', a '-' only when lo < 0; prints why and returns -1.
int cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
// The same for a finite number in [lo, hi] (nan, inf and hex refused).
int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);
// --threads N, N in 1..CLI_MAX_THREADS (leave it out for one per CPU): the
// thread count of every pool the command makes from now on. 0 or -1.
// "s" unless n is 1: "%d head%s", n, cli_s(n).
const char *cli_s(long long n);
// 1 when path ends in ext (".npz") after a non-empty name: output files are
// written only in the format their extension names.
int cli_has_ext(const char *path, const char *ext);
// x in the fewest significant digits that read back as exactly x (0.05,
// not 0.050000000000000003), for parameters stored as text.
const char *cli_shortest(char buf[32], double x);
#define CLI_MAX_THREADS 256
int cli_threads(const char *cmd, const char *s, long *out);
// Appends token id as a JSON string of its bytes (" Mary"), or <id> when
// there is no tokenizer or no such token.
void cli_token_text(mech_buf *b, const mech_tokenizer *tok, int32_t id);
// Prints the k most likely next tokens of one logits row (V entries).
void cli_print_top_k(const mech_tokenizer *tok, const float *logits, int V, int k);
// Parses "1,2,3" (or spaces) into ids; *ids owned by the caller.
int cli_ids(const char *cmd, const char *s, int32_t **ids, size_t *n);

// Models from `mech compile` (cli/compiled.c). The program in m's metadata
// (*p NULL when m is not compiled); 0 or an exit code.
int cli_compiled_program(const char *cmd, const mech_model *m, const char *path, mech_rasp_program **p);
// An --input text ("a b c") as BOS + token ids (*ids owned); a token outside
// the vocab is a usage error (2), as in `mech rasp`.
int cli_compiled_ids(const char *cmd, const mech_rasp_program *p, const char *input, int32_t **ids, size_t *n);
// Refuses --input for a model that is not compiled and --prompt for one
// that is; *p gets the program (owned) when m is compiled. 0 or an exit code.
int cli_compiled_input_check(const char *cmd, const mech_model *m, const char *const *texts, const int *kinds, int n,
                             mech_rasp_program **p);
// Token id as the program names it: BOS, a vocab value as JSON, PAD, <id>.
void cli_compiled_token(mech_buf *b, const mech_rasp_program *p, int32_t id);

// A batch of token sequences from --prompt / --ids (cli/experiment.c),
// padded to the longest with an attention mask when their lengths differ;
// tok is the model's tokenizer or the built-in one.
#define CLI_MAX_SEQS 256
typedef struct cli_inputs {
    int32_t *ids;     // (B, T), padding included
    int B, T;
    uint8_t *mask;    // (B, T) 1 = real token, or NULL when every sequence has T tokens
    int *start, *len; // (B): sequence b is ids[b*T + start[b] .. + len[b]) (BOS included)
    int32_t bos;      // the BOS id put in front of the sequences (of the text ones by default), or -1 for none
    const mech_tokenizer *tok;
    mech_tokenizer *own_tok;
} cli_inputs;
// How cli_batch builds the batch: --prepend-bos / --no-prepend-bos,
// --padding-side left|right, --allow-special.
typedef struct cli_batch_opts {
    int bos;      // -1: default (text gets BOS, id lists do not), 0: never, 1: always
    int pad_left; // pad on the left (default: right)
    int special;  // <|endoftext|> in text becomes its token
} cli_batch_opts;
#define CLI_BATCH_OPTS_INIT {.bos = -1}
// Matches one of the options above at argv[*i]: 1 matched, 0 another
// option, -1 a usage error (printed).
int cli_batch_opt(const char *cmd, int argc, char **argv, int *i, cli_batch_opts *o);
// texts[i] is a prompt, an id list when is_ids[i] is 1, a compiled model's
// --input when 2 (BOS included); o NULL: the defaults.
// BOS is the model's (<|endoftext|> for GPT-2; id 0 for a compiled model,
// which gets it only with --prepend-bos). 0 or an exit code.
int cli_batch(const char *cmd, const mech_model *m, const char *const *texts, const int *is_ids, int n,
              const cli_batch_opts *o, cli_inputs *in);
void cli_inputs_free(cli_inputs *in);
// The BOS token of m: a compiled model's own (id 0, which its programs read at
// position 0), else tok's <|endoftext|> when m's vocabulary has it (tok may be
// NULL: the built-in GPT-2 vocabulary's); -1 when there is none.
int32_t cli_model_bos(const mech_model *m, const mech_tokenizer *tok);
// Loads the model at path for an analysis command (lens, heads, attrib,
// patch, acdc), refusing one with no transformer blocks as a usage error,
// before any run is opened: what says what the command would have read.
// 0, or the exit code after printing why (*m is then NULL).
int cli_model_load_blocks(const char *cmd, const char *path, const char *what, mech_model **m);
// Opens the results database db for a command (cli/experiment.c): write
// (mech_store_open: creates a missing file) or read-only
// (mech_store_open_read: never creates). 0, or the exit code after printing
// why: 2 for an empty --db, 1 for a missing, foreign or damaged file.
int cli_store_open(const char *cmd, const char *db, int write, mech_store **s);
// Matches --prompt TEXT / --ids LIST / --input "a b" at argv[*i], appending
// to texts/is_ids (0, 1, 2), and --threads N (cli_threads), the options of
// every command that runs a model: 1 matched, 0 another option, -1 a usage
// error (printed).
int cli_seq_opt(const char *cmd, int argc, char **argv, int *i, const char **texts, int *is_ids, int *n, int max);
// Clean/corrupt prompt pairs (cli/pairs.c). line is the file line (or the
// dataset index + 1); wrong is -1 when the pair has none.
typedef struct cli_pair {
    int32_t *clean, *corrupt;
    size_t n_clean, n_corrupt;
    int32_t answer, wrong;
    char *clean_text, *corrupt_text;
    int line;
} cli_pair;
// JSONL ({"clean", "corrupt", "answer", "wrong"} per line) or TSV (the same
// four columns): prompts as text or token ids, for a compiled RASP model
// input sequences with output values as answers. 0 or an exit code.
int cli_pairs_read(const char *cmd, const char *path, const mech_model *m, const mech_tokenizer *tok, cli_pair **out,
                   int *n);
// A built-in dataset: ioi, greater_than, induction (len) or compiled (len,
// corruption random|shuffle). n: the pairs, 0 for the dataset's default (20;
// compiled MECH_DATASET_COMPILED_N; *n_out is the count made). *len: in, the length asked for, 0 for the
// dataset's default (induction 10; compiled: mech_dataset_compiled's);
// out, the length used. A compiled dataset whose clean outputs are all the
// same gets a warning. 0 or an exit code.
int cli_pairs_dataset(const char *cmd, const char *name, long n, long *len, long seed, const char *corruption,
                      const mech_model *m, const mech_tokenizer *tok, cli_pair **out, int *n_out);
void cli_pairs_free(cli_pair *p, int n);
// --prepend-bos for pairs (cli/experiment.c): the model's BOS in front of
// every clean and corrupt prompt. Pair files and the built-in datasets have
// none by default (the ACDC reference's datasets are tokenized without it).
// 0 or an exit code (2 for a compiled model or a vocabulary without BOS).
int cli_pairs_bos(const char *cmd, const mech_model *m, const mech_tokenizer *tok, cli_pair *p, int n);

// A progress line on stderr (cli/progress.c): items done, rate and ETA,
// only when stderr is a terminal.
typedef struct cli_progress {
    const char *what;
    int64_t total;
    double t0, last;
    int tty, shown;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *what, int64_t total);
void cli_progress_update(cli_progress *p, int64_t done);
// The same with detail (e.g. "120 trials/s") in place of the item rate.
void cli_progress_detail(cli_progress *p, int64_t done, const char *detail);
void cli_progress_end(cli_progress *p); // clears the line
// "estimate: N pairs x S patched sites; the first pair took X s, so about T
// in all": a sweep's length from its first item, before the rest runs.
void cli_estimate(FILE *f, int64_t items, const char *item, int64_t sites, double first_s);

// Ctrl-C, SIGTERM and SIGHUP set the returned flag (pass it as a cancel flag) until
// cli_interrupts_release; long commands stop after the current item.
volatile int *cli_interrupts_catch(void);
void cli_interrupts_release(void);
// The exit status of a command stopped by one of them (as shells report 128 + SIGINT).
#define CLI_EXIT_INTERRUPTED 130

// --spec FILE (cli/spec.c): when argv has it, *out_argv gets the spec's
// options followed by the rest of argv (free with cli_spec_free); otherwise
// *out_argc is 0. 0 or an exit code.
int cli_spec_expand(const char *cmd, int argc, char **argv, int *out_argc, char ***out_argv);
void cli_spec_free(int argc, char **argv);
// The --spec FILE of the running command, or NULL (cli_usage names it).
const char *cli_spec_path(void);

// --shard K/N: *k in [0, n) (0-based), *n >= 1. "auto": this Slurm array
// task's shard from SLURM_ARRAY_TASK_ID/_COUNT/_MIN/_MAX (the task MIN is
// shard 1, each step on the next; docs/cluster.md), refused when a variable
// is missing or they do not describe an evenly spaced array. 0 or -1 (printed).
int cli_shard(const char *cmd, const char *s, int *k, int *n);

// Reports err, rolls back the open batch and marks the run failed; returns 1.
int cli_run_failed(const char *cmd, mech_store *s, int64_t run, const mech_err *err);
// Opens db and starts a run of kind with the command line and parameters.
int cli_run_open(const char *cmd, const char *db, const char *kind, const char *model, int argc, char **argv,
                 const char *params_json, mech_store **s, int64_t *run);
// --resume RUN: the model at path must be the file the run was made with.
// Recomputes mech_store_model_hash(path) and compares it with the run's
// recorded hash (NULL: none recorded; a warning, and no check). 0, or 1 after
// a message naming the path and both hashes.
int cli_resume_check_model(const char *cmd, int64_t run, const char *path, const char *recorded_hash);

// Writes b to path atomically (mech_outfile), or to stdout when path is
// "-". 0, or 1 after a message naming cmd and the path.
int cli_write_buf(const char *cmd, const char *path, const mech_buf *b);

#endif
