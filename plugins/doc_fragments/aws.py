# Copyright: sessionshift contributors
# Apache License 2.0

"""What every AWS module of the collection documents: amazon.aws's connection, region and SDK fragments.

One fragment instead of three in each module. It is the union of amazon.aws's own texts (read
from that collection, a dependency, so they stay its current ones): their options, notes and
requirements.
"""

import yaml
from ansible_collections.amazon.aws.plugins.doc_fragments import boto3, common, region


def _union(*texts):
    merged = {"options": {}, "notes": [], "requirements": []}
    for text in texts:
        fragment = yaml.safe_load(text) or {}
        merged["options"].update(fragment.get("options") or {})
        for key in ("notes", "requirements"):
            merged[key] += [item for item in fragment.get(key) or [] if item not in merged[key]]
    return yaml.safe_dump({key: value for key, value in merged.items() if value}, sort_keys=False)


class ModuleDocFragment:
    # Set on the instance, as amazon.aws's boto3 fragment does: ansible-test's yamllint reads
    # the class body's assignments as YAML literals.
    def __init__(self):
        self.DOCUMENTATION = _union(common.ModuleDocFragment.MODULES, region.ModuleDocFragment.MODULES,
                                    boto3.ModuleDocFragment().DOCUMENTATION)
