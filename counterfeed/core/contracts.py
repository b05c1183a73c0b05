"""The contracts between the engine and its plugins: plugin base classes and the data they exchange.

Every plugin kind (catalog, user model, recommender, metric, estimator) is a class with a short
registry ``name`` and a pydantic ``Options`` model that forbids unknown fields. Constructors store
options and do nothing else; learned state ends in ``_`` (scikit-learn's convention). Randomness is
never global: it comes in as keyed :class:`~counterfeed.core.randomness.Stream` objects.

Arrays are NumPy; identifiers are int64; times are in days since the start of the simulation
(the pre-period starts at 0, the experiment at ``pre_period``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from counterfeed.core._strict import reject_booleans

from counterfeed.core.randomness import Keys, Stream

__all__ = [
    "Options", "Plugin", "Items", "Population", "Batch", "Slates", "Response", "Log",
    "Catalog", "UserModel", "Recommender", "Metric", "CatalogContext",
    "RecommenderContext", "WorldEvents", "MetricInfo", "CatalogTags", "MetricTags",
]


class Options(BaseModel):
    """Base for plugin options: unknown fields are an error, values are validated on assignment, and a
    number is not a boolean or NaN (:func:`~counterfeed.core._strict.reject_booleans`; infinity is left
    to each field's bounds)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    _no_booleans = field_validator("*", mode="before")(classmethod(reject_booleans))


class Plugin:
    """Base of every plugin class.

    Subclasses set ``name`` (the short registry name used in scenarios) and may define a nested
    ``Options(counterfeed.Options)`` class. The constructor takes validated options (an ``Options``
    instance or a mapping) and stores them as ``self.options``; it does no other work.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options

    def __init__(self, options: Options | dict[str, Any] | None = None, **kwargs: Any):
        if options is None:
            options = self.Options(**kwargs)
        elif isinstance(options, dict):
            options = self.Options(**{**options, **kwargs})
        elif kwargs:
            options = options.model_copy(update=kwargs)
        self.options = options

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.model_dump().items())
        return f"{type(self).__name__}({opts})"


# --------------------------------------------------------------------------------------------
# Data exchanged with the simulation plugins
# --------------------------------------------------------------------------------------------


@dataclass
class Items:
    """The catalog as arrays. Row ``i`` is item id ``i``.

    Attributes
    ----------
    vectors : (n_items, d) latent item factors in the population's preference space.
    quality : (n_items,) item quality added to every user's utility.
    topic : (n_items,) int topic of each item, in ``[0, n_topics)``.
    arrival : (n_items,) time (days) at which the item becomes available; 0 for the initial catalog.
    text : optional item texts (title + description).
    embeddings : optional (n_items, e) L2-normalized text embeddings.
    topic_names / topic_text : optional names and descriptions of the topics.
    """

    vectors: np.ndarray
    quality: np.ndarray
    topic: np.ndarray
    n_topics: int
    arrival: np.ndarray
    text: list[str] | None = None
    embeddings: np.ndarray | None = None
    topic_names: list[str] | None = None
    topic_text: list[str] | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.vectors.shape[0])

    def available(self, t: float) -> np.ndarray:
        """Boolean mask of items available at time ``t``."""
        return self.arrival <= t


@dataclass
class CatalogContext:
    """What a catalog plugin gets to build the items."""

    keys: Keys
    stream: Stream
    dimensions: int
    cache_dir: str | None = None
    base_dir: str = "."


@dataclass
class Population:
    """The simulated users, built by the engine from ``scenario.population``.

    Attributes
    ----------
    preferences : (n_users, d) latent preference vectors (same space as ``Items.vectors``).
    segment : (n_users,) int segment code; ``segment_names[code]`` is its name.
    activity : (n_users,) multiplier of the visit rate (from the segment).
    offset : global id of the first user: a block of a sharded world holds users
        ``offset .. offset + n - 1`` (row ``i`` is user ``offset + i``; keyed draws use the global id).
    """

    n: int
    preferences: np.ndarray
    segment: np.ndarray
    segment_names: list[str]
    activity: np.ndarray
    offset: int = 0

    @property
    def ids(self) -> np.ndarray:
        return np.arange(self.offset, self.offset + self.n, dtype=np.int64)

    def block(self, lo: int, hi: int) -> "Population":
        """Users ``lo .. hi - 1`` (global ids) as a population block with ``offset=lo``."""
        a, b = lo - self.offset, hi - self.offset
        return Population(n=hi - lo, preferences=self.preferences[a:b], segment=self.segment[a:b],
                          segment_names=self.segment_names, activity=self.activity[a:b], offset=lo)


@dataclass
class Batch:
    """The slate requests one arm serves in one serving window.

    ``stream`` is the arm's policy stream: a policy that randomizes draws from it keyed by
    ``(user, session, slot)``, e.g. ``batch.stream.uniform(batch.users[:, None], batch.sessions[:, None],
    np.arange(k))``, so that its choices are reproducible and shared across worlds.
    """

    users: np.ndarray
    sessions: np.ndarray
    time: float
    slate_size: int
    stream: Stream
    available: np.ndarray | None = None  # boolean mask over items; None = every item

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass
class Slates:
    """A recommender's answer for a batch.

    ``items[r, j]`` is the item shown at position ``j`` to request ``r``; ``propensities[r, j]`` is
    the exact probability that the policy shows that item at that position for that request
    (1.0 for a deterministic policy); ``scores`` is the policy's score (for logs and diagnostics).
    """

    items: np.ndarray
    propensities: np.ndarray
    scores: np.ndarray | None = None


@dataclass
class Response:
    """A user model's answer to a batch of slates.

    ``clicks`` and ``dwell`` are (n, k); ``dwell`` is 0 where there was no click. ``next_gap`` is the
    time in days until each user's next visit, ``inf`` when the user churns.
    """

    clicks: np.ndarray
    dwell: np.ndarray
    next_gap: np.ndarray


@dataclass
class Log:
    """Impressions, one row per (request, position), as flat columns.

    The same layout is the ``impressions`` event table on disk, the ``feedback`` passed to
    ``Recommender.update`` and the ``log`` passed to ``Recommender.fit``.
    """

    user: np.ndarray
    session: np.ndarray
    time: np.ndarray
    position: np.ndarray
    item: np.ndarray
    click: np.ndarray
    dwell: np.ndarray
    propensity: np.ndarray
    arm: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.user.shape[0])

    @classmethod
    def empty(cls) -> "Log":
        i8 = np.zeros(0, np.int64)
        f8 = np.zeros(0, np.float64)
        return cls(i8, i8, f8, i8, i8, np.zeros(0, bool), f8, f8, i8)

    @classmethod
    def concat(cls, logs: list["Log"]) -> "Log":
        logs = [lg for lg in logs if len(lg)]
        if not logs:
            return cls.empty()
        cols = {}
        for f in fields(cls):
            parts = [getattr(lg, f.name) for lg in logs]
            cols[f.name] = None if any(p is None for p in parts) else np.concatenate(parts)
        return cls(**cols)

    def select(self, mask: np.ndarray) -> "Log":
        return Log(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[mask])
                      for f in fields(self)})

    def to_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass
class RecommenderContext:
    """What a recommender is set up with before it serves: the catalog and the population size.

    ``arm`` is the arm's name (for messages); ``key`` is its random identity, the canonical JSON of
    its recommender configuration (:func:`counterfeed.core.plan.arm_key`), shared by identically
    configured arms. Key every random draw on :attr:`seed_key`, never on the name, so identical arms
    give identical per-user outcomes (issue 14, item 2).
    """

    items: Items
    n_users: int
    slate_size: int
    keys: Keys
    arm: str = ""
    key: str = ""

    @property
    def seed_key(self) -> str:
        """What random draws are keyed on: ``key``, else (a context built by hand) ``arm``."""
        return self.key or self.arm


# --------------------------------------------------------------------------------------------
# Simulation plugins
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogTags:
    """What a catalog needs (selects its conformance rules, like scikit-learn's estimator tags).

    ``reads_table``: it reads a CSV/Parquet table named in its options, relative to
    ``ctx.base_dir``; the conformance suite writes sample tables there (``items.csv`` and
    ``items.parquet`` with columns ``id, title, description, topic, quality, arrival``).
    """

    reads_table: bool = False
    #: its items carry text and embeddings (recommenders that need text check it at validation)
    text: bool = False
    #: its items carry topic descriptions (``Items.topic_text``), which text interests embed (the choice
    #: model's ``interests: text`` checks it at validation); None: as ``text``
    topic_text: bool | None = None

    @property
    def has_topic_text(self) -> bool:
        """Whether the items carry embeddings and topic descriptions (``topic_text``, else ``text``)."""
        return self.text and (self.text if self.topic_text is None else self.topic_text)


class Catalog(Plugin, ABC):
    """Builds the items."""

    kind = "catalog"
    tags: ClassVar[CatalogTags] = CatalogTags()

    @abstractmethod
    def build(self, ctx: CatalogContext) -> Items:
        """Return the catalog's items; deterministic given ``ctx.stream``."""

    def check(self, ctx: CatalogContext) -> int | None:
        """Check the catalog's inputs without building it; return the number of items ``build`` makes.

        ``counterfeed validate`` calls it (``run`` builds the catalog instead), so that whatever ``run``
        would reject is rejected first: it must raise the :class:`~counterfeed.errors.DataError` that
        ``build`` raises for a missing or malformed input (a file, a column, a row), without ``build``'s
        costly work (embedding text). Returns ``None`` when the count is known only by building. The
        default checks nothing and returns ``None``; the conformance suite checks that a count, when
        given, is ``build``'s.
        """
        return None


class UserModel(Plugin, ABC):
    """How users behave: their state, their response to slates, their return or churn."""

    kind = "user-model"

    def check_scenario(self, scenario: Any, catalog: "Catalog", field: str) -> None:
        """Raise a :class:`~counterfeed.errors.ScenarioError` (``field``: ``"user_model"``; name an
        option as ``f"{field}.interests"``) for a precondition checkable from the scenario and its
        catalog plugin alone (e.g. a catalog without text for text interests); ``validate`` and ``run``
        call it before simulating. The default checks nothing."""

    @abstractmethod
    def init_state(self, population: Population, items: Items, keys: Keys) -> Any:
        """Return the initial per-user state (any object; the engine only passes it back)."""

    @abstractmethod
    def first_visit(self, state: Any, users: np.ndarray) -> np.ndarray:
        """Days until each user's first visit."""

    @abstractmethod
    def respond(self, state: Any, batch: Batch, slates: Slates) -> Response:
        """Users' response to the slates (clicks, dwell, next visit); updates ``state`` in place."""


class Recommender(Plugin, ABC):
    """A policy. ``setup`` once, ``fit`` on a log, ``recommend`` per batch, ``update`` per window."""

    kind = "recommender"
    #: whether the policy is stochastic (the conformance suite checks propensities empirically)
    stochastic: ClassVar[bool] = False

    def setup(self, ctx: RecommenderContext) -> None:
        """Called once before anything else with the catalog and the population size."""
        self.ctx_ = ctx

    def check_scenario(self, scenario: Any, catalog: "Catalog", field: str) -> None:
        """Raise a :class:`~counterfeed.errors.ScenarioError` (``field``: the arm's path, e.g.
        ``experiment.arms.b``) for a precondition checkable from the scenario and its catalog plugin
        alone; ``validate`` and ``run`` call it before simulating. The default checks nothing."""

    def fit(self, log: Log) -> None:
        """Learn from a full log (at the start of the experiment and every retraining period)."""

    @abstractmethod
    def recommend(self, batch: Batch) -> Slates:
        """Slates for every request in the batch, with the exact propensity of each shown item."""

    def action_probabilities(self, batch: Batch, items: np.ndarray) -> np.ndarray:
        """(n, k') probability that ``recommend(batch)`` shows ``items[r, j]`` at position ``j`` of request ``r``.

        0 past the slate and for unavailable items; must not change the policy's state. Off-policy
        evaluation weights logged slates with it; conformance checks it against ``recommend``'s
        propensities. Stochastic policies must override it (a Monte Carlo estimate is allowed if its
        docstring states the error); this default serves deterministic ones: 1 where ``items`` is the slate.
        """
        if self.stochastic:
            raise NotImplementedError(f"{type(self).__name__} is stochastic and does not implement "
                                      "action_probabilities(batch, items)")
        shown, items = np.asarray(self.recommend(batch).items), np.asarray(items)
        out, k = np.zeros(items.shape), min(shown.shape[1], items.shape[1])
        out[:, :k] = shown[:, :k] == items[:, :k]
        return out

    def update(self, feedback: Log) -> None:
        """Learn online from one serving window's feedback (may be empty)."""


# --------------------------------------------------------------------------------------------
# Metrics and analysis
# --------------------------------------------------------------------------------------------


@dataclass
class WorldEvents:
    """One world's events, as flat NumPy columns.

    ``sessions`` has one row per session: user, session, time, arm, impressions, clicks, dwell,
    churned (the user churned after this session). ``impressions`` is a :class:`Log` or None when
    the scenario did not record impressions.
    """

    world: str
    n_users: int
    sessions: dict[str, np.ndarray]
    impressions: Log | None
    start: float
    end: float
    arms: list[str]
    assignment: np.ndarray  # (n_users,) arm index of each user in this world
    items: Items | None = None  # the catalog, for metrics of diversity, exposure, novelty

    def session_mask(self, start: float, end: float) -> np.ndarray:
        t = self.sessions["time"]
        return (t >= start) & (t < end)


@dataclass(frozen=True)
class MetricInfo:
    """How a metric aggregates, and its ``level``: ``user``, or ``population`` (see core.longterm)."""

    name: str
    kind: Literal["sum", "mean", "binary", "ratio"]
    numerator: str | None = None
    denominator: str | None = None
    higher_is_better: bool = True
    level: Literal["user", "population"] = "user"
    #: why a per-user metric's A/B comparison does not identify its effect (a user's value depends on
    #: the other users of the world), or None; every estimate of it then carries this as a warning
    interference: str | None = None


@dataclass(frozen=True)
class MetricTags:
    """What a metric does (selects its conformance rules).

    ``cumulative``: the value over ``[start, end)`` is a state reached by ``end`` (e.g. churned), so it
    may use events before ``start`` but never at or after ``end``.
    """

    cumulative: bool = False


class Metric(Plugin, ABC):
    """A per-user outcome computed from a world's events over a time window."""

    kind = "metric"
    tags: ClassVar[MetricTags] = MetricTags()
    aggregation: ClassVar[Literal["sum", "mean", "binary", "ratio"]] = "sum"
    numerator: ClassVar[str | None] = None
    denominator: ClassVar[str | None] = None
    higher_is_better: ClassVar[bool] = True
    level: ClassVar[Literal["user", "population"]] = "user"
    interference: ClassVar[str | None] = None
    #: ``compute`` reads only ``events.sessions`` and ``events.n_users``, and a user's value depends on
    #: that user's rows alone: a sharded world computes it in its shards (core.shard)
    per_user_sessions: ClassVar[bool] = False

    @abstractmethod
    def compute(self, events: WorldEvents, start: float, end: float) -> np.ndarray:
        """(n_users,) float values over sessions with ``start <= time < end``."""

    def info(self) -> MetricInfo:
        return MetricInfo(self.name, self.aggregation, self.numerator, self.denominator,
                          self.higher_is_better, self.level, self.interference)

    def scenario_notes(self, scenario: Any) -> list[str]:
        """Notes on how this metric reads in ``scenario``: settings that are valid but likely not what
        was meant (one sentence each). ``validate`` and ``run`` print them and the manifest keeps them
        (``notes``). Default: none."""
        return []


#: the analysis contracts live in :mod:`counterfeed.core.estimation`; importing them from here still works
_ANALYSIS_NAMES = ("AnalysisData", "Estimate", "Estimator", "EstimatorOptions", "EstimatorTags", "Looks",
                   "PolicySpec")


def __getattr__(name: str) -> Any:
    if name in _ANALYSIS_NAMES:
        from counterfeed.core import estimation

        return getattr(estimation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
