"""The request model against an independent evaluator (tests/iam_evaluator.py), and the gate on
whole statements: everyday narrowings accepted, widenings rejected with a request as witness."""

import copy
import json

import pytest
from corpus import policies
from hypothesis import given, settings
from hypothesis import strategies as st
from iam_evaluator import allows, denies, statement_matches

from refiner.cli import main
from refiner.gate import gate
from refiner.policy import load_policy
from refiner.prove import Checker
from refiner.requests import covers, find_lost_denial, find_widening

READINGS = ("cross", "segment")  # the two readings of ARN wildcards at a colon

ACTIONS = ["s3:GetObject", "s3:Get*", "s3:*", "s3:PutObject", "s3:?utObject", "ec2:Run*", "*"]
RESOURCES = ["*", "arn:aws:s3:::b/*", "arn:aws:s3:::b/x", "arn:aws:s3:::c/*", "arn:aws:s3:::b?x",
             "arn:aws:s3:::b/${aws:username}/*", "arn:aws:s3:*:*:b/*"]
PRINCIPALS = ["*", {"AWS": "111111111111"}, {"AWS": "arn:aws:iam::111111111111:role/app/r"},
              {"AWS": "arn:aws:iam::222222222222:root"}, {"Service": "lambda.amazonaws.com"},
              {"AWS": ["arn:aws:iam::111111111111:user/u", "222222222222"]}]
CONDITIONS = [
    ("StringEquals", "aws:username", ["alice", "bob"]),
    ("StringNotEquals", "aws:username", "alice"),
    ("StringEqualsIgnoreCase", "aws:username", "ALICE"),
    ("StringLike", "aws:username", "a*"),
    ("StringNotLike", "aws:username", "?ob"),
    ("StringEqualsIfExists", "aws:username", "bob"),
    ("ArnLike", "aws:SourceArn", "arn:aws:sns:*:111111111111:*"),
    ("ArnNotEquals", "aws:SourceArn", "arn:aws:sns:us-east-1:111111111111:t"),
    ("NumericLessThan", "s3:max-keys", "10"),
    ("NumericGreaterThanEquals", "s3:max-keys", ["5", "20"]),
    ("NumericNotEquals", "s3:max-keys", "7"),
    ("DateLessThan", "aws:CurrentTime", "2024-01-01T00:00:00Z"),
    ("DateGreaterThanIfExists", "aws:CurrentTime", "2023-06-01T00:00:00Z"),
    ("Bool", "aws:SecureTransport", "true"),
    ("Bool", "aws:SecureTransport", False),
    ("IpAddress", "aws:SourceIp", ["10.0.0.0/8", "2001:db8::/32"]),
    ("NotIpAddress", "aws:SourceIp", "10.1.0.0/16"),
    ("Null", "aws:username", "true"),
    ("Null", "aws:SourceIp", "false"),
    ("ForAnyValue:StringEquals", "aws:TagKeys", ["a", "b"]),
    ("ForAllValues:StringLike", "aws:TagKeys", ["a*", "c"]),
    ("StringEquals", "aws:PrincipalTag/team", "${aws:username}"),
]


@st.composite
def statements(draw):
    statement = {"Effect": draw(st.sampled_from(["Allow", "Allow", "Deny"]))}
    statement[draw(st.sampled_from(["Action", "Action", "NotAction"]))] = draw(
        st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=2, unique=True))
    resource_key = draw(st.sampled_from(["Resource", "Resource", "NotResource", None]))
    if resource_key:
        statement[resource_key] = draw(st.lists(st.sampled_from(RESOURCES), min_size=1,
                                                max_size=2, unique=True))
    if draw(st.booleans()):
        statement["Principal"] = draw(st.sampled_from(PRINCIPALS))
    conditions = draw(st.lists(st.sampled_from(CONDITIONS), max_size=2,
                               unique_by=lambda c: (c[0], c[1])))
    if conditions:
        block = {}
        for operator, key, value in conditions:
            block.setdefault(operator, {})[key] = value
        statement["Condition"] = block
    return statement


