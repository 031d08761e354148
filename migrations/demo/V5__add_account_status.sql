ALTER TABLE accounts ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
UPDATE accounts SET status = 'vip'
WHERE id IN (SELECT account_id FROM orders GROUP BY account_id HAVING sum(total_cents) > 5000);
