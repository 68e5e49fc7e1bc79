"""The tests' services get ports from `free_port`; two of them must never be given the same one."""

from __future__ import annotations

from shared.broker import free_port


def test_free_port_never_hands_out_a_port_twice() -> None:
    ports = [free_port() for _ in range(3_000)]
    assert len(set(ports)) == len(ports)
