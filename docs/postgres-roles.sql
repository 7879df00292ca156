-- Least-privilege group roles of the store on PostgreSQL (see docs/postgres-roles.md).
--
--   psql -v ON_ERROR_STOP=1 -f docs/postgres-roles.sql "$OWNER_URL"              # roles qa_batch, qa_dashboard_read, qa_dashboard
--   psql -v ON_ERROR_STOP=1 -v prefix=site1 -f docs/postgres-roles.sql "$OWNER_URL"  # site1_batch, ...
--
-- Run it as the role that owns the tables (the one that ran `alembic upgrade head`), after every migration: it is
-- idempotent (one transaction; it revokes these roles' table and sequence privileges in the schema, then grants the
-- matrix below again). It creates the three NOLOGIN group roles when they are missing, which needs CREATEROLE; a DBA
-- may create them beforehand instead. It stops when a table of the schema is not in its classification below, or a
-- table of it is missing (the store is not at head): a migration that adds a table must add it here.
--
--   <prefix>_batch           the nightly batch and `pipeline protocol`: reads and writes the results tables,
--                            reads alembic_version, INSERT on audit_log (a deployed temperature is an audited
--                            configuration change) and SELECT on it (the run verifies the hash chain); nothing
--                            of users, sessions or review_items.
--   <prefix>_dashboard_read  SELECT on every table, except users.password_hash and user_sessions.token_hash.
--   <prefix>_dashboard       <prefix>_dashboard_read, plus exactly the review service's writes: SELECT on users
--                            (password hashes, to check logins), UPDATE (last_login_at) of users, SELECT/INSERT on
--                            user_sessions and UPDATE of its last_seen_at, revoked_at and revoked_reason, SELECT/
--                            INSERT/UPDATE on login_throttle, INSERT/UPDATE on review_items, INSERT on
--                            audit_log, UPDATE (opened_at) of study_assignments, USAGE on the review_items and
--                            user_sessions id sequences. No DELETE
--                            anywhere; no INSERT into users (user management stays with the owner: `python -m
--                            pipeline users add`).
--
-- audit_log's rows are sealed by its trigger (migration 0005, SECURITY DEFINER, owned by the owner): whatever an
-- INSERT of these roles gives, the id, time, actor name (from actor_id), database role and hashes are the server's,
-- so no role here needs the id sequence of audit_log.
--
-- ALTER DEFAULT PRIVILEGES is deliberately not used: a new table must be classified, not granted blindly.
-- Login roles are the DBA's, e.g. CREATE ROLE qa_app LOGIN PASSWORD '...' IN ROLE qa_dashboard;

\set ON_ERROR_STOP 1
\if :{?prefix}
\else
\set prefix qa
\endif
\set batch_role :prefix _batch
\set read_role :prefix _dashboard_read
\set dashboard_role :prefix _dashboard

BEGIN;

-- Every table of the schema, classified. results: the batch's; review: the review service's; meta: Alembic's.
CREATE TEMPORARY TABLE qa_roles_tables (name text PRIMARY KEY, kind text NOT NULL) ON COMMIT DROP;
INSERT INTO qa_roles_tables (name, kind) VALUES
    ('alembic_version', 'meta'),
    ('model_sets', 'results'), ('members', 'results'), ('configurations', 'results'), ('patients', 'results'),
    ('images', 'results'), ('protocols', 'results'), ('split_roles', 'results'), ('temperature_fits', 'results'),
    ('runs', 'results'), ('case_failures', 'results'), ('processings', 'results'), ('case_results', 'results'),
    ('metric_values', 'results'), ('structure_results', 'results'), ('curve_points', 'results'),
    ('reliability_bins', 'results'), ('artifacts', 'results'), ('result_regions', 'results'),
    ('reference_attachments', 'results'),
    ('users', 'review'), ('user_sessions', 'review'), ('login_throttle', 'review'), ('review_items', 'review'),
    ('audit_log', 'review'), ('trend_levels', 'review'), ('review_time', 'review'),
    ('studies', 'review'), ('study_cases', 'review'), ('study_reviewers', 'review'), ('study_assignments', 'review');

DO $$
DECLARE
    unclassified text;
    missing text;
BEGIN
    SELECT string_agg(t.tablename, ', ' ORDER BY t.tablename) INTO unclassified
    FROM pg_tables t WHERE t.schemaname = current_schema()
      AND t.tablename NOT IN (SELECT name FROM qa_roles_tables);
    IF unclassified IS NOT NULL THEN
        RAISE EXCEPTION 'tables not classified in docs/postgres-roles.sql: % (add each to its list of tables)',
            unclassified;
    END IF;
    SELECT string_agg(c.name, ', ' ORDER BY c.name) INTO missing
    FROM qa_roles_tables c
    WHERE c.name NOT IN (SELECT tablename FROM pg_tables WHERE schemaname = current_schema());
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'tables missing from schema %: % (run `alembic upgrade head` first, as this role)',
            current_schema(), missing;
    END IF;
END $$;

-- The group roles: created when missing, never able to log in themselves.
SELECT format('CREATE ROLE %I NOLOGIN', r)
FROM unnest(ARRAY[:'batch_role', :'read_role', :'dashboard_role']) AS r
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec
SELECT format('ALTER ROLE %I NOLOGIN', r)
FROM unnest(ARRAY[:'batch_role', :'read_role', :'dashboard_role']) AS r
WHERE EXISTS (SELECT FROM pg_roles WHERE rolname = r AND rolcanlogin) \gexec

