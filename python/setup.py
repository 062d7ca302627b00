# Refuses to build the package without the shared library it wraps, and
# marks the wheel as platform-specific (it carries libmech.so).
import os

from setuptools import setup
from setuptools.dist import Distribution

if not os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)), "mech", "libmech.so")):
    raise SystemExit("mech: python/mech/libmech.so is missing: run `make python` in the mech repository first")


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(distclass=BinaryDistribution)
