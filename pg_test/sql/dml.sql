-- Reads and writes on DriftDB tables, with heap tables beside them.
CREATE FOREIGN TABLE users (id int NOT NULL, name varchar, age int)
  SERVER drift OPTIONS (primary_key 'id');
CREATE FOREIGN TABLE orders (id int NOT NULL, user_id int, total numeric)
  SERVER drift OPTIONS (primary_key 'id');
INSERT INTO users (id, name, age) VALUES (1, 'Alice', 30);
BEGIN; INSERT INTO users (id, name, age) VALUES (2, 'Bob', 25); COMMIT;
BEGIN; INSERT INTO users (id, name, age) VALUES (3, 'Eve', 99); ROLLBACK;
INSERT INTO orders VALUES (10, 1, 9.50), (11, 1, 20), (12, 2, 5);
SELECT u.name, sum(o.total) FROM users u JOIN orders o ON o.user_id = u.id GROUP BY 1 ORDER BY 1;
UPDATE users SET age = 31 WHERE id = 1;  DELETE FROM users WHERE id = 2;
SELECT * FROM users ORDER BY id;
-- RETURNING, and an UPDATE that changes the key.
INSERT INTO users VALUES (4, 'Dan', 40) RETURNING *;
UPDATE users SET age = age + 1 WHERE id = 4 RETURNING id, age;
UPDATE users SET id = 5 WHERE id = 4 RETURNING *;
DELETE FROM users WHERE id = 5 RETURNING *;
-- INSERT ... SELECT, from a heap table and from a DriftDB table.
CREATE TABLE heap_users (id int, name text, age int);
INSERT INTO heap_users SELECT g, 'user' || g, g % 50 FROM generate_series(100, 199) g;
INSERT INTO users SELECT * FROM heap_users;
INSERT INTO orders SELECT 1000 + id, id, id * 1.5 FROM users WHERE id >= 100;
SELECT count(*), min(id), max(id), sum(age) FROM users;
-- Joins both ways, CTEs, window functions, subqueries, views.
SELECT count(*) FROM users u JOIN heap_users h USING (id);
WITH big AS (SELECT user_id, total FROM orders WHERE total > 290)
SELECT u.name, b.total FROM big b JOIN users u ON u.id = b.user_id ORDER BY b.total;
SELECT id, age, rank() OVER (ORDER BY age DESC, id) FROM users WHERE id BETWEEN 100 AND 104 ORDER BY id;
SELECT name FROM users WHERE id IN (SELECT user_id FROM orders WHERE total = 9.50);
CREATE VIEW rich AS SELECT u.id, u.name, sum(o.total) AS spent
  FROM users u JOIN orders o ON o.user_id = u.id GROUP BY u.id, u.name;
SELECT * FROM rich WHERE spent > 295 ORDER BY id;
-- UPDATE ... FROM and DELETE ... USING with a heap table.
UPDATE users u SET name = upper(h.name) FROM heap_users h WHERE h.id = u.id AND h.id < 103;
SELECT id, name FROM users WHERE id < 105 ORDER BY id;
DELETE FROM users u USING heap_users h WHERE h.id = u.id AND h.age > 40;
SELECT count(*) FROM users;
-- A table without a primary key gets hidden row ids: duplicates are fine.
CREATE FOREIGN TABLE events (kind text, n int) SERVER drift;
INSERT INTO events VALUES ('a', 1), ('a', 1), ('b', 2);
UPDATE events SET n = 10 WHERE kind = 'b';
DELETE FROM events WHERE kind = 'a';
SELECT * FROM events;
-- Prepared statements and cursors.
PREPARE get_user(int) AS SELECT name FROM users WHERE id = $1;
EXECUTE get_user(1);
EXECUTE get_user(1);
BEGIN;
DECLARE c CURSOR FOR SELECT id FROM users ORDER BY id;
FETCH 2 FROM c;
FETCH 1 FROM c;
CLOSE c;
COMMIT;
-- COPY in and out.
COPY orders (id, user_id, total) FROM stdin;
5000	1	1.25
5001	1	2.50
\.
COPY (SELECT * FROM orders WHERE id >= 5000 ORDER BY id) TO stdout;
DROP VIEW rich;
DROP TABLE heap_users;
DROP FOREIGN TABLE users, orders, events;
