"""What the SkyPilot modules share in their documentation."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options: {}
requirements:
  - skypilot (0.14) in the Python that runs the module
notes:
  - The SDK is imported when the module runs, from the Python that runs it (the SkyPilot venv on the
    controller host).
"""

    # The modules that only read.
    READ_ONLY = r"""
attributes:
  check_mode:
    support: full
    description: It reads only; check mode runs it the same way.
"""
