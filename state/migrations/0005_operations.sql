-- Operations: operator actions on steps and tasks, the dead letter queue, staleness.

-- A snapshot of a task and its steps, kept with a dead-letter investigation record.
CREATE OR REPLACE FUNCTION tasker.task_snapshot(p_task uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_snapshot jsonb;
BEGIN
    SELECT jsonb_build_object(
        'task', to_jsonb(t) - 'context',
        'context', t.context,
        'steps', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                'step_uuid', s.step_uuid, 'name', s.name, 'state', s.state,
                'attempts', s.attempts, 'max_attempts', s.max_attempts,
                'results', s.results, 'last_error', s.last_error,
                'last_attempted_at', s.last_attempted_at) ORDER BY s.position)
              FROM tasker.workflow_steps s WHERE s.task_uuid = t.task_uuid), '[]'))
      INTO v_snapshot
      FROM tasker.tasks t WHERE t.task_uuid = p_task;
    RETURN v_snapshot;
END
$$;

-- Why a task failed, from its failed steps: an unknown handler, exhausted retries, or a
-- failure its handler called permanent.
CREATE OR REPLACE FUNCTION tasker.failure_reason(p_task uuid) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM tasker.workflow_steps s WHERE s.task_uuid = p_task
                AND s.state = 'error' AND s.last_error->>'error_type' = 'handler_not_found') THEN
        RETURN 'unknown_handler';
    ELSIF EXISTS (SELECT 1 FROM tasker.workflow_steps s WHERE s.task_uuid = p_task
                   AND s.state = 'error' AND s.retryable
                   AND coalesce((s.last_error->>'retryable')::boolean, true)
                   AND s.attempts >= s.max_attempts) THEN
        RETURN 'retries_exhausted';
    END IF;
    RETURN 'permanent_failure';
END
$$;

-- Opens the task's investigation record unless one is already open.
CREATE OR REPLACE FUNCTION tasker.open_dlq_entry(
    p_entry uuid, p_task uuid, p_reason text, p_details jsonb
) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tasker.dlq_entries (entry_uuid, task_uuid, reason, details, snapshot)
    VALUES (p_entry, p_task, p_reason, coalesce(p_details, '{}'), tasker.task_snapshot(p_task))
    ON CONFLICT (task_uuid) WHERE status = 'pending' DO NOTHING;
    RETURN FOUND;
END
$$;

