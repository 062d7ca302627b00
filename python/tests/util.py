"""What the tests share: the repository's paths, the CLI, small models."""

import os
import subprocess
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY = os.path.join(ROOT, "tests", "fixtures", "gpt2-tiny")
MECH_BIN = os.path.abspath(os.path.join(ROOT, os.environ.get("MECH_BIN", "mech")))
EXAMPLES = os.path.join(ROOT, "examples", "rasp")


def cli(*args, check=True, cwd=None):
    """Runs the mech CLI; returns the completed process (text output)."""
    p = subprocess.run([MECH_BIN] + [str(a) for a in args], capture_output=True, text=True, cwd=cwd)
    if check and p.returncode != 0:
        raise AssertionError("mech %s failed (%d):\n%s%s" % (" ".join(map(str, args)), p.returncode, p.stdout,
                                                             p.stderr))
    return p


def tiny_tokens(n=32):
    """The fixture's tokens: tok[t] = (7919 t + 42) % 1000."""
    return np.fromfile(os.path.join(TINY, "tokens.i32"), dtype="<i4")[:n].astype(np.int64)


class TmpCase(unittest.TestCase):
    """A test case with a temporary directory self.tmp."""

    def setUp(self):
        self._td = tempfile.TemporaryDirectory(prefix="mech-py-")
        self.tmp = self._td.name

    def tearDown(self):
        self._td.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)
