"""The one route table: which handler answers a method and path, and 404 or 405 when none does.

Routes are written as templates (`/ping`, `/v2/models/{name}/infer`). A template without a
`{placeholder}` is one dict lookup by (method, path): the hot path (`POST /invocations`) costs just
that. Templates with placeholders are compiled into one regular expression, tried only when no
fixed path matched: one match in C whatever the number of templates. The same table answers the
errors, so they cannot drift from the routes: a path no template matches is a 404 naming every
route; a path that matches under another method is a 405 with an `Allow` header listing the
methods it takes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from inference.queries import RequestError
from inference.transport import Handler

# A route as the protocols declare it: method, path template, handler.
Route = tuple[str, str, Handler]


def _is_placeholder(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


def _regex(template: str) -> str:
    # A placeholder matches any one segment, even an empty one (the handler then names the bad value).
    return "/".join("[^/]*" if _is_placeholder(s) else re.escape(s) for s in template.split("/"))


class RouteTable:
    """Handlers by path template and method; `match` returns one or raises the 404/405 to answer."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._exact: dict[tuple[str, str], Handler] = {}
        self._fixed: dict[str, dict[str, Handler]] = {}
        self._templates: dict[str, dict[str, Handler]] = {}
        self._listing: list[tuple[str, str]] = []
        for method, template, handler in routes:
            if any(_is_placeholder(s) for s in template.split("/")):
                methods = self._templates.setdefault(template, {})
            else:
                methods = self._fixed.setdefault(template, {})
                self._exact[method, template] = handler
            if method in methods:
                raise ValueError(f"route {method} {template} is declared twice")
            methods[method] = handler
            self._listing.append((method, template))
        # One alternative a template, each in a group named by its index: `lastgroup` says which matched.
        self._groups = {f"t{i}": (t, m) for i, (t, m) in enumerate(self._templates.items())}
        alternatives = (f"(?P<{g}>{_regex(t)})" for g, (t, _) in self._groups.items())
        self._pattern = re.compile("|".join(alternatives)) if self._groups else None

    @property
    def listing(self) -> list[tuple[str, str]]:
        """Every (method, template) in declaration order."""
        return list(self._listing)

    def match(self, method: str, path: str) -> tuple[Handler, str]:
        """The handler for `method path` and the route's template (the metrics label).

        Raises RequestError 404 when no route has this path, 405 (with `Allow`) when only the method is wrong.
        """
        handler = self._exact.get((method, path))
        if handler is not None:
            return handler, path
        methods = self._fixed.get(path)
        route = path
        if methods is None:
            route, methods = self._match_template(method, path)
        handler = methods.get(method)
        if handler is None:
            allowed = ", ".join(sorted(methods))
            raise RequestError(
                405,
                "method_not_allowed",
                f"{method} {_shown(path)} is not allowed; use {' or '.join(sorted(methods))} {route}",
                None,
                ((b"allow", allowed.encode()),),
            )
        return handler, route

    def _match_template(self, method: str, path: str) -> tuple[str, dict[str, Handler]]:
        found = self._pattern.fullmatch(path) if self._pattern is not None else None
        if found is not None and found.lastgroup is not None:
            return self._groups[found.lastgroup]
        listed = ", ".join(f"{m} {t}" for m, t in self._listing)
        raise RequestError(404, "not_found", f"no route {method} {_shown(path)}; routes: {listed}")


def _shown(path: str) -> str:
    return path if len(path) <= 100 else path[:100] + "..."
