-- Fewer writes per transition (issue 8). Every move cleared the previous history row's
-- most_recent flag before adding its own: an UPDATE of a row already written (a new
-- tuple and new entries in both of the table's other indexes, as the flag is in a
-- partial index's predicate), two per step and one per task move. The owner already
-- knows its current row: its transition_seq is the sort key of the last transition
-- recorded, moved in the same statement that records it. So history rows are now only
-- inserted, and "most recent" is read as sort_key = the owner's transition_seq (one row
-- per owner, as UNIQUE (owner, sort_key) holds).

-- And a new task's parent counts are written with its steps. Its edges' INSERT fired
-- a trigger that joined them back to the steps and updated every child row again to add
-- its unsatisfied parents: one more write of each new step with a parent (three of a
-- 4-step line), on the creation path the API waits for. create_task now counts each
-- step's edges into the step's own INSERT and tells the trigger, for its one INSERT of
-- edges, that the count is done; edges added any other way (dynamic steps) are counted
-- by the trigger as before.

-- REDEFINES tasker.move_task_through of 0008 (same signature, same rows less the flag).
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
    INSERT INTO tasker.task_transitions
        (task_uuid, from_state, to_state, metadata, sort_key, created_at)
    SELECT p_task, coalesce(p_path[i - 1], p_from), p_path[i], coalesce(p_metadata, '{}'),
           v_seq - cardinality(p_path) + i, v_at
      FROM generate_subscripts(p_path, 1) AS i;
END
$$;

-- REDEFINES tasker.record_step_transitions of 0008 (same signature, same rows less the
-- flag). The caller has moved the step's transition_seq to the last of these rows.
CREATE OR REPLACE FUNCTION tasker.record_step_transitions(
    p_step uuid, p_task uuid, p_from text, p_path text[], p_first_seq integer,
    p_metadata jsonb[], p_at timestamptz[]
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tasker.workflow_step_transitions
        (step_uuid, task_uuid, from_state, to_state, metadata, sort_key, created_at)
    SELECT p_step, p_task, coalesce(p_path[i - 1], p_from), p_path[i],
           coalesce(p_metadata[i], '{}'), p_first_seq + i - 1,
           coalesce(p_at[i], clock_timestamp())
      FROM generate_subscripts(p_path, 1) AS i;
END
$$;

-- REDEFINES tasker.record_step_transition of 0002 (same signature, same row less the flag).
CREATE OR REPLACE FUNCTION tasker.record_step_transition(
    p_step uuid, p_task uuid, p_from text, p_to text, p_seq integer, p_metadata jsonb,
    p_at timestamptz DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tasker.workflow_step_transitions
        (step_uuid, task_uuid, from_state, to_state, metadata, sort_key, created_at)
    VALUES (p_step, p_task, p_from, p_to, coalesce(p_metadata, '{}'), p_seq,
            coalesce(p_at, clock_timestamp()));
END
$$;

-- REDEFINES tasker.count_new_edges of 0006 (same effect, except where told the count is
-- done: a transaction-local setting, set only around create_task's INSERT of edges).
CREATE OR REPLACE FUNCTION tasker.count_new_edges() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('tasker.parents_counted', true) = 'on' THEN
        RETURN NULL;
    END IF;
    UPDATE tasker.workflow_steps c SET pending_parents = c.pending_parents + n.unsatisfied
      FROM (SELECT e.to_step_uuid, count(*) AS unsatisfied
              FROM new_edges e
              JOIN tasker.workflow_steps p ON p.step_uuid = e.from_step_uuid
             WHERE p.state NOT IN ('complete', 'resolved_manually')
             GROUP BY e.to_step_uuid) n
     WHERE c.step_uuid = n.to_step_uuid;
    RETURN NULL;
END
$$;

-- REDEFINES tasker.create_task of 0010 (same signature, same rows less the flag; the
-- parent counts in the steps' INSERT, see above).
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

    -- Every parent of a new step is new too, so not yet satisfied: a step's count of
    -- pending parents is its number of edges, written with it.
    INSERT INTO tasker.workflow_steps (step_uuid, task_uuid, name, position, step_type,
        handler, retryable, max_attempts, backoff, backoff_base_ms, max_backoff_ms,
        timeout_seconds, pending_parents)
    SELECT s.step_uuid, v_task, s.name, s.position, s.step_type, s.handler, s.retryable,
           s.max_attempts, s.backoff, s.backoff_base_ms, s.max_backoff_ms, s.timeout_seconds,
           coalesce(n.parents, 0)
      FROM jsonb_to_recordset(p_steps) AS s(step_uuid uuid, name text, position integer,
           step_type text, handler jsonb, retryable boolean, max_attempts integer,
           backoff text, backoff_base_ms integer, max_backoff_ms integer,
           timeout_seconds double precision)
      LEFT JOIN (SELECT e.to_step_uuid, count(*) AS parents
                   FROM jsonb_to_recordset(p_edges) AS e(to_step_uuid uuid)
                  GROUP BY e.to_step_uuid) n ON n.to_step_uuid = s.step_uuid;

    PERFORM set_config('tasker.parents_counted', 'on', true);
    INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid, task_uuid)
    SELECT e.from_step_uuid, e.to_step_uuid, v_task
      FROM jsonb_to_recordset(p_edges) AS e(from_step_uuid uuid, to_step_uuid uuid);
    PERFORM set_config('tasker.parents_counted', 'off', true);

    SELECT coalesce(array_agg(s.step_uuid ORDER BY s.position), '{}') INTO v_ready
      FROM jsonb_to_recordset(p_steps) AS s(step_uuid uuid, position integer)
     WHERE NOT EXISTS (SELECT 1 FROM jsonb_to_recordset(p_edges) AS e(to_step_uuid uuid)
                        WHERE e.to_step_uuid = s.step_uuid);

    INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, metadata, sort_key)
    VALUES (v_task, NULL, 'pending', '{}', 0),
           (v_task, 'pending', 'initializing', '{}', 1),
           (v_task, 'initializing', v_status,
            CASE WHEN v_total = 0 THEN '{}'::jsonb
                 ELSE jsonb_build_object('ready_steps', cardinality(v_ready)) END, 2);
    RETURN QUERY SELECT true, v_task, v_status, v_ready;
END
$$;

DROP INDEX tasker.task_transitions_most_recent_idx;
DROP INDEX tasker.step_transitions_most_recent_idx;
ALTER TABLE tasker.task_transitions DROP COLUMN most_recent;
ALTER TABLE tasker.workflow_step_transitions DROP COLUMN most_recent;

SELECT tasker.pin_lookup_plans();
