"""A generated demo organisation: HEAT and DORA data with the platform's effects built in."""

from heatlens.demo.organisation import OrgSpec, generate, usage_scale_for, write

__all__ = ["OrgSpec", "generate", "usage_scale_for", "write"]
