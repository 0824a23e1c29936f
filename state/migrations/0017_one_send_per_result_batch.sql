-- One queue send per batch of results, not one per result (issue 8). Under load the
-- result hop applies a few results per call (4 on average in a 2,000-task burst), and
-- each result that made steps ready sent their messages with its own pgmq.send_batch:
-- PGMQ builds that statement as text and plans it on every call, about five times the
-- cost of the INSERT it runs (pg_stat_statements). The steps are still claimed result
-- by result, in lock order, so every later result of the batch sees them claimed; only
-- their messages wait for the end of the loop, inside the same statement, and go out in
-- one send (and one wake-up) per namespace. Nothing leaves before commit either way.

-- REDEFINES tasker.apply_results_and_dispatch of 0012 (same signature, same rows).
CREATE OR REPLACE FUNCTION tasker.apply_results_and_dispatch(
    p_source text, p_messages bigint[], p_steps uuid[], p_fences integer[],
    p_success boolean[], p_results jsonb[], p_errors jsonb[], p_started timestamptz[],
    p_finished timestamptz[], p_workers text[], p_jitter double precision,
    p_spreads double precision[], p_traces jsonb[], p_entries uuid[]
) RETURNS TABLE (
    outcome text, task_uuid uuid, step_state text, task_status text, ready_steps uuid[],
    next_retry_at timestamptz, finalize boolean, sent integer, namespace text,
    finalized boolean, final_status text, claimed uuid[], fences integer[], messages text[]
)
LANGUAGE plpgsql AS $$
DECLARE
    v_applied record;
    v_final record;
    v_done uuid[] := '{}';
    v_acked bigint[] := '{}';
    v_outbox_queues text[] := '{}';  -- with p_source: each message to send, and its queue
    v_outbox jsonb[] := '{}';
    v_queues text[];
    v_messages jsonb[];
    v_queue record;
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
        IF outcome = 'applied' AND cardinality(ready_steps) > 0 THEN
            SELECT count(*), min(m.namespace), coalesce(array_agg(m.step_uuid), '{}'),
                   coalesce(array_agg(m.fence), '{}'), coalesce(array_agg(m.message), '{}'),
                   coalesce(array_agg('worker_' || m.namespace || '_queue'), '{}')
              INTO sent, namespace, claimed, fences, v_messages, v_queues
              FROM tasker.claim_messages(ready_steps, p_traces[i], p_source IS NOT NULL) AS m;
            IF p_source IS NULL THEN  -- for the caller to publish after commit
                messages := v_messages::text[];
            ELSE  -- sent below, in this statement
                v_outbox_queues := v_outbox_queues || v_queues;
                v_outbox := v_outbox || v_messages;
                claimed := '{}';
                fences := '{}';
            END IF;
        END IF;
        IF outcome = 'applied' AND finalize AND NOT task_uuid = ANY (v_done) THEN
            v_done := v_done || task_uuid;
            SELECT * INTO v_final FROM tasker.finalize_task(task_uuid, p_entries[i]);
            finalized := v_final.finalized;
            final_status := v_final.status;
        END IF;
        RETURN NEXT;
    END LOOP;
    FOR v_queue IN
        SELECT o.queue, array_agg(o.message ORDER BY o.n) AS batch
          FROM unnest(v_outbox_queues, v_outbox) WITH ORDINALITY AS o(queue, message, n)
         GROUP BY o.queue
    LOOP
        PERFORM pgmq.send_batch(v_queue.queue, v_queue.batch, clock_timestamp());
        PERFORM pg_notify('pgmq.q_' || v_queue.queue || '.INSERT', '');
    END LOOP;
    IF p_source IS NOT NULL AND cardinality(v_acked) > 0 THEN
        PERFORM pgmq.delete(p_source, v_acked);
    END IF;
END
$$;

SELECT tasker.pin_lookup_plans();