@st.composite
def policy_pairs(draw):
    """BASE, and HEAD either drawn afresh or BASE with an everyday edit (most are narrowings)."""
    base = draw(st.lists(statements(), min_size=1, max_size=3))
    head = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(head) - 1))
        edit = draw(st.sampled_from(["resource", "condition", "effect", "drop", "add",
                                     "principal", "sid", "split", "merged"]))
        if edit == "resource":
            head[at]["Resource"] = draw(st.sampled_from(RESOURCES))
            head[at].pop("NotResource", None)
        elif edit == "condition":
            operator, key, value = draw(st.sampled_from(CONDITIONS))
            head[at].setdefault("Condition", {}).setdefault(operator, {})[key] = value
        elif edit == "effect":
            head[at]["Effect"] = "Deny" if head[at]["Effect"] == "Allow" else "Allow"
        elif edit == "drop" and len(head) > 1:
            head.pop(at)
        elif edit == "add":
            head.append(draw(statements()))
        elif edit == "principal":
            head[at]["Principal"] = draw(st.sampled_from(PRINCIPALS))
        elif edit == "sid":  # IAM never evaluates a Sid
            head[at]["Sid"] = draw(st.sampled_from(["A", "B", "Other"]))
        elif edit == "split":  # HEAD's statement as two of its shape
            head[at:at + 1] = split(head[at], draw(st.sampled_from([None, "A", "B"])))
        elif edit == "merged":  # BASE's statement as two of its shape: HEAD merges them
            at = min(at, len(base) - 1)
            base[at:at + 1] = split(base[at], draw(st.sampled_from([None, "A", "B"])))
    return base, head


def split(statement: dict, sid: str | None) -> list[dict]:
    """A statement as two of the same shape, its action list shared between them (the
    second one with the Sid given)."""
    key = "Action" if "Action" in statement else "NotAction"
    listed = statement[key] if isinstance(statement[key], list) else [statement[key]]
    if len(listed) < 2:
        return [statement]
    second = {**statement, key: listed[1:]}
    if sid is not None:
        second["Sid"] = sid
    return [{**statement, key: listed[:1]}, second]


CALLERS = [("AWS", "arn:aws:sts::111111111111:assumed-role/r/s1"),
           ("AWS", "arn:aws:iam::111111111111:user/u"), ("AWS", "arn:aws:iam::222222222222:root"),
           ("AWS", "arn:aws:sts::333333333333:assumed-role/r/s"),
           ("Service", "lambda.amazonaws.com"), ("Service", "ec2.amazonaws.com")]
VALUES = {
    "aws:username": ["alice", "bob", "Alice", "ALICE", "carol", "ob"],
    "aws:sourcearn": ["arn:aws:sns:us-east-1:111111111111:t", "arn:aws:sns:eu:111111111111:x:y",
                      "arn:aws:sqs:us-east-1:111111111111:t"],
    "s3:max-keys": ["3", "5", "7", "10", "20", "25"],
    "aws:currenttime": ["2023-01-01T00:00:00Z", "2023-09-01T00:00:00Z", "2025-01-01T00:00:00Z"],
    "aws:securetransport": ["true", "false"],
    "aws:sourceip": ["10.0.0.1", "10.1.2.3", "192.168.0.1", "2001:db8::1", "::1"],
    "aws:tagkeys": [["a"], ["a", "c"], ["b", "x"], ["ab"], []],
    "aws:principaltag/team": ["alice", "bob", "x"],
}


@st.composite
def requests(draw):
    context = {key: draw(st.sampled_from(values + [None])) for key, values in VALUES.items()}
    return {"action": draw(st.sampled_from(["s3:GetObject", "s3:PutObject", "S3:getobject",
                                            "s3:GetBucketPolicy", "ec2:RunInstances",
                                            "iam:PassRole"])),
            "resource": draw(st.sampled_from(["arn:aws:s3:::b/x", "arn:aws:s3:::c/y",
                                              "arn:aws:s3:::bzx", "arn:aws:s3:::b/alice/k",
                                              "arn:aws:s3:us:1:b/z", "other"])),
            "principal": draw(st.sampled_from(CALLERS)), "context": context}


