"""Customer context: what the host knows about a customer (orders, plan...), beside a ticket.

The host registers providers with ``@inbox.customer_context``; each is called with a
:class:`CustomerInfo` (plain values, safe to use in another thread) and returns ``None``
(nothing to show) or a dict::

    {"title": "Orders",                        # panel heading (default: the function name)
     "template": "shop/_orders_panel.html",    # rendered in the ticket sidebar
     "data": {"orders": [...]},                # passed to the template (with ``customer``)
     "values": {"orders.count": 3, "vip": True}}  # flat values for rules (optional)

A provider runs in a thread pool under an app context, with
``SHARED_INBOX_CUSTOMER_CONTEXT_TIMEOUT`` seconds to answer; one that raises or is slower
shows "unavailable" and the error is logged, so a broken integration never breaks the ticket
page. Results are cached per customer for ``SHARED_INBOX_CUSTOMER_CONTEXT_CACHE_SECONDS``
(failures for at most 10 seconds) in the process.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from flask import current_app, render_template
from markupsafe import Markup

from ..config import cv
from ..extension import get_state

log = logging.getLogger("shared_inbox.context")

#: Failures (errors, timeouts) are retried after at most this many seconds.
FAILURE_CACHE_SECONDS = 10
#: Entries kept per app before the oldest are dropped.
CACHE_SIZE = 2000
CACHE_KEY = "shared_inbox.context_cache"

#: Provider calls allowed to run at once in the process; beyond it (providers that hang)
#: a panel is "unavailable" at once instead of piling up threads.
MAX_RUNNING = 32
_running = threading.BoundedSemaphore(MAX_RUNNING)


@dataclass(frozen=True)
class CustomerInfo:
    """What a provider gets: plain values, never a database object bound to a session."""

    id: int | None
    email: str
    name: str


@dataclass
class ProviderResult:
    """One provider's answer for one customer."""

    name: str
    title: str
    ok: bool
    template: str | None = None
    data: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    error: str | None = None


@dataclass
class Panel:
    """A rendered sidebar panel: ``html`` (Markup) or ``unavailable``."""

    name: str
    title: str
    html: Any = None
    unavailable: bool = False


