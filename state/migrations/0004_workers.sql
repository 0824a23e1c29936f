-- Worker registry: the latest heartbeat of every worker process, as the orchestrator
-- received it through the broker (workers never connect to PostgreSQL themselves).

CREATE TABLE tasker.workers (
    worker_id                  text PRIMARY KEY,
    host                       text NOT NULL,
    pid                        integer NOT NULL,
    namespaces                 text[] NOT NULL DEFAULT '{}',
    in_flight                  integer NOT NULL DEFAULT 0,
    concurrency                integer NOT NULL,
    status                     text NOT NULL
                               CHECK (status IN ('running', 'stopping', 'stopped')),
    started_at                 timestamptz NOT NULL,
    -- The worker's own clock (`sent_at`): orders heartbeats, so a late one never wins.
    last_heartbeat_at          timestamptz NOT NULL,
    -- The next heartbeat is due this long after the last; three missed ones mean dead.
    heartbeat_interval_seconds double precision NOT NULL DEFAULT 5.0
);
CREATE INDEX workers_last_heartbeat_idx ON tasker.workers (last_heartbeat_at DESC);
