"""The posterior file's contents: an InferenceData without wall-clock metadata.

A posterior written into a run directory must be the same bytes whenever and however the run is
made (a run directory differs between runs only in manifest.json's timings and created time), so the
values that record when or for how long a sampler ran are left out of the file; the fit keeps its
timings (``SEMFit.timings``) and the run's manifest records them.
"""

from __future__ import annotations

__all__ = ["CLOCK_ATTRS", "CLOCK_STATS", "without_clock"]

#: group attributes that say when or for how long a sampler ran (ArviZ's ``created_at``, PyMC's
#: ``sampling_time``) and PyMC's per-draw clock readings in ``sample_stats``: wall-clock values, not
#: the posterior's, left out of a saved file.
CLOCK_ATTRS = ("created_at", "sampling_time")
CLOCK_STATS = ("perf_counter_diff", "perf_counter_start", "process_time_diff")


def without_clock(idata):
    """A copy of ``idata`` (InferenceData; datasets copied shallowly, ``idata`` is left as it is)
    without the :data:`CLOCK_ATTRS` attributes and the :data:`CLOCK_STATS` variables."""
    import arviz as az

    groups = {}
    for name in idata.groups():
        ds = getattr(idata, name)
        ds = ds.drop_vars([v for v in CLOCK_STATS if v in ds.variables]) if name.endswith("sample_stats") \
            else ds.copy(deep=False)
        ds.attrs = {k: v for k, v in ds.attrs.items() if k not in CLOCK_ATTRS}
        groups[name] = ds
    attrs = {k: v for k, v in dict(idata.attrs).items() if k not in CLOCK_ATTRS}  # the file's root attributes
    return az.InferenceData(attrs=attrs or None, **groups)
