-- The catalog: customers, plans and their immutable versions, subscriptions and the plan phases they went through.
-- Expand-only: new tables and new nullable/defaulted columns; nothing an older server reads changes.

-- Per-tenant billing settings; a tenant without a row uses the defaults (half-even, no grace period).
CREATE TABLE tenant_billing_settings (
    tenant_id          text    PRIMARY KEY REFERENCES tenants (id),
    rounding_mode      text    NOT NULL DEFAULT 'half_even' CHECK (rounding_mode IN ('half_even', 'half_up', 'up', 'down')),
    grace_period_days  integer NOT NULL DEFAULT 0 CHECK (grace_period_days BETWEEN 0 AND 60)
);

-- id is the tenant's own id of the customer: the same string its usage events carry as the customer.
CREATE TABLE customers (
    tenant_id         text        NOT NULL REFERENCES tenants (id),
    id                text        NOT NULL,
    name              text        NOT NULL,
    email             text,
    currency          text        NOT NULL,
    billing_timezone  text        NOT NULL DEFAULT 'UTC',
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE plans (
    tenant_id   text        NOT NULL REFERENCES tenants (id),
    code        text        NOT NULL,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, code)
);

-- A version is never updated: definition is the validated plan version as the API accepted it (JSON), so an
-- invoice that names (plan, version) can always be explained and re-rated.
CREATE TABLE plan_versions (
    tenant_id   text        NOT NULL,
    plan_code   text        NOT NULL,
    version     integer     NOT NULL CHECK (version >= 1),
    currency    text        NOT NULL,
    definition  jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, plan_code, version),
    FOREIGN KEY (tenant_id, plan_code) REFERENCES plans (tenant_id, code)
);

CREATE TABLE subscriptions (
    tenant_id             text        NOT NULL,
    id                    text        NOT NULL,
    customer_id           text        NOT NULL,
    start_date            date        NOT NULL,
    billing_anchor        date        NOT NULL,
    -- The first day without service (exclusive end); null while it runs.
    end_date              date,
    cancel_at_period_end  boolean     NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id)
);
CREATE INDEX subscriptions_by_customer ON subscriptions (tenant_id, customer_id);

-- The plan versions a subscription was on: [starts_on, ends_on) each, contiguous; the last has ends_on null.
CREATE TABLE subscription_phases (
    tenant_id        text    NOT NULL,
    subscription_id  text    NOT NULL,
    phase            integer NOT NULL CHECK (phase >= 1),
    plan_code        text    NOT NULL,
    plan_version     integer NOT NULL,
    starts_on        date    NOT NULL,
    ends_on          date,
    PRIMARY KEY (tenant_id, subscription_id, phase),
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES subscriptions (tenant_id, id),
    FOREIGN KEY (tenant_id, plan_code, plan_version) REFERENCES plan_versions (tenant_id, plan_code, version),
    CHECK (ends_on IS NULL OR ends_on > starts_on)
);
