"""Wharf's Python packages content type, written in Python (componentize-py).

- upload (admin API import): a wheel or an sdist, metadata read from the archive
- write (twine upload): `POST /pypi/{repo}/+upload/`
- sync: mirror another PEP 503/691 simple index, include/exclude by project
- publish: render the simple index (HTML and JSON pages, stored as blobs)
- resolve: `/pypi/{repo}/simple/...` pages and `/pypi/{repo}/files/...`,
  all served by the host from blobs (files never pass through the plugin)
- select, edit: files by file name, project or project==version

This module only wires the WIT exports to the host-independent logic in
`pypi/`, which the tests run under pytest against `wharf_sdk.testing.FakeHost`.
Build: `scripts/build-python-plugins.sh` (componentize-py).
"""

from wharf_sdk import PluginError, plans
from wharf_sdk.exports import Plugin as PluginProtocol
from wharf_sdk.exports import route, task, write_route
from wharf_sdk.host import WasmHost

from pypi import edit, publish, push, routes, sync, upload, warmup
from pypi.version import FULL_VERSION

# Load everything the parsers import lazily into the pre-initialized component.
warmup.run()

CONTENT_TYPE = "python"

HOST = WasmHost()


def describe_info():
    return plans.info(
        name="python",
        version=FULL_VERSION,
        content_types=[(CONTENT_TYPE, "Python packages (wheels and sdists) served as a PEP 503/691 simple index")],
        routes=[routes.ROUTE],
        errors=routes.error_format(),
        naming=plans.naming_by_id(routes.MARKERS),
    )


class Plugin(PluginProtocol):
    def describe(self):
        return describe_info()

    def valid_name(self, name):
        from wharf_sdk._wit import Err

        raise Err("Python repositories are created through the API, not by a push")

    @task
    def upload(self, repo, data, params):
        return upload.run(HOST, data, params)

    @task
    def sync(self, repo):
        return sync.run(HOST, repo)

    @task
    def publish(self, repo):
        return publish.publish(HOST, repo)

    @task
    def select(self, repo, references):
        return edit.select(HOST, references)

    @task
    def edit(self, repo, change):
        return edit.edit(HOST, change)

    @task
    def pull(self, repo, reference):
        raise PluginError.no_remote_content("packages")

    @task
    def locate(self, repo, digest):
        raise PluginError.no_remote_content("files")

    @route
    def resolve(self, req):
        return routes.resolve(HOST, req)

    @write_route
    def write(self, req, repo, session):
        return push.write(HOST, req, repo, session)
