/*
** cli/main.c: the mech command: dispatch, --help, and the argument helpers
** every command shares.
*/
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const cli_cmd cli_commands[] = {
    {"tokenize", cmd_tokenize, "text to GPT-2 token ids and back",
     "usage: mech tokenize [--text TEXT] [--decode] [--allow-special] [--[no-]prepend-bos] [--model DIR]\n"
     "\n"
     "Reads text from stdin (or --text) and prints its token ids on one line,\n"
     "separated by single spaces. With --decode, reads ids (spaces, commas or\n"
     "newlines between them) and writes the decoded bytes exactly (no newline\n"
     "added, so encoding then decoding a file gives it back byte for byte;\n"
     "on a terminal a newline ends the text).\n"
     "\n"
     "  --text TEXT       encode TEXT instead of stdin\n"
     "  --decode          ids to text\n"
     "  --allow-special   <|endoftext|> in the text becomes token 50256\n"
     "                    (default: it is plain text, like tiktoken's encode_ordinary)\n"
     "  --prepend-bos     print <|endoftext|> (50256) first, as the commands that run\n"
     "                    a model put it before text; off by default here, so that\n"
     "                    the ids decode back to exactly the text (encoding only)\n"
     "  --no-prepend-bos  no <|endoftext|> first (the default here)\n"
     "  --model DIR       use the tokenizer files in DIR (vocab.json + merges.txt or\n"
     "                    encoder.json + vocab.bpe) instead of the built-in GPT-2 one\n"},
    {"info", cmd_info, "a model's config, parameter count and hook names",
     "usage: mech info MODEL [--opt-in] [--tensors]\n"
     "\n"
     "MODEL is a .safetensors file or a directory holding model.safetensors\n"
     "(+ config.json, + tokenizer files).\n"
     "\n"
     "  --opt-in    also list the opt-in hooks (attn.hook_result, hook_q_input,\n"
     "              hook_k_input, hook_v_input, hook_mlp_in)\n"
     "  --tensors   list the weight tensors with their shapes\n"},
    {"run", cmd_run, "run a model on a prompt: top-k next tokens, logits, cached hooks",
     "usage: mech run --model MODEL (--prompt TEXT | --ids 1,2,3 | --input \"a b c\")... [options]\n"
     "\n"
     "Runs the model and prints, for each sequence, the top-k next tokens after\n"
     "its last position (a compiled RASP model: its decoded output, one JSON\n"
     "array per sequence). Several --prompt/--ids/--input make a batch (unequal\n"
     "lengths are padded). Before anything is allocated, the run's memory (weights,\n"
     "activations, logits and cache) is checked against 80 % of the RAM.\n"
     "\n"
     "  --model MODEL     .safetensors file or model directory\n"
     "  --prompt TEXT     text, tokenized with the model's tokenizer files or the\n"
     "                    built-in GPT-2 tokenizer\n"
     "  --ids LIST        token ids, e.g. 464,2068,7586\n"
     "  --top-k K         how many predictions to print (default 5)\n"
     "  --logits FILE.npy write float32 logits [B, T, d_vocab] as .npy\n"
     "  --cache GLOB      cache every hook matching GLOB (repeatable), e.g.\n"
     "                    'blocks.*.attn.hook_pattern', '*' for all default hooks\n"
     "  --out FILE.npz    write the cached hooks as .npz, one array per hook name,\n"
     "                    plus tokens (int32 ids [B, T]), token_strings and, for a\n"
     "                    compiled model, residual_labels ([d_model] name:value)\n"
     "  --threads N       worker threads, 1 to 256 (default: one per CPU)\n"
     "  --allow-special   <|endoftext|> in --prompt becomes its token\n"
     "  --prepend-bos     put the model's BOS token (<|endoftext|> for GPT-2) in front\n"
     "                    of every sequence; the default for --prompt text, as in\n"
     "                    TransformerLens (GPT-2 was trained on documents that\n"
     "                    follow <|endoftext|>); --ids lists are taken as written\n"
     "  --no-prepend-bos  never add BOS\n"
     "  --padding-side S  sequences of unequal lengths are padded to the longest\n"
     "                    with an attention mask, on the right (default) or left;\n"
     "                    each gives exactly its own results, read at its own last\n"
     "                    token; padding reads 0\n"
     "  --input \"a b c\"   for models from `mech compile`: the RASP input (BOS is\n"
     "                    added); prints the decoded output as one JSON array, like\n"
     "                    `mech rasp`. --ids works too: 0 (BOS), then the vocab's\n"
     "                    ids 1..N in the order the program lists it\n"
     "\n"
     "Exit status: 0 ok; 2 for bad arguments or input (a token outside the\n"
     "vocabulary, too many tokens, a file name without .npy/.npz); 1 when the\n"
     "model cannot be loaded, the run does not fit in memory or a file cannot\n"
     "be written.\n"},
    {"init", cmd_init, "write a random-weight GPT-2 model (for tests, demos, benchmarks)",
     "usage: mech init -o FILE.safetensors [--preset tiny|gpt2-small] [options]\n"
     "\n"
     "Writes a model with GPT-2's initialisation (normal(0, 0.02) weights) and\n"
     "its config in the file's __metadata__.\n"
     "\n"
     "  -o, --output FILE   where to write\n"
     "  --preset NAME       tiny (2 layers, 4 heads, d_model 64, GPT-2 vocab; default)\n"
     "                      or gpt2-small (124M)\n"
     "  --seed N            random seed (default 1)\n"
     "  --dtype T           f32 (default), f16 or bf16\n"
     "  --layers N --heads N --d-model N --d-head N --d-mlp N --n-ctx N --vocab N\n"
     "  --act gelu_new|gelu|relu  --no-layernorm  --attn-only  --bidirectional\n"
     "  --untied            separate unembedding (lm_head.weight)\n"},
    {"demo", cmd_demo, "a tour: tokenize, write a small model, load it, run it with every hook cached",
     "usage: mech demo [--out DIR]\n"
     "\n"
     "Tokenizes a sentence with the built-in GPT-2 tokenizer, writes a small\n"
     "random-weight GPT-2, loads it back from disk, runs it with every hook\n"
     "cached and prints the top next tokens and a look at the attention\n"
     "patterns, then compiles a RASP program into weights and runs it. Nothing\n"
     "is downloaded, and nothing is left in the current directory.\n"
     "\n"
     "  --out DIR   keep the model as DIR/demo-model.safetensors (default: a\n"
     "              temporary folder under $TMPDIR or /tmp, removed at the end)\n"},
    {"rasp", cmd_rasp, "run a RASP program with the reference interpreter",
     "usage: mech rasp FILE.rasp --input \"a b c\" [--trace] [--dag]\n"
     "\n"
     "Parses the RASP program (docs/rasp.md), evaluates it on the input and\n"
     "prints the output sequence as one JSON array, e.g. [\"c\",\"b\",\"a\"],\n"
     "[3,3,3], [0,0.333333,0.5]; null marks none.\n"
     "\n"
     "  --input TEXT   the input tokens, separated by spaces; each must be in the\n"
     "                 program's vocab (quote a token to keep spaces: '\"a b\"')\n"
     "  --trace        print every s-op's values, one line per node, then the output\n"
     "                 (needs --input)\n"
     "  --dag          print the program's IR (one node per line); --input optional\n"
     "\n"
     "Exit status: 0 ok; 2 for a syntax or type error (FILE:LINE:COL: error: ...\n"
     "with the source line and a caret), a token outside the vocab or bad\n"
     "arguments; 1 when evaluation fails (e.g. a lambda divides by zero, or a\n"
     "categorical aggregate selects differing values) or FILE cannot be read.\n"},
    {"compile", cmd_compile, "compile a RASP program into transformer weights (verified)",
     "usage: mech compile FILE.rasp -o OUT.safetensors [--explain] [--no-verify]\n"
     "                    [--max-params N] [--max-values N] [--max-verify N]\n"
     "\n"
     "Compiles the program into a GPT-2-shaped model (no LayerNorm, ReLU MLPs,\n"
     "BOS at position 0) that runs on mech's forward pass with every hook, prints\n"
     "its size, checks it against the interpreter on every input up to\n"
     "max_seq_len (a seeded sample of 10,000 when there are more than 100,000,\n"
     "or fewer when checking them would exceed --max-verify; a notice says so)\n"
     "and writes it with the program, vocab, residual labels, readout and\n"
     "ground-truth circuit in its metadata. Run it with\n"
     "`mech run --model OUT.safetensors --input \"a b c\"`.\n"
     "\n"
     "  -o, --output FILE   where to write the model\n"
     "  --explain           print which layer, head or MLP units and residual\n"
     "                      dimensions compute each RASP variable\n"
     "  --no-verify         skip the check against the interpreter\n"
     "  --max-params N      refuse models of more parameters (default 1e8)\n"
     "  --max-values N      refuse s-ops that can hold more values, and MLPs of\n"
     "                      more input combinations (default 1e6)\n"
     "  --max-verify N      multiply-adds verification may take (default 3e11,\n"
     "                      about half a minute; refused with --no-verify)\n"
     "\n"
     "Sizes are checked before anything large is built. Progress shows on a\n"
     "terminal; Ctrl-C stops (exit 130, nothing written).\n"
     "\n"
     "Exit status: 0 ok; 2 for errors in the program (syntax, types, a value the\n"
     "model cannot encode, an input on which the program itself fails, a size\n"
     "over a limit); 1 when the compiled model disagrees with the interpreter (a\n"
     "compiler bug: the first such input is shown), memory runs out or a file\n"
     "cannot be read or written; 130 when interrupted. Nothing is written\n"
     "unless verification passes.\n"},
    {"db", cmd_db, "the results database: list, show, export, merge and join runs",
     "usage: mech db [--db FILE] ls\n"
     "       mech db [--db FILE] show RUN\n"
     "       mech db [--db FILE] export RUN (--csv FILE.csv | --npz FILE.npz)\n"
     "       mech db merge [--join] [--runs LIST] OUT.db IN.db...\n"
     "\n"
     "Every experiment command writes its run to one SQLite file (default\n"
     "mech.db). ls lists the runs, show prints one (kind, status, times, model\n"
     "and its content hash, command line, parameters, counts), export writes its\n"
     "results as CSV (--csv - for stdout) or its tensors as .npz; a file name\n"
     "must end in the format's extension.\n"
     "\n"
     "merge copies every run of the inputs into OUT (created if missing). Run ids\n"
     "are renumbered: the copies are appended after OUT's runs, inputs in order,\n"
     "and merge prints each run's old and new id (IN run 1 -> run 3).\n"
     "merge --join makes the shards of one sweep (patch --shard K/N) ONE run in\n"
     "OUT, as if the sweep had run unsharded: the inputs' runs must be exactly\n"
     "shards 1..N of one sweep (same kind, model hash and parameters but the\n"
     "shard), all done. --runs 3,4,5 takes only those runs of each input (the\n"
     "shards, from a file that holds other runs too).\n"
     "\n"
     "ls, show, export and merge's inputs only read: they never create or modify\n"
     "a file and work on read-only files and directories. Commands that write\n"
     "create a database only where no file exists; an existing file that is not\n"
     "a mech database (an empty file too), is from a newer mech, or is damaged\n"
     "(truncated, failing SQLite's quick_check, an index that lost rows) is\n"
     "refused and left untouched. The schema is in docs/schema.md, so\n"
     "`sqlite3 mech.db 'select ...'` works without mech.\n"},
    {"lens", cmd_lens, "logit lens: every layer's residual stream read through the unembedding",
     "usage: mech lens --model MODEL (--prompt TEXT | --ids 1,2,3)... [--target TOKEN] [--top-k K] [--tuned LENS]\n"
     "                 [--db FILE]\n"
     "       mech lens --model COMPILED --input \"a b c\" [--db FILE]\n"
     "\n"
     "Reads each layer's residual stream (resid_pre of every block, then the\n"
     "final resid_post) through the final LayerNorm, recomputed for that\n"
     "residual, and the unembedding: for every position the top-k tokens with\n"
     "their probabilities, KL(final || layer) and the entropy, and with --target\n"
     "the target token's rank and probability. Writes one run to the results\n"
     "database (default mech.db; rows in `results` with site 'lens') and prints\n"
     "its id and the last position of the first sequence. Formulas: docs/lens.md.\n"
     "\n"
     "  --target TOKEN   a token id, or text that is exactly one token\n"
     "  --top-k K        tokens kept per layer and position (default 5, at most 32)\n"
     "  --tuned LENS     also the tuned lens in LENS.safetensors (`mech tuned-lens`),\n"
     "                   stored as a second lens run (parameter \"tuned\"); prints\n"
     "                   both lenses side by side and the mean KL of each layer\n"
     "                   over every position of both (also stored: kl_by_layer)\n"
     "  --db FILE        the results database (default mech.db)\n"
     "  --threads N      worker threads, 1 to 256 (default: one per CPU)\n"
     "  --allow-special, --prepend-bos, --no-prepend-bos, --padding-side left|right\n"
     "                   as for `mech run` (text gets BOS by default; unequal lengths\n"
     "                   are padded, each sequence's rows numbered from its first token)\n"
     "  --input \"a b c\"  for models from `mech compile`: the decoder lens instead,\n"
     "                   each layer's residual stream read as the RASP variables\n"
     "                   the compiler placed in it: - in the layers before the one\n"
     "                   that computes a variable, then its values as the\n"
     "                   interpreter writes them (`mech rasp --trace`)\n"},
    {"tuned-lens", cmd_tuned_lens, "train a tuned lens (per-layer affine translators) for `mech lens --tuned`",
     "usage: mech tuned-lens --model MODEL -o LENS.safetensors (--text FILE | --prompt TEXT | --ids 1,2,3)...\n"
     "                       [--seq-len N] [--heldout N] [--steps N] [--batch N] [--lr X]\n"
     "                       [--momentum X] [--weight-decay X] [--seed N] [--threads N]\n"
     "\n"
     "Trains the tuned lens of Belrose et al. (2023): for each residual layer\n"
     "l < L an affine translator h -> h + A h + b (A, b start at 0: the logit\n"
     "lens), fitted to minimise KL(final output || lens output) over every\n"
     "position, with SGD and Nesterov momentum as the reference code (step\n"
     "lr x (1 - momentum), decayed linearly to 0; gradient norm clipped at 1).\n"
     "The last sequences are held out: the KL per layer of the logit lens and of\n"
     "the tuned lens on them is printed and kept in the file's metadata. Writes\n"
     "LENS.safetensors (layers.L.weight, layers.L.bias; the model's config and a\n"
     "fingerprint of its unembedding in __metadata__) atomically: Ctrl-C stops\n"
     "and writes nothing (exit 130). Progress on stderr. Formulas: docs/lens.md.\n"
     "\n"
     "  -o, --output FILE  where to write the lens (.safetensors)\n"
     "  --text FILE      training text, tokenized and cut into sequences of\n"
     "                   --seq-len tokens (default 32), each after BOS\n"
     "  --prompt TEXT, --ids 1,2,3  more sequences (repeatable)\n"
     "  --heldout N      sequences held out for the KL table (default: a tenth\n"
     "                   of them when there are 10 or more, else none)\n"
     "  --steps N        optimiser steps (default 250)\n"
     "  --batch N        sequences per step (default 8)\n"
     "  --lr X           learning rate (default 1; the step is X (1 - momentum))\n"
     "  --momentum X     Nesterov momentum, 0 to <1 (default 0.9)\n"
     "  --weight-decay X L2 towards the identity map (default 0.001)\n"
     "  --seed N         the order sequences are drawn in (default 1)\n"
     "  --threads N      worker threads, 1 to 256 (default: one per CPU)\n"
     "  --allow-special, --prepend-bos, --no-prepend-bos, --padding-side left|right\n"
     "                   as for `mech run`\n"},
    {"heads", cmd_heads, "previous-token, duplicate-token and induction scores of every head",
     "usage: mech heads --model MODEL ((--prompt TEXT | --ids 1,2,3 | --input \"a b c\")... | --random N [--batch B] [--seed S])\n"
     "                  [--db FILE] [--threads N]\n"
     "\n"
     "Scores every head against TransformerLens's head_detector patterns\n"
     "(previous token, duplicate token, induction; score = sum(A*D)/sum(A) of\n"
     "the head's attention A on the detection pattern D, averaged over the\n"
     "batch) on the given prompts, or on B sequences of N random tokens\n"
     "repeated once (--random N, the usual induction test). Writes one run to\n"
     "the results database (site 'heads', metric = the score's kind) and prints\n"
     "its id and the best head of each kind. Formulas: docs/lens.md.\n"
     "\n"
     "  --input \"a b c\"  a compiled RASP model's input (BOS added)\n"
     "  --random N       B sequences [BOS] r r of N random tokens r, as\n"
     "                   TransformerLens's induction test (--batch B, default 8;\n"
     "                   --seed S); --no-prepend-bos leaves BOS out\n"
     "  --db FILE        the results database (default mech.db)\n"
     "  --threads N      worker threads, 1 to 256 (default: one per CPU)\n"
     "  --prepend-bos, --no-prepend-bos, --padding-side left|right, --allow-special\n"
     "                   as for `mech run`: text gets BOS by default; sequences of\n"
     "                   unequal lengths are padded and each is scored on its own tokens\n"},
    {"patch", cmd_patch, "activation patching sweeps over clean/corrupt prompt pairs",
     "usage: mech patch --model MODEL (--pairs FILE | --dataset NAME [--n N] [--seed S] [--len L])\n"
     "                  [--sweep SITE] [--metric METRIC] [--method exact|attrib|both]\n"
     "                  [--db FILE] [--naive]\n"
     "                  [--shard K/N|auto] [--spec FILE.json] [--threads N] [--dry-run]\n"
     "       mech patch --resume RUN [--db FILE]\n"
     "\n"
     "For every pair, patches clean activations into the corrupted run, one site\n"
     "at a time, and measures the metric at the last position (TransformerLens's\n"
     "denoising direction; docs/patching.md). Each patched run starts at the\n"
     "patched block from the cached corrupted residual stream. Results go to\n"
     "the database, one transaction per pair (metric, and 'effect' = (metric -\n"
     "corrupted) / (clean - corrupted); arrays pairN.METRIC, pairN.effect); a run that is\n"
     "interrupted (Ctrl-C) or killed keeps every finished pair, and --resume RUN\n"
     "finishes the rest with the run's own options and model (a model file whose\n"
     "content changed is refused). A progress line (patches, rate, ETA) goes to stderr\n"
     "when it is a terminal.\n"
     "\n"
     "  --pairs FILE   JSONL {\"clean\", \"corrupt\", \"answer\", \"wrong\"} per line, or TSV\n"
     "                 with those four columns; prompts as text or arrays of ids,\n"
     "                 answers as one token (text with its leading space, or an id).\n"
     "                 For a compiled RASP model: input sequences (\"a b c\" or\n"
     "                 [\"a\", \"b\", \"c\"], BOS added) and answers that are output\n"
     "                 values (left out: the model's output on clean / corrupt)\n"
     "  --dataset NAME built-in pairs, seeded (--seed, default 1; --n pairs, default 20,\n"
     "                 compiled 200):\n"
     "                 ioi (ABBA templates, corrupted with three other names),\n"
     "                 greater_than (\"...from the year 1742 to 17\" vs 1701), induction\n"
     "                 (random tokens repeated, --len each half; the repeat corrupted),\n"
     "                 compiled (a compiled model: --len random values from its vocab,\n"
     "                 default as for acdc; --corruption random (default) or shuffle).\n"
     "                 --n, --seed, --len and --corruption are refused where the\n"
     "                 input does not use them\n"
     "  --sweep SITE   resid_pre (default), resid_mid, attn_out, mlp_out [layer x pos];\n"
     "                 heads (hook_z, all positions) [layer x head]; heads_by_pos\n"
     "                 [layer x pos x head]; q, k, v, pattern [layer x head];\n"
     "                 path with --receivers L.H[.q|.k|.v],... : every sender head\n"
     "                 patched only along its paths into the receivers [layer x head]\n"
     "  --metric M     logit_diff (default; needs wrong), logprob, prob, kl\n"
     "  --shard K/N    run only every N-th pair from the K-th (1 <= K <= N); join\n"
     "                 the shards into one run with `mech db merge --join`.\n"
     "                 auto: this Slurm array task's shard (docs/cluster.md)\n"
     "  --spec FILE    options as a JSON object ({\"model\": \"gpt2/\", \"sweep\": \"heads\"});\n"
     "                 options given after it override it (every command takes it)\n"
     "  --method M     exact (default: one patched run per cell), attrib (attribution\n"
     "                 patching: first-order estimates from one backward per pair)\n"
     "                 or both (an exact and an attrib run, and their correlation)\n"
     "  --naive        one full forward per patch (the reference; slower)\n"
     "  --threads N    worker threads, 1 to 256 (default: one per CPU)\n"
     "  --prepend-bos  put <|endoftext|> in front of every clean and corrupt prompt\n"
     "                 (pair files and the built-in datasets have none by default, as\n"
     "                 the ACDC reference's datasets; --no-prepend-bos: the default)\n"
     "  --dry-run      run the first pair only, print the estimate (pairs x sites x\n"
     "                 the first pair's time) and exit; nothing is written. Without\n"
     "                 it, the estimate is printed after the first pair when stderr\n"
     "                 is a terminal\n"
     "\n"
     "Exit status: 0 done; 2 for bad arguments or input; 1 for a failure;\n"
     "130 when interrupted (Ctrl-C, SIGTERM, SIGHUP: the run is kept as\n"
     "'interrupted' and --resume finishes it).\n"},
    {"attrib", cmd_attrib, "direct logit attribution to the embedding, each head and each MLP",
     "usage: mech attrib --model MODEL (--prompt TEXT | --ids 1,2,3 | --input \"a b c\")... --answer TOKEN [--wrong TOKEN]\n"
     "                   [--pos P] [--top N] [--db FILE] [--threads N]\n"
     "\n"
     "Splits the final residual stream at position P (default: the last) into\n"
     "the embedding, every head's output, every attention bias and every MLP,\n"
     "applies the final LayerNorm's cached scale and projects each onto the\n"
     "unembedding direction of the answer (minus the wrong answer's): the\n"
     "components plus the bias term sum to the model's logit (difference).\n"
     "Also the accumulated residual per layer. Writes one run to the database\n"
     "(site 'attrib'; metric embed/head/attn_bias/mlp/accumulated/bias/logit)\n"
     "and prints the N largest components of the first sequence. Formulas:\n"
     "docs/lens.md. TOKEN is an id or text of exactly one token (\" Mary\"); on a\n"
     "compiled RASP model it is an output value of the program (a value of its\n"
     "readout, as answers in `mech patch` pair files: --answer a), or for a\n"
     "numerical output the output's name (no --wrong). --answer and --wrong must\n"
     "differ.\n"
     "\n"
     "  --input \"a b c\"  a compiled RASP model's input (BOS added)\n"
     "  --top N          components printed (default 10)\n"
     "  --db FILE        the results database (default mech.db)\n"
     "  --threads N      worker threads, 1 to 256 (default: one per CPU)\n"
     "  --pos P          the position, counted in each sequence (negative: from its\n"
     "                   end; default -1, each sequence's own last token); -len to\n"
     "                   len-1 of every sequence\n"
     "  --ln cached|exact  how the final LayerNorm enters: cached (default) divides\n"
     "                   every component by the scale the run cached, as\n"
     "                   TransformerLens does (the components sum to the logit, but\n"
     "                   each depends on the others through that scale); exact is\n"
     "                   for LayerNorm-free models (gpt2_noLN, layer_norm_epsilon\n"
     "                   1e12): ln_final is then a fixed linear map and each\n"
     "                   component's share is exact; refused for a real LayerNorm\n"
     "  --prepend-bos, --no-prepend-bos, --padding-side left|right, --allow-special\n"
     "                   as for `mech run`\n"},
    {"grad", cmd_grad, "gradients of a loss, logit difference or log-probability at hooks and parameters",
     "usage: mech grad --model MODEL (--prompt TEXT | --ids 1,2,3 | --input \"a b c\")...\n"
     "                 --metric loss|logit_diff|logprob [--answer TOKEN [--wrong TOKEN]] [--pos P]\n"
     "                 [--cache GLOB]... [--params] --out FILE.npz [--threads N]\n"
     "\n"
     "One forward and one exact backward pass. Writes to FILE.npz the metric's\n"
     "value (array 'metric'), its gradient at every hook matching a --cache GLOB\n"
     "(one array per hook, named and shaped as the hook, e.g.\n"
     "blocks.0.attn.hook_z [B, T, n_heads, d_head]) and, with --params, at every\n"
     "parameter (named as in the model file, e.g. h.0.attn.c_attn.weight), plus\n"
     "tokens (int32 [B, T]) and, for a padded batch, attention_mask. Several\n"
     "sequences make a batch: the metric is their mean. Formulas: docs/grad.md.\n"
     "\n"
     "  --metric loss        mean cross-entropy of each next token over every\n"
     "                       position of every sequence\n"
     "  --metric logit_diff  logit[answer] - logit[wrong] at --pos\n"
     "  --metric logprob     log-probability of the answer at --pos\n"
     "  --answer TOKEN       an id, or text of exactly one token (\" Mary\")\n"
     "  --wrong TOKEN        logit_diff's other token\n"
     "  --pos P              the position, counted in each sequence (negative: from\n"
     "                       its end; default -1, each sequence's last token)\n"
     "  --cache GLOB         gradients to write (repeatable): '*' for every default\n"
     "                       hook; the opt-in hook_q_input, hook_k_input,\n"
     "                       hook_v_input, attn.hook_result and hook_mlp_in by a name\n"
     "                       whose last part has no '*' (blocks.*.hook_q_input)\n"
     "  --params             also the gradient of every parameter\n"
     "  --out FILE.npz       the output file\n"
     "  --threads N          worker threads, 1 to 256 (default: one per CPU)\n"
     "  --prepend-bos, --no-prepend-bos, --padding-side left|right, --allow-special\n"
     "                       as for `mech run`\n"
     "\n"
     "Exit status: 0 ok; 2 for bad arguments or input (an option that does not\n"
     "apply to the metric, a token or position out of range, a GLOB matching no\n"
     "hook); 1 when the model cannot be loaded or the file cannot be written.\n"},
    {"acdc", cmd_acdc, "automatic circuit discovery (ACDC), scored against compiled circuits",
     "usage: mech acdc --model MODEL (--pairs FILE | --dataset NAME [--n N] [--len L] [--seed S]\n"
     "                 [--corruption random|shuffle]) --tau T [--metric kl|logit_diff|l2]\n"
     "                 [--ablation resample|zero] [--heads-ascending] [--naive] [--abs-value]\n"
     "                 [--prefilter N|F] [--db FILE] [--threads N]\n"
     "       mech acdc ... --sweep [--taus T1,T2,...] [--ablations zero,resample]\n"
     "       mech acdc --resume RUN [--db FILE]\n"
     "       mech acdc export RUN (--dot FILE.dot | --json FILE.json) [--db FILE]\n"
     "       mech acdc --count-edges --model MODEL\n"
     "\n"
     "Prunes the model's computational graph edge by edge as the reference ACDC\n"
     "(Conmy et al. 2023) does: senders (embeddings, every head's output, every\n"
     "MLP) to receivers (every head's q/k/v input, every MLP input, the last\n"
     "resid_post), receivers visited from the output down, an edge removed for\n"
     "good when the metric grows by less than tau. Every trial is stored as it\n"
     "is decided (run kind 'acdc'; site SENDER->RECEIVER, metrics before, after,\n"
     "effect, removed), then the circuit (metric 'kept'); docs/acdc.md. Ctrl-C\n"
     "or kill keeps the finished trials and --resume RUN goes on to the same\n"
     "circuit. For a model from `mech compile` (split embeddings, metric l2 on\n"
     "the readout by default) the compiler's circuit is the ground truth: the\n"
     "run prints the circuit found beside it with TPR and FPR. An option that\n"
     "does not apply is refused (exit 2).\n"
     "\n"
     "  --dataset NAME  ioi, greater_than, induction (GPT-2), or compiled: random\n"
     "                  inputs of --len values for a compiled model (default: the\n"
     "                  longest below max_seq_len where the outputs differ; inputs\n"
     "                  redrawn so that no output is more than half of them; a\n"
     "                  warning when all are the same), corrupted by --corruption\n"
     "                  random (default) or shuffle;\n"
     "                  ioi keeps the N pairs of its most common length (one batch)\n"
     "  --pairs FILE    JSONL/TSV pairs as for `mech patch` (one batch: equal lengths)\n"
     "  --n N           pairs of the dataset (default 20; compiled 200); --seed S (default 1)\n"
     "  --tau T         the threshold\n"
     "  --metric M      kl (default; KL to the full model at the last position),\n"
     "                  logit_diff, or l2 (compiled models: mean squared error of the\n"
     "                  readout logits at every position but BOS, as the reference)\n"
     "  --positions P   kl at the last position (default), at all of them, or at the\n"
     "                  repeated half of induction prompts (the reference's induction mask)\n"
     "  --ablation A    resample (default: activations on the corrupt prompts) or zero\n"
     "  --heads-ascending  try a receiver's sender heads 0..H-1 (the reference's\n"
     "                  indices_mode reverse; receivers are always visited H-1..0)\n"
     "  --pos-shuffle S|off  compiled models under resample ablation: the corrupted\n"
     "                  pass reads positions in torch's randperm order for seed S, as\n"
     "                  the reference's Tracr tasks (default 49)\n"
     "  --naive         one full forward pass per trial (the oracle fast mode matches)\n"
     "  --prefilter N|F  try only the top N edges (fraction F, e.g. 0.1) by EAP; the\n"
     "                  rest are removed first (resample ablation only; docs/acdc.md)\n"
     "  --abs-value     compare |metric change| with tau\n"
     "  --prepend-bos   put <|endoftext|> in front of every prompt (--positions\n"
     "                  induction then starts one later); --no-prepend-bos: the\n"
     "                  default, as the reference's datasets\n"
     "  --sweep         one run per threshold (--taus, default 1e-6 .. 1e1 in half\n"
     "                  decades) and ablation (--ablations, default zero,resample);\n"
     "                  prints TPR/FPR per threshold and the pessimistic ROC AUC per\n"
     "                  ablation (compiled models), stored as a run of kind acdc-sweep\n"
     "  --resume RUN    continue an interrupted run with its own options\n"
     "  export RUN      the circuit of a run as Graphviz (--dot FILE.dot or .gv) or an\n"
     "                  edge list (--json FILE.json); - writes one of them to stdout\n"
     "  --count-edges   the graph's edge counts (GPT-2 small: 32923 counted)\n"},
    {"eap", cmd_eap, "edge attribution patching (EAP): every edge of ACDC's graph scored at once",
     "usage: mech eap --model MODEL (--pairs FILE | --dataset NAME [--n N] [--len L] [--seed S]\n"
     "                [--corruption random|shuffle]) [--metric logit_diff|logprob]\n"
     "                [--method eap|eap-ig-inputs|eap-ig-activations|clean-corrupted]\n"
     "                [--ig-steps M] [--top-n N | --threshold X] [--faithfulness\n"
     "                [--sizes LIST]] [--dot FILE.dot] [--json FILE.json]\n"
     "                [--prepend-bos] [--db FILE] [--threads N]\n"
     "\n"
     "Scores every edge of the graph `mech acdc` prunes (senders: embeddings,\n"
     "heads, MLPs; receivers: q/k/v inputs, MLP inputs, the last resid_post) by\n"
     "edge attribution patching (Syed et al. 2023): (corrupted - clean sender\n"
     "output) . gradient of the metric at the receiver's input on the clean run,\n"
     "summed over positions and d_model, averaged over the prompts; one clean\n"
     "forward, one corrupted forward and one backward per prompt length. The\n"
     "circuit is the --top-n edges by |score| (default 100) or those with\n"
     "|score| >= --threshold. Stored as a run of kind 'eap' (site\n"
     "SENDER->RECEIVER; metric 'score' for every counted edge, 'kept' for the\n"
     "circuit); docs/eap.md. For a model from `mech compile` the compiler's\n"
     "circuit is the ground truth: TPR, FPR and the ROC AUC of |score|.\n"
     "\n"
     "  --dataset NAME  ioi, greater_than, induction (GPT-2), or compiled, as for\n"
     "                  `mech acdc` (prompts of different lengths are fine)\n"
     "  --pairs FILE    JSONL/TSV pairs as for `mech patch` (each clean and corrupt\n"
     "                  prompt of a pair with the same token count)\n"
     "  --n N           pairs of the dataset (default 20; compiled 200); --seed S (default 1)\n"
     "  --metric M      logit_diff (default: answer - wrong logit at the last\n"
     "                  position; a compiled model's output values) or logprob\n"
     "                  (kl is refused: its gradient on the clean run is 0)\n"
     "  --method M      eap (default); eap-ig-inputs: gradients averaged over the\n"
     "                  --ig-steps input embeddings from corrupted to clean (Hanna et al.\n"
     "                  2024); eap-ig-activations: each layer's outputs\n"
     "                  interpolated in turn ((1 + 3 layers) x steps backwards);\n"
     "                  clean-corrupted: the gradients on both runs averaged\n"
     "  --ig-steps M    integration steps of the eap-ig methods (default 5)\n"
     "  --faithfulness  the MIB faithfulness curve: for the top edges by |score|\n"
     "                  (each size of --sizes) with every other edge reading the\n"
     "                  corrupted run as in ACDC, f = (logit_diff(circuit) -\n"
     "                  logit_diff(no edge)) / (logit_diff(all) - logit_diff(no\n"
     "                  edge)); CPR = area under f over the fraction of edges, CMD =\n"
     "                  area between f and 1; stored and printed\n"
     "  --sizes LIST    fractions or percentages of the edges (default\n"
     "                  0.1%,0.2%,0.5%,1%,2%,5%,10%,20%,50%,100%)\n"
     "  --top-n N       keep the N edges of largest |score| (default 100)\n"
     "  --threshold X   keep the edges with |score| >= X\n"
     "  --dot FILE      the circuit as Graphviz, edges labelled with their score\n"
     "  --json FILE     the circuit as JSON (as `mech acdc export`); - is stdout\n"
     "  --prepend-bos   put <|endoftext|> in front of every prompt\n"
     "\n"
     "Exit status: 0 ok; 2 for bad arguments or input; 1 when the model cannot be\n"
     "loaded or a file or the database cannot be written.\n"},
    {"tui", cmd_tui, "the terminal interface: browse the runs of a database, look at attention",
     "usage: mech tui [DB] [--model MODEL (--prompt TEXT | --ids 1,2,3 | --input \"a b c\")]\n"
     "                [--corrupt TEXT | --corrupt-ids 4,5,6]\n"
     "                [--prepend-bos | --no-prepend-bos] [--allow-special] [--threads N]\n"
     "\n"
     "An interactive view in the terminal (works over SSH; 80 x 24 and up).\n"
     "With a database (default mech.db when no model is given) it opens the run\n"
     "browser: every run with its id, kind, status, model, date and key figure\n"
     "(largest patching effect, best induction head, or its result count);\n"
     "filter by kind, search, sort. The database is read without being changed\n"
     "(only S in the live view writes to it) and re-read every second, so the\n"
     "runs a running command writes appear while it is open. With --model and\n"
     "one input it runs the model in the background (the live view shows the\n"
     "progress at once) and then shows its attention: one head as a heatmap\n"
     "(query rows x key columns, token text on both axes, a crosshair cursor\n"
     "with the query token, key token and weight; prompts longer than the\n"
     "window are max- or mean-pooled per cell, as the title line says) and all\n"
     "heads as a layer x head grid of thumbnails with their previous-token (p),\n"
     "duplicate-token (d) and induction (i) scores. Both at once work.\n"
     "With --corrupt (or --corrupt-ids) it also runs a corrupted prompt of the\n"
     "same token count and D shows clean minus corrupted pattern on a diverging\n"
     "palette (+ # above zero, - = below, so it reads without colour); the\n"
     "cursor line gives the clean, corrupted and difference weights.\n"
     "Enter on an acdc (or acdc-sweep) run draws its circuit as a layered graph\n"
     "beside its edges by |effect|, marks them hit / EXTRA / MISS against a\n"
     "compiled model's truth, and steps through the trials (n N g G; ] [ a sweep).\n"
     "The live view (e from the attention view, or Tab) edits the prompt (e,\n"
     "then type; Enter runs it in the background, Esc leaves the editor), lists\n"
     "its tokens with their ids and the top 10 next tokens after the selected\n"
     "token, with logits and probabilities as mech run prints them; S saves\n"
     "them, the prompt and the head scores as a run of kind live in DB.\n"
     "\n"
     "Keys (? lists those of the current view):\n"
     "  q               leave the view; in the last one, quit\n"
     "  Tab             next view;  ?  help\n"
     "  runs:           j k arrows PgUp PgDn g G move, / search, f filter by kind,\n"
     "                  s sort (id, kind, status, date), r reverse, Esc clear,\n"
     "                  Enter open the run in the view of its kind\n"
     "  attention:      h j k l arrows move the cursor, ] [ next/previous head,\n"
     "                  } { next/previous layer, p max/mean pooling, g all heads,\n"
     "                  z one cell per token (+ - zoom), / search tokens (n next)\n"
     "  all heads:      h j k l arrows select, s sort by a score, Enter open the head\n"
     "                  f filter by score (+ - threshold, F clears)\n"
     "  lens:           (L in the attention view, Enter on a lens run) h j k l move,\n"
     "                  m shading (logit lens), ] [ layer (decoder lens)\n"
     "  live:           e edit (Enter run, Esc stop editing), j k select a token,\n"
     "                  S save as a run\n"
     "  patching:       h j k l move, p P pair, a mean, m raw metric, s ] [ slice\n"
     "  attribution:    j k PgUp PgDn g G scroll, p P sequence (A in attention: live)\n"
     "  training:       h l column, , . step, c 1 2 3 curve, y log axis\n"
     "  circuit:        j k select an edge, n N step through the trials, g G first /\n"
     "                  last trial, u hide unused nodes, ] [ threshold of a sweep\n"
     "  program:        (P in attention, compiled models) j k variable, Enter the\n"
     "                  source line's variable, ] [ layer, i type another input\n"
     "\n"
     "Colours: 24-bit when COLORTERM says so, else 256 or 8; NO_COLOR: the glyph\n"
     "ramp ' .:-=+*#%@'. MECH_TUI_COLORS=24bit|256|8|none forces a mode.\n"
     "x / X write the screen as text / SVG to mech-VIEW-N.txt / .svg (in\n"
     "$MECH_TUI_EXPORT_DIR or here; never replacing a file).\n"
     "Exit status: 0 after q; 1 when the terminal cannot be used or the model\n"
     "fails to load; 2 for a usage error. The terminal is restored on every exit\n"
     "(also Ctrl-C, SIGTERM, SIGHUP and crashes).\n"},
    {"plot", cmd_plot, "a stored run as an SVG (or text) figure, drawn by the views of mech tui",
     "usage: mech plot RUN -o FIG.svg|FIG.txt|- [--db FILE] [--width W] [--height H] [--view V]\n"
     "\n"
     "Draws run RUN of the database as `mech tui` shows it, without a terminal\n"
     "(scripts, headless servers): the run opens in the view that fits its kind\n"
     "(a patching heatmap, a table of lenses, head scores, attributions...),\n"
     "rendered into W x H cells and written as SVG (every cell; heat cells in\n"
     "the palette's colours: viridis, and blue-white-red for signed values;\n"
     "text in a monospace font) or as plain text. The database is only read:\n"
     "never created or changed.\n"
     "\n"
     "  -o, --output FILE  where to write; the name must end in .svg or .txt,\n"
     "                     and - writes the SVG to standard output\n"
     "  --db FILE          the results database (default mech.db)\n"
     "  --width W          columns, 20 to 2000 (default 120)\n"
     "  --height H         rows, 5 to 1000 (default 40)\n"
     "  --view V           another view than the kind's: run, runs (the runs list)\n"
     "                     or one of the interface's other views for this kind\n"
     "\n"
     "Exit status: 0 ok; 2 for bad arguments (no -o, a name without .svg/.txt, a\n"
     "run id that is not a number or not in the database, an unknown view); 1\n"
     "when the database is missing or cannot be read, or the file cannot be\n"
     "written (nothing is left half-written).\n"},
    {"train", cmd_train, "train a model (AdamW) on induction, a RASP program's task or a text file",
     "usage: mech train --task induction|rasp:FILE|text:FILE --out CKPT.safetensors\n"
     "                  [options]\n"
     "       mech train --resume CKPT.safetensors [--steps N] [--out CKPT] [options]\n"
     "\n"
     "Trains a model from scratch (a config from the options below) or from\n"
     "--model's weights, with AdamW (decoupled weight decay on the matrices, not\n"
     "on biases and LayerNorm gains), linear warm-up then cosine decay of the\n"
     "learning rate, global-norm gradient clipping and gradient accumulation.\n"
     "Seeded and deterministic for a given thread count. Progress (step, loss,\n"
     "tokens/s, ETA) goes to stderr. The checkpoint is CKPT (the model, loadable\n"
     "by every command) and CKPT's .optim.safetensors sibling (Adam's moments);\n"
     "--resume continues it exactly. Ctrl-C saves the finished steps and exits\n"
     "130. The loss curve and the settings go to the database as a run of kind\n"
     "train. Details: docs/train.md.\n"
     "\n"
     "Tasks:\n"
     "  induction       repeated random tokens (period 4 .. T/2 per row), loss on\n"
     "                  the repeated part; ids 0 .. d_vocab-1\n"
     "  rasp:FILE       a RASP program's task: BOS, input, SEP, output, with the\n"
     "                  output from the reference interpreter; the held-out\n"
     "                  accuracy (greedy decoding) is checked against it\n"
     "  text:FILE       next-token prediction on the file, GPT-2 tokenizer\n"
     "\n"
     "  --out FILE, -o   the checkpoint to write (.safetensors; default with\n"
     "                   --resume: the resumed file)\n"
     "  --resume CKPT    continue a checkpoint with its settings and task\n"
     "  --model MODEL    start from this model's weights and config\n"
     "  --layers N --heads N --d-model N --d-head N --d-mlp N --n-ctx N --vocab N\n"
     "  --attn-only --no-layernorm --untied --act gelu_new|gelu|relu\n"
     "                   a new model's config (default: 2 layers, 4 heads, d_model\n"
     "                   64, d_head 16, d_mlp 256, n_ctx --seq; vocab 256 for\n"
     "                   induction, the task's otherwise), initialised as mech init\n"
     "                   with --seed\n"
     "  --steps N        optimizer steps of the whole run (default 1000)\n"
     "  --batch B        sequences per micro-batch (default 8)\n"
     "  --seq T          tokens per sequence (default 64; rasp: 2 max_seq_len + 2)\n"
     "  --accum K        micro-batches per step (default 1)\n"
     "  --lr LR          peak learning rate (default 0.001)\n"
     "  --min-lr LR      the cosine's end (default LR/10)\n"
     "  --warmup N       linear warm-up steps (default min(100, steps/10))\n"
     "  --wd W           weight decay (default 0.1)\n"
     "  --beta1 B --beta2 B --eps E   AdamW's (default 0.9, 0.95, 1e-8)\n"
     "  --clip C         global gradient-norm limit, 0 for none (default 1)\n"
     "  --seed S         weights and batches (default 1)\n"
     "  --save-every N   also write the checkpoint every N steps\n"
     "  --stop-at S      stop after step S (a run split into jobs; --resume goes on)\n"
     "  --eval N         held-out rows scored at the end (default 256; 0: none)\n"
     "  --log-every N    a progress line every N steps (default: 20 lines a run)\n"
     "  --db FILE        the results database (default mech.db)\n"
     "  --threads N      worker threads, 1 to 256 (default: one per CPU; results\n"
     "                   are reproducible for a given thread count)\n"
     "\n"
     "Exit status: 0 ok; 130 interrupted (checkpoint saved); 2 for bad arguments\n"
     "(a task that does not fit the model, --seq beyond n_ctx); 1 when a file\n"
     "cannot be read or written or the loss is not finite.\n"},
    {NULL, NULL, NULL, NULL},
};

