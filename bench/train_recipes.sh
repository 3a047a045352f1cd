#!/usr/bin/env bash
# The training recipes of the shipped weights, as `accelerate launch -m train` commands.
#
#   bash bench/train_recipes.sh list                    # print every recipe's command
#   bash bench/train_recipes.sh unet densenet           # train those, one after another
#   bash bench/train_recipes.sh all
#
# DATA     the training mix: python bench/make_training_data.py runs/data/mix (78 photos per
#          Tiny ImageNet class); unet_bins used 50, then 40 per class: set MIX50 and MIX40 to
#          such folders to repeat it exactly (default: DATA)
# OUT      where the run folders go (default runs/recipes); RUN/final is what
#          `deepcolor colorize --model NAME --weights RUN/final` loads
# EXTRA    options appended to every command, e.g. "--dataloader_num_workers 8", or
#          "--mixed_precision no" on a machine without a GPU (bf16 needs a GPU)
#
# Each recipe trains as many steps as its shipped weights had (constant learning rate after a
# 100-step warm-up, EMA 0.999, batch 64, bf16); a recipe named NAME-2 fine-tunes NAME's result.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-runs/data/mix}
MIX50=${MIX50:-$DATA}
MIX40=${MIX40:-$DATA}
OUT=${OUT:-runs/recipes}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
COMMON="--mixed_precision bf16 --lr_scheduler constant --lr_warmup_steps 100 --ema_decay 0.999
  --checkpointing_steps 200 --checkpoints_total_limit 2 --validation_steps 500
  --max_validation_samples 32 --dataloader_num_workers 4 --save_dtype fp16 --seed 0"
BATCH="--resolution 128 --train_batch_size 64"
CLS='"working_size":128,"loss":"classification","rebalance":0.5,"semantic_weight":0.01,"semantic_size":112'

ORDER=(unet unet-2 densenet mobilenet fusion eccv16 siggraph17 exemplar unet_bins unet_bins-2)
declare -A RECIPE
RECIPE[unet]="--model unet $BATCH --learning_rate 5e-4 --model_kwargs {\"working_size\":128,\"loss\":\"mse\"} --dataset $DATA --max_train_steps 1000 $COMMON"
# the shipped unet: stage 1 fine-tuned at 64 px with the Huber and semantic losses (on a CPU)
RECIPE[unet-2]="--model unet --init_weights $OUT/unet/final --model_kwargs {\"working_size\":128,\"loss\":\"huber\",\"semantic_weight\":0.005,\"semantic_size\":112} --dataset $DATA --resolution 64 --train_batch_size 32 --learning_rate 2e-4 --lr_scheduler constant --ema_decay 0.998 --max_train_steps 600 --checkpointing_steps 150 --validation_steps 600 --max_validation_samples 32 --save_dtype fp16 --seed 1"
RECIPE[densenet]="--model densenet $BATCH --learning_rate 5e-4 --model_kwargs {\"decoder_max_width\":64,\"encoder_kwargs\":{\"out_indices\":[0,1,2,3]}} --dataset $DATA --max_train_steps 800 $COMMON"
RECIPE[mobilenet]="--model mobilenet $BATCH --learning_rate 5e-4 --dataset $DATA --max_train_steps 1000 $COMMON"
RECIPE[fusion]="--model fusion $BATCH --model_kwargs {\"working_size\":128} --dataset $DATA --max_train_steps 1400 $COMMON"
RECIPE[eccv16]="--model eccv16 $BATCH --dataset $DATA --max_train_steps 2200 $COMMON"
RECIPE[siggraph17]="--model siggraph17 $BATCH --dataset $DATA --max_train_steps 1200 $COMMON"
RECIPE[exemplar]="--model exemplar $BATCH --learning_rate 5e-4 --dataset $DATA --max_train_steps 800 $COMMON"
RECIPE[unet_bins]="--model unet $BATCH --learning_rate 5e-4 --model_kwargs {$CLS} --dataset $MIX50 --max_train_steps 1200 $COMMON"
RECIPE[unet_bins-2]="--model unet $BATCH --learning_rate 5e-4 --model_kwargs {$CLS} --init_weights $OUT/unet_bins/final --dataset $MIX40 --max_train_steps 1600 $COMMON"

command=${1:-list}
if [ "$command" = list ]; then
  set -f
  for name in "${ORDER[@]}"; do
    printf '%s: accelerate launch -m train' "$name"
    for arg in ${RECIPE[$name]}; do  # JSON arguments in single quotes, ready to paste
      if [[ $arg == *'"'* ]]; then printf " '%s'" "$arg"; else printf ' %s' "$arg"; fi
    done
    printf ' --output_dir %s\n' "$OUT/$name"
  done
  exit 0
fi
[ "$command" = all ] && set -- "${ORDER[@]}"
for name in "$@"; do
  [ -n "${RECIPE[$name]:-}" ] || { echo "unknown recipe $name; known: ${ORDER[*]}" >&2; exit 2; }
done
[ -d "$DATA" ] || { echo "no training data in $DATA: run python bench/make_training_data.py $DATA" >&2; exit 2; }
set -f  # the JSON of --model_kwargs holds [ ] and must not be read as a file pattern
for name in "$@"; do
  echo "== $name"
  # shellcheck disable=SC2086
  accelerate launch -m train ${RECIPE[$name]} "${EXTRA_ARGS[@]}" --output_dir "$OUT/$name"
done
