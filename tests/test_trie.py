"""The CamelCase trie: shortest safe prefixes under string-prefix semantics."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from oracle import matches
from strategies import WORDS

from refiner.patterns import glob, word_prefixes
from refiner.trie import shortest_safe_prefixes


def test_word_prefixes_split_camel_case_and_acronyms():
    assert word_prefixes("s3:GetBucketPolicyStatus") == [
        "", "s3:", "s3:Get", "s3:GetBucket", "s3:GetBucketPolicy", "s3:GetBucketPolicyStatus"]
    assert word_prefixes("s3:PutBucketCORSConfig")[-2:] == ["s3:PutBucketCORS", "s3:PutBucketCORSConfig"]
    assert word_prefixes("s3:ListObjectsV2")[-1] == "s3:ListObjectsV2"


def test_fleet_prefix_holds_fleets_too():
    """`ec2:DescribeFleet*` would also admit DescribeFleets, so it is not safe."""
    used = ["ec2:DescribeFleetHistory", "ec2:DescribeFleetInstances"]
    unused = ["ec2:DescribeFleets"]
    out = shortest_safe_prefixes(glob("ec2:Describe*"), used, unused, set())
    assert out == ["ec2:DescribeFleetHistory", "ec2:DescribeFleetInstances"]


def test_restore_jobs_prefix_holds_job_summaries():
    used = ["backup:ListRestoreJobs", "backup:ListRestoreJobsByProtectedResource"]
    unused = ["backup:ListRestoreJobSummaries"]
    out = shortest_safe_prefixes(glob("backup:List*"), used, unused, set())
    assert out == ["backup:ListRestoreJobs", "backup:ListRestoreJobsByProtectedResource"]


def test_mid_wildcard_never_widens():
    used = ["s3:GetObject", "s3:GetObjectAcl", "s3:PutObject"]
    unused = ["s3:DeleteObject"]
    out = shortest_safe_prefixes(glob("s3:*Object*"), used, unused, set())
    assert out == ["s3:GetObject*", "s3:PutObject"]


def test_wholly_unused_service_is_never_reached():
    out = shortest_safe_prefixes(glob("*"), ["s3:GetObject", "s3:PutObject"], [], {"ec2"})
    assert out == ["s3:*"]
    out = shortest_safe_prefixes(glob("*"), ["s3:GetObject"], [], {"ec2"})
    assert out == ["s3:GetObject"]


names = st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map("".join),
                 min_size=1, max_size=20, unique_by=str.lower)


@given(names, st.data())
def test_output_is_sorted_unique_safe_and_complete(actions, data):
    full = [f"svc:{a}" for a in actions]
    unused = data.draw(st.lists(st.sampled_from(full), unique=True))
    used = [a for a in full if a not in unused]
    out = shortest_safe_prefixes(glob("svc:*"), used, unused, set())
    assert out == sorted(set(out), key=lambda t: (t.lower(), t))
    for pattern in out:
        assert not any(matches(pattern, u) for u in unused)
    for action in used:
        assert any(matches(p, action) for p in out)


@given(st.lists(st.from_regex(r"[a-z]{1,3}:[A-Za-z]{1,8}", fullmatch=True), min_size=1,
                max_size=8, unique=True), st.data())
def test_remembered_cuts_and_parents_equal_computed_ones(names, data):
    """The cuts of a name kept for the process are its prefixes as computed, and each node's
    parent found in one pass is its longest proper prefix among the nodes."""
    from refiner import trie

    for name in names + names:  # the second time from what was kept
        assert trie._cut(word_prefixes, name) == tuple((p.lower(), p) for p in word_prefixes(name))
    used = data.draw(st.lists(st.sampled_from(names), unique=True))
    built = trie.build_trie(glob("*"), used, [n for n in names if n not in used], set())
    for node in built.nodes:
        shorter = [node[:cut] for cut in range(len(node)) if node[:cut] in built.spelling]
        assert built.parent(node) == (shorter[-1] if shorter else None)
