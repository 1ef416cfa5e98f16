"""Which training structures set a fitted MTP's vacancy formation energy: influence functions of the fit's loss.

    .venv/bin/python scripts/paper_slice_vacancy_influence.py --data runs/study_mg/generate/EVERYTHING.extxyz \
        --potential L16=docs/study/paper_scale/runs/L16_rc5.2/potentials/all_L16_rc5.2_s0.mtpjax \
        --potential L20=docs/study/paper_scale/runs/L20_rc5.2/potentials/all_L20_rc5.2_s0.mtpjax \
        --out docs/study/paper_scale/vacancy_influence.csv

A fitted MTP sits at a minimum of its loss L(θ) = (1/K) Σ_s L_s(θ) + w_pen P(θ) (mtpjax.fit.residuals: the fit's own
weights, residuals and Jacobian, mtpjax.fit.jacobian). A quantity Q(θ) of the potential (here the unrelaxed vacancy
formation energy of hcp, fcc, dhcp and bcc, and two phase differences as controls) then answers three questions,
to first order in the Gauss–Newton model H = ∂²L/∂θ² ≈ (2/K) JᵀJ + 2 w_pen PᵀP of the loss:

- **how firmly the data fix Q** (``sensitivity``, eV): the most Q can move while the loss rises by 1 %,
  sqrt(2 · 0.01 L · gᵀ H⁻¹ g) with g = ∂Q/∂θ. A small value: every potential as good as this one on the training
  data has nearly this Q. A large one: Q is set by what the loss does not see, and moves with any small change of the
  data, the weights or the basis.
- **which structures pull Q** (``influence``, eV): multiplying the loss weight of a group G of structures by (1 + ε)
  moves the minimum by dθ/dε = −H⁻¹ ∇L_G and Q by dQ/dε = −gᵀ H⁻¹ ∇L_G, with ∇L_G = (2/K) Σ_{s∈G} J_sᵀ r_s.
  The column is that slope: the linear estimate of how much Q would change if the group counted twice.
- **how converged the fit is along Q** (``newton_step_eV``): −gᵀ H⁻¹ ∇L, the change of Q in one Gauss–Newton step
  to the minimum of the quadratic model; the influences of all structures and the penalty's sum to it (0 at an
  exact minimum).

With ``--fix QUANTITY`` each potential is also written with the smallest change of its species and moment
coefficients that puts QUANTITY on the oracle's value (:func:`fix_step`: exact, since the energy is linear in them)
and evaluated the same way, as NAME+fix: what matching it costs on the training data.

``modes_left_out``: eigenvectors of H below ``--rcond`` × its largest eigenvalue (directions no training
structure constrains), ``g_outside`` the share of |g| along them (a quantity that needs them is extrapolated).

Q is evaluated on the perfect and vacancy supercells of mtpjax.verify.vacancy (3×3×3; fcc and bcc of the cube)
at the **oracle's** relaxed lattice, one site removed and nothing relaxed: E_f = E(N−1) − (N−1)/N E(N), a linear
function of the site energies whose gradient in θ comes from jax.grad of mtpjax.potential.energy.

Groups: each training structure's subset (info['subset']) crossed with its volume per atom over Ω0 (the bins of
scripts/paper_slice_why.py; Ω0 the volume per atom of the data's lowest-energy structure); for data with loss
weights (scripts/paper_slice_weights.py) also the structures of each weight ("weight 2": the slope is then that of
multiplying their weight of 2 by 1 + ε, so ε = −0.5 takes them back to 1). The CSV has one row per
(potential, quantity, group); ``<out>_structures.csv`` the 20 structures of largest |influence| on the hcp vacancy
per potential (index in the data file, subset, atoms, V/Ω0, shortest distance, share of the loss, influence).

Units: eV, Å. Cost: one pass of the fit's Jacobian over the data per potential (about one Levenberg–Marquardt
iteration on all of it: 3 min for EVERYTHING at level 20 / 5.2 Å on 2 cores).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_slice_why import VOLUME_EDGES, csv_text  # noqa: E402

from mtpjax.data import load_records, pack_records  # noqa: E402
from mtpjax.errors import MtpjaxError  # noqa: E402
from mtpjax.fit.jacobian import flatten, image_group, n_parameters, penalty_residuals, unflatten, weighted_jacobian  # noqa: E402
from mtpjax.fit.loss import flat_batches  # noqa: E402
from mtpjax.fit.residuals import LossConfig  # noqa: E402
from mtpjax.io.files import atomic_write  # noqa: E402
from mtpjax.model import load_mtp  # noqa: E402
from mtpjax.neighbors import neighbour_list  # noqa: E402
from mtpjax.potential import energy  # noqa: E402

PHASES = ("hcp", "fcc", "dhcp", "bcc")
#: The quantities of :func:`quantities`, in its order.
QUANTITIES = tuple(f"{p} vacancy" for p in PHASES) + ("E(fcc) - E(hcp) per atom", "E(bcc) - E(hcp) per atom")
COLUMNS = ["potential", "quantity", "group", "structures", "loss_%", "influence_eV", "value_eV", "oracle_eV", "error_eV",
           "loss", "sensitivity_eV", "newton_step_eV", "modes_left_out", "g_outside"]
STRUCTURE_COLUMNS = ["potential", "index", "subset", "atoms", "V/Ω0", "d_min_A", "loss_%", "influence_eV"]


# --------------------------------------------------------------------------------------------------
# the fit's loss, structure by structure


@functools.lru_cache(maxsize=None)
def _batch_pass(cfg: LossConfig):
    """f(mtp, lb): :func:`_reduce` of one batch, compiled per batch shape (and image group, as the fit does); one per
    loss config, so that potentials of one level share the compiled programs."""
    one = jax.jit(lambda mtp, lb, group: _reduce(*weighted_jacobian(mtp, lb, cfg, group), lb), static_argnums=2)
    return lambda mtp, lb: one(mtp, lb, image_group(lb))


def _reduce(r, J, lb):
    """JᵀJ, the per-structure Jᵀr (B, n) and r² (B,) of one batch's weighted residuals (rows: energies B, forces 3N,
    virials 9B, as in :func:`mtpjax.fit.jacobian.weighted_jacobian`)."""
    B = lb.energy.shape[0]
    st = lb.batch.structure
    rows = jnp.concatenate([jnp.arange(B), jnp.repeat(st, 3), jnp.repeat(jnp.arange(B), 9)])
    return J.T @ J, jax.ops.segment_sum(J * r[:, None], rows, num_segments=B), jax.ops.segment_sum(r**2, rows, num_segments=B)


def loss_pass(mtp, batches, cfg: LossConfig):
    """(H (n, n), G (K, n), loss_s (K,), keys (K,)) over the real structures: H the Gauss–Newton matrix of the fit's
    loss (penalty included), G[s] = ∇ of structure s's part of the loss (2/K J_sᵀ r_s), loss_s its part of the loss,
    keys the structure's ``subset`` index into the packing's subset names."""
    one = _batch_pass(cfg)
    n = int(sum(n_parameters(mtp)))
    JtJ = np.zeros((n, n))
    G, L, keys = [], [], []
    for lb in batches:
        a, g, l2 = (np.asarray(x) for x in one(mtp, jax.tree.map(jnp.asarray, lb)))
        real = np.asarray(lb.weight) > 0
        JtJ += a
        G.append(g[real])
        L.append(l2[real])
        keys.append(np.asarray(lb.subset)[real])
    K = int(sum(len(k) for k in keys))
    P = np.asarray(jax.jacfwd(lambda t: penalty_residuals(unflatten(mtp, t)))(flatten(mtp)))
    H = 2.0 / K * JtJ + 2.0 * cfg.penalty_weight * P.T @ P
    G = 2.0 / K * np.concatenate(G)
    return H, G, np.concatenate(L) / K, np.concatenate(keys)


def penalty_gradient(mtp, cfg: LossConfig) -> np.ndarray:
    """∇ of w_pen P(θ), the radial penalty's part of the loss gradient."""
    return np.asarray(jax.grad(lambda t: cfg.penalty_weight * jnp.sum(penalty_residuals(unflatten(mtp, t)) ** 2))(flatten(mtp)))


