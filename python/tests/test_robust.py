"""Errors, memory, threads and interruption: exceptions carry the
library's messages, 1,000 loads and runs keep RSS flat, forwards in two
threads overlap (the GIL is released), Ctrl-C and mech.cancel() stop a long
forward between blocks."""

import os
import signal
import subprocess
import sys
import threading
import time
import unittest

import numpy as np

import mech
from tests.util import ROOT, TINY, TmpCase, cli, tiny_tokens


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def long_model(n_layers=96):
    # many cheap blocks: the forward takes a while and checks the flag often
    return mech.Model.random(seed=2, n_layers=n_layers, d_model=128, n_heads=4, d_head=32, d_mlp=512, d_vocab=512,
                             n_ctx=1024)


class Boom(Exception):
    pass


class TestErrors(TmpCase):
    def test_load_errors_match_the_cli(self):
        missing = self.path("none.safetensors")
        with self.assertRaises(mech.MechIOError) as cm:
            mech.Model.load(missing)
        self.assertEqual(cm.exception.code, 2)  # MECH_ERR_IO
        err = cli("run", "--model", missing, "--ids", "1", check=False)
        self.assertEqual(err.returncode, 1)
        self.assertIn(str(cm.exception), err.stderr)
        # a truncated model file
        with open(os.path.join(TINY, "model.safetensors"), "rb") as f:
            data = f.read()
        with open(self.path("cut.safetensors"), "wb") as f:
            f.write(data[: len(data) // 2])
        with self.assertRaises(mech.MechFormatError) as cm:
            mech.Model.load(self.path("cut.safetensors"))
        self.assertIn(self.path("cut.safetensors"), str(cm.exception))
        self.assertIn(str(cm.exception), cli("run", "--model", self.path("cut.safetensors"), "--ids", "1",
                                             check=False).stderr)
        for junk in (b"", b"\x08\x00\x00\x00\x00\x00\x00\x00{}", b"\xff" * 64):
            with open(self.path("junk.safetensors"), "wb") as f:
                f.write(junk)
            with self.assertRaises(mech.MechError):
                mech.Model.load(self.path("junk.safetensors"))

    def test_run_errors(self):
        m = mech.Model.load(TINY)
        with self.assertRaises(mech.MechRangeError) as cm:
            m([1, 2, 5000])
        self.assertIn("5000", str(cm.exception))
        with self.assertRaises(mech.MechRangeError):
            m([1, -2])
        with self.assertRaises(TypeError):
            m(np.array([1.5, 2.0]))
        with self.assertRaises(mech.MechArgError):
            m.run_with_cache([1, 2], names_filter="blocks.9.hook_nothing")

        def bad_hook(act, hook):
            raise Boom(hook.name)

        with self.assertRaises(Boom) as cm:
            m.run_with_hooks([1, 2], fwd_hooks=[("blocks.0.hook_resid_mid", bad_hook)])
        self.assertEqual(str(cm.exception), "blocks.0.hook_resid_mid")
        with self.assertRaises(ValueError):
            m.run_with_hooks([1, 2], fwd_hooks=[("hook_embed", lambda a, h: np.zeros(3))])
        with self.assertRaises(ValueError):
            m([1, 2], return_type="nope")
        # the model is still fine afterwards
        np.testing.assert_array_equal(m(tiny_tokens(4)), mech.Model.load(TINY)(tiny_tokens(4)))


class TestMemory(unittest.TestCase):
    def test_thousand_loads_and_runs_keep_rss_flat(self):
        ids = tiny_tokens(16)
        for i in range(1000):
            m = mech.Model.load(TINY)
            m(ids)
            if i % 4 == 0:
                m.run_with_cache(ids, names_filter="blocks.0.attn.hook_pattern")
                m.run_with_hooks(ids, fwd_hooks=[("hook_embed", lambda a, h: None)])
            m.free()
            if i == 99:
                before = rss_kb()
        grown = rss_kb() - before
        # one leaked run's logits alone would be 64 KB per iteration (58 MB);
        # one leaked model 700 KB
        self.assertLess(grown, 2048, "RSS grew by %d kB over 900 loads and runs" % grown)


class TestThreads(unittest.TestCase):
    def test_forwards_in_two_threads_overlap(self):
        m = mech.Model.random(seed=4, n_layers=6, d_model=256, n_heads=4, d_head=64, d_mlp=1024, d_vocab=1000,
                              n_ctx=256)
        m.threads = 1
        ids = np.arange(256) % 1000
        want = m(ids)
        spans, results = {}, {}
        barrier = threading.Barrier(2)

        def work(k):
            barrier.wait()
            t0 = time.monotonic()
            results[k] = m(ids)
            spans[k] = (t0, time.monotonic())

        ts = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for k in range(2):
            np.testing.assert_array_equal(results[k], want)
        (a0, a1), (b0, b1) = spans[0], spans[1]
        overlap = min(a1, b1) - max(a0, b0)
        shorter = min(a1 - a0, b1 - b0)
        # With the GIL held the two C calls would run one after the other.
        self.assertGreater(overlap, 0.5 * shorter, "spans %s" % spans)


CTRL_C = r"""
import sys, time, numpy as np
sys.path.insert(0, %(py)r); sys.path.insert(0, %(root)r)
import mech
from tests.test_robust import long_model
m = long_model(384)
ids = np.arange(1024) %% 512
print("go", flush=True)
t0 = time.monotonic()
try:
    m(ids)
    print("finished", time.monotonic() - t0)
except KeyboardInterrupt as e:
    print("interrupted", time.monotonic() - t0)
# the library is usable again (the flag was cleared): a whole forward
t0 = time.monotonic()
print("after", m(ids).shape, time.monotonic() - t0, flush=True)
"""


class TestInterrupt(unittest.TestCase):
    def test_ctrl_c_stops_a_forward(self):
        code = CTRL_C % {"py": os.path.join(ROOT, "python"), "root": os.path.join(ROOT, "python")}
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(p.stdout.readline().strip(), "go")
        time.sleep(0.3)
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        took = time.monotonic() - sent
        self.assertEqual(p.returncode, 0, err)
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("interrupted"), out)
        stopped_after = float(lines[0].split()[1])
        after = lines[1].split()
        self.assertEqual(after[:4], ["after", "(1,", "1024,", "512)"])
        # the forward stopped between blocks, well before a whole one's time
        # (the signal came 0.3 s into a forward of about 2 s on an idle
        # machine; Python alone would wait for the end)
        self.assertLess(stopped_after, 0.5 * float(after[4]), out)
        self.assertLess(took, 30)

    def test_cancel_from_another_thread(self):
        m = long_model()
        ids = np.arange(1024) % 512
        caught = []

        def work():
            try:
                m(ids)
                caught.append("finished")
            except mech.MechCancelled as e:
                caught.append(str(e))

        t = threading.Thread(target=work)
        t.start()
        time.sleep(0.3)
        mech.cancel()
        t.join()
        self.assertEqual(len(caught), 1)
        self.assertIn("interrupted before block", caught[0])
        # nothing pending: the next call runs to the end
        mech.cancel()  # no call running: does nothing
        self.assertEqual(m(ids[:4]).shape, (1, 4, 512))

    def test_cancel_a_patching_sweep(self):
        m = mech.Model.random(seed=2, n_layers=24, d_model=128, n_heads=4, d_head=32, d_mlp=512, d_vocab=512,
                              n_ctx=64)
        clean = np.arange(48) % 512
        corrupt = clean[::-1].copy()
        caught = []
        with mech.interp.Patcher(m, clean, corrupt, answer=1, wrong=2) as p:
            def work():
                try:
                    p.sweep("resid_pre")  # 24 x 48 patched runs: seconds
                    caught.append("finished")
                except mech.MechCancelled as e:
                    caught.append(e)

            t = threading.Thread(target=work)
            t.start()
            time.sleep(0.3)
            mech.cancel()
            t.join()
            self.assertEqual(len(caught), 1)
            self.assertIsInstance(caught[0], mech.MechCancelled, caught)
            # the patcher still works: a cheap sweep after the cancelled one
            self.assertEqual(p.sweep("heads").raw.shape, (24, 4))

    def test_keyboard_interrupt_in_a_hook_stops_the_run(self):
        m = mech.Model.load(TINY)
        calls = []

        def hook(act, h):
            calls.append(h.name)
            raise KeyboardInterrupt

        with self.assertRaises(KeyboardInterrupt):
            m.run_with_hooks([1, 2, 3], fwd_hooks=[("blocks.*.hook_resid_pre", hook)])
        self.assertEqual(calls, ["blocks.0.hook_resid_pre"])


class TestDocstrings(unittest.TestCase):
    def test_every_public_function_has_a_docstring(self):
        import inspect
        missing = []
        for mod in (mech, mech.model, mech.interp, mech.rasp, mech.db):
            for name, obj in vars(mod).items():
                if name.startswith("_") or getattr(obj, "__module__", "").split(".")[0] != "mech":
                    continue
                if inspect.isfunction(obj) or inspect.isclass(obj):
                    if not inspect.getdoc(obj):
                        missing.append("%s.%s" % (mod.__name__, name))
                if inspect.isclass(obj):
                    for mname, meth in vars(obj).items():
                        if mname.startswith("_") and mname not in ("__init__", "__call__"):
                            continue
                        f = meth.fget if isinstance(meth, property) else meth
                        if (inspect.isfunction(f) or isinstance(meth, (classmethod, property))) and \
                                not inspect.getdoc(f if inspect.isfunction(f) else meth.__func__
                                                   if isinstance(meth, classmethod) else f):
                            missing.append("%s.%s.%s" % (mod.__name__, name, mname))
        self.assertEqual(missing, [])


if __name__ == "__main__":
    unittest.main()
