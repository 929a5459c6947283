"""`select` and `edit`: the files of a repository by the names clients use.

A reference is a file name (`mypkg-1.0-py3-none-any.whl`), a project
(`mypkg`: all its files) or a project at a version (`mypkg==1.0`). There
are no tags: a `tag` edit is unsupported. `adopt` (the end of a copy by
reference) makes a copied file replace the target's file of the same name.
"""

from wharf_sdk import PluginError, plans

from . import names, units

P = plans.P


def _matching(host, reference):
    if reference.endswith(".whl") or reference.endswith(".tar.gz"):
        names.check_filename(reference)
        return units.at_filename(host, reference)
    project, sep, version = reference.partition("==")
    if not names.is_project_name(project) or (sep and not version):
        raise PluginError.invalid_reference(
            f"{reference!r} is not a file name, a project or project==version"
        )
    norm = names.normalize(project)
    out = []
    for u in units.all_units(host):
        m = units.meta_of(u)
        if m["project"] == norm and (not sep or names.version_key(m["version"]) == names.version_key(version)):
            out.append(u)
    return out


def select(host, references):
    out, seen = [], set()
    for ref in references:
        found = _matching(host, ref)
        if not found:
            raise PluginError.not_found(f"the repository holds no {ref!r}")
        for u in found:
            if u.key not in seen:
                seen.add(u.key)
                out.append(P.UnitRef(unit_type=u.unit_type, key=u.key))
    return out


def edit(host, change):
    if isinstance(change, P.Change_Remove):
        removed = 0
        for ref in change.value:
            found = _matching(host, ref)
            if not found:
                raise PluginError.not_found(f"the repository holds no {ref!r}")
            for u in found:
                removed += host.remove_unit(u.unit_type, u.key)
        return plans.summary(units_removed=removed, message=f"removed {removed} file(s)")
    if isinstance(change, P.Change_Tag):
        raise PluginError.unsupported("Python repositories have no tags")
    if isinstance(change, P.Change_Adopt):
        removed = 0
        for ref in change.value:
            if ref.unit_type != units.UNIT_TYPE:
                continue
            filename = ref.key[: -units.DIGEST_SUFFIX]
            for old in units.at_filename(host, filename):
                if old.key != ref.key and host.remove_unit(units.UNIT_TYPE, old.key):
                    removed += 1
        return plans.summary(units_removed=removed, message=f"copied files replaced {removed} of the same name")
    raise PluginError.unsupported(f"unknown change {change!r}")
