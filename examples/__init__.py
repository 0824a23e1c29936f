"""Example workflows: templates in `templates/`, their handlers in this package."""

from pathlib import Path

TEMPLATE_DIRECTORY = Path(__file__).parent / "templates"

#: Every example's handler module, for a worker's `--handlers`.
HANDLER_MODULES = ",".join(
    f"tasker.examples.{name}"
    for name in (
        "linear",
        "diamond",
        "math_dag",
        "conditional_approval",
        "batch_csv",
        "data_pipeline",
        "order_fulfillment",
    )
)
