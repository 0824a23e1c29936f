-- Most results answer a plain step: not a decision or batchable step reporting success
-- (whose outcome the orchestrator checks against the template before applying it), and
-- not a batch worker (whose batch follows up). For those, the orchestrator's lookup of
-- what the step is was a round trip that decided nothing (issue 8: fewer round trips per
-- step). This applies the result when the step is plain and otherwise changes nothing
-- and answers 'dynamic', so the caller looks closer and applies it the long way.
CREATE FUNCTION tasker.apply_plain_step_result(
    p_step uuid, p_fence integer, p_success boolean, p_result jsonb, p_error jsonb,
    p_started timestamptz, p_finished timestamptz, p_worker text,
    p_jitter double precision, p_spread double precision
) RETURNS TABLE (outcome text, task_uuid uuid, step_state text, task_status text,
                 ready_steps uuid[], next_retry_at timestamptz, finalize boolean)
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM tasker.workflow_steps w
                WHERE w.step_uuid = p_step
                  AND (w.batch_step_uuid IS NOT NULL
                       OR (p_success AND w.step_type IN ('decision', 'batchable')))) THEN
        RETURN QUERY SELECT 'dynamic'::text, NULL::uuid, NULL::text, NULL::text,
                            '{}'::uuid[], NULL::timestamptz, false;
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM tasker.apply_step_result(
        p_step, p_fence, p_success, p_result, p_error, p_started, p_finished, p_worker,
        p_jitter, p_spread);
END;
$$;

SELECT tasker.pin_lookup_plans();
