# The stage's setup: the pinned trainer (TRAINER, checked by the train role) into the node's Python.
set -euo pipefail
python -m pip install --quiet "$TRAINER"
