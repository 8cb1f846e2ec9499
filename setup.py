"""The build's one piece of code: a C extension (the metadata is in setup.cfg).

The extension is optional: where it cannot be compiled, llama.cpp's log goes through
llama-cpp-python's Python callback instead (see localai_runtime/backends/llama_cpp/engine/log.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("localai_runtime.backends.llama_cpp.engine._log_sink",
                             ["localai_runtime/backends/llama_cpp/engine/_log_sink.c"], optional=True)])
