CREATE INDEX orders_account_id_idx ON orders (account_id);
CREATE UNIQUE INDEX accounts_email_idx ON accounts (lower(email));
