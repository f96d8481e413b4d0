"""The gate's fast paths never disagree with the solver's: the concrete evaluation of one request
(witness.py) against the independent evaluator, a witness against the symbolic search, covers
by text against covers by the solver; and what a rejection prints."""

import json
import re

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from iam_evaluator import allows, denies, statement_matches
from test_requests import (
    ACTIONS,
    READINGS,
    evaluator_request,
    policy_pairs,
    requests,
    statements,
)

from refiner.cli import main
from refiner.gate import no_new_access
from refiner.prove import Checker
from refiner.requests import (
    covers_by_solver,
    covers_by_text,
    find_lost_denial,
    find_widening,
    solver_covers,
)
from refiner.whole import ShapeUnions
from refiner.witness import (
    ARN_CALLER,
    PRINCIPAL_KINDS,
    Concrete,
    Evaluation,
    Who,
    lost_denial_witness,
    multivalued_keys,
    widening_witness,
)


def concrete(request: dict) -> Concrete:
    """A request of the evaluator's pools as the witness module takes it."""
    kind, value = request["principal"]
    caller = re.fullmatch(r"arn:([^:]+):(iam|sts)::(\d{12}):(.*)", value)
    if kind == "AWS" and caller:
        who = Who(ARN_CALLER, caller.group(1), caller.group(2) == "sts", caller.group(3),
                  caller.group(4))
    else:
        who = Who(PRINCIPAL_KINDS[kind], name=value)
    context = {k: v for k, v in request["context"].items() if v is not None}
    return Concrete(request["action"], request["resource"], who, context)


def all_focus(base, head):
    return ([j for j, s in enumerate(head) if s["Effect"] == "Allow"],
            [i for i, s in enumerate(base) if s["Effect"] == "Deny"])


@settings(max_examples=300)
@given(st.lists(statements(), min_size=1, max_size=3), requests())
def test_a_definite_concrete_verdict_is_the_evaluators_under_both_readings(policy, request):
    """True or False from the three-valued evaluation is what IAM decides whatever the
    bracketed atoms mean; None (in doubt) claims nothing."""
    evaluation = Evaluation(concrete(request), multivalued_keys(policy))
    for statement in policy:
        matched = evaluation.matches(statement)
        if matched is not None:
            for reading in READINGS:
                assert statement_matches(statement, request, reading) == matched, \
                    (statement, request, reading)
    allowed, denied = evaluation.allows(policy), evaluation.denies(policy)
    for reading in READINGS:
        assert allowed is None or allows(policy, request, reading) == allowed
        assert denied is None or denies(policy, request, reading) == denied


@settings(max_examples=40)  # each example is a solver search
@given(policy_pairs())
def test_a_widening_witness_is_one_the_solver_cannot_refute(pair):
    """A witness is a real counterexample (the evaluator, both readings) and the symbolic
    search never proves there is none."""
    base, head = pair
    focus_head, focus_base = all_focus(base, head)
    found = widening_witness(base, head, focus_head)
    if found is None:
        return
    request, at = found
    assert at in focus_head and head[at]["Effect"] == "Allow"
    for reading in READINGS:
        assert allows(head, evaluator_request(request), reading)
        assert not allows(base, evaluator_request(request), reading)
    assert not find_widening(base, head, focus_head, focus_base).proven


@settings(max_examples=40)
@given(policy_pairs())
def test_a_lost_denial_witness_is_one_the_solver_cannot_refute(pair):
    base, head = pair
    focus_base = all_focus(base, head)[1]
    request = lost_denial_witness(base, head, focus_base)
    if request is None:
        return
    for reading in READINGS:
        assert denies(base, evaluator_request(request), reading)
        assert not denies(head, evaluator_request(request), reading)
    assert not find_lost_denial(base, head, focus_base).proven


NARROWER = st.sampled_from([
    {"Resource": "arn:aws:s3:::b/x"}, {"Resource": ["arn:aws:s3:::b/*", "arn:aws:s3:::b/x/*"]},
    {"Resource": "arn:aws:s3:::b/${aws:username}/*"}, {"Resource": "arn:aws:s3:::b?x"},
    {"Principal": {"AWS": "111111111111"}}, {"Principal": "*"},
    {"Condition": {"Bool": {"aws:SecureTransport": "true"}}}, {"Sid": "Renamed"}])


