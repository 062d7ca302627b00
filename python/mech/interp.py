"""Interpretability methods over the C library, returning numpy arrays:
activation patching (sweeps and path patching), the logit lens, direct
logit attribution, head scores, ACDC and EAP. Formulas: docs/patching.md,
docs/lens.md, docs/acdc.md, docs/eap.md."""

import ctypes
from ctypes import POINTER, byref, c_double, c_float, c_int, c_int32, c_int64, c_size_t, c_uint8, c_void_p

import numpy as np

from . import _lib
from ._lib import Call, Err, check, lib
from .model import _as_tokens

METRICS = ("logit_diff", "logprob", "prob", "kl")
# mech_patch_site order; the CLI's --sweep names are accepted as well
SITES = ("resid_pre", "resid_mid", "attn_out", "mlp_out", "head_out", "head_out_by_pos", "head_q", "head_k",
         "head_v", "head_pattern")
_SITE_ALIASES = {"heads": "head_out", "heads_by_pos": "head_out_by_pos", "z": "head_out", "q": "head_q",
                 "k": "head_k", "v": "head_v", "pattern": "head_pattern"}
HEAD_KINDS = ("previous_token", "duplicate_token", "induction")
_HEAD_ALIASES = {"prev_token": "previous_token", "duplicate": "duplicate_token"}


def _site(site):
    s = _SITE_ALIASES.get(site, site)
    if s not in SITES:
        raise _lib.MechArgError("mech: unknown patching site %r (expected one of %s, or %s)"
                                % (site, ", ".join(SITES), ", ".join(_SITE_ALIASES)), _lib.ARG)
    return SITES.index(s)


def _seq(tokens, what):
    a = _as_tokens(tokens)
    if a.shape[0] != 1:
        raise ValueError("mech: %s must be one sequence, not a batch of %d" % (what, a.shape[0]))
    return a[0].copy()


def _token(model, t, what):
    """An answer token: an id, or text that is exactly one token."""
    if t is None:
        return -1
    if isinstance(t, str):
        ids = model._encode(t, False, False)
        if len(ids) != 1:
            raise _lib.MechArgError("mech: %s %r is %d tokens, not one" % (what, t, len(ids)), _lib.ARG)
        return ids[0]
    return int(t)


class PatchResult:
    """One sweep: raw (the metric of every patched run) and norm ((raw -
    corrupted) / (clean - corrupted); NaN when clean == corrupted), float32
    arrays of shape [L, T], [L, n_heads] or [L, T, n_heads] by site; clean
    and corrupted, the two baselines; done, the cells computed."""

    def __init__(self, site, metric, raw, norm, clean, corrupted, done):
        self.site, self.metric = site, metric
        self.raw, self.norm = raw, norm
        self.clean, self.corrupted, self.done = clean, corrupted, done

    def __repr__(self):
        return "PatchResult(site=%r, metric=%r, shape=%s, clean=%g, corrupted=%g)" % (
            self.site, self.metric, self.raw.shape, self.clean, self.corrupted)


