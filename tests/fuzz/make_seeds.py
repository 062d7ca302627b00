#!/usr/bin/env python3
"""tests/fuzz/make_seeds.py: writes the seed corpora tests/fuzz/corpus/<target>/.

Run from the repository root after `make` (the safetensors seeds are small
models written by ./mech init). Seeds are small on purpose: valid inputs that
get the fuzzer past each parser's first checks, plus a few refused ones.
Rerunning rewrites the same files.
"""
import json, os, shutil, struct, subprocess, sys

ROOT = "tests/fuzz/corpus"


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- json -------------------------------------------------------------------
put("json", "config", open("tests/fixtures/gpt2-tiny/config.json").read())
put("json", "mech_config", json.dumps({"n_layers": 1, "n_heads": 2, "d_model": 8, "d_head": 4, "d_mlp": 16,
                                        "n_ctx": 4, "d_vocab": 10, "act": "relu", "norm": "none",
                                        "attn_only": False, "causal": True, "ln_eps": 1e-5}))
put("json", "scalars", '[null, true, false, 0, -0, 1.5e-3, -9223372036854775808, 9223372036854775807, 1e308]')
put("json", "strings", '{"a": "\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/", "": "", "k\\u0000": "x"}')
put("json", "nested", "[[[[{\"a\": [[]]}]]]]")
put("json", "bad_trailing", '{"a": 1} x')
put("json", "bad_surrogate", '"\\ud800"')
put("json", "bad_number", '[01, 1.]')

# --- safetensors ------------------------------------------------------------
def mech_init(name, *args):
    path = os.path.join(ROOT, "safetensors", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    subprocess.run(["./mech", "init", "-o", path, "--layers", "1", "--heads", "1", "--d-model", "8",
                    "--d-head", "8", "--d-mlp", "8", "--n-ctx", "4", "--vocab", "12", *args], check=True)

mech_init("tiny_f32")
mech_init("tiny_f16_untied", "--dtype", "f16", "--untied")
mech_init("tiny_bf16_noln_attn", "--dtype", "bf16", "--no-layernorm", "--attn-only", "--act", "relu")

def safetensors(tensors, meta=None):
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta is not None:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data

put("safetensors", "mixed_dtypes", safetensors([
    ("a", "F32", [2, 3], struct.pack("<6f", 1, 2, 3, 4, 5, 6)),
    ("b", "F16", [3], struct.pack("<3H", 0x3C00, 1, 2)),
    ("n", "I64", [], struct.pack("<q", 7)),
    ("e", "BOOL", [0, 4], b""),
], {"format": "pt", "k": "v\u00e9"}))
put("safetensors", "bad_overlap", safetensors([("a", "F32", [1], b"\0" * 4)])[:-2])
put("safetensors", "bad_header", b"\x10\0\0\0\0\0\0\0{\"a\": 1}       ")

# --- tokenizer_files: <layout byte> vocab NUL merges -------------------------
def byte_spelling():
    # GPT-2's bytes_to_unicode: printable bytes map to themselves
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}, bs

spell, order = byte_spelling()
vocab = {spell[b]: i for i, b in enumerate(order)}
for t in ["ab", "abc", "\u0120ab", "<|endoftext|>"]:
    vocab[t] = len(vocab)
merges = "#version: 0.2\na b\nab c\n\u0120 ab\n"
v = json.dumps(vocab, ensure_ascii=False).encode()
put("tokenizer_files", "hf_small", b"\x01" + v + b"\0" + merges.encode())
put("tokenizer_files", "openai_small_crlf", b"\x00" + v + b"\0" + merges.replace("\n", "\r\n").encode())
put("tokenizer_files", "bad_merge", b"\x01" + v + b"\0" + b"#version: 0.2\na b\nab q\n")
put("tokenizer_files", "bad_ids", b"\x01" + b'{"a": 0, "b": 2}' + b"\0")

# --- tokenize -----------------------------------------------------------------
put("tokenize", "english", "When Mary and John went to the store, John gave a drink to Mary.")
put("tokenize", "specials", "a<|endoftext|>b <|endoftext|><|endoftext|>")
put("tokenize", "unicode", "caf\u00e9 \u6f22\u5b57 \U0001F600 I'm they've 123,456\n\n  \t x")
put("tokenize", "invalid_utf8", b"\xff\xfe a\xc3 \xe2\x82 \xed\xa0\x80 \x00x")

