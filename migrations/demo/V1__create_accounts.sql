-- Accounts of one tenant. Unqualified names land in the tenant's schema (Flyway sets search_path).
CREATE TABLE accounts (
    id         BIGSERIAL PRIMARY KEY,
    email      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
