"""refiner: formally verified least-privilege refinement of AWS IAM policies."""

__version__ = "0.2.0"
DISTRIBUTION = "iam-refiner"  # the name on the package index; import and command: refiner
