"""Models with a TransformerLens-shaped API: load, tokenize, run, cache
activations by hook name, and hook them."""

import ctypes
import json
import threading
from ctypes import POINTER, byref, c_char_p, c_int32, c_size_t, c_uint8, c_void_p

import numpy as np

from . import _lib
from ._lib import Call, Err, check, lib

_gpt2_lock = threading.Lock()
_gpt2_tok = None


def _gpt2_tokenizer():
    """The GPT-2 vocabulary built into the library (made once per process)."""
    global _gpt2_tok
    with _gpt2_lock:
        if _gpt2_tok is None:
            t, err = c_void_p(), Err()
            check(lib.mech_tokenizer_gpt2(byref(t), byref(err)), err)
            _gpt2_tok = t
        return _gpt2_tok


class Config:
    """A model's shape, with TransformerLens's HookedTransformerConfig names:
    n_layers, n_heads, d_model, d_head, d_mlp (0 when attn_only), d_vocab,
    n_ctx, act_fn ("gelu_new", "gelu", "relu"), normalization_type ("LN" or
    None), attn_only, eps; plus mech's own: causal (False: bidirectional),
    tied_unembed and unembed_bias. to_dict() gives mech's JSON form."""

    _FIELDS = ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab", "n_ctx", "act_fn",
               "normalization_type", "attn_only", "eps", "causal", "tied_unembed", "unembed_bias")

    def __init__(self, mech_json):
        j = dict(mech_json)
        self._json = j
        self.n_layers = j["n_layers"]
        self.n_heads = j["n_heads"]
        self.d_model = j["d_model"]
        self.d_head = j["d_head"]
        self.d_mlp = j["d_mlp"]
        self.d_vocab = j["d_vocab"]
        self.n_ctx = j["n_ctx"]
        self.act_fn = j["act"]
        self.normalization_type = "LN" if j["normalization"] == "layernorm" else None
        self.attn_only = j["attn_only"]
        self.eps = j["ln_eps"]
        self.causal = j["causal"]
        self.tied_unembed = j["tied_unembed"]
        self.unembed_bias = j["unembed_bias"]

    def to_dict(self):
        """mech's own JSON form of the config (the keys `mech info` and
        Model.random take)."""
        return dict(self._json)

    def __repr__(self):
        return "Config(%s)" % ", ".join("%s=%r" % (f, getattr(self, f)) for f in self._FIELDS)


class HookPoint:
    """What a hook function gets as its second argument: `name` is the
    TransformerLens hook name ("blocks.0.attn.hook_pattern") and layer() the
    block index (-1 for hook_embed, hook_pos_embed and ln_final.*)."""

    __slots__ = ("name", "_layer")

    def __init__(self, name, layer):
        self.name = name
        self._layer = layer

    def layer(self):
        """The block this hook point belongs to, or -1 outside the blocks."""
        return self._layer

    def __repr__(self):
        return "HookPoint(%r)" % self.name


class ActivationCache(dict):
    """The activations run_with_cache kept: a dict from hook name to a numpy
    float32 array in TransformerLens's shape (e.g. [B, n_heads, T, T] for
    attn.hook_pattern). The arrays are copies owned by Python: they stay
    valid after the run is freed and writing to them changes nothing else."""

    def __getitem__(self, key):
        if isinstance(key, tuple):  # cache["pattern", 0] as TransformerLens's shorthand
            key = _act_name(*key)
        return dict.__getitem__(self, key)

    def __contains__(self, key):
        if isinstance(key, tuple):
            key = _act_name(*key)
        return dict.__contains__(self, key)


_SHORT = {"embed": "hook_embed", "pos_embed": "hook_pos_embed", "resid_pre": "hook_resid_pre",
          "resid_mid": "hook_resid_mid", "resid_post": "hook_resid_post", "attn_out": "hook_attn_out",
          "mlp_out": "hook_mlp_out", "pattern": "attn.hook_pattern", "attn_scores": "attn.hook_attn_scores",
          "q": "attn.hook_q", "k": "attn.hook_k", "v": "attn.hook_v", "z": "attn.hook_z",
          "result": "attn.hook_result", "pre": "mlp.hook_pre", "post": "mlp.hook_post"}


