-- The result hop is one server call (issue 8: one statement for complete + transition +
-- readiness, the enqueue in the same transaction): apply the results, claim the steps
-- they made ready, build those steps' messages, finish the tasks the results finished;
-- on PGMQ also send the messages and delete the results. The orchestrator made five
-- round trips for this (BEGIN, apply, claim, send and ack, COMMIT) and built the
-- messages in Python between them.

-- Steps whose template declares domain events, by template and step name: a step message
-- carries its step's declarations, looked up here by key. Kept by a trigger on templates.
CREATE TABLE tasker.template_step_events (
    template_uuid uuid NOT NULL REFERENCES tasker.task_templates ON DELETE CASCADE,
    step_name     text NOT NULL,
    events        jsonb NOT NULL,
    PRIMARY KEY (template_uuid, step_name)
);

CREATE FUNCTION tasker.index_template_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tasker.template_step_events WHERE template_uuid = NEW.template_uuid;
    INSERT INTO tasker.template_step_events (template_uuid, step_name, events)
    SELECT NEW.template_uuid, s->>'name', s->'publishes_events'
      FROM jsonb_array_elements(NEW.definition->'steps') AS s
     WHERE jsonb_typeof(s->'publishes_events') = 'array'
       AND jsonb_array_length(s->'publishes_events') > 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER template_events_indexed
    AFTER INSERT OR UPDATE OF definition ON tasker.task_templates
    FOR EACH ROW EXECUTE FUNCTION tasker.index_template_events();

UPDATE tasker.task_templates SET definition = definition;