class _Cache:
    """A small per-app TTL cache (a dict and a lock); entries expire on read."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[float, ProviderResult | None]] = {}

    def get(self, key, now: float) -> tuple[bool, ProviderResult | None]:
        """``(found, result)``; a provider that had nothing to show is cached as None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False, None
            if entry[0] <= now:
                del self._entries[key]
                return False, None
            return True, entry[1]

    def put(self, key, result: ProviderResult | None, expires: float) -> None:
        with self._lock:
            if len(self._entries) >= CACHE_SIZE:
                for old in sorted(self._entries, key=lambda k: self._entries[k][0])[
                        :CACHE_SIZE // 10 or 1]:
                    del self._entries[old]
            self._entries[key] = (expires, result)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _cache() -> _Cache:
    return current_app.extensions.setdefault(CACHE_KEY, _Cache())


def clear_cache() -> None:
    """Forget every cached result of this app (e.g. after the host changed an order)."""
    _cache().clear()


class _Call:
    """One provider call in a daemon thread of its own: a hung provider can neither block
    the page (we stop waiting) nor the process's exit (daemon), and at most
    :data:`MAX_RUNNING` run at once."""

    def __init__(self, app, fn, info: CustomerInfo):
        self.done = threading.Event()
        self.answer = None
        self.error: BaseException | None = None
        self.started = _running.acquire(blocking=False)
        if not self.started:
            self.error = RuntimeError(f"{MAX_RUNNING} customer context calls still running")
            self.done.set()
            return
        threading.Thread(target=self._run, args=(app, fn, info), daemon=True,
                         name="si-context").start()

    def _run(self, app, fn, info) -> None:
        try:
            with app.app_context():  # its own database session
                self.answer = fn(info)
        except Exception as exc:  # reported by the caller
            self.error = exc
        except BaseException as exc:  # SystemExit in a provider must not reach the page
            self.error = RuntimeError(f"provider stopped: {exc!r}")
        finally:
            _running.release()
            self.done.set()


def customer_info(customer) -> CustomerInfo | None:
    if customer is None:
        return None
    return CustomerInfo(id=getattr(customer, "id", None), email=customer.email or "",
                        name=customer.name or "")


def providers() -> list[Callable]:
    return list(get_state().extension.customer_context_providers)


def _provider_name(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _as_result(fn, answer) -> ProviderResult | None:
    name = _provider_name(fn)
    if answer is None:
        return None
    if not isinstance(answer, dict):
        raise TypeError(f"customer context provider {name} returned {type(answer).__name__}, "
                        "not a dict or None")
    data = answer.get("data") or {}
    values = answer.get("values") or {}
    if not isinstance(data, dict) or not isinstance(values, dict):
        raise TypeError(f"customer context provider {name}: data and values must be dicts")
    return ProviderResult(
        name=name, title=str(answer.get("title") or getattr(fn, "__name__", name)),
        ok=True, template=answer.get("template"), data=data,
        values={str(k): v for k, v in values.items()},
    )


def provider_results(customer) -> list[ProviderResult]:
    """Every provider's result for ``customer`` (cached; failures as ``ok=False``)."""
    info = customer if isinstance(customer, CustomerInfo) else customer_info(customer)
    fns = providers()
    if info is None or not fns:
        return []
    cache = _cache()
    ttl = float(cv("CUSTOMER_CONTEXT_CACHE_SECONDS") or 0)
    now = time.monotonic()
    results: dict[int, ProviderResult | None] = {}
    pending = {}
    app = current_app._get_current_object()
    for index, fn in enumerate(fns):
        found, cached = cache.get((id(fn), info.email), now) if ttl > 0 else (False, None)
        if found:
            results[index] = cached
            continue
        pending[index] = _Call(app, fn, info)
    if pending:
        timeout = float(cv("CUSTOMER_CONTEXT_TIMEOUT"))
        deadline = time.monotonic() + timeout
        for call in pending.values():
            call.done.wait(max(0.0, deadline - time.monotonic()))
        for index, call in pending.items():
            fn = fns[index]
            name = _provider_name(fn)
            title = getattr(fn, "__name__", name)
            if not call.done.is_set():
                log.warning("customer context provider %s took longer than %ss for %s",
                            name, timeout, info.email)
                result = ProviderResult(name=name, title=title, ok=False,
                                        error=f"no answer within {timeout:g} s")
            else:
                try:
                    if call.error is not None:
                        raise call.error
                    result = _as_result(fn, call.answer)
                except Exception as exc:
                    log.error("customer context provider %s failed for %s", name, info.email,
                              exc_info=exc)
                    result = ProviderResult(name=name, title=title, ok=False,
                                            error=f"{exc.__class__.__name__}: {exc}")
            if ttl > 0:
                keep = ttl if result is None or result.ok else min(ttl, FAILURE_CACHE_SECONDS)
                cache.put((id(fn), info.email), result, time.monotonic() + keep)
            results[index] = result
    return [results[i] for i in range(len(fns)) if results[i] is not None]


def context_values(customer) -> dict:
    """Flat values the providers expose for rules, e.g. ``{"orders.count": 3, "vip": True}``.

    Cached like the panels; a failing or slow provider contributes nothing, and any error
    gives ``{}`` rather than an exception (rules then see the values as missing).
    """
    try:
        values: dict = {}
        for result in provider_results(customer):
            if result.ok:
                values.update(result.values)
        return values
    except Exception:
        log.exception("customer context values failed")
        return {}


def panels(customer) -> list[Panel]:
    """The rendered sidebar panels for a customer; never raises."""
    info = customer_info(customer)
    try:
        results = provider_results(info)
    except Exception:
        log.exception("customer context failed")
        return [Panel(name="context", title="Customer context", unavailable=True)] \
            if providers() else []
    out = []
    for result in results:
        if not result.ok:
            out.append(Panel(name=result.name, title=result.title, unavailable=True))
            continue
        if not result.template:
            continue
        try:
            html = render_template(result.template, customer=info, **result.data)
        except Exception:
            log.exception("customer context template %s of %s failed", result.template,
                          result.name)
            out.append(Panel(name=result.name, title=result.title, unavailable=True))
            continue
        # The provider's template is autoescaped: its output is safe to embed.
        out.append(Panel(name=result.name, title=result.title, html=Markup(html)))
    return out
