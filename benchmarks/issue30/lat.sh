#!/bin/bash
# latency predictor study (issue 30): fit a regression per backend on 100 random subnets, validate on 50 held-out
cd "$(dirname "$0")/../.."
for b in "$@"; do
  [ -f runs/i30/lat/$b.json ] || .venv/bin/python tools/build_latency_lut.py --config experiments/supernet_tiny.yaml \
      --predictor regression --backend $b --fit-subnets 100 --threads 1 --out runs/i30/lat/$b.json > runs/i30/lat/$b.build.log 2>&1
  [ -f runs/i30/lat/$b.validate.json ] || .venv/bin/python tools/latency.py --config experiments/supernet_tiny.yaml \
      --lut runs/i30/lat/$b.json --validate 50 --repeats 3 --plot runs/i30/lat/$b.png --json > runs/i30/lat/$b.validate.tmp 2> runs/i30/lat/$b.validate.log \
      && mv runs/i30/lat/$b.validate.tmp runs/i30/lat/$b.validate.json
done
