"""Named SQL statements of the state repository (the functions they call are migrations)."""

UPSERT_TEMPLATE = """
INSERT INTO tasker.task_templates (template_uuid, namespace, name, version, definition)
VALUES (%s, %s, %s, %s, %s::jsonb)
ON CONFLICT (namespace, name, version)
DO UPDATE SET definition = EXCLUDED.definition, updated_at = now()
RETURNING template_uuid
"""

GET_TEMPLATE = """
SELECT template_uuid, definition::text FROM tasker.task_templates
 WHERE namespace = %s AND name = %s AND version = %s
"""

LIST_TEMPLATES = """
SELECT namespace, name, version FROM tasker.task_templates ORDER BY namespace, name, version
"""

CREATE_TASK = """
SELECT created, task_uuid, status, ready_steps FROM tasker.create_task(%s, %s, %s)
"""

CLAIM_STEPS = """
SELECT step_uuid, task_uuid, name, handler, attempt, max_attempts, retryable, timeout_seconds,
       namespace, task_name, task_version, context, correlation_id, dependency_results, fence
  FROM tasker.claim_steps(%s::uuid[], %s)
"""

APPLY_STEP_RESULT = """
SELECT outcome, task_uuid, step_state, task_status, ready_steps, next_retry_at, finalize
  FROM tasker.apply_step_result(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""

# The same, for a plain step only: outcome 'dynamic' (nothing changed) otherwise (0011).
APPLY_PLAIN_STEP_RESULT = """
SELECT outcome, task_uuid, step_state, task_status, ready_steps, next_retry_at, finalize
  FROM tasker.apply_plain_step_result(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""

FINALIZE_TASK = "SELECT finalized, status FROM tasker.finalize_task(%s, %s)"

CLAIM_AND_SEND = "SELECT namespace, sent FROM tasker.claim_and_send(%s::uuid[], %s::jsonb)"

APPLY_RESULTS_AND_DISPATCH = """
SELECT outcome, task_uuid, step_state, task_status, ready_steps, next_retry_at, finalize,
       sent, namespace, finalized, final_status, claimed, fences, messages
  FROM tasker.apply_result_document(%s, %s, %s::jsonb)
"""

TRANSITION_TASK = "SELECT applied, actual_state FROM tasker.transition_task(%s, %s, %s, %s)"

TRANSITION_STEP = "SELECT applied, actual_state FROM tasker.transition_step(%s, %s, %s, %s)"

DUE_RETRY_STEPS = """
SELECT step_uuid FROM tasker.workflow_steps
 WHERE state = 'waiting_for_retry' AND next_retry_at <= clock_timestamp()
 ORDER BY next_retry_at LIMIT %s
"""

NEXT_RETRY_AT = """
SELECT min(next_retry_at) FROM tasker.workflow_steps WHERE state = 'waiting_for_retry'
"""

# Tasks that a crash may have left between pipeline stages: ready work not yet claimed
# (enqueuing_steps) or all steps done but not finalized (evaluating_results / blocked).
TASKS_NEEDING_ATTENTION = """
SELECT task_uuid, status, trace_context FROM tasker.tasks
 WHERE status IN ('enqueuing_steps', 'evaluating_results', 'blocked_by_failures',
                  'waiting_for_dependencies')
   AND updated_at < clock_timestamp() - make_interval(secs => %s)
 ORDER BY updated_at LIMIT %s
"""

# The ready steps of many tasks at once: one query, one claim, however many tasks a sweep
# resumes (a claim per task would flood the enqueuer when many tasks wait).
READY_STEPS_OF_TASKS = """
SELECT s.step_uuid FROM tasker.workflow_steps s
 WHERE s.task_uuid = ANY (%s::uuid[]) AND s.state = 'pending'
   AND tasker.parents_satisfied(s.step_uuid)
 ORDER BY s.task_uuid, s.position
"""

# A task with its steps as one JSON document, in TaskView's field names: one round trip,
# decoded by msgspec in one call (two queries and psycopg's per-column conversion took
# half a millisecond more on the creation path, which reads the new task back).
TASK_VIEW_DOCUMENT = """
SELECT json_build_object(
    'task_uuid', t.task_uuid, 'namespace', t.namespace, 'name', t.name, 'version', t.version,
    'status', t.status, 'context', t.context, 'initiator', t.initiator,
    'source_system', t.source_system, 'reason', t.reason, 'priority', t.priority,
    'tags', t.tags, 'correlation_id', t.correlation_id, 'total_steps', t.total_steps,
    'pending_steps', t.pending_steps, 'in_progress_steps', t.in_flight_steps,
    'completed_steps', t.done_steps, 'failed_steps', t.failed_steps,
    'created_at', t.created_at, 'updated_at', t.updated_at, 'completed_at', t.completed_at,
    'steps', (SELECT coalesce(json_agg(json_build_object(
        'step_uuid', s.step_uuid, 'task_uuid', s.task_uuid, 'name', s.name,
        'current_state', s.state, 'attempts', s.attempts, 'max_attempts', s.max_attempts,
        'retryable', s.retryable, 'results', s.results, 'last_error', s.last_error,
        'dependencies', coalesce((SELECT array_agg(p.name ORDER BY p.position)
                                    FROM tasker.workflow_step_edges e
                                    JOIN tasker.workflow_steps p
                                      ON p.step_uuid = e.from_step_uuid
                                   WHERE e.to_step_uuid = s.step_uuid), '{}'),
        'created_at', s.created_at, 'updated_at', s.updated_at,
        'completed_at', s.completed_at, 'last_attempted_at', s.last_attempted_at,
        'last_failure_at', s.last_failure_at, 'next_retry_at', s.next_retry_at)
        ORDER BY s.position), '[]') FROM tasker.workflow_steps s WHERE s.task_uuid = t.task_uuid)
)::text
  FROM tasker.tasks t WHERE t.task_uuid = %s
"""

STEP_TRANSITIONS = """
SELECT t.from_state, t.to_state, t.metadata, t.sort_key,
       t.sort_key = s.transition_seq AS most_recent, t.created_at
  FROM tasker.workflow_step_transitions t JOIN tasker.workflow_steps s USING (step_uuid)
 WHERE t.step_uuid = %s ORDER BY t.sort_key
"""

TASK_TRANSITIONS = """
SELECT t.from_state, t.to_state, t.metadata, t.sort_key,
       t.sort_key = k.transition_seq AS most_recent, t.created_at
  FROM tasker.task_transitions t JOIN tasker.tasks k USING (task_uuid)
 WHERE t.task_uuid = %s ORDER BY t.sort_key
"""

STEP_PAYLOADS = """
SELECT step_uuid, task_uuid, name, handler, attempt, max_attempts, retryable, timeout_seconds,
       namespace, task_name, task_version, context, correlation_id, dependency_results, fence
  FROM tasker.step_payloads(%s::uuid[])
"""

TAKE_UNPUBLISHED_STEPS = "SELECT * FROM tasker.take_unpublished_steps(%s, %s)"

# Never waits for a step another transaction holds: that one is applying the step's result
# (or claiming it again), so the step is leaving this publish behind, and waiting could
# deadlock with a result processor (it locks task then step; confirms arrive in any order).
# A confirm counts for the dispatch that was published (the step's dispatch count then):
# a late confirm of an earlier dispatch must not vouch for a newer one, whose own publish
# may have been lost and must stay visible to the re-publish sweep.
MARK_PUBLISHED = """
UPDATE tasker.workflow_steps w SET published_at = clock_timestamp()
 WHERE w.step_uuid IN (
    SELECT s.step_uuid
      FROM tasker.workflow_steps s
      JOIN unnest(%s::uuid[], %s::integer[]) AS d(step_uuid, fence) USING (step_uuid)
     WHERE s.dispatch_count = d.fence AND s.state = 'enqueued' AND s.published_at IS NULL
       FOR UPDATE OF s SKIP LOCKED)
"""

# Keeps the latest heartbeat per worker: an older one (redelivered, or overtaken in the
# queue) changes nothing. Returns a row only when this heartbeat was applied.
RECORD_WORKER_HEARTBEAT = """
INSERT INTO tasker.workers AS w (worker_id, host, pid, namespaces, in_flight, concurrency,
                                 status, started_at, last_heartbeat_at,
                                 heartbeat_interval_seconds)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (worker_id) DO UPDATE SET
    host = EXCLUDED.host, pid = EXCLUDED.pid, namespaces = EXCLUDED.namespaces,
    in_flight = EXCLUDED.in_flight, concurrency = EXCLUDED.concurrency,
    status = EXCLUDED.status, started_at = EXCLUDED.started_at,
    last_heartbeat_at = EXCLUDED.last_heartbeat_at,
    heartbeat_interval_seconds = EXCLUDED.heartbeat_interval_seconds
 WHERE w.last_heartbeat_at < EXCLUDED.last_heartbeat_at
RETURNING worker_id
"""

# Workers not heard from for the retention period (stopped, or gone without a word).
PRUNE_WORKERS = """
DELETE FROM tasker.workers
 WHERE last_heartbeat_at < clock_timestamp() - make_interval(secs => %s)
RETURNING worker_id
"""

# Alive: not stopped, and heard from within three of its own heartbeat intervals.
LIST_WORKERS = """
SELECT worker_id, host, pid, namespaces, in_flight, concurrency, status, started_at,
       last_heartbeat_at, heartbeat_interval_seconds,
       extract(epoch FROM clock_timestamp() - last_heartbeat_at)::double precision,
       status <> 'stopped'
         AND last_heartbeat_at > clock_timestamp()
                                 - make_interval(secs => 3 * heartbeat_interval_seconds)
  FROM tasker.workers
 ORDER BY host, started_at, worker_id
"""

STALE_TASKS = "SELECT task_uuid, status, stuck_minutes FROM tasker.stale_tasks(%s, %s, %s, %s)"

FAIL_STALE_TASK = "SELECT tasker.fail_stale_task(%s, %s, %s, %s)"

# Dynamic steps (issue 10): decisions, batches, checkpoints. Functions in 0006_dynamic_steps.

# What a result's step is: its type, batch, and (for loading its template) the template row.
INSPECT_STEP = """
SELECT s.task_uuid, s.name, s.step_type, s.batch_step_uuid, t.template_uuid, tt.updated_at
  FROM tasker.workflow_steps s
  JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
  JOIN tasker.task_templates tt ON tt.template_uuid = t.template_uuid
 WHERE s.step_uuid = %s
"""

TEMPLATE_DEFINITION = "SELECT definition::text FROM tasker.task_templates WHERE template_uuid = %s"

# A task's steps as the creation plan reads them; the results only of completed decision
# and batchable steps (their outcomes), so a large task's results are not all read.
TASK_STEP_FATES = """
SELECT s.step_uuid, s.name, coalesce(s.template_step, s.name), s.step_type, s.state,
       CASE WHEN s.step_type IN ('decision', 'batchable')
             AND s.state IN ('complete', 'resolved_manually') THEN s.results END
  FROM tasker.workflow_steps s WHERE s.task_uuid = %s
"""

ADD_DYNAMIC_STEPS = """
SELECT task_status, ready_steps, finalize FROM tasker.add_dynamic_steps(%s, %s, %s, %s)
"""

AFTER_BATCH_WORKER_RESULT = """
SELECT task_status, ready_steps, finalize, override FROM tasker.after_batch_worker_result(%s)
"""

CHECKPOINT_STEP = """
SELECT outcome, task_uuid, step_state, task_status, ready_steps, finalize
  FROM tasker.checkpoint_step(%s, %s, %s, %s, %s, %s)
"""

CLAIM_FOR_DISPATCH = """
SELECT step_uuid, task_uuid, name, handler, attempt, max_attempts, retryable, timeout_seconds,
       namespace, task_name, task_version, context, correlation_id, dependency_results, fence,
       inputs, checkpoint, tasker.task_trace_context(task_uuid)
  FROM tasker.claim_for_dispatch(%s::uuid[], %s)
"""

STEP_INPUTS = """
SELECT step_uuid, inputs, checkpoint, tasker.task_trace_context(task_uuid)
  FROM tasker.workflow_steps WHERE step_uuid = ANY (%s::uuid[])
"""
