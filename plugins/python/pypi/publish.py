"""The distributor: render the simple index of the repository's files and
write the publication index `resolve` reads back.

The publication is named by the repository id: `/pypi/{id}/simple/`. Every
page (the root, one per project, each as HTML and JSON) is stored as a blob,
and the index maps names to them:

    {"version": 1,
     "root": {"html": "sha256:...", "json": "sha256:..."},
     "projects": {"my-pkg": {"html": "sha256:...", "json": "sha256:..."}},
     "files": {"my_pkg-1.0-py3-none-any.whl": {"digest": "sha256:...", "size": 1234}}}
"""

from wharf_sdk import PluginError, plans
from wharf_sdk.jsondoc import dumps_versioned

from . import pages, units

INDEX_VERSION = 1


def files_by_project(host):
    """`{normalized: (display name, [file metadata sorted by filename])}`;
    two files of one name (possible after a copy between repositories) are
    a conflict."""
    by_name = {}
    for u in units.all_units(host):
        m = units.meta_of(u)
        other = by_name.get(m["filename"])
        if other is not None and other["digest"] != m["digest"]:
            raise PluginError.conflict(
                f"the repository holds two files named {m['filename']!r} ({other['digest']} and {m['digest']}), "
                "e.g. after a copy; remove one (or import the one to keep again) and publish"
            )
        by_name[m["filename"]] = m
    projects = {}
    for fn in sorted(by_name):
        m = by_name[fn]
        display, files = projects.setdefault(m["project"], (m["name"], []))
        files.append(m)
    return projects


def publish(host, repo):
    projects = files_by_project(host)
    stored = 0

    def store(data):
        nonlocal stored
        stored += len(data)
        return host.store_bytes(data)

    index_projects = {}
    files = {}
    listing = []
    for norm in sorted(projects):
        display, flist = projects[norm]
        listing.append((norm, display))
        index_projects[norm] = {
            "html": store(pages.project_html(display, flist)),
            "json": store(pages.project_json(norm, flist)),
        }
        for f in flist:
            files[f["filename"]] = {"digest": f["digest"], "size": f["size"]}
    root = {"html": store(pages.root_html(listing)), "json": store(pages.root_json(listing))}
    index = dumps_versioned({"root": root, "projects": index_projects, "files": files}, INDEX_VERSION)
    digest = store(index)
    return plans.published(
        name=repo.id,
        index=digest,
        bytes_stored=stored,
        message=f"published {len(files)} files of {len(projects)} projects at /pypi/{repo.id}/simple/",
    )