@given(statements(), st.lists(NARROWER, max_size=2))
def test_covers_by_text_says_covered_only_where_the_solver_does(before, edits):
    """Statements and their everyday narrowings (an element replaced, a condition added):
    whenever the text alone says covered, the solver proves it too."""
    after = dict(before)
    for edit in edits:
        if "Condition" in edit:
            after["Condition"] = {**after.get("Condition", {}), **edit["Condition"]}
        else:
            after.update(edit)
    for outer, inner in ((before, after), (after, before)):
        if covers_by_text(outer, inner):
            # a query cut short on a loaded machine proves nothing: set aside, never passed
            answer = solver_covers(outer, inner, timeout_ms=30_000)
            assert answer != "not covered", (outer, inner)
            assume(answer == "covered")


# Actions no one pattern of them holds all of (no `*`): a HEAD list of several needs a union.
NARROW_ACTIONS = ["s3:GetObject", "s3:Get*", "s3:PutObject", "s3:?utObject", "ec2:Run*",
                  "iam:PassRole"]


@st.composite
def split_and_merged(draw):
    """BASE: Allow statements, one of them split into several of its shape (its Action list
    shared among them, Sids apart), beside others; HEAD: one Allow statement with some of the
    split statement's actions (or another of ACTIONS), perhaps narrowed, its Sid anything."""
    whole = {**draw(statements()), "Effect": "Allow"}
    whole.pop("NotAction", None)
    whole["Action"] = draw(st.lists(st.sampled_from(NARROW_ACTIONS), min_size=1, max_size=4,
                                    unique=True))
    cuts = sorted(draw(st.sets(st.integers(1, len(whole["Action"]) - 1), max_size=2))) \
        if len(whole["Action"]) > 1 else []
    parts = [whole["Action"][a:b] for a, b in zip([0, *cuts], [*cuts, len(whole["Action"])],
                                                  strict=True)]
    base = [{**whole, "Action": part, **({"Sid": f"S{n}"} if draw(st.booleans()) else {})}
            for n, part in enumerate(parts)]
    base += [s for s in draw(st.lists(statements(), max_size=2)) if s["Effect"] == "Allow"]
    base = draw(st.permutations(base))
    head = {key: value for key, value in whole.items() if key != "Sid"}
    head["Action"] = draw(st.lists(st.sampled_from(whole["Action"]), min_size=1,
                                   max_size=len(whole["Action"]), unique=True))
    if draw(st.integers(0, 3)) == 0:  # sometimes one more, perhaps outside every union
        head["Action"].append(draw(st.sampled_from(ACTIONS)))
    for edit in draw(st.lists(NARROWER, max_size=2)):
        if "Condition" in edit:
            head["Condition"] = {**head.get("Condition", {}), **edit["Condition"]}
        else:
            head.update(edit)
    return base, head


@settings(max_examples=30, deadline=None)  # each covered example is a solver search
@given(split_and_merged(), st.lists(requests(), min_size=20, max_size=20))
def test_a_union_cover_is_one_the_solver_proves(pair, sampled):
    """Whenever BASE's Allow statements of one shape together cover a HEAD Allow statement by
    text and the action kernel (whole.ShapeUnions), the solver proves that no request HEAD's
    statement matches is matched by no BASE statement, and no sampled request is one."""
    base, head = pair
    contained = lambda i, b, a: no_new_access(Checker([], [], []), i, b, a)  # noqa: E731
    if not ShapeUnions(base).covers(head, contained):
        return
    # A generous timeout: a search cut short on a loaded machine proves nothing either way,
    # and such an example is set aside (assume), never counted as a pass.
    outcome = find_widening(base, [head], [0], [], timeout_ms=30_000)
    assert outcome.request is None, (base, head, outcome.request)
    assume(outcome.proven)
    for request in sampled:
        for reading in READINGS:
            assert not statement_matches(head, request, reading) or any(
                statement_matches(s, request, reading) for s in base), (request, reading)


