"""A minimal Wharf content type in Python: a starting point to copy.

`notes` repositories hold files by name: `upload` stores the uploaded bytes
(the host stores them: `store_range`, nothing read into the plugin) under
`params.name`; `publish` writes an index {name: digest}; `resolve` serves
`GET /notes/<repository>/<name>` as a blob. Build it from the repository root:

    target/python-venv/bin/componentize-py -d wit -w content-plugin componentize app \\
        -p sdk/python/template -p sdk/python -o notes.wasm
    wharf plugin install notes.wasm

Test it: `cd sdk/python/template && python -m pytest -q tests`.
"""

import json
import re

from wharf_sdk import PluginError, plans
from wharf_sdk.cache import DigestCache
from wharf_sdk.exports import Plugin as PluginProtocol
from wharf_sdk.exports import route, task, write_route
from wharf_sdk.host import Unit, WasmHost
from wharf_sdk.jsondoc import dumps_versioned, loads_versioned, settings
from wharf_sdk.paging import list_all

UNIT = "note"
ROUTE = "/notes/"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
INDEXES = DigestCache()


# ---- logic, written against any host (WasmHost or the tests' FakeHost)

def upload(host, source, params):
    name = settings(params, "import parameters").get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise PluginError.invalid('give a name: {"params": {"name": "a-note.txt"}} (letters, digits, ._-)')
    size = source.len()
    digest = source.store_range(0, size, None)  # the host copies and hashes
    for old in list_all(host, UNIT):
        if json.loads(old.metadata)["name"] == name and old.key != f"{name}:{digest}":
            host.remove_unit(UNIT, old.key)
    host.add_unit(Unit(unit_type=UNIT, key=f"{name}:{digest}",
                       metadata=json.dumps({"name": name, "digest": digest}), blobs=[digest]))
    return plans.summary(units_added=1, bytes_stored=size, message=f"stored {name}")


def publish(host, repo):
    notes = {json.loads(u.metadata)["name"]: json.loads(u.metadata)["digest"] for u in list_all(host, UNIT)}
    index = host.store_bytes(dumps_versioned({"notes": notes}, 1))
    return plans.published(repo.id, index, message=f"published {len(notes)} notes at {ROUTE}{repo.id}/")


def resolve(host, req):
    if req.method not in ("GET", "HEAD"):
        return plans.failure(405, "method-not-allowed", "use GET or HEAD")
    parts = req.path[len(ROUTE):].split("/")
    if len(parts) != 2:
        return plans.failure(404, "not-found", f"ask for {ROUTE}<repository>/<name>")
    publication = host.lookup(parts[0])  # only the repository the host admitted
    if publication is None:
        return plans.failure(404, "not-found", f"no published repository {parts[0]}")
    index = INDEXES.get_or_load(
        publication.index,
        lambda: (loads_versioned(host.read_blob(publication.index, 64 << 20), 1), 1),
    )
    digest = index["notes"].get(parts[1])
    if digest is None:
        return plans.failure(404, "not-found", f"no note {parts[1]!r}")
    return plans.blob(digest, "text/plain")


# ---- the WIT exports

HOST = WasmHost()


class Plugin(PluginProtocol):
    def describe(self):
        return plans.info("notes", "0.1.0", [("note", "Named text notes")], [ROUTE])

    def valid_name(self, name):
        from wharf_sdk._wit import Err

        raise Err("notes repositories are created through the API")

    @task
    def upload(self, repo, data, params):
        return upload(HOST, data, params)

    @task
    def sync(self, repo):
        raise PluginError.unsupported("notes have no feed")

    @task
    def publish(self, repo):
        return publish(HOST, repo)

    @task
    def select(self, repo, references):
        raise PluginError.unsupported("not implemented in the template")

    @task
    def edit(self, repo, change):
        raise PluginError.unsupported("not implemented in the template")

    @task
    def pull(self, repo, reference):
        raise PluginError.no_remote_content("notes")

    @task
    def locate(self, repo, digest):
        raise PluginError.no_remote_content("notes")

    @route
    def resolve(self, req):
        return resolve(HOST, req)

    @write_route
    def write(self, req, repo, session):
        return plans.unsupported_write(req)