class Patcher:
    """Activation patching of one clean/corrupted pair (B = 1, equal
    lengths), as `mech patch`: clean activations patched into the corrupted
    run, the metric at pos (-1: the last position).

    p = mech.interp.Patcher(model, clean_ids, corrupt_ids, answer=" Mary", wrong=" John")
    r = p.sweep("resid_pre")          # r.raw, r.norm: numpy [L, T]

    metric: "logit_diff" (needs wrong), "logprob", "prob" or "kl". answer
    and wrong: token ids, or text that is one token. naive: every patched
    run a full forward (the slow reference). Free with free() or `with`."""

    def __init__(self, model, clean, corrupt, metric="logit_diff", answer=None, wrong=None, pos=-1, naive=False,
                 batch=0):
        if metric not in METRICS:
            raise _lib.MechArgError("mech: unknown metric %r (expected %s)" % (metric, ", ".join(METRICS)), _lib.ARG)
        self.model, self.metric = model, metric
        self._clean, self._corrupt = _seq(clean, "clean"), _seq(corrupt, "corrupt")
        a, w = _token(model, answer, "answer"), _token(model, wrong, "wrong")
        if metric != "kl" and a < 0:
            raise _lib.MechArgError("mech: metric %s needs answer" % metric, _lib.ARG)
        if metric == "logit_diff" and w < 0:
            raise _lib.MechArgError("mech: metric logit_diff needs wrong", _lib.ARG)
        self._ptr = c_void_p()
        err, call = Err(), Call()
        code = lib.mech_capi_patch_new(model._p(), self._clean.ctypes.data_as(POINTER(c_int32)), len(self._clean),
                                       self._corrupt.ctypes.data_as(POINTER(c_int32)), len(self._corrupt),
                                       METRICS.index(metric), max(a, 0), max(w, 0), pos, int(bool(naive)), batch,
                                       byref(self._ptr), call.main, call.flag, byref(err))
        if code:
            _lib.raise_call_error(code, err, call)

    @property
    def clean_metric(self):
        """The metric on the clean run."""
        return lib.mech_patch_clean_metric(self._p())

    @property
    def corrupted_metric(self):
        """The metric on the corrupted run."""
        return lib.mech_patch_corrupted_metric(self._p())

    def _call(self, site_name, fn, *args):
        """Runs a sweep wrapper; a PatchResult (the C arrays freed)."""
        nd, shape = c_int(), (c_int64 * 3)()
        raw, norm = POINTER(c_float)(), POINTER(c_float)()
        clean, corrupted, done = c_double(), c_double(), c_int64()
        err, call = Err(), Call()
        try:
            code = fn(self._p(), *args, byref(nd), shape, byref(raw), byref(norm), byref(clean), byref(corrupted),
                      byref(done), call.main, call.flag, byref(err))
            if code:
                _lib.raise_call_error(code, err, call)
            dims = tuple(shape[i] for i in range(nd.value))
            return PatchResult(site_name, self.metric, np.ctypeslib.as_array(raw, shape=dims).copy(),
                               np.ctypeslib.as_array(norm, shape=dims).copy(), clean.value, corrupted.value,
                               done.value)
        finally:
            lib.mech_free(raw)
            lib.mech_free(norm)

    def sweep(self, site="resid_pre"):
        """One patched run per cell of site: resid_pre, resid_mid, attn_out,
        mlp_out [L, T]; head_out (alias heads, z) [L, NH]; head_out_by_pos
        (heads_by_pos) [L, T, NH]; head_q/k/v (q, k, v), head_pattern
        (pattern) [L, NH]. Returns a PatchResult. Ctrl-C raises
        KeyboardInterrupt; mech.cancel() MechCancelled."""
        s = _site(site)
        return self._call(SITES[s], lib.mech_capi_patch_sweep, s)

    def path(self, receivers):
        """Path patching of every sender head into receivers, a list of
        (layer, head, input) with input "q", "k" or "v": a PatchResult of
        shape [L, NH] (docs/patching.md)."""
        n = len(receivers)
        lay, hd, inp = (np.zeros(max(1, n), dtype=np.int32) for _ in range(3))
        for i, (l, h, x) in enumerate(receivers):
            if x not in ("q", "k", "v"):
                raise _lib.MechArgError("mech: receiver input %r: expected q, k or v" % (x,), _lib.ARG)
            lay[i], hd[i], inp[i] = l, h, "qkv".index(x)
        ptr = [a.ctypes.data_as(POINTER(c_int32)) for a in (lay, hd, inp)]
        return self._call("path", lib.mech_capi_patch_path, *ptr, n)

    def _p(self):
        if not self._ptr:
            raise ValueError("mech: the patcher was freed")
        return self._ptr

    def free(self):
        """Frees the cached clean and corrupted runs."""
        p, self._ptr = getattr(self, "_ptr", None), None
        if p:
            lib.mech_patch_free(p)

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


def patch(model, clean, corrupt, site="resid_pre", **kw):
    """One sweep of Patcher(model, clean, corrupt, **kw): a PatchResult."""
    with Patcher(model, clean, corrupt, **kw) as p:
        return p.sweep(site)


