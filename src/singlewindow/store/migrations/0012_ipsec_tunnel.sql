-- Issue 16 (SPEC D11): an MTA party reaches port 25 only through its own IPsec tunnel.
-- One tunnel per party: the party's IKE endpoint (gateway), the identity it
-- authenticates with, and how (a pre-shared key, kept in Ansible Vault and never here,
-- or a certificate from the party's CA). swctl render --target ipsec turns these rows
-- and the party's peer networks into strongSwan's connections, --target tunnels into
-- the firewall's per-tunnel rules.

-- The tunnel's reqid ties the kernel's SAs to the firewall rule that accepts what came
-- through them (nftables `ipsec in reqid`): allocated once, when the tunnel is added,
-- and never handed to another party, so a stale rule can never admit a new tunnel.
CREATE SEQUENCE ipsec_tunnel_reqid AS integer MINVALUE 1000 START 1000 NO CYCLE;

CREATE TABLE ipsec_tunnel (
    party_id   bigint PRIMARY KEY REFERENCES party ON DELETE CASCADE,
    reqid      integer NOT NULL UNIQUE DEFAULT nextval('ipsec_tunnel_reqid')
               CHECK (reqid >= 1000),
    -- One address, never a network: the only source IKE (and ESP) is taken from.
    gateway    inet NOT NULL
               CHECK (masklen(gateway) = CASE family(gateway) WHEN 4 THEN 32 ELSE 128 END),
    -- An address, FQDN, email address or DN (swanctl.conf quotes it): no character that
    -- could end the quoted value or open a section, no leading or trailing space.
    -- One identity per party: two parties with one identity could use each other's
    -- tunnel (and secrets are looked up by identity).
    remote_id  text NOT NULL UNIQUE
               CHECK (remote_id ~ '^[^"\\{}\s]([^"\\{}\t\n\r\f\v]*[^"\\{}\s])?$'
                      AND length(remote_id) <= 255),
    auth       text NOT NULL CHECK (auth IN ('psk', 'cert')),
    updated    timestamptz NOT NULL DEFAULT now()
);
ALTER SEQUENCE ipsec_tunnel_reqid OWNED BY ipsec_tunnel.reqid;

-- As the other directory tables (0007): swctl writes, the daemons only read. swctl
-- never picks a reqid itself (the sequence does) nor moves one (the firewall's rule
-- and the kernel's SAs name it).
REVOKE INSERT, UPDATE, DELETE ON ipsec_tunnel FROM sw_daemon;
REVOKE USAGE ON SEQUENCE ipsec_tunnel_reqid FROM sw_daemon;
REVOKE INSERT, UPDATE ON ipsec_tunnel FROM sw_admin;
GRANT INSERT (party_id, gateway, remote_id, auth, updated) ON ipsec_tunnel TO sw_admin;
GRANT UPDATE (gateway, remote_id, auth, updated) ON ipsec_tunnel TO sw_admin;
