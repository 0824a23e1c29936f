-- Dynamic steps: steps created at runtime by decision and batchable outcomes, batch worker
-- instances bounded by their batch's parallelism, and checkpoints of long batch workers.
-- New functions, plus two redefinitions of 0002 helpers for linear fan-in/fan-out cost:
-- parents_satisfied reads a kept count, ancestor_results walks edges by index.

-- template_step: the template step an instance was made from (`process_batch` for
-- `process_batch_003`); NULL means the step's own name. inputs: what this instance alone
-- receives (a batch worker's cursor). checkpoint: the last progress a worker yielded.
ALTER TABLE tasker.workflow_steps
    ADD COLUMN IF NOT EXISTS template_step   text,
    ADD COLUMN IF NOT EXISTS inputs          jsonb,
    ADD COLUMN IF NOT EXISTS checkpoint      jsonb,
    ADD COLUMN IF NOT EXISTS batch_step_uuid uuid;
CREATE INDEX IF NOT EXISTS steps_batch_idx ON tasker.workflow_steps (batch_step_uuid)
    WHERE batch_step_uuid IS NOT NULL;

-- Fan-in readiness in O(1): each step counts its parents that are not complete (or
-- resolved). The old parents_satisfied scanned every parent, so a step joining N parents
-- cost O(N) per parent result, O(N^2) per task (a 5,000-step fan-in took minutes).
-- Triggers keep the count: edges inserted add their unsatisfied parents; a parent entering
-- (or leaving) a satisfying state updates its children, O(children) once per parent.
ALTER TABLE tasker.workflow_steps
    ADD COLUMN IF NOT EXISTS pending_parents integer NOT NULL DEFAULT 0;

UPDATE tasker.workflow_steps s SET pending_parents = x.unsatisfied
  FROM (SELECT e.to_step_uuid, count(*) AS unsatisfied
          FROM tasker.workflow_step_edges e
          JOIN tasker.workflow_steps p ON p.step_uuid = e.from_step_uuid
         WHERE p.state NOT IN ('complete', 'resolved_manually')
         GROUP BY e.to_step_uuid) x
 WHERE s.step_uuid = x.to_step_uuid;

CREATE OR REPLACE FUNCTION tasker.count_new_edges() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
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

DROP TRIGGER IF EXISTS workflow_step_edges_count_parents ON tasker.workflow_step_edges;
CREATE TRIGGER workflow_step_edges_count_parents
    AFTER INSERT ON tasker.workflow_step_edges
    REFERENCING NEW TABLE AS new_edges
    FOR EACH STATEMENT EXECUTE FUNCTION tasker.count_new_edges();

CREATE OR REPLACE FUNCTION tasker.count_satisfied_parent() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_was boolean := OLD.state IN ('complete', 'resolved_manually');
    v_is boolean := NEW.state IN ('complete', 'resolved_manually');
BEGIN
    IF v_was = v_is THEN
        RETURN NULL;
    END IF;
    UPDATE tasker.workflow_steps c
       SET pending_parents = c.pending_parents + CASE WHEN v_is THEN -1 ELSE 1 END
      FROM tasker.workflow_step_edges e
     WHERE e.from_step_uuid = NEW.step_uuid AND c.step_uuid = e.to_step_uuid;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS workflow_steps_count_parents ON tasker.workflow_steps;
CREATE TRIGGER workflow_steps_count_parents
    AFTER UPDATE OF state ON tasker.workflow_steps
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION tasker.count_satisfied_parent();

-- REDEFINES tasker.parents_satisfied of 0002 (same signature, same meaning): read the
-- kept count instead of scanning the parents.
CREATE OR REPLACE FUNCTION tasker.parents_satisfied(p_step uuid) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce(
        (SELECT s.pending_parents = 0 FROM tasker.workflow_steps s WHERE s.step_uuid = p_step),
        true);
END
$$;

-- A step's parents, one index lookup. Not inlined (plpgsql), so the planner takes its
-- ROWS estimate: see ancestor_results.
CREATE OR REPLACE FUNCTION tasker.parents_of(p_step uuid) RETURNS SETOF uuid
LANGUAGE plpgsql STABLE ROWS 2 AS $$
BEGIN
    RETURN QUERY SELECT e.from_step_uuid FROM tasker.workflow_step_edges e
                  WHERE e.to_step_uuid = p_step;
END
$$;

-- REDEFINES tasker.ancestor_results of 0002 (same signature, same result). Without fresh
-- statistics its generic plan guessed 50 parents per step, so the recursion was estimated
-- at ~250,000 rows: a UNION hash table sized for that on every call, JIT compilation, and
-- a sequential scan of workflow_steps (every task's steps) for the results. 3-20 ms per
-- claimed step with 5,000 steps in the table: claiming N steps cost O(N x table). Here
-- each hop is `parents_of` (estimated 2 rows) and the results are read by primary key.
CREATE OR REPLACE FUNCTION tasker.ancestor_results(p_step uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_ancestors uuid[];
    v_results jsonb;
BEGIN
    WITH RECURSIVE ancestors(step_uuid) AS (
        SELECT parent FROM tasker.parents_of(p_step) parent
        UNION
        SELECT parent FROM ancestors a CROSS JOIN LATERAL tasker.parents_of(a.step_uuid) parent
    )
    SELECT array_agg(a.step_uuid) INTO v_ancestors FROM ancestors a;
    SELECT coalesce(jsonb_object_agg(s.name, s.results), '{}') INTO v_results
      FROM tasker.workflow_steps s
     WHERE s.step_uuid = ANY (v_ancestors) AND s.state IN ('complete', 'resolved_manually');
    RETURN v_results;
END
$$;

-- One row per batch a batchable step's outcome created: how its workers may run.
CREATE TABLE IF NOT EXISTS tasker.step_batches (
    batch_step_uuid  uuid PRIMARY KEY REFERENCES tasker.workflow_steps ON DELETE CASCADE,
    task_uuid        uuid NOT NULL,
    worker_template  text NOT NULL,
    parallelism      integer NOT NULL CHECK (parallelism >= 1),
    failure_strategy text NOT NULL
                     CHECK (failure_strategy IN ('continue_on_failure', 'fail_fast', 'isolate')),
    worker_count     integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Adds the steps, edges and batches an outcome determined, atomically with the result that
-- caused them (the caller's transaction, task row locked), then re-evaluates the task: the
-- new steps' ready ones, its next state, whether to finalize.
CREATE OR REPLACE FUNCTION tasker.add_dynamic_steps(
    p_task uuid, p_steps jsonb, p_edges jsonb, p_batches jsonb
) RETURNS TABLE (task_status text, ready_steps uuid[], finalize boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_added integer;
BEGIN
    SELECT t.status INTO v_status FROM tasker.tasks t WHERE t.task_uuid = p_task FOR UPDATE;
    INSERT INTO tasker.workflow_steps (step_uuid, task_uuid, name, position, step_type,
        handler, retryable, max_attempts, backoff, backoff_base_ms, max_backoff_ms,
        timeout_seconds, template_step, inputs, batch_step_uuid)
    SELECT s.step_uuid, p_task, s.name, s.position, s.step_type, s.handler, s.retryable,
           s.max_attempts, s.backoff, s.backoff_base_ms, s.max_backoff_ms, s.timeout_seconds,
           s.template_step, s.inputs, s.batch_step_uuid
      FROM jsonb_to_recordset(p_steps) AS s(step_uuid uuid, name text, position integer,
           step_type text, handler jsonb, retryable boolean, max_attempts integer,
           backoff text, backoff_base_ms integer, max_backoff_ms integer,
           timeout_seconds double precision, template_step text, inputs jsonb,
           batch_step_uuid uuid);
    GET DIAGNOSTICS v_added = ROW_COUNT;
    INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid, task_uuid)
    SELECT e.from_step_uuid, e.to_step_uuid, p_task
      FROM jsonb_to_recordset(p_edges) AS e(from_step_uuid uuid, to_step_uuid uuid);
    INSERT INTO tasker.step_batches (batch_step_uuid, task_uuid, worker_template, parallelism,
        failure_strategy, worker_count)
    SELECT b.batch_step_uuid, p_task, b.worker_template, b.parallelism, b.failure_strategy,
           b.worker_count
      FROM jsonb_to_recordset(p_batches) AS b(batch_step_uuid uuid, worker_template text,
           parallelism integer, failure_strategy text, worker_count integer);
    -- Inserts are not state changes, so the counting trigger does not see them.
    UPDATE tasker.tasks t SET total_steps = t.total_steps + v_added,
                              pending_steps = t.pending_steps + v_added
     WHERE t.task_uuid = p_task;
    RETURN QUERY SELECT r.task_status, r.ready_steps, r.finalize
                   FROM tasker.reevaluate_task(p_task, v_status) r;
END
$$;

-- Of the given steps, those a claim may take now: every step that is no batch worker, and
-- of each batch's workers only as many as its parallelism leaves free slots for (workers
-- enqueued or in progress hold a slot), lowest instance first. Call with the tasks locked.
CREATE OR REPLACE FUNCTION tasker.within_batch_parallelism(p_steps uuid[]) RETURNS uuid[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_allowed uuid[];
BEGIN
    WITH candidates AS (
        SELECT s.step_uuid, s.batch_step_uuid, s.position, s.name
          FROM tasker.workflow_steps s
         WHERE s.step_uuid = ANY (p_steps)
           AND s.state IN ('pending', 'waiting_for_retry')
    ), ranked AS (
        SELECT c.step_uuid, c.batch_step_uuid,
               row_number() OVER (PARTITION BY c.batch_step_uuid ORDER BY c.position, c.name) AS rank
          FROM candidates c WHERE c.batch_step_uuid IS NOT NULL
    ), slots AS (
        SELECT b.batch_step_uuid, b.parallelism - (
                   SELECT count(*) FROM tasker.workflow_steps w
                    WHERE w.batch_step_uuid = b.batch_step_uuid
                      AND w.state IN ('enqueued', 'in_progress')) AS free
          FROM tasker.step_batches b
         WHERE b.batch_step_uuid IN (SELECT r.batch_step_uuid FROM ranked r)
    )
    SELECT coalesce(array_agg(x.step_uuid), '{}') INTO v_allowed FROM (
        SELECT c.step_uuid FROM candidates c WHERE c.batch_step_uuid IS NULL
        UNION ALL
        SELECT r.step_uuid FROM ranked r JOIN slots f USING (batch_step_uuid)
         WHERE r.rank <= f.free
    ) x;
    RETURN v_allowed;
END
$$;

-- Claims one step for dispatch (the body of claim_steps' loop), for the one case
-- claim_steps refuses on purpose: workers of a continue_on_failure batch in a task that
-- already has a failed step. The caller holds the task's lock.
CREATE OR REPLACE FUNCTION tasker.claim_batch_worker_despite_failures(
    p_step uuid, p_published boolean
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    s record;
BEGIN
    SELECT w.step_uuid, w.task_uuid, w.state, w.attempts, w.transition_seq INTO s
      FROM tasker.workflow_steps w
      JOIN tasker.step_batches b ON b.batch_step_uuid = w.batch_step_uuid
     WHERE w.step_uuid = p_step AND b.failure_strategy = 'continue_on_failure'
       AND (w.state = 'pending'
            OR (w.state = 'waiting_for_retry' AND w.next_retry_at <= clock_timestamp()))
       AND (w.attempts = 0 OR (w.retryable AND w.attempts < w.max_attempts))
       AND tasker.parents_satisfied(w.step_uuid)
       FOR UPDATE OF w;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE tasker.workflow_steps w
       SET state = 'enqueued', attempts = w.attempts + 1, dispatch_count = w.dispatch_count + 1,
           enqueued_at = clock_timestamp(), updated_at = clock_timestamp(),
           published_at = CASE WHEN p_published THEN clock_timestamp() END,
           transition_seq = w.transition_seq + 1
     WHERE w.step_uuid = p_step;
    PERFORM tasker.record_step_transition(p_step, s.task_uuid, s.state, 'enqueued',
        s.transition_seq + 1,
        jsonb_build_object('attempt', s.attempts + 1, 'failure_strategy', 'continue_on_failure'));
    RETURN true;
END
$$;

-- The claim the enqueuer makes: tasks locked in claim_steps' order, batch workers bounded
-- by their batch's parallelism, continue_on_failure workers taken despite failures; each
-- claimed step returned with its own inputs and checkpoint (what its message carries).
CREATE OR REPLACE FUNCTION tasker.claim_for_dispatch(p_steps uuid[], p_published boolean)
RETURNS TABLE (step_uuid uuid, task_uuid uuid, name text, handler jsonb, attempt integer,
               max_attempts integer, retryable boolean, timeout_seconds double precision,
               namespace text, task_name text, task_version text, context jsonb,
               correlation_id text, dependency_results jsonb, fence integer,
               inputs jsonb, checkpoint jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_locked uuid[];
    v_allowed uuid[];
    v_extra uuid[] := '{}';
    v_step uuid;
BEGIN
    SELECT coalesce(array_agg(l.task_uuid), '{}') INTO v_locked FROM (
        SELECT t.task_uuid FROM tasker.tasks t
         WHERE t.task_uuid IN (SELECT s.task_uuid FROM tasker.workflow_steps s
                                WHERE s.step_uuid = ANY (p_steps))
         ORDER BY t.task_uuid FOR UPDATE SKIP LOCKED) l;
    v_allowed := tasker.within_batch_parallelism(p_steps);
    FOR v_step IN
        SELECT s.step_uuid FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_uuid)
         WHERE s.step_uuid = ANY (v_allowed) AND s.task_uuid = ANY (v_locked)
           AND t.failed_steps > 0 AND s.batch_step_uuid IS NOT NULL
           AND t.status NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
         ORDER BY s.task_uuid, s.position, s.name
    LOOP
        IF tasker.claim_batch_worker_despite_failures(v_step, p_published) THEN
            v_extra := v_extra || v_step;
        END IF;
    END LOOP;
    PERFORM tasker.mark_tasks_in_process(v_extra);
    RETURN QUERY
        SELECT c.step_uuid, c.task_uuid, c.name, c.handler, c.attempt, c.max_attempts,
               c.retryable, c.timeout_seconds, c.namespace, c.task_name, c.task_version,
               c.context, c.correlation_id, c.dependency_results, c.fence, w.inputs, w.checkpoint
          FROM tasker.claim_steps(v_allowed, p_published) c
          JOIN tasker.workflow_steps w ON w.step_uuid = c.step_uuid;
    RETURN QUERY
        SELECT p.step_uuid, p.task_uuid, p.name, p.handler, p.attempt, p.max_attempts,
               p.retryable, p.timeout_seconds, p.namespace, p.task_name, p.task_version,
               p.context, p.correlation_id, p.dependency_results, p.fence, w.inputs, w.checkpoint
          FROM tasker.step_payloads(v_extra) p
          JOIN tasker.workflow_steps w ON w.step_uuid = p.step_uuid;
END
$$;

-- Tasks whose steps were just claimed outside claim_steps: -> steps_in_process.
CREATE OR REPLACE FUNCTION tasker.mark_tasks_in_process(p_steps uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT k.task_uuid, k.status FROM tasker.tasks k
              WHERE k.task_uuid IN (SELECT s.task_uuid FROM tasker.workflow_steps s
                                     WHERE s.step_uuid = ANY (p_steps))
                AND k.status <> 'steps_in_process'
    LOOP
        IF t.status NOT IN ('enqueuing_steps', 'evaluating_results') THEN
            PERFORM tasker.move_task(t.task_uuid, t.status, 'evaluating_results');
            t.status := 'evaluating_results';
        END IF;
        PERFORM tasker.move_task(t.task_uuid, t.status, 'steps_in_process');
    END LOOP;
END
$$;

-- After a batch worker's result was applied: isolate it if it failed in an `isolate`
-- batch; otherwise hand out the slot it freed to its waiting siblings. A failure in a
-- continue_on_failure batch keeps the task going while siblings remain to run.
-- `override` says the task state and finalize flag returned replace apply_step_result's.
CREATE OR REPLACE FUNCTION tasker.after_batch_worker_result(p_step uuid)
RETURNS TABLE (task_status text, ready_steps uuid[], finalize boolean, override boolean)
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    v_status text;
    v_failed integer;
    v_ready uuid[];
BEGIN
    SELECT w.task_uuid, w.state, w.last_error, w.inputs, w.batch_step_uuid, b.failure_strategy,
           b.parallelism INTO s
      FROM tasker.workflow_steps w JOIN tasker.step_batches b USING (batch_step_uuid)
     WHERE w.step_uuid = p_step;
    SELECT t.status, t.failed_steps INTO v_status, v_failed
      FROM tasker.tasks t WHERE t.task_uuid = s.task_uuid FOR UPDATE;
    IF NOT FOUND OR v_status IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN
        RETURN QUERY SELECT v_status, '{}'::uuid[], false, false;
        RETURN;
    END IF;
    IF s.state = 'error' AND s.failure_strategy = 'isolate' THEN
        RETURN QUERY SELECT r.task_status, r.ready_steps, r.finalize, true
                       FROM tasker.isolate_batch_worker(p_step, v_status) r;
        RETURN;
    END IF;
    IF v_failed > 0 AND s.failure_strategy <> 'continue_on_failure' THEN
        RETURN QUERY SELECT v_status, '{}'::uuid[], false, false;  -- fail fast
        RETURN;
    END IF;
    v_ready := tasker.waiting_batch_workers(s.batch_step_uuid, s.parallelism);
    IF v_failed > 0 AND cardinality(v_ready) > 0
       AND v_status IN ('blocked_by_failures', 'evaluating_results') THEN
        -- Siblings still to run: not blocked yet (continue_on_failure).
        IF v_status <> 'evaluating_results' THEN
            PERFORM tasker.move_task(s.task_uuid, v_status, 'evaluating_results');
        END IF;
        PERFORM tasker.move_task(s.task_uuid, 'evaluating_results', 'enqueuing_steps');
        RETURN QUERY SELECT 'enqueuing_steps'::text, v_ready, false, true;
        RETURN;
    END IF;
    RETURN QUERY SELECT v_status, v_ready, false, false;
END
$$;

-- A batch's workers that could take a free slot now (pending or due for retry, parents
-- done), at most as many as the slots free.
CREATE OR REPLACE FUNCTION tasker.waiting_batch_workers(p_batch uuid, p_parallelism integer)
RETURNS uuid[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_free integer;
    v_ready uuid[];
BEGIN
    SELECT p_parallelism - count(*) INTO v_free FROM tasker.workflow_steps w
     WHERE w.batch_step_uuid = p_batch AND w.state IN ('enqueued', 'in_progress');
    SELECT coalesce(array_agg(x.step_uuid), '{}') INTO v_ready FROM (
        SELECT w.step_uuid FROM tasker.workflow_steps w
         WHERE w.batch_step_uuid = p_batch
           AND (w.state = 'pending'
                OR (w.state = 'waiting_for_retry' AND w.next_retry_at <= clock_timestamp()))
           AND tasker.parents_satisfied(w.step_uuid)
         ORDER BY w.position, w.name
         LIMIT greatest(v_free, 0)) x;
    RETURN v_ready;
END
$$;

-- `isolate`: a worker that failed for good is set aside (resolved, its error kept as its
-- result) so its siblings and the convergence step go on without it.
CREATE OR REPLACE FUNCTION tasker.isolate_batch_worker(p_step uuid, p_status text)
RETURNS TABLE (task_status text, ready_steps uuid[], finalize boolean)
LANGUAGE plpgsql AS $$
DECLARE
    s record;
BEGIN
    SELECT w.task_uuid, w.last_error, w.inputs INTO s
      FROM tasker.workflow_steps w WHERE w.step_uuid = p_step;
    PERFORM tasker.transition_step(p_step, ARRAY['error'], 'resolved_manually',
        jsonb_build_object('action', 'isolate', 'actor', 'tasker',
                           'reason', 'batch failure_strategy isolate'));
    UPDATE tasker.workflow_steps w
       SET results = jsonb_build_object('isolated', true, 'error', s.last_error,
                                        'batch_id', s.inputs->'cursor'->'batch_id'),
           completed_at = clock_timestamp()
     WHERE w.step_uuid = p_step;
    RETURN QUERY SELECT r.task_status, r.ready_steps, r.finalize
                   FROM tasker.reevaluate_task(s.task_uuid, p_status) r;
END
$$;

-- A batch worker yielded a checkpoint: keep its progress and put it back to pending, ready
-- for immediate re-dispatch. The yield answers dispatch p_fence once (like a result) and
-- does not use up an attempt: the next claim counts the same attempt number again.
CREATE OR REPLACE FUNCTION tasker.checkpoint_step(
    p_step uuid, p_fence integer, p_checkpoint jsonb, p_started timestamptz,
    p_finished timestamptz, p_worker text
) RETURNS TABLE (outcome text, task_uuid uuid, step_state text, task_status text,
                 ready_steps uuid[], finalize boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_task uuid;
    v_status text;
    s record;
    v_seq integer;
    v_meta jsonb;
BEGIN
    SELECT w.task_uuid INTO v_task FROM tasker.workflow_steps w WHERE w.step_uuid = p_step;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_step'::text, NULL::uuid, NULL::text, NULL::text,
                            '{}'::uuid[], false;
        RETURN;
    END IF;
    SELECT t.status INTO v_status FROM tasker.tasks t WHERE t.task_uuid = v_task FOR UPDATE;
    SELECT * INTO s FROM tasker.workflow_steps w WHERE w.step_uuid = p_step FOR UPDATE;
    IF s.dispatch_count <> p_fence OR s.state NOT IN ('enqueued', 'in_progress')
       OR v_status IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN
        RETURN QUERY SELECT CASE WHEN s.dispatch_count = p_fence THEN 'duplicate' ELSE 'stale' END,
                            v_task, s.state, v_status, '{}'::uuid[], false;
        RETURN;
    END IF;
    v_meta := jsonb_build_object('attempt', s.attempts, 'worker', p_worker,
                                 'checkpoint_cursor', p_checkpoint->'cursor');
    v_seq := s.transition_seq;
    IF s.state = 'enqueued' THEN
        v_seq := v_seq + 1;
        PERFORM tasker.record_step_transition(p_step, v_task, 'enqueued', 'in_progress', v_seq,
                                              v_meta, p_started);
    END IF;
    PERFORM tasker.record_step_transition(p_step, v_task, 'in_progress', 'pending', v_seq + 1,
                                          v_meta, p_finished);
    UPDATE tasker.workflow_steps w SET
        state = 'pending',
        attempts = greatest(w.attempts - 1, 0),
        checkpoint = tasker.next_checkpoint(w.checkpoint, p_checkpoint, p_finished),
        last_attempted_at = p_started,
        transition_seq = v_seq + 1,
        updated_at = clock_timestamp()
     WHERE w.step_uuid = p_step;
    -- The task moves on as after any change of a step (a lost re-dispatch is then found by
    -- the sweep of tasks left in enqueuing_steps).
    RETURN QUERY SELECT 'checkpointed'::text, v_task, 'pending'::text, r.task_status,
                        r.ready_steps, r.finalize
                   FROM tasker.reevaluate_task(v_task, v_status) r;
END
$$;

-- The saved checkpoint: the new one, with the previous positions kept as a short history.
CREATE OR REPLACE FUNCTION tasker.next_checkpoint(p_old jsonb, p_new jsonb, p_at timestamptz)
RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_new || jsonb_build_object(
        'timestamp', p_at,
        'history', (
            SELECT coalesce(jsonb_agg(h.entry ORDER BY h.ord), '[]') FROM (
                SELECT entry, ord FROM jsonb_array_elements(
                    coalesce(p_old->'history', '[]')
                    || jsonb_build_array(jsonb_build_object('cursor', p_new->'cursor',
                                                            'timestamp', p_at)))
                    WITH ORDINALITY AS e(entry, ord)
                 ORDER BY ord DESC LIMIT 20) h))
$$;