def solve(H, b, rcond: float = 1e-12):
    """H⁻¹ b for the symmetric positive semidefinite H, through its eigenvectors; directions with eigenvalues below
    ``rcond`` times the largest are left out (no data and no penalty constrain them). Returns (x, number left out,
    |b outside the kept directions| / |b|)."""
    w, V = np.linalg.eigh(H)
    keep = w > rcond * w.max()
    coef = V[:, keep].T @ b
    outside = float(np.linalg.norm(V[:, ~keep].T @ b) / max(np.linalg.norm(b), 1e-300))
    x = V[:, keep] @ (coef / w[keep])
    return x, int((~keep).sum()), outside


def influences(H, G, g, total_loss: float, rcond: float = 1e-12):
    """(dQ/dε per structure (K,), sensitivity at a 1 % loss rise, modes left out, share of g outside the kept modes)
    for the quantity gradient g: −gᵀ H⁻¹ G_s and sqrt(2 · 0.01 L · gᵀ H⁻¹ g) (see the module docstring)."""
    h, dropped, outside = solve(H, g, rcond)
    return -(G @ h), float(np.sqrt(max(2.0 * 0.01 * total_loss * float(g @ h), 0.0))), dropped, outside


# --------------------------------------------------------------------------------------------------
# the quantities: unrelaxed vacancy formation energies and phase differences at the oracle's lattice


