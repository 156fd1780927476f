-- Contract: no query reads lines by (tenant, meter, service_from) any more. The billing run reads a subscription's
-- billed lines through its invoices (by the lines' primary key); the only plan that used this index scanned every usage
-- line of the tenant for each chunk. Dropping it also saves its upkeep on every usage line written. An older server
-- runs unchanged without it (no statement names it).
DROP INDEX IF EXISTS invoice_lines_usage;
