# The stage's run, on every node. Refuses to start without its input (the previous stage's
# final/); resumes from the newest checkpoint-N/ in its output directory; one process on one GPU
# (or CPU), else torchrun over SkyPilot's nodes with FSDP on (rendezvous on the first node's
# MASTER_PORT, 29500 unless the task sets it). W&B continues the stage's one run.
set -euo pipefail
if [ -n "$INPUT_DIR" ] && [ ! -d "$INPUT_DIR" ]; then
  echo "stage $STAGE: its input $INPUT_DIR (the previous stage's final/) is missing: run that stage first" >&2
  exit 2
fi
# A recovered job whose stage already wrote final/ has nothing left to do.
if [ -d "$OUTPUT_DIR/final" ]; then
  echo "stage $STAGE: $OUTPUT_DIR/final exists: done"
  exit 0
fi
mkdir -p "$OUTPUT_DIR"
args=(--model "$MODEL" --stage "$STAGE" --output-dir "$OUTPUT_DIR")
if [ -n "$INPUT_DIR" ]; then
  args+=(--input-dir "$INPUT_DIR")
fi
newest=$(find "$OUTPUT_DIR" -maxdepth 1 -type d -name 'checkpoint-*' -printf '%f\n' | sed -n 's/^checkpoint-\([0-9][0-9]*\)$/\1/p' \
  | sort -n | tail -n 1)
if [ -n "$newest" ]; then
  args+=(--resume-from "$OUTPUT_DIR/checkpoint-$newest")
fi
nodes=${SKYPILOT_NUM_NODES:-1}
procs=${SKYPILOT_NUM_GPUS_PER_NODE:-0}
if [ "$procs" -lt 1 ]; then
  procs=1
fi
if [ "$nodes" -eq 1 ] && [ "$procs" -eq 1 ]; then
  exec python -m "$TRAINER_MODULE" "${args[@]}"
fi
export WF_FSDP=1
master=$(printf '%s\n' "$SKYPILOT_NODE_IPS" | head -n 1)
exec torchrun --nnodes "$nodes" --nproc-per-node "$procs" --node-rank "${SKYPILOT_NODE_RANK:-0}" \
  --master-addr "$master" --master-port "${MASTER_PORT:-29500}" -m "$TRAINER_MODULE" "${args[@]}"
