-- Tenants and their API keys. Expand-only: new tables, nothing an older server reads changes.
CREATE TABLE tenants (
    id          text        PRIMARY KEY,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Keys are stored as SHA-256 of the key (as src/Ingest ApiKey.Hash makes it), never the key itself.
-- scopes is the text form ApiKey.FormatScopes writes ("ingest,read,admin"), so a new scope needs no schema change.
CREATE TABLE api_keys (
    id          uuid        PRIMARY KEY,
    tenant_id   text        NOT NULL REFERENCES tenants (id),
    name        text        NOT NULL,
    prefix      text        NOT NULL,
    sha256      bytea       NOT NULL UNIQUE CHECK (length(sha256) = 32),
    scopes      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);

-- One row, bumped in the same transaction as every key change. Servers poll it (one tiny query a second)
-- and reload their in-memory key set only when it moved. The row lock orders the bumps by commit, which a
-- timestamp or a sequence would not.
CREATE TABLE api_key_generation (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    generation  bigint      NOT NULL
);
INSERT INTO api_key_generation (singleton, generation) VALUES (true, 0);
