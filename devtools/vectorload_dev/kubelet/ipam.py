"""Pod IPs on the loopback network: one per pod, never shared while a pod holds it.

Linux routes all of 127.0.0.0/8 to `lo`, so every address here can be bound without any setup.
A kubelet hands out .2-.254 of its pod network, a /24 of 127.0.0.0/8 (`--pod-network`, default
127.0.0.0/24, whose .1 is the node's own address): two kubelets on one machine with different
pod networks never give two pods the same address, which is how two test runs stay apart.
Allocation is round-robin from the last address handed out, so a released address is reused
as late as possible (sockets of the old pod may still linger in TIME_WAIT).
"""

from __future__ import annotations

import ipaddress

DEFAULT_POD_NETWORK = "127.0.0.0/24"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


class AddressesExhausted(RuntimeError):
    pass


def parse_pod_network(text: str) -> ipaddress.IPv4Network:
    """A pod network: an IPv4 /24 inside 127.0.0.0/8 (ValueError naming what is wrong)."""
    try:
        network = ipaddress.IPv4Network(text.strip())
    except ValueError as exc:
        raise ValueError(f"pod network {text!r} is not an IPv4 network like 127.5.1.0/24 ({exc})") from None
    if network.prefixlen != 24 or not network.subnet_of(LOOPBACK):
        raise ValueError(f"pod network {text!r} must be a /24 inside 127.0.0.0/8, e.g. 127.5.1.0/24")
    return network


class IpAllocator:
    def __init__(self, first: int = 2, last: int = 254, prefix: str = "127.0.0.") -> None:
        if not 1 <= first <= last <= 254:
            raise ValueError(f"bad host range {first}..{last}")
        self._prefix = prefix
        self._first = first
        self._last = last
        self._next = first
        self._by_owner: dict[str, str] = {}
        self._owner_of: dict[str, str] = {}

    @classmethod
    def for_network(cls, network: str) -> IpAllocator:
        """Hands out .2-.254 of `network` (a /24 of 127.0.0.0/8, see `parse_pod_network`)."""
        base = str(parse_pod_network(network).network_address)
        return cls(prefix=base.rsplit(".", 1)[0] + ".")

    @property
    def network(self) -> str:
        return f"{self._prefix}0/24"

    def _address(self, host: int) -> str:
        return f"{self._prefix}{host}"

    def owner(self, address: str) -> str | None:
        return self._owner_of.get(address)

    def address_of(self, owner: str) -> str | None:
        return self._by_owner.get(owner)

    def in_range(self, address: str) -> bool:
        if not address.startswith(self._prefix):
            return False
        try:
            ipaddress.IPv4Address(address)
            host = int(address[len(self._prefix) :])
        except ValueError:
            return False
        return self._first <= host <= self._last

    def allocate(self, owner: str, preferred: str | None = None) -> str:
        """The owner's address (idempotent); `preferred` if it is free and in range, else the next free."""
        held = self._by_owner.get(owner)
        if held is not None:
            return held
        if preferred and self.in_range(preferred) and preferred not in self._owner_of:
            return self._take(owner, preferred)
        size = self._last - self._first + 1
        for step in range(size):
            host = self._first + (self._next - self._first + step) % size
            address = self._address(host)
            if address not in self._owner_of:
                return self._take(owner, address)
        raise AddressesExhausted(f"all {size} addresses {self._address(self._first)}.. are in use")

    def _take(self, owner: str, address: str) -> str:
        host = int(address[len(self._prefix) :])
        self._next = self._first + (host - self._first + 1) % (self._last - self._first + 1)
        self._by_owner[owner] = address
        self._owner_of[address] = owner
        return address

    def release(self, owner: str) -> str | None:
        address = self._by_owner.pop(owner, None)
        if address is not None:
            del self._owner_of[address]
        return address

    def __len__(self) -> int:
        return len(self._by_owner)
