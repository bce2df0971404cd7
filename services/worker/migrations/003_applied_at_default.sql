-- 003: applied_at defaults to the transaction's time, so that the worker
-- records a batch's ids with one COPY (which cannot call now()) and still
-- stamps them with its transaction's time, as the purge expects.
ALTER TABLE applied_commands ALTER COLUMN applied_at SET DEFAULT now();
