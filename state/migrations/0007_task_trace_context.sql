-- Every task remembers the W3C trace context it was created in, so work started later
-- with no live context (a retry timer, a sweep, an operator action) continues the task's
-- one trace. create_task stores it from the creation call's task JSON (no extra write);
-- the claim and the sweeps read it back through task_trace_context.

ALTER TABLE tasker.tasks ADD COLUMN IF NOT EXISTS trace_context jsonb;

-- The stored context of a task (NULL for tasks created before this migration).
CREATE OR REPLACE FUNCTION tasker.task_trace_context(p_task uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT t.trace_context FROM tasker.tasks t WHERE t.task_uuid = p_task
$$;

-- create_task as in 0003 plus `trace_context` in the INSERT: a rework of create_task must
-- keep writing that column.
CREATE OR REPLACE FUNCTION tasker.create_task(p_task jsonb, p_steps jsonb, p_edges jsonb)
RETURNS TABLE (created boolean, task_uuid uuid, status text, ready_steps uuid[])
LANGUAGE plpgsql AS $$
DECLARE
    v_task uuid := (p_task->>'task_uuid')::uuid;
    v_total integer := jsonb_array_length(p_steps);
    v_ready uuid[];
BEGIN
    INSERT INTO tasker.tasks (task_uuid, template_uuid, namespace, name, version, status,
        context, initiator, source_system, reason, tags, priority, correlation_id,
        idempotency_key, identity_hash, total_steps, pending_steps, trace_context)
    SELECT v_task, (p_task->>'template_uuid')::uuid, p_task->>'namespace', p_task->>'name',
           p_task->>'version', 'pending', coalesce(p_task->'context', '{}'),
           p_task->>'initiator', p_task->>'source_system', p_task->>'reason',
           coalesce(p_task->'tags', '[]'), coalesce((p_task->>'priority')::int, 0),
           p_task->>'correlation_id', p_task->>'idempotency_key', p_task->>'identity_hash',
           v_total, v_total, p_task->'trace_context'  -- the one change from 0003
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, t.task_uuid, t.status, '{}'::uuid[]
                       FROM tasker.tasks t
                      WHERE t.task_uuid = v_task OR t.identity_hash = p_task->>'identity_hash'
                      LIMIT 1;
        RETURN;
    END IF;

    INSERT INTO tasker.workflow_steps (step_uuid, task_uuid, name, position, step_type,
        handler, retryable, max_attempts, backoff, backoff_base_ms, max_backoff_ms,
        timeout_seconds)
    SELECT s.step_uuid, v_task, s.name, s.position, s.step_type, s.handler, s.retryable,
           s.max_attempts, s.backoff, s.backoff_base_ms, s.max_backoff_ms, s.timeout_seconds
      FROM jsonb_to_recordset(p_steps) AS s(step_uuid uuid, name text, position integer,
           step_type text, handler jsonb, retryable boolean, max_attempts integer,
           backoff text, backoff_base_ms integer, max_backoff_ms integer,
           timeout_seconds double precision);

    INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid, task_uuid)
    SELECT e.from_step_uuid, e.to_step_uuid, v_task
      FROM jsonb_to_recordset(p_edges) AS e(from_step_uuid uuid, to_step_uuid uuid);

    SELECT coalesce(array_agg(s.step_uuid ORDER BY s.position), '{}') INTO v_ready
      FROM jsonb_to_recordset(p_steps) AS s(step_uuid uuid, position integer)
     WHERE NOT EXISTS (SELECT 1 FROM jsonb_to_recordset(p_edges) AS e(to_step_uuid uuid)
                        WHERE e.to_step_uuid = s.step_uuid);

    INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, sort_key, most_recent)
    VALUES (v_task, NULL, 'pending', 0, true);
    PERFORM tasker.move_task(v_task, 'pending', 'initializing');
    IF v_total = 0 THEN
        PERFORM tasker.move_task(v_task, 'initializing', 'complete');
        RETURN QUERY SELECT true, v_task, 'complete'::text, v_ready;
        RETURN;
    END IF;
    PERFORM tasker.move_task(v_task, 'initializing', 'enqueuing_steps',
                             jsonb_build_object('ready_steps', cardinality(v_ready)));
    RETURN QUERY SELECT true, v_task, 'enqueuing_steps'::text, v_ready;
END
$$;
