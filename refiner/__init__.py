"""refiner: formally verified least-privilege refinement of AWS IAM policies."""

__version__ = "0.1.0"
