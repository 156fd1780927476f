-- A billing run writes a chunk's lines before its invoices, so that the lines are not written while the chunk holds the
-- tenant's invoice-number counter (which serializes the chunks of a tenant): it defers this check to its commit with
-- SET CONSTRAINTS. INITIALLY IMMEDIATE keeps every other statement, and an older server, checking as before. Catalog
-- change only (no table rewrite, no new constraint to validate).
ALTER TABLE invoice_lines ALTER CONSTRAINT invoice_lines_tenant_id_invoice_id_fkey DEFERRABLE INITIALLY IMMEDIATE;