def oracle_cells(oracle, element: str, size: int = 3):
    """{phase: (perfect supercell, vacancy cell)} at the oracle's relaxed lattice: the cells of the vacancy test
    (mtpjax.verify.vacancy.vacancy_cells, site 0)."""
    from mtpjax.relax import equilibrium
    from mtpjax.verify.vacancy import vacancy_cells

    eq = equilibrium(oracle, PHASES, element)
    return {phase: vacancy_cells(eq[phase].atoms, phase, element, (size, size, size)) for phase in PHASES}


def energy_and_gradient(mtp, atoms, types=None):
    """(E (eV), ∂E/∂θ) of one structure, θ = mtpjax.fit.jacobian.flatten(mtp); ``types`` default: all type 0."""
    nb = neighbour_list(atoms.positions, atoms.cell[:], atoms.pbc, float(mtp.cutoff), n_atoms_pad=len(atoms),
                        name=atoms.get_chemical_formula())
    species = jnp.zeros(len(atoms), jnp.int32) if types is None else jnp.asarray(types)
    pos, cell = jnp.asarray(atoms.positions), jnp.asarray(atoms.cell[:])
    e, g = jax.value_and_grad(lambda t: energy(unflatten(mtp, t), pos, cell, species, nb))(flatten(mtp))
    return float(e), np.asarray(g)


def quantities(mtp, cells, oracle_calc) -> dict:
    """{name: (value (eV), oracle value (eV), ∂value/∂θ)}: the unrelaxed vacancy formation energy of each phase and
    E(fcc) − E(hcp), E(bcc) − E(hcp) per atom."""
    out = {}
    per_atom = {}
    for phase, (perfect, vac) in cells.items():
        n = len(perfect)
        ep, gp = energy_and_gradient(mtp, perfect)
        ev, gv = energy_and_gradient(mtp, vac)
        op = _oracle_energy(oracle_calc, perfect)
        ov = _oracle_energy(oracle_calc, vac)
        out[f"{phase} vacancy"] = (ev - (n - 1) / n * ep, ov - (n - 1) / n * op, gv - (n - 1) / n * gp)
        per_atom[phase] = (ep / n, op / n, gp / n)
    for phase in ("fcc", "bcc"):
        (a, oa, ga), (b, ob, gb) = per_atom[phase], per_atom["hcp"]
        out[f"E({phase}) - E(hcp) per atom"] = (a - b, oa - ob, ga - gb)
    return out


def _oracle_energy(calc, atoms) -> float:
    a = atoms.copy()
    a.calc = calc
    return float(a.get_potential_energy())


# --------------------------------------------------------------------------------------------------


def group_labels(records, omega0: float) -> list[str]:
    """'SUBSET V/Ω0 lo-hi' of each record (the volume bins of scripts/paper_slice_why.py)."""
    out = []
    for r in records:
        if r.volume is None:
            out.append(f"{r.subset} non-periodic")
            continue
        x = r.volume / r.n_atoms / omega0
        k = int(np.searchsorted(VOLUME_EDGES, x, side="right")) - 1
        lo, hi = VOLUME_EDGES[k], VOLUME_EDGES[k + 1]
        out.append(f"{r.subset} {lo:g}-{hi:g}")
    return out


def shortest_distance(r) -> float:
    from mtpjax.neighbors import pairs

    i, j, shift = pairs(r.positions, r.cell, r.pbc, 6.0, r.name)[:3]
    d = r.positions[j] - r.positions[i] + np.asarray(shift) @ r.cell
    return float(np.linalg.norm(d, axis=1).min()) if len(i) else float("nan")


