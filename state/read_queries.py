"""Named SQL of the read model (`state/reads.py`): lists and checks for the API."""

# TaskView's fields without its steps, in order (`queries.TASK_VIEW_DOCUMENT` names them).
_TASK_COLUMNS = """
task_uuid, namespace, name, version, status, context, initiator, source_system, reason,
priority, tags, correlation_id, total_steps, pending_steps, in_flight_steps,
done_steps, failed_steps, created_at, updated_at, completed_at
"""

_TASK_FILTER = """
 WHERE (%(namespace)s::text IS NULL OR namespace = %(namespace)s::text)
   AND (%(status)s::text IS NULL OR status = %(status)s::text)
   AND (%(name)s::text IS NULL OR name = %(name)s::text)
"""

LIST_TASKS = f"""
SELECT {_TASK_COLUMNS} FROM tasker.tasks {_TASK_FILTER}
 ORDER BY created_at DESC, task_uuid DESC LIMIT %(limit)s OFFSET %(offset)s
"""

COUNT_TASKS = f"SELECT count(*) FROM tasker.tasks {_TASK_FILTER}"

LIST_TEMPLATES = """
SELECT namespace, name, version, coalesce(definition->>'description', ''),
       coalesce(jsonb_array_length(definition->'steps'), 0), updated_at
  FROM tasker.task_templates
 WHERE (%(namespace)s::text IS NULL OR namespace = %(namespace)s::text)
 ORDER BY namespace, name, version
"""

TEMPLATE_NAMESPACES = "SELECT DISTINCT namespace FROM tasker.task_templates ORDER BY 1"

PING = "SELECT 1"
