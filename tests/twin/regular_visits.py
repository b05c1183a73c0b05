"""A user model outside the twin's family, shared by tests/twin/test_twin_check_flags.py and
benchmarks/twin_validation.py: the ``choice`` model with regular visits (the gap after a session is
uniform on [0.5, 1.5] times its mean, not exponential)."""

from __future__ import annotations

import numpy as np

from counterfeed.core.hookspecs import hookimpl
from counterfeed.plugins.users.choice import ChoiceUserModel


class PeriodicChoice(ChoiceUserModel):
    """``choice`` with regular visits (see module)."""

    name = "periodic-choice"

    def consequences(self, state, batch, items, util, clicked):
        resp = super().consequences(state, batch, items, util, clicked)
        rate = self.options.visit_rate * state.activity[batch.users]
        u = state.keys.stream("user:periodic").uniform(batch.users, batch.sessions)
        resp.next_gap = np.where(np.isfinite(resp.next_gap), (0.5 + u) / rate, np.inf)
        return resp


class PeriodicPlugin:
    @staticmethod
    @hookimpl
    def register_user_models(register):
        register(PeriodicChoice)
