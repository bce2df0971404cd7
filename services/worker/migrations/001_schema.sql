-- 001: the worker's tables (DESIGN §5).
--
-- profiles: one row per recipient, the profile as jsonb, and the command that
-- last wrote it (id and Kafka position), so every row can be traced back to a
-- record. `version` is the high-water mark of the external versions applied
-- to the row (NULL while no versioned command has been applied).
CREATE TABLE profiles (
    recipient_id    text PRIMARY KEY,
    profile         jsonb NOT NULL,
    command_id      bytea NOT NULL,
    kafka_topic     text NOT NULL,
    kafka_partition int NOT NULL,
    kafka_offset    bigint NOT NULL,
    version         numeric(20, 0) NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- kafka_positions: the next offset to apply per (consumer group, topic,
-- partition), written in the same transaction as the rows it covers. It is
-- the source of truth for where a worker starts; Kafka's committed offsets
-- are only a copy for lag tools.
CREATE TABLE kafka_positions (
    consumer_group text NOT NULL,
    topic          text NOT NULL,
    partition      int NOT NULL,
    next_offset    bigint NOT NULL,
    updated_at     timestamptz,
    PRIMARY KEY (consumer_group, topic, partition)
);

-- applied_commands: ids of applied commands (superseded ones within a batch
-- included), so that a redelivered or re-produced command is skipped. Purged
-- after PROFILED_APPLIED_RETENTION.
CREATE TABLE applied_commands (
    command_id   bytea PRIMARY KEY,
    recipient_id text NOT NULL,
    applied_at   timestamptz NOT NULL
);

-- BRIN, not btree: ids are appended in time order, so block ranges map to
-- time ranges; the purge finds old rows through it while each insert pays
-- almost nothing (a btree here cost a second index insert per applied id).
CREATE INDEX applied_commands_applied_at ON applied_commands USING brin (applied_at);
