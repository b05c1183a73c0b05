"""``execution:`` in a scenario: how its worlds are executed (sharding, :mod:`counterfeed.core.shard`).

``execution: {shards: N}`` splits every world's users into ``N`` blocks of user ids, each simulated
by a Dask worker; the results are the single-process results, number for number. The command line's
``--shards`` / ``--scheduler`` override it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

if TYPE_CHECKING:  # pragma: no cover
    from counterfeed.core.scenario import Scenario

__all__ = ["ExecutionSpec", "check_execution", "check_scheduler_address", "execution_arguments", "unsharded",
           "MAX_SHARDS"]

MAX_SHARDS = 1024
#: a DNS label (RFC 1123): letters, digits and inner hyphens, 1 to 63 characters
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: ``tcp://HOST:PORT``: a host name or an IPv4 address (dot-separated labels, none empty), or a
#: bracketed IPv6 address, and a port
_ADDRESS = re.compile(rf"tcp://(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{{1,5}})",
                      re.ASCII)


def _valid_host(host: str) -> bool:
    """A bracketed IPv6 address, an IPv4 address (four numbers, each at most 255) or a host name of
    at most 253 characters (RFC 1035) whose last label is not all digits (RFC 1123)."""
    import ipaddress

    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    if host.rsplit(".", 1)[-1].isdigit():  # numbers: an IPv4 address
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    return len(host) <= 253


def check_scheduler_address(address: str) -> str:
    """``address`` when it is a Dask scheduler address counterfeed can use, ``tcp://HOST:PORT``
    (``PORT`` 1 to 65535); raises ValueError naming what was expected. ``tls://`` is refused
    (counterfeed passes no certificates), as are ``ucx://`` and ``inproc://`` (another process's
    in-process scheduler cannot be reached)."""
    m = _ADDRESS.fullmatch(address)
    if m is None or not 1 <= int(m["port"]) <= 65535 or not _valid_host(m["host"]):
        raise ValueError(f"expected a Dask scheduler address tcp://HOST:PORT (PORT 1 to 65535; tls://, ucx:// and "
                         f"inproc:// are not supported), got {address!r}")
    return address


class ExecutionSpec(BaseModel):
    """``execution:`` of a scenario."""

    model_config = ConfigDict(extra="forbid")

    shards: StrictInt = Field(1, ge=1, le=MAX_SHARDS,
                              description="user-id blocks each world is split into (1: not sharded)")
    scheduler: str | None = Field(None, description="address of an existing Dask scheduler, tcp://HOST:PORT "
                                  "(default: a LocalCluster)")

    @field_validator("scheduler")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return None if v is None else check_scheduler_address(v)


def check_execution(scenario: "Scenario") -> None:
    """Cross-field checks of ``execution``; raises a located ScenarioError."""
    ex = scenario.execution
    if ex.shards > scenario.population.users:
        raise scenario.error(f"{ex.shards} shards for {scenario.population.users} users: every shard needs "
                             f"at least one user (expected at most population.users)", "execution.shards")


def execution_arguments(scenario: "Scenario", shards: object = None, scheduler: object = None,
                        origin: str = "run") -> tuple[int, str | None]:
    """``(shards, scheduler)`` for a run of ``scenario`` given these arguments of ``origin`` (a Python
    function, e.g. ``run``; None: the scenario's ``execution``), checked by the very rules of
    ``execution.shards`` and ``execution.scheduler`` (a strict int from 1 to :data:`MAX_SHARDS`, at
    most ``population.users``, a NumPy integer included; ``tcp://HOST:PORT``): ``shards=0``, ``2.9``,
    ``'2'`` or ``True`` is a
    ScenarioError naming the argument (``run(shards=...): ...``), as ``--shards``'s names the option.
    ``scheduler="in-process"`` (:data:`counterfeed.core.shard.IN_PROCESS`, for tests and debugging)
    is no address and passes as it is."""
    from counterfeed.core.shard import IN_PROCESS
    from counterfeed.errors import ScenarioError

    import numpy as np

    overrides = {}
    if shards is not None:  # a NumPy integer (a computed shard count) is an integer; a NumPy bool is not
        overrides["execution.shards"] = int(shards) if isinstance(shards, np.integer) else shards
    if scheduler is not None and scheduler != IN_PROCESS:
        overrides["execution.scheduler"] = scheduler
    ex = scenario.execution
    if overrides:
        try:
            ex = scenario.with_overrides(overrides).execution
        except ScenarioError as exc:
            name = (exc.field or "").removeprefix("execution.")
            if exc.field not in overrides or exc.others or exc.also:
                raise
            raise ScenarioError(exc.bare_message, file=f"{origin}({name}=...)") from None
    return ex.shards, (scheduler if scheduler == IN_PROCESS else ex.scheduler)


def unsharded(data: dict) -> dict:
    """A scenario dict (``Scenario.to_dict``) with ``execution`` at its defaults (one shard, no scheduler).

    How a run was computed does not change a single number (keyed randomness, issue 20), so what names
    the simulation leaves it out: a run directory's ``scenario.yaml`` is the unsharded one's whether
    ``--shards``/``--scheduler`` or the file set them (the manifest's ``execution`` says how it ran, and
    re-running the file needs no cluster that may be gone), and a calibration's scenario hash does not
    change with the shard count, so a calibration resumes with another. Unsharded scenarios are
    returned unchanged, so their files and hashes are those of earlier versions.
    """
    if not isinstance(data, dict) or "execution" not in data:
        return data
    return {**data, "execution": ExecutionSpec().model_dump(mode="json")}
