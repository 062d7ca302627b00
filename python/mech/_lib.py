"""The shared library (libmech.so) and the ctypes declarations of the C API
the package uses; errors become Python exceptions here.

Nothing in this module is public: the rest of the package wraps it.
"""

import ctypes
import os
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, Union, byref, c_char, c_char_p, c_double, c_float, c_int,
                    c_int32, c_int64, c_size_t, c_uint8, c_uint32, c_uint64, c_void_p)

# ---------------------------------------------------------------------------
# Errors

# mech_status codes (core/core.h), in order.
OK, NOMEM, IO, FORMAT, SHAPE, PARSE, TYPE, DB, RANGE, CANCELLED, ARG = range(11)


class MechError(Exception):
    """An error the C library reported: `code` is its mech_status number,
    `message` the library's message (str(e) is the message)."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        self.code = code


class MechNoMemError(MechError, MemoryError):
    """Out of memory (MECH_ERR_NOMEM), also a run too large for this machine."""


class MechIOError(MechError, OSError):
    """A file could not be opened, read, written or mapped (MECH_ERR_IO)."""


class MechFormatError(MechError, ValueError):
    """A malformed file: safetensors, JSON, vocab, npy (MECH_ERR_FORMAT)."""


class MechShapeError(MechError, ValueError):
    """A tensor shape that does not match the config (MECH_ERR_SHAPE)."""


class MechParseError(MechError, SyntaxError):
    """Malformed source text, e.g. a RASP syntax error (MECH_ERR_PARSE)."""


class MechTypeError(MechError, TypeError):
    """A value of the wrong kind, e.g. a RASP type error (MECH_ERR_TYPE)."""


class MechDBError(MechError):
    """A results database error (MECH_ERR_DB)."""


class MechRangeError(MechError, IndexError):
    """An index or value out of range: token id, layer, T (MECH_ERR_RANGE)."""


class MechCancelled(MechError):
    """The call was stopped (MECH_ERR_CANCELLED) by mech.cancel() or a hook."""


class MechArgError(MechError, ValueError):
    """An invalid argument (MECH_ERR_ARG)."""


_ERRORS = {NOMEM: MechNoMemError, IO: MechIOError, FORMAT: MechFormatError, SHAPE: MechShapeError,
           PARSE: MechParseError, TYPE: MechTypeError, DB: MechDBError, RANGE: MechRangeError,
           CANCELLED: MechCancelled, ARG: MechArgError}


class Err(Structure):
    _fields_ = [("code", c_int), ("msg", c_char * 1024)]


def error(code, err=None, message=None):
    """The exception for status code with err's message."""
    if message is None:
        message = err.msg.decode("utf-8", "replace") if err is not None and err.msg else ""
    if not message:
        message = lib.mech_strerror(code).decode()
    return _ERRORS.get(code, MechError)(message, code)


def check(code, err):
    """Raises the exception for a failed status."""
    if code:
        raise error(code, err)


# ---------------------------------------------------------------------------
# Structures mirrored from the public headers

class Tensor(Structure):  # mech_tensor
    _fields_ = [("data", POINTER(c_float)), ("ndim", c_int), ("shape", c_int64 * 5), ("name", c_char_p)]


class Buf(Structure):  # mech_buf
    _fields_ = [("data", c_void_p), ("len", c_size_t), ("cap", c_size_t), ("oom", c_int)]


class RunBytes(Structure):  # mech_run_bytes
    _fields_ = [(n, c_double) for n in ("weights", "activations", "logits", "cache", "total", "limit")]


LENS_MAX_K = 32


class LensRow(Structure):  # mech_lens_row
    _fields_ = [("layer", c_int), ("batch", c_int), ("pos", c_int), ("k", c_int),
                ("top_ids", c_int32 * LENS_MAX_K), ("top_probs", c_double * LENS_MAX_K), ("target", c_int32),
                ("target_rank", c_int64), ("target_prob", c_double), ("kl", c_double), ("entropy", c_double)]


class Dla(Structure):  # mech_dla
    _fields_ = [("n_comp", c_int), ("B", c_int), ("n_layers", c_int), ("labels", POINTER(c_char * 32)),
                ("attr", POINTER(c_double)), ("accum", POINTER(c_double)), ("bias", POINTER(c_double)),
                ("logit", POINTER(c_double))]


class _RaspU(Union):
    _fields_ = [("b", c_int), ("i", c_int64), ("f", c_double), ("s", c_void_p), ("t", c_void_p)]


