# Copyright: sessionshift contributors
# Apache License 2.0

"""The attributes every module of the collection declares: check mode, diff mode, platform.

A module that says more about one attribute lists it with its ``details`` alone; the fragment
gives the description and the support level.
"""


def _attributes(diff_support):
    return rf"""
attributes:
  check_mode:
    description: Can run in check mode and report whether it would change anything, changing nothing.
    support: full
  diff_mode:
    description: Returns what changed (or would change, in check mode) when run with C(--diff).
    support: {diff_support}
  platform:
    description: The target operating systems it runs on.
    support: N/A
    platforms: posix
"""


class ModuleDocFragment:
    # Set on the instance (the plugin loader makes one): ansible-test's yamllint reads the class
    # body's assignments as YAML literals, and these texts are composed.
    def __init__(self):
        # Changes something: full check mode and diff.
        self.DOCUMENTATION = _attributes("full")
        # Reads or records only: full check mode, no diff.
        self.NO_DIFF = _attributes("none")
