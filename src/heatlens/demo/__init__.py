"""A generated demo organisation: HEAT and DORA data with the platform's effects built in."""

from heatlens.demo.generator import generate, write
from heatlens.demo.organisation import OrgSpec, usage_scale_for

__all__ = ["OrgSpec", "generate", "usage_scale_for", "write"]
