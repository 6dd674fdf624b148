"""Npgmf's two variants: the paper's model, and ours with the normality priors on top (issue 16).

Each of our additions is its own switch; a switch left at ``None`` takes the variant's value, so
``Npgmf(variant="paper", use_global_prior=True)`` is the paper's model plus one measured addition.
"""

VARIANTS: dict[str, dict[str, bool]] = {
    "paper": {
        "use_global_prior": False,
        "use_patch_prior": False,
        "use_invariant_prior": False,
        "use_region_prior": False,
        "use_part_prior": False,
        "raw_embedding": False,
    },
    "plus": {
        "use_global_prior": True,
        "use_patch_prior": True,
        "use_invariant_prior": False,
        "use_region_prior": False,
        "use_part_prior": False,
        "raw_embedding": True,
    },
}


def resolve_switches(variant: str, **switches: bool | None) -> dict[str, bool]:
    """The variant's switches with every explicit (non-``None``) one in ``switches`` applied over them."""
    if variant not in VARIANTS:
        msg = f"variant must be one of {sorted(VARIANTS)}, got {variant!r}"
        raise ValueError(msg)
    unknown = set(switches) - set(VARIANTS[variant])
    if unknown:
        msg = f"unknown Npgmf switch(es) {sorted(unknown)}; known: {sorted(VARIANTS[variant])}"
        raise ValueError(msg)
    defaults = VARIANTS[variant]
    return {name: default if switches.get(name) is None else bool(switches[name]) for name, default in defaults.items()}
