-- A small backfill: a few rows per tenant, so the next migration has data to rewrite.
INSERT INTO accounts (email)
SELECT 'user' || n || '@example.test' FROM generate_series(1, 50) AS n;
INSERT INTO orders (account_id, total_cents)
SELECT a.id, (a.id * 137) % 10000 FROM accounts a;
