"""The run's configuration: building components from their config entries (`_target_`), the allowed
values each argument declares, validating a config and a command line before any work starts, and
reading the configs that runs saved, an earlier vaebench's included.

The constrained types a component of your own declares its arguments with live here:
`from vaebench.config import Count, Positive` (`checks.py` says what each allows).
"""

from vaebench.config.checks import Count, NonNegative, NonNegativeInt, Positive, Unused

__all__ = ["Count", "NonNegative", "NonNegativeInt", "Positive", "Unused"]
