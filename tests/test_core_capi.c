/*
** tests/test_core_capi.c: what language bindings use (core/capi.c): the
** process-wide cancellation flag (set by a request only while a call runs,
** by SIGINT inside a bracket, cleared by the last call out), the forward's
** check of it between blocks, the SIGINT handler chained and restored, and
** the model accessors.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/check.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static mech_model *tiny_model(void) {
    mech_config c = mech_config_gpt2_small();
    c.n_layers = 3, c.n_heads = 2, c.d_model = 16, c.d_head = 8, c.d_mlp = 32, c.n_ctx = 16, c.d_vocab = 50;
    mech_err err = {0};
    mech_model *m = NULL;
    assert_int_equal(mech_model_random(&c, 11, &m, &err), MECH_OK);
    return m;
}

static void test_request_needs_a_running_call(void **state) {
    (void)state;
    mech_cancel_request(); // nothing runs: nothing to stop, and no stale flag for the next call
    assert_int_equal(mech_cancel_pending(), 0);
    mech_capi_call_begin(0);
    mech_capi_call_begin(0); // two calls at once
    mech_cancel_request();
    assert_int_equal(mech_cancel_pending(), 2);
    assert_int_equal(*mech_cancel_flag(), 2);
    assert_int_equal(mech_capi_call_end(0), 2);
    assert_int_equal(mech_cancel_pending(), 2); // the other call has not seen it yet
    assert_int_equal(mech_capi_call_end(0), 2);
    assert_int_equal(mech_cancel_pending(), 0); // the last one out clears it
}

static int hook_requests(mech_tensor *t, int layer, void *user) {
    int *calls = user;
    calls[layer]++;
    if (layer == 0) mech_cancel_request(); // the hook itself lets the run go on
    return 0;
}

static void test_forward_stops_between_blocks(void **state) {
    (void)state;
    mech_model *m = tiny_model();
    mech_err err = {0};
    mech_run *r = NULL;
    int32_t ids[4] = {1, 2, 3, 4};
    assert_int_equal(mech_run_new(m, 1, 4, &r, &err), MECH_OK);
    int calls[3] = {0};
    assert_int_equal(mech_run_hook(r, "blocks.*.hook_resid_post", hook_requests, calls, &err), MECH_OK);
    int flag = -1;
    assert_int_equal(mech_capi_forward(r, ids, 0, &flag, &err), MECH_ERR_CANCELLED);
    assert_string_equal(err.msg, "interrupted before block 1");
    assert_int_equal(flag, 2);
    assert_int_equal(calls[0], 1);
    assert_int_equal(calls[1], 0); // block 1 never ran
    assert_null(mech_run_logits(r));
    assert_int_equal(mech_cancel_pending(), 0);
    // the same run goes to the end once the flag is clear, and equals a plain forward
    mech_run_reset(r);
    assert_int_equal(mech_capi_forward(r, ids, 0, &flag, &err), MECH_OK);
    assert_int_equal(flag, 0);
    float *a = malloc(4 * 50 * sizeof *a);
    assert_non_null(a);
    memcpy(a, mech_run_logits(r), 4 * 50 * sizeof *a);
    assert_int_equal(mech_run_forward(r, ids, &err), MECH_OK);
    assert_memory_equal(a, mech_run_logits(r), 4 * 50 * sizeof *a);
    free(a);
    mech_run_free(r);
    mech_model_free(m);
}

static int previous_calls;
static void previous_handler(int sig) { previous_calls += sig == SIGINT; }

static void test_sigint_bracket_chains_and_restores(void **state) {
    (void)state;
    struct sigaction sa, old, now;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = previous_handler;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGINT, &sa, &old), 0);
    previous_calls = 0;
    mech_capi_call_begin(1);
    mech_capi_call_begin(1); // nested (a forward inside a hook): one install
    raise(SIGINT);
    assert_int_equal(mech_cancel_pending(), 1);
    assert_int_equal(previous_calls, 1); // the previous handler still heard it
    assert_int_equal(mech_capi_call_end(1), 1);
    sigaction(SIGINT, NULL, &now);
    assert_true(now.sa_handler != previous_handler); // still ours inside the outer call
    assert_int_equal(mech_capi_call_end(1), 1);
    sigaction(SIGINT, NULL, &now);
    assert_true(now.sa_handler == previous_handler); // restored
    assert_int_equal(mech_cancel_pending(), 0);
    // SIGINT ignored before the bracket stays ignored inside it
    sa.sa_handler = SIG_IGN;
    sigaction(SIGINT, &sa, NULL);
    mech_capi_call_begin(1);
    raise(SIGINT);
    assert_int_equal(mech_cancel_pending(), 0);
    assert_int_equal(mech_capi_call_end(1), 0);
    sigaction(SIGINT, &old, NULL);
}

static void test_model_accessors(void **state) {
    (void)state;
    mech_err err = {0};
    mech_model *m = NULL;
    assert_int_equal(mech_capi_model_random("{\"n_layers\": 2, \"d_model\": 32, \"n_heads\": 4, \"d_head\": 8, "
                                            "\"d_mlp\": 64, \"n_ctx\": 8, \"d_vocab\": 70, \"act\": \"relu\"}",
                                            3, &m, &err),
                     MECH_OK);
    assert_int_equal(m->cfg.n_layers, 2);
    assert_int_equal(m->cfg.d_vocab, 70);
    assert_int_equal(m->cfg.act, MECH_ACT_RELU);
    assert_null(mech_capi_model_tokenizer(m));
    char *j = mech_capi_model_config_json(m);
    assert_non_null(j);
    assert_non_null(strstr(j, "\"n_layers\": 2"));
    assert_non_null(strstr(j, "\"act\": \"relu\""));
    mech_free(j);
    mech_model_free(m);
    m = NULL;
    assert_int_equal(mech_capi_model_random("{\"n_layers\": ", 3, &m, &err), MECH_ERR_FORMAT);
    assert_null(m);
    assert_int_equal(mech_capi_model_random("{\"n_heads\": 0}", 3, &m, &err), MECH_ERR_RANGE);
    assert_non_null(strstr(err.msg, "n_heads"));
    assert_null(m);
    assert_int_equal(mech_capi_sizeof("mech_err"), sizeof(mech_err));
    assert_int_equal(mech_capi_sizeof("mech_tensor"), sizeof(mech_tensor));
    assert_int_equal(mech_capi_sizeof("nothing"), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_needs_a_running_call),
        cmocka_unit_test(test_forward_stops_between_blocks),
        cmocka_unit_test(test_sigint_bracket_chains_and_restores),
        cmocka_unit_test(test_model_accessors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
