"""``execution:`` in a scenario: how its worlds are executed (sharding, :mod:`counterfeed.core.shard`).

``execution: {shards: N}`` splits every world's users into ``N`` blocks of user ids, each simulated
by a Dask worker; the results are the single-process results, number for number. The command line's
``--shards`` / ``--scheduler`` override it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, StrictInt

if TYPE_CHECKING:  # pragma: no cover
    from counterfeed.core.scenario import Scenario

__all__ = ["ExecutionSpec", "check_execution", "MAX_SHARDS"]

MAX_SHARDS = 1024


class ExecutionSpec(BaseModel):
    """``execution:`` of a scenario."""

    model_config = ConfigDict(extra="forbid")

    shards: StrictInt = Field(1, ge=1, le=MAX_SHARDS,
                              description="user-id blocks each world is split into (1: not sharded)")
    scheduler: str | None = Field(None, pattern=r"^(tcp|tls|inproc|ucx)://\S+$",
                                  description="address of an existing Dask scheduler (default: a LocalCluster)")


def check_execution(scenario: "Scenario") -> None:
    """Cross-field checks of ``execution``; raises a located ScenarioError."""
    ex = scenario.execution
    if ex.shards > scenario.population.users:
        raise scenario.error(f"{ex.shards} shards for {scenario.population.users} users: every shard needs "
                             f"at least one user (expected at most population.users)", "execution.shards")