class _Run:
    """A C run with the caches a method reads, forwarded once."""

    def __init__(self, model, ids, lens=False, globs=()):
        self.model, self.ids = model, ids
        B, T = ids.shape
        err = Err()
        self.ptr = c_void_p()
        check(lib.mech_run_new(model._p(), B, T, byref(self.ptr), byref(err)), err)
        try:
            if model.threads:
                check(lib.mech_run_set_threads(self.ptr, int(model.threads), byref(err)), err)
            if lens:
                check(lib.mech_lens_cache(self.ptr, byref(err)), err)
            for g in globs:
                check(lib.mech_run_cache(self.ptr, g.encode(), byref(err)), err)
            call = Call()
            code = lib.mech_capi_forward(self.ptr, ids.ctypes.data_as(POINTER(c_int32)), call.main, call.flag,
                                         byref(err))
            if code:
                _lib.raise_call_error(code, err, call)
        except BaseException:
            self.free()
            raise

    def free(self):
        p, self.ptr = self.ptr, None
        if p:
            lib.mech_run_free(p)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()
        return False


class LensResult:
    """The logit lens of every residual layer 0..L (l < L: resid_pre of block
    l; L: the last resid_post), batch item and position. Arrays [L+1, B, T]:
    kl (KL(final || layer), nats), entropy, target_prob, target_rank (-1 /
    0 without targets); [L+1, B, T, k]: top_ids, top_probs."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        return "LensResult(top_ids %s)" % (self.top_ids.shape,)


def logit_lens(model, tokens, k=5, targets=None):
    """The logit lens (as `mech lens`; TransformerLens's
    accumulated_resid(apply_ln=True) then the unembedding) on tokens [T] or
    [B, T]: a LensResult. targets: one token id per position ([B, T], -1:
    none) or one per sequence ([B]: at every position), or None."""
    ids = _as_tokens(model._input_tokens(tokens))
    B, T = ids.shape
    L = model.cfg.n_layers
    if not 0 <= k <= _lib.LENS_MAX_K:
        raise _lib.MechArgError("mech: k must be in 0..%d" % _lib.LENS_MAX_K, _lib.ARG)
    tg = None
    if targets is not None:
        t = np.asarray(targets, dtype=np.int64)
        if t.ndim == 0 or t.shape == (B,):
            t = np.broadcast_to(t.reshape(-1, 1) if t.ndim else t, (B, T))
        if t.shape != (B, T):
            raise ValueError("mech: targets must have shape [B] or [B, T] = %s, not %s" % ((B, T), t.shape))
        tg = np.ascontiguousarray(t, dtype=np.int32)
    with _Run(model, ids, lens=True) as run:
        rows, n, err = POINTER(_lib.LensRow)(), c_size_t(), Err()
        check(lib.mech_lens_logit(model._p(), run.ptr, k, tg.ctypes.data_as(POINTER(c_int32)) if tg is not None
                                  else None, byref(rows), byref(n), byref(err)), err)
    try:
        arr = np.ctypeslib.as_array(ctypes.cast(rows, POINTER(ctypes.c_uint8)),
                                    shape=(n.value * ctypes.sizeof(_lib.LensRow),))
        dt = np.dtype({"names": [f[0] for f in _lib.LensRow._fields_],
                       "formats": ["<i4", "<i4", "<i4", "<i4", ("<i4", 32), ("<f8", 32), "<i4", "<i8", "<f8",
                                   "<f8", "<f8"],
                       "offsets": [getattr(_lib.LensRow, f[0]).offset for f in _lib.LensRow._fields_],
                       "itemsize": ctypes.sizeof(_lib.LensRow)})
        rec = arr.view(dt).reshape(L + 1, B, T)
        out = LensResult(top_ids=rec["top_ids"][..., :k].astype(np.int64), top_probs=rec["top_probs"][..., :k].copy(),
                         kl=rec["kl"].copy(), entropy=rec["entropy"].copy(), target_prob=rec["target_prob"].copy(),
                         target_rank=rec["target_rank"].copy())
    finally:
        lib.mech_free(rows)
    return out


class DlaResult:
    """Direct logit attribution: labels (n_comp names: "embed", then per
    layer "L{l}H{h}" for each head, "L{l}.attn_bias", "L{l}.mlp"), attr
    [n_comp, B], accum [L+1, B] (the projection of each residual layer),
    bias [B] and logit [B]; attr.sum(0) + bias == logit up to rounding."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def direct_logit_attribution(model, tokens, answer, wrong=None, pos=-1):
    """Direct logit attribution (as `mech attrib`) of the logit of answer
    (minus wrong's, when given) at pos (-1: the last) of every sequence of
    tokens [T] or [B, T]. answer, wrong: one token (id or one-token text)
    for every sequence, or a list of B."""
    ids = _as_tokens(model._input_tokens(tokens))
    B = ids.shape[0]

    def toks(x, what):
        if x is None:
            return None
        xs = x if isinstance(x, (list, tuple, np.ndarray)) else [x] * B
        if len(xs) != B:
            raise ValueError("mech: %s: %d tokens for %d sequences" % (what, len(xs), B))
        return np.array([_token(model, t, what) for t in xs], dtype=np.int32)

    a, w = toks(answer, "answer"), toks(wrong, "wrong")
    with _Run(model, ids, lens=True) as run:
        d, err = POINTER(_lib.Dla)(), Err()
        check(lib.mech_lens_dla(model._p(), run.ptr, pos, a.ctypes.data_as(POINTER(c_int32)),
                                w.ctypes.data_as(POINTER(c_int32)) if w is not None else None, byref(d), byref(err)),
              err)
    try:
        r = d.contents
        n, L = r.n_comp, r.n_layers
        out = DlaResult(labels=[r.labels[i].value.decode() for i in range(n)],
                        attr=np.ctypeslib.as_array(r.attr, shape=(n, B)).copy(),
                        accum=np.ctypeslib.as_array(r.accum, shape=(L + 1, B)).copy(),
                        bias=np.ctypeslib.as_array(r.bias, shape=(B,)).copy(),
                        logit=np.ctypeslib.as_array(r.logit, shape=(B,)).copy())
    finally:
        lib.mech_dla_free(d)
    return out


