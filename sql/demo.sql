-- The demo database of `make run`: two DriftDB tables with a little history.
CREATE EXTENSION driftdb;

CREATE FOREIGN TABLE users (
    id   int NOT NULL,
    name text NOT NULL,
    age  int DEFAULT 0 CHECK (age >= 0)
) SERVER drift OPTIONS (primary_key 'id');

CREATE FOREIGN TABLE orders (
    id      int NOT NULL,
    user_id int NOT NULL,
    total   numeric NOT NULL,
    placed  timestamptz NOT NULL DEFAULT now()
) SERVER drift OPTIONS (primary_key 'id');

INSERT INTO users VALUES (1, 'Alice', 30), (2, 'Bob', 25), (3, 'Carol', 41);
INSERT INTO orders (id, user_id, total) VALUES (10, 1, 9.50), (11, 1, 20), (12, 2, 5), (13, 3, 12.25);
UPDATE users SET age = 31 WHERE id = 1;
DELETE FROM orders WHERE id = 12;
SELECT drift_create_index('orders', 'user_id');
ANALYZE users;
ANALYZE orders;