const cli_cmd *cli_find(const char *name) {
    for (const cli_cmd *c = cli_commands; c->name; c++)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}

int cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mech %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    // the bad value may be the spec file's: its options are read as if typed first
    if (cli_spec_path()) fprintf(stderr, "note: the options checked include those of the spec file %s\n", cli_spec_path());
    fprintf(stderr, "hint: mech %s --help\n", cmd);
    return 2;
}

int cli_fail(const char *cmd, const mech_err *err) {
    fprintf(stderr, "mech %s: error: %s\n", cmd, err->msg[0] ? err->msg : mech_strerror(err->code));
    return 1;
}

int cli_help(const char *cmd) {
    const cli_cmd *c = cli_find(cmd);
    fputs(c ? c->usage : "", stdout);
    return 0;
}

int cli_opt(const char *cmd, int argc, char **argv, int *i, const char *name, const char **val) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != 0) return 0;
    if (*i + 1 >= argc) {
        cli_usage(cmd, "option %s needs a value", name);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

// The whole string is the number: no spaces, no '+', a '-' only when the
// range admits negatives, so "5 ", " 5" and "+3" are refused alike.
static int plain_number(const char *s, int negative_ok) {
    if (!*s || strchr(" \t\n\v\f\r+", *s)) return 0;
    if (*s == '-' && !negative_ok) return 0;
    return 1;
}

int cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = plain_number(s, lo < 0) ? strtol(s, &end, 10) : 0;
    if (!plain_number(s, lo < 0) || end == s || *end || errno || v < lo || v > hi) {
        cli_usage(cmd, "%s '%s': expected an integer from %ld to %ld", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    int ok = plain_number(s, lo < 0);
    double v = ok ? strtod(s, &end) : 0;
    // strtod also reads "nan", "inf" and hex floats: only decimal numbers here
    ok = ok && end != s && !*end && !errno && isfinite(v) && v >= lo && v <= hi;
    for (const char *p = s; ok && *p; p++)
        if (!strchr("0123456789.eE-", *p)) ok = 0;
    if (!ok) {
        if (isinf(hi)) cli_usage(cmd, "%s '%s': expected a number >= %g", opt, s, lo);
        else cli_usage(cmd, "%s '%s': expected a number from %g to %g", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

const char *cli_s(long long n) { return n == 1 ? "" : "s"; }

int cli_has_ext(const char *path, const char *ext) {
    size_t n = strlen(path), e = strlen(ext);
    return n > e && !strcmp(path + n - e, ext);
}

const char *cli_shortest(char buf[32], double x) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    return buf;
}

int cli_threads(const char *cmd, const char *s, long *out) {
    long n;
    if (cli_int(cmd, "--threads", s, 1, CLI_MAX_THREADS, &n)) return -1;
    mech_pool_set_default((int)n);
    if (out) *out = n;
    return 0;
}

void cli_token_text(mech_buf *b, const mech_tokenizer *tok, int32_t id) {
    size_t len = 0;
    const char *s = tok ? mech_tokenizer_token(tok, id, &len) : NULL;
    if (s) mech_buf_json_string(b, s, len);
    else mech_buf_printf(b, "<%d>", (int)id);
}

int cli_ids(const char *cmd, const char *s, int32_t **ids, size_t *n) {
    size_t cap = 16, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    // Items are separated by one comma (spaces around it allowed) or by
    // white space; an empty item ("1,,2", "1,", ",1") is a mistake, not nothing.
    while (*p && strchr(" \n\t\r", *p)) p++;
    for (int first = 1; *p; first = 0) {
        if (!first) {
            int commas = 0;
            while (*p && strchr(", \n\t\r", *p)) commas += *p++ == ',';
            if (commas > 1 || (commas == 1 && !*p)) {
                cli_usage(cmd, "token ids '%s': an empty item after item %zu", s, k);
                free(v);
                return -1;
            }
            if (!*p) break;
        } else if (*p == ',') {
            cli_usage(cmd, "token ids '%s': an empty item before the first id", s);
            free(v);
            return -1;
        }
        // One item runs to the next separator; all of it must be digits.
        int len = 0;
        while (p[len] && !strchr(", \n\t\r", p[len])) len++;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end != p + len || *p == '-' || *p == '+' || errno || x > INT32_MAX) {
            cli_usage(cmd, "token id '%.*s' (item %zu): expected an integer from 0 to %d", len > 40 ? 40 : len, p, k + 1,
                      INT32_MAX);
            free(v);
            return -1;
        }
        if (k == cap) {
            int32_t *g = realloc(v, (cap *= 2) * sizeof *v);
            if (!g) {
                free(v);
                return -1;
            }
            v = g;
        }
        v[k++] = (int32_t)x;
        p = end;
    }
    *ids = v;
    *n = k;
    return 0;
}

static void usage_all(FILE *f) {
    fprintf(f, "usage: mech COMMAND [options]    (mech COMMAND --help for details)\n\ncommands:\n");
    for (const cli_cmd *c = cli_commands; c->name; c++) fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\nEvery command also takes --spec FILE.json: its options as a JSON object.\n"
               "Exit status: 0 ok, 1 a runtime error, 2 a usage error (a bad option, value or\n"
               "input), 130 interrupted.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage_all(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        if (argc > 2 && !cli_find(argv[2])) {
            fprintf(stderr, "mech: error: no command '%s'\n", argv[2]);
            usage_all(stderr);
            return 2;
        }
        if (argc > 2) return cli_help(argv[2]);
        usage_all(stdout);
        return 0;
    }
    const cli_cmd *c = cli_find(argv[1]);
    if (!c) {
        fprintf(stderr, "mech: error: unknown command '%s'\n", argv[1]);
        usage_all(stderr);
        return 2;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return cli_help(c->name);
    int spec_argc = 0;
    char **spec_argv = NULL;
    int rc = cli_spec_expand(c->name, argc - 1, argv + 1, &spec_argc, &spec_argv);
    if (rc) return rc;
    rc = spec_argv ? c->run(spec_argc, spec_argv) : c->run(argc - 1, argv + 1);
    cli_spec_free(spec_argc, spec_argv);
    // Output cut short (a full disk, a closed pipe) is a failure, not success.
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "mech %s: error: writing standard output: %s\n", c->name, strerror(errno ? errno : EIO));
        return rc ? rc : 1;
    }
    return rc;
}