def head_scores(model, tokens, kind="induction", measure="mul", exclude_bos=False, exclude_current=False):
    """TransformerLens's head_detector scores of every head, [L, n_heads]
    (float64), averaged over the batch of tokens [T] or [B, T] (at least 2
    tokens). kind: "previous_token", "duplicate_token" or "induction";
    measure: "mul" (sum(A*D)/sum(A), `mech heads`) or "abs"."""
    k = _HEAD_ALIASES.get(kind, kind)
    if k not in HEAD_KINDS:
        raise _lib.MechArgError("mech: unknown head kind %r (expected %s)" % (kind, ", ".join(HEAD_KINDS)), _lib.ARG)
    if measure not in ("mul", "abs"):
        raise _lib.MechArgError("mech: measure must be 'mul' or 'abs', not %r" % (measure,), _lib.ARG)
    ids = _as_tokens(model._input_tokens(tokens))
    L, NH = model.cfg.n_layers, model.cfg.n_heads
    out = np.zeros((L, NH), dtype=np.float64)
    with _Run(model, ids, globs=["blocks.*.attn.hook_pattern"]) as run:
        err = Err()
        check(lib.mech_heads_score(model._p(), run.ptr, ids.ctypes.data_as(POINTER(c_int32)), HEAD_KINDS.index(k),
                                   0 if measure == "mul" else 1, int(bool(exclude_bos)), int(bool(exclude_current)),
                                   out.ctypes.data_as(POINTER(c_double)), byref(err)), err)
    return out


EDGE_TYPES = ("addition", "direct", "placeholder")


