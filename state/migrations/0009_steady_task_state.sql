-- Fewer task writes per step (issue 8). A result that makes more steps ready while the
-- task is in process left the task where it started, by way of three recorded moves:
-- steps_in_process -> evaluating_results -> enqueuing_steps (apply) -> steps_in_process
-- (the claim in the same transaction). Each move updated the task row, cleared a
-- most_recent flag and added a history row: a third of the state writes of a step, to
-- record no change. The task now stays in steps_in_process; the step history still
-- records every step of the way.

-- Progress is no longer marked by task moves alone: a task whose steps keep finishing is
-- not stuck, so every change of a step's bucket stamps the task (staleness reads it).
CREATE OR REPLACE FUNCTION tasker.count_step_states() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_old text := tasker.step_bucket(OLD.state);
    v_new text := tasker.step_bucket(NEW.state);
BEGIN
    IF v_old = v_new THEN
        RETURN NULL;
    END IF;
    UPDATE tasker.tasks SET
        pending_steps   = pending_steps   + (v_new = 'pending')::int   - (v_old = 'pending')::int,
        in_flight_steps = in_flight_steps + (v_new = 'in_flight')::int - (v_old = 'in_flight')::int,
        retrying_steps  = retrying_steps  + (v_new = 'retrying')::int  - (v_old = 'retrying')::int,
        done_steps      = done_steps      + (v_new = 'done')::int      - (v_old = 'done')::int,
        failed_steps    = failed_steps    + (v_new = 'failed')::int    - (v_old = 'failed')::int,
        cancelled_steps = cancelled_steps + (v_new = 'cancelled')::int - (v_old = 'cancelled')::int,
        updated_at      = clock_timestamp()
    WHERE task_uuid = NEW.task_uuid;
    RETURN NULL;
END
$$;

-- The task move that follows an applied result: none when the task is in process and
-- stays so (the steps made ready are claimed in the caller's transaction); otherwise by
-- way of evaluating_results, as before. Returns the task's state after the move.
CREATE OR REPLACE FUNCTION tasker.move_task_after_result(
    p_task uuid, p_status text, p_next text
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_path text[];
BEGIN
    IF p_status = 'steps_in_process' AND p_next IN ('steps_in_process', 'enqueuing_steps') THEN
        RETURN 'steps_in_process';
    END IF;
    v_path := CASE WHEN p_status = 'evaluating_results' THEN '{}'::text[]
                   ELSE ARRAY['evaluating_results'] END;
    IF p_next <> 'evaluating_results' THEN
        v_path := v_path || p_next;
    END IF;
    IF cardinality(v_path) > 0 THEN
        PERFORM tasker.move_task_through(p_task, p_status, v_path);
    END IF;
    RETURN p_next;
END
$$;

-- REDEFINES tasker.apply_step_result of 0008 (same signature): the task moves through
-- move_task_after_result, so a task in process stays there (its returned status says so;
-- the steps made ready are returned all the same).
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
    v_final text;
    v_handed text;
    v_retry_at timestamptz;
    v_ready uuid[] := '{}';
    v_next text;
    v_meta jsonb;
    v_requested numeric;
    v_path text[];
    v_at timestamptz[];
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
    v_path := ARRAY['in_progress', v_handed, v_final];
    v_at := ARRAY[p_started, p_finished, NULL];
    IF s.state = 'in_progress' THEN  -- in progress already: its entry is on record
        v_path := v_path[2:3];
        v_at := v_at[2:3];
    END IF;
    PERFORM tasker.record_step_transitions(
        p_step, v_task, s.state, v_path, s.transition_seq + 1,
        array_fill(v_meta, ARRAY[cardinality(v_path) - 1])
            || (v_meta || jsonb_build_object('next_retry_at', v_retry_at)),
        v_at);

    UPDATE tasker.workflow_steps w SET
        state = v_final,
        results = CASE WHEN p_success THEN p_result ELSE w.results END,
        last_error = CASE WHEN p_success THEN w.last_error ELSE p_error END,
        next_retry_at = v_retry_at,
        last_attempted_at = p_started,
        last_failure_at = CASE WHEN p_success THEN w.last_failure_at ELSE p_finished END,
        completed_at = CASE WHEN p_success THEN clock_timestamp() ELSE NULL END,
        transition_seq = s.transition_seq + cardinality(v_path),
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
         WHERE e.from_step_uuid = p_step AND c.state = 'pending' AND c.pending_parents = 0;
    END IF;
    -- (next_task_state puts failed steps before ready ones: no check of its own here)
    v_next := tasker.next_task_state(v_task, cardinality(v_ready) > 0);
    v_status := tasker.move_task_after_result(v_task, v_status, v_next);
    RETURN QUERY SELECT 'applied'::text, v_task, v_final, v_status,
                        CASE WHEN v_next = 'enqueuing_steps' THEN v_ready ELSE '{}'::uuid[] END,
                        v_retry_at, v_next IN ('evaluating_results', 'blocked_by_failures');
END
$$;

-- Re-pins index plans on every lookup function, as 0008 did: CREATE OR REPLACE drops a
-- function's settings. Later migrations that redefine functions call this again.
CREATE OR REPLACE FUNCTION tasker.pin_lookup_plans() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p
         WHERE p.pronamespace = 'tasker'::regnamespace
           AND p.proname NOT IN ('stale_tasks', 'take_unpublished_steps', 'backoff_delay_ms',
                                 'step_bucket', 'next_checkpoint')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET enable_seqscan = off', f);
    END LOOP;
END
$$;
SELECT tasker.pin_lookup_plans();

-- The engine's connections now plan for lookups (state/db.py); the sweeps that scan by
-- design keep the planner's own choice.
ALTER FUNCTION tasker.stale_tasks(double precision, double precision, double precision, integer)
    SET enable_seqscan = on;
ALTER FUNCTION tasker.take_unpublished_steps(double precision, integer) SET enable_seqscan = on;
