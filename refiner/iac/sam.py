"""SAM policy templates (`S3ReadPolicy: {BucketName: ...}`) expanded as the SAM translator expands them.

The definitions are the SAM translator's own (samtranslator/policy_templates_data/
policy_templates.json, Apache-2.0; refiner/data/sam-policy-templates.NOTICE says which
commit): a template's Definition with each `{"Ref": PARAMETER}` of its Parameters replaced by
the value the template gives, everything else (Fn::Sub, AWS::Partition, ...) kept as written.
A name the data does not define, or a parameter without a value, cannot be expanded."""

from __future__ import annotations

import copy
import gzip
import json
from functools import lru_cache
from importlib import resources

DATA_FILE = "sam-policy-templates.json.gz"


@lru_cache(maxsize=1)
def definitions() -> dict[str, dict]:
    """name -> {"Definition", "Parameters", "Description"} of every SAM policy template."""
    data = resources.files("refiner").joinpath("data", DATA_FILE).read_bytes()
    return json.loads(gzip.decompress(data).decode("utf-8"))["Templates"]


def is_policy_template(entry: object) -> bool:
    """Whether a SAM Policies entry names a policy template ({Name: {parameters}}) rather than
    being a policy document (which has a Statement)."""
    return isinstance(entry, dict) and len(entry) == 1 and "Statement" not in entry and \
        next(iter(entry)) not in ("Version", "Id") and not next(iter(entry)).startswith("Fn::")


def expand(name: str, values: object) -> tuple[dict | None, str | None]:
    """(the policy document, None), or (None, why it cannot be expanded)."""
    template = definitions().get(name)
    if template is None:
        return None, f"{name} is not a SAM policy template refiner knows"
    parameters = template.get("Parameters") or {}
    if not isinstance(values, dict):
        return None, f"the parameters of {name} are not a mapping"
    missing = sorted(set(parameters) - set(values))
    if missing:
        return None, f"{name} needs a value for {', '.join(missing)}"

    def substituted(node: object) -> object:
        if isinstance(node, dict):
            if len(node) == 1 and isinstance(node.get("Ref"), str) and node["Ref"] in parameters:
                return copy.deepcopy(values[node["Ref"]])
            return {key: substituted(value) for key, value in node.items()}
        if isinstance(node, list):
            return [substituted(item) for item in node]
        return node

    return substituted(template["Definition"]), None  # as the translator writes it: no Version