-- After an operator changed a step: the task's ready steps and next state. A task that
-- was failed or blocked is revived if the change unblocked it.
CREATE OR REPLACE FUNCTION tasker.reevaluate_task(p_task uuid, p_status text)
RETURNS TABLE (task_status text, ready_steps uuid[], finalize boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_ready uuid[];
    v_next text;
BEGIN
    IF p_status IN ('complete', 'cancelled', 'resolved_manually') THEN
        RETURN QUERY SELECT p_status, '{}'::uuid[], false;
        RETURN;
    END IF;
    SELECT coalesce(array_agg(s.step_uuid ORDER BY s.position), '{}') INTO v_ready
      FROM tasker.workflow_steps s
     WHERE s.task_uuid = p_task AND s.state = 'pending' AND tasker.parents_satisfied(s.step_uuid);
    v_next := tasker.next_task_state(p_task, cardinality(v_ready) > 0);
    IF p_status = 'error' AND v_next = 'blocked_by_failures' THEN
        RETURN QUERY SELECT p_status, '{}'::uuid[], false;  -- still failed: nothing to do
        RETURN;
    END IF;
    IF p_status <> 'evaluating_results' THEN
        PERFORM tasker.move_task(p_task, p_status, 'evaluating_results');
    END IF;
    IF v_next <> 'evaluating_results' THEN
        PERFORM tasker.move_task(p_task, 'evaluating_results', v_next);
    END IF;
    RETURN QUERY SELECT v_next, CASE WHEN v_next = 'enqueuing_steps' THEN v_ready
                                     ELSE '{}'::uuid[] END,
                        v_next IN ('evaluating_results', 'blocked_by_failures');
END
$$;

-- An operator action on one step: reset_for_retry, resolve_manually or complete_manually,
-- applied only from p_expected states, recorded with who and why.
CREATE OR REPLACE FUNCTION tasker.operator_step_action(
    p_task uuid, p_step uuid, p_action text, p_expected text[], p_result jsonb,
    p_actor text, p_reason text
) RETURNS TABLE (applied boolean, previous_state text, task_status text, ready_steps uuid[],
                 finalize boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    s record;
    v_target text := CASE p_action WHEN 'reset_for_retry' THEN 'pending'
                                   WHEN 'resolve_manually' THEN 'resolved_manually'
                                   ELSE 'complete' END;
    v_meta jsonb := jsonb_build_object('action', p_action, 'actor', p_actor, 'reason', p_reason);
BEGIN
    SELECT t.status INTO v_status FROM tasker.tasks t WHERE t.task_uuid = p_task FOR UPDATE;
    SELECT * INTO s FROM tasker.workflow_steps w
     WHERE w.step_uuid = p_step AND w.task_uuid = p_task FOR UPDATE;
    IF NOT FOUND OR v_status IS NULL OR s.state <> ALL (p_expected)
       OR v_status IN ('complete', 'cancelled', 'resolved_manually') THEN
        RETURN QUERY SELECT false, s.state, v_status, '{}'::uuid[], false;
        RETURN;
    END IF;
    UPDATE tasker.workflow_steps w SET
        state = v_target,
        attempts = CASE WHEN p_action = 'reset_for_retry' THEN 0 ELSE w.attempts END,
        next_retry_at = NULL,
        results = CASE WHEN p_action = 'complete_manually' THEN p_result ELSE w.results END,
        completed_at = CASE WHEN v_target = 'pending' THEN NULL ELSE clock_timestamp() END,
        transition_seq = w.transition_seq + 1,
        updated_at = clock_timestamp()
     WHERE w.step_uuid = p_step;
    PERFORM tasker.record_step_transition(p_step, p_task, s.state, v_target,
                                          s.transition_seq + 1, v_meta);
    INSERT INTO tasker.audit_log (task_uuid, step_uuid, action, actor, reason, details)
    VALUES (p_task, p_step, p_action, p_actor, p_reason,
            jsonb_build_object('from_state', s.state, 'to_state', v_target));
    RETURN QUERY SELECT true, s.state, r.task_status, r.ready_steps, r.finalize
                   FROM tasker.reevaluate_task(p_task, v_status) r;
END
$$;

-- Cancels a task: its waiting and enqueued steps are cancelled; an attempt already running
-- may still report, and its result is recorded without reviving anything.
CREATE OR REPLACE FUNCTION tasker.cancel_task(p_task uuid, p_actor text, p_reason text)
RETURNS TABLE (applied boolean, previous_status text)
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    s record;
    v_meta jsonb := jsonb_build_object('action', 'cancel', 'actor', p_actor, 'reason', p_reason);
BEGIN
    SELECT t.status INTO v_status FROM tasker.tasks t WHERE t.task_uuid = p_task FOR UPDATE;
    IF v_status IS NULL OR v_status IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN
        RETURN QUERY SELECT false, v_status;
        RETURN;
    END IF;
    FOR s IN SELECT w.step_uuid, w.state, w.transition_seq FROM tasker.workflow_steps w
              WHERE w.task_uuid = p_task
                AND w.state IN ('pending', 'enqueued', 'in_progress', 'waiting_for_retry')
              ORDER BY w.position FOR UPDATE
    LOOP
        UPDATE tasker.workflow_steps w SET state = 'cancelled',
               transition_seq = w.transition_seq + 1, updated_at = clock_timestamp()
         WHERE w.step_uuid = s.step_uuid;
        PERFORM tasker.record_step_transition(s.step_uuid, p_task, s.state, 'cancelled',
                                              s.transition_seq + 1, v_meta);
    END LOOP;
    PERFORM tasker.move_task(p_task, v_status, 'cancelled', v_meta);
    INSERT INTO tasker.audit_log (task_uuid, action, actor, reason, details)
    VALUES (p_task, 'cancel', p_actor, p_reason, jsonb_build_object('from_status', v_status));
    PERFORM pg_notify('tasker_task_finished', p_task::text || ':cancelled');
    RETURN QUERY SELECT true, v_status;
END
$$;

-- Tasks stuck in one state longer than their limits (template `lifecycle` overrides the
-- defaults, in minutes): waiting for dependencies, waiting for retry, steps in process.
CREATE OR REPLACE FUNCTION tasker.stale_tasks(
    p_dependencies_minutes double precision, p_retry_minutes double precision,
    p_in_process_minutes double precision, p_limit integer
) RETURNS TABLE (task_uuid uuid, status text, stuck_minutes double precision)
LANGUAGE sql STABLE AS $$
    SELECT t.task_uuid, t.status,
           extract(epoch FROM clock_timestamp() - t.updated_at) / 60.0
      FROM tasker.tasks t
      JOIN tasker.task_templates tt ON tt.template_uuid = t.template_uuid
     WHERE t.status IN ('waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process',
                        'enqueuing_steps', 'evaluating_results')
       AND t.updated_at < clock_timestamp() - make_interval(secs => 60 * CASE t.status
            WHEN 'waiting_for_dependencies' THEN coalesce(
                (tt.definition->'lifecycle'->>'max_waiting_for_dependencies_minutes')::float8,
                p_dependencies_minutes)
            WHEN 'waiting_for_retry' THEN coalesce(
                (tt.definition->'lifecycle'->>'max_waiting_for_retry_minutes')::float8,
                p_retry_minutes)
            ELSE coalesce(
                (tt.definition->'lifecycle'->>'max_steps_in_process_minutes')::float8,
                p_in_process_minutes)
            END)
     ORDER BY t.updated_at
     LIMIT p_limit
$$;

-- Fails a task found stale (if it still is: another orchestrator may have moved it).
CREATE OR REPLACE FUNCTION tasker.fail_stale_task(
    p_task uuid, p_expected_status text, p_entry uuid, p_details jsonb
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    SELECT t.status INTO v_status FROM tasker.tasks t WHERE t.task_uuid = p_task FOR UPDATE;
    IF v_status IS DISTINCT FROM p_expected_status THEN
        RETURN false;
    END IF;
    PERFORM tasker.move_task(p_task, v_status, 'error', p_details);
    PERFORM tasker.open_dlq_entry(p_entry, p_task, 'staleness', p_details);
    PERFORM pg_notify('tasker_task_finished', p_task::text || ':error');
    RETURN true;
END
$$;