def fix_step(mtp, H, g, error: float, grad, rcond: float):
    """θ' with Q(θ') = Q(θ) − error, changing only the species and moment coefficients (the energy is linear in them,
    so Q is, and the loss is quadratic: both exact): the smallest such change in the metric of H restricted to them,
    Δ = −error / (g_lᵀ h) · h with h = H_ll⁻¹ g_l. Returns (θ', the loss rise ∇L_lᵀ Δ + ½ Δᵀ H_ll Δ)."""
    n_r = n_parameters(mtp)[0]
    lin = np.arange(n_r, H.shape[0])
    Hl, gl = H[np.ix_(lin, lin)], g[lin]
    h = solve(Hl, gl, rcond)[0]
    d = -error / float(gl @ h) * h
    theta = flatten(mtp).at[lin].add(jnp.asarray(d))
    return unflatten(mtp, theta), float(grad[lin] @ d + 0.5 * d @ Hl @ d)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the potentials' training data with info['subset'] (EVERYTHING.extxyz)")
    ap.add_argument("--potential", action="append", required=True, metavar="NAME=PATH", help=".mtpjax or .almtp")
    ap.add_argument("--out", required=True, help="CSV written here (and printed as tables)")
    ap.add_argument("--element", default="Mg")
    ap.add_argument("--oracle", default=None, help="the data's oracle (default zhou:ELEMENT; as mtpjax verify reads it)")
    ap.add_argument("--rcond", type=float, default=1e-12, help="relative eigenvalue cut of H (default 1e-12)")
    ap.add_argument("--fix", default=None, metavar="QUANTITY", help="also write <out>_<NAME>_fixed.mtpjax: each potential "
                    "with the smallest change of its species and moment coefficients that gives QUANTITY (e.g. 'hcp "
                    "vacancy') the oracle's value (fix_step), evaluated the same way as NAME+fix")
    args = ap.parse_args(argv)
    if args.fix is not None and args.fix not in QUANTITIES:
        ap.error(f"--fix {args.fix!r}: one of {', '.join(QUANTITIES)}")
    try:
        return _run(ap, args)
    except (MtpjaxError, OSError) as err:  # bad input (a missing or malformed file, a potential that does not load)
        print(f"paper_slice_vacancy_influence: error: {err}", file=sys.stderr)
        return 2


