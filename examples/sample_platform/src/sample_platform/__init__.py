"""The sample retail analytics platform: a ``dg`` project built on the Loom library.

``make demo`` materializes it, ``make ui`` serves it with ``dg dev``, and the benchmarks and tests
use it. Its tables are declared in Python (:mod:`sample_platform.tables`,
:mod:`sample_platform.external`, :mod:`sample_platform.features`); the code location is
:mod:`sample_platform.definitions`.
"""
