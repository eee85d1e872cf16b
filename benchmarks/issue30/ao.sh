#!/bin/bash
# usage: ao.sh NAME CHECKPOINT [ARCH]  -- tracks val and test with ORT float32 and int8, scores them
cd "$(dirname "$0")/../.."
name=$1; ckpt=$2; arch=${3:+--arch $3}
for split in val test; do
  for backend in onnxruntime onnxruntime-int8; do
    .venv/bin/python tools/test.py --checkpoint $ckpt $arch --dataset got10k --root cache/data_tiny --split $split \
      --out runs/i30/results/$split --name $name-$backend --backend $backend --threads 1 --calibration 128 2>&1 | grep -v "it/s\|seq/s" | tail -2
  done
  .venv/bin/python tools/eval.py --dataset got10k --root cache/data_tiny --split $split \
      --results runs/i30/results/$split/$name-onnxruntime --results runs/i30/results/$split/$name-onnxruntime-int8 --json > runs/i30/results/$name-$split.json
  .venv/bin/python tools/eval.py --dataset got10k --root cache/data_tiny --split $split \
      --results runs/i30/results/$split/$name-onnxruntime --results runs/i30/results/$split/$name-onnxruntime-int8
done
