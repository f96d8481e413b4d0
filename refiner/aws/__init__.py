"""Live AWS: fetch findings and IAM data, judge AWS's own recommendations, apply with a journal."""

from __future__ import annotations

import functools

from ..errors import InputError

# The IAM actions each step calls (tests record every call and hold them to this list;
# examples/refiner-aws/ has the least-privilege policy refiner derives from it).
PERMISSIONS = {
    "fetch": ["access-analyzer:ListAnalyzers", "access-analyzer:ListFindings",
              "access-analyzer:GetFinding", "iam:GetAccountAuthorizationDetails",
              "sts:GetCallerIdentity", "sts:AssumeRole"],
    "compare": ["access-analyzer:GenerateFindingRecommendation",
                "access-analyzer:GetFindingRecommendation"],
    "apply": ["iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions",
              "iam:CreatePolicyVersion", "iam:DeletePolicyVersion", "iam:SetDefaultPolicyVersion",
              "iam:CreatePolicy", "iam:DeletePolicy",
              "iam:ListEntitiesForPolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
              "iam:AttachUserPolicy", "iam:DetachUserPolicy", "iam:GetRolePolicy",
              "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:GetUserPolicy",
              "iam:PutUserPolicy", "iam:DeleteUserPolicy", "iam:GetRole", "iam:GetUser",
              "iam:GetGroup", "iam:GetGroupPolicy", "iam:PutGroupPolicy", "iam:DeleteGroupPolicy",
              "iam:ListAttachedRolePolicies", "iam:ListAttachedUserPolicies",
              "access-analyzer:GetFinding", "access-analyzer:ListAnalyzers",
              "sts:GetCallerIdentity", "sts:AssumeRole"],
}
# API operations authorized by an IAM action of another name.
AUTHORIZED_BY = {"access-analyzer:ListFindingsV2": "access-analyzer:ListFindings",
                 "access-analyzer:GetFindingV2": "access-analyzer:GetFinding"}


def session(profile: str | None = None, region: str | None = None):
    """A boto3 session (boto3 is the `aws` extra). Endpoints follow the usual AWS settings,
    including AWS_ENDPOINT_URL_IAM and AWS_ENDPOINT_URL_ACCESSANALYZER."""
    try:
        import boto3
    except ImportError:
        raise InputError("refiner aws needs boto3: pip install 'iam-refiner[aws]'") from None
    import botocore.exceptions

    try:
        made = boto3.Session(profile_name=profile, region_name=region)
    except botocore.exceptions.ProfileNotFound as error:
        raise InputError(str(error)) from None
    made._session.register_component("data_loader", _loader())
    return made


@functools.lru_cache(maxsize=1)
def _loader():
    """botocore's service models, read once per process rather than once per session."""
    from botocore.loaders import create_loader

    return create_loader()


def client(aws_session, service: str):
    """A client that backs off adaptively when AWS throttles."""
    from botocore.config import Config

    config = Config(retries={"mode": "adaptive", "max_attempts": 10})
    return aws_session.client(service, config=config)


def aws_errors():
    """The exceptions that mean AWS (or the network) said no: reported as one line."""
    import botocore.exceptions

    return (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
