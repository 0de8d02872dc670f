"""Plug-ins: named objects any installed distribution can provide, by entry point.

Transports (group `edgehar.transports`, named by URL scheme) and backends (group
`edgehar.backends`, named by bundle format) are found with `importlib.metadata`, so a
separate package adds one by declaring an entry point, without touching edgehar.
Discovery reads only the installed metadata; the module behind a name is imported when
that name is asked for, so an optional dependency loads only when it is used, and one
that is missing is a one-line error then rather than a crash at discovery.
"""

from __future__ import annotations

from importlib.metadata import entry_points


class PluginError(ImportError):
    """A registered plug-in whose module or object cannot be imported; one line.

    Not an EdgeharError itself: each caller reports it as its own (a TransportError
    carrying the URL, a BundleError), the way the user asked for the plug-in.
    """


def plugin_names(group: str) -> list[str]:
    """The names registered in `group` by every installed distribution, sorted."""
    return sorted(entry_points(group=group).names)


def load_plugin(group: str, name: str) -> object | None:
    """The object registered as `name` in `group`; None when nothing is registered under it.

    Only that one entry point's module is imported. An import that fails (a missing
    optional dependency, a stale registration) raises PluginError naming the entry point.
    """
    found = entry_points(group=group).select(name=name)
    if not found:
        return None
    entry = next(iter(found))  # the first distribution on sys.path wins, as for imports
    try:
        return entry.load()
    except (ImportError, AttributeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PluginError(f"the {group} entry point {name!r} ({entry.value}) cannot be loaded: {reason}") from None
