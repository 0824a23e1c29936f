"""State: PostgreSQL as the single source of truth for templates, tasks and steps."""
