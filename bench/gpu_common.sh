# Sourced by the bench/*_gpu.sh scripts after they set RUNS (and optionally DATA, SCENES):
# the held-out scenes, results folder, worker counts, eval arguments, `say` and the GPU's identity.
DATA=${DATA:-.device/data}
SCENES=${SCENES:-corridor_0007,courtyard_0001,courtyard_0008,room_0001,room_0002,room_0006,street_0005,street_0008}
RES="$RUNS/results"
export PYTHONUNBUFFERED=1
mkdir -p "$RES"
W=$(( $(nproc) - 2 ))
ev=(--scenes "$SCENES" --workers "$(nproc)" --cache "$RUNS/evalset.npz")
say() { echo "== $* $(date +%T)" | tee -a "$RES/stages.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RES/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" >> "$RES/gpu.txt"
