"""Task-finished notices: `finalize_task` NOTIFYs `tasker_task_finished` ('<uuid>:<status>').

The API's long polls listen for them (`tasker.api.waiter`), so waiting clients cost no
polling.
"""

from __future__ import annotations

FINISHED_CHANNEL = "tasker_task_finished"