class RaspValue(Structure):  # mech_rasp_value
    _anonymous_ = ("u",)
    _fields_ = [("type", c_uint8), ("depth", c_uint8), ("n", c_uint32), ("u", _RaspU)]


class RaspCompiled(Structure):  # mech_rasp_compiled
    _fields_ = [("model", c_void_p), ("n_meta", c_size_t), ("meta_keys", POINTER(c_char_p)),
                ("meta_values", POINTER(c_char_p)), ("circuit", c_char_p)]


class AcdcArgs(Structure):  # mech_capi_acdc_args (interp/interp.h)
    _fields_ = [("metric", c_int), ("ablation", c_int), ("tau", c_double), ("abs_value", c_int),
                ("heads_ascending", c_int), ("answer", POINTER(c_int32)), ("wrong", POINTER(c_int32)),
                ("mask", POINTER(c_uint8)), ("n_out", c_int), ("pos_perm", POINTER(c_int32)), ("split_embed", c_int),
                ("threads", c_int)]


HOOK_FN = CFUNCTYPE(c_int, POINTER(Tensor), c_int, c_void_p)

# ---------------------------------------------------------------------------
# Loading


def _find_library():
    env = os.environ.get("MECH_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    for p in (os.path.join(here, "libmech.so"),
              os.path.join(here, "..", "..", "build-pic", "libmech.so")):
        if os.path.exists(p):
            return p
    raise ImportError("mech: libmech.so not found beside the package (%s); build it with `make python` in the "
                      "mech repository, or point MECH_LIB at it" % here)


