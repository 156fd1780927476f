-- Which entitlement thresholds were announced (webhook entitlement.threshold_reached): one row per customer, meter,
-- period and threshold. The primary key makes the announcement once per period even with several servers.
CREATE TABLE entitlement_notifications (
    tenant_id     text        NOT NULL REFERENCES tenants (id),
    customer_id   text        NOT NULL,
    meter         text        NOT NULL,
    period_start  timestamptz NOT NULL,
    threshold     integer     NOT NULL CHECK (threshold IN (80, 100)),
    usage         numeric     NOT NULL,
    usage_limit   numeric     NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id, meter, period_start, threshold)
);
