"""A session of OpenStack's etcd3gw (an HTTP/JSON gateway client: tooz and thus Cinder, Designate,
Neutron coordinate through it) against one endpoint. Prints one line per step; the test runs it
against real etcd and against oxcd and compares the transcripts. Ids that differ between servers
(cluster, member, lease ids chosen by the server) are left out; revisions are printed."""

import sys

import etcd3gw

host, port = sys.argv[1], int(sys.argv[2])
c = etcd3gw.client(host=host, port=port, timeout=10)


def say(*parts):
    print(*parts, flush=True)


say("api path", c.api_path)
st = c.status()
say("status has", sorted(k for k in st if k in ("header", "version", "dbSize", "leader", "raftIndex", "raftTerm")))
say("members", [(m.get("name"), len(m.get("peerURLs", [])), len(m.get("clientURLs", []))) for m in c.members()])

say("put", c.put("k1", "v1"))
say("put", c.put(b"k2", b"v2"))
say("get", c.get("k1"))
say("get metadata", [(v, m["create_revision"], m["mod_revision"], m["version"]) for v, m in c.get("k1", metadata=True)])
say("get missing", c.get("nope"))
say("create new", c.create("k3", "v3"))
say("create existing", c.create("k3", "other"))
say("replace ok", c.replace("k3", "v3", "v3b"))
say("replace stale", c.replace("k3", "v3", "v3c"))
say("get_prefix", c.get_prefix("k"))
say("get_prefix sorted", c.get_prefix("k", sort_order="descend", sort_target="mod"))
say("get_all", [v for v in c.get_all()])
say("delete", c.delete("k2"))
say("delete missing", c.delete("k2"))
say("delete_prefix", c.delete_prefix("k"))
say("after", c.get_prefix("k"))

lease = c.lease(ttl=30)
say("lease ttl", lease.ttl() in (29, 30))
say("put with lease", c.put("leased", "v", lease=lease))
say("lease keys", lease.keys())
say("lease refresh", lease.refresh())
say("lease revoke", lease.revoke())
say("leased key after revoke", c.get("leased"))

lock = c.lock(id="my-lock", ttl=20)
say("lock acquire", lock.acquire())
say("lock is_acquired", lock.is_acquired())
other = c.lock(id="my-lock", ttl=20)
say("second lock acquire", other.acquire())
say("lock release", lock.release())
say("second lock acquire after release", other.acquire())
say("second lock release", other.release())

# Watches, from a revision (so nothing depends on how fast a watch is set up): one event on a
# key, then a prefix stream with a put and a delete.
def revision():
    return int(c.status()["header"]["revision"])


rev = revision()
c.put("w/one", "1")
ev = c.watch_once("w/one", timeout=10, start_revision=rev + 1)
say("watch_once", ev["kv"]["key"], ev["kv"]["value"], ev["kv"]["version"])
rev = revision()
c.put("w/two", "2")
events, cancel = c.watch_prefix("w/", start_revision=rev + 1)
got = next(events)
say("watch_prefix", got["kv"]["key"], got["kv"]["value"], got.get("type", "PUT"))
c.delete("w/two")
got = next(events)
say("watch_prefix", got["kv"]["key"], got.get("type", "PUT"), got["kv"]["mod_revision"])
cancel()
say("revision", c.get("w/one", metadata=True)[0][1]["mod_revision"])
