-- Fewer statements per step on the hot path (issue 8). Same transitions, same history
-- rows, same results: a run of transitions is written with one UPDATE of the current row,
-- one UPDATE clearing the previous most_recent flag and one multi-row INSERT, instead of
-- those three statements per transition; and a claim of steps outside any batch skips the
-- batch machinery.

-- Moves a task the caller has locked and whose current state (p_from) it has checked
-- through each state of p_path in turn, recording one transition per step of the path.
CREATE OR REPLACE FUNCTION tasker.move_task_through(
    p_task uuid, p_from text, p_path text[], p_metadata jsonb DEFAULT '{}'
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_last text := p_path[cardinality(p_path)];
    v_seq integer;
    v_at timestamptz := clock_timestamp();
BEGIN
    UPDATE tasker.tasks SET
        status = v_last,
        transition_seq = transition_seq + cardinality(p_path),
        updated_at = v_at,
        completed_at = CASE WHEN v_last IN ('complete', 'error', 'cancelled', 'resolved_manually')
                            THEN v_at ELSE completed_at END
     WHERE task_uuid = p_task
    RETURNING transition_seq INTO v_seq;
    UPDATE tasker.task_transitions SET most_recent = false WHERE task_uuid = p_task AND most_recent;
    INSERT INTO tasker.task_transitions
        (task_uuid, from_state, to_state, metadata, sort_key, most_recent, created_at)
    SELECT p_task, coalesce(p_path[i - 1], p_from), p_path[i], coalesce(p_metadata, '{}'),
           v_seq - cardinality(p_path) + i, i = cardinality(p_path), v_at
      FROM generate_subscripts(p_path, 1) AS i;
END
$$;

-- REDEFINES tasker.move_task of 0002 (same signature, same rows): a path of one.
CREATE OR REPLACE FUNCTION tasker.move_task(
    p_task uuid, p_from text, p_to text, p_metadata jsonb DEFAULT '{}'
) RETURNS void
LANGUAGE sql AS $$
    SELECT tasker.move_task_through(p_task, p_from, ARRAY[p_to], p_metadata)
$$;

-- Records transitions of a step (the caller has updated the step row): p_path[i] entered
-- at p_at[i] (NULL: now) with p_metadata[i], sort keys from p_first_seq on.
CREATE OR REPLACE FUNCTION tasker.record_step_transitions(
    p_step uuid, p_task uuid, p_from text, p_path text[], p_first_seq integer,
    p_metadata jsonb[], p_at timestamptz[]
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasker.workflow_step_transitions SET most_recent = false
     WHERE step_uuid = p_step AND most_recent;
    INSERT INTO tasker.workflow_step_transitions
        (step_uuid, task_uuid, from_state, to_state, metadata, sort_key, most_recent, created_at)
    SELECT p_step, p_task, coalesce(p_path[i - 1], p_from), p_path[i],
           coalesce(p_metadata[i], '{}'), p_first_seq + i - 1, i = cardinality(p_path),
           coalesce(p_at[i], clock_timestamp())
      FROM generate_subscripts(p_path, 1) AS i;
END
$$;

-- REDEFINES tasker.apply_step_result of 0003 (same signature, same outcome, same history):
-- the step's two or three transitions in one call, the task's two moves in one call.
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
    v_next := tasker.next_task_state(v_task, cardinality(v_ready) > 0
                                            AND NOT EXISTS (SELECT 1 FROM tasker.tasks t
                                                 WHERE t.task_uuid = v_task AND t.failed_steps > 0));
    v_path := CASE WHEN v_status = 'evaluating_results' THEN '{}'::text[]
                   ELSE ARRAY['evaluating_results'] END;
    IF v_next <> 'evaluating_results' THEN
        v_path := v_path || v_next;
    END IF;
    IF cardinality(v_path) > 0 THEN
        PERFORM tasker.move_task_through(v_task, v_status, v_path);
    END IF;
    RETURN QUERY SELECT 'applied'::text, v_task, v_final, v_next,
                        CASE WHEN v_next = 'enqueuing_steps' THEN v_ready ELSE '{}'::uuid[] END,
                        v_retry_at, v_next IN ('evaluating_results', 'blocked_by_failures');
END
$$;

-- 0006's claim_for_dispatch, unchanged, serves steps that include batch workers: batch
-- parallelism, and continue_on_failure workers claimed despite failures.
ALTER FUNCTION tasker.claim_for_dispatch(uuid[], boolean) RENAME TO claim_batch_aware;

-- REDEFINES tasker.claim_for_dispatch of 0006 (same signature, same result): steps outside
-- any batch (the common case) go straight to claim_steps; batch parallelism and
-- continue_on_failure workers are looked at only when a batch worker is among the steps.
CREATE OR REPLACE FUNCTION tasker.claim_for_dispatch(p_steps uuid[], p_published boolean)
RETURNS TABLE (step_uuid uuid, task_uuid uuid, name text, handler jsonb, attempt integer,
               max_attempts integer, retryable boolean, timeout_seconds double precision,
               namespace text, task_name text, task_version text, context jsonb,
               correlation_id text, dependency_results jsonb, fence integer,
               inputs jsonb, checkpoint jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM tasker.workflow_steps s
                WHERE s.step_uuid = ANY (p_steps) AND s.batch_step_uuid IS NOT NULL) THEN
        RETURN QUERY SELECT * FROM tasker.claim_batch_aware(p_steps, p_published);
        RETURN;
    END IF;
    RETURN QUERY
        SELECT c.step_uuid, c.task_uuid, c.name, c.handler, c.attempt, c.max_attempts,
               c.retryable, c.timeout_seconds, c.namespace, c.task_name, c.task_version,
               c.context, c.correlation_id, c.dependency_results, c.fence, w.inputs, w.checkpoint
          FROM tasker.claim_steps(p_steps, p_published) c
          JOIN tasker.workflow_steps w ON w.step_uuid = c.step_uuid;
END
$$;

-- A set-returning function is estimated at 1,000 rows unless told otherwise. Joined with
-- workflow_steps, that planned a hash join over a sequential scan of every step in the
-- table: each claim cost O(all steps ever created), which under sustained load made the
-- claim the slowest statement of the pipeline. A claim returns a handful of rows.
ALTER FUNCTION tasker.claim_steps(uuid[], boolean) ROWS 10;
ALTER FUNCTION tasker.step_payloads(uuid[]) ROWS 10;
ALTER FUNCTION tasker.claim_batch_aware(uuid[], boolean) ROWS 10;
ALTER FUNCTION tasker.claim_for_dispatch(uuid[], boolean) ROWS 10;

-- Plans made on an empty database must stay right when it is large. PL/pgSQL caches a
-- generic plan per statement; one made while tables held a page or two chose sequential
-- scans (cheapest then) and kept them: on a fresh install, the claim's task lookup became
-- a nested loop of two sequential scans, O(tasks x steps) per claim, until a reconnect.
-- Every statement on the hot path looks rows up by key, so its functions forbid sequential
-- scans where an index serves. Left out: the sweeps that scan by design, and pure helpers
-- that run no queries. A function redefined later loses this setting: it must be set again
-- (tests/integration/test_plan_stability.py checks every function).
DO $$
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
