-- Issue 13: the daemons answer from an in-memory copy of the directory
-- (singlewindow.store.snapshot) and reload it when it changes. Every change to a
-- directory table bumps one generation number, in the writer's transaction, and
-- NOTIFYs the channel sw_directory with it at commit; each daemon LISTENs there.
-- The generation is read in the same snapshot as the tables, so a loaded copy knows
-- exactly which change it holds, and a lookup that misses can ask, in one short
-- statement, whether a newer one exists (a party added a moment ago) before refusing.

CREATE TABLE directory_state (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    generation  bigint NOT NULL
);
INSERT INTO directory_state (generation) VALUES (1);

-- SECURITY DEFINER: runs as the owner, so the writers (sw_admin) need no right on
-- directory_state, and no role but the owner can move the generation by itself.
CREATE FUNCTION directory_changed() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    next bigint;
BEGIN
    UPDATE public.directory_state SET generation = generation + 1 RETURNING generation
        INTO next;
    PERFORM pg_notify('sw_directory', next::text);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION directory_changed() FROM PUBLIC;

-- Per statement, not per row: a bulk change is one generation and one notification.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['party', 'peer_network', 'account', 'address', 'link',
                                'route'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION directory_changed()',
                       name || '_changed', name);
        EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION directory_changed()',
                       name || '_truncated', name);
    END LOOP;
END
$$;

-- Everybody who reads the directory reads the generation; only the trigger writes it
-- (the owner's default privileges of 0007 granted sw_daemon and sw_admin more).
REVOKE INSERT, UPDATE, DELETE ON directory_state FROM sw_daemon, sw_admin;
GRANT SELECT ON directory_state TO sw_daemon, sw_admin;
