#!/bin/bash
# re-measure the int8 search's finalists on a quiet machine, 3 times each, interleaved
cd "$(dirname "$0")/../.."
for r in 1 2 3; do
  while read -r arch; do
    .venv/bin/python tools/latency.py --config experiments/supernet_tiny.yaml --arch "$arch" --backend onnxruntime-int8 --threads 1 --json 2>/dev/null \
      | .venv/bin/python -c "import json,sys; d=json.load(sys.stdin); print($r, round(d['measured']['ms'],3), sys.argv[1][:30])" "$arch"
  done < ${1:-runs/i30/finalists.txt}
done > runs/i30/finalists_remeasured.txt
echo done > runs/i30/remeasure.done
