"""mech from Python: the C library's models, forward pass with hooks and
caches, interpretability methods, RASP compiler and results database, with a
TransformerLens-shaped API over numpy.

    import mech
    model = mech.Model.load("gpt2/")
    tokens = model.to_tokens("When Mary and John went to the store, John gave a drink to")
    logits, cache = model.run_with_cache(tokens, names_filter="blocks.*.attn.hook_pattern")
    cache["blocks.0.attn.hook_pattern"].shape        # (1, 12, T, T)

See docs/python.md in the mech repository.
"""

from ._lib import (MechArgError, MechCancelled, MechDBError, MechError, MechFormatError, MechIOError,
                   MechNoMemError, MechParseError, MechRangeError, MechShapeError, MechTypeError)
from ._lib import lib as _clib
from .model import ActivationCache, Config, HookPoint, Model
from . import interp, rasp  # noqa: E402  (mech.interp.Patcher, mech.rasp.compile)
from .db import open_db

__version__ = "0.1.0"


def cancel():
    """Asks every mech call running in this process (in any thread) to stop:
    a forward stops before its next block, a patching sweep before its next
    patched run; they raise MechCancelled. Does nothing when none runs."""
    _clib.mech_cancel_request()


def library_path():
    """The path of the libmech.so this package loaded."""
    return _clib._path


__all__ = ["Model", "Config", "HookPoint", "ActivationCache", "MechError", "MechNoMemError", "MechIOError",
           "MechFormatError", "MechShapeError", "MechParseError", "MechTypeError", "MechDBError", "MechRangeError",
           "MechCancelled", "MechArgError", "cancel", "library_path", "open_db", "interp", "rasp"]