# --- npy ------------------------------------------------------------------------
def npy(descr, shape, raw, version=1, fortran=False):
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False", "(" + "".join("%d," % s for s in shape) + ")")
    pre = 10 if version == 1 else 12
    pad = (64 - (pre + len(h) + 1) % 64) % 64
    h = (h + " " * pad + "\n").encode()
    ln = struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([version, 0]) + ln + h + raw

put("npy", "f4_2x3", npy("<f4", [2, 3], struct.pack("<6f", *range(6))))
put("npy", "f4_scalar_v2", npy("<f4", [], struct.pack("<f", 1.5), version=2))
put("npy", "f4_empty_v3", npy("<f4", [0, 5], b"", version=3))
put("npy", "bad_f8", npy("<f8", [1], struct.pack("<d", 1)))
put("npy", "bad_truncated", npy("<f4", [4], struct.pack("<3f", 1, 2, 3)))
put("npy", "bad_fortran", npy("<f4", [1], struct.pack("<f", 1), fortran=True))

# --- spec -------------------------------------------------------------------------
put("spec", "heads", json.dumps({"model": "m.safetensors", "dataset": "compiled", "n": 20, "len": 4,
                                 "corruption": "shuffle", "sweep": "heads", "metric": "kl", "db": "out.db"}))
put("spec", "flags", json.dumps({"command": "patch", "prompt": ["a b", "c d"], "heads_ascending": True,
                                 "resume": False, "seed": None, "tau": 0.05}))
put("spec", "bad_key", json.dumps({"--model": "x"}))
put("spec", "bad_value", json.dumps({"model": {"a": 1}}))
put("spec", "bad_command", json.dumps({"command": "acdc"}))
put("spec", "not_object", "[1, 2]")

# --- pairs: <model byte: 0 random GPT-2, 1 compiled reverse> file ----------------------
put("pairs", "gpt2_jsonl", b"\x00" + b'{"clean": "a b c", "corrupt": "a b d", "answer": " c", "wrong": " d"}\n'
    b'{"clean": [1, 2, 3], "corrupt": [1, 2, 4], "answer": 5}\n# comment\n\n')
put("pairs", "gpt2_tsv", b"\x00" + b"x y\tx z\t q\t r\r\n")
put("pairs", "compiled_jsonl", b"\x01" + b'{"clean": "a b c", "corrupt": "c b a", "answer": "a", "wrong": "c"}\n'
    b'{"clean": ["a", "b"], "corrupt": ["b", "b"]}\n')
put("pairs", "compiled_tsv", b"\x01" + b"a b\tb a\ta\t\n")
put("pairs", "bad_lengths", b"\x00" + b'{"clean": [1, 2], "corrupt": [1], "answer": 1}\n')
put("pairs", "bad_compiled_value", b"\x01" + b'{"clean": "a q", "corrupt": "a b", "answer": "a"}\n')
put("pairs", "bad_not_object", b"\x00" + b"{1}\n")

# --- rasp ---------------------------------------------------------------------------
for name in ["reverse", "length", "frac_prevs", "hist", "sort", "shift_by", "detect_pattern"]:
    put("rasp", name, open("examples/rasp/%s.rasp" % name).read())
put("rasp", "small_compile", "vocab {a, b};\nmax_seq_len 3;\ncausal true;\n"
    "def f(s) { t = map(x -> x == \"a\", s); return t; }\n"
    "n = numerical(indicator(tokens == \"a\"));\n"
    "m = aggregate(select(indices, indices, <=), n);\n"
    "w = selector_width(select(tokens, tokens, ==) and not select(indices, indices, ==));\n"
    "z = zipmap((a, b) -> (a, b)[0] if a > 0 else b, w, indices);\noutput z;\na b\n")
put("rasp", "bad_syntax", "vocab {a;\n")
put("rasp", "bad_name", "vocab {a};\nmax_seq_len 2;\nx = tokns;\n")
