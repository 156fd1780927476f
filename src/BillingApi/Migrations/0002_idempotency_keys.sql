-- Responses to POSTs sent with an Idempotency-Key, per tenant, kept for a day (expired rows are deleted by the
-- server). Expand-only: a new table.
CREATE TABLE idempotency_keys (
    tenant_id       text        NOT NULL,
    key             text        NOT NULL,
    request_sha256  bytea       NOT NULL,
    status_code     integer     NOT NULL,
    response_body   text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
