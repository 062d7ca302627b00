/*
** bench/llmc_step.c: the anchor of bench_train and bench_backward:
** karpathy/llm.c's train_gpt2.c (gpt2_forward, gpt2_zero_grad,
** gpt2_backward, gpt2_update, as its main loop runs them) on GPT-2 small
** with random weights. Not part of mech's build: the benches compile it
** inside an llm.c checkout ($LLMC_DIR), including train_gpt2.c as it is,
** with the flags llm.c's own Makefile uses for train_gpt2 (bench/llmc.h).
**
**   llmc_step B T [step]  runs one training step (which allocates), prints
**                         "ready", then one step per line read from stdin,
**                         printing "ms <milliseconds>" after each (the
**                         benches alternate them with their own, so that
**                         load from other processes falls on both alike)
**   llmc_step B T parts   the same with gpt2_forward, then gpt2_zero_grad +
**                         gpt2_backward, and no update: "ms <forward>
**                         <backward>"
*/
#define TESTING // train_gpt2.c then leaves out its main()
#include "train_gpt2.c"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    int parts = argc == 4 && !strcmp(argv[3], "parts");
    if (argc < 3 || argc > 4 || (argc == 4 && !parts && strcmp(argv[3], "step"))) {
        fprintf(stderr, "usage: llmc_step B T [step|parts]\n");
        return 2;
    }
    int B = atoi(argv[1]), T = atoi(argv[2]);
    // A checkpoint in llm.c's format (256 int header: magic 20240326,
    // version 3, maxT, V, L, NH, C, padded V; then the float32 parameters in
    // its order), random weights: llm.c reads nothing else.
    GPT2Config c = {.max_seq_len = 1024, .vocab_size = 50257, .padded_vocab_size = 50304, .num_layers = 12,
                    .num_heads = 12, .channels = 768};
    size_t sizes[NUM_PARAMETER_TENSORS], n = 0;
    fill_in_parameter_sizes(sizes, c);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) n += sizes[i];
    const char *path = "mech_bench_random_124M.bin";
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    int hdr[256] = {20240326, 3, 1024, 50257, 12, 12, 768, 50304};
    fwrite(hdr, sizeof hdr, 1, f);
    float *p = malloc(n * sizeof *p);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        p[i] = 0.04f * ((float)(s >> 40) / 16777216.0f - 0.5f);
    }
    fwrite(p, sizeof *p, n, f);
    fclose(f);
    free(p);
    GPT2 model;
    gpt2_build_from_checkpoint(&model, path);
    remove(path);
    int *in = malloc((size_t)B * T * sizeof *in), *tg = malloc((size_t)B * T * sizeof *tg);
    for (int i = 0; i < B * T; i++)
        in[i] = (int)((7919u * (unsigned)i + 42u) % 50257u), tg[i] = (int)((7919u * (unsigned)(i + 1) + 42u) % 50257u);
    char line[64];
    for (int step = 1;; step++) {
        double t0 = now_s();
        gpt2_forward(&model, in, tg, B, T);
        double t1 = now_s();
        gpt2_zero_grad(&model);
        gpt2_backward(&model);
        if (!parts) gpt2_update(&model, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, step);
        double t2 = now_s();
        if (step == 1) printf("ready\n");
        else if (parts) printf("ms %.3f %.3f\n", (t1 - t0) * 1e3, (t2 - t1) * 1e3);
        else printf("ms %.3f\n", (t2 - t0) * 1e3);
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) break;
    }
    gpt2_free(&model);
    free(in);
    free(tg);
    return 0;
}