class Circuit:
    """ACDC's result: nodes (names, as the reference spells them: "blocks.1.attn.hook_result[:, :, 3]"),
    and per edge (numpy arrays [n_edges], in the graph's order) sender and
    receiver (node indices), type (0 addition, 1 direct, 2 placeholder;
    EDGE_TYPES names them), present (bool: in the circuit) and effect (the
    metric change when the edge was tried; NaN if never tried);
    metric_final (the metric of the circuit) and n_trials."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def edges(self):
        """The circuit's counted edges (present, not placeholders) as
        (sender name, receiver name, effect) tuples."""
        keep = self.present & (self.type != 2)
        return [(self.nodes[s], self.nodes[r], float(e))
                for s, r, e in zip(self.sender[keep], self.receiver[keep], self.effect[keep])]

    def __repr__(self):
        return "Circuit(%d of %d counted edges, metric %g)" % (
            int((self.present & (self.type != 2)).sum()), int((self.type != 2).sum()), self.metric_final)


def acdc(model, clean, corrupt=None, tau=0.01, metric="kl", ablation="resample", answer=None, wrong=None,
         positions="last", abs_value=False, heads_ascending=False, split_embed=None, pos_shuffle=None, threads=0):
    """ACDC (Conmy et al. 2023) as `mech acdc`: prunes the model's graph edge
    by edge on clean [B, T] with resample ablation from corrupt [B, T] (or
    ablation="zero", corrupt unused); an edge goes when the metric grows by
    less than tau. metric: "kl" (to the full model; positions "last" or
    "all"), "logit_diff" (answer, wrong: one token per row or one for all)
    or "l2" (compiled RASP models). split_embed: hook_embed and
    hook_pos_embed as two senders (default: for compiled models);
    pos_shuffle: the seed of the corrupted pass's position permutation
    (`mech acdc` uses 49 for compiled models with resample ablation).
    Returns a Circuit; Ctrl-C raises KeyboardInterrupt, mech.cancel()
    MechCancelled."""
    metrics, ablations = ("kl", "logit_diff", "l2"), ("resample", "zero")
    if metric not in metrics:
        raise _lib.MechArgError("mech: unknown ACDC metric %r (expected kl, logit_diff or l2)" % (metric,), _lib.ARG)
    if ablation not in ablations:
        raise _lib.MechArgError("mech: ablation must be resample or zero, not %r" % (ablation,), _lib.ARG)
    if positions not in ("last", "all"):
        raise _lib.MechArgError("mech: positions must be 'last' or 'all', not %r" % (positions,), _lib.ARG)
    ids = _as_tokens(clean)
    B, T = ids.shape
    cor = None
    if ablation == "resample":
        if corrupt is None:
            raise _lib.MechArgError("mech: resample ablation needs corrupt", _lib.ARG)
        cor = _as_tokens(corrupt)
        if cor.shape != ids.shape:
            raise ValueError("mech: clean %s and corrupt %s differ in shape" % (ids.shape, cor.shape))
    compiled = model._compiled
    a = _lib.AcdcArgs(metric=metrics.index(metric), ablation=ablations.index(ablation), tau=tau,
                      abs_value=int(bool(abs_value)), heads_ascending=int(bool(heads_ascending)),
                      split_embed=int(compiled if split_embed is None else bool(split_embed)), threads=threads)
    keep = []

    def toks(x, what):
        xs = x if isinstance(x, (list, tuple, np.ndarray)) else [x] * B
        if len(xs) != B:
            raise ValueError("mech: %s: %d tokens for %d rows" % (what, len(xs), B))
        arr = np.array([_token(model, t, what) for t in xs], dtype=np.int32)
        keep.append(arr)
        return arr.ctypes.data_as(POINTER(c_int32))

    if metric == "logit_diff":
        if answer is None or wrong is None:
            raise _lib.MechArgError("mech: metric logit_diff needs answer and wrong", _lib.ARG)
        a.answer, a.wrong = toks(answer, "answer"), toks(wrong, "wrong")
    if positions == "all":
        mask = np.ones((B, T), dtype=np.uint8)
        if compiled:
            mask[:, 0] = 0  # not BOS
        keep.append(mask)
        a.mask = mask.ctypes.data_as(POINTER(c_uint8))
    if metric == "l2":
        ro = model.meta("mech.rasp.readout")
        a.n_out = lib.mech_acdc_truth_n_out(ro.encode() if ro else None)
    if pos_shuffle is not None:
        perm = np.zeros(T, dtype=np.int32)
        lib.mech_acdc_torch_randperm(int(pos_shuffle), T, perm.ctypes.data_as(POINTER(c_int32)))
        keep.append(perm)
        a.pos_perm = perm.ctypes.data_as(POINTER(c_int32))
    g, mf, nt, err, call = c_void_p(), c_double(), c_int64(), Err(), Call()
    code = lib.mech_capi_acdc(model._p(), ids.ctypes.data_as(POINTER(c_int32)),
                              cor.ctypes.data_as(POINTER(c_int32)) if cor is not None else None, B, T, byref(a),
                              byref(g), byref(mf), byref(nt), call.main, call.flag, byref(err))
    if code:
        _lib.raise_call_error(code, err, call)
    try:
        nodes, snd, rcv, typ, pres, eff = _read_graph(g)
    finally:
        lib.mech_acdc_graph_free(g)
    return Circuit(nodes=nodes, sender=snd, receiver=rcv, type=typ, present=pres, effect=eff,
                   metric_final=mf.value, n_trials=nt.value)


def _read_graph(g):
    """A C graph's nodes and edges as numpy arrays."""
    nn, ne = lib.mech_capi_acdc_n_nodes(g), lib.mech_capi_acdc_n_edges(g)
    nodes = [lib.mech_capi_acdc_node_name(g, i).decode() for i in range(nn)]
    snd, rcv, typ = (np.zeros(ne, dtype=np.int32) for _ in range(3))
    pres, eff = np.zeros(ne, dtype=np.uint8), np.zeros(ne, dtype=np.float64)
    lib.mech_capi_acdc_edges(g, snd.ctypes.data_as(POINTER(c_int32)), rcv.ctypes.data_as(POINTER(c_int32)),
                             typ.ctypes.data_as(POINTER(c_int32)), pres.ctypes.data_as(POINTER(c_uint8)),
                             eff.ctypes.data_as(POINTER(c_double)))
    return nodes, snd, rcv, typ, pres.astype(bool), eff


