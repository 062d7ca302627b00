"""RASP from Python: parse and interpret programs (as `mech rasp`), compile
them to models (as `mech compile`) and run the compiled models on their
program's values. The language: docs/rasp.md.

    c = mech.rasp.compile(open("reverse.rasp").read(), input="a b c")
    c.output                 # ['c', 'b', 'a']   (the interpreter)
    c.run("a b c")           # ['c', 'b', 'a']   (the compiled model)
    c.model.cfg.n_layers     # a mech.Model: run_with_cache, hooks, patching
    c.circuit                # where the compiler put every s-op
"""

import ctypes
import json
from ctypes import POINTER, byref, c_char_p, c_size_t, c_void_p

import numpy as np

from . import _lib
from ._lib import Call, Err, check, lib
from .model import Model


def _input_text(input):
    """A program input as the text mech_rasp_input_parse reads: a string as
    is ("a b c"), a list of values as bare words (strings with spaces or
    that read as numbers are quoted)."""
    if isinstance(input, str):
        return input
    parts = []
    for v in input:
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise TypeError("mech: RASP inputs are ints and strings, not %r" % (v,))
        if isinstance(v, int):
            parts.append(str(v))
        elif v and not any(c.isspace() or c in "\"'" for c in v) and not v.lstrip("-").isdigit():
            parts.append(v)
        else:
            parts.append(json.dumps(v))
    return " ".join(parts)


class Program:
    """A parsed RASP program (the IR). eval(input) runs the reference
    interpreter. Free with free() (or garbage collection)."""

    def __init__(self, source, path="<string>"):
        """Parses source; syntax errors raise MechParseError, name and type
        errors MechTypeError, with "path:line:col: error: ..." and a caret."""
        self.source, self.path = source, path
        data = source.encode("utf-8")
        self._ptr, err = c_void_p(), Err()
        check(lib.mech_rasp_parse(path.encode(), data, len(data), byref(self._ptr), byref(err)), err)

    @classmethod
    def load(cls, path):
        """Reads and parses a .rasp file."""
        with open(path, encoding="utf-8") as f:
            return cls(f.read(), str(path))

    def _values(self, input):
        """The input parsed against the vocab: (owned RaspValue pointer, n)."""
        vals, n, err = POINTER(_lib.RaspValue)(), c_size_t(), Err()
        check(lib.mech_rasp_input_parse(self._p(), _input_text(input).encode(), byref(vals), byref(n), byref(err)),
              err)
        return vals, n.value

    def eval(self, input):
        """The interpreter's output on input ("a b c" or a list of vocab
        values): a list (None for none; tuples as lists), as `mech rasp
        FILE --input ...` prints it. Raises MechRangeError for a value
        outside the vocab, MechTypeError when evaluation fails."""
        vals, n = self._values(input)
        out, err = POINTER(_lib.RaspValue)(), Err()
        try:
            check(lib.mech_rasp_eval(self._p(), vals, n, byref(out), byref(err)), err)
            b = _lib.Buf()
            lib.mech_rasp_values_json(byref(b), out, n)
            return json.loads(_lib.buf_text(b))
        finally:
            lib.mech_free(vals)
            lib.mech_free(out)

    def tokens(self, input):
        """The compiled model's token ids for input: [1, 1 + n] int64, BOS (0)
        first, then 1 + each value's index in the written vocab."""
        vals, n = self._values(input)
        try:
            ids = [0] + [lib.mech_rasp_token_id(self._p(), ctypes.byref(vals[i])) for i in range(n)]
        finally:
            lib.mech_free(vals)
        return np.array([ids], dtype=np.int64)

    def _p(self):
        if not self._ptr:
            raise ValueError("mech: the program was freed")
        return self._ptr

    def free(self):
        """Frees the program."""
        p, self._ptr = getattr(self, "_ptr", None), None
        if p:
            lib.mech_rasp_program_free(p)

    def __del__(self):
        try:
            self.free()
        except Exception:  # at interpreter shutdown the library may be gone
            pass


def parse(source, path="<string>"):
    """Parses RASP source into a Program."""
    return Program(source, path)


def interpret(source, input, path="<string>"):
    """The interpreter's output of the program source on input (a list)."""
    p = Program(source, path)
    try:
        return p.eval(input)
    finally:
        p.free()