def _act_name(name, layer=None):
    """TransformerLens's utils.get_act_name for the names above."""
    full = _SHORT.get(name, name)
    if layer is None or full in ("hook_embed", "hook_pos_embed"):
        return full
    return "blocks.%d.%s" % (layer, full)


def _as_tokens(tokens):
    """Token ids as a C-contiguous int32 array [B, T] (1-D: one sequence)."""
    a = np.asarray(tokens)
    if a.dtype.kind not in "iu":
        raise TypeError("mech: tokens must be integer ids, not %s" % a.dtype)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError("mech: tokens must have shape [T] or [B, T] with B, T >= 1, not %s" % (a.shape,))
    if a.size and (a.min() < 0 or a.max() > np.iinfo(np.int32).max):
        raise _lib.MechRangeError("mech: token ids must be in 0..2^31-1", _lib.RANGE)
    return np.ascontiguousarray(a, dtype=np.int32)


class Model:
    """A GPT-2-shaped model in the C library (memory-mapped weights).

    model = mech.Model.load("gpt2/")      # a .safetensors file or a folder
    logits = model(model.to_tokens("Hello"))           # numpy [B, T, V]
    logits, cache = model.run_with_cache(tokens)       # cache["blocks.0.attn.hook_pattern"]

    The weights are freed by free() (or `with`, or garbage collection).
    Calls may come from several threads at once: each forward has its own
    workspace, and the GIL is released while it runs."""

    def __init__(self, ptr, path=None, owner=None):
        """Wraps a mech_model pointer (use Model.load or Model.random)."""
        self._ptr = ptr
        self._owner = owner  # frees the pointer when it is not ours (a compiled RASP model)
        self.path = path
        j = lib.mech_capi_model_config_json(ptr)
        self.cfg = Config(json.loads(_lib.take_string(j)))
        self.threads = 0  # worker threads per forward; 0: one per CPU
        tok = lib.mech_capi_model_tokenizer(ptr)
        self._own_tok = tok is not None
        self._tok = c_void_p(tok) if tok else None
        self._compiled = lib.mech_model_meta(ptr, b"mech.rasp.source") is not None

    @classmethod
    def load(cls, path):
        """Loads a model as `mech run --model` does: a .safetensors file, or a
        folder holding model.safetensors (+ config.json, + a tokenizer).
        Raises MechIOError / MechFormatError / MechShapeError."""
        p, err = c_void_p(), Err()
        check(lib.mech_model_load(str(path).encode(), byref(p), byref(err)), err)
        return cls(p, path=str(path))

    @classmethod
    def random(cls, seed=0, **cfg):
        """A model with random weights (normal(0, 0.02), as GPT-2's init),
        deterministic in seed: GPT-2 small's config with the given fields
        overridden (mech's names: n_layers, n_heads, d_model, d_head, d_mlp,
        n_ctx, d_vocab, act, normalization, attn_only, causal, ln_eps,
        tied_unembed, unembed_bias)."""
        p, err = c_void_p(), Err()
        check(lib.mech_capi_model_random(json.dumps(cfg).encode(), seed, byref(p), byref(err)), err)
        return cls(p)

    def save(self, path, dtype="F32"):
        """Writes the model as safetensors with its config in the metadata
        (as mech's own files): "F32", "F16" or "BF16"."""
        dts = {"F32": 0, "F16": 1, "BF16": 2}
        if dtype not in dts:
            raise _lib.MechArgError("mech: dtype must be F32, F16 or BF16, not %r" % (dtype,), _lib.ARG)
        err = Err()
        check(lib.mech_model_save(self._p(), str(path).encode(), dts[dtype], None, None, 0, byref(err)), err)

    def free(self):
        """Frees the weights now (later calls raise ValueError)."""
        p, self._ptr = getattr(self, "_ptr", None), None
        if p and self._owner is None:
            lib.mech_model_free(p)
        self._owner = None

    def __del__(self):
        try:
            self.free()
        except Exception:  # at interpreter shutdown the library may be gone
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()
        return False

    def _p(self):
        if not self._ptr:
            raise ValueError("mech: the model was freed")
        return self._ptr

    def __repr__(self):
        return "Model(%r, %r)" % (self.path, self.cfg)

    def meta(self, key):
        """A __metadata__ value of the model file (str), or None."""
        v = lib.mech_model_meta(self._p(), key.encode())
        return v.decode("utf-8", "replace") if v is not None else None

    # -- tokens -------------------------------------------------------------

    @property
    def tokenizer(self):
        """The tokenizer handle: the files beside the model, else GPT-2's."""
        if self._tok is None:
            self._tok = _gpt2_tokenizer()
        return self._tok

    @property
    def bos_token_id(self):
        """<|endoftext|> when it is inside the model's vocabulary (as `mech
        run` prepends it), 0 for compiled RASP models, else None."""
        if self._compiled:
            return 0
        eot = lib.mech_tokenizer_eot(self.tokenizer)
        return eot if 0 <= eot < self.cfg.d_vocab else None

    def _encode(self, text, prepend_bos, allow_special):
        if self._compiled:
            raise _lib.MechArgError("mech: a compiled RASP model takes its program's values: use "
                                    "mech.rasp.Compiled.tokens(...)", _lib.ARG)
        data = text.encode("utf-8")
        ids, n, err = POINTER(c_int32)(), c_size_t(), Err()
        check(lib.mech_tokenizer_encode(self.tokenizer, data, len(data), int(bool(allow_special)), byref(ids),
                                        byref(n), byref(err)), err)
        try:
            out = [ids[i] for i in range(n.value)]
        finally:
            lib.mech_free(ids)
        bos = self.bos_token_id
        if prepend_bos is True and bos is None:
            raise _lib.MechArgError("mech: prepend_bos: this model's vocabulary has no BOS token (<|endoftext|>)",
                                    _lib.ARG)
        if prepend_bos is not False and bos is not None:
            out.insert(0, bos)
        return out

    def to_tokens(self, input, prepend_bos=None, padding_side="right", allow_special=False):
        """Token ids of input as an int64 array [1, T] (TransformerLens's
        shape). A list of strings gives a batch [B, T_max], the shorter ones
        padded on padding_side with the BOS/<|endoftext|> token (or 0); pass
        model.attention_mask(input) to the forward for left padding.
        prepend_bos: None puts BOS in front when the vocabulary has one (as
        `mech run` does with text), True insists (an error without one),
        False never. allow_special: <|endoftext|> in the text is the special
        token, not plain text."""
        if isinstance(input, str):
            return np.array([self._encode(input, prepend_bos, allow_special)], dtype=np.int64)
        seqs = [self._encode(s, prepend_bos, allow_special) for s in input]
        if not seqs:
            raise ValueError("mech: to_tokens: no strings given")
        if padding_side not in ("right", "left"):
            raise ValueError("mech: padding_side must be 'right' or 'left', not %r" % (padding_side,))
        T = max(len(s) for s in seqs)
        if T == 0:
            raise ValueError("mech: to_tokens: every string is empty")
        pad = self.bos_token_id or 0
        out = np.full((len(seqs), T), pad, dtype=np.int64)
        for i, s in enumerate(seqs):
            if s:
                if padding_side == "right":
                    out[i, :len(s)] = s
                else:
                    out[i, T - len(s):] = s
        return out

    def attention_mask(self, input, prepend_bos=None, padding_side="right", allow_special=False):
        """The [B, T] mask (1: real token, 0: padding) of to_tokens(input,
        ...) for a list of strings, to pass as attention_mask= to a forward."""
        if isinstance(input, str):
            input = [input]
        lens = [len(self._encode(s, prepend_bos, allow_special)) for s in input]
        T = max(lens)
        m = np.zeros((len(lens), T), dtype=np.uint8)
        for i, n in enumerate(lens):
            if padding_side == "right":
                m[i, :n] = 1
            else:
                m[i, T - n:] = 1
        return m

    def _token_bytes(self, t):
        n = c_size_t()
        p = lib.mech_tokenizer_token(self.tokenizer, int(t), byref(n))
        if not p:
            raise _lib.MechRangeError("mech: token id %d is not in the vocabulary" % t, _lib.RANGE)
        return ctypes.string_at(p, n.value)

    def to_str_tokens(self, input, prepend_bos=None):
        """Each token as its text: a string is tokenized first (as
        to_tokens); ids [T] or [1, T] give a list of str, [B, T] a list of
        lists. Tokens that split a UTF-8 character show as U+FFFD."""
        if isinstance(input, str):
            ids = self._encode(input, prepend_bos, False)
            return [self._token_bytes(t).decode("utf-8", "replace") for t in ids]
        a = np.asarray(input)
        if a.ndim == 2 and a.shape[0] == 1:
            a = a[0]
        if a.ndim == 2:
            return [self.to_str_tokens(row) for row in a]
        return [self._token_bytes(t).decode("utf-8", "replace") for t in a.reshape(-1)]

    def to_string(self, tokens):
        """The text of ids [T] (a str), or of [B, T] (a list of str); one
        int gives its token's text."""
        a = np.asarray(tokens)
        if a.ndim == 2:
            return [self.to_string(row) for row in a]
        ids = np.ascontiguousarray(a.reshape(-1), dtype=np.int32)
        text, n, err = c_void_p(), c_size_t(), Err()
        check(lib.mech_tokenizer_decode(self.tokenizer, ids.ctypes.data_as(POINTER(c_int32)), ids.size, byref(text),
                                        byref(n), byref(err)), err)
        try:
            return ctypes.string_at(text, n.value).decode("utf-8", "replace")
        finally:
            lib.mech_free(text)

    # -- hook names ---------------------------------------------------------

    def hook_names(self, opt_in=False):
        """Every hook point's name in firing order; opt_in adds hook_result,
        hook_q_input/k_input/v_input and hook_mlp_in (which cost extra work
        and are computed only when hooked or cached by name)."""
        names = POINTER(c_char_p)()
        # mech_hook_names takes the config, the first member of mech_model
        n = lib.mech_hook_names(self._p(), int(bool(opt_in)), byref(names))
        if n < 0 or not names:
            raise _lib.MechNoMemError("out of memory", _lib.NOMEM)
        try:
            return [names[i].decode() for i in range(n)]
        finally:
            lib.mech_hook_names_free(names, n)

    # -- forward passes -----------------------------------------------------

    def __call__(self, input, return_type="logits", attention_mask=None):
        """The forward pass. input: token ids [T] or [B, T], or text (list of
        texts), tokenized by to_tokens. return_type: "logits" (numpy float32
        [B, T, d_vocab], a copy), "loss" (mean next-token cross-entropy over
        real positions, a float), "both" or None. attention_mask: [B, T] of
        1 (real) / 0 (padding), as TransformerLens's."""
        return self._run(input, return_type, attention_mask, None, None)[0]

    forward = __call__

    def run_with_cache(self, input, names_filter=None, return_type="logits", attention_mask=None):
        """(logits, cache): the forward plus the activations names_filter
        selects. names_filter: None (every hook point but the opt-in ones),
        a name or glob ("blocks.*.attn.hook_pattern"), a list of them, or a
        function name -> bool (over hook_names()). The cache maps hook names
        to numpy copies (ActivationCache)."""
        if names_filter is None:
            globs = ["*"]
        elif isinstance(names_filter, str):
            globs = [names_filter]
        elif callable(names_filter):
            globs = [n for n in self.hook_names() if names_filter(n)]
        else:
            globs = list(names_filter)
        out, cache = self._run(input, return_type, attention_mask, globs, None)
        return out, cache

    def run_with_hooks(self, input, fwd_hooks=(), return_type="logits", attention_mask=None):
        """The forward with hooks: fwd_hooks is a list of (name, fn) where
        name is a hook name, a glob or a function name -> bool (over every
        hook point, opt-in ones included). fn(activation, hook) gets a numpy
        float32 view on the live buffer (valid only during the call) and a
        HookPoint; it may modify the view in place or return an array of
        the same shape that replaces it. Hooks fire in the order given at
        each point. An exception in fn stops the run and is raised here."""
        hooks = []
        for name, fn in fwd_hooks:
            if callable(name):
                hooks.extend((n, fn) for n in self.hook_names(opt_in=True) if name(n))
            else:
                hooks.append((name, fn))
        return self._run(input, return_type, attention_mask, None, hooks)[0]

    def _input_tokens(self, input):
        if isinstance(input, str) or (isinstance(input, (list, tuple)) and input and isinstance(input[0], str)):
            return self.to_tokens(input)
        return input

    def _run(self, input, return_type, attention_mask, caches, hooks):
        if return_type not in ("logits", "loss", "both", None):
            raise ValueError("mech: return_type must be 'logits', 'loss', 'both' or None, not %r" % (return_type,))
        ids = _as_tokens(self._input_tokens(input))
        B, T = ids.shape
        mask = None
        if attention_mask is not None:
            mask = np.ascontiguousarray(attention_mask, dtype=np.uint8)
            if mask.shape != (B, T):
                raise ValueError("mech: attention_mask must have shape %s, not %s" % ((B, T), mask.shape))
        p, err = self._p(), Err()
        # Refuse what cannot fit before anything is allocated (the library's
        # own estimate: with overcommit a run too large is killed, not refused).
        globs = [g.encode() for g in (caches or [])]
        garr = (c_char_p * max(1, len(globs)))(*globs)
        need = _lib.RunBytes()
        check(lib.mech_run_memory(p, B, T, garr, len(globs), 0.0, byref(need), byref(err)), err)
        run = c_void_p()
        check(lib.mech_run_new(p, B, T, byref(run), byref(err)), err)
        keep = []  # the ctypes callbacks must outlive the forward
        state = {"exc": None}
        try:
            if self.threads:
                check(lib.mech_run_set_threads(run, int(self.threads), byref(err)), err)
            if mask is not None:
                check(lib.mech_run_set_mask(run, mask.ctypes.data_as(POINTER(c_uint8)), byref(err)), err)
            for g in globs:
                check(lib.mech_run_cache(run, g, byref(err)), err)
            for name, fn in hooks or ():
                cb = _lib.HOOK_FN(_hook_trampoline(fn, state))
                keep.append(cb)
                check(lib.mech_run_hook(run, name.encode(), cb, None, byref(err)), err)
            call = Call()
            code = lib.mech_capi_forward(run, ids.ctypes.data_as(POINTER(c_int32)), call.main, call.flag, byref(err))
            if code:
                _lib.raise_call_error(code, err, call, state["exc"])
            V = self.cfg.d_vocab
            lp = lib.mech_run_logits(run)
            logits = np.ctypeslib.as_array(lp, shape=(B, T, V)).copy()
            cache = None
            if caches is not None:
                n = c_size_t()
                arr = lib.mech_run_cached(run, byref(n))
                cache = ActivationCache()
                for i in range(n.value):
                    t = arr[i]
                    shape = tuple(t.shape[d] for d in range(t.ndim))
                    cache[t.name.decode()] = np.ctypeslib.as_array(t.data, shape=shape).copy()
        finally:
            lib.mech_run_free(run)
            del keep
        if return_type == "logits":
            out = logits
        elif return_type is None:
            out = None
        else:
            loss = _loss(logits, ids, mask)
            out = loss if return_type == "loss" else (logits, loss)
        return out, cache


