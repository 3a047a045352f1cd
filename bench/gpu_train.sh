#!/usr/bin/env bash
# One prepared GPU session (issue 9): check the CUDA inference path, then train every CPU-sized
# model at once on one GPU with the project's own `accelerate launch -m train`, for a fixed wall
# time, and hand back fp16 save_pretrained folders.
#
#   bash bench/gpu_train.sh SECONDS_OF_TRAINING OUTDIR
#   RUNS="unet_g2 unet_g2_cls" DATA=.gpu/data/mix50 WORKERS=4 bash bench/gpu_train.sh 470 OUTDIR
#
# RUNS picks runs from ARGS below (default: the first session's eight); DATA the training folder
# (default .gpu/data/mix); WORKERS the DataLoader workers per run (default 2). GPU_CHECK names
# the models bench/gpu_check.py times (default: all). EXTRA is appended to every train command
# (a CPU dry run: EXTRA="--train_batch_size 4 --resolution 64 --checkpointing_steps 3").
# Expects .gpu/whl (wheels the GPU image lacks) and the training data, built from
# ../shared/data/train by bench/make_gpu_data.py. Training runs with constant LR + EMA and
# checkpoints every 200 steps; at the deadline each run is stopped and its latest checkpoint is
# turned into RUN/final by resuming it with --max_train_steps equal to its step (no new steps).
set -u
TRAIN_SECONDS=${1:-300}
OUT_DIR=${2:-runs/gpu}
mkdir -p "$OUT_DIR/logs"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WHEELS=${WHEELS:-.gpu/whl}  # WHEELS=none where the packages are installed already
if [ -d "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
python3 - <<'PY' 2>&1 | tee "$OUT_DIR/logs/env.txt"
import torch, timm, accelerate, datasets, huggingface_hub, skimage
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
print("timm", timm.__version__, "accelerate", accelerate.__version__, "datasets", datasets.__version__,
      "hub", huggingface_hub.__version__, "skimage", skimage.__version__)
PY

RUNS=${RUNS:-unet unet_l1 densenet mobilenet fusion eccv16 siggraph17 exemplar}
DATA=${DATA:-.gpu/data/mix}
WORKERS=${WORKERS:-2}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
COMMON=(--dataset "$DATA" --mixed_precision bf16 --dataloader_num_workers "$WORKERS"
        --lr_scheduler constant --lr_warmup_steps 100 --ema_decay 0.999
        --max_train_steps 1000000 --checkpointing_steps 200 --checkpoints_total_limit 2
        --validation_steps 1000 --max_validation_samples 32 --save_dtype fp16 --seed 0)

declare -A ARGS
ARGS[unet]='--model unet --resolution 128 --train_batch_size 64 --learning_rate 5e-4 --model_kwargs {"working_size":128,"loss":"mse"}'
ARGS[unet_l1]='--model unet --resolution 192 --train_batch_size 32 --learning_rate 5e-4 --model_kwargs {"working_size":192,"loss":"l1"}'
ARGS[densenet]='--model densenet --resolution 128 --train_batch_size 64 --learning_rate 5e-4 --model_kwargs {"decoder_max_width":64,"encoder_kwargs":{"out_indices":[0,1,2,3]}}'
ARGS[mobilenet]='--model mobilenet --resolution 128 --train_batch_size 64 --learning_rate 5e-4'
ARGS[fusion]='--model fusion --resolution 128 --train_batch_size 64 --model_kwargs {"working_size":128}'
ARGS[eccv16]='--model eccv16 --resolution 128 --train_batch_size 64'
ARGS[siggraph17]='--model siggraph17 --resolution 128 --train_batch_size 64'
ARGS[exemplar]='--model exemplar --resolution 128 --train_batch_size 64 --learning_rate 5e-4'
# second GPU session (issue 9): the shipped unet fine-tuned longer, and unet with the 313-bin
# classification head (annealed mean), which keeps colours that regression averages to gray
SHIPPED_UNET='--model unet --init_weights deepcolor/weights/unet --resolution 128 --train_batch_size 64 --learning_rate 2e-4'
ARGS[unet_g2]="$SHIPPED_UNET"' --model_kwargs {"semantic_weight":0.005,"semantic_size":112}'
ARGS[unet_g2_sem]="$SHIPPED_UNET"' --model_kwargs {"semantic_weight":0.05,"semantic_size":112}'
UNET_CLS='--model unet --resolution 128 --train_batch_size 64 --learning_rate 5e-4 --model_kwargs'
CLS='"working_size":128,"loss":"classification"'
ARGS[unet_g2_cls]="$UNET_CLS {$CLS"',"rebalance":0.5,"semantic_weight":0.01,"semantic_size":112}'
# the same, continued from unet_g2_cls's final weights (copied to .gpu/init so that they travel)
ARGS[unet_g2_cls_more]="${ARGS[unet_g2_cls]} --init_weights .gpu/init/unet_g2_cls"
ARGS[unet_g2_cls25]="$UNET_CLS {$CLS"',"rebalance":0.25,"semantic_weight":0.03,"semantic_size":112}'

pids=()
for run in $RUNS; do
  [ -n "${ARGS[$run]:-}" ] || { echo "unknown run $run (see ARGS in $0)"; exit 2; }
done
for run in $RUNS; do
  # shellcheck disable=SC2086
  accelerate launch --num_processes 1 --num_machines 1 --mixed_precision bf16 --dynamo_backend no \
    -m train ${ARGS[$run]} "${COMMON[@]}" "${EXTRA_ARGS[@]}" --output_dir "runs/$run" \
    > "$OUT_DIR/logs/$run.log" 2>&1 &
  pids+=($!)
done

# shellcheck disable=SC2086
( python3 bench/gpu_check.py ${GPU_CHECK:-} > "$OUT_DIR/logs/gpu_check.txt" 2>&1 ) &
check_pid=$!

sleep "$TRAIN_SECONDS"
for pid in "${pids[@]}"; do pkill -INT -P "$pid" 2>/dev/null; kill -INT "$pid" 2>/dev/null; done
sleep 5
for pid in "${pids[@]}"; do pkill -KILL -P "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null; done
wait "$check_pid" 2>/dev/null || true
nvidia-smi --query-gpu=name,memory.used --format=csv >> "$OUT_DIR/logs/env.txt" 2>&1

# Turn each run's latest checkpoint into RUN/final (no further steps).
for run in $RUNS; do
  latest=$(ls -d runs/$run/checkpoints/checkpoint-* 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$latest" ]; then echo "$run: no checkpoint" >> "$OUT_DIR/logs/summary.txt"; continue; fi
  step=${latest##*-}
  # shellcheck disable=SC2086
  ( python3 -m train ${ARGS[$run]} "${COMMON[@]}" "${EXTRA_ARGS[@]}" --output_dir "runs/$run" --no-cache_images \
      --resume_from_checkpoint latest --max_train_steps "$step" --validation_steps 0 \
      > "$OUT_DIR/logs/$run.final.log" 2>&1
    echo "$run: step $step, exit $?" >> "$OUT_DIR/logs/summary.txt" ) &
done
wait
pack() {  # pack NAME RUN... : one tar per group (at most 8 files come back, 16 MiB each)
  local name=$1; shift
  local dirs=()
  for run in "$@"; do
    [ -d "runs/$run/final" ] || continue
    cp "runs/$run/metrics.csv" "runs/$run/final/train_metrics.csv" 2>/dev/null
    cp "runs/$run/config.json" "runs/$run/final/run_config.json" 2>/dev/null
    dirs+=("$run/final")
  done
  [ ${#dirs[@]} -gt 0 ] && tar -C runs -cf "$OUT_DIR/$name.tar" "${dirs[@]}"
}
# one tar per run, eccv16 and siggraph17 together: at most 8 files come back, logs.tgz included
for run in $RUNS; do
  case $run in
    eccv16) pack zhang eccv16 siggraph17 ;;
    siggraph17) [[ " $RUNS " == *" eccv16 "* ]] || pack siggraph17 siggraph17 ;;
    *) pack "$run" "$run" ;;
  esac
done
cat "$OUT_DIR/logs/summary.txt"
tar -C "$OUT_DIR" -czf "$OUT_DIR/logs.tgz" logs
ls -la "$OUT_DIR"
