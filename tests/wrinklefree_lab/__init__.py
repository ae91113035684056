"""The lab harness that the tests and the benchmarks share: lab lifecycle (``labs``), command
and playbook helpers (``helpers``), the fake Hetzner APIs (``fake_hetzner``), the recording fake
of SkyPilot's SDK (``fake_sky``), a lab host playing a cloud VM (``cloud_vm``) and the scripts
those copy onto hosts (``loadgen``, ``tls_terminator``). Installed with the project
(``pip install -e .``), so nothing puts ``tests/`` on ``sys.path``."""