def _run(ap, args) -> int:
    from mtpjax.model import save_mtp
    from mtpjax.oracles import make_oracle
    from mtpjax.oracles.factory import get_calculator

    specs = []
    for spec in args.potential:
        name, _, path = spec.partition("=")
        if not path:
            ap.error(f"--potential {spec}: give NAME=PATH")
        mtp = load_mtp(path)
        if mtp.n_species != 1:
            ap.error(f"--potential {spec}: {mtp.n_species} species; the vacancy cells here are of one element")
        specs.append((name, mtp))
    records = load_records(args.data)
    # each structure packed under its own key, so that its rows come back to it after packing reorders them
    e = np.array([r.energy / r.n_atoms for r in records])
    k0 = int(np.argmin(e))
    omega0 = float(records[k0].volume / records[k0].n_atoms)
    groups = np.array(group_labels(records, omega0))
    weights = np.array([r.weight for r in records])
    keyed = [dataclasses.replace(r, subset=f"{k:07d}") for k, r in enumerate(records)]
    oracle = make_oracle(args.oracle or f"zhou:{args.element}")
    cells = oracle_cells(oracle, args.element)
    calc = get_calculator(oracle)
    cfg = LossConfig()
    out = Path(args.out)
    rows, srows, packed = [], [], {}
    todo = list(specs)
    while todo:
        name, mtp = todo.pop(0)
        cutoff = float(mtp.cutoff)
        if cutoff not in packed:
            batches, names = pack_records(keyed, cutoff)
            packed[cutoff] = (flat_batches(batches), np.array([int(s) for s in names]))
        batches, index_of = packed[cutoff]
        t0 = time.perf_counter()
        H, G, Ls, keys = loss_pass(mtp, batches, cfg)
        idx = index_of[keys]  # data-file index of each row of G
        L_total = float(Ls.sum()) + float(cfg.penalty_weight * jnp.sum(penalty_residuals(mtp) ** 2))
        gpen = penalty_gradient(mtp, cfg)
        print(f"{name}: loss {L_total:.6g} over {len(idx)} structures; pass {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        qs = quantities(mtp, cells, calc)
        group_of = groups[idx]
        for q, (value, ref, g) in qs.items():
            infl, sens, dropped, outside = influences(H, G, g, L_total, args.rcond)
            others = [influences(H, G, g, L_total, args.rcond * f)[1] for f in (1e-2, 1e2)]
            h = solve(H, g, args.rcond)[0]
            step = float(-(gpen @ h) + infl.sum())
            base = {"potential": name, "quantity": q, "value_eV": value, "oracle_eV": ref, "error_eV": value - ref,
                    "loss": L_total, "sensitivity_eV": sens, "newton_step_eV": step, "modes_left_out": dropped,
                    "g_outside": outside}
            rows.append({**base, "group": "all", "structures": len(idx), "loss_%": 100.0, "influence_eV": float(infl.sum())})
            for grp in sorted(set(group_of), key=_group_order):
                m = group_of == grp
                rows.append({**base, "group": grp, "structures": int(m.sum()), "loss_%": float(100 * Ls[m].sum() / Ls.sum()),
                             "influence_eV": float(infl[m].sum())})
            if len(set(weights)) > 1:  # data with loss weights: also each weight's structures as one group
                for w in sorted(set(weights), reverse=True):
                    m = weights[idx] == w
                    rows.append({**base, "group": f"weight {w:g}", "structures": int(m.sum()),
                                 "loss_%": float(100 * Ls[m].sum() / Ls.sum()), "influence_eV": float(infl[m].sum())})
            if q == "hcp vacancy":
                for k in np.argsort(-np.abs(infl))[:20]:
                    r = records[idx[k]]
                    srows.append({"potential": name, "index": int(idx[k]), "subset": r.subset, "atoms": r.n_atoms,
                                  "V/Ω0": float(r.volume / r.n_atoms / omega0), "d_min_A": shortest_distance(r),
                                  "loss_%": float(100 * Ls[k] / Ls.sum()), "influence_eV": float(infl[k])})
            print(f"  {q}: MTP {value:.4f}, oracle {ref:.4f}, error {value - ref:+.4f} eV; sensitivity {sens:.4f} eV "
                  f"({others[0]:.4f} and {others[1]:.4f} with rcond x 0.01 and x 100); Newton step {step:+.2e} eV "
                  f"({dropped} of {len(g)} modes left out, holding {outside:.1e} of |g|)", file=sys.stderr)
        if args.fix and not name.endswith("+fix"):
            value, ref, g = qs[args.fix]
            fixed, rise = fix_step(mtp, H, g, value - ref, G.sum(0) + gpen, args.rcond)
            path = out.with_name(f"{out.stem}_{name}_fixed.mtpjax")
            save_mtp(fixed, path, metadata={"from": name, "fixed": args.fix, "modelled_loss_rise": rise})
            print(f"{name}: {args.fix} moved to the oracle's value by the moment coefficients: loss rise {rise:.6e} "
                  f"({100 * rise / L_total:.3f} %) by the quadratic form; written to {path}", file=sys.stderr)
            todo.insert(0, (f"{name}+fix", fixed))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, csv_text(rows, COLUMNS))
    atomic_write(out.with_name(out.stem + "_structures.csv"), csv_text(srows, STRUCTURE_COLUMNS))
    _print(rows, srows)
    return 0


def _group_order(g: str):
    sub, _, vb = g.rpartition(" ")
    return sub, float(vb.split("-")[0]) if vb[0].isdigit() else np.inf


def _print(rows, srows) -> None:
    names = list(dict.fromkeys(r["potential"] for r in rows))
    print("| loss | " + " | ".join(f"{next(x['loss'] for x in rows if x['potential'] == n):.6g}" for n in names) + " |")
    print("| quantity | " + " | ".join(f"{n}: error, sensitivity (eV)" for n in names) + " |\n|---|" + "---:|" * len(names))
    for q in dict.fromkeys(r["quantity"] for r in rows):
        cells = []
        for n in names:
            r = next(x for x in rows if x["potential"] == n and x["quantity"] == q and x["group"] == "all")
            cells.append(f"{r['error_eV']:+.4f}, {r['sensitivity_eV']:.4f}")
        print(f"| {q} | " + " | ".join(cells) + " |")
    print("\n| hcp vacancy: group | structures | " + " | ".join(f"{n}: loss %, influence (eV)" for n in names) + " |\n|---|---:|"
          + "---:|" * len(names))
    for grp in dict.fromkeys(r["group"] for r in rows if r["quantity"] == "hcp vacancy"):
        cells, count = [], ""
        for n in names:
            r = next((x for x in rows if x["potential"] == n and x["quantity"] == "hcp vacancy" and x["group"] == grp), None)
            cells.append("" if r is None else f"{r['loss_%']:.1f}, {r['influence_eV']:+.4f}")
            count = count or (str(r["structures"]) if r else "")
        print(f"| {grp} | {count} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
