"""GET a partner's URL without turning the collector into a way into the private network.

What a plain ``urllib.request.urlopen`` does not guarantee and this module does:

* **No credentials to anyone else.** The source's auth header goes to the source's own
  origin (scheme, host, port) only; once a redirect leaves that origin, it is dropped for
  the rest of the chain (so also on a redirect from https to http).
* **No private targets.** Every host, the first and each redirect's, is resolved once;
  an address that is not globally routable (loopback, private, link-local, carrier-grade
  NAT, multicast, unspecified, reserved, site-local), or an IPv6 address that stands for
  such an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo and the like), is refused unless
  it is inside one of the allowed networks. The connection goes to the address that was
  checked, never to a second DNS answer, so a short-lived DNS record cannot swap it for
  another one.
* **One deadline for the whole fetch.** Resolving, connecting, TLS, the headers and every read of
  the body share one deadline: a server that trickles a byte at a time is cut off when
  it runs out, not when it pauses for longer than a socket timeout.
* **A bounded answer**: more than ``max_bytes`` is refused, announced or not.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 5
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
DEFAULT_PORTS = {"http": 80, "https": 443}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(Exception):
    """The URL could not be fetched; ``retryable`` says whether trying again may help."""

    retryable = True


class FetchRefused(FetchError):
    """The policy refuses the target (address, scheme, redirects): trying again cannot help."""

    retryable = False


class FetchTimedOut(FetchError):
    """The fetch's deadline passed."""

    retryable = False


class FetchHttpError(FetchError):
    def __init__(self, status: int, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}")
        self.status = status
        self.retryable = status >= 500


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int
    allowed_private_networks: tuple[Network, ...] = ()

    @classmethod
    def with_networks(cls, *, max_bytes: int, allowed_private_networks: Iterable[str]) -> FetchPolicy:
        networks = tuple(ipaddress.ip_network(network, strict=False) for network in allowed_private_networks)
        return cls(max_bytes=max_bytes, allowed_private_networks=networks)


# IPv6 forms that are only another way of writing an IPv4 address: whatever answers at
# them is the IPv4 host, so they are judged as that IPv4 address alone.
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated; ::/128 and ::1 are not of this kind
SIIT_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # what DNS64 answers on an IPv6-only host

# Ranges the IANA special-purpose registries mark as not globally reachable, but which
# Python 3.11's ``is_global`` still calls global (it consults only its private list).
NOT_GLOBALLY_REACHABLE: tuple[tuple[Network, str], ...] = (
    (ipaddress.ip_network("192.0.0.0/24"), "an IETF protocol assignment address"),
    (ipaddress.ip_network("192.88.99.0/24"), "a deprecated 6to4 relay anycast address"),
    # Where a local-use NAT64 prefix puts the IPv4 address depends on the prefix length the
    # network chose, so the address it stands for cannot be read off: refused as a whole.
    (ipaddress.ip_network("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (ipaddress.ip_network("3fff::/20"), "a documentation address"),
)


def _addresses_reached(address: Address) -> list[Address]:
    """Every address a connection to ``address`` may end up at.

    A translated form (IPv4-mapped, IPv4-compatible, SIIT, NAT64 64:ff9b::/96) is its IPv4
    address and nothing else. A tunnelled one (6to4, Teredo) is a real IPv6 address and
    also reaches the IPv4 endpoints it carries; those come first, as they name the host
    that matters.
    """
    if isinstance(address, ipaddress.IPv4Address):
        return [address]
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]  # the socket connects over IPv4
    if any(address in prefix for prefix in (SIIT_TRANSLATED, NAT64_WELL_KNOWN)) or (
        address in IPV4_COMPATIBLE and not (address.is_unspecified or address.is_loopback)
    ):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour, address]
    if address.teredo is not None:
        return [*address.teredo, address]  # the Teredo server and the client's public (NAT) address
    return [address]


