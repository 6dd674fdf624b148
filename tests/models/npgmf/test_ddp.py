"""DDP on 2 CPU processes (gloo) gives the same Npgmf as one process, up to float noise."""

from ..conftest import relative_differences


def test_two_process_ddp_matches_one_process(demo_dataset, tmp_path, train_ddp):
    root, _ = demo_dataset
    single = train_ddp("npgmf", root, 1, tmp_path / "single.pt")
    ddp = train_ddp("npgmf", root, 2, tmp_path / "ddp.pt")
    worst = relative_differences(single, ddp)
    offenders = {k: v for k, v in worst.items() if v > 1e-3}
    assert not offenders, sorted(offenders.items(), key=lambda kv: -kv[1])[:10]
    # the statistics that DDP must reduce are really there and really equal
    for key in ("model.logical_norm.q_high", "model.structural_norm.q_high", "model.logical.quantizer.codes"):
        assert key in single and worst[key] <= 1e-3
    assert bool(single["model.logical_norm.fitted"])
