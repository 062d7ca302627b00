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
    assert_int_equal(mech(&out, "tokenize --decode --text '99999999'"), 1);
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
                 "sys.exit(0 if 'blocks.0.attn.hook_pattern.npy' in n and 'blocks.0.attn.hook_z.npy' in n and len(n)==6 else 1)\"",
                 npz);
        assert_int_equal(system(cmd), 0);
    }
    // a batch of unequal lengths is padded (tests/test_cli_batch.c); ids past the vocabulary, a missing model
    assert_int_equal(mech(&out, "run --model %s --ids 1,2 --ids 1,2,3", model), 0);
    assert_non_null(strstr(out, "sequence 1: 2 tokens"));
    free(out);
    assert_int_equal(mech(&out, "run --model %s --ids 1,200", model), 1);
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
    assert_int_equal(mech(&out, "run --model %s --input '3 9'", model), 1);
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
    assert_int_equal(mech(&out, "run --model tests/fixtures/gpt2-tiny --input 'a b'"), 1);
    assert_non_null(strstr(out, "not a compiled RASP model"));
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
    assert_int_equal(mech(&out, "db --db %s show 99", db), 1);
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
                          tsv, db), 1); // token ids of GPT-2 text exceed this model's 1000-token vocabulary
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

static void test_cli_demo(void **state) {
    char *out;
    assert_int_equal(mech(&out, "demo"), 0);
    assert_non_null(strstr(out, "top-5 next tokens"));
    assert_non_null(strstr(out, "hooks cached"));
    assert_non_null(strstr(out, "the compiled model on \"a b c d\": [\"d\",\"c\",\"b\",\"a\"]"));
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
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
