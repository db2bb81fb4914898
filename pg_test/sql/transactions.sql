-- Transactions: own writes are visible, rolled-back work leaves no trace.
CREATE FOREIGN TABLE acct (id int NOT NULL, balance int) SERVER drift OPTIONS (primary_key 'id');
BEGIN;
INSERT INTO acct VALUES (1, 100), (2, 50);
SELECT * FROM acct ORDER BY id;
UPDATE acct SET balance = balance - 30 WHERE id = 1;
UPDATE acct SET balance = balance + 30 WHERE id = 2;
SELECT * FROM acct ORDER BY id;
COMMIT;
SELECT * FROM acct ORDER BY id;
-- ROLLBACK TO SAVEPOINT undoes exactly the work after the savepoint.
BEGIN;
INSERT INTO acct VALUES (3, 1);
SAVEPOINT s1;
DELETE FROM acct WHERE id = 1;
INSERT INTO acct VALUES (4, 4);
SAVEPOINT s2;
UPDATE acct SET balance = 0 WHERE id = 2;
ROLLBACK TO s2;
SELECT * FROM acct ORDER BY id;
ROLLBACK TO s1;
SELECT * FROM acct ORDER BY id;
RELEASE s1;
COMMIT;
SELECT * FROM acct ORDER BY id;
-- A failed statement inside a savepoint leaves the rest of the transaction intact.
BEGIN;
SAVEPOINT s;
INSERT INTO acct VALUES (5, 5), (1, 1);
ROLLBACK TO s;
INSERT INTO acct VALUES (6, 6);
COMMIT;
SELECT * FROM acct ORDER BY id;
-- An aborted transaction leaves nothing.
BEGIN;
INSERT INTO acct VALUES (7, 7);
DELETE FROM acct;
SELECT count(*) FROM acct;
ROLLBACK;
SELECT * FROM acct ORDER BY id;
-- One statement does not see its own changes (no Halloween problem).
INSERT INTO acct SELECT id + 10, balance FROM acct;
SELECT count(*) FROM acct;
-- PREPARE TRANSACTION cannot carry DriftDB writes.
BEGIN;
INSERT INTO acct VALUES (99, 99);
PREPARE TRANSACTION 'p1';
SELECT count(*) FROM acct WHERE id = 99;
-- Nor DriftDB index or drop work, which COMMIT PREPARED would lose.
BEGIN;
SELECT drift_create_index('acct', 'balance');
PREPARE TRANSACTION 'p2';
SELECT indexes FROM drift_tables WHERE table_name = 'acct'::regclass;
CREATE FOREIGN TABLE acct_gone (id int) SERVER drift;
BEGIN;
DROP FOREIGN TABLE acct_gone;
PREPARE TRANSACTION 'p3';
SELECT count(*) FROM acct_gone;
DROP FOREIGN TABLE acct_gone;
-- SERIALIZABLE is refused rather than silently weaker.
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT count(*) FROM acct;
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
INSERT INTO acct VALUES (50, 50);
ROLLBACK;
DROP FOREIGN TABLE acct;