def _loss(logits, ids, mask):
    """Mean cross-entropy of each real next token (in float64)."""
    lg = logits[:, :-1].astype(np.float64)
    lg -= lg.max(-1, keepdims=True)
    logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    tgt = ids[:, 1:]
    nll = -np.take_along_axis(logp, tgt[..., None].astype(np.int64), -1)[..., 0]
    if mask is not None:
        real = (mask[:, :-1] > 0) & (mask[:, 1:] > 0)
        return float(nll[real].mean())
    return float(nll.mean())


def _hook_trampoline(fn, state):
    """A C hook (mech_hook_fn) calling fn(view, HookPoint). Any exception is
    kept and stops the run (the forward then raises it)."""

    def hook(tp, layer, user):
        try:
            t = tp.contents
            shape = tuple(t.shape[d] for d in range(t.ndim))
            view = np.ctypeslib.as_array(t.data, shape=shape)
            r = fn(view, HookPoint(t.name.decode(), layer))
            if r is not None and r is not view:
                r = np.asarray(r)
                if r.shape != view.shape:
                    raise ValueError("mech: hook on %s returned shape %s; the activation is %s"
                                     % (t.name.decode(), r.shape, view.shape))
                view[...] = r
            return 0
        except BaseException as e:  # KeyboardInterrupt included: the forward stops
            if state["exc"] is None:
                state["exc"] = e
            return 1

    return hook
