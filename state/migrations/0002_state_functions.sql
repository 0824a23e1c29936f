-- Server-side functions: each hot-path operation is one round trip, with guarded
-- (compare-and-swap) transitions and append-only history rows in the same transaction.
-- Lock order everywhere: the task row first, then its step rows (no deadlocks).

CREATE OR REPLACE FUNCTION tasker.step_bucket(p_state text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_state = 'pending' THEN 'pending'
        WHEN p_state IN ('complete', 'resolved_manually') THEN 'done'
        WHEN p_state = 'error' THEN 'failed'
        WHEN p_state = 'waiting_for_retry' THEN 'retrying'
        WHEN p_state = 'cancelled' THEN 'cancelled'
        ELSE 'in_flight'
    END
$$;

-- Keeps a task's step counts current so finalization reads one row, never scans steps.
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
        cancelled_steps = cancelled_steps + (v_new = 'cancelled')::int - (v_old = 'cancelled')::int
    WHERE task_uuid = NEW.task_uuid;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS workflow_steps_count_states ON tasker.workflow_steps;
CREATE TRIGGER workflow_steps_count_states
    AFTER UPDATE OF state ON tasker.workflow_steps
    FOR EACH ROW EXECUTE FUNCTION tasker.count_step_states();

CREATE OR REPLACE FUNCTION tasker.record_step_transition(
    p_step uuid, p_task uuid, p_from text, p_to text, p_seq integer, p_metadata jsonb,
    p_at timestamptz DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasker.workflow_step_transitions SET most_recent = false
     WHERE step_uuid = p_step AND most_recent;
    INSERT INTO tasker.workflow_step_transitions
        (step_uuid, task_uuid, from_state, to_state, metadata, sort_key, most_recent, created_at)
    VALUES (p_step, p_task, p_from, p_to, coalesce(p_metadata, '{}'), p_seq, true,
            coalesce(p_at, clock_timestamp()));
END
$$;

-- Moves a task the caller has locked and whose current state it has checked.
CREATE OR REPLACE FUNCTION tasker.move_task(
    p_task uuid, p_from text, p_to text, p_metadata jsonb DEFAULT '{}'
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_seq integer;
BEGIN
    UPDATE tasker.tasks SET
        status = p_to,
        transition_seq = transition_seq + 1,
        updated_at = clock_timestamp(),
        completed_at = CASE WHEN p_to IN ('complete', 'error', 'cancelled', 'resolved_manually')
                            THEN clock_timestamp() ELSE completed_at END
     WHERE task_uuid = p_task
    RETURNING transition_seq INTO v_seq;
    UPDATE tasker.task_transitions SET most_recent = false WHERE task_uuid = p_task AND most_recent;
    INSERT INTO tasker.task_transitions
        (task_uuid, from_state, to_state, metadata, sort_key, most_recent, created_at)
    VALUES (p_task, p_from, p_to, coalesce(p_metadata, '{}'), v_seq, true, clock_timestamp());
END
$$;

-- Guarded task transition: applied only from one of p_expected; reports the actual state.
CREATE OR REPLACE FUNCTION tasker.transition_task(
    p_task uuid, p_expected text[], p_to text, p_metadata jsonb DEFAULT '{}'
) RETURNS TABLE (applied boolean, actual_state text)
LANGUAGE plpgsql AS $$
DECLARE
    v_current text;
BEGIN
    SELECT status INTO v_current FROM tasker.tasks WHERE task_uuid = p_task FOR UPDATE;
    IF NOT FOUND OR v_current <> ALL (p_expected) THEN
        RETURN QUERY SELECT false, v_current;
        RETURN;
    END IF;
    PERFORM tasker.move_task(p_task, v_current, p_to, p_metadata);
    RETURN QUERY SELECT true, v_current;
END
$$;

-- Guarded step transition: applied only from one of p_expected; reports the actual state.
CREATE OR REPLACE FUNCTION tasker.transition_step(
    p_step uuid, p_expected text[], p_to text, p_metadata jsonb DEFAULT '{}'
) RETURNS TABLE (applied boolean, actual_state text)
LANGUAGE plpgsql AS $$
DECLARE
    v_task uuid;
    v_current text;
    v_seq integer;
BEGIN
    SELECT task_uuid INTO v_task FROM tasker.workflow_steps WHERE step_uuid = p_step;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::text;
        RETURN;
    END IF;
    PERFORM 1 FROM tasker.tasks WHERE task_uuid = v_task FOR UPDATE;
    SELECT state INTO v_current FROM tasker.workflow_steps WHERE step_uuid = p_step FOR UPDATE;
    IF v_current <> ALL (p_expected) THEN
        RETURN QUERY SELECT false, v_current;
        RETURN;
    END IF;
    UPDATE tasker.workflow_steps
       SET state = p_to, transition_seq = transition_seq + 1, updated_at = clock_timestamp()
     WHERE step_uuid = p_step
    RETURNING transition_seq INTO v_seq;
    PERFORM tasker.record_step_transition(p_step, v_task, v_current, p_to, v_seq, p_metadata);
    RETURN QUERY SELECT true, v_current;
END
$$;

-- Mirror of state/backoff.py (a test keeps the two equal).
CREATE OR REPLACE FUNCTION tasker.backoff_delay_ms(
    p_kind text, p_base_ms integer, p_max_ms integer, p_attempt integer,
    p_jitter double precision, p_spread double precision, p_requested_ms integer
) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_delay numeric;
    v_prev numeric := 0;
    v_cur numeric := 1;
    v_next numeric;
BEGIN
    IF p_requested_ms IS NOT NULL THEN
        RETURN greatest(0, least(p_requested_ms, p_max_ms));
    END IF;
    IF p_kind = 'none' THEN
        v_delay := 0;
    ELSIF p_kind = 'linear' THEN
        v_delay := p_base_ms::numeric * p_attempt;
    ELSIF p_kind = 'fibonacci' THEN
        FOR i IN 2..p_attempt LOOP
            v_next := v_prev + v_cur;
            v_prev := v_cur;
            v_cur := v_next;
        END LOOP;
        v_delay := p_base_ms::numeric * v_cur;
    ELSE
        v_delay := p_base_ms::numeric * power(2::numeric, least(p_attempt - 1, 40));
    END IF;
    v_delay := least(v_delay, p_max_ms);
    -- Jitter in float8, operation for operation as Python does it (IEEE doubles both), so
    -- the two truncate alike; numeric would round differently at the boundaries.
    RETURN trunc(v_delay::float8 - v_delay::float8 * p_jitter * p_spread)::bigint;
END
$$;

-- These helpers are plpgsql, not LANGUAGE sql: PostgreSQL re-plans a non-inlined SQL
-- function on every call, while plpgsql caches its plans per session (measured: 0.8 ms vs
-- well under 0.1 ms per call).

-- Results of every completed (or manually resolved) transitive ancestor, by step name.
CREATE OR REPLACE FUNCTION tasker.ancestor_results(p_step uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_results jsonb;
BEGIN
    WITH RECURSIVE ancestors(step_uuid) AS (
        SELECT e.from_step_uuid FROM tasker.workflow_step_edges e WHERE e.to_step_uuid = p_step
        UNION
        SELECT e.from_step_uuid
          FROM tasker.workflow_step_edges e JOIN ancestors a ON e.to_step_uuid = a.step_uuid
    )
    SELECT coalesce(jsonb_object_agg(s.name, s.results), '{}') INTO v_results
      FROM ancestors a JOIN tasker.workflow_steps s ON s.step_uuid = a.step_uuid
     WHERE s.state IN ('complete', 'resolved_manually');
    RETURN v_results;
END
$$;

-- Whether every parent of a step lets it run.
CREATE OR REPLACE FUNCTION tasker.parents_satisfied(p_step uuid) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN NOT EXISTS (
        SELECT 1
          FROM tasker.workflow_step_edges e
          JOIN tasker.workflow_steps p ON p.step_uuid = e.from_step_uuid
         WHERE e.to_step_uuid = p_step
           AND p.state NOT IN ('complete', 'resolved_manually')
    );
END
$$;
