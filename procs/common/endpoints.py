"""Where an instance's clients connect, by name, as ``ringex status`` shows them: each
gateway's FIX and REST address, the feed's WebSocket and page, the supervisor's metrics, at
their configured listen addresses (a wildcard, 0.0.0.0 or ::, stands for this host's: clients
name it); what is configured off says so."""

from __future__ import annotations

from typing import Any

from config.schema import RingexConfig


def endpoints(cfg: RingexConfig, status: dict[str, Any]) -> dict[str, str]:
    """Where clients connect, by name (``ringex status``); what is configured off says so."""
    md = cfg.marketdata
    off = "off (marketdata.enabled = false)"
    return {
        **{
            f"fix {g.name}": f"{url_host(g.host)}:{g.port}"  # ::1:9878 would read as one address
            f"{' (TLS)' if g.tls_cert else ''} CompID {g.comp_id}"
            for g in cfg.gateways
        },
        **{
            f"rest {g.name}": f"http{'s' if g.rest.tls_cert else ''}://"
            f"{url_host(g.rest.host)}:{g.rest.port}/api/v1/"
            for g in cfg.gateways
            if g.rest is not None
        },
        "websocket": f"ws://{url_host(md.host)}:{md.port}/stream" if md.enabled else off,
        "web page": f"http://{url_host(md.host)}:{md.port}/" if md.enabled else off,
        "metrics": _metrics_url(cfg, status),
    }


def meets_clients(process: str) -> bool:
    """Whether the process of this name (as the supervisor's plan names them) serves clients:
    a gateway (FIX, REST) or the feed."""
    return process.startswith("gateway-") or process == "marketdata"


def unserved(status: dict[str, Any]) -> str:
    """Why an instance that is not a standby serves no client now (``ringex status``)."""
    if status["state"] != "running":
        return str(status["state"])
    return "every gateway and the feed down"


def _metrics_url(cfg: RingexConfig, status: dict[str, Any]) -> str:
    """Where the supervisor serves Prometheus metrics: the URL it reported while it runs (the
    port it was given when metrics_port = 0), else the configured one."""
    settings = cfg.supervisor
    if status["state"] != "stopped" and status.get("metrics_url"):
        return str(status["metrics_url"])
    if not settings.metrics:
        return "off (supervisor.metrics = false)"
    host = url_host(settings.metrics_host)
    if not settings.metrics_port:
        return f"http://{host}:<a free port, once running>/metrics"
    return f"http://{host}:{settings.metrics_port}/metrics"


def url_host(host: str) -> str:
    """``host`` as a URL names it: an IPv6 literal in brackets (RFC 3986, 3.2.2), and ""
    (every address, as the servers take it) as the wildcard 0.0.0.0, not an empty host."""
    return f"[{host}]" if ":" in host else host or "0.0.0.0"
