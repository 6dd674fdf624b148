"""``benchmarks/accuracy/part_prior_alone.py``: the part prior alone on a generated scene, per defect kind."""

import json

from anomalib_npgmf.models.npgmf.components import part_prior

from .conftest import load_accuracy_script


def test_it_finds_missing_and_extra_parts_and_leaves_the_prior_as_it_found_it(tmp_path, capsys):
    script = load_accuracy_script("part_prior_alone")
    for cluster_on in ("shape", "all"):
        argv = ["--root", str(tmp_path / "data"), "--scenes", "screws", "--data-seeds", "0", "--small"]
        argv += ["--cluster-on", cluster_on, "--json", str(tmp_path / f"{cluster_on}.json")]
        assert script.main(argv) == 0
        assert part_prior.SHAPE_FEATURES == 3  # --cluster-on all is undone
    figures = json.loads((tmp_path / "shape.json").read_text())["screws|data seed 0"]
    kinds = {"missing_part", "extra_part", "wrong_kind", "wrong_length", "wrong_colour", "scratch", "broken_part"}
    assert {f"kind {kind}" for kind in kinds} <= set(figures)
    # counting sees a missing or an extra part on every image of the small scene (4 good test images, 1 of each)
    assert figures["kind missing_part"] == figures["kind extra_part"] == 1.0
    assert "screws: logical image AUROC" in capsys.readouterr().out
