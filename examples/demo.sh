#!/usr/bin/env bash
# End-to-end demo on the generated MVTec-LOCO-layout data, with anomalib's own CLI:
# generate -> anomalib train (fit + test) -> LOCO table (logical / structural) -> anomalib export (OpenVINO)
# -> predict with the exported model -> heatmaps. Usage: bash examples/demo.sh [OUTPUT_DIR]
set -euo pipefail
OUT="$(realpath -m "${1:-demo_output}")"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
CONFIG="$HERE/configs/npgmf/demo_cpu.yaml"
CATEGORY=demo_box
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
start=$(date +%s)

echo "== 1/5 generate the synthetic LOCO-layout dataset"
anomalib-npgmf generate --root "$OUT/datasets" --category "$CATEGORY" --seed 0

echo "== 2/5 anomalib train --model Npgmf (fit, then test on logical + structural anomalies)"
anomalib train --config "$CONFIG" --data.root "$OUT/datasets" --data.category "$CATEGORY" \
  --default_root_dir "$OUT/results" 2>&1 | tee "$OUT/train.log" | grep -v -i "warn"
CKPT="$OUT/results/Npgmf/MVTecLOCORegions/$CATEGORY/latest/weights/lightning/model.ckpt"
[ -f "$CKPT" ] || { echo "demo: no checkpoint at $CKPT" >&2; exit 1; }

echo "== 3/5 LOCO evaluation: image AUROC and AU-sPRO, logical vs structural, heatmap grids"
anomalib-npgmf evaluate --ckpt "$CKPT" --model Npgmf --root "$OUT/datasets" --category "$CATEGORY" \
  --output "$OUT/evaluation"

echo "== 4/5 anomalib export --export_type openvino"
anomalib export --config "$CONFIG" --ckpt_path "$CKPT" --export_type openvino \
  --export_root "$OUT/export" 2>&1 | grep -v -i "warn" | tail -n 3
XML=$(find "$OUT/export" -name model.xml | head -n 1)
[ -n "$XML" ] || { echo "demo: export produced no model.xml under $OUT/export" >&2; exit 1; }

echo "== 5/5 predict with the exported OpenVINO model (f32) and write heatmaps"
anomalib-npgmf predict-openvino --model "$XML" --input "$OUT/datasets/$CATEGORY/test" \
  --output "$OUT/predictions" --precision f32

cat <<DONE

Demo finished in $(( $(date +%s) - start )) s. Results:
  dataset           $OUT/datasets/$CATEGORY
  checkpoint        $CKPT
  anomalib images   $OUT/results/Npgmf/MVTecLOCORegions/$CATEGORY/latest/images
  LOCO table        $OUT/evaluation/loco_report.md (.json, .csv)
  heatmap grids     $OUT/evaluation/grids
  OpenVINO model    $XML
  OpenVINO heatmaps $OUT/predictions/heatmaps  (scores: $OUT/predictions/predictions.csv)
DONE
