#!/usr/bin/python
"""Accelerator names looked up in the installed SkyPilot's catalogue, read only."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sky_accelerator_info
short_description: Accelerator names looked up in the installed SkyPilot's catalogue
description:
  - Looks each name up, case-insensitively, among the accelerators the installed SkyPilot knows without
    a network, its common GPUs and TPUs and those of every cloud catalogue it has downloaded
    (C(sky show-gpus) and launches fetch them into C(~/.sky/catalogs)).
  - A misspelt GPU is not refused by SkyPilot's client; the job would wait in the jobs controller's
    queue for capacity that never comes. Roles look their inputs up here to name the field at fault.
    Changes nothing and makes no API call.
options:
  names:
    description: The accelerator names to look up.
    type: list
    elements: str
    required: true
version_added: "0.1.0"
extends_documentation_fragment:
  - wrinklefree.deployer.sky
  - wrinklefree.deployer.sky.read_only
author: WrinkleFree-Deployer maintainers (@wrinklefree)
"""

EXAMPLES = r"""
- name: Look the training GPU up
  wrinklefree.deployer.sky_accelerator_info:
    names: [H100]
  register: catalogue

- name: Refuse an unknown one
  ansible.builtin.assert:
    that: catalogue.found.H100 is not none
    fail_msg: "unknown accelerator; common GPUs: {{ catalogue.common | join(', ') }}"
"""

RETURN = r"""
found:
  description: Each name asked for, mapped to SkyPilot's spelling of it, or null when SkyPilot does not know it.
  returned: always
  type: dict
  sample: {h100: H100, H1000: null}
common:
  description: SkyPilot's common GPUs, to suggest in an error.
  returned: always
  type: list
  elements: str
"""

import importlib

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wrinklefree.deployer.plugins.module_utils.sky_sdk import known_accelerators


def main():
    module = AnsibleModule(argument_spec={"names": {"type": "list", "elements": "str", "required": True}},
                           supports_check_mode=True)
    try:
        known = known_accelerators()
        common = list(importlib.import_module("sky.catalog").get_common_gpus())
    except ImportError as exc:
        module.fail_json(msg=f"SkyPilot's catalogue cannot be imported: {exc}. Install skypilot==0.14.1 in this Python.")
    module.exit_json(changed=False, found={n: known.get(n.lower()) for n in module.params["names"]}, common=common)


if __name__ == "__main__":
    main()
