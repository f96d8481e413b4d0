"""Splitting a refined managed policy over AWS's size limit into parts that fit, proven equal."""

from __future__ import annotations

import json

from corpus import allowed_actions, generate_finding, policies
from oracle import allowed_by

from refiner.finding import parse_finding
from refiner.pipeline import refine_and_prove
from refiner.policy import load_policy
from refiner.refinement import policy_size
from refiner.split import split_policy


def test_readonlyaccess_splits_into_parts_that_fit_and_admit_the_same(catalog):
    document = policies()["ReadOnlyAccess"]
    finding = generate_finding(allowed_actions(document, catalog.all_actions()), 0.3, 7)
    run = refine_and_prove(load_policy(json.loads(json.dumps(document))),
                           parse_finding(finding, catalog), catalog, 20_000)
    refined = run.refined.document
    assert policy_size(refined) > 6_144
    split = split_policy(refined, 6_144, catalog, 20_000)
    parts = [json.loads(text) for text in split["parts"]]
    assert split["fits"] and split["proven"] and len(parts) > 1
    assert all(policy_size(part) <= 6_144 for part in parts)
    assert split["fitsAttachmentQuota"] == (len(parts) <= 10)
    crowded = split_policy(refined, 6_144, catalog, 20_000, other_attached=10 - len(parts) + 1)
    assert not crowded["fitsAttachmentQuota"]
    actions = catalog.all_actions()
    whole = set().union(*(allowed_by(s, actions) for s in refined["Statement"]))
    joined = set().union(*(allowed_by(s, actions) for part in parts for s in part["Statement"]))
    assert joined == whole
    for part in parts:  # every part keeps the document's keys and each statement's other keys
        assert part["Version"] == refined["Version"]
        for statement in part["Statement"]:
            assert {k: v for k, v in statement.items() if k != "Action"} in \
                [{k: v for k, v in s.items() if k != "Action"} for s in refined["Statement"]]


def test_a_statement_that_cannot_be_divided_is_said_not_to_fit(catalog):
    document = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "NotAction": [f"s3:Get{n}" for n in range(800)], "Resource": "*"}]}
    split = split_policy(document, 6_144, catalog, 20_000)
    assert not split["fits"] and split["proven"] and len(split["parts"]) == 1
