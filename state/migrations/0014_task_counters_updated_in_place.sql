-- A task row is written about a dozen times in its short life, eight of them by the
-- step counter trigger (two bucket changes per step). PostgreSQL can update a row in
-- place (HOT: no new entry in any index, the old version pruned from its page) only if
-- no indexed column changes and the row's page has room for the new version. Neither
-- held: tasks_active_idx carried updated_at, which every counter update stamps, and
-- pages were filled to the brim by inserts, so each counter update wrote an entry into
-- each of the table's indexes.
--
-- The sweeps that read updated_at (stale_tasks, tasks needing attention) read only
-- active tasks, which the index still finds by status; ordering those few by time needs
-- no index. A quarter of each page is left free for the versions of its rows' updates.

DROP INDEX tasker.tasks_active_idx;
CREATE INDEX tasks_active_idx ON tasker.tasks (status)
    WHERE status NOT IN ('complete', 'error', 'cancelled', 'resolved_manually');

ALTER TABLE tasker.tasks SET (fillfactor = 75);
