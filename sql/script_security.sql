--
-- script_security: CREATE EXTENSION, ALTER EXTENSION UPDATE (from 1.0, 1.1
-- and 1.2), twocache_track and twocache_untrack run none of the functions
-- and operators that another role planted in the extension's schema
-- (CVE-2018-1058; PostgreSQL's "Security Considerations for Extension
-- Scripts").  Each planted object logs that it ran and tries to make its
-- creator a superuser, which works only when a superuser runs it.
--
CREATE ROLE regress_attacker;
CREATE ROLE regress_attack_app;
GRANT CREATE ON SCHEMA public TO PUBLIC;

SET ROLE regress_attacker;
CREATE TABLE public.regress_attack_log (what text, run_by text);
GRANT INSERT ON public.regress_attack_log TO PUBLIC;

-- the payload of every planted object
CREATE FUNCTION public.regress_attack(what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.regress_attack_log VALUES (what, current_user);
	BEGIN
		ALTER ROLE regress_attacker SUPERUSER;
	EXCEPTION WHEN insufficient_privilege THEN
		NULL;
	END;
	RAISE NOTICE 'planted % ran as %', what, current_user;
END
$$;

-- functions that beat pg_catalog's by an exact match of argument types
CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_attack('quote_ident(name)');
	RETURN pg_catalog.quote_ident($1::pg_catalog.text);
END
$$;
CREATE FUNCTION public.lower(name) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_attack('lower(name)');
	RETURN pg_catalog.lower($1::pg_catalog.text);
END
$$;
CREATE FUNCTION public.format(text, regprocedure) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_attack('format(text, regprocedure)');
	RETURN pg_catalog.format($1, $2);
END
$$;
CREATE FUNCTION public.format(text, regprocedure, text, text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_attack('format(text, regprocedure, text, text)');
	RETURN pg_catalog.format($1, $2, $3, $4);
END
$$;
CREATE FUNCTION public.format(text, regprocedure, name, text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_attack('format(text, regprocedure, name, text)');
	RETURN pg_catalog.format($1, $2, $3, $4);
END
$$;
CREATE FUNCTION public.format(text, regclass) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_attack('format(text, regclass)');
	RETURN pg_catalog.format($1, $2);
END
$$;
-- a functional-notation cast (text(name) would not do: pg_catalog has it)
CREATE FUNCTION public.regprocedure(text) RETURNS regprocedure LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_attack('regprocedure(text)');
	RETURN pg_catalog.to_regprocedure($1);
END
$$;

-- operators that beat pg_catalog's by an exact match of operand types
CREATE FUNCTION public.regress_attack_oid_regprocedure(oid, regprocedure) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_attack('=(oid, regprocedure)');
	RETURN $1 OPERATOR(pg_catalog.=) $2::pg_catalog.oid;
END
$$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regprocedure,
						  FUNCTION = public.regress_attack_oid_regprocedure);
CREATE FUNCTION public.regress_attack_regprocedure_oid(regprocedure, oid) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_attack('=(regprocedure, oid)');
	RETURN $1::pg_catalog.oid OPERATOR(pg_catalog.=) $2;
END
$$;
CREATE OPERATOR public.= (LEFTARG = regprocedure, RIGHTARG = oid,
						  FUNCTION = public.regress_attack_regprocedure_oid);
CREATE FUNCTION public.regress_attack_oid_regclass(oid, regclass) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_attack('=(oid, regclass)');
	RETURN $1 OPERATOR(pg_catalog.=) $2::pg_catalog.oid;
END
$$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass,
						  FUNCTION = public.regress_attack_oid_regclass);
CREATE FUNCTION public.regress_attack_oid_int(oid, integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_attack('=(oid, integer)');
	RETURN $1 OPERATOR(pg_catalog.=) $2::pg_catalog.oid;
END
$$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = integer,
						  FUNCTION = public.regress_attack_oid_int);
CREATE FUNCTION public.regress_attack_oid_int_ne(oid, integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_attack('<>(oid, integer)');
	RETURN $1 OPERATOR(pg_catalog.<>) $2::pg_catalog.oid;
END
$$;
CREATE OPERATOR public.<> (LEFTARG = oid, RIGHTARG = integer,
						   FUNCTION = public.regress_attack_oid_int_ne);
CREATE FUNCTION public.regress_attack_text_name(text, name) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_attack('||(text, name)');
	RETURN $1 OPERATOR(pg_catalog.||) $2::pg_catalog.text;
END
$$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = name,
						   FUNCTION = public.regress_attack_text_name);
-- the traps work: unqualified calls of the attacker's own resolve to them
-- (ALTER ROLE fails for the attacker itself, so only the log grows)
SELECT quote_ident('x'::name), lower('X'::name),
	   regprocedure('pg_catalog.now()'::text) AS regprocedure,
	   format('%s', 'pg_catalog.now()'::regprocedure) AS f1,
	   format('%s %s%s', 'pg_catalog.now()'::regprocedure, 'a'::text, 'b'::text) AS f2,
	   format('%s %I%s', 'pg_catalog.now()'::regprocedure, 'a'::name, 'b'::text) AS f3,
	   format('%s', 'pg_class'::regclass) AS f4;
SELECT 1::oid = 'pg_catalog.now()'::regprocedure AS a,
	   'pg_catalog.now()'::regprocedure = 1::oid AS b,
	   1::oid = 'pg_class'::regclass AS c,
	   1::oid = 0 AS d,
	   1::oid <> 0 AS e,
	   'x'::text || 'y'::name AS f;
SELECT what, run_by FROM regress_attack_log ORDER BY what;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_attacker';
TRUNCATE regress_attack_log;
RESET ROLE;

-- a superuser's view of what ran; kept in a temp view so the checks below
-- use no operator an attacker could plant
CREATE TEMP VIEW regress_attack_fired AS
SELECT (SELECT count(*) FROM public.regress_attack_log) AS fired,
	   (SELECT pg_catalog.string_agg(DISTINCT what, ', ' ORDER BY what)
		FROM public.regress_attack_log) AS what,
	   (SELECT rolsuper FROM pg_catalog.pg_roles
		WHERE rolname OPERATOR(pg_catalog.=) 'regress_attacker'::name) AS attacker_superuser;
SELECT * FROM regress_attack_fired;

--
-- a fresh install
--
DROP EXTENSION twocache;
CREATE EXTENSION twocache;
SELECT extversion FROM pg_extension WHERE extname OPERATOR(pg_catalog.=) 'twocache'::name;
SELECT * FROM regress_attack_fired;

--
-- 1.0, then ALTER EXTENSION UPDATE through 1.0--1.1, 1.1--1.2, 1.2--1.3
-- and 1.3--1.4, with grants to copy (so the copying loops run)
--
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.0';
SELECT * FROM regress_attack_fired;
REVOKE EXECUTE ON FUNCTION twocache_get(text, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval) TO regress_attack_app
	WITH GRANT OPTION;
GRANT EXECUTE ON FUNCTION twocache_set(text, text, interval, text) TO regress_attack_app;
ALTER EXTENSION twocache UPDATE;
SELECT extversion FROM pg_extension WHERE extname OPERATOR(pg_catalog.=) 'twocache'::name;
SELECT * FROM regress_attack_fired;
-- and the grants were copied all the same
SELECT has_function_privilege('regress_attack_app', 'twocache_get(text)',
							  'EXECUTE WITH GRANT OPTION') AS app_lookup,
	   has_function_privilege('regress_attack_app', 'twocache_get(text, text, interval, text[], text[])',
							  'EXECUTE WITH GRANT OPTION') AS app_fill,
	   has_function_privilege('regress_attack_app', 'twocache_set(text, text, interval, text, text[])',
							  'EXECUTE') AS app_set,
	   has_function_privilege('public', 'twocache_get(text)', 'EXECUTE') AS public_lookup;

--
-- 1.1 (the flat twocache--1.1.sql), then ALTER EXTENSION UPDATE through
-- 1.1--1.2, 1.2--1.3 and 1.3--1.4
--
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.1';
SELECT * FROM regress_attack_fired;
GRANT EXECUTE ON FUNCTION twocache_get(text, text, interval, text[]) TO regress_attack_app;
ALTER EXTENSION twocache UPDATE;
SELECT extversion FROM pg_extension WHERE extname OPERATOR(pg_catalog.=) 'twocache'::name;
SELECT * FROM regress_attack_fired;
SELECT has_function_privilege('regress_attack_app', 'twocache_get(text)', 'EXECUTE') AS app_lookup,
	   has_function_privilege('regress_attack_app', 'twocache_get(text, text, interval, text[], text[])',
							  'EXECUTE') AS app_fill,
	   has_function_privilege('public', 'twocache_get(text, text, interval, text[], text[])',
							  'EXECUTE') AS public_fill;

--
-- 1.2 (the flat twocache--1.2.sql), then ALTER EXTENSION UPDATE through
-- 1.2--1.3, with privileges on twocache_status to copy, PUBLIC's revoked
--
DROP EXTENSION twocache;
CREATE EXTENSION twocache VERSION '1.2';
SELECT * FROM regress_attack_fired;
REVOKE EXECUTE ON FUNCTION twocache_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION twocache_status() TO regress_attack_app WITH GRANT OPTION;
ALTER EXTENSION twocache UPDATE;
SELECT extversion FROM pg_extension WHERE extname OPERATOR(pg_catalog.=) 'twocache'::name;
SELECT * FROM regress_attack_fired;
SELECT has_function_privilege('regress_attack_app', 'twocache_status()',
							  'EXECUTE WITH GRANT OPTION') AS app_status,
	   has_function_privilege('public', 'twocache_status()', 'EXECUTE') AS public_status;

--
-- twocache_track and twocache_untrack, called by a superuser
--
CREATE TABLE public.regress_attack_t (v int);
SELECT twocache_track('public.regress_attack_t'::regclass);
SELECT twocache_track('public.regress_attack_t'::regclass);
SELECT tgname FROM pg_catalog.pg_trigger
WHERE tgrelid OPERATOR(pg_catalog.=) 'public.regress_attack_t'::regclass::oid;
SELECT twocache_set('attack:k', 'v', NULL, NULL, ARRAY['public.regress_attack_t']);
INSERT INTO public.regress_attack_t VALUES (1);
SELECT twocache_get('attack:k') IS NULL AS invalidated;
SELECT twocache_untrack('public.regress_attack_t'::regclass);
SELECT count(*) AS triggers FROM pg_catalog.pg_trigger
WHERE tgrelid OPERATOR(pg_catalog.=) 'public.regress_attack_t'::regclass::oid;
SELECT * FROM regress_attack_fired;

--
-- clean up: the planted objects, the grant, the roles; a fresh 1.3
--
DROP TABLE public.regress_attack_t;
DROP VIEW regress_attack_fired;
DROP EXTENSION twocache;
DROP OWNED BY regress_attacker;
DROP OWNED BY regress_attack_app;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
DROP ROLE regress_attacker;
DROP ROLE regress_attack_app;
CREATE EXTENSION twocache;
SELECT extversion FROM pg_extension WHERE extname = 'twocache';
SELECT count(*) AS planted_left FROM pg_proc
WHERE pronamespace = 'public'::regnamespace AND proname NOT LIKE 'twocache\_%';
SELECT count(*) AS operators_left FROM pg_operator
WHERE oprnamespace = 'public'::regnamespace;