-- The id of the trace a W3C carrier names (NULL when it names none).
CREATE FUNCTION tasker.trace_id(p_carrier jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT nullif(split_part(p_carrier->>'traceparent', '-', 2), '')
$$;

-- The trace a step message continues: the live context of the work that enqueues it when
-- that belongs to the task's trace, else the task's own (as tracing.within_task). A task
-- created outside any trace stores JSON null.
CREATE FUNCTION tasker.continued_trace(p_live jsonb, p_stored jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(p_stored) = 'object' AND p_stored <> '{}'
             AND tasker.trace_id(p_live) IS DISTINCT FROM tasker.trace_id(p_stored)
        THEN p_stored
        WHEN jsonb_typeof(p_live) = 'object' THEN p_live
        ELSE '{}'
    END
$$;

-- Claims the given steps and builds their step messages (the StepMessage wire format of
-- messaging/messages.py), continuing the trace in p_live where it is the task's.
-- p_published: the messages commit with this transaction (PGMQ), else they are published
-- after it and their publish confirms recorded later.
CREATE FUNCTION tasker.claim_messages(p_steps uuid[], p_live jsonb, p_published boolean)
RETURNS TABLE (namespace text, step_uuid uuid, fence integer, message jsonb)
LANGUAGE sql AS $$
    SELECT c.namespace, c.step_uuid, c.fence, jsonb_build_object(
               'kind', 'step', 'task_uuid', c.task_uuid, 'step_uuid', c.step_uuid,
               'namespace', c.namespace, 'task_name', c.task_name,
               'task_version', c.task_version, 'step_name', c.name, 'handler', c.handler,
               'attempt', c.attempt, 'max_attempts', c.max_attempts,
               'retryable', c.retryable, 'input_data', c.context,
               'dependency_results', c.dependency_results,
               'timeout_seconds', c.timeout_seconds, 'correlation_id', c.correlation_id,
               'trace_context', tasker.continued_trace(p_live, t.trace_context),
               'step_inputs', coalesce(c.inputs, '{}'), 'checkpoint', c.checkpoint,
               'fence', c.fence,
               'publishes_events', coalesce(
                   (SELECT e.events FROM tasker.template_step_events e
                     WHERE e.template_uuid = t.template_uuid AND e.step_name = c.name),
                   '[]'))
      FROM tasker.claim_for_dispatch(p_steps, p_published) AS c
      JOIN tasker.tasks t ON t.task_uuid = c.task_uuid
$$;
ALTER FUNCTION tasker.claim_messages(uuid[], jsonb, boolean) ROWS 10;

-- Claims the given steps and sends their messages to their namespaces' PGMQ queues, in
-- the caller's transaction. One row per queue sent to.
CREATE FUNCTION tasker.claim_and_send(p_steps uuid[], p_live jsonb)
RETURNS TABLE (namespace text, sent integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_queue record;
BEGIN
    FOR v_queue IN
        SELECT m.namespace AS ns, array_agg(m.message) AS messages
          FROM tasker.claim_messages(p_steps, p_live, true) AS m
         GROUP BY m.namespace
    LOOP
        namespace := v_queue.ns;
        sent := cardinality(v_queue.messages);
        PERFORM pgmq.send_batch('worker_' || namespace || '_queue', v_queue.messages,
                                clock_timestamp());
        PERFORM pg_notify('pgmq.q_worker_' || namespace || '_queue.INSERT', '');
        RETURN NEXT;
    END LOOP;
END
$$;

-- Applies a batch of plain steps' results in the order given (the caller sorts by task:
-- lock order) and carries out what follows, all in the caller's one statement. With
-- p_source, the PGMQ queue the results were read from (message ids p_messages), the
-- claimed steps' messages are sent and the results deleted here; without it (another
-- broker) the messages come back to be published after commit, and the caller acks.
-- A result whose step is not plain (outcome 'dynamic') is left untouched, its message
-- too: the caller applies it the long way. One row per result; a finished task's
-- finalization is on the row of the result that finished it. Results of one task are
-- adjacent, so finishing a task as soon as a result says so keeps the lock order, and
-- any later result of that task is stale.
CREATE FUNCTION tasker.apply_results_and_dispatch(
    p_source text, p_messages bigint[], p_steps uuid[], p_fences integer[],
    p_success boolean[], p_results jsonb[], p_errors jsonb[], p_started timestamptz[],
    p_finished timestamptz[], p_workers text[], p_jitter double precision,
    p_spreads double precision[], p_traces jsonb[], p_entries uuid[]
) RETURNS TABLE (outcome text, task_uuid uuid, step_state text, task_status text,
                 ready_steps uuid[], next_retry_at timestamptz, finalize boolean,
                 sent integer, namespace text, finalized boolean, final_status text,
                 claimed uuid[], fences integer[], messages text[])
LANGUAGE plpgsql AS $$
DECLARE
    v_applied record;
    v_dispatch record;
    v_done uuid[] := '{}';
    v_final record;
    v_acked bigint[] := '{}';
BEGIN
    FOR i IN 1 .. cardinality(p_steps) LOOP
        SELECT * INTO v_applied FROM tasker.apply_plain_step_result(
            p_steps[i], p_fences[i], p_success[i], p_results[i], p_errors[i], p_started[i],
            p_finished[i], p_workers[i], p_jitter, p_spreads[i]);
        outcome := v_applied.outcome;
        task_uuid := v_applied.task_uuid;
        step_state := v_applied.step_state;
        task_status := v_applied.task_status;
        ready_steps := v_applied.ready_steps;
        next_retry_at := v_applied.next_retry_at;
        finalize := v_applied.finalize;
        sent := 0;
        namespace := NULL;
        finalized := NULL;
        final_status := NULL;
        claimed := '{}';
        fences := '{}';
        messages := '{}';
        IF outcome <> 'dynamic' THEN
            v_acked := v_acked || p_messages[i];
        END IF;
        IF outcome = 'applied' AND cardinality(ready_steps) > 0 AND p_source IS NOT NULL THEN
            SELECT * INTO v_dispatch FROM tasker.claim_and_send(ready_steps, p_traces[i]);
            sent := coalesce(v_dispatch.sent, 0);
            namespace := v_dispatch.namespace;
        ELSIF outcome = 'applied' AND cardinality(ready_steps) > 0 THEN
            SELECT count(*), min(m.namespace), coalesce(array_agg(m.step_uuid), '{}'),
                   coalesce(array_agg(m.fence), '{}'), coalesce(array_agg(m.message::text), '{}')
              INTO sent, namespace, claimed, fences, messages
              FROM tasker.claim_messages(ready_steps, p_traces[i], false) AS m;
        END IF;
        IF outcome = 'applied' AND finalize AND NOT task_uuid = ANY (v_done) THEN
            v_done := v_done || task_uuid;
            SELECT * INTO v_final FROM tasker.finalize_task(task_uuid, p_entries[i]);
            finalized := v_final.finalized;
            final_status := v_final.status;
        END IF;
        RETURN NEXT;
    END LOOP;
    IF p_source IS NOT NULL AND cardinality(v_acked) > 0 THEN
        PERFORM pgmq.delete(p_source, v_acked);
    END IF;
END
$$;

SELECT tasker.pin_lookup_plans();
