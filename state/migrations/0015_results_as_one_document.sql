-- The result hop's batch arrives as one JSON document instead of fourteen arrays. The
-- orchestrator spent about two thirds of its time in the hop having psycopg convert
-- those arrays element by element (py-spy); one document is encoded by msgspec in a
-- single C call and taken apart here by jsonb_to_recordset, in the order given.

CREATE FUNCTION tasker.apply_result_document(
    p_source text, p_jitter double precision, p_results jsonb
) RETURNS TABLE (outcome text, task_uuid uuid, step_state text, task_status text,
                 ready_steps uuid[], next_retry_at timestamptz, finalize boolean,
                 sent integer, namespace text, finalized boolean, final_status text,
                 claimed uuid[], fences integer[], messages text[])
LANGUAGE plpgsql ROWS 10 AS $$
DECLARE
    b record;
BEGIN
    -- A JSON null result is kept as JSON null (SQL NULL means no result).
    SELECT array_agg(r.message_id ORDER BY r.n) AS message_ids,
           array_agg(r.step_uuid ORDER BY r.n) AS step_uuids,
           array_agg(r.fence ORDER BY r.n) AS step_fences,
           array_agg(r.success ORDER BY r.n) AS successes,
           array_agg(coalesce(r.result, 'null') ORDER BY r.n) AS results,
           array_agg(r.error ORDER BY r.n) AS errors,
           array_agg(r.started_at ORDER BY r.n) AS started,
           array_agg(r.finished_at ORDER BY r.n) AS finished,
           array_agg(r.worker_id ORDER BY r.n) AS workers,
           array_agg(r.spread ORDER BY r.n) AS spreads,
           array_agg(r.trace_context ORDER BY r.n) AS traces,
           array_agg(r.entry ORDER BY r.n) AS entries
      INTO b
      FROM ROWS FROM (jsonb_to_recordset(p_results) AS (
               message_id bigint, step_uuid uuid, fence integer, success boolean,
               result jsonb, error jsonb, started_at timestamptz, finished_at timestamptz,
               worker_id text, trace_context jsonb, spread double precision, entry uuid))
           WITH ORDINALITY AS r(message_id, step_uuid, fence, success, result, error,
                                started_at, finished_at, worker_id, trace_context, spread,
                                entry, n);
    RETURN QUERY SELECT * FROM tasker.apply_results_and_dispatch(
        p_source, b.message_ids, b.step_uuids, b.step_fences, b.successes, b.results,
        b.errors, b.started, b.finished, b.workers, p_jitter, b.spreads, b.traces,
        b.entries);
END
$$;

SELECT tasker.pin_lookup_plans();
