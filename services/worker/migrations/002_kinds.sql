-- 002: the command kinds merge, patch and delete (proto/README.md §6).
--
-- A delete keeps the recipient's row without a profile (NULL), so that its
-- stored version still orders later versioned commands; GET answers 404 for it.
ALTER TABLE profiles ALTER COLUMN profile DROP NOT NULL;

-- Every processed command id is recorded (proto §6). outcome: NULL applied,
-- 'stale' (an external version not newer), 'refused' (a merge or patch that
-- cannot apply to the stored profile; reason says why). The api reads it by
-- command id, the primary key: one indexed read.
ALTER TABLE applied_commands ADD COLUMN outcome text NULL, ADD COLUMN reason text NULL;
