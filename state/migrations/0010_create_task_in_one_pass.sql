-- REDEFINES tasker.create_task of 0007 (same signature, same rows, same history): a new
-- task's first three states (pending, initializing, then enqueuing_steps, or complete
-- when it has no steps) are known before it is written, so the task row goes in at its
-- third state and the three history rows in one INSERT, instead of an INSERT and two
-- moves that each updated the task row and cleared the previous most_recent flag
-- (issue 8: creation p50 goal 5 ms).
CREATE OR REPLACE FUNCTION tasker.create_task(p_task jsonb, p_steps jsonb, p_edges jsonb)
RETURNS TABLE (created boolean, task_uuid uuid, status text, ready_steps uuid[])
LANGUAGE plpgsql AS $$
DECLARE
    v_task uuid := (p_task->>'task_uuid')::uuid;
    v_total integer := jsonb_array_length(p_steps);
    v_ready uuid[];
    -- Where the three moves of a new task end: no steps, nothing to do.
    v_status text := CASE WHEN v_total = 0 THEN 'complete' ELSE 'enqueuing_steps' END;
BEGIN
    INSERT INTO tasker.tasks (task_uuid, template_uuid, namespace, name, version, status,
        context, initiator, source_system, reason, tags, priority, correlation_id,
        idempotency_key, identity_hash, total_steps, pending_steps, trace_context,
        transition_seq, completed_at)
    SELECT v_task, (p_task->>'template_uuid')::uuid, p_task->>'namespace', p_task->>'name',
           p_task->>'version', v_status, coalesce(p_task->'context', '{}'),
           p_task->>'initiator', p_task->>'source_system', p_task->>'reason',
           coalesce(p_task->'tags', '[]'), coalesce((p_task->>'priority')::int, 0),
           p_task->>'correlation_id', p_task->>'idempotency_key', p_task->>'identity_hash',
           v_total, v_total, p_task->'trace_context', 2,
           CASE WHEN v_total = 0 THEN now() END
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

    INSERT INTO tasker.task_transitions
        (task_uuid, from_state, to_state, metadata, sort_key, most_recent)
    VALUES (v_task, NULL, 'pending', '{}', 0, false),
           (v_task, 'pending', 'initializing', '{}', 1, false),
           (v_task, 'initializing', v_status,
            CASE WHEN v_total = 0 THEN '{}'::jsonb
                 ELSE jsonb_build_object('ready_steps', cardinality(v_ready)) END, 2, true);
    RETURN QUERY SELECT true, v_task, v_status, v_ready;
END
$$;

SELECT tasker.pin_lookup_plans();
