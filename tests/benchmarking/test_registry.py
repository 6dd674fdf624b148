"""Every Npgmf row of the benchmark registry builds: a row is the demo config plus its overrides, so a new switch in
the demo config (the part map, the chosen part weight) must be turned off with the prior it needs in each row that
drops that prior. Building is cheap (random init, 64 px); a row that cannot build fails the benchmark only hours in."""

import pytest

from anomalib_npgmf.benchmarking import registry

NPGMF_ROWS = [name for name in registry.MODELS if name.startswith("Npgmf")]


def test_the_registry_has_npgmf_rows_that_drop_the_part_prior():
    assert len(NPGMF_ROWS) > 20
    assert {"Npgmf", "Npgmf_no_part", "Npgmf_paper", "Npgmf_fixed_part_weight"} <= set(NPGMF_ROWS)


@pytest.mark.parametrize("name", NPGMF_ROWS)
def test_every_npgmf_row_builds(name: str):
    model = registry.MODELS[name].build(64, False)
    assert type(model).__name__ == "Npgmf"


def test_the_rows_around_the_chosen_part_weight_say_what_they_are():
    default = registry.MODELS["Npgmf"].build(64, False).model
    fixed = registry.MODELS["Npgmf_fixed_part_weight"].build(64, False).model
    without = registry.MODELS["Npgmf_no_part"].build(64, False).model
    assert default.choose_part_weight and not bool(default.part_weight_chosen)
    assert not fixed.choose_part_weight and fixed.current_part_weight == default.current_part_weight == 4.0
    assert without.part_prior is None and not without.part_in_map and not without.choose_part_weight
