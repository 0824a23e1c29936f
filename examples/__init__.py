"""Example workflows: templates in `templates/`, their handlers in this package."""

from pathlib import Path

TEMPLATE_DIRECTORY = Path(__file__).parent / "templates"
