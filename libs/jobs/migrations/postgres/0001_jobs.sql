-- Durable jobs. Times are milliseconds since the epoch from the database's clock, so leases
-- taken by different processes are compared on one clock.
CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    -- The kind's parameters as JSON, opaque to the queue.
    params TEXT NOT NULL,
    workers INTEGER NOT NULL CHECK (workers > 0),
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    request_id TEXT UNIQUE,
    traceparent TEXT NOT NULL DEFAULT '',
    tracestate TEXT NOT NULL DEFAULT '',
    -- Items are enumerated once, in the same transaction that sets this.
    planned BOOLEAN NOT NULL DEFAULT FALSE,
    total BIGINT NOT NULL DEFAULT 0,
    done BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    total_bytes BIGINT NOT NULL DEFAULT 0,
    done_bytes BIGINT NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    error TEXT NOT NULL DEFAULT '',
    claims INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until BIGINT,
    not_before BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL
);

-- Claims scan only the jobs that can still be claimed.
CREATE INDEX jobs_open ON jobs (id) WHERE state IN ('queued', 'running');

CREATE TABLE job_items (
    job_id BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    item_key TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    bytes BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    finished_at BIGINT,
    PRIMARY KEY (job_id, seq)
);

-- A resumed job reads its unfinished items in order.
CREATE INDEX job_items_pending ON job_items (job_id, seq) WHERE state = 'pending';
