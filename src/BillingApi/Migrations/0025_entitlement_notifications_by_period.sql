-- The threshold check reads a tenant's announcements of the current period once per server start and month: this
-- index finds them without reading the tenant's earlier periods too. Expand-only.
CREATE INDEX entitlement_notifications_by_period ON entitlement_notifications (tenant_id, period_start);
