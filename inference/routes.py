"""The one route table: which handler answers a method and path, and 404 or 405 when none does.

Routes are written as templates (`/ping`, `/v2/models/{name}/infer`). A template without a
`{placeholder}` is a dict lookup by path, then by method: the hot path (`POST /invocations`) costs two
lookups. Templates with placeholders are compared segment by segment, only when no fixed path
matched. The same table answers the errors, so they cannot drift from the routes: a path no template
matches is a 404 naming every route; a path that matches under another method is a 405 with an
`Allow` header listing the methods it takes.
"""

from __future__ import annotations

from collections.abc import Iterable

from inference.queries import RequestError
from inference.transport import Handler

# A route as the protocols declare it: method, path template, handler.
Route = tuple[str, str, Handler]


def _segments(template: str) -> tuple[str | None, ...]:
    # None stands for a placeholder, which matches any one segment (even an empty one).
    return tuple(None if s.startswith("{") and s.endswith("}") else s for s in template.split("/"))


class RouteTable:
    """Handlers by path template and method; `match` returns one or raises the 404/405 to answer."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._fixed: dict[str, dict[str, Handler]] = {}
        self._templates: dict[tuple[str | None, ...], tuple[str, dict[str, Handler]]] = {}
        self._listing: list[tuple[str, str]] = []
        for method, template, handler in routes:
            segments = _segments(template)
            if None in segments:
                methods = self._templates.setdefault(segments, (template, {}))[1]
            else:
                methods = self._fixed.setdefault(template, {})
            if method in methods:
                raise ValueError(f"route {method} {template} is declared twice")
            methods[method] = handler
            self._listing.append((method, template))

    @property
    def listing(self) -> list[tuple[str, str]]:
        """Every (method, template) in declaration order."""
        return list(self._listing)

    def match(self, method: str, path: str) -> tuple[Handler, str]:
        """The handler for `method path` and the route's template (the metrics label).

        Raises RequestError 404 when no route has this path, 405 (with `Allow`) when only the method is wrong.
        """
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
        parts = path.split("/")
        for segments, found in self._templates.items():
            if len(segments) == len(parts) and all(
                s is None or s == p for s, p in zip(segments, parts, strict=True)
            ):
                return found
        listed = ", ".join(f"{m} {t}" for m, t in self._listing)
        raise RequestError(404, "not_found", f"no route {method} {_shown(path)}; routes: {listed}")


def _shown(path: str) -> str:
    return path if len(path) <= 100 else path[:100] + "..."
