/*
** core/capi.c: what a language binding (python/mech) needs beyond the public
** API: a process-wide cancellation flag the forward pass checks between
** blocks, set by SIGINT while a binding's call runs (Python's own handler
** cannot run until the C call returns), plus accessors that spare a binding
** from mirroring mech_model's layout. A binding calls long operations
** through wrappers (mech_capi_forward here, mech_capi_patch_* in
** interp/capi.c, mech_capi_rasp_* in compiler/rasp_capi.c) that bracket them
** in C: no interpreter code runs between the bracket's begin and end, so an
** exception raised there (Python's KeyboardInterrupt) cannot unbalance it.
*/
#include "core/core.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

// Read by long computations (the forward between blocks; patch sweeps and
// ACDC through their cancel pointer). A plain volatile int: it is written
// from a signal handler and read by pointer as mech_patch_opts.cancel.
static volatile int cancel_flag;
static int active;           // binding calls in progress (atomic builtins)
static int sigint_depth;     // nested calls of the one thread that installed the handler
static struct sigaction sigint_saved;

static void on_sigint(int sig, siginfo_t *info, void *ctx) {
    if (sigint_saved.sa_handler == SIG_IGN) return;
    cancel_flag = 1;
    // The previous handler (Python's) still learns of the signal, so the
    // interpreter raises KeyboardInterrupt itself once the call returns.
    if (sigint_saved.sa_flags & SA_SIGINFO) {
        if (sigint_saved.sa_sigaction) sigint_saved.sa_sigaction(sig, info, ctx);
    } else if (sigint_saved.sa_handler == SIG_DFL) {
        // Nobody handles SIGINT: it kills the process, as it would have.
        sigaction(SIGINT, &sigint_saved, NULL);
        raise(sig);
    } else if (sigint_saved.sa_handler) {
        sigint_saved.sa_handler(sig);
    }
}

// 2 (not SIGINT's 1): the binding tells a request from Ctrl-C. Without a
// call in progress there is nothing to stop, and the next call must not be.
void mech_cancel_request(void) {
    if (__atomic_load_n(&active, __ATOMIC_SEQ_CST) > 0 && !cancel_flag) cancel_flag = 2;
}

int mech_cancel_pending(void) { return cancel_flag; }

const volatile int *mech_cancel_flag(void) { return &cancel_flag; }

void mech_capi_call_begin(int catch_sigint) {
    __atomic_add_fetch(&active, 1, __ATOMIC_SEQ_CST);
    if (catch_sigint && sigint_depth++ == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigint;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &sigint_saved);
    }
}

// Returns the flag: 0, 1 (SIGINT) or 2 (mech_cancel_request).
int mech_capi_call_end(int catch_sigint) {
    int was = cancel_flag;
    if (catch_sigint && sigint_depth > 0 && --sigint_depth == 0) sigaction(SIGINT, &sigint_saved, NULL);
    // The last call out clears the flag: one Ctrl-C stops every call that
    // was running, not the next one started.
    if (__atomic_sub_fetch(&active, 1, __ATOMIC_SEQ_CST) == 0) cancel_flag = 0;
    return was;
}

mech_status mech_capi_forward(mech_run *r, const int32_t *ids, int catch_sigint, int *flag, mech_err *err) {
    mech_capi_call_begin(catch_sigint);
    mech_status rc = mech_run_forward(r, ids, err);
    *flag = mech_capi_call_end(catch_sigint);
    return rc;
}

const mech_tokenizer *mech_capi_model_tokenizer(const mech_model *m) { return m ? m->tok : NULL; }

char *mech_capi_model_config_json(const mech_model *m) {
    mech_buf b = {0};
    mech_config_to_json(&m->cfg, &b);
    if (b.oom) {
        mech_buf_free(&b);
        return NULL;
    }
    return b.data;
}

mech_status mech_capi_model_random(const char *config_json, uint64_t seed, mech_model **out, mech_err *err) {
    *out = NULL;
    mech_json *j = NULL;
    mech_config cfg = mech_config_gpt2_small();
    mech_status rc = mech_json_parse(config_json, strlen(config_json), &j, err);
    if (!rc) rc = mech_config_from_json(j, &cfg, err);
    mech_json_free(j);
    if (!rc) rc = mech_config_validate(&cfg, err);
    if (!rc) rc = mech_model_random(&cfg, seed, out, err);
    return rc;
}

size_t mech_capi_sizeof(const char *type) {
    if (!strcmp(type, "mech_err")) return sizeof(mech_err);
    if (!strcmp(type, "mech_tensor")) return sizeof(mech_tensor);
    if (!strcmp(type, "mech_buf")) return sizeof(mech_buf);
    if (!strcmp(type, "mech_metric")) return sizeof(mech_metric);
    return 0;
}
