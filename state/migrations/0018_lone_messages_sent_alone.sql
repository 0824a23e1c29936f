-- A lone message goes out through pgmq.send, not pgmq.send_batch (issue 8). Idle, every
-- send carries one message (each step's, each result's), and PGMQ's batch send costs
-- about three times its single send on the server (58-63 against 21-22 us in a loop of
-- 2,000 calls): it validates its arrays and builds its INSERT in two more PL/pgSQL
-- layers. The queue's wake-up stays one NOTIFY per send.

-- Sends `p_messages` to PGMQ queue `p_queue` in order (nothing when empty) and wakes the
-- queue's receivers at commit.
CREATE FUNCTION tasker.send_messages(p_queue text, p_messages jsonb[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(p_messages) = 1 THEN
        PERFORM pgmq.send(p_queue, p_messages[1], NULL::jsonb, clock_timestamp());
    ELSIF cardinality(p_messages) > 1 THEN
        PERFORM pgmq.send_batch(p_queue, p_messages, clock_timestamp());
    ELSE
        RETURN;
    END IF;
    PERFORM pg_notify('pgmq.q_' || p_queue || '.INSERT', '');
END
$$;

-- REDEFINES tasker.claim_and_send of 0012 (same signature, same rows): sends through
-- send_messages.
CREATE OR REPLACE FUNCTION tasker.claim_and_send(p_steps uuid[], p_live jsonb)
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
        PERFORM tasker.send_messages('worker_' || namespace || '_queue', v_queue.messages);
        RETURN NEXT;
    END LOOP;
END
$$;

-- REDEFINES tasker.apply_results_and_dispatch of 0017 (same signature, same rows): sends
-- through send_messages.
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
        PERFORM tasker.send_messages(v_queue.queue, v_queue.batch);
    END LOOP;
    IF p_source IS NOT NULL AND cardinality(v_acked) > 0 THEN
        PERFORM pgmq.delete(p_source, v_acked);
    END IF;
END
$$;

SELECT tasker.pin_lookup_plans();