def evaluator_request(found: dict) -> dict:
    """A counterexample the request model printed, as the evaluator takes it."""
    principal = found.get("principal", "*")
    kind, value = ("?", "") if principal == "*" else next(iter(principal.items()))
    return {"action": found["action"], "resource": found.get("resource", ""),
            "principal": (kind, value), "context": found.get("context", {})}


def all_focus(base, head):
    return ([j for j, s in enumerate(head) if s["Effect"] == "Allow"],
            [i for i, s in enumerate(base) if s["Effect"] == "Deny"])


@settings(max_examples=30)  # each example is several solver queries
@given(policy_pairs(), st.lists(requests(), min_size=20, max_size=20))
def test_widening_verdicts_agree_with_the_evaluator(pair, sampled):
    """proven: no sampled request HEAD allows and BASE denies (under either reading);
    a counterexample: the evaluator allows it in HEAD and denies it in BASE."""
    base, head = pair
    outcome = find_widening(base, head, *all_focus(base, head))
    if outcome.proven:
        for request in sampled:
            for reading in READINGS:
                assert not allows(head, request, reading) or allows(base, request, reading), \
                    (request, reading)
    elif outcome.request is not None:
        request = evaluator_request(outcome.request)
        for reading in READINGS:
            assert allows(head, request, reading) and not allows(base, request, reading), \
                (outcome.request, reading)


@given(policy_pairs(), st.lists(requests(), min_size=20, max_size=20))
def test_lost_denial_verdicts_agree_with_the_evaluator(pair, sampled):
    base, head = pair
    outcome = find_lost_denial(base, head, all_focus(base, head)[1])
    if outcome.proven:
        for request in sampled:
            for reading in READINGS:
                assert not denies(base, request, reading) or denies(head, request, reading)
    elif outcome.request is not None:
        request = evaluator_request(outcome.request)
        for reading in READINGS:
            assert denies(base, request, reading) and not denies(head, request, reading)


@given(statements(), statements(), st.lists(requests(), min_size=20, max_size=20))
def test_covers_agrees_with_the_evaluator(before, after, sampled):
    after = {**after, "Effect": before["Effect"]}
    if covers(before, after):
        for request in sampled:
            for reading in READINGS:
                whole = {**request, "action": "x:y"}
                assert not statement_matches({**after, "Action": "*"}, whole, reading) or \
                    statement_matches({**before, "Action": "*"}, whole, reading)


@settings(max_examples=30)
@given(policy_pairs(), st.lists(requests(), min_size=20, max_size=20))
def test_the_gate_accepts_only_what_the_evaluator_finds_no_new_access_in(pair, sampled):
    """The whole gate (pairing, the action kernel on unchanged pairs, covered pairs, the two
    queries): accepted means no sampled request is newly allowed or no longer denied."""
    base, head = pair
    document = lambda statements: load_policy({"Version": "2012-10-17",  # noqa: E731
                                               "Statement": statements})
    found = gate(document(base), document(head), Checker([], [], []))
    if not found:
        for request in sampled:
            for reading in READINGS:
                assert not allows(head, request, reading) or allows(base, request, reading)
                assert not denies(base, request, reading) or denies(head, request, reading)
    for violation, _ in found:
        if violation.request is not None:
            request = evaluator_request(violation.request)
            assert any((allows(head, request, r) and not allows(base, request, r))
                       or (denies(base, request, r) and not denies(head, request, r))
                       for r in READINGS)


# --- the gate on everyday moves, through the command line ------------------------------------

BUCKET_READ = {"Sid": "Read", "Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
               "Resource": "*"}
TRUST = {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {
    "AWS": ["arn:aws:iam::111111111111:role/ci", "arn:aws:iam::222222222222:root"]}}


def gate_run(tmp_path, capsys, base_statements, head_statements, output="json"):
    paths = []
    for name, statements_ in (("base", base_statements), ("head", head_statements)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"Version": "2012-10-17", "Statement": statements_},
                                   indent=2))
        paths.append(str(path))
    code = main(["verify", *paths, "--format", output])
    text = capsys.readouterr().out
    return code, json.loads(text)


