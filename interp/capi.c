/*
** interp/capi.c: the long interpretability calls bracketed for language
** bindings (core/capi.c explains why): patching, with the process-wide
** cancellation flag as the sweep's cancel pointer.
*/
#include "interp/interp.h"

mech_status mech_capi_patch_new(const mech_model *m, const int32_t *clean, int n_clean, const int32_t *corrupt,
                                int n_corrupt, const mech_patch_opts *opts, mech_patch **out, int catch_sigint,
                                int *flag, mech_err *err) {
    mech_patch_opts o = *opts;
    o.cancel = mech_cancel_flag();
    mech_capi_call_begin(catch_sigint);
    mech_status rc = mech_patch_new(m, clean, n_clean, corrupt, n_corrupt, &o, out, err);
    *flag = mech_capi_call_end(catch_sigint);
    return rc;
}

mech_status mech_capi_patch_sweep(mech_patch *p, mech_patch_site site, mech_patch_result *out, int catch_sigint,
                                  int *flag, mech_err *err) {
    mech_capi_call_begin(catch_sigint);
    mech_status rc = mech_patch_sweep(p, site, out, err);
    *flag = mech_capi_call_end(catch_sigint);
    return rc;
}

mech_status mech_capi_patch_path(mech_patch *p, const mech_patch_receiver *recv, int n_recv, mech_patch_result *out,
                                 int catch_sigint, int *flag, mech_err *err) {
    mech_capi_call_begin(catch_sigint);
    mech_status rc = mech_patch_path(p, recv, n_recv, out, err);
    *flag = mech_capi_call_end(catch_sigint);
    return rc;
}
