"""The default client key of an anonymous call (``[identity] require_account = false``): the
client's address, as a rate limit should see it. One IPv6 host commonly holds a whole /64 (and
picks a new address from it at will), so an IPv6 address counts as its /64 network; an
IPv4-mapped IPv6 address (``::ffff:203.0.113.7``) as the IPv4 address it maps. Anything else
(a Unix socket path, a test client's name) is taken as it is."""

from __future__ import annotations

import ipaddress

__all__ = ["IPV6_PREFIX", "client_key_of"]

#: the IPv6 network an anonymous caller is counted by (a /64: one subscriber's LAN)
IPV6_PREFIX = 64


def client_key_of(address: object) -> str | None:
    """The rate-limit key for a client ``address`` (None when there is none)."""
    if not isinstance(address, str) or not address:
        return None
    if address.startswith("["):  # "[2001:db8::1]" or "[2001:db8::1]:4711", as some proxies write it
        address = address[1:].partition("]")[0]
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # a zone id (fe80::1%eth0) names no other host
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)
