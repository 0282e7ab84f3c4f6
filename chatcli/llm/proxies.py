"""The proxy variables httpx2 follows (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and their lower-case
forms), checked before it reads them.

httpx2 builds a transport for each of them when a client is made, whatever server it is for:
one it cannot parse is an InvalidURL, a SOCKS proxy without socksio an ImportError, and either
would end chatcli with no word of which variable was wrong. Here each is read as urllib reads
it, so the variable named is the one httpx2 uses.
"""

from __future__ import annotations

import importlib.util
import ipaddress
from typing import Mapping
from urllib.parse import urlsplit

from chatcli.base.pii import hide_password

SCHEMES = ("http", "https", "all")
SOCKS = ("socks5", "socks5h")


def proxy_variables(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """scheme -> (variable, value), as urllib.request.getproxies_environment chooses them: any
    case, then the lower-case form over the others; an empty lower-case one unsets it."""
    found: dict[str, tuple[str, str]] = {}
    for name, value in environ.items():
        key = name.lower()
        if value and key.endswith("_proxy"):
            found[key[:-6]] = (name, value)
    if "REQUEST_METHOD" in environ:  # urllib's guard against HTTP_PROXY set by a CGI request's header
        found.pop("http", None)
    for name, value in environ.items():
        if name.endswith("_proxy"):
            key = name.lower()[:-6]
            if value:
                found[key] = (name, value)
            else:
                found.pop(key, None)
    return found


def proxy_problem(environ: Mapping[str, str]) -> str | None:
    """The sentence for a proxy variable httpx2 could not use, naming it; None when all are usable."""
    found = proxy_variables(environ)
    no_proxy = found.pop("no", ("", ""))[1]
    chosen = [found[scheme] for scheme in SCHEMES if scheme in found]
    if "*" in (host.strip() for host in no_proxy.split(",")):  # NO_PROXY=*: httpx2 mounts none
        return None
    for name, value in chosen:
        url = value if "://" in value else f"http://{value}"  # as httpx2 reads a bare host:port
        shown = repr(hide_password(value))
        why = _unusable(url)
        if why:
            return f"The proxy in {name} ({shown}) cannot be used: {why}; set it to one such as http://proxy.example.com:3128, or unset it."
        if urlsplit(url).scheme.lower() in SOCKS and importlib.util.find_spec("socksio") is None:
            return (f"{name} names a SOCKS proxy ({shown}), which needs the socksio package: "
                    "pip install 'chatcli[socks]' (or pip install socksio), or unset it.")
    return None


def _unusable(url: str) -> str | None:
    """Why httpx2 would refuse url as a proxy, as far as the standard library can tell."""
    if not url.isprintable() or any(ch.isspace() for ch in url):
        return "it holds a control character, a space or bytes that are not UTF-8"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "it is not a valid URL (check the port, and the brackets of an IPv6 address)"
    if parts.scheme.lower() not in ("http", "https", *SOCKS):
        return f"its scheme is {parts.scheme!r}, not http, https or socks5"
    host = parts.hostname or ""
    if not host or port == 0:
        return "it names no host, or port 0"
    try:
        if all(ch.isdigit() or ch == "." for ch in host):
            ipaddress.IPv4Address(host)
        elif not host.isascii() and not host.startswith("["):
            host.encode("idna")
    except (ValueError, UnicodeError):
        return f"its host {host!r} is not a valid address or name"
    return None
