"""Spark settings for the tests' tiny data, applied to every Spark JVM the tests start.

Why: Spark's defaults are made for large data. On a few hundred traces a local census spends
most of its time compiling code (whole-stage and expression codegen, then the JIT's second
tier) rather than reading rows; interpreted execution on a quick-starting JVM halves it. The
queries, their results and the engine's own defaults (which the Spark bench measures) are
unchanged: these are session settings, passed the way a user would pass them to spark-submit.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator
from typing import Any

SMALL_DATA_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.shuffle.partitions": "1",
    "spark.sql.adaptive.enabled": "false",
}
# A quick-starting JVM: the JIT's first tier only, one GC thread, and no bytecode verification
# of Spark's own jars (measured here: a cold start and four censuses used 36 s of CPU with
# verification, 29 s without).
JAVA_OPTIONS = ("-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:+UnlockDiagnosticVMOptions "
                "-XX:-BytecodeVerificationRemote -XX:-BytecodeVerificationLocal")


def submit_args() -> list[str]:
    """spark-submit arguments that apply the settings above."""
    args = ["--driver-java-options", JAVA_OPTIONS]
    for key, value in SMALL_DATA_CONF.items():
        args += ["--conf", f"{key}={value}"]
    return args


def pyspark_submit_args() -> str:
    """The same, as pyspark reads them from PYSPARK_SUBMIT_ARGS for its local JVM."""
    return shlex.join([*submit_args(), "pyspark-shell"])


# Spark's defaults for the two code-generation settings above.
DEFAULT_CODEGEN = {"spark.sql.codegen.wholeStage": "true",
                   "spark.sql.codegen.factoryMode": "FALLBACK"}


@contextlib.contextmanager
def default_codegen(spark: Any) -> Iterator[None]:
    """Spark's default code generation for the duration of a block, on a live session (local or
    Connect). Why: a query's cancellation is noticed only when a task pulls in its next row or
    batch, and the time-limit tests must see how that works with the settings users run, not
    the tests' own."""
    previous = {key: spark.conf.get(key) for key in DEFAULT_CODEGEN}
    for key, value in DEFAULT_CODEGEN.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            spark.conf.set(key, value)
