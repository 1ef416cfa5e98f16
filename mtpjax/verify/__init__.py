"""Verification of a potential against its oracle on structures never trained on (``mtpjax verify``).

Physics tests, one module each, all with ``run(potential, oracle, outdir, **options) -> dict``:
:mod:`.eos`, :mod:`.strain`, :mod:`.elastic`, :mod:`.vacancy`, :mod:`.planar`; built on :mod:`.prototypes`
(crystal structures) and :mod:`mtpjax.relax` (batched FIRE relaxations, the lattice equilibrium).
"""
