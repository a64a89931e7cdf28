"""An empty half (tiny experiments split by trace id) must still give boolean masks: an empty
float array cannot be combined with ``&``, which crashed interactive runs on 3-trace stores."""

from __future__ import annotations

from agent.frame import TraceFrame
from insights.analytics.sql import SqlResult

COLUMNS = ["trace_id", "request_time_ms", "execution_time_ms", "state", "request", "response",
           "tools", "failing", "assessed", "tags"]


def test_empty_frame_masks_combine() -> None:
    frame = TraceFrame.load(lambda _sql: SqlResult(COLUMNS, []))
    assert len(frame) == 0
    assert frame.empty_response.dtype == bool and frame.error.dtype == bool
    assert (frame.empty_response & frame.error & frame.has(frame.tools, "x")).shape == (0,)
