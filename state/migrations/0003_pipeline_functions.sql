-- The pipeline's hot path: create a task, claim ready steps, apply a step's result and
-- finalize a task. Each is one call, one round trip.

-- Creates a task with its steps and edges; idempotent on task_uuid (a redelivered request
-- is a no-op) and on identity_hash (a duplicate request gets the existing task). Returns
-- the root steps, which are ready at once.
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
        idempotency_key, identity_hash, total_steps, pending_steps)
    SELECT v_task, (p_task->>'template_uuid')::uuid, p_task->>'namespace', p_task->>'name',
           p_task->>'version', 'pending', coalesce(p_task->'context', '{}'),
           p_task->>'initiator', p_task->>'source_system', p_task->>'reason',
           coalesce(p_task->'tags', '[]'), coalesce((p_task->>'priority')::int, 0),
           p_task->>'correlation_id', p_task->>'idempotency_key', p_task->>'identity_hash',
           v_total, v_total
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

-- Claims the given steps that are still ready: each moves to enqueued with its attempt
-- and dispatch counted (the dispatch count is the fence a result must match). A claim
-- waits for a task another transaction holds (never skips it: the skipped steps would
-- wait for a sweep), then re-checks readiness, so racing claims enqueue a step once.
-- Returns what a worker needs to run each claimed step. p_published says whether the
-- message commits with this transaction (transactional broker) or is published after it.
CREATE OR REPLACE FUNCTION tasker.claim_steps(p_steps uuid[], p_published boolean)
RETURNS TABLE (step_uuid uuid, task_uuid uuid, name text, handler jsonb, attempt integer,
               max_attempts integer, retryable boolean, timeout_seconds double precision,
               namespace text, task_name text, task_version text, context jsonb,
               correlation_id text, dependency_results jsonb, fence integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_task record;
    v_step record;
BEGIN
    FOR v_task IN
        SELECT t.task_uuid, t.status FROM tasker.tasks t
         WHERE t.task_uuid IN (SELECT s.task_uuid FROM tasker.workflow_steps s
                                WHERE s.step_uuid = ANY (p_steps))
           AND t.status NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
           AND t.failed_steps = 0
         ORDER BY t.task_uuid
           FOR UPDATE
    LOOP
        FOR v_step IN
            SELECT s.step_uuid, s.state, s.attempts FROM tasker.workflow_steps s
             WHERE s.task_uuid = v_task.task_uuid AND s.step_uuid = ANY (p_steps)
               AND (s.state = 'pending'
                    OR (s.state = 'waiting_for_retry' AND s.next_retry_at <= clock_timestamp()))
               AND (s.attempts = 0 OR (s.retryable AND s.attempts < s.max_attempts))
               AND tasker.parents_satisfied(s.step_uuid)
             ORDER BY s.position
               FOR UPDATE
        LOOP
            UPDATE tasker.workflow_steps w
               SET state = 'enqueued', attempts = w.attempts + 1,
                   dispatch_count = w.dispatch_count + 1,
                   enqueued_at = clock_timestamp(), updated_at = clock_timestamp(),
                   published_at = CASE WHEN p_published THEN clock_timestamp() END,
                   transition_seq = w.transition_seq + 1
             WHERE w.step_uuid = v_step.step_uuid;
            PERFORM tasker.record_step_transition(
                v_step.step_uuid, v_task.task_uuid, v_step.state, 'enqueued',
                (SELECT w.transition_seq FROM tasker.workflow_steps w
                  WHERE w.step_uuid = v_step.step_uuid),
                jsonb_build_object('attempt', v_step.attempts + 1));
            RETURN QUERY
                SELECT w.step_uuid, w.task_uuid, w.name, w.handler, w.attempts, w.max_attempts,
                       w.retryable, w.timeout_seconds, t.namespace, t.name, t.version,
                       t.context, t.correlation_id, tasker.ancestor_results(w.step_uuid),
                       w.dispatch_count
                  FROM tasker.workflow_steps w JOIN tasker.tasks t USING (task_uuid)
                 WHERE w.step_uuid = v_step.step_uuid;
        END LOOP;
        IF v_task.status IN ('waiting_for_retry', 'waiting_for_dependencies') THEN
            PERFORM tasker.move_task(v_task.task_uuid, v_task.status, 'enqueuing_steps');
            v_task.status := 'enqueuing_steps';
        END IF;
        IF v_task.status IN ('enqueuing_steps') AND EXISTS (
            SELECT 1 FROM tasker.tasks t WHERE t.task_uuid = v_task.task_uuid
                                           AND t.in_flight_steps > 0) THEN
            PERFORM tasker.move_task(v_task.task_uuid, 'enqueuing_steps', 'steps_in_process');
        END IF;
    END LOOP;
END
$$;

-- The task's next state from its step counts, once a result has been applied.
CREATE OR REPLACE FUNCTION tasker.next_task_state(p_task uuid, p_has_ready boolean)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t record;
BEGIN
    SELECT failed_steps, in_flight_steps, done_steps, total_steps, retrying_steps INTO t
      FROM tasker.tasks WHERE task_uuid = p_task;
    RETURN CASE
        WHEN t.failed_steps > 0 AND t.in_flight_steps = 0 THEN 'blocked_by_failures'
        WHEN t.failed_steps > 0 THEN 'steps_in_process'
        WHEN p_has_ready THEN 'enqueuing_steps'
        WHEN t.in_flight_steps > 0 THEN 'steps_in_process'
        WHEN t.done_steps = t.total_steps THEN 'evaluating_results'
        WHEN t.retrying_steps > 0 THEN 'waiting_for_retry'
        ELSE 'waiting_for_dependencies'
    END;
END
$$;

-- Applies one dispatch's outcome, once: the step must be enqueued or in progress on exactly
-- dispatch p_fence; anything else is a duplicate or stale delivery and changes nothing.
-- Records enqueued -> in_progress -> enqueued[_as_error]_for_orchestration -> final, finds
-- the children the step made ready and moves the task, all in this one call.
CREATE OR REPLACE FUNCTION tasker.apply_step_result(
    p_step uuid, p_fence integer, p_success boolean, p_result jsonb, p_error jsonb,
    p_started timestamptz, p_finished timestamptz, p_worker text,
    p_jitter double precision, p_spread double precision
) RETURNS TABLE (outcome text, task_uuid uuid, step_state text, task_status text,
                 ready_steps uuid[], next_retry_at timestamptz, finalize boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_task uuid;
    v_status text;
    s record;
    v_seq integer;
    v_final text;
    v_handed text;
    v_retry_at timestamptz;
    v_ready uuid[] := '{}';
    v_next text;
    v_meta jsonb;
    v_requested numeric;
BEGIN
    SELECT w.task_uuid INTO v_task FROM tasker.workflow_steps w WHERE w.step_uuid = p_step;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_step'::text, NULL::uuid, NULL::text, NULL::text,
                            '{}'::uuid[], NULL::timestamptz, false;
        RETURN;
    END IF;
    SELECT t.status INTO v_status FROM tasker.tasks t WHERE t.task_uuid = v_task FOR UPDATE;
    SELECT * INTO s FROM tasker.workflow_steps w WHERE w.step_uuid = p_step FOR UPDATE;
    v_meta := jsonb_build_object('attempt', s.attempts, 'worker', p_worker);
    IF s.state = 'cancelled' AND s.dispatch_count = p_fence AND s.last_attempted_at IS NULL THEN
        -- The task was cancelled while this attempt ran: keep what it did, change nothing.
        UPDATE tasker.workflow_steps w SET
            results = CASE WHEN p_success THEN p_result ELSE w.results END,
            last_error = CASE WHEN p_success THEN w.last_error ELSE p_error END,
            last_attempted_at = p_started, updated_at = clock_timestamp()
         WHERE w.step_uuid = p_step;
        RETURN QUERY SELECT 'recorded_after_cancel'::text, v_task, s.state, v_status,
                            '{}'::uuid[], NULL::timestamptz, false;
        RETURN;
    END IF;
    IF s.dispatch_count <> p_fence OR s.state NOT IN ('enqueued', 'in_progress') THEN
        RETURN QUERY SELECT CASE WHEN s.dispatch_count = p_fence THEN 'duplicate' ELSE 'stale' END,
                            v_task, s.state, v_status, '{}'::uuid[], s.next_retry_at, false;
        RETURN;
    END IF;

    v_seq := s.transition_seq;
    IF s.state = 'enqueued' THEN
        v_seq := v_seq + 1;
        PERFORM tasker.record_step_transition(p_step, v_task, 'enqueued', 'in_progress', v_seq,
                                              v_meta, p_started);
    END IF;
    IF p_success THEN
        v_handed := 'enqueued_for_orchestration';
        v_final := 'complete';
    ELSE
        v_handed := 'enqueued_as_error_for_orchestration';
        IF s.retryable AND coalesce((p_error->>'retryable')::boolean, true)
           AND s.attempts < s.max_attempts THEN
            v_final := 'waiting_for_retry';
            -- Clamped to [0, cap] before the integer cast: a huge Retry-After (days, or an
            -- epoch timestamp) must wait the cap, not fail the whole result. (No request
            -- stays NULL: least/greatest would turn it into a bound.)
            v_requested := round((p_error->>'retry_after_seconds')::numeric * 1000);
            IF v_requested IS NOT NULL THEN
                v_requested := least(greatest(v_requested, 0), s.max_backoff_ms);
            END IF;
            v_retry_at := clock_timestamp() + make_interval(secs => tasker.backoff_delay_ms(
                s.backoff, s.backoff_base_ms, s.max_backoff_ms, s.attempts, p_jitter, p_spread,
                v_requested::integer) / 1000.0);
        ELSE
            v_final := 'error';
        END IF;
    END IF;
    PERFORM tasker.record_step_transition(p_step, v_task, 'in_progress', v_handed, v_seq + 1,
                                          v_meta, p_finished);
    PERFORM tasker.record_step_transition(p_step, v_task, v_handed, v_final, v_seq + 2,
                                          v_meta || jsonb_build_object('next_retry_at', v_retry_at));

    UPDATE tasker.workflow_steps w SET
        state = v_final,
        results = CASE WHEN p_success THEN p_result ELSE w.results END,
        last_error = CASE WHEN p_success THEN w.last_error ELSE p_error END,
        next_retry_at = v_retry_at,
        last_attempted_at = p_started,
        last_failure_at = CASE WHEN p_success THEN w.last_failure_at ELSE p_finished END,
        completed_at = CASE WHEN p_success THEN clock_timestamp() ELSE NULL END,
        transition_seq = v_seq + 2,
        updated_at = clock_timestamp()
     WHERE w.step_uuid = p_step;

    IF v_status IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN
        -- A late result is recorded but never resurrects a finished task.
        RETURN QUERY SELECT 'applied'::text, v_task, v_final, v_status, v_ready, v_retry_at, false;
        RETURN;
    END IF;

    IF v_final = 'complete' THEN
        SELECT coalesce(array_agg(c.step_uuid ORDER BY c.position), '{}') INTO v_ready
          FROM tasker.workflow_step_edges e
          JOIN tasker.workflow_steps c ON c.step_uuid = e.to_step_uuid
         WHERE e.from_step_uuid = p_step AND c.state = 'pending'
           AND tasker.parents_satisfied(c.step_uuid);
    END IF;
    v_next := tasker.next_task_state(v_task, cardinality(v_ready) > 0
                                            AND NOT EXISTS (SELECT 1 FROM tasker.tasks t
                                                 WHERE t.task_uuid = v_task AND t.failed_steps > 0));
    IF v_status <> 'evaluating_results' THEN
        PERFORM tasker.move_task(v_task, v_status, 'evaluating_results');
    END IF;
    IF v_next <> 'evaluating_results' THEN
        PERFORM tasker.move_task(v_task, 'evaluating_results', v_next);
    END IF;
    RETURN QUERY SELECT 'applied'::text, v_task, v_final, v_next,
                        CASE WHEN v_next = 'enqueuing_steps' THEN v_ready ELSE '{}'::uuid[] END,
                        v_retry_at, v_next IN ('evaluating_results', 'blocked_by_failures');
END
$$;

-- Finalizes a task whose steps are all done (-> complete) or that is blocked by failures
-- (-> error, with a dead-letter investigation record); anything else is left alone.
-- Announces the outcome to waiting clients. p_entry is the id for a new DLQ entry.
CREATE OR REPLACE FUNCTION tasker.finalize_task(p_task uuid, p_entry uuid)
RETURNS TABLE (finalized boolean, status text)
LANGUAGE plpgsql AS $$
DECLARE
    t record;
    v_target text;
BEGIN
    SELECT * INTO t FROM tasker.tasks WHERE task_uuid = p_task FOR UPDATE;
    IF NOT FOUND OR t.status IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN
        RETURN QUERY SELECT false, t.status;
        RETURN;
    END IF;
    IF t.done_steps = t.total_steps THEN
        v_target := 'complete';
    ELSIF t.failed_steps > 0 AND t.in_flight_steps = 0 THEN
        v_target := 'error';
    ELSE
        RETURN QUERY SELECT false, t.status;
        RETURN;
    END IF;
    IF v_target = 'complete' AND t.status <> 'evaluating_results' THEN
        PERFORM tasker.move_task(p_task, t.status, 'evaluating_results');
        t.status := 'evaluating_results';
    END IF;
    IF v_target = 'error' AND t.status <> 'blocked_by_failures' THEN
        IF t.status <> 'evaluating_results' THEN
            PERFORM tasker.move_task(p_task, t.status, 'evaluating_results');
        END IF;
        PERFORM tasker.move_task(p_task, 'evaluating_results', 'blocked_by_failures');
        t.status := 'blocked_by_failures';
    END IF;
    PERFORM tasker.move_task(p_task, t.status, v_target);
    IF v_target = 'error' THEN
        PERFORM tasker.open_dlq_entry(p_entry, p_task, tasker.failure_reason(p_task), '{}');
    END IF;
    PERFORM pg_notify('tasker_task_finished', p_task::text || ':' || v_target);
    RETURN QUERY SELECT true, v_target;
END
$$;

-- The step message a worker needs, for steps already claimed (used to re-publish).
CREATE OR REPLACE FUNCTION tasker.step_payloads(p_steps uuid[])
RETURNS TABLE (step_uuid uuid, task_uuid uuid, name text, handler jsonb, attempt integer,
               max_attempts integer, retryable boolean, timeout_seconds double precision,
               namespace text, task_name text, task_version text, context jsonb,
               correlation_id text, dependency_results jsonb, fence integer)
LANGUAGE sql STABLE AS $$
    SELECT w.step_uuid, w.task_uuid, w.name, w.handler, w.attempts, w.max_attempts,
           w.retryable, w.timeout_seconds, t.namespace, t.name, t.version, t.context,
           t.correlation_id, tasker.ancestor_results(w.step_uuid), w.dispatch_count
      FROM tasker.workflow_steps w JOIN tasker.tasks t USING (task_uuid)
     WHERE w.step_uuid = ANY (p_steps)
     ORDER BY w.task_uuid, w.position
$$;

-- Enqueued steps whose publish was never confirmed within the window (a crash between
-- commit and confirm): restart their window and return their messages to send again.
-- The attempt is unchanged, so a duplicate delivery meets the result fence.
CREATE OR REPLACE FUNCTION tasker.take_unpublished_steps(p_older_than_seconds double precision,
                                                         p_limit integer)
RETURNS SETOF uuid
LANGUAGE sql AS $$
    UPDATE tasker.workflow_steps w SET enqueued_at = clock_timestamp()
     WHERE w.step_uuid IN (
        SELECT s.step_uuid FROM tasker.workflow_steps s
         WHERE s.state = 'enqueued' AND s.published_at IS NULL
           AND s.enqueued_at < clock_timestamp() - make_interval(secs => p_older_than_seconds)
         ORDER BY s.enqueued_at LIMIT p_limit
           FOR UPDATE SKIP LOCKED)
    RETURNING w.step_uuid
$$;
