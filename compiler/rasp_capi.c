/*
** compiler/rasp_capi.c: the long compiler calls bracketed for language
** bindings (core/capi.c explains why), with the process-wide cancellation
** flag as the compile's and the verification's cancel pointer.
*/
#include "compiler/compiler.h"

#include <string.h>

mech_status mech_capi_rasp_compile(const mech_rasp_program *p, int64_t max_params, int64_t max_values,
                                   mech_rasp_compiled **out, int catch_sigint, int *flag, mech_err *err) {
    mech_rasp_limits lim = {.max_params = max_params, .max_values = max_values,
                            .cancel = (volatile int *)mech_cancel_flag()};
    mech_capi_call_begin(catch_sigint);
    mech_status rc = mech_rasp_compile_limited(p, &lim, out, err);
    *flag = mech_capi_call_end(catch_sigint);
    return rc;
}

mech_status mech_capi_rasp_verify(const mech_rasp_program *p, const mech_model *m, uint64_t seed, size_t *checked,
                                  int catch_sigint, int *flag, mech_err *err) {
    mech_rasp_verify_opts o = {.seed = seed, .cancel = (volatile int *)mech_cancel_flag()};
    mech_rasp_verify_result res = {0};
    mech_capi_call_begin(catch_sigint);
    mech_status rc = mech_rasp_verify_ex(p, m, &o, &res, err);
    *flag = mech_capi_call_end(catch_sigint);
    *checked = res.checked;
    return rc;
}

mech_status mech_capi_rasp_run(mech_rasp_runner *r, const mech_rasp_value *inputs, size_t n_inputs, size_t len,
                               mech_rasp_value *outputs, int catch_sigint, int *flag, mech_err *err) {
    mech_capi_call_begin(catch_sigint);
    mech_status rc = mech_rasp_runner_run(r, inputs, n_inputs, len, outputs, err);
    *flag = mech_capi_call_end(catch_sigint);
    return rc;
}

size_t mech_capi_rasp_sizeof(const char *type) {
    if (!strcmp(type, "mech_rasp_value")) return sizeof(mech_rasp_value);
    if (!strcmp(type, "mech_rasp_compiled")) return sizeof(mech_rasp_compiled);
    return 0;
}