-- Start from nothing in this schema (table revokes take the column privileges with them), then grant the matrix.
SELECT format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', current_schema(), r),
       format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I', current_schema(), r),
       format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), r),
       format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), r)
FROM unnest(ARRAY[:'batch_role', :'read_role', :'dashboard_role']) AS r \gexec

-- <prefix>_batch: the results tables and their id sequences; alembic_version to check the schema head.
-- (Measured writes: INSERT everywhere, UPDATE runs/patients/images, DELETE processings/artifacts/protocols/
-- temperature_fits; the grant is per kind of table so that a new results table needs no new rule.)
SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO %I', current_schema(), name, :'batch_role')
FROM qa_roles_tables WHERE kind = 'results' ORDER BY name \gexec
SELECT format('GRANT SELECT ON %I.alembic_version TO %I', current_schema(), :'batch_role') \gexec
SELECT format('GRANT USAGE ON SEQUENCE %s TO %I', s.seq, :'batch_role')
FROM (SELECT pg_get_serial_sequence(format('%I.%I', current_schema(), c.name), a.attname) AS seq
      FROM qa_roles_tables c JOIN pg_attribute a ON a.attrelid = format('%I.%I', current_schema(), c.name)::regclass
      WHERE c.kind = 'results' AND a.attnum > 0 AND NOT a.attisdropped) s
WHERE s.seq IS NOT NULL ORDER BY s.seq \gexec
SELECT format('GRANT INSERT, SELECT ON %1$I.audit_log TO %2$I', current_schema(), :'batch_role') \gexec
-- the trend levels an admin set (the batch checks its run against them)
SELECT format('GRANT SELECT ON %1$I.trend_levels TO %2$I', current_schema(), :'batch_role') \gexec
-- PostgreSQL 17+: let the batch's ANALYZE after a load refresh the planner statistics of its tables (on older
-- servers a non-owner's ANALYZE skips them with a warning and autovacuum's autoanalyze does it shortly after).
SELECT current_setting('server_version_num')::int >= 170000 AS qa_roles_has_maintain \gset
\if :qa_roles_has_maintain
SELECT format('GRANT MAINTAIN ON %I.%I TO %I', current_schema(), name, :'batch_role')
FROM qa_roles_tables WHERE kind = 'results' ORDER BY name \gexec
\endif

-- <prefix>_dashboard_read: every table, users without its password hashes, user_sessions without its token hashes.
SELECT format('GRANT SELECT ON %I.%I TO %I', current_schema(), name, :'read_role')
FROM qa_roles_tables WHERE name NOT IN ('users', 'user_sessions') ORDER BY name \gexec
SELECT format('GRANT SELECT (%s) ON %I.%I TO %I', string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
              current_schema(), t.name, :'read_role')
FROM (VALUES ('users', 'password_hash'), ('user_sessions', 'token_hash')) AS t(name, secret)
JOIN pg_attribute a ON a.attrelid = format('%I.%I', current_schema(), t.name)::regclass
WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attname <> t.secret
GROUP BY t.name ORDER BY t.name \gexec

-- <prefix>_dashboard: the read role plus the writes of pipeline/review/ (service, accounts, sessions, throttle).
-- Single sign-on reads the user row with SELECT ... FOR UPDATE, which needs an UPDATE privilege on some column of
-- users; the throttle locks its rows the same way.
SELECT format('GRANT %I TO %I', :'read_role', :'dashboard_role')
WHERE NOT pg_has_role(:'dashboard_role', :'read_role', 'MEMBER') \gexec
SELECT format('GRANT SELECT ON %1$I.users TO %2$I', current_schema(), :'dashboard_role'),
       format('GRANT UPDATE (last_login_at) ON %1$I.users TO %2$I', current_schema(), :'dashboard_role'),
       format('GRANT SELECT, INSERT, UPDATE (last_seen_at, revoked_at, revoked_reason) ON %1$I.user_sessions TO %2$I',
              current_schema(), :'dashboard_role'),
       format('GRANT SELECT, INSERT, UPDATE ON %1$I.login_throttle TO %2$I', current_schema(), :'dashboard_role'),
       format('GRANT SELECT, INSERT, UPDATE ON %1$I.review_items TO %2$I', current_schema(), :'dashboard_role'),
       format('GRANT SELECT, INSERT, UPDATE ON %1$I.review_time TO %2$I', current_schema(), :'dashboard_role'),
       format('GRANT INSERT ON %1$I.audit_log TO %2$I', current_schema(), :'dashboard_role'),
       -- a reviewer's first opening of a study case (studies are defined and closed by the owner: `pipeline study`)
       format('GRANT UPDATE (opened_at) ON %1$I.study_assignments TO %2$I', current_schema(), :'dashboard_role'),
       format('GRANT SELECT, INSERT, UPDATE, DELETE ON %1$I.trend_levels TO %2$I', current_schema(), :'dashboard_role'),
       format('GRANT USAGE ON SEQUENCE %s, %s, %s TO %I',
              pg_get_serial_sequence(format('%I.review_items', current_schema()), 'id'),
              pg_get_serial_sequence(format('%I.user_sessions', current_schema()), 'id'),
              pg_get_serial_sequence(format('%I.review_time', current_schema()), 'id'), :'dashboard_role') \gexec

COMMIT;