_PROTOS = {
    # core
    "mech_strerror": (c_char_p, [c_int]),
    "mech_free": (None, [c_void_p]),
    "mech_buf_free": (None, [POINTER(Buf)]),
    "mech_model_load": (c_int, [c_char_p, POINTER(c_void_p), POINTER(Err)]),
    "mech_model_free": (None, [c_void_p]),
    "mech_model_meta": (c_char_p, [c_void_p, c_char_p]),
    "mech_hook_names": (c_int, [c_void_p, c_int, POINTER(POINTER(c_char_p))]),
    "mech_hook_names_free": (None, [POINTER(c_char_p), c_int]),
    "mech_run_new": (c_int, [c_void_p, c_int, c_int, POINTER(c_void_p), POINTER(Err)]),
    "mech_run_free": (None, [c_void_p]),
    "mech_run_set_threads": (c_int, [c_void_p, c_int, POINTER(Err)]),
    "mech_run_hook": (c_int, [c_void_p, c_char_p, HOOK_FN, c_void_p, POINTER(Err)]),
    "mech_run_cache": (c_int, [c_void_p, c_char_p, POINTER(Err)]),
    "mech_run_memory": (c_int, [c_void_p, c_int, c_int, POINTER(c_char_p), c_int, c_double, POINTER(RunBytes),
                                POINTER(Err)]),
    "mech_run_logits": (POINTER(c_float), [c_void_p]),
    "mech_run_cached": (POINTER(Tensor), [c_void_p, POINTER(c_size_t)]),
    "mech_run_set_mask": (c_int, [c_void_p, POINTER(c_uint8), POINTER(Err)]),
    "mech_tokenizer_gpt2": (c_int, [POINTER(c_void_p), POINTER(Err)]),
    "mech_tokenizer_free": (None, [c_void_p]),
    "mech_tokenizer_encode": (c_int, [c_void_p, c_char_p, c_size_t, c_int, POINTER(POINTER(c_int32)),
                                      POINTER(c_size_t), POINTER(Err)]),
    "mech_tokenizer_decode": (c_int, [c_void_p, POINTER(c_int32), c_size_t, POINTER(c_void_p), POINTER(c_size_t),
                                      POINTER(Err)]),
    "mech_tokenizer_token": (c_void_p, [c_void_p, c_int32, POINTER(c_size_t)]),
    "mech_tokenizer_eot": (c_int32, [c_void_p]),
    "mech_tokenizer_vocab_size": (c_int, [c_void_p]),
    # core/capi.c
    "mech_cancel_request": (None, []),
    "mech_cancel_pending": (c_int, []),
    "mech_cancel_flag": (POINTER(c_int), []),
    "mech_capi_forward": (c_int, [c_void_p, POINTER(c_int32), c_int, POINTER(c_int), POINTER(Err)]),
    "mech_capi_model_tokenizer": (c_void_p, [c_void_p]),
    "mech_capi_model_config_json": (c_void_p, [c_void_p]),
    "mech_capi_model_random": (c_int, [c_char_p, c_uint64, POINTER(c_void_p), POINTER(Err)]),
    "mech_capi_sizeof": (c_size_t, [c_char_p]),
    # interp
    "mech_capi_patch_new": (c_int, [c_void_p, POINTER(c_int32), c_int, POINTER(c_int32), c_int, c_int, c_int32,
                                    c_int32, c_int, c_int, c_int, POINTER(c_void_p), c_int, POINTER(c_int),
                                    POINTER(Err)]),
    "mech_capi_patch_sweep": (c_int, [c_void_p, c_int, POINTER(c_int), POINTER(c_int64), POINTER(POINTER(c_float)),
                                      POINTER(POINTER(c_float)), POINTER(c_double), POINTER(c_double),
                                      POINTER(c_int64), c_int, POINTER(c_int), POINTER(Err)]),
    "mech_capi_patch_path": (c_int, [c_void_p, POINTER(c_int32), POINTER(c_int32), POINTER(c_int32), c_int,
                                     POINTER(c_int), POINTER(c_int64), POINTER(POINTER(c_float)),
                                     POINTER(POINTER(c_float)), POINTER(c_double), POINTER(c_double),
                                     POINTER(c_int64), c_int, POINTER(c_int), POINTER(Err)]),
    "mech_capi_interp_sizeof": (c_size_t, [c_char_p]),
    "mech_capi_rasp_sizeof": (c_size_t, [c_char_p]),
    "mech_capi_acdc": (c_int, [c_void_p, POINTER(c_int32), POINTER(c_int32), c_int, c_int, POINTER(AcdcArgs),
                               POINTER(c_void_p), POINTER(c_double), POINTER(c_int64), c_int, POINTER(c_int),
                               POINTER(Err)]),
    "mech_capi_acdc_n_nodes": (c_int, [c_void_p]),
    "mech_capi_acdc_n_edges": (c_int, [c_void_p]),
    "mech_capi_acdc_node_name": (c_char_p, [c_void_p, c_int]),
    "mech_capi_acdc_edges": (None, [c_void_p, POINTER(c_int32), POINTER(c_int32), POINTER(c_int32), POINTER(c_uint8),
                                    POINTER(c_double)]),
    "mech_acdc_graph_free": (None, [c_void_p]),
    "mech_capi_eap": (c_int, [c_void_p, POINTER(c_int32), POINTER(c_int32), c_int, c_int, c_int, c_int,
                              POINTER(c_int32), POINTER(c_int32), c_int, c_int, POINTER(c_void_p),
                              POINTER(POINTER(c_double)), POINTER(c_double), c_int, POINTER(c_int), POINTER(Err)]),
    "mech_acdc_truth_n_out": (c_int, [c_char_p]),
    "mech_acdc_torch_randperm": (None, [c_uint64, c_int, POINTER(c_int32)]),
    "mech_patch_free": (None, [c_void_p]),
    "mech_patch_clean_metric": (c_double, [c_void_p]),
    "mech_patch_corrupted_metric": (c_double, [c_void_p]),
    "mech_patch_site_name": (c_char_p, [c_int]),
    "mech_patch_metric_name": (c_char_p, [c_int]),
    "mech_lens_cache": (c_int, [c_void_p, POINTER(Err)]),
    "mech_lens_logit": (c_int, [c_void_p, c_void_p, c_int, POINTER(c_int32), POINTER(POINTER(LensRow)),
                                POINTER(c_size_t), POINTER(Err)]),
    "mech_lens_dla": (c_int, [c_void_p, c_void_p, c_int, POINTER(c_int32), POINTER(c_int32), POINTER(POINTER(Dla)),
                              POINTER(Err)]),
    "mech_dla_free": (None, [POINTER(Dla)]),
    "mech_heads_score": (c_int, [c_void_p, c_void_p, POINTER(c_int32), c_int, c_int, c_int, c_int,
                                 POINTER(c_double), POINTER(Err)]),
    "mech_head_kind_name": (c_char_p, [c_int]),
    # compiler
    "mech_rasp_parse": (c_int, [c_char_p, c_char_p, c_size_t, POINTER(c_void_p), POINTER(Err)]),
    "mech_rasp_program_free": (None, [c_void_p]),
    "mech_rasp_input_parse": (c_int, [c_void_p, c_char_p, POINTER(POINTER(RaspValue)), POINTER(c_size_t),
                                      POINTER(Err)]),
    "mech_rasp_eval": (c_int, [c_void_p, POINTER(RaspValue), c_size_t, POINTER(POINTER(RaspValue)), POINTER(Err)]),
    "mech_rasp_token_id": (c_int32, [c_void_p, POINTER(RaspValue)]),
    "mech_rasp_values_json": (None, [POINTER(Buf), POINTER(RaspValue), c_size_t]),
    "mech_capi_rasp_compile": (c_int, [c_void_p, c_int64, c_int64, POINTER(POINTER(RaspCompiled)), c_int,
                                       POINTER(c_int), POINTER(Err)]),
    "mech_capi_rasp_verify": (c_int, [c_void_p, c_void_p, c_uint64, POINTER(c_size_t), c_int, POINTER(c_int),
                                      POINTER(Err)]),
    "mech_capi_rasp_run": (c_int, [c_void_p, POINTER(RaspValue), c_size_t, c_size_t, POINTER(RaspValue), c_int,
                                   POINTER(c_int), POINTER(Err)]),
    "mech_rasp_compiled_free": (None, [POINTER(RaspCompiled)]),
    "mech_rasp_compiled_explain": (None, [POINTER(RaspCompiled), POINTER(Buf)]),
    "mech_rasp_runner_new": (c_int, [c_void_p, c_void_p, POINTER(c_void_p), POINTER(Err)]),
    "mech_rasp_runner_free": (None, [c_void_p]),
    "mech_model_save": (c_int, [c_void_p, c_char_p, c_int, POINTER(c_char_p), POINTER(c_char_p), c_size_t,
                                POINTER(Err)]),
}


