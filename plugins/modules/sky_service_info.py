#!/usr/bin/python
"""A SkyServe service's endpoint, status and replicas, read only."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sky_service_info
short_description: A SkyServe service's endpoint, status and replicas
description:
  - Reads one service with the SkyPilot SDK (C(sky.serve.status), C(sky.get)) and returns its endpoint,
    status and replicas, each with its infra (cloud and region), whether it is spot, and its state.
    Changes nothing; a service that does not exist returns no endpoint and no replicas.
options:
  name:
    description: The SkyServe service to read.
    required: true
    type: str
version_added: "0.1.0"
extends_documentation_fragment:
  - wrinklefree.deployer.sky
  - wrinklefree.deployer.sky.read_only
author: WrinkleFree-Deployer maintainers (@wrinklefree)
"""

EXAMPLES = r"""
- name: The burst layer's replicas
  wrinklefree.deployer.sky_service_info:
    name: bitnet
  register: burst
"""

RETURN = r"""
endpoint:
  description: The service endpoint, once SkyServe reports one.
  returned: always
  type: str
status:
  description: The service status SkyServe reports, or null when there is no such service.
  returned: always
  type: str
replicas:
  description: Replicas (replica_id, name, status, version, endpoint, infra, is_spot).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wrinklefree.deployer.plugins.module_utils.sky_sdk import import_sky, report, service


def main():
    module = AnsibleModule(argument_spec={"name": {"type": "str", "required": True}}, supports_check_mode=True)
    sky = import_sky(module)
    module.exit_json(changed=False, **report(service(module, sky, module.params["name"])))


if __name__ == "__main__":
    main()