EVERYDAY = [
    ("Resource * narrowed to one bucket",
     [BUCKET_READ], [{**BUCKET_READ, "Resource": ["arn:aws:s3:::reports",
                                                  "arn:aws:s3:::reports/*"]}]),
    ("a Condition added", [BUCKET_READ], [{**BUCKET_READ, "Condition": {
        "Bool": {"aws:SecureTransport": "true"}, "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]),
    ("a principal dropped from a trust policy", [TRUST], [{**TRUST, "Principal": {
        "AWS": "arn:aws:iam::111111111111:role/ci"}}]),
    ("an account narrowed to one of its roles", [TRUST], [{**TRUST, "Principal": {
        "AWS": "arn:aws:iam::222222222222:role/deploy"}}]),
    ("an Allow turned into a Deny", [BUCKET_READ], [{**BUCKET_READ, "Effect": "Deny"}]),
    ('"*" written as ["*"]', [BUCKET_READ], [{**BUCKET_READ, "Resource": ["*"]}]),
    ("a Deny widened", [BUCKET_READ, {"Effect": "Deny", "Action": "s3:GetObject",
                                      "Resource": "arn:aws:s3:::secret/*"}],
     [BUCKET_READ, {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::secret*"}]),
    ("a Sid renamed and the statements reordered",
     [BUCKET_READ, {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}],
     [{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
      {**BUCKET_READ, "Sid": "ReadReports"}]),
    ("two statements of one shape merged, Sids dropped",
     [{**BUCKET_READ, "Action": "s3:GetObject"}, {**BUCKET_READ, "Sid": "List",
                                                  "Action": "s3:List*"}],
     [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]),
    ("merged and narrowed (a condition added, a Resource narrowed)",
     [{**BUCKET_READ, "Action": "s3:GetObject"}, {**BUCKET_READ, "Sid": "Put",
                                                  "Action": "s3:Put*"}],
     [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
       "Resource": "arn:aws:s3:::reports/*",
       "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]),
    ("one statement split into two, no Sids",
     [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*"}],
     [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
      {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]),
    ("merged without Sids", [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
                             {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}],
     [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*"}]),
]


@pytest.mark.parametrize("name,base,head", EVERYDAY, ids=[e[0] for e in EVERYDAY])
def test_everyday_narrowings_pass_the_gate(tmp_path, capsys, name, base, head):
    code, report = gate_run(tmp_path, capsys, base, head)
    assert code == 0 and report["verdicts"] == [], report


def test_a_statement_two_of_read_only_access_hold_together_is_accepted(tmp_path, capsys):
    """AWS's ReadOnlyAccess -> IAMAccessAdvisorReadOnly: HEAD's one statement (no Sid) holds
    actions of both of BASE's (Sids ReadOnlyActionsGroup1 and 2, the same Resource): a
    narrowing, accepted (it was `unknown` after a solver timeout when the Sid counted)."""
    base = policies()["ReadOnlyAccess"]["Statement"]
    head = policies()["IAMAccessAdvisorReadOnly"]["Statement"]
    assert {s["Sid"] for s in base} == {"ReadOnlyActionsGroup1", "ReadOnlyActionsGroup2"}
    assert "Sid" not in head[0]
    code, report = gate_run(tmp_path, capsys, base, head)
    assert code == 0 and report["verdicts"] == [], report


def test_an_action_past_read_only_access_is_found_as_a_request(tmp_path, capsys):
    """AWS's ReadOnlyAccess -> CloudWatchEventsReadOnlyAccess: one action of HEAD's (Sid-less)
    statement, schemas:ExportSchema, is in neither of BASE's statements; the kernel's union
    check names it, and the request built from it is checked and reported (it was `unknown`
    after a solver timeout)."""
    base = policies()["ReadOnlyAccess"]["Statement"]
    head = policies()["CloudWatchEventsReadOnlyAccess"]["Statement"]
    code, report = gate_run(tmp_path, capsys, base, head)
    [verdict] = report["verdicts"]
    assert code == 1 and verdict["request"]["action"] == "schemas:ExportSchema", report
    request = evaluator_request(verdict["request"])
    assert allows(head, request) and not allows(base, request)


WIDENINGS = [
    ("a bucket widened to *", [{**BUCKET_READ, "Resource": "arn:aws:s3:::reports/*"}],
     [BUCKET_READ], lambda r: not r["resource"].startswith("arn:aws:s3:::reports/")),
    ("a Condition dropped", [{**BUCKET_READ, "Condition": {"NumericLessThan": {
        "s3:max-keys": "100"}}}], [BUCKET_READ],
     lambda r: r["context"]["s3:max-keys"] is None or float(r["context"]["s3:max-keys"]) >= 100),
    ("a principal added to a trust policy", [TRUST], [{**TRUST, "Principal": {"AWS": [
        "arn:aws:iam::111111111111:role/ci", "333333333333"]}}],
     lambda r: ":333333333333:" in r["principal"]["AWS"]),
    ("a Deny removed", [BUCKET_READ, {"Effect": "Deny", "Action": "s3:GetObject",
                                      "Resource": "arn:aws:s3:::secret/*"}], [BUCKET_READ],
     lambda r: r["resource"].startswith("arn:aws:s3:::secret/")),
    ("a date limit moved later", [{**BUCKET_READ, "Condition": {"DateLessThan": {
        "aws:CurrentTime": "2025-01-01T00:00:00Z"}}}], [{**BUCKET_READ, "Condition": {
            "DateLessThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}}],
     lambda r: r["context"]["aws:currenttime"] >= "2025"),
    # BASE's statements are of two shapes: their union is no cover of the merged statement.
    ("merged across two Resources", [{**BUCKET_READ, "Action": "s3:GetObject"},
                                     {**BUCKET_READ, "Sid": "Put", "Action": "s3:PutObject",
                                      "Resource": "arn:aws:s3:::reports/*"}],
     [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*"}],
     lambda r: r["action"] == "s3:PutObject"
     and not r["resource"].startswith("arn:aws:s3:::reports/")),
    ("merged across two Conditions, a Sid dropped",
     [{**BUCKET_READ, "Action": "s3:GetObject"},
      {**BUCKET_READ, "Sid": "Put", "Action": "s3:PutObject",
       "Condition": {"Bool": {"aws:SecureTransport": "true"}}}],
     [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*"}],
     lambda r: r["action"] == "s3:PutObject" and r["context"]["aws:securetransport"] != "true"),
]


@pytest.mark.parametrize("name,base,head,holds", WIDENINGS, ids=[w[0] for w in WIDENINGS])
def test_widenings_are_rejected_with_a_request(tmp_path, capsys, name, base, head, holds):
    code, report = gate_run(tmp_path, capsys, base, head)
    requests_found = [v["request"] for v in report["verdicts"] if "request" in v]
    assert code == 1 and requests_found, report
    assert holds(requests_found[0]), requests_found[0]
    request = evaluator_request(requests_found[0])
    assert (allows(head, request) and not allows(base, request)) or \
        (denies(base, request) and not denies(head, request))
    code, sarif = gate_run(tmp_path, capsys, base, head, output="sarif")
    results = sarif["runs"][0]["results"]
    assert code == 1 and results[0]["properties"]["request"] == requests_found[0]


def test_an_operator_not_modelled_is_unknown_at_its_statement(tmp_path, capsys):
    odd = {**BUCKET_READ, "Condition": {"StringMatchesRegex": {"aws:username": "a.*"}}}
    code, report = gate_run(tmp_path, capsys, [odd], [BUCKET_READ])
    assert code == 3
    assert report["verdicts"][0]["verdict"] == "unknown"
    assert "StringMatchesRegex on aws:username is not modelled" in report["verdicts"][0]["message"]
    # The same unmodelled condition kept as it was, only the Resource narrowed: proven.
    narrowed = {**odd, "Resource": "arn:aws:s3:::reports/*"}
    assert gate_run(tmp_path, capsys, [odd], [narrowed])[0] == 0