def _load():
    path = _find_library()
    try:
        so = ctypes.CDLL(path)  # CDLL: the GIL is released during every call
    except OSError as e:
        raise ImportError("mech: cannot load %s: %s" % (path, e)) from None
    for name, (res, args) in _PROTOS.items():
        try:
            f = getattr(so, name)
        except AttributeError:
            raise ImportError("mech: %s lacks %s (rebuild it with `make python`)" % (path, name)) from None
        f.restype = res
        f.argtypes = args
    # The structs mirrored here must have the library's layout: a size that
    # differs means headers and package are out of step.
    for fn, cname, py in ((so.mech_capi_sizeof, "mech_err", Err), (so.mech_capi_sizeof, "mech_tensor", Tensor),
                          (so.mech_capi_sizeof, "mech_buf", Buf), (so.mech_capi_interp_sizeof, "mech_lens_row", LensRow),
                          (so.mech_capi_interp_sizeof, "mech_dla", Dla),
                          (so.mech_capi_rasp_sizeof, "mech_rasp_value", RaspValue),
                          (so.mech_capi_rasp_sizeof, "mech_rasp_compiled", RaspCompiled)):
        if fn(cname.encode()) != ctypes.sizeof(py):
            raise ImportError("mech: %s's %s (%d bytes) does not match this package's (%d): rebuild with `make "
                              "python`, or update mech/_lib.py" % (path, cname, fn(cname.encode()), ctypes.sizeof(py)))
    so._path = path
    return so


lib = _load()


def buf_text(b):
    """The text of a mech_buf, which is freed."""
    try:
        if b.oom:
            raise MechNoMemError("out of memory", NOMEM)
        return ctypes.string_at(b.data, b.len).decode("utf-8", "replace") if b.data else ""
    finally:
        lib.mech_buf_free(byref(b))


def take_string(ptr):
    """A heap C string (char *) as str; frees it."""
    if not ptr:
        raise MechNoMemError("out of memory", NOMEM)
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        lib.mech_free(ptr)


class Call:
    """How a long C call is made: through its mech_capi_* wrapper, which
    brackets it in C (no Python code runs inside the bracket, so an
    exception cannot unbalance it). In the main thread SIGINT then sets the
    library's cancellation flag (the forward stops before its next block,
    a sweep before its next patched run) and still reaches Python's
    handler, which raises KeyboardInterrupt once the call returns.

        call = Call()
        code = lib.mech_capi_forward(run, ids, call.main, call.flag, byref(err))
        if code: raise_call_error(code, err, call)
    """

    def __init__(self):
        self.main = int(threading.current_thread() is threading.main_thread())
        self._flag = ctypes.c_int(0)
        self.flag = byref(self._flag)

    @property
    def interrupted(self):
        """SIGINT arrived during the call (2 would be mech.cancel())."""
        return self._flag.value == 1


def raise_call_error(code, err, call, hook_exc=None):
    """The exception for a failed long call: the hook's own exception, a
    KeyboardInterrupt for Ctrl-C, or the library's error."""
    if hook_exc is not None:
        raise hook_exc
    if code == CANCELLED and call.interrupted:
        raise KeyboardInterrupt("mech: " + err.msg.decode("utf-8", "replace"))
    raise error(code, err)