class Compiled:
    """A compiled RASP program: model (a mech.Model: hooks, caches, patching
    all apply), program, meta (the mech.rasp.* metadata as a dict of str),
    circuit (the compiler's placement of every node, parsed JSON), output
    (the interpreter's output on compile's input, or None)."""

    def __init__(self, program, model, owner=None, meta=None, circuit=None):
        self.program, self.model = program, model
        self._c = owner  # the mech_rasp_compiled that owns model's weights, or None
        self.meta = meta or {}
        self.circuit = circuit
        self.output = None
        self._runner = None

    @classmethod
    def load(cls, path):
        """A model written by `mech compile` (or Compiled.save), with its
        program re-parsed from the metadata."""
        m = Model.load(path)
        src = m.meta("mech.rasp.source")
        if src is None:
            raise _lib.MechFormatError("mech: %s is not a compiled RASP model (no mech.rasp.source)" % path,
                                       _lib.FORMAT)
        prog = Program(src, m.meta("mech.rasp.path") or str(path))
        circ = m.meta("mech.rasp.circuit")
        return cls(prog, m, circuit=json.loads(circ) if circ else None)

    def _runner_p(self):
        if self._runner is None:
            r, err = c_void_p(), Err()
            check(lib.mech_rasp_runner_new(self.program._p(), self.model._p(), byref(r), byref(err)), err)
            self._runner = r
        return self._runner

    def run(self, input):
        """The compiled model's decoded output on input (a list, as `mech run
        --model OUT.safetensors --input ...` prints it)."""
        vals, n = self.program._values(input)
        outs = (_lib.RaspValue * max(1, n))()
        err = Err()
        try:
            call = Call()
            code = lib.mech_capi_rasp_run(self._runner_p(), vals, 1, n, outs, call.main, call.flag, byref(err))
            if code:
                _lib.raise_call_error(code, err, call)
            b = _lib.Buf()
            lib.mech_rasp_values_json(byref(b), outs, n)
            return json.loads(_lib.buf_text(b))
        finally:
            lib.mech_free(vals)

    def interpret(self, input):
        """The interpreter's output on input (what run must equal)."""
        return self.program.eval(input)

    def tokens(self, input):
        """The model's token ids for input, [1, 1 + n] with BOS (0) first."""
        return self.program.tokens(input)

    def verify(self, seed=1):
        """Checks the model against the interpreter as `mech compile` does
        (every input up to max_seq_len, or a seeded sample): returns the
        number of inputs that agreed; MechFormatError on a disagreement."""
        checked, err, call = c_size_t(), Err(), Call()
        code = lib.mech_capi_rasp_verify(self.program._p(), self.model._p(), seed, byref(checked), call.main,
                                         call.flag, byref(err))
        if code:
            _lib.raise_call_error(code, err, call)
        return checked.value

    def explain(self):
        """Which layer, head or MLP units and residual dimensions compute each
        RASP variable (`mech compile --explain`)."""
        if self._c is None:
            raise _lib.MechArgError("mech: explain() needs a model compiled in this process", _lib.ARG)
        b = _lib.Buf()
        lib.mech_rasp_compiled_explain(self._c, byref(b))
        return _lib.buf_text(b)

    def save(self, path):
        """Writes the model with its mech.rasp.* metadata (as `mech compile
        -o`), so mech run/patch/acdc and Compiled.load read it."""
        keys = [k.encode() for k in self.meta]
        vals = [v.encode() for v in self.meta.values()]
        ka, va = (c_char_p * max(1, len(keys)))(*keys), (c_char_p * max(1, len(vals)))(*vals)
        err = Err()
        check(lib.mech_model_save(self.model._p(), str(path).encode(), 0, ka, va, len(keys), byref(err)), err)

    def free(self):
        """Frees the runner and, for a model compiled here, its weights."""
        r, self._runner = getattr(self, "_runner", None), None
        if r:
            lib.mech_rasp_runner_free(r)
        c, self._c = getattr(self, "_c", None), None
        if c:
            self.model._ptr = None  # the weights go with the compiled object
            lib.mech_rasp_compiled_free(c)

    def __del__(self):
        try:
            self.free()
        except Exception:  # at interpreter shutdown the library may be gone
            pass


def compile(source, input=None, path="<string>", verify=False, max_params=0, max_values=0):
    """Compiles RASP source to a model: a Compiled with .model, .meta (the
    metadata `mech compile` writes), .circuit and, when input is given,
    .output (the interpreter's output on it). verify=True also checks the
    model against the interpreter (as `mech compile` without --no-verify).
    Limits as `mech compile --max-params/--max-values` (0: the defaults).
    Ctrl-C stops a long compile (KeyboardInterrupt)."""
    prog = Program(source, path)
    cp, err, call = POINTER(_lib.RaspCompiled)(), Err(), Call()
    try:
        code = lib.mech_capi_rasp_compile(prog._p(), max_params, max_values, byref(cp), call.main, call.flag,
                                          byref(err))
        if code:
            _lib.raise_call_error(code, err, call)
        c = cp.contents
        meta = {c.meta_keys[i].decode(): c.meta_values[i].decode() for i in range(c.n_meta)}
        circuit = json.loads(c.circuit.decode()) if c.circuit else None
        model = Model(c.model, path=None, owner=cp)
        out = Compiled(prog, model, owner=cp, meta=meta, circuit=circuit)
    except BaseException:
        # also a KeyboardInterrupt raised just after the compile returned
        if cp:
            lib.mech_rasp_compiled_free(cp)
        raise
    model._owner = out  # the model keeps its Compiled (and so its weights) alive
    if input is not None:
        out.output = prog.eval(input)
    if verify:
        out.verify()
    return out
