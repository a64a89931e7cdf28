"""A traced travel-assistant demo application with known planted faults.

`build_demo_corpus` runs the app on simulated traffic, logs real MLflow traces and human
feedback, and returns the ground truth (`DemoCorpus.faults`, `DemoCorpus.harmless`) that an
analysis of the experiment should recover.
"""

from .corpus import DemoCorpus, build_demo_corpus
from .faults import (
    EMPTY_RESPONSES, FAILING_ASSESSMENT, HARMLESS, SLOW_LONG_INPUTS, TOOL_OUTAGE, FaultPlan,
)

__all__ = [
    "DemoCorpus", "build_demo_corpus", "FaultPlan",
    "TOOL_OUTAGE", "SLOW_LONG_INPUTS", "EMPTY_RESPONSES", "FAILING_ASSESSMENT", "HARMLESS",
]
