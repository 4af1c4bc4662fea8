"""`pip install --no-build-isolation .`: builds the Python module crossquant with CMake and
Debian's pybind11 (docs/PYTHON.md). Nothing is fetched: the build uses the setuptools and
pybind11 already installed. CQ_PYTHON_BUILD names the CMake build folder (default
build-python/ in the checkout; an existing build/ can be reused)."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent
VERSION = re.search(r"project\(crossquant VERSION ([0-9.]+)", (ROOT / "CMakeLists.txt").read_text()).group(1)


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = pathlib.Path(os.environ.get("CQ_PYTHON_BUILD", ROOT / "build-python")).resolve()
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                        f"-DPython3_EXECUTABLE={sys.executable}"], check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        result = subprocess.run(["cmake", "--build", str(build_dir), "--target", "cq_python", "-j", jobs])
        built = sorted((build_dir / "python").glob("crossquant*.so")) if result.returncode == 0 else []
        if not built:
            sys.exit("setup.py: the module was not built; CMake says why above (pybind11-dev and python3-dev "
                     "are needed: scripts/install-deps.sh test)")
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built[0], target)


setup(
    name="crossquant",
    version=VERSION,
    description="Post-training quantization of LLMs (CrossQuant): quantizers, kernel statistics, evaluation",
    python_requires=">=3.9",
    ext_modules=[CMakeExtension("crossquant")],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
