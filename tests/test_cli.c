/*
** tests/test_cli.c: the mech command as a user runs it: output, files it
** writes, exit codes (0 ok, 1 runtime error, 2 usage error) and messages.
** The binary comes from $MECH_BIN (set by `make test`), else ./mech.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

// stdout and stderr together, as a user sees them
#define mech(out, ...) mech_test_cli(out, NULL, __VA_ARGS__)

static void test_cli_help_for_every_command(void **state) {
    char *out;
    assert_int_equal(mech(&out, "--help"), 0);
    const char *cmds[] = {"tokenize", "info", "run", "init", "demo"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        assert_non_null(strstr(out, cmds[i]));
        char *h;
        assert_int_equal(mech(&h, "%s --help", cmds[i]), 0);
        char want[64];
        snprintf(want, sizeof want, "usage: mech %s", cmds[i]);
        assert_non_null(strstr(h, want));
        free(h);
    }
    free(out);
}

static void test_cli_usage_errors_exit_2(void **state) {
    char *out;
    assert_int_equal(mech(&out, "frobnicate"), 2);
    assert_non_null(strstr(out, "unknown command 'frobnicate'"));
    free(out);
    assert_int_equal(mech(&out, "run --prompt hi"), 2);
    assert_non_null(strstr(out, "--model is required"));
    free(out);
    assert_int_equal(mech(&out, "run --model x --ids 1 --top-k many"), 2);
    assert_non_null(strstr(out, "--top-k 'many'"));
    free(out);
    assert_int_equal(mech(&out, "run --model x --ids 1,-2"), 2);
    free(out);
    assert_int_equal(mech(&out, "tokenize --bogus"), 2);
    assert_non_null(strstr(out, "unknown argument '--bogus'"));
    free(out);
    assert_int_equal(mech(&out, "run --model"), 2);
    assert_non_null(strstr(out, "needs a value"));
    free(out);
    assert_int_equal(mech(&out, "info"), 2);
    free(out);
    assert_int_equal(mech(NULL, "init --preset huge -o x"), 2);
    assert_int_equal(mech(NULL, "%s", ""), 2);
}

static void test_cli_tokenize_round_trip(void **state) {
    char *out;
    assert_int_equal(mech(&out, "tokenize --text 'Hello world'"), 0);
    assert_string_equal(out, "15496 995\n");
    free(out);
    assert_int_equal(mech(&out, "tokenize --decode --text '15496 995'"), 0);
    assert_string_equal(out, "Hello world");
    free(out);
    assert_int_equal(mech(&out, "tokenize --decode --text '15496,995'"), 0);
    assert_string_equal(out, "Hello world");
    free(out);
    // stdin, special tokens as text unless allowed, and the empty input
    assert_int_equal(mech(&out, "tokenize --allow-special --text 'a<|endoftext|>'"), 0);
    assert_string_equal(out, "64 50256\n");
    free(out);
    assert_int_equal(mech(&out, "tokenize --text 'a<|endoftext|>'"), 0);
    assert_null(strstr(out, "50256"));
    free(out);
    assert_int_equal(mech(&out, "tokenize < /dev/null"), 0);
    assert_string_equal(out, "\n");
    free(out);
    const char *text = "It's 2024:\n  naïve café — 東京 🚀!";
    FILE *f = fopen(mech_test_tmp("tok.txt"), "wb");
    fputs(text, f);
    fclose(f);
    char path[512];
    snprintf(path, sizeof path, "%s", mech_test_tmp("tok.txt"));
    assert_int_equal(mech(&out, "tokenize < %s", path), 0);
    // the CLI agrees with the library
    mech_tokenizer *tok;
    mech_err err = {0};
    assert_int_equal(mech_tokenizer_gpt2(&tok, &err), MECH_OK);
    int32_t *ids;
    size_t n;
    assert_int_equal(mech_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n, &err), MECH_OK);
    mech_buf want = {0};
    for (size_t i = 0; i < n; i++) mech_buf_printf(&want, i ? " %d" : "%d", ids[i]);
    mech_buf_puts(&want, "\n");
    assert_string_equal(out, want.data);
    char *dec;
    assert_int_equal(mech(&dec, "tokenize --decode --text '%.*s'", (int)want.len - 1, want.data), 0);
    assert_string_equal(dec, text);
    free(dec);
    free(out);
    mech_buf_free(&want);
    mech_free(ids);
    mech_tokenizer_free(tok);
    assert_int_equal(mech(&out, "tokenize --decode --text '99999999'"), 2); // an id outside the vocab: bad input
    free(out);
}

static void test_cli_init_info_run(void **state) {
    char model[512], npy[512], npz[512], *out;
    snprintf(model, sizeof model, "%s", mech_test_tmp("m.safetensors"));
    snprintf(npy, sizeof npy, "%s", mech_test_tmp("logits.npy"));
    snprintf(npz, sizeof npz, "%s", mech_test_tmp("acts.npz"));
    assert_int_equal(mech(&out, "init -o %s --layers 1 --heads 2 --d-model 32 --d-head 8 --d-mlp 64 --n-ctx 16 --vocab 100 --seed 3",
                          model), 0);
    free(out);
    assert_int_equal(mech(&out, "info %s", model), 0);
    assert_non_null(strstr(out, "n_layers:     1"));
    assert_non_null(strstr(out, "d_vocab:      100"));
    assert_non_null(strstr(out, "hooks:        21"));
    assert_non_null(strstr(out, "blocks.0.attn.hook_pattern"));
    assert_null(strstr(out, "hook_result"));
    free(out);
    assert_int_equal(mech(&out, "info %s --opt-in", model), 0);
    assert_non_null(strstr(out, "blocks.0.attn.hook_result"));
    free(out);

    assert_int_equal(mech(&out, "run --model %s --ids 1,2,3,4 --ids 5,6,7,8 --top-k 3 --logits %s --cache 'blocks.0.attn.hook_*' --out %s",
                          model, npy, npz), 0);
    assert_non_null(strstr(out, "sequence 2: 4 tokens"));
    free(out);
    // the .npy holds exactly what the library computes
    mech_err err = {0};
    mech_model *m;
    assert_int_equal(mech_model_load(model, &m, &err), MECH_OK);
    mech_run *r;
    assert_int_equal(mech_run_new(m, 2, 4, &r, &err), MECH_OK);
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(mech_run_forward(r, ids, &err), MECH_OK);
    float *data;
    int ndim;
    int64_t shape[MECH_MAX_DIMS];
    assert_int_equal(mech_npy_read(npy, &data, &ndim, shape, &err), MECH_OK);
    assert_int_equal(ndim, 3);
    assert_int_equal(shape[0], 2);
    assert_int_equal(shape[1], 4);
    assert_int_equal(shape[2], 100);
    mech_assert_close(data, mech_run_logits(r), 800, 0, 0, "logits.npy");
    mech_free(data);
    mech_run_free(r);
    mech_model_free(m);
    if (system("python3 -c 'pass' >/dev/null 2>&1") == 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "python3 -c \"import zipfile,sys; n=sorted(zipfile.ZipFile('%s').namelist()); "
                 "sys.exit(0 if 'blocks.0.attn.hook_pattern.npy' in n and 'blocks.0.attn.hook_z.npy' in n and 'tokens.npy' in n and 'token_strings.npy' in n and len(n)==8 else 1)\"",
                 npz);
        assert_int_equal(system(cmd), 0);
    }
    // a batch of unequal lengths is padded (tests/test_cli_batch.c); ids past the vocabulary, a missing model
    assert_int_equal(mech(&out, "run --model %s --ids 1,2 --ids 1,2,3", model), 0);
    assert_non_null(strstr(out, "sequence 1: 2 tokens"));
    free(out);
    // an id outside the vocabulary is the user's input: 2, as in `mech rasp`
    assert_int_equal(mech(&out, "run --model %s --ids 1,200", model), 2);
    assert_non_null(strstr(out, "token id 200"));
    free(out);
    assert_int_equal(mech(&out, "run --model /nonexistent/model --ids 1"), 1);
    assert_non_null(strstr(out, "/nonexistent/model"));
    free(out);
    assert_int_equal(mech(&out, "run --model %s --ids 1 --cache 'no.such.*' --out %s", model, npz), 1);
    assert_non_null(strstr(out, "matches no hook point"));
    free(out);
}

static void test_cli_malformed_model_is_an_error_not_a_crash(void **state) {
    char path[512], *out;
    snprintf(path, sizeof path, "%s", mech_test_tmp("bad.safetensors"));
    FILE *f = fopen(path, "wb");
    fwrite("\x10\0\0\0\0\0\0\0{\"a\":", 1, 13, f);
    fclose(f);
    assert_int_equal(mech(&out, "info %s", path), 1);
    assert_non_null(strstr(out, path));
    free(out);
}

// Failures around the edges: stdout that cannot be written, stdin that
// cannot be read, a FIFO given as a model, half a tokenizer.
static void test_cli_io_failures(void **state) {
    char *out;
    assert_int_equal(mech(&out, "tokenize --text hi > /dev/full"), 1); // (its message goes there too)
    free(out);
    assert_int_equal(mech(&out, "tokenize <&-"), 1);
    assert_non_null(strstr(out, "cannot read standard input"));
    free(out);
    assert_int_equal(mech(&out, "help nosuch"), 2);
    free(out);
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s", mech_test_tmp("fifo"));
    remove(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(mech(&out, "info %s", fifo), 1); // and does not hang
    assert_non_null(strstr(out, "not a regular file"));
    free(out);
    remove(fifo);
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", mech_test_tmp("halftok"));
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    FILE *f = fopen(path, "wb");
    fputs("{}", f);
    fclose(f);
    assert_int_equal(mech(&out, "tokenize --model %s --text hi", dir), 1);
    assert_non_null(strstr(out, "merges.txt is missing"));
    free(out);
    remove(path);
    rmdir(dir);
}

// mech compile, then mech run --input prints what mech rasp prints.
static void test_cli_compile_and_run(void **state) {
    char model[512], *out, *want;
    snprintf(model, sizeof model, "%s", mech_test_tmp("sort.safetensors"));
    assert_int_equal(mech(&out, "compile examples/rasp/sort.rasp -o %s --explain", model), 0);
    assert_non_null(strstr(out, "verified"));
    assert_non_null(strstr(out, "layers"));
    assert_non_null(strstr(out, "aggregate"));
    free(out);
    const char *inputs[] = {"3 1 2", "4 4 1 2", "2", "1 2 3 4"};
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        assert_int_equal(mech(&out, "run --model %s --input '%s'", model, inputs[i]), 0);
        assert_int_equal(mech(&want, "rasp examples/rasp/sort.rasp --input '%s'", inputs[i]), 0);
        assert_string_equal(out, want);
        free(out);
        free(want);
    }
    assert_int_equal(mech(&out, "run --model %s --input '3 9'", model), 2); // 9 is not in the vocab
    free(out);
    // the decoder lens: sort appears only at the last layer, with the sorted values
    char db[512];
    snprintf(db, sizeof db, "%s", mech_test_tmp("decoder.db"));
    remove(db);
    assert_int_equal(mech(&out, "lens --model %s --input '3 1 2' --db %s", model, db), 0);
    char *line = strstr(out, "  sort ");
    assert_non_null(line);
    assert_non_null(strstr(line, "layer 0: - - -"));
    assert_non_null(strstr(line, ": 1 2 3"));
    free(out);
    // errors in the program: exit 2, nothing written
    char bad[512], dst[512];
    snprintf(bad, sizeof bad, "%s", mech_test_tmp("bad.rasp"));
    snprintf(dst, sizeof dst, "%s", mech_test_tmp("bad.safetensors"));
    FILE *f = fopen(bad, "wb");
    fputs("vocab {1, 2}; max_seq_len 3;\nx = numerical(map(t -> t, tokens));\n"
          "m = numerical(aggregate(select(indices, indices, <=), x, 0));\n", f);
    fclose(f);
    remove(dst);
    assert_int_equal(mech(&out, "compile %s -o %s", bad, dst), 2);
    assert_non_null(strstr(out, ":3:"));
    assert_non_null(strstr(out, "'m'"));
    free(out);
    assert_int_equal(access(dst, F_OK), -1);
    assert_int_equal(mech(&out, "compile %s", bad), 2);
    free(out);
    // --input on a model that was not compiled
    assert_int_equal(mech(&out, "run --model tests/fixtures/gpt2-tiny --input 'a b'"), 2);
    assert_non_null(strstr(out, "is not one (no mech.rasp.source"));
    free(out);
}

// mech db on a database the library wrote.
static void test_cli_db(void **state) {
    char db[512], db2[512], merged[512], csv[512], *out;
    snprintf(db, sizeof db, "%s", mech_test_tmp("a.db"));
    snprintf(db2, sizeof db2, "%s", mech_test_tmp("b.db"));
    snprintf(merged, sizeof merged, "%s", mech_test_tmp("merged.db"));
    snprintf(csv, sizeof csv, "%s", mech_test_tmp("run.csv"));
    remove(db), remove(db2), remove(merged);
    mech_err err = {0};
    mech_store *s;
    int64_t run;
    assert_int_equal(mech_store_open(db, &s, &err), MECH_OK);
    assert_int_equal(mech_store_run_new(s, "patch", NULL, "mech patch ...", "{\"sweep\": \"resid_pre\"}", &run, &err), MECH_OK);
    mech_result r = {.item = 0, .site = "resid_pre", .layer = 1, .pos = 2, .head = -1, .token = -1, .rank = -1,
                     .metric = "logit_diff", .value = 0.25};
    assert_int_equal(mech_store_result(s, run, &r, &err), MECH_OK);
    assert_int_equal(mech_store_run_finish(s, run, "done", &err), MECH_OK);
    mech_store_close(s);
    assert_int_equal(mech(&out, "db --db %s ls", db), 0);
    assert_non_null(strstr(out, "patch"));
    assert_non_null(strstr(out, "done"));
    free(out);
    assert_int_equal(mech(&out, "db --db %s show %lld", db, (long long)run), 0);
    assert_non_null(strstr(out, "resid_pre"));
    free(out);
    assert_int_equal(mech(&out, "db --db %s export %lld --csv %s", db, (long long)run, csv), 0);
    free(out);
    char *text = mech_test_read(csv, NULL);
    assert_non_null(strstr(text, "logit_diff"));
    assert_non_null(strstr(text, "0.25"));
    free(text);
    assert_int_equal(mech(&out, "db merge %s %s %s", merged, db, db), 0);
    free(out);
    assert_int_equal(mech(&out, "db --db %s ls", merged), 0);
    assert_non_null(strstr(out, "     2  patch"));
    free(out);
    assert_int_equal(mech(&out, "db --db %s show 99", db), 2); // a run id the file does not have: what the user typed
    free(out);
    assert_int_equal(mech(&out, "db --db %s frob", db), 2);
    free(out);
    assert_int_equal(mech(&out, "db --db tests/fixtures/gpt2-tiny/model.safetensors ls"), 1);
    free(out);
}

// Run 1 of db exported as CSV (owned text).
static char *run_csv(const char *db, const char *name) {
    char csv[512], *out;
    snprintf(csv, sizeof csv, "%s", mech_test_tmp(name));
    assert_int_equal(mech(&out, "db --db %s export 1 --csv %s", db, csv), 0);
    free(out);
    return mech_test_read(csv, NULL);
}

// mech lens writes one run; its rows are in the database.
static void test_cli_lens(void **state) {
    char db[512], *out;
    snprintf(db, sizeof db, "%s", mech_test_tmp("lens.db"));
    remove(db);
    assert_int_equal(mech(&out, "lens --model tests/fixtures/gpt2-tiny --ids 5,17,42,99 --target 7 --top-k 3 --db %s", db), 0);
    assert_non_null(strstr(out, "run 1: logit lens"));
    free(out);
    char *text = run_csv(db, "lens.csv");
    int lines = 0, kl0 = 0;
    for (char *p = text; *p; p++) lines += *p == '\n';
    // 3 residual layers x 4 positions x (3 top-k + kl + entropy + target) rows, plus the header
    assert_int_equal(lines, 3 * 4 * 6 + 1);
    // at the last layer the lens is the model itself: KL 0
    for (char *p = strstr(text, ",kl,"); p; p = strstr(p + 1, ",kl,")) kl0 += strncmp(p + 4, "0\n", 2) == 0;
    assert_true(kl0 >= 4);
    free(text);
    assert_int_equal(mech(&out, "lens --model tests/fixtures/gpt2-tiny --ids 5,17 --target 'two tokens' --db %s", db), 2);
    free(out);
}

// mech heads finds the head a compiled program placed to read the previous token.
static void test_cli_heads(void **state) {
    char src[512], model[512], db[512], *out;
    snprintf(src, sizeof src, "%s", mech_test_tmp("prev.rasp"));
    FILE *f = fopen(src, "wb");
    fputs("vocab {a, b, c};\nmax_seq_len 8;\nprev = aggregate(select(indices, indices, (k, q) -> k == q - 1), tokens);\n", f);
    fclose(f);
    snprintf(model, sizeof model, "%s", mech_test_tmp("prev.safetensors"));
    snprintf(db, sizeof db, "%s", mech_test_tmp("heads.db"));
    remove(db);
    assert_int_equal(mech(&out, "compile %s -o %s", src, model), 0);
    free(out);
    // BOS then 7 tokens: every row but BOS's puts all its weight on the previous position
    assert_int_equal(mech(&out, "heads --model %s --ids 0,1,2,3,1,2,3,2 --db %s", model, db), 0);
    assert_non_null(strstr(out, "previous_token   best L0H0 0.875"));
    free(out);
    assert_int_equal(mech(&out, "heads --model tests/fixtures/gpt2-tiny --random 10 --batch 2 --db %s", db), 0);
    assert_non_null(strstr(out, "run 2:"));
    free(out);
    assert_int_equal(mech(&out, "heads --model tests/fixtures/gpt2-tiny --db %s", db), 2);
    free(out);
}

// mech patch: pairs from JSONL and TSV, results per pair, --resume, errors with line numbers.
static void test_cli_patch(void **state) {
    char pairs[512], tsv[512], db[512], *out;
    snprintf(pairs, sizeof pairs, "%s", mech_test_tmp("pairs.jsonl"));
    snprintf(tsv, sizeof tsv, "%s", mech_test_tmp("pairs.tsv"));
    snprintf(db, sizeof db, "%s", mech_test_tmp("patch.db"));
    remove(db);
    FILE *f = fopen(pairs, "wb");
    fputs("{\"clean\": [5, 17, 42, 99, 7], \"corrupt\": [5, 18, 42, 99, 7], \"answer\": 3, \"wrong\": 4}\n"
          "# a comment\n"
          "{\"clean\": [1, 2, 3, 4, 5], \"corrupt\": [1, 2, 9, 4, 5], \"answer\": 6, \"wrong\": 7}\n", f);
    fclose(f);
    assert_int_equal(mech(&out, "patch --model tests/fixtures/gpt2-tiny --pairs %s --db %s", pairs, db), 0);
    assert_non_null(strstr(out, "run 1: resid_pre patching of 2 pairs"));
    free(out);
    char *text = run_csv(db, "patch.csv");
    // patching the one differing position at layer 0 restores the clean run
    assert_non_null(strstr(text, "1,0,resid_pre,0,1,-1,-1,-1,effect,1\n"));
    int lines = 0;
    for (char *p = text; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 1 + 2 * (2 + 2 * 2 * 5)); // header; per pair 2 baselines + 2 rows x (2 layers x 5 positions)
    free(text);
    // resuming a finished run adds nothing
    assert_int_equal(mech(&out, "patch --model tests/fixtures/gpt2-tiny --pairs %s --db %s --resume 1", pairs, db), 0);
    free(out);
    assert_int_equal(mech(&out, "db --db %s show 1", db), 0);
    assert_non_null(strstr(out, "results:    44 (2 items)"));
    free(out);
    // head sweep from TSV, token text answers
    f = fopen(tsv, "wb");
    fputs("Hello world\tHello there\t!\t,\n", f);
    fclose(f);
    assert_int_equal(mech(&out, "patch --model tests/fixtures/gpt2-tiny --pairs %s --sweep heads --metric logprob --db %s",
                          tsv, db), 2); // token ids of GPT-2 text exceed this model's 1000-token vocabulary
    assert_non_null(strstr(out, ":1: error: 'clean': token"));
    assert_non_null(strstr(out, "outside this model's vocabulary of 1000 tokens"));
    free(out);
    f = fopen(pairs, "wb");
    fputs("{\"clean\": [1, 2, 3], \"corrupt\": [1, 2, 3], \"answer\": 3, \"wrong\": 4}\n"
          "{\"clean\": [1, 2, 3], \"corrupt\": [1, 2], \"answer\": 3, \"wrong\": 4}\n", f);
    fclose(f);
    assert_int_equal(mech(&out, "patch --model tests/fixtures/gpt2-tiny --pairs %s --db %s", pairs, db), 2);
    assert_non_null(strstr(out, ":2: error: clean is 3 tokens but corrupt is 2"));
    free(out);
    assert_int_equal(mech(&out, "patch --model tests/fixtures/gpt2-tiny --pairs %s --sweep nowhere", pairs), 2);
    free(out);
    // built-in datasets on a small model with GPT-2's vocabulary
    char model[512];
    snprintf(model, sizeof model, "%s", mech_test_tmp("full-vocab.safetensors"));
    assert_int_equal(mech(&out, "init -o %s --layers 1 --d-model 32 --heads 2 --d-head 16 --d-mlp 64 --n-ctx 32", model), 0);
    free(out);
    const char *sets[] = {"ioi", "greater_than", "induction"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mech(&out, "patch --model %s --dataset %s --n 2 --sweep heads --db %s", model, sets[i], db), 0);
        assert_non_null(strstr(out, "heads patching of 2 pairs"));
        free(out);
    }
    assert_int_equal(mech(&out, "patch --model %s --dataset nonsense --db %s", model, db), 2);
    free(out);
    assert_int_equal(mech(&out, "patch --model %s --dataset ioi --pairs %s --db %s", model, pairs, db), 2);
    free(out);
}

// mech attrib: the stored components plus the bias add up to the stored logit difference.
static void test_cli_attrib(void **state) {
    char db[512], *out;
    snprintf(db, sizeof db, "%s", mech_test_tmp("attrib.db"));
    remove(db);
    assert_int_equal(mech(&out, "attrib --model tests/fixtures/gpt2-tiny --ids 5,17,42,99 --answer 3 --wrong 4 --db %s", db), 0);
    assert_non_null(strstr(out, "logit difference"));
    free(out);
    char *text = run_csv(db, "attrib.csv"), *save = NULL;
    double sum = 0, logit = 0, bias = 0;
    int comps = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char metric[32];
        double value;
        // run_id,item,site,layer,pos,head,token,rank,metric,value
        if (sscanf(line, "%*[^,],%*[^,],%*[^,],%*[^,],%*[^,],%*[^,],%*[^,],%*[^,],%31[^,],%lf", metric, &value) != 2) continue;
        if (!strcmp(metric, "embed") || !strcmp(metric, "head") || !strcmp(metric, "attn_bias") || !strcmp(metric, "mlp"))
            sum += value, comps++;
        if (!strcmp(metric, "bias")) bias = value;
        if (!strcmp(metric, "logit")) logit = value;
    }
    assert_int_equal(comps, 1 + 2 * (4 + 1 + 1));
    assert_true(fabs(sum + bias - logit) < 1e-4);
    assert_true(fabs(logit) > 1e-3);
    free(text);
    assert_int_equal(mech(&out, "attrib --model tests/fixtures/gpt2-tiny --ids 5,17 --db %s", db), 2);
    free(out);
}

// mech demo works from any directory and leaves nothing behind: its model
// goes to a temporary folder (removed) or to --out DIR (kept).
static void test_cli_demo(void **state) {
    char *out, dir[512], tmp[512], bin[4096], keep[600];
    snprintf(dir, sizeof dir, "%s", mech_test_tmpn("demo-cwd"));
    snprintf(tmp, sizeof tmp, "%s", mech_test_tmpn("demo-tmp"));
    mkdir(dir, 0755);
    mkdir(tmp, 0755);
    const char *b = getenv("MECH_BIN");
    assert_non_null(realpath(b && *b ? b : "./mech", bin));
    char cmd[13000], abs_tmp[4096];
    assert_non_null(realpath(tmp, abs_tmp));
    snprintf(cmd, sizeof cmd, "cd %s && TMPDIR=%s %s demo > demo.txt 2>&1", dir, abs_tmp, bin);
    assert_int_equal(system(cmd), 0);
    snprintf(keep, sizeof keep, "%s/demo.txt", dir);
    size_t len;
    out = mech_test_read(keep, &len);
    assert_non_null(strstr(out, "top-5 next tokens"));
    assert_non_null(strstr(out, "hooks cached"));
    assert_non_null(strstr(out, "the compiled model on \"a b c d\": [\"d\",\"c\",\"b\",\"a\"]"));
    assert_non_null(strstr(out, "compiled: 3 layers, 1 head, ")); // compiled reverse: one head, not "1 heads"
    free(out);
    remove(keep);
    assert_int_equal(rmdir(dir), 0); // empty: nothing written where it ran
    assert_int_equal(rmdir(tmp), 0); // and its temporary folder removed
    snprintf(keep, sizeof keep, "%s", mech_test_tmpn("demo-out"));
    assert_int_equal(mech(&out, "demo --out %s", keep), 0);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/demo-model.safetensors", keep);
    assert_int_equal(access(cmd, F_OK), 0);
    remove(cmd);
    rmdir(keep);
}

// Counts agree with their nouns, small numbers do not print as zero, and
// --decode ends the line on a terminal only (pipes keep the exact bytes).
static void test_cli_plurals_and_numbers(void **state) {
    char *out, path[512];
    snprintf(path, sizeof path, "%s", mech_test_tmp("one.safetensors"));
    assert_int_equal(mech(&out, "init -o %s --layers 1 --heads 1 --d-model 16 --d-head 16 --vocab 50", path), 0);
    assert_non_null(strstr(out, ": 1 layer, 1 head, d_model 16"));
    free(out);
    assert_int_equal(mech(&out, "lens --model %s --ids 1 --target 7 --db %s", path, mech_test_tmpn("one.db")), 0);
    assert_non_null(strstr(out, "1 sequence x 1 token, 2 layers"));
    assert_null(strstr(out, "0.0000"));
    free(out);
    mech_test_rm_db(mech_test_tmpn("one.db"));
    remove(path);
    assert_int_equal(mech(&out, "tokenize --decode --text '15496 995'"), 0);
    assert_string_equal(out, "Hello world");
    free(out);
    if (system("command -v script >/dev/null 2>&1") == 0) {
        const char *b = getenv("MECH_BIN");
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "script -qc \"%s tokenize --decode --text '15496 995'\" /dev/null", b && *b ? b : "./mech");
        FILE *p = popen(cmd, "r");
        char buf[256] = {0};
        size_t n = p ? fread(buf, 1, sizeof buf - 1, p) : 0;
        if (p) pclose(p);
        buf[n] = 0;
        assert_string_equal(buf, "Hello world\r\n"); // the terminal's newline
    }
}

// ---------------------------------------------------------------------------
// Every option is honoured or refused; numbers are parsed one strict way.

// A compiled model for the tests below (reverse over {a, b, c, d}).
static const char *compiled_model(void) {
    static char path[512];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s", mech_test_tmp("rev.safetensors"));
        char *out;
        if (mech(&out, "compile examples/rasp/reverse.rasp -o %s", path) != 0) fail_msg("compile: %s", out);
        free(out);
    }
    return path;
}

// Commands x options: each row is a command line and what it must do. Rows
// with exit 2 are options that used to be accepted and then ignored (or
// mis-parsed); the message says which option and why.
static void test_cli_options_honoured_or_refused(void **state) {
    const char *rev = compiled_model(), *tiny = "tests/fixtures/gpt2-tiny";
    char npz[512], db[512], x_txt[512];
    snprintf(npz, sizeof npz, "%s", mech_test_tmpn("opt.npz"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("opt.db"));
    snprintf(x_txt, sizeof x_txt, "%s", mech_test_tmpn("x.txt"));
    mech_test_rm_db(db);
    remove(x_txt);
    struct {
        const char *fmt, *model; // fmt takes the model, then db
        int code;
        const char *msg;
    } rows[] = {
        // wrong extensions are refused, not written in another format
        {"run --model %s --ids 1,2 --out X.txt --db-unused %s", tiny, 2, "unknown argument '--db-unused'"},
        {"run --model %s --ids 1,2 --out x.txt %.0s", tiny, 2, "--out 'x.txt': the cached activations are written as .npz"},
        {"run --model %s --ids 1,2 --logits x.npz %.0s", tiny, 2, "--logits 'x.npz': the logits are written as .npy"},
        // empty items in an id list
        {"run --model %s --ids 1,,2 %.0s", tiny, 2, "an empty item after item 1"},
        {"run --model %s --ids 1,2, %.0s", tiny, 2, "an empty item after item 2"},
        {"run --model %s --ids ,1 %.0s", tiny, 2, "an empty item before the first id"},
        {"lens --model %s --ids 1,,2 --db %s", tiny, 2, "an empty item"},
        {"heads --model %s --ids 1,,2 --db %s", tiny, 2, "an empty item"},
        {"tokenize --decode --text '1,,2' %.0s%.0s", "", 2, "an empty item"},
        // options that do not apply
        {"run --model %s --ids 1,2 --allow-special %.0s", tiny, 2, "--allow-special applies to --prompt"},
        {"run --model %s --input 'a b' --top-k 3 %.0s", rev, 2, "--top-k: a compiled RASP model prints its decoded output"},
        {"run --model %s --prompt 'a b' %.0s", rev, 2, "is a compiled RASP model: give its input with --input"},
        {"run --model %s --input 'a b' %.0s", tiny, 2, "--input is for models from `mech compile`"},
        {"patch --model %s --dataset ioi --corruption shuffle --db %s", tiny, 2, "--corruption does not apply to --dataset ioi"},
        {"patch --model %s --dataset greater_than --len 4 --db %s", tiny, 2, "--len does not apply to --dataset greater_than"},
        {"patch --model %s --pairs p.jsonl --n 4 --db %s", tiny, 2, "--n does not apply to --pairs"},
        {"patch --model %s --pairs p.jsonl --seed 4 --db %s", tiny, 2, "--seed does not apply to --pairs"},
        {"patch --model %s --dataset ioi --shard ' 2/8' --db %s", tiny, 2, "--shard ' 2/8': expected K/N"},
        {"patch --model %s --dataset ioi --sweep path --receivers '1.+1' --db %s", tiny, 2, "--receivers '1.+1': expected"},
        {"patch --model %s --dataset ioi --sweep path --receivers ' 1.1' --db %s", tiny, 2, "--receivers ' 1.1': expected"},
        {"tokenize --decode --allow-special --text 1 %.0s%.0s", "", 2, "--allow-special applies to encoding text"},
        {"init -o x.safetensors --attn-only --d-mlp 64 %.0s%.0s", "", 2, "--d-mlp: an --attn-only model has no MLP"},
        {"init -o x.safetensors --act relu --attn-only %.0s%.0s", "", 2, "--act: an --attn-only model has no MLP"},
        {"lens --model %s --input 'a b' --target 1 --db %s", rev, 2, "--target: the decoder lens (--input) reads variables"},
        {"lens --model %s --input 'a b' --top-k 3 --db %s", rev, 2, "--top-k: the decoder lens (--input) reads variables"},
        {"lens --model %s --ids 1,2 --allow-special --db %s", tiny, 2, "--allow-special applies to --prompt text"},
        {"lens --model %s --ids 1,2 --target +5 --db %s", tiny, 2, "--target '+5' is not one token"},
        {"lens --model %s --ids 1,2 --target 1000 --db %s", tiny, 2, "--target 1000: token ids of this model are 0 to 999"},
        {"lens --model %s --ids 0,1,2 --db %s", rev, 2, "is a compiled RASP model: give its input with --input"},
        {"heads --model %s --ids 1,2 --batch 4 --db %s", tiny, 2, "--batch applies to --random N"},
        {"heads --model %s --ids 1,2 --seed 4 --db %s", tiny, 2, "--seed applies to --random N"},
        {"acdc --model %s --dataset induction --tau 1 --taus 1,2 --db %s", tiny, 2, "--taus goes with --sweep"},
        {"acdc --model %s --dataset ioi --corruption shuffle --tau 1 --db %s", tiny, 2, "--corruption does not apply to --dataset ioi"},
        // bad user input is 2 in every command, as in `mech rasp`
        {"run --model %s --input 'a z' %.0s", rev, 2, "'z' (item 2) is not in the vocab"},
        {"run --model %s --ids 1,5000 %.0s", tiny, 2, "token id 5000 is outside the model's vocabulary"},
        {"run --model %s --ids 1,2,3 %.0s", rev, 2, "a compiled model's input is BOS"},
        {"run --model %s --ids 0,1,5 %.0s", rev, 2, "position 2: id 5 is not a vocab token"},
        {"lens --model %s --input 'a z' --db %s", rev, 2, "'z' (item 2) is not in the vocab"},
        {"patch --model %s --dataset ioi --n 2 --db %s", tiny, 2, "ioi:1: error: 'answer': token"},
        {"attrib --model %s --ids 1,2 --answer +3 --db %s", tiny, 2, "--answer '+3' is not one token"},
        {"init -o x.safetensors --layers 0 %.0s%.0s", "", 2, "--layers '0': expected an integer from 1"},
        // --threads on every command that computes, refused the same way everywhere
        {"run --model %s --ids 1,2 --threads 0 %.0s", tiny, 2, "--threads '0': expected an integer from 1 to 256"},
        {"lens --model %s --ids 1,2 --threads 0 --db %s", tiny, 2, "--threads '0'"},
        {"patch --model %s --dataset induction --threads 0 --db %s", tiny, 2, "--threads '0'"},
        {"heads --model %s --random 3 --threads 0 --db %s", tiny, 2, "--threads '0'"},
        {"attrib --model %s --ids 1,2 --answer 3 --threads 0 --db %s", tiny, 2, "--threads '0'"},
        {"acdc --model %s --dataset induction --tau 0.1 --threads 0 --db %s", tiny, 2, "--threads '0'"},
        {"lens --model %s --ids 1,2 --threads 2 --db %s", tiny, 0, "logit lens"},
        {"patch --model %s --dataset induction --n 1 --len 3 --threads 2 --db %s", tiny, 0, "patching of 1 pair "},
        {"heads --model %s --random 3 --batch 2 --threads 2 --db %s", tiny, 0, "head scores"},
        {"attrib --model %s --ids 1,2 --answer 3 --threads 2 --db %s", tiny, 0, "logit"},
        {"run --model %s --ids 1,2 --threads 2 %.0s", tiny, 0, "sequence 1: 2 tokens"},
        {"run --model %s --ids 1 %.0s", tiny, 0, "sequence 1: 1 token;"},
        // --input in every command that runs a model
        {"heads --model %s --input 'a b c d' --db %s", rev, 0, "head scores on 1 sequence x 5 tokens"},
        {"attrib --model %s --input 'a b' --answer a --db %s", rev, 0, "logit"},
        {"lens --model %s --input 'a b' --db %s", rev, 0, "decoder lens"},
        {"heads --model %s --input 'a b' --db %s", tiny, 2, "--input is for models from `mech compile`"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        char args[1024], *out;
        snprintf(args, sizeof args, rows[i].fmt, rows[i].model, db);
        int code = mech(&out, "%s", args);
        if (code != rows[i].code || !strstr(out, rows[i].msg))
            fail_msg("mech %s: exit %d (want %d), output:\n%s(want '%s')", args, code, rows[i].code, out, rows[i].msg);
        free(out);
        // every option a row uses is one its command documents in --help
        char name[32], *help;
        if (sscanf(rows[i].fmt, "%31s", name) != 1 || mech(&help, "%s --help", name) != 0) fail_msg("help of %s", name);
        for (const char *p = rows[i].fmt; (p = strstr(p, " --")); p += 3) {
            char opt[64];
            if (sscanf(p, " %63[-a-z]", opt) != 1 || !strcmp(opt, "--db-unused")) continue;
            char *hit = strstr(help, opt);
            while (hit && (hit[strlen(opt)] == '-' || (hit[strlen(opt)] >= 'a' && hit[strlen(opt)] <= 'z')))
                hit = strstr(hit + 1, opt);
            if (!hit) fail_msg("mech %s --help does not mention %s", name, opt);
        }
        free(help);
    }
    assert_int_equal(access("x.txt", F_OK), -1); // nothing written under a wrong name
    assert_int_equal(access("x.safetensors", F_OK), -1);
    mech_test_rm_db(db);
}

// One parser for every numeric option: the whole string, no space, no '+',
// a sign only where negative values mean something, nan and inf refused.
static void test_cli_numbers_are_strict(void **state) {
    const char *tiny = "tests/fixtures/gpt2-tiny";
    const char *opts[] = {"run --model %s --ids 1 --top-k '%s'", "run --model %s --ids 1 --threads '%s'",
                          "patch --model %s --dataset induction --n '%s'", "heads --model %s --random '%s'",
                          "lens --model %s --ids 1 --top-k '%s'", "init -o /nonexistent/%s.st --seed '%s'",
                          "acdc --model %s --dataset induction --n '%s' --tau 1"};
    const char *bad[] = {" 5", "+3", "5 ", "5x", "", "0x10", "1e3", "5.0"};
    for (size_t o = 0; o < sizeof opts / sizeof *opts; o++)
        for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
            char *out;
            int code = mech(&out, opts[o], tiny, bad[b]);
            if (code != 2 || !strstr(out, "expected an integer"))
                fail_msg("'%s' with '%s': exit %d, %s", opts[o], bad[b], code, out);
            free(out);
        }
    const char *bad_tau[] = {"nan", "inf", "-inf", "-0.1", " 0.1", "+0.1", "0x1p-3", "0.1 ", "1e999"};
    for (size_t b = 0; b < sizeof bad_tau / sizeof *bad_tau; b++) {
        char *out;
        int code = mech(&out, "acdc --model %s --dataset induction --tau '%s'", tiny, bad_tau[b]);
        if (code != 2 || !strstr(out, "--tau")) fail_msg("--tau '%s': exit %d, %s", bad_tau[b], code, out);
        free(out);
    }
    // --threads N is what every pool made afterwards gets (the library's
    // default, which each command's --threads sets)
    mech_pool_set_default(3);
    mech_pool *pool = mech_pool_new(0);
    assert_int_equal(mech_pool_size(pool), 3);
    mech_pool_free(pool);
    mech_pool_set_default(0);
    pool = mech_pool_new(0);
    assert_int_equal(mech_pool_size(pool), (int)sysconf(_SC_NPROCESSORS_ONLN) < 256 ? (int)sysconf(_SC_NPROCESSORS_ONLN) : 256);
    mech_pool_free(pool);
    // negative values only where they mean something (attrib --pos -1 is the last position, -2 the one
    // before; of 2 tokens, -3 is none)
    char *out;
    assert_int_equal(mech(&out, "attrib --model %s --ids 1,2 --answer 3 --pos -3 --db %s", tiny,
                          mech_test_tmp("num.db")), 2);
    free(out);
    mech_test_rm_db(mech_test_tmp("num.db"));
    // floats are stored in the shortest text that reads back as the same
    // double: tau 0.05, not 0.050000000000000003
    char db[512];
    snprintf(db, sizeof db, "%s", mech_test_tmpn("tau.db"));
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "acdc --model %s --dataset induction --n 2 --len 3 --tau 0.05 --db %s", tiny, db), 0);
    free(out);
    assert_int_equal(mech(&out, "db --db %s show 1", db), 0);
    assert_non_null(strstr(out, "\"tau\": 0.05,"));
    free(out);
    mech_test_rm_db(db);
}

// mech run on a compiled model honours --out, --logits and --ids: the files
// are written, the npz carries the tokens and the residual labels, and the
// decoded output names the program's values (not GPT-2 tokens).
static void test_cli_run_compiled_writes_what_it_is_asked(void **state) {
    const char *rev = compiled_model();
    char npz[512], npy[512], *out, *want;
    snprintf(npz, sizeof npz, "%s", mech_test_tmpn("rev.npz"));
    snprintf(npy, sizeof npy, "%s", mech_test_tmpn("rev.npy"));
    remove(npz);
    remove(npy);
    assert_int_equal(mech(&out, "run --model %s --input 'a b c' --cache '*' --out %s --logits %s", rev, npz, npy), 0);
    assert_int_equal(mech(&want, "rasp examples/rasp/reverse.rasp --input 'a b c'"), 0);
    assert_non_null(strstr(out, want)); // ["c","b","a"]
    free(out);
    // the same input as ids: BOS (0) then the vocab's ids 1..4
    assert_int_equal(mech(&out, "run --model %s --ids 0,1,2,3", rev), 0);
    assert_string_equal(out, want);
    free(out);
    free(want);
    mech_err err = {0};
    float *logits = NULL;
    int ndim = 0;
    int64_t shape[MECH_MAX_DIMS];
    assert_int_equal(mech_npy_read(npy, &logits, &ndim, shape, &err), MECH_OK);
    assert_int_equal(ndim, 3);
    assert_int_equal(shape[1], 4); // BOS + 3
    mech_free(logits);
    size_t len = 0;
    char *z = mech_test_read(npz, &len);
    // members are stored uncompressed: their headers and data can be read in place
    const char *hdr = memmem(z, len, "tokens.npy", 10);
    assert_non_null(hdr);
    const char *d = memmem(hdr, len - (size_t)(hdr - z), "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 4), }", 59);
    assert_non_null(d);
    const char *nl = memchr(d, '\n', 200);
    int32_t ids[4];
    memcpy(ids, nl + 1, sizeof ids);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 1);
    assert_int_equal(ids[3], 3);
    assert_non_null(memmem(z, len, "token_strings.npy", 17));
    assert_non_null(memmem(z, len, "'descr': '<U3', 'fortran_order': False, 'shape': (1, 4)", 55));
    // "BOS" in UTF-32LE
    assert_non_null(memmem(z, len, "B\0\0\0O\0\0\0S\0\0\0", 12));
    assert_non_null(memmem(z, len, "residual_labels.npy", 19));
    assert_non_null(memmem(z, len, "t\0\0\0o\0\0\0k\0\0\0e\0\0\0n\0\0\0s\0\0\0:\0\0\0", 28)); // tokens:"a"
    free(z);
}

// mech init --layers 0 is refused: such a model has no block to read.
// A model mech trained on ids (the shipped induction model) reads no text:
// its tokens print as ids, and a text prompt is a usage error rather than
// GPT-2 ids that mean nothing to it.
static void test_cli_model_trained_on_ids(void **state) {
    (void)state;
    const char *model = "examples/models/induction.safetensors";
    char *out;
    assert_int_equal(mech(&out, "run --model %s --ids 120,201,143,177,105,230,162,188,120,201 --top-k 1", model), 0);
    assert_non_null(strstr(out, "next token after <201>"));
    // the top-1 id is the library's argmax of the last row
    mech_err err = {0};
    mech_model *m;
    mech_run *r;
    assert_int_equal(mech_model_load(model, &m, &err), MECH_OK);
    assert_false(mech_model_reads_text(m));
    assert_int_equal(mech_run_new(m, 1, 10, &r, &err), MECH_OK);
    int32_t ids[10] = {120, 201, 143, 177, 105, 230, 162, 188, 120, 201};
    assert_int_equal(mech_run_forward(r, ids, &err), MECH_OK);
    const float *lg = mech_run_logits(r) + 9 * 256;
    int best = 0;
    for (int v = 1; v < 256; v++) best = lg[v] > lg[best] ? v : best;
    char want[32];
    snprintf(want, sizeof want, "<%d>", best);
    assert_non_null(strstr(strstr(out, "1. "), want));
    mech_run_free(r);
    mech_model_free(m);
    free(out);
    assert_int_equal(mech(&out, "run --model %s --prompt hello", model), 2);
    assert_non_null(strstr(out, "reads no text"));
    free(out);
    // a model with GPT-2's names (the fixture) still reads text
    assert_int_equal(mech(&out, "run --model tests/fixtures/gpt2-tiny --prompt 'a b' --top-k 1"), 0);
    assert_non_null(strstr(out, "next token after \" b\""));
    free(out);
}

static void test_cli_init_refuses_zero_layers(void **state) {
    char *out, path[512];
    snprintf(path, sizeof path, "%s", mech_test_tmp("l0.safetensors"));
    remove(path);
    assert_int_equal(mech(&out, "init -o %s --layers 0", path), 2);
    assert_non_null(strstr(out, "--layers '0'"));
    free(out);
    assert_int_equal(access(path, F_OK), -1);
}

// SIGHUP (a closed terminal) stops a sweep like Ctrl-C: status interrupted,
// finished pairs kept, exit 130.
static void test_cli_sighup_interrupts_a_sweep(void **state) {
    char db[512], errf[512];
    snprintf(db, sizeof db, "%s", mech_test_tmpn("hup.db"));
    snprintf(errf, sizeof errf, "%s", mech_test_tmpn("hup.err"));
    mech_test_rm_db(db);
    const char *bin = getenv("MECH_BIN") ? getenv("MECH_BIN") : "./mech";
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen(errf, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(99);
        execl(bin, bin, "patch", "--model", "tests/fixtures/gpt2-tiny", "--dataset", "induction", "--n", "100000",
              "--len", "6", "--sweep", "heads", "--db", db, (char *)NULL);
        _exit(98);
    }
    // wait until the run is open (the handlers are in place), then for a pair or two
    int started = 0;
    for (int i = 0; i < 3000 && !started; i++) {
        size_t n = 0;
        FILE *f = fopen(errf, "rb");
        char buf[4096] = {0};
        if (f) n = fread(buf, 1, sizeof buf - 1, f), fclose(f);
        started = n && strstr(buf, "patching heads");
        if (!started) usleep(10000);
    }
    assert_true(started);
    usleep(300000);
    assert_int_equal(kill(pid, SIGHUP), 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 130);
    mech_err err = {0};
    mech_store *s = NULL;
    assert_int_equal(mech_store_open(db, &s, &err), MECH_OK);
    mech_run_info info;
    assert_int_equal(mech_store_run_info(s, 1, &info, &err), MECH_OK);
    assert_string_equal(info.status, "interrupted");
    mech_store_run_info_deinit(&info);
    int *items = NULL;
    size_t n = 0;
    assert_int_equal(mech_store_items_done(s, 1, &items, &n, &err), MECH_OK);
    assert_true(n > 0 && n < 100000);
    free(items);
    mech_store_close(s);
    mech_test_rm_db(db);
}

// --dry-run measures the first pair, prints the estimate and writes nothing.
static void test_cli_patch_dry_run(void **state) {
    char db[512], *out;
    snprintf(db, sizeof db, "%s", mech_test_tmpn("dry.db"));
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "patch --model tests/fixtures/gpt2-tiny --dataset induction --n 40 --len 5 --sweep heads "
                                "--dry-run --db %s", db), 0);
    // 40 pairs x (2 layers x 4 heads) sites
    assert_non_null(strstr(out, "estimate: 40 pairs x 8 patched sites; the first pair took"));
    free(out);
    assert_int_equal(access(db, F_OK), -1);
    // a real run says the same after its first pair when stderr is a terminal, and not in a log
    assert_int_equal(mech(&out, "patch --model tests/fixtures/gpt2-tiny --dataset induction --n 3 --len 5 --sweep heads "
                                "--db %s", db), 0);
    assert_null(strstr(out, "estimate:"));
    free(out);
    if (system("command -v script >/dev/null 2>&1") == 0) {
        const char *b = getenv("MECH_BIN");
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "script -qc \"%s patch --model tests/fixtures/gpt2-tiny --dataset induction --n 3 "
                 "--len 5 --sweep heads --db %s\" /dev/null", b && *b ? b : "./mech", db);
        FILE *p = popen(cmd, "r");
        mech_buf got = {0};
        char chunk[4096];
        size_t n;
        while (p && (n = fread(chunk, 1, sizeof chunk, p)) > 0) mech_buf_append(&got, chunk, n);
        if (p) pclose(p);
        mech_buf_append(&got, "", 1);
        if (!strstr(got.data, "estimate: 3 pairs x 8 patched sites")) fail_msg("no estimate on a terminal:\n%s", got.data);
        mech_buf_free(&got);
    }
    mech_test_rm_db(db);
}

// The check before a run counts everything it will hold (weights,
// activations, logits, cache) and names the limit; mech run applies it.
static void test_cli_run_memory_counts_everything(void **state) {
    mech_err err = {0};
    mech_model *m = NULL;
    assert_int_equal(mech_model_load("tests/fixtures/gpt2-tiny", &m, &err), MECH_OK);
    const mech_config *c = &m->cfg;
    int B = 3, T = 5;
    double BT = B * T, C = c->d_model, NH = c->n_heads, HS = c->d_head, M = c->d_mlp;
    mech_run_bytes none, all;
    assert_int_equal(mech_run_memory(m, B, T, NULL, 0, 0, &none, &err), MECH_OK);
    assert_true(none.weights == 4.0 * (double)mech_config_n_params(c));
    assert_true(none.logits == 4.0 * BT * c->d_vocab);
    assert_true(none.cache == 0);
    // resid_pre, ln1 normalized, attn_out, resid_mid, mlp_out, resid_post and
    // the LayerNorm output (C each), q k v z (NH*HS), mlp pre/post (M), ln scale (1)
    assert_true(none.activations == 4.0 * BT * (7 * C + 4 * NH * HS + 2 * M + 1));
    const char *globs[] = {"blocks.0.attn.hook_pattern", "blocks.*.hook_resid_post", "blocks.0.attn.hook_pattern"};
    assert_int_equal(mech_run_memory(m, B, T, globs, 3, 0, &all, &err), MECH_OK);
    assert_true(all.cache == 4.0 * (B * NH * T * T + c->n_layers * BT * C)); // matched once each
    assert_true(all.total == all.weights + all.activations + all.logits + all.cache);
    // just over 80 % of a machine of `have` bytes: refused, with the parts and the limit
    double have = all.total / 0.8 * 0.999;
    assert_int_equal(mech_run_memory(m, B, T, globs, 3, have, &all, &err), MECH_ERR_NOMEM);
    assert_non_null(strstr(err.msg, "80 % of this machine's"));
    assert_non_null(strstr(err.msg, "logits"));
    assert_non_null(strstr(err.msg, "weights"));
    assert_int_equal(mech_run_memory(m, B, T, globs, 3, all.total / 0.8 * 1.001, &all, &err), MECH_OK);
    mech_model_free(m);
    // mech run refuses before allocating anything, naming the parts and the
    // limit: 32 x 1024 tokens on a 300,000-token vocabulary hold 39 GB of logits
    long ram_kb = sysconf(_SC_PHYS_PAGES) * (sysconf(_SC_PAGE_SIZE) / 1024);
    if (ram_kb <= 0 || ram_kb > 45L * 1024 * 1024) return; // a machine that could hold it
    char big[512], *out;
    snprintf(big, sizeof big, "%s", mech_test_tmp("bigvocab.safetensors"));
    assert_int_equal(mech(&out, "init -o %s --layers 1 --heads 1 --d-model 16 --d-head 16 --d-mlp 16 --n-ctx 1024 "
                                "--vocab 300000", big), 0);
    free(out);
    char spec[512];
    snprintf(spec, sizeof spec, "%s", mech_test_tmp("big.json"));
    FILE *f = fopen(spec, "wb");
    fprintf(f, "{\"model\": \"%s\", \"ids\": [", big);
    for (int b = 0; b < 32; b++) {
        fputs(b ? ", \"" : "\"", f);
        for (int t = 0; t < 1024; t++) fputs(t ? ",7" : "7", f);
        fputs("\"", f);
    }
    fputs("]}", f);
    fclose(f);
    assert_int_equal(mech(&out, "run --spec %s", spec), 1);
    assert_non_null(strstr(out, "B=32 x T=1024 would hold"));
    assert_non_null(strstr(out, "logits 39.3"));
    assert_non_null(strstr(out, "80 % of this machine's"));
    free(out);
    remove(big);
    remove(spec);
}

// mech info on a compiled model: its vocabulary, max_seq_len, residual
// labels, where each variable is computed (as `mech compile --explain`
// says) and the source; every hook with its shape.
static void test_cli_info_compiled(void **state) {
    char model[512], *info, *explain;
    snprintf(model, sizeof model, "%s", mech_test_tmpn("info-frac.safetensors"));
    assert_int_equal(mech(&explain, "compile examples/rasp/frac_prevs.rasp -o %s --explain", model), 0);
    assert_int_equal(mech(&info, "info %s", model), 0);
    assert_non_null(strstr(info, "vocab:        [\"h\",\"e\",\"l\",\"o\"]"));
    assert_non_null(strstr(info, "max_seq_len:  5\n"));
    assert_non_null(strstr(info, " tokens:\"e\" "));
    assert_non_null(strstr(info, " frac_l\n"));
    assert_non_null(strstr(info, "source:\n"));
    assert_non_null(strstr(info, "  frac_l = frac_prevs(tokens == \"l\");\n"));
    // every variable --explain places, info places in the same head or MLP
    int checked = 0;
    for (char *line = explain; (line = strstr(line, "\n")); ) {
        line++;
        char name[64], where[64];
        int layer, head;
        const char *at = strstr(line, " L");
        char *eol = strchr(line, '\n');
        if (!at || (eol && at > eol) || sscanf(line, "%63s", name) != 1) continue;
        if (sscanf(at, " L%d head %d", &layer, &head) == 2) snprintf(where, sizeof where, "L%d head %d", layer, head);
        else if (sscanf(at, " L%d mlp", &layer) == 1) snprintf(where, sizeof where, "L%d mlp", layer);
        else continue;
        char want[160];
        snprintf(want, sizeof want, "\n  %-16s", name);
        const char *row = strstr(info, want);
        if (!row) fail_msg("info does not list %s:\n%s", name, info);
        const char *row_end = strchr(row + 1, '\n');
        const char *w = strstr(row, where);
        if (!w || w > row_end) fail_msg("info places %s elsewhere than %s", name, where);
        checked++;
    }
    assert_int_equal(checked, 2); // map_3 (an MLP) and frac_l (a head)
    // hooks with their shapes, batch and length named
    assert_non_null(strstr(info, "blocks.0.attn.hook_pattern       [B, 1, T, T]"));
    assert_non_null(strstr(info, "blocks.1.hook_resid_post         [B, T, 13]"));
    assert_non_null(strstr(info, "blocks.0.attn.hook_z             [B, T, 1, 6]"));
    free(info);
    free(explain);
    assert_int_equal(mech(&info, "info tests/fixtures/gpt2-tiny --opt-in"), 0);
    assert_non_null(strstr(info, "blocks.1.mlp.hook_post           [B, T, 256]"));
    assert_non_null(strstr(info, "blocks.0.attn.hook_result        [B, T, 4, 64]"));
    assert_non_null(strstr(info, "ln_final.hook_scale              [B, T, 1]"));
    assert_null(strstr(info, "\nvocab:"));
    free(info);
    // selector_width is a head and the MLP after it: info shows both, as --explain does
    snprintf(model, sizeof model, "%s", mech_test_tmpn("info-rev.safetensors"));
    assert_int_equal(mech(&explain, "compile examples/rasp/reverse.rasp -o %s --explain", model), 0);
    assert_non_null(strstr(explain, "L0 head 0      L0 mlp 0..10"));
    assert_int_equal(mech(&info, "info %s", model), 0);
    const char *len_row = strstr(info, "\n  length ");
    assert_non_null(len_row);
    const char *len_end = strchr(len_row + 1, '\n'), *both = strstr(len_row, "L0 head 0 + L0 mlp");
    if (!both || both > len_end) fail_msg("info leaves out length's MLP:\n%s", info);
    free(info);
    free(explain);
}

// attrib on a compiled model: --answer/--wrong are output values of the
// program (a readout value, as in pair files), a bad one is a usage error
// naming the allowed values, answer == wrong is refused; --pos counts from
// either end of the sequence, -len..len-1, and is a usage error outside.
static void test_cli_attrib_compiled_answers_and_pos(void **state) {
    char model[512], db[512], *out;
    snprintf(model, sizeof model, "%s", mech_test_tmpn("attrib-rev.safetensors"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("attrib-rev.db"));
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "compile examples/rasp/reverse.rasp -o %s", model), 0);
    free(out);
    // reverse("a b c") ends with "a": its logit is 1 and the head of layer 2 writes it
    assert_int_equal(mech(&out, "attrib --model %s --input 'a b c' --answer a --db %s", model, db), 0);
    assert_non_null(strstr(out, "logit 1.0000"));
    assert_non_null(strstr(out, "L2H0             +1.0000"));
    free(out);
    // the answer is the readout's index 0 ("a"), not GPT-2's token for "a"
    assert_int_equal(mech_test_cli(&out, NULL, "db --db %s export 1 --csv - | grep -c ',logit,1'", db), 0);
    free(out);
    // "b" is at no position of reverse("a b c")'s end: logit 0, difference a - b 1
    assert_int_equal(mech(&out, "attrib --model %s --input 'a b c' --answer b --db %s", model, db), 0);
    assert_non_null(strstr(out, "logit 0.0000"));
    free(out);
    assert_int_equal(mech(&out, "attrib --model %s --input 'a b c' --answer a --wrong b --db %s", model, db), 0);
    assert_non_null(strstr(out, "logit difference"));
    assert_non_null(strstr(out, "logit 1.0000"));
    free(out);
    // numbers are not ids here: 1 is no output value of reverse
    assert_int_equal(mech(&out, "attrib --model %s --input 'a b c' --answer 1 --db %s", model, db), 2);
    assert_non_null(strstr(out, "not an output value"));
    assert_non_null(strstr(out, "a b c d"));
    free(out);
    assert_int_equal(mech(&out, "attrib --model %s --input 'a b c' --answer a --wrong z --db %s", model, db), 2);
    assert_non_null(strstr(out, "--wrong 'z'"));
    free(out);
    assert_int_equal(mech(&out, "attrib --model %s --input 'a b c' --answer a --wrong a --db %s", model, db), 2);
    assert_non_null(strstr(out, "the same"));
    free(out);
    // GPT-2: the same token twice is refused too, as an id and as text
    assert_int_equal(mech(&out, "attrib --model tests/fixtures/gpt2-tiny --ids 5,17 --answer 3 --wrong 3 --db %s", db), 2);
    free(out);
    // --pos: 4 tokens (BOS, a, b, c): -4..3; position 0 is BOS, where reverse reads nothing
    assert_int_equal(mech(&out, "attrib --model %s --input 'a b c' --answer c --pos -2 --db %s", model, db), 0);
    assert_non_null(strstr(out, "at position 2"));
    assert_non_null(strstr(out, "logit 0.0000")); // reverse("a b c") at 2 is "b"
    free(out);
    assert_int_equal(mech(&out, "attrib --model %s --input 'a b c' --answer b --pos -2 --db %s", model, db), 0);
    assert_non_null(strstr(out, "logit 1.0000"));
    free(out);
    assert_int_equal(mech(&out, "attrib --model %s --input 'a b c' --answer a --pos -4 --db %s", model, db), 0);
    assert_non_null(strstr(out, "at position 0"));
    free(out);
    const char *bad[] = {"9", "4", "-5"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mech(&out, "attrib --model %s --input 'a b c' --answer a --pos %s --db %s", model, bad[i], db), 2);
        if (!strstr(out, "has 4 tokens")) fail_msg("--pos %s: %s", bad[i], out);
        free(out);
    }
    // no run was opened by the refusals: 6 runs done above
    assert_int_equal(mech_test_cli(&out, NULL, "db --db %s ls | grep -c ' attrib '", db), 0);
    assert_int_equal(atoi(out), 6);
    free(out);
    mech_test_rm_db(db);
}

// Bad input the user typed is a usage error (2), and an option that does not
// apply to what was asked is refused, never silently dropped.
static void test_cli_bad_input_and_inapplicable_options(void **state) {
    char *out;
    assert_int_equal(mech(&out, "tokenize --decode --text '15496 99999'"), 2);
    assert_non_null(strstr(out, "99999"));
    free(out);
    assert_int_equal(mech(&out, "tokenize --decode --text '15496'"), 0);
    assert_string_equal(out, "Hello");
    free(out);
    assert_int_equal(mech(&out, "tokenize --decode --prepend-bos --text '1 2'"), 2);
    free(out);
    assert_int_equal(mech(&out, "tokenize --decode --no-prepend-bos --text '1 2'"), 2);
    free(out);
    assert_int_equal(mech(&out, "tokenize --no-prepend-bos --text Hello"), 0);
    assert_string_equal(out, "15496\n");
    free(out);
    assert_int_equal(mech(&out, "tokenize --help"), 0);
    assert_non_null(strstr(out, "--no-prepend-bos"));
    free(out);
    char model[512];
    snprintf(model, sizeof model, "%s", mech_test_tmpn("noverify.safetensors"));
    assert_int_equal(mech(&out, "compile examples/rasp/reverse.rasp -o %s --no-verify --max-verify 5", model), 2);
    assert_non_null(strstr(out, "--max-verify"));
    free(out);
    struct stat st;
    assert_int_not_equal(stat(model, &st), 0); // refused before writing
    assert_int_equal(mech(&out, "rasp examples/rasp/reverse.rasp --dag --trace"), 2);
    assert_non_null(strstr(out, "--trace"));
    free(out);
    assert_int_equal(mech(&out, "rasp examples/rasp/reverse.rasp --dag"), 0);
    free(out);
}

// A Hugging Face-layout model with n_layer 0 (config.json; `mech init`
// refuses 0 layers): wte, wpe and ln_f only.
static void write_zero_layer_model(const char *dir) {
    mkdir(dir, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"model_type\": \"gpt2\", \"n_layer\": 0, \"n_head\": 2, \"n_embd\": 8, \"n_ctx\": 16, "
               "\"n_positions\": 16, \"vocab_size\": 50, \"activation_function\": \"gelu_new\", "
               "\"layer_norm_epsilon\": 1e-05, \"tie_word_embeddings\": true}\n");
    fclose(f);
    enum { V = 50, N = 16, C = 8 };
    static float data[V * C + N * C + 2 * C];
    for (size_t i = 0; i < V * C + N * C; i++) data[i] = (float)((i * 37 % 101) - 50) / 500.0f;
    for (int i = 0; i < C; i++) data[V * C + N * C + i] = 1, data[V * C + N * C + C + i] = 0;
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [%d, %d], \"data_offsets\": [0, %zu]}, "
                     "\"wpe.weight\": {\"dtype\": \"F32\", \"shape\": [%d, %d], \"data_offsets\": [%zu, %zu]}, "
                     "\"ln_f.weight\": {\"dtype\": \"F32\", \"shape\": [%d], \"data_offsets\": [%zu, %zu]}, "
                     "\"ln_f.bias\": {\"dtype\": \"F32\", \"shape\": [%d], \"data_offsets\": [%zu, %zu]}}",
                     V, C, (size_t)V * C * 4, N, C, (size_t)V * C * 4, (size_t)(V + N) * C * 4, C,
                     (size_t)(V + N) * C * 4, (size_t)(V + N + 1) * C * 4, C, (size_t)(V + N + 1) * C * 4,
                     (size_t)(V + N + 2) * C * 4);
    while (n % 8) hdr[n++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t len = (uint64_t)n; // little-endian on every machine mech builds on
    assert_int_equal(fwrite(&len, 8, 1, f), 1);
    assert_int_equal(fwrite(hdr, 1, (size_t)n, f), (size_t)n);
    assert_int_equal(fwrite(data, sizeof data, 1, f), 1);
    fclose(f);
}

// A 0-layer model loads and runs, and every analysis that needs blocks is
// refused as a usage error before a run is opened (no database, no failed run).
static void test_cli_zero_layer_model(void **state) {
    char dir[512], db[512], *out;
    snprintf(dir, sizeof dir, "%s", mech_test_tmpn("zero-layers"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("zero-layers.db"));
    write_zero_layer_model(dir);
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "info %s", dir), 0);
    assert_non_null(strstr(out, "n_layers:     0\n"));
    free(out);
    assert_int_equal(mech(&out, "run --model %s --ids 5,17,42", dir), 0);
    free(out);
    const char *cmds[] = {"lens --model %s --ids 5,17,42 --db %s", "heads --model %s --ids 5,17,42 --db %s",
                          "heads --model %s --random 4 --db %s", "attrib --model %s --ids 5,17,42 --answer 3 --db %s",
                          "patch --model %s --dataset induction --n 2 --db %s",
                          "acdc --model %s --dataset induction --n 2 --tau 0.1 --db %s"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char line[1200];
        snprintf(line, sizeof line, cmds[i], dir, db);
        int rc = mech(&out, "%s", line);
        if (rc != 2 || !strstr(out, "no transformer blocks")) fail_msg("%s: exit %d\n%s", line, rc, out);
        free(out);
        struct stat st;
        if (stat(db, &st) == 0) fail_msg("%s opened %s", line, db);
    }
    assert_int_equal(mech(&out, "acdc --count-edges --model %s", dir), 2);
    assert_non_null(strstr(out, "no transformer blocks"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_help_for_every_command),
        cmocka_unit_test(test_cli_usage_errors_exit_2),
        cmocka_unit_test(test_cli_tokenize_round_trip),
        cmocka_unit_test(test_cli_init_info_run),
        cmocka_unit_test(test_cli_malformed_model_is_an_error_not_a_crash),
        cmocka_unit_test(test_cli_io_failures),
        cmocka_unit_test(test_cli_compile_and_run),
        cmocka_unit_test(test_cli_db),
        cmocka_unit_test(test_cli_lens),
        cmocka_unit_test(test_cli_heads),
        cmocka_unit_test(test_cli_patch),
        cmocka_unit_test(test_cli_attrib),
        cmocka_unit_test(test_cli_demo),
        cmocka_unit_test(test_cli_options_honoured_or_refused),
        cmocka_unit_test(test_cli_numbers_are_strict),
        cmocka_unit_test(test_cli_run_compiled_writes_what_it_is_asked),
        cmocka_unit_test(test_cli_init_refuses_zero_layers),
        cmocka_unit_test(test_cli_model_trained_on_ids),
        cmocka_unit_test(test_cli_sighup_interrupts_a_sweep),
        cmocka_unit_test(test_cli_patch_dry_run),
        cmocka_unit_test(test_cli_run_memory_counts_everything),
        cmocka_unit_test(test_cli_info_compiled),
        cmocka_unit_test(test_cli_plurals_and_numbers),
        cmocka_unit_test(test_cli_attrib_compiled_answers_and_pos),
        cmocka_unit_test(test_cli_bad_input_and_inapplicable_options),
        cmocka_unit_test(test_cli_zero_layer_model),
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
