-- Invoices, their lines and credit notes. Expand-only.

-- One invoice per (subscription, billing date): the day it bills for (the subscription's start for in-advance fees,
-- each period's end, a plan change's day). The unique key is what makes a billing run idempotent: a second run, or a
-- second server running at the same time, finds the row and creates nothing.
CREATE TABLE invoices (
    tenant_id        text        NOT NULL,
    id               text        NOT NULL,
    subscription_id  text        NOT NULL,
    customer_id      text        NOT NULL,
    billing_date     date        NOT NULL,
    reason           text        NOT NULL CHECK (reason IN ('subscription_start', 'period_end', 'plan_change', 'subscription_end')),
    -- The usage period the invoice closes ([period_start, period_end)); for a start or a plan change, the period it falls in.
    period_start     date        NOT NULL,
    period_end       date        NOT NULL,
    currency         text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('draft', 'finalized', 'paid', 'void')),
    -- Sequential per tenant without gaps, given at finalization (see invoice_number_counters).
    number           bigint,
    total            numeric     NOT NULL,
    -- Drafts become final at this time (billing date plus the tenant's grace period) unless finalized earlier.
    finalize_after   timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finalized_at     timestamptz,
    paid_at          timestamptz,
    voided_at        timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, subscription_id, billing_date),
    UNIQUE (tenant_id, number),
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES subscriptions (tenant_id, id),
    CHECK ((status = 'draft') = (number IS NULL))
);
CREATE INDEX invoices_by_customer ON invoices (tenant_id, customer_id, billing_date);
CREATE INDEX invoices_drafts ON invoices (finalize_after) WHERE status = 'draft';

-- The row lock on a tenant's counter serializes finalizations, so numbers have no gaps: a rolled-back finalization
-- rolls its number back with it.
CREATE TABLE invoice_number_counters (
    tenant_id    text   PRIMARY KEY REFERENCES tenants (id),
    last_number  bigint NOT NULL
);

-- kind: fixed_fee, usage, minimum_commitment_true_up, plan_change_credit, late_usage_adjustment.
-- For usage and adjustment lines, quantity is the meter's quantity for [service_from, service_to) that the line bills;
-- an adjustment bills the difference between the quantity now and what earlier invoices billed for that range.
CREATE TABLE invoice_lines (
    tenant_id       text     NOT NULL,
    invoice_id      text     NOT NULL,
    line_number     integer  NOT NULL CHECK (line_number >= 1),
    kind            text     NOT NULL,
    code            text     NOT NULL,
    meter           text,
    plan_code       text     NOT NULL,
    plan_version    integer  NOT NULL,
    quantity        numeric  NOT NULL DEFAULT 0,
    service_from    date     NOT NULL,
    service_to      date     NOT NULL,
    exact_amount    numeric  NOT NULL,
    amount          numeric  NOT NULL,
    -- The line's own explanation and per-tier breakdown (JSON), as the rating library produced them.
    description     text     NOT NULL,
    tiers           jsonb    NOT NULL DEFAULT '[]',
    -- For an adjustment: the invoice whose period it corrects.
    adjusts_invoice text,
    PRIMARY KEY (tenant_id, invoice_id, line_number),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id)
);
CREATE INDEX invoice_lines_usage ON invoice_lines (tenant_id, meter, service_from) WHERE meter IS NOT NULL;

CREATE TABLE credit_notes (
    tenant_id    text        NOT NULL,
    id           text        NOT NULL,
    invoice_id   text        NOT NULL,
    reason       text        NOT NULL,
    total        numeric     NOT NULL CHECK (total > 0),
    -- The admin key that made it (its public prefix) and when: the audit trail.
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id)
);

CREATE TABLE credit_note_lines (
    tenant_id       text    NOT NULL,
    credit_note_id  text    NOT NULL,
    line_number     integer NOT NULL,
    amount          numeric NOT NULL CHECK (amount > 0),
    PRIMARY KEY (tenant_id, credit_note_id, line_number),
    FOREIGN KEY (tenant_id, credit_note_id) REFERENCES credit_notes (tenant_id, id)
);
