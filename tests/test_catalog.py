"""The catalog's lookups: a service's own index (made first, for start-up) answers as the whole
catalog's index does, and both as the definitions say."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from refiner.catalog import Catalog

SERVICES = st.sampled_from(["s3", "s3express", "ec2", "S3x", "Iam"])
NAMES = st.lists(st.text("GgEeTtOo1._-", min_size=1, max_size=5), max_size=6)


@st.composite
def catalogs_and_probes(draw):
    """A catalog (service keys in any case, names that differ only in case) and lookups: its
    own names and their prefixes, each in a random case, and random text."""
    services = draw(st.dictionaries(SERVICES, NAMES, max_size=4))
    names = [f"{s}:{n}" for s, values in services.items() for n in values] or ["s3:x"]
    picked = draw(st.lists(st.sampled_from(names), min_size=1, max_size=6))
    cut = [name[:draw(st.integers(0, len(name)))] for name in picked]
    flips = draw(st.lists(st.booleans(), min_size=64, max_size=64))

    def recased(text):
        return "".join(c.swapcase() if flips[i % 64] else c for i, c in enumerate(text))

    probes = [recased(t) for t in picked + cut] + draw(st.lists(st.text("s3:gex*", max_size=5),
                                                                max_size=3))
    return services, probes


@settings(max_examples=200, deadline=None)
@given(catalogs_and_probes())
def test_a_services_own_index_answers_as_the_whole_catalogs(case):
    services, probes = case
    every = [f"{s}:{n}" for s, names in services.items() for n in names]

    def definition(full_name):  # the last of the names spelled so: it overwrites the others
        matches = [name for name in every if name.lower() == full_name.lower()]
        return matches[-1] if matches else None

    lazy, whole = Catalog(services, "v"), Catalog(services, "v")
    whole.sorted_lower()  # the whole catalog's index, made before any lookup
    for probe in probes:
        assert lazy.canonical(probe) == whole.canonical(probe) == definition(probe)
        prefix = probe.lower()
        expected = sorted({definition(name) for name in every
                           if name.lower().startswith(prefix)}, key=str.lower)
        assert lazy.with_prefix(prefix) == whole.with_prefix(prefix) == expected
        # what the kernel asks: the run of the whole sorted list, for a prefix in any case
        fresh = Catalog(services, "v")
        run = [key for key in whole.sorted_lower() if key.startswith(probe)]
        assert fresh.lower_with_prefix(probe) == lazy.lower_with_prefix(probe) == run
    assert len(lazy) == len(whole) and lazy == whole
    assert pickle.loads(pickle.dumps(lazy)).all_actions() == whole.all_actions()