def _why_not_public(address: Address) -> str | None:
    """What kind of non-public address ``address`` itself is, or None when it is public."""
    for description, applies in (
        ("a loopback address", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("a multicast address", address.is_multicast),  # is_global says yes to global multicast
        ("an unspecified address", address.is_unspecified),
        ("a site-local address", getattr(address, "is_site_local", False)),  # fec0::/10, deprecated
    ):
        if applies:
            return description
    for network, description in NOT_GLOBALLY_REACHABLE:
        if address in network:  # False, not an error, across IP versions
            return description
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a globally routable address"
    return None


def address_refusal(address: Address, allowed: Iterable[Network] = ()) -> str | None:
    """Why the collector must not connect to ``address``, or None when it may.

    Every address it reaches must be public or inside an allowed network, so an allowed
    network also admits its addresses' IPv6 forms (``::ffff:10.0.0.5``, ``64:ff9b::a00:5``
    with 10.0.0.0/8 allowed), and a public-looking IPv6 address that tunnels to a private
    IPv4 address is refused like that address.
    """
    allowed = tuple(allowed)  # read once per address reached, so not a one-pass iterator
    for reached in _addresses_reached(address):
        if any(reached in network for network in allowed):
            continue
        kind = _why_not_public(reached)
        if kind is None:
            continue
        if reached == address:
            return f"{address} is {kind}"
        return f"{address} stands for {reached}, {kind}"
    return None


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(parts.scheme, 0)


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchTimedOut("the deadline passed")
    return remaining


class _DeadlineSocket:
    """What ``http.client`` uses of a socket, with every wait bounded by the deadline.

    Like a real socket, it stays open while a response still reads from it: http.client
    closes the connection as soon as it knows the server will, before the body is read.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._open_readers = 0
        self._close_requested = False

    def sendall(self, data: bytes) -> None:
        self._sock.settimeout(_remaining(self._deadline))
        self._sock.sendall(data)

    def recv_into(self, buffer) -> int:
        self._sock.settimeout(_remaining(self._deadline))
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError as error:
            raise FetchTimedOut("the deadline passed") from error

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        self._open_readers += 1
        return io.BufferedReader(_DeadlineReader(self))

    def reader_closed(self) -> None:
        self._open_readers -= 1
        if self._close_requested and not self._open_readers:
            self._sock.close()

    def close(self) -> None:
        self._close_requested = True
        if not self._open_readers:
            self._sock.close()


class _DeadlineReader(io.RawIOBase):
    """A response's view of a ``_DeadlineSocket``: each read waits at most until the deadline."""

    def __init__(self, owner: _DeadlineSocket) -> None:
        self._owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._owner.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._owner.reader_closed()
        super().close()


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) to ``host`` at the one ``address`` that was checked (TLS still verifies ``host``)."""

    def __init__(self, *, scheme: str, host: str, port: int, address: Address, deadline: float) -> None:
        super().__init__(host, port)
        self.default_port = DEFAULT_PORTS[scheme]  # for the Host header
        self._scheme = scheme
        self._address = address
        self._deadline = deadline

    def connect(self) -> None:
        sock = socket.create_connection((str(self._address), self.port), timeout=_remaining(self._deadline))
        try:
            if self._scheme == "https":
                # The handshake as a whole is bounded by the socket timeout (CPython's ssl).
                sock.settimeout(_remaining(self._deadline))
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = _DeadlineSocket(sock, self._deadline)


def _resolve(host: str, port: int, deadline: float) -> list[tuple]:
    """getaddrinfo, given up at the deadline (the resolver itself has no timeout to pass)."""
    answer: dict[str, object] = {}

    def lookup() -> None:
        try:
            answer["infos"] = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except OSError as error:
            answer["error"] = error

    resolver = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    resolver.start()
    resolver.join(_remaining(deadline))
    if resolver.is_alive():
        raise FetchTimedOut(f"resolving {host} did not finish before the deadline")
    if "error" in answer:
        error = answer["error"]
        raise FetchError(f"cannot resolve {host}: {getattr(error, 'strerror', None) or error}") from error
    return answer["infos"]


def _addresses(host: str, port: int, deadline: float, policy: FetchPolicy) -> list[Address]:
    """The host's addresses the policy allows; FetchRefused if there is none."""
    infos = _resolve(host, port, deadline)
    allowed, refusals = [], []
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        refusal = address_refusal(address, policy.allowed_private_networks)
        if refusal is None:
            if address not in allowed:
                allowed.append(address)
        else:
            refusals.append(refusal)
    if not allowed:
        raise FetchRefused(
            f"refused to connect to {host}: {'; '.join(dict.fromkeys(refusals))} "
            "(allow it with COLLECTION_ALLOWED_PRIVATE_NETWORKS)"
        )
    return allowed


def _get_once(url: str, headers: dict[str, str], deadline: float, policy: FetchPolicy):
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise FetchRefused(f"only http and https URLs are fetched, not {url!r}")
    scheme, host, port = _origin(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    last_error: OSError | None = None
    for address in _addresses(host, port, deadline, policy):
        connection = _PinnedConnection(
            scheme=scheme, host=host, port=port, address=address, deadline=deadline
        )
        try:
            connection.request("GET", target, headers=headers)
            return connection, connection.getresponse()
        except ValueError as error:  # a header value with a line break, for one
            connection.close()
            raise FetchRefused(f"invalid request: {error}") from error
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            if isinstance(error, TimeoutError):
                raise FetchTimedOut("the deadline passed") from error
            if isinstance(error, ssl.SSLCertVerificationError):
                raise FetchRefused(
                    f"TLS certificate of {host} not accepted: {error.verify_message}"
                ) from error
            last_error = error
    raise FetchError(f"{type(last_error).__name__}: {last_error}") from last_error


def url_get(
    url: str,
    *,
    headers: dict[str, str],
    credentials: tuple[str, str] | None,
    deadline: float,
    policy: FetchPolicy,
) -> bytes:
    """GET ``url`` following redirects under the policy; the body, or a FetchError.

    ``credentials`` (one header, name and value) are sent only to the first URL's origin.
    ``deadline`` is a ``time.monotonic()`` value shared by everything this call does.
    """
    first_origin = _origin(url)
    send_credentials = credentials is not None
    for _hop in range(MAX_REDIRECTS + 1):
        if _origin(url) != first_origin:
            send_credentials = False  # and it stays off, even if a later hop comes back
        request_headers = dict(headers)
        if send_credentials:
            request_headers[credentials[0]] = credentials[1]
        connection, response = _get_once(url, request_headers, deadline, policy)
        try:
            location = response.getheader("Location")
            if response.status in REDIRECT_STATUSES and location:
                url = urljoin(url, location)
                continue
            if response.status >= 400:
                raise FetchHttpError(response.status, url)
            declared = response.getheader("Content-Length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > policy.max_bytes:
                raise FetchRefused(f"answer of {declared} bytes is over the limit of {policy.max_bytes}")
            body = response.read(policy.max_bytes + 1)
            if len(body) > policy.max_bytes:
                raise FetchRefused(f"answer larger than {policy.max_bytes} bytes")
            return body
        except TimeoutError as error:
            raise FetchTimedOut("the deadline passed") from error
        except (OSError, http.client.HTTPException) as error:
            raise FetchError(f"{type(error).__name__}: {error}") from error
        finally:
            response.close()
            connection.close()
    raise FetchRefused(f"more than {MAX_REDIRECTS} redirects")
