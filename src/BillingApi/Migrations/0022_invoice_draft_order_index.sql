-- Finalization numbers a tenant's due drafts in billing-date order, a chunk at a time: this index hands them over in
-- that order without sorting every draft for each chunk. Expand-only.
CREATE INDEX invoices_drafts_in_order ON invoices (tenant_id, billing_date, id) WHERE status = 'draft';