def test_a_union_cover_on_everyday_splits():
    read = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
    put = {**read, "Sid": "Put", "Action": ["s3:PutObject"]}
    both = {**read, "Action": ["s3:GetObject", "s3:PutObject"]}
    contained = lambda i, b, a: no_new_access(Checker([], [], []), i, b, a)  # noqa: E731
    assert ShapeUnions([read, put]).covers(both, contained)
    assert ShapeUnions([read, put]).covers({**both, "Sid": "X", "Resource": "arn:aws:s3:::b/*"},
                                           contained)
    assert not ShapeUnions([read]).covers(both, contained)  # s3:PutObject is new
    # Another Resource, Condition or Effect is another shape: not one union.
    assert not ShapeUnions([read, {**put, "Resource": "arn:aws:s3:::b/*"}]).covers(both,
                                                                                   contained)
    assert not ShapeUnions([read, {**put, "Condition": {"Bool": {"aws:SecureTransport": "true"}}}
                            ]).covers(both, contained)
    assert not ShapeUnions([read, {**put, "Effect": "Deny"}]).covers(both, contained)
    # NotAction is never merged nor covered this way (the solver's, as before), nor a Deny.
    everything_but_iam = {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}
    assert not ShapeUnions([everything_but_iam]).covers(both, contained)
    assert not ShapeUnions([read, put]).covers({**everything_but_iam, "NotAction": "*"},
                                               contained)
    assert not ShapeUnions([read, put]).covers({**both, "Effect": "Deny"}, contained)


def test_covers_by_text_on_the_everyday_narrowings():
    read = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
    bucket = {**read, "Resource": ["arn:aws:s3:::reports", "arn:aws:s3:::reports/*"]}
    tagged = {**bucket, "Condition": {"StringEquals": {"aws:PrincipalTag/team": "a"}}}
    assert covers_by_text(read, bucket) and covers_by_text(bucket, tagged)
    assert covers_by_text({**read, "Resource": "arn:aws:s3:::reports/*"},
                          {**read, "Resource": "arn:aws:s3:::reports/2024/*"})
    assert not covers_by_text(bucket, read)  # a widening
    assert not covers_by_text(tagged, bucket)  # a condition dropped
    # Not decided on the text (the solver's): a wildcard before the end of the outer entry.
    assert not covers_by_text({**read, "Resource": "arn:aws:s3:::*/x"},
                              {**read, "Resource": "arn:aws:s3:::b/x"})
    assert covers_by_solver({**read, "Resource": "arn:aws:s3:::*/x"},
                            {**read, "Resource": "arn:aws:s3:::b/x"})


def gate(tmp_path, capsys, base, head):
    paths = []
    for name, statements_ in (("base", base), ("head", head)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"Version": "2012-10-17", "Statement": statements_}))
        paths.append(str(path))
    code = main(["verify", *paths, "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    main(["verify", *paths])
    return code, report, capsys.readouterr().out


def test_a_witness_names_a_catalog_action_and_a_resource_its_statement_matches(tmp_path, capsys):
    narrowed = {"Effect": "Allow", "Action": ["s3:get*", "ec2:Describe*"],
                "Resource": "arn:aws:s3:::reports/*"}
    code, report, _ = gate(tmp_path, capsys, [narrowed], [{**narrowed, "Resource": "*"}])
    request = report["verdicts"][0]["request"]
    assert code == 1
    assert request["action"] in ("s3:GetObject", "s3:GetAccelerateConfiguration") or \
        re.fullmatch(r"(s3:Get|ec2:Describe)[A-Z]\w+", request["action"]), request
    assert request["resource"].startswith("arn:aws:") and \
        not request["resource"].startswith("arn:aws:s3:::reports/"), request


def test_the_summary_counts_the_request_models_solver_queries(tmp_path, capsys):
    """A narrowed number bound: not decided on the text, no witness holds, so the solver
    proves the pair covered; the summary counts that query."""
    limit = lambda n: {"Effect": "Allow", "Action": "s3:ListBucket",  # noqa: E731
                       "Resource": "*", "Condition": {"NumericLessThan": {"s3:max-keys": n}}}
    code, report, text = gate(tmp_path, capsys, [limit("100")], [limit("50")])
    assert code == 0 and report["verdicts"] == []
    queries = int(re.search(r"\((\d+) proof queries", text).group(1))
    assert queries >= 1, text