class EapScores:
    """EAP's result: nodes and per edge (numpy [n_edges], the graph's
    order, as Circuit) sender, receiver, type and score (0 for
    placeholders); value, the metric on the clean run."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def top(self, n=100):
        """The n counted edges of largest |score| (ties in graph order) as
        (sender name, receiver name, score) tuples: `mech eap --top-n`'s
        circuit, never an edge whose score is 0."""
        idx = [i for i in np.argsort(-np.abs(self.score), kind="stable") if self.type[i] != 2 and self.score[i] != 0]
        return [(self.nodes[self.sender[i]], self.nodes[self.receiver[i]], float(self.score[i])) for i in idx[:n]]


def eap(model, clean, corrupt, answer, wrong=None, metric="logit_diff", pos=-1, split_embed=None, threads=0):
    """Edge attribution patching (Syed et al. 2023) as `mech eap`: a score for
    every edge of ACDC's graph from one clean forward, one corrupted
    forward and one backward over clean and corrupt [B, T] (the same shape).
    metric: "logit_diff" (answer minus wrong) or "logprob" (answer), at pos
    (-1: the last) of every row; answer, wrong: one token per row or one
    for all. Returns EapScores."""
    kinds = {"logprob": 2, "logit_diff": 1}  # mech_metric_kind
    if metric not in kinds:
        raise _lib.MechArgError("mech: EAP metric must be logit_diff or logprob, not %r" % (metric,), _lib.ARG)
    ids, cor = _as_tokens(clean), _as_tokens(corrupt)
    if cor.shape != ids.shape:
        raise ValueError("mech: clean %s and corrupt %s differ in shape" % (ids.shape, cor.shape))
    B, T = ids.shape

    def toks(x, what):
        xs = x if isinstance(x, (list, tuple, np.ndarray)) else [x] * B
        if len(xs) != B:
            raise ValueError("mech: %s: %d tokens for %d rows" % (what, len(xs), B))
        return np.array([_token(model, t, what) for t in xs], dtype=np.int32)

    if metric == "logit_diff" and wrong is None:
        raise _lib.MechArgError("mech: metric logit_diff needs wrong", _lib.ARG)
    a = toks(answer, "answer")
    w = toks(wrong, "wrong") if wrong is not None else None
    split = int(model._compiled if split_embed is None else bool(split_embed))
    g, sc, val, err, call = c_void_p(), POINTER(c_double)(), c_double(), Err(), Call()
    code = lib.mech_capi_eap(model._p(), ids.ctypes.data_as(POINTER(c_int32)), cor.ctypes.data_as(POINTER(c_int32)),
                             B, T, kinds[metric], pos, a.ctypes.data_as(POINTER(c_int32)),
                             w.ctypes.data_as(POINTER(c_int32)) if w is not None else None, split, threads,
                             byref(g), byref(sc), byref(val), call.main, call.flag, byref(err))
    if code:
        _lib.raise_call_error(code, err, call)
    try:
        nodes, snd, rcv, typ, _, _ = _read_graph(g)
        score = np.ctypeslib.as_array(sc, shape=(len(snd),)).copy()
    finally:
        lib.mech_free(sc)
        lib.mech_acdc_graph_free(g)
    return EapScores(nodes=nodes, sender=snd, receiver=rcv, type=typ, score=score, value=val.value)
