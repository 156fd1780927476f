-- Webhooks: endpoints per tenant, an outbox of events written in the transaction of the change that raised them, one
-- delivery per (event, endpoint) and every attempt of it. Expand-only: new tables.

-- event_types '{*}' receives every type, also types added later. The secret signs deliveries, so it is kept as it
-- is (it cannot be a hash like an API key's); the API shows it only in the answer that created it. A deleted
-- endpoint is kept, with deleted_at, so that its delivery records stay readable in SQL.
CREATE TABLE webhook_endpoints (
    id           uuid        PRIMARY KEY,
    tenant_id    text        NOT NULL REFERENCES tenants (id),
    url          text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    event_types  text[]      NOT NULL DEFAULT '{*}',
    secret       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, id) WHERE deleted_at IS NULL;

-- The outbox. payload is the exact JSON body every delivery of the event sends (text, not jsonb, which would
-- reorder it). dispatched_at is set when the event was fanned out to the endpoints subscribed at that moment.
CREATE TABLE webhook_events (
    id             uuid        PRIMARY KEY,
    tenant_id      text        NOT NULL REFERENCES tenants (id),
    type           text        NOT NULL,
    payload        text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    dispatched_at  timestamptz
);
CREATE INDEX webhook_events_to_dispatch ON webhook_events (id) WHERE dispatched_at IS NULL;

-- status: pending (next_attempt_at is when it is due, or the end of a dispatcher's claim while it sends),
-- delivered, failed (retries ran out of time), canceled (the endpoint was deleted). attempt_count is the number of
-- the latest attempt started; the schedule lives here, so a restarted server carries on where the last one stopped.
CREATE TABLE webhook_deliveries (
    id               uuid        PRIMARY KEY,
    event_id         uuid        NOT NULL REFERENCES webhook_events (id),
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (id),
    tenant_id        text        NOT NULL,
    status           text        NOT NULL,
    attempt_count    integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, event_id);

-- One row per attempt, written when it starts: one without finished_at was cut short by a stop or a crash, and is
-- closed as interrupted when the delivery is claimed again.
CREATE TABLE webhook_attempts (
    delivery_id  uuid        NOT NULL REFERENCES webhook_deliveries (id),
    number       integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    http_status  integer,
    error        text,
    duration_ms  double precision,
    PRIMARY KEY (delivery_id, number)
);
