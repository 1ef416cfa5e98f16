"""Planar defects of the element's ground state: surfaces, the generalised stacking fault, decohesion, and a grain
or twin boundary. Energies per area in J/m² (paper eq. 4).

The ground state (``ground_state``: hcp, fcc or bcc) is the oracle's lowest prototype unless given
(:func:`mtpjax.verify.prototypes.ground_state`). hcp (Mg) is described first; fcc and bcc follow at the end.

Every structure is built for each potential on its own relaxed hcp lattice (a, c) from the same recipe, so the
two potentials see equivalent (not identical) structures. e_bulk is the relaxed bulk energy per atom.

- **Surfaces** (0001), (10-10) type A (cut through the long interplanar spacing a/√3, leaving the close pairs
  intact) and type B (cut through the short spacing a/(2√3)), (11-20): slabs of ``n_planes`` atomic planes,
  default the fewest with n·d ≥ ``thickness`` (17 Å), both faces alike, ``vacuum`` Å of vacuum, positions relaxed
  at fixed cell: γ_s = (E_slab − N·e_bulk) / 2A. Unrelaxed values too.
- **Basal GSF**: a periodic stack of ``gsf_layers`` basal planes (orthorhombic a × √3a cell) whose third cell
  vector is tilted by the fault vector t, which puts one fault at the cell boundary; positions relax only along
  [0001] (x, y held) and the cell height relaxes (lateral cell fixed): γ(t) = (E(t) − E(0)) / A, along
  [10-10] over one period √3a (through the intrinsic I2 fault at a/√3) and along [11-20] over a.
- **Decohesion**: the same perfect basal stack, the cell height increased by a separation s (rigid, unrelaxed):
  (E(s) − E(0)) / A for s in [0, ``decohesion_max``] Å (→ 2γ_s, unrelaxed); the largest slope is the ideal
  cleavage stress (GPa).
- **Σ7 [0001] symmetric tilt boundary** (21.79° about [0001], boundary plane spanned by [0001] and the CSL vector
  2a1+a2 of length √7a): grain 1 is an orthogonal √21a × √7a × c block (28 atoms) repeated ``gb_repeat`` times
  normal to the boundary, grain 2 its mirror image; four rigid translations of grain 2 in the boundary plane
  (for each cut position of grain 1) are tried, atoms closer than 0.6 d_nn merged, positions and the cell length normal to
  the boundary relaxed; the lowest γ_GB = (E − N·e_bulk) / 2A over the candidates is reported.

**fcc and bcc** (structures from ASE's builders, on each potential's relaxed cubic a):

- **Surfaces** fcc (111), (100), (110); bcc (110), (100), (111): ``ase.build.fcc111`` … ``bcc111`` slabs of the
  fewest planes reaching ``thickness``, one atom per plane, relaxed as above.
- **GSF** on a periodic stack of ``gsf_layers`` fcc {111} / bcc {110} planes (``fcc111`` / ``bcc110`` with
  ``periodic=True``), the same tilted-cell method: fcc along <112> over 3 a/6<112> (intrinsic stacking fault, a
  Shockley partial, at 1/3) and along <110> over a/2<110>; bcc along <111> over a/2<111> (no stable fault is
  expected; the unstable fault is reported), and ``{112}<111>`` on a periodic stack of bcc (112) planes
  (``ase.lattice.cubic``) over a/2[11-1], which covers the twinning and antitwinning senses (t and 1 − t).
  Decohesion of the {111} / {110} stack.
- **Σ3 twin**: a grain of whole stacking periods ≥ ``thickness`` (fcc: (111) planes; bcc: (112) planes, x along
  [11-1], built with ``ase.lattice.cubic``) and its mirror image in the boundary plane, joined by
  ``ase.build.stack`` (two boundaries per cell); fcc the coherent twin, bcc the reflection twin and the two
  shifts of grain 2 by a/6[11-1] (the lowest is reported); positions and the cell length normal to the boundary
  relaxed: γ_twin = (E − N·e_bulk) / 2A.

Metrics (per potential and errors): ``surface_J_m2`` {name: relaxed}, ``surface_unrelaxed_J_m2``,
``gsf`` {direction: {t_A, gamma_J_m2, usf, sf}}, ``decohesion`` {s_A, energy_J_m2, max_stress_GPa},
``gb`` {gamma_J_m2, candidate, n_atoms}, relaxation records; curve RMSEs (J/m²).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from ase import Atoms

from ..relax import equilibrium, hex_parameters, prototype, relax
from ..units import EV_PER_A2_TO_J_PER_M2, EV_PER_A3_TO_GPA
from .prototypes import (cubic_parameter, element_of, error_row, evaluate_safe, finite_or_none, hcp_orthorhombic, rmse,
                         row, supercell)
from .prototypes import ground_state as ground_state_of

SURFACES = ("0001", "10-10A", "10-10B", "11-20")
#: axis order putting each plane normal along z (cyclic permutations of the orthorhombic x=[2-1-10], y=[01-10], z=[0001]).
_PERM = {"0001": (0, 1, 2), "10-10": (2, 0, 1), "11-20": (1, 2, 0)}


def oriented_hcp(element: str, a: float, c: float, plane: str) -> Atoms:
    """The 4-atom orthorhombic hcp cell turned so that the normal of ``plane`` (0001, 10-10, 11-20) is along z."""
    base = hcp_orthorhombic(element, a, c)
    p = _PERM[plane]
    lengths = np.diag(base.cell.array)[list(p)]
    out = Atoms(base.get_chemical_symbols(), positions=base.positions[:, p], cell=np.diag(lengths), pbc=True)
    out.wrap()
    return out


def _planes(z: np.ndarray, period: float, tol: float = 1e-3) -> np.ndarray:
    """Sorted distinct plane heights in [0, period)."""
    zz = np.sort(np.mod(z, period))
    out = [zz[0]]
    for v in zz[1:]:
        if v - out[-1] > tol:
            out.append(v)
    if len(out) > 1 and out[0] + period - out[-1] <= tol:
        out.pop()
    return np.array(out)


def slab(unit: Atoms, n_planes: int, vacuum: float, termination: str = "long") -> Atoms:
    """A slab of ``n_planes`` atomic planes of the oriented cell ``unit`` (normal along z), ``vacuum`` Å of vacuum.

    The slab starts above the longest (``long``) or shortest (``short``) interplanar gap; one plane is added if
    needed so that both faces are alike.
    """
    Lz = unit.cell.array[2, 2]
    h = _planes(unit.positions[:, 2], Lz)
    m = len(h)
    gaps = np.diff(np.concatenate([h, [h[0] + Lz]]))  # gap after plane k
    before = np.roll(gaps, 1)  # gap before plane k
    pick = np.argmax(before) if termination == "long" else np.argmin(before)
    n = int(n_planes)
    if not np.isclose(gaps[(pick + n - 1) % m], before[pick], atol=1e-6):
        n += 1
    reps = -(-(pick + n) // m) + 1
    big = supercell(unit, (1, 1, reps))
    z = big.positions[:, 2]
    heights = np.concatenate([h + r * Lz for r in range(reps)])
    lo, hi = heights[pick], heights[pick + n - 1]
    keep = (z > lo - 1e-3) & (z < hi + 1e-3)
    out = big[keep]
    pos = out.positions
    pos[:, 2] += 0.5 * vacuum - lo
    cell = out.cell.array.copy()
    cell[2] = [0.0, 0.0, hi - lo + vacuum]
    res = Atoms(out.get_chemical_symbols(), positions=pos, cell=cell, pbc=True)
    res.info["n_planes"] = n
    return res


def n_planes_for(unit: Atoms, thickness: float) -> int:
    """Fewest planes n with n·d ≥ thickness (d the mean interplanar spacing of ``unit``)."""
    Lz = unit.cell.array[2, 2]
    m = len(_planes(unit.positions[:, 2], Lz))
    return int(math.ceil(thickness / (Lz / m) - 1e-9))


def area(atoms: Atoms) -> float:
    """|a1 × a2| (Å²): the area of the plane spanned by the first two cell vectors."""
    c = atoms.cell.array
    return float(np.linalg.norm(np.cross(c[0], c[1])))


def basal_stack(element: str, a: float, c: float, layers: int) -> Atoms:
    """A periodic stack of ``layers`` (even) basal planes, orthorhombic a × √3a lateral cell."""
    unit = oriented_hcp(element, a, c, "0001")
    return supercell(unit, (1, 1, max(2, layers) // 2))


def tilted(stack: Atoms, t) -> Atoms:
    """``stack`` with its third cell vector tilted by t (Å, in-plane): one fault at the cell boundary."""
    out = stack.copy()
    cell = out.cell.array.copy()
    cell[2, :2] += np.asarray(t, float)[:2]
    out.set_cell(cell, scale_atoms=False)
    return out


def separated(stack: Atoms, s: float) -> Atoms:
    """``stack`` with its cell height increased by s (Å), atoms kept: two halves s apart (rigid)."""
    out = stack.copy()
    cell = out.cell.array.copy()
    cell[2, 2] += s
    out.set_cell(cell, scale_atoms=False)
    return out


def sigma7_grain(element: str, a: float, c: float) -> Atoms:
    """Orthogonal hcp block for the Σ7 boundary: x along −(a1+5a2) (√21 a), y along 3a1+a2 (√7 a), z along [0001];
    28 atoms."""
    prim = prototype("hcp", element, math.sqrt(3) / 4 * a * a * c, c / a)
    blk = supercell(prim, np.array([[3, 1, 0], [1, 5, 0], [0, 0, 1]]))
    L1, L2, L3 = blk.cell.array
    ex, ey = -L2 / np.linalg.norm(L2), L1 / np.linalg.norm(L1)
    Rm = np.array([ex, ey, np.cross(ex, ey)])
    pos = blk.positions @ Rm.T
    cell = np.diag([np.linalg.norm(L2), np.linalg.norm(L1), np.linalg.norm(L3)])
    out = Atoms(blk.get_chemical_symbols(), positions=pos, cell=cell, pbc=True)
    out.wrap()
    return out


def sigma7_candidates(element: str, a: float, c: float, repeat: int = 2, cuts=(0.05,)) -> list[Atoms]:
    """Σ7 [0001] tilt bicrystals (two boundaries per cell, normal x): grain 2 translated by (0 or ½)·a/√7 along the
    boundary and (0 or ½)·c along [0001], for each cut position ``cuts`` (× a) of grain 1."""
    from ..neighbors import pairs

    g = supercell(sigma7_grain(element, a, c), (repeat, 1, 1))
    Lg, Ly, Lz = np.diag(g.cell.array)
    dnn = a
    out = []
    for dx in (float(x) * a for x in cuts):
        for dy in (0.0, 0.5 * a / math.sqrt(7.0)):
            for dz in (0.0, 0.5 * c):
                p1 = g.positions.copy()
                p1[:, 0] = np.mod(p1[:, 0] + dx, Lg)
                p2 = p1.copy()
                p2[:, 0] = 2 * Lg - p1[:, 0]
                p2[:, 1] = np.mod(p2[:, 1] + dy, Ly)
                p2[:, 2] = np.mod(p2[:, 2] + dz, Lz)
                pos = np.vstack([p1, p2])
                cell = np.diag([2 * Lg, Ly, Lz])
                grain = np.r_[np.zeros(len(p1), int), np.ones(len(p2), int)]
                i, j, _ = _close_pairs(pos, cell, 0.6 * dnn, pairs)
                drop = set()
                for u, v in zip(i, j):  # greedily drop grain-2 atoms of close pairs
                    if u in drop or v in drop:
                        continue
                    drop.add(v if grain[v] == 1 else u)
                keep = np.array([k for k in range(len(pos)) if k not in drop])
                at = Atoms([element] * len(keep), positions=pos[keep], cell=cell, pbc=True)
                at.wrap()
                at.info["name"] = f"sigma7 dx={dx:.2f} dy={dy:.2f} dz={dz:.2f}"
                out.append(at)
    return out


def _close_pairs(pos, cell, r, pairs_fn):
    i, j, s = pairs_fn(pos, cell, np.ones(3, bool), r, "bicrystal") if len(pos) else ([], [], [])
    sel = i < j
    return i[sel], j[sel], s[sel]


# ------------------------------------------------------------------------------------------------------------------
# fcc and bcc ground states: ASE's builders

#: Per cubic ground state: the surfaces, the GSF plane and its directions (the first one goes through the
#: intrinsic stacking fault where there is one), and the twin boundary.
CUBIC = {
    "fcc": {"surfaces": ("111", "100", "110"), "plane": "{111}", "gsf_directions": ("112", "110"),
            "sf_direction": "112", "gb": "Σ3 (111) coherent twin boundary"},
    "bcc": {"surfaces": ("110", "100", "111"), "plane": "{110}", "gsf_directions": ("111", "{112}<111>"),
            "sf_direction": None, "gb": "Σ3 (112) twin boundary"},
}
#: The surfaces each ground-state lattice knows.
SURFACES_OF = {"hcp": SURFACES, "fcc": CUBIC["fcc"]["surfaces"], "bcc": CUBIC["bcc"]["surfaces"]}
#: GSF directions each ground-state lattice knows (fcc {111}: <112> through the intrinsic fault, <110>; bcc {110}:
#: <111>, <001>; bcc {112}<111> on a (112) stack, twinning and antitwinning senses over one period).
GSF_DIRECTIONS_OF = {"hcp": ("10-10", "11-20"), "fcc": ("112", "110"), "bcc": ("111", "001", "{112}<111>")}
#: GSF "directions" that are on a plane of their own: (plane label, direction label) in rows and figures.
OWN_PLANE = {"{112}<111>": ("{112}", "111")}


def cubic_spacing(kind: str, plane: str, a: float) -> float:
    """Interplanar spacing (Å) of the ``plane`` (111, 100, 110) atomic planes of fcc or bcc with cubic a (Å)."""
    f = {("fcc", "111"): 1 / math.sqrt(3), ("fcc", "100"): 0.5, ("fcc", "110"): 1 / (2 * math.sqrt(2)),
         ("bcc", "110"): 1 / math.sqrt(2), ("bcc", "100"): 0.5, ("bcc", "111"): 1 / (2 * math.sqrt(3))}
    return f[(kind, plane)] * a


def _builder(kind: str, plane: str):
    from ase import build

    return getattr(build, f"{kind}{plane}")


def cubic_slab(kind: str, plane: str, element: str, a: float, n_planes: int, vacuum: float) -> Atoms:
    """A slab of ``n_planes`` (``plane`` 111, 100, 110) planes of fcc or bcc (cubic a, Å) from ASE's builders
    (``ase.build.fcc111`` ...; smallest lateral cell), ``vacuum`` Å in all, periodic in 3D (the vacuum separates
    the images)."""
    out = _builder(kind, plane)(element, size=(1, 1, int(n_planes)), a=a, vacuum=0.5 * vacuum)
    out.pbc = True
    out.info["n_planes"] = int(n_planes)
    return out


def cubic_stack(kind: str, element: str, a: float, layers: int) -> Atoms:
    """A periodic stack of fcc (111) or bcc (110) planes (one atom per plane; ``layers`` rounded up to the stacking
    period, 3 or 2), z along the plane normal: ``ase.build.fcc111`` / ``bcc110`` with ``periodic=True``."""
    period = 3 if kind == "fcc" else 2
    n = max(period, -(-int(layers) // period) * period)
    return _builder(kind, "111" if kind == "fcc" else "110")(element, size=(1, 1, n), a=a, periodic=True)


def _shortest(v, a1, a2) -> np.ndarray:
    """The shortest of v + i a1 + j a2 (in-plane vectors, |i|, |j| <= 3)."""
    cands = [v + i * a1 + j * a2 for i in range(-3, 4) for j in range(-3, 4)]
    return min(cands, key=lambda x: (round(float(np.linalg.norm(x)), 9), tuple(-np.round(x, 9))))


def gsf_period(kind: str, stack: Atoms, direction: str) -> np.ndarray:
    """The in-plane lattice vector (Å) spanning one period of the GSF path along ``direction`` of a
    :func:`cubic_stack`. fcc 112: three times the stacking vector of consecutive planes (so that the shift by one
    Shockley partial a/6<112>, the intrinsic fault, is at 1/3); fcc 110: the nearest-neighbour vector a/2<110>;
    bcc 111: a/2<111>, the shortest in-plane vector; bcc 001: a<001>."""
    c = stack.cell.array
    a1, a2 = c[0, :2], c[1, :2]
    if kind == "fcc" and direction == "112":
        order = np.argsort(stack.positions[:, 2], kind="stable")
        d = stack.positions[order[1], :2] - stack.positions[order[0], :2]
        v = 3.0 * _shortest(d, a1, a2)
    elif (kind, direction) in (("fcc", "110"), ("bcc", "111")):  # the shortest in-plane lattice vector
        v = min((i * a1 + j * a2 for i in range(-2, 3) for j in range(-2, 3) if i or j),
                key=lambda x: float(np.linalg.norm(x)))
    elif kind == "bcc" and direction in ("001", "{112}<111>"):  # bcc110: a<001> first; bcc112_stack: a/2[11-1]
        v = a1
    else:
        raise ValueError(f"unknown GSF direction {direction!r} of {kind}; known: {list(GSF_DIRECTIONS_OF[kind])}")
    return np.array([v[0], v[1], 0.0])


def bcc112_stack(element: str, a: float, layers: int) -> Atoms:
    """A periodic stack of bcc (112) planes (``layers`` rounded up to whole periods of six), one atom per plane:
    ``ase.lattice.cubic.BodyCenteredCubic`` with x along [11-1] (a√3/2), y along [-110], z along [112]."""
    from ase.lattice.cubic import BodyCenteredCubic

    m = max(1, -(-int(layers) // 6))
    g = BodyCenteredCubic(directions=[[1, 1, -1], [-1, 1, 0], [1, 1, 2]], size=(1, 1, m), symbol=element,
                          latticeconstant=a, pbc=True)
    return Atoms(g.get_chemical_symbols(), positions=g.positions, cell=g.cell.array, pbc=True)


def gsf_stack(kind: str, element: str, a: float, layers: int, direction: str) -> Atoms:
    """The periodic stack whose cell is tilted along ``direction``: :func:`bcc112_stack` for bcc {112}<111>, else
    :func:`cubic_stack`."""
    if kind == "bcc" and direction == "{112}<111>":
        return bcc112_stack(element, a, layers)
    return cubic_stack(kind, element, a, layers)


def twin_grain(kind: str, element: str, a: float, thickness: float) -> Atoms:
    """One grain of the Σ3 twin (z along the boundary normal, at least ``thickness`` Å of whole stacking periods):
    fcc (111) planes (``ase.build.fcc111``, one atom per plane) or bcc (112) planes (``ase.lattice.cubic``, x along
    [11-1], y along [-110], z along [112]; one atom per plane, six planes per period)."""
    if kind == "fcc":
        d = cubic_spacing("fcc", "111", a)
        n = max(3, -(-int(math.ceil(thickness / d - 1e-9)) // 3) * 3)
        return cubic_stack("fcc", element, a, n)
    d = a / math.sqrt(6.0)
    return bcc112_stack(element, a, 6 * max(1, int(math.ceil(thickness / (6 * d) - 1e-9))))


def twin_candidates(kind: str, element: str, a: float, thickness: float) -> list[Atoms]:
    """Σ3 twin bicrystals (two boundaries per cell, normal z): a :func:`twin_grain` and its mirror image in the
    boundary plane (z -> −z, through an atomic plane), joined by ``ase.build.stack``. fcc: the coherent (111) twin;
    bcc: the reflection (112) twin and grain 2 shifted by 1/3 and 2/3 of a/2[11-1] along the boundary (the
    isosceles variants); candidates with atoms closer than 0.6 d_nn are dropped."""
    from ase.build import stack

    from ..neighbors import pairs

    g1 = twin_grain(kind, element, a, thickness)
    Lz = g1.cell.array[2, 2]
    mirror = g1.copy()
    pos = mirror.positions
    pos[:, 2] = np.mod(Lz - pos[:, 2], Lz)
    mirror.positions = pos
    dnn = a / math.sqrt(2.0) if kind == "fcc" else a * math.sqrt(3.0) / 2.0
    shifts = (0.0,) if kind == "fcc" else (0.0, 1 / 3, 2 / 3)
    out = []
    for f in shifts:
        g2 = mirror.copy()
        g2.positions = g2.positions + f * g1.cell.array[0]
        g2.wrap()
        bi = stack(g1, g2, axis=2, maxstrain=None)
        bi.pbc = True
        i, _, _ = _close_pairs(bi.positions, bi.cell.array, 0.6 * dnn, pairs)
        if len(i):
            continue
        bi.info["name"] = f"sigma3 twin shift={f:.3f}"
        out.append(bi)
    return out


# ------------------------------------------------------------------------------------------------------------------


def _recipes(element, a, c, opts, lattice: str = "hcp"):
    """All structures of one potential: [(kind, key, Atoms, relax cell mode or None, fix mask or None)]."""
    if lattice != "hcp":
        return _cubic_recipes(element, a, opts, lattice)
    out = []
    for name in opts["surfaces"]:
        plane = name[:5] if name.startswith("10-10") else name
        term = "short" if name.endswith("B") else "long"
        unit = oriented_hcp(element, a, c, plane)
        n = opts["n_planes"].get(name) if isinstance(opts["n_planes"], dict) else opts["n_planes"]
        n = n or n_planes_for(unit, opts["thickness"])
        s = slab(unit, n, opts["vacuum"], term)
        s.info["name"] = f"surface {name}"
        out.append(("surface", name, s, "fixed", None))
    stack = basal_stack(element, a, c, opts["gsf_layers"])
    if opts["gsf_directions"]:
        out.append(("gsf", "perfect", stack.copy(), "normal", "xy"))
    for d in opts["gsf_directions"]:
        period = math.sqrt(3.0) * a if d == "10-10" else a
        axis = 1 if d == "10-10" else 0
        for k in range(1, opts["gsf_points"] + 1):
            t = np.zeros(3)
            t[axis] = period * k / opts["gsf_points"]
            s = tilted(stack, t)
            s.info["name"] = f"gsf {d} {k}/{opts['gsf_points']}"
            out.append(("gsf", (d, k), s, "normal", "xy"))
    if opts["gb"]:
        for k, g in enumerate(sigma7_candidates(element, a, c, opts["gb_repeat"], opts["gb_cuts"])):
            out.append(("gb", k, g, "gbnormal", None))
    return out


def _cubic_recipes(element, a, opts, kind):
    out = []
    for name in opts["surfaces"]:
        n = opts["n_planes"].get(name) if isinstance(opts["n_planes"], dict) else opts["n_planes"]
        n = n or int(math.ceil(opts["thickness"] / cubic_spacing(kind, name, a) - 1e-9))
        s = cubic_slab(kind, name, element, a, n, opts["vacuum"])
        s.info["name"] = f"surface {name}"
        out.append(("surface", name, s, "fixed", None))
    stack = cubic_stack(kind, element, a, opts["gsf_layers"])
    if opts["gsf_directions"]:
        out.append(("gsf", "perfect", stack.copy(), "normal", "xy"))
    for d in opts["gsf_directions"]:
        st = stack
        if d in OWN_PLANE:
            st = gsf_stack(kind, element, a, opts["gsf_layers"], d)
            out.append(("gsf", ("perfect", d), st.copy(), "normal", "xy"))
        period = gsf_period(kind, st, d)
        for k in range(1, opts["gsf_points"] + 1):
            s = tilted(st, period * k / opts["gsf_points"])
            s.info["name"] = f"gsf {d} {k}/{opts['gsf_points']}"
            out.append(("gsf", (d, k), s, "normal", "xy"))
    if opts["gb"]:
        for k, g in enumerate(twin_candidates(kind, element, a, opts["thickness"])):
            out.append(("gb", k, g, "twinnormal", None))
    return out


def properties(potential, element: str, opts: dict, ground_state: str = "hcp") -> tuple[dict, list, dict]:
    """(properties, failures, relaxation records) of one potential on the ``ground_state`` lattice (hcp, fcc, bcc);
    see the module docstring."""
    lat = ground_state
    failures, records, props = [], {}, {}
    h = equilibrium(potential, [lat], element)[lat]
    records[f"equilibrium_{lat}"] = h.summary()
    if not h.ok:
        failures.append({"structure": f"{lat} equilibrium", "reason": f"{h.reason}: {h.message}"})
        return props, failures, records
    e_bulk = h.energy_per_atom
    if lat == "hcp":
        hp = hex_parameters(h.atoms)
        a, c = hp["a"], hp["a"] * hp["c_over_a"]
        props["a"], props["c"], props["e_bulk"] = a, c, e_bulk
        stack = basal_stack(element, a, c, opts["gsf_layers"])
    else:
        a, c = cubic_parameter(h.atoms, lat), None
        props["a"], props["e_bulk"] = a, e_bulk
        stack = cubic_stack(lat, element, a, opts["gsf_layers"])
    recipes = _recipes(element, a, c, opts, lat)
    structures = [r[2] for r in recipes]
    gbmask = np.zeros((3, 3), bool)
    gbmask[0, 0] = True
    twinmask = np.zeros((3, 3), bool)
    twinmask[2, 2] = True
    cells = ["normal" if r[3] == "normal" else "fixed" for r in recipes]
    masks = [gbmask if r[3] == "gbnormal" else twinmask if r[3] == "twinnormal" else None for r in recipes]
    fix = []
    for _, _, s, _, f in recipes:
        if f == "xy":
            m = np.zeros((len(s), 3), bool)
            m[:, :2] = True
            fix.append(m)
        else:
            fix.append(None)
    res = relax(potential, structures, cell=cells, cell_mask=masks, fix=fix, fmax=opts["fmax"], smax=opts["smax"],
                max_steps=opts["max_steps"])
    surf, surf_u, gsf, gb = {}, {}, {}, {}
    for (kind, key, s, _, _), r in zip(recipes, res):
        records[r.name] = r.summary()
        if not r.ok:
            failures.append({"structure": r.name, "reason": f"{r.reason}: {r.message}"})
        A = area(s) if kind != "gb" or lat != "hcp" else float(np.linalg.norm(np.cross(s.cell.array[1], s.cell.array[2])))
        if kind == "surface":
            surf_u[key] = finite_or_none((r.initial_energy - len(s) * e_bulk) / (2 * A) * EV_PER_A2_TO_J_PER_M2)
            surf[key] = (r.energy - len(s) * e_bulk) / (2 * A) * EV_PER_A2_TO_J_PER_M2 if r.ok else None
        elif kind == "gsf":
            gsf[key] = r.energy if r.ok else None
        else:
            gb[key] = ((r.energy - len(s) * e_bulk) / (2 * A) * EV_PER_A2_TO_J_PER_M2 if r.ok else None, r)
    props["surface_J_m2"], props["surface_unrelaxed_J_m2"] = surf, surf_u
    # GSF curves
    stack_area = area(stack)
    e0 = gsf.get("perfect")
    props["gsf"] = {}
    for d in opts["gsf_directions"]:
        st, e0_d, area_d = stack, e0, stack_area
        if lat == "hcp":
            period = math.sqrt(3.0) * a if d == "10-10" else a
        else:
            if d in OWN_PLANE:
                st = gsf_stack(lat, element, a, opts["gsf_layers"], d)
                e0_d, area_d = gsf.get(("perfect", d)), area(st)
            period = float(np.linalg.norm(gsf_period(lat, st, d)))
        n = opts["gsf_points"]
        t = [0.0] + [period * k / n for k in range(1, n + 1)]
        g = [0.0] + [None if e0_d is None or gsf.get((d, k)) is None
                     else (gsf[(d, k)] - e0_d) / area_d * EV_PER_A2_TO_J_PER_M2 for k in range(1, n + 1)]
        props["gsf"][d] = {"t_A": t, "t_over_period": [x / period for x in t], "gamma_J_m2": g, **_gsf_points(g)}
    # decohesion (rigid, single points)
    if opts["decohesion_points"] >= 2:
        from ..evaluate import Evaluator

        s_vals = np.linspace(0.0, opts["decohesion_max"], opts["decohesion_points"])
        seps = [separated(stack, x) for x in s_vals]
        for x, sv in zip(seps, s_vals):
            x.info["name"] = f"decohesion s={sv:.2f}"
        out, fails = evaluate_safe(Evaluator(potential), seps)
        failures += fails
        E = np.array([np.nan if o is None else o.energy for o in out])
        dec = (E - E[0]) / stack_area * EV_PER_A2_TO_J_PER_M2
        stress = np.gradient((E - E[0]) / stack_area, s_vals) * EV_PER_A3_TO_GPA
        smax = finite_or_none(np.nanmax(stress)) if np.isfinite(stress).any() else None
        props["decohesion"] = {"s_A": s_vals.tolist(), "energy_J_m2": [finite_or_none(x) for x in dec],
                               "max_stress_GPa": smax}
    if gb:
        best = min((k for k in gb if gb[k][0] is not None), key=lambda k: gb[k][0], default=None)
        props["gb"] = {"gamma_J_m2": None if best is None else gb[best][0], "candidate": best,
                       "n_atoms": None if best is None else len(gb[best][1].atoms),
                       "max_displacement_A": None if best is None else gb[best][1].max_displacement,
                       "all_J_m2": [gb[k][0] for k in sorted(gb)]}
    return props, failures, records


def _gsf_points(g) -> dict:
    """Unstable (largest γ before the first interior local minimum, or overall) and stable (that minimum) fault
    energies (J/m²)."""
    v = np.array([np.nan if x is None else x for x in g])
    mins = [k for k in range(1, len(v) - 1) if np.isfinite(v[k]) and v[k] <= v[k - 1] and v[k] <= v[k + 1]]
    if mins:
        k = mins[0]
        return {"usf_J_m2": finite_or_none(np.nanmax(v[:k + 1])), "sf_J_m2": finite_or_none(v[k]),
                "sf_t_over_period": k / (len(v) - 1)}
    usf = finite_or_none(np.nanmax(v)) if np.isfinite(v).any() else None
    return {"usf_J_m2": usf, "sf_J_m2": None, "sf_t_over_period": None}


def _labels(g: str) -> dict:
    """Names of the planes and the boundary in rows and figures (hcp: the names used since the start)."""
    if g == "hcp":
        return {"plane": "basal", "gb": "Σ7 [0001] tilt grain boundary", "gb_short": "Σ7", "gb_file": "gb_sigma7.png",
                "sf": "basal intrinsic stacking fault I2", "sf_direction": "10-10"}
    c = CUBIC[g]
    return {"plane": c["plane"], "gb": c["gb"], "gb_short": "Σ3 twin", "gb_file": "gb_sigma3.png",
            "sf": f"{c['plane']} intrinsic stacking fault", "sf_direction": c["sf_direction"]}


def _figures(outdir: Path, pm: dict, po: dict, opts, g: str = "hcp") -> list:
    from ..plotting import subplots

    figs = []
    names = list(opts["surfaces"])
    if names:
        fig, ax = subplots(figsize=(5, 3.5))
        x = np.arange(len(names))
        for off, p, lab in ((-0.2, pm, "potential"), (0.2, po, "oracle")):
            vals = [p.get("surface_J_m2", {}).get(n) for n in names]
            ax.bar(x + off, [np.nan if v is None else v for v in vals], 0.4, label=lab)
        ax.set_xticks(x, [f"({n})" for n in names])
        ax.set_ylabel("surface energy (J/m²)")
        ax.set_ylim(top=ax.get_ylim()[1] * 1.25)
        ax.legend(ncol=2, loc="upper left")
        fig.tight_layout()
        figs.append(outdir / "surfaces.png")
        fig.savefig(figs[-1], dpi=120)
    if opts["gsf_directions"]:
        nd = len(opts["gsf_directions"])
        fig, axes = subplots(1, nd, figsize=(4.5 * nd, 3.5), squeeze=False)
        for ax, d in zip(axes[0], opts["gsf_directions"]):
            for p, lab, st in ((po, "oracle", "-"), (pm, "potential", "o--")):
                if "gsf" in p:
                    c = p["gsf"][d]
                    ys = [np.nan if y is None else y for y in c["gamma_J_m2"]]
                    ax.plot(c["t_over_period"], ys, st, ms=3, label=lab)
            ax.set_xlabel(f"t / period along [{OWN_PLANE.get(d, (None, d))[1]}]")
            ax.set_ylabel("γ (J/m²)")
            pl, dl = OWN_PLANE.get(d, (_labels(g)["plane"], d))
            ax.set_title(f"{pl} GSF along [{dl}]")
            ax.legend()
        fig.tight_layout()
        figs.append(outdir / "gsf.png")
        fig.savefig(figs[-1], dpi=120)
    fig, ax = subplots(figsize=(5, 3.5)) if "decohesion" in pm or "decohesion" in po else (None, None)
    for p, lab, st in ((po, "oracle", "-"), (pm, "potential", "o--")) if fig else ():
        if "decohesion" in p:
            d = p["decohesion"]
            ax.plot(d["s_A"], [np.nan if y is None else y for y in d["energy_J_m2"]], st, ms=3, label=lab)
    if fig:
        ax.set_xlabel("separation (Å)")
        ax.set_ylabel("E / A (J/m²)")
        ax.set_title(f"{_labels(g)['plane']} decohesion (rigid)")
        ax.legend()
        fig.tight_layout()
        figs.append(outdir / "decohesion.png")
        fig.savefig(figs[-1], dpi=120)
    if opts["gb"] and "gb" in pm and "gb" in po:
        fig, ax = subplots(figsize=(5, 3.5))
        for off, p, lab in ((-0.2, pm, "potential"), (0.2, po, "oracle")):
            v = [np.nan if y is None else y for y in p["gb"]["all_J_m2"]]
            ax.bar(np.arange(len(v)) + off, v, 0.4, label=lab)
        ax.set_xlabel(f"{_labels(g)['gb_short']} candidate (translation)")
        ax.set_ylabel("γ_GB (J/m²)")
        ax.set_ylim(top=ax.get_ylim()[1] * 1.25)
        ax.legend(ncol=2, loc="upper left")
        fig.tight_layout()
        figs.append(outdir / _labels(g)["gb_file"])
        fig.savefig(figs[-1], dpi=120)
    return figs


DEFAULTS = dict(surfaces=SURFACES, thickness=17.0, n_planes=None, vacuum=15.0, gsf_layers=12,
                gsf_directions=("10-10", "11-20"), gsf_points=24, decohesion_max=8.0, decohesion_points=25, gb=True,
                gb_repeat=2, gb_cuts=(0.05,), fmax=1e-3, smax=1e-3, max_steps=3000)


def run(potential, oracle, outdir: Path, *, element: str | None = None, quick: bool = False, figures: bool = True,
        progress=None, ground_state: str | None = None, **options) -> dict:
    """Surface, stacking-fault, decohesion and grain-boundary energies (J/m²) of ``potential`` against ``oracle``.

    Options (defaults in :data:`DEFAULTS`): ``surfaces`` (subset of 0001, 10-10A, 10-10B, 11-20), ``thickness`` (Å)
    or ``n_planes`` (int or {surface: int}), ``vacuum`` (Å), ``gsf_layers`` (even), ``gsf_directions`` (10-10,
    11-20), ``gsf_points`` per period, ``decohesion_max`` (Å), ``decohesion_points``, ``gb`` (bool), ``gb_repeat``,
    ``gb_cuts`` (cut positions of grain 1, × a; each gives 4 translations),
    ``fmax`` (eV/Å), ``smax`` (GPa), ``max_steps``; ``quick`` (12 GSF points, 17 separations, gb_repeat 1).
    ``progress`` is accepted and ignored. ``ground_state`` (hcp, fcc, bcc; default: the oracle's lowest prototype,
    :func:`mtpjax.verify.prototypes.ground_state`): fcc and bcc take their own defaults of :data:`CUBIC` for
    ``surfaces`` and ``gsf_directions`` (known ones: :data:`SURFACES_OF`, :data:`GSF_DIRECTIONS_OF`) and the Σ3 twin
    (grains of ``thickness`` Å) instead of Σ7; ``gb_repeat`` and ``gb_cuts`` are hcp's.
    """
    t0 = time.perf_counter()
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"planar.run: unknown option(s) {unknown}; known: {sorted(DEFAULTS)}")
    element = element_of(potential, oracle, element)
    g = ground_state_of(oracle, element, ground_state)
    own = {} if g == "hcp" else {"surfaces": CUBIC[g]["surfaces"], "gsf_directions": CUBIC[g]["gsf_directions"]}
    opts = {**DEFAULTS, **own, **({"gsf_points": 12, "gb_repeat": 1, "decohesion_points": 17} if quick else {}),
            **options}
    opts["surfaces"] = tuple(opts["surfaces"])
    opts["gsf_directions"] = tuple(opts["gsf_directions"])
    bad = [s for s in opts["surfaces"] if s not in SURFACES_OF[g]]
    if bad:
        raise ValueError(f"unknown surface(s) {bad} of {g}; known: {list(SURFACES_OF[g])}")
    bad = [d for d in opts["gsf_directions"] if d not in GSF_DIRECTIONS_OF[g]]
    if bad:
        raise ValueError(f"unknown GSF direction(s) {bad} of {g}; known: {list(GSF_DIRECTIONS_OF[g])}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    got, failures = {}, []
    for who, pot in (("potential", potential), ("oracle", oracle)):
        props, fails, rec = properties(pot, element, opts, g)
        got[who] = (props, rec)
        failures += [{"structure": f"{who}: {f['structure']}", "reason": f["reason"]} for f in fails]
    pm, po = got["potential"][0], got["oracle"][0]

    def both(*keys):
        out = []
        for p in (pm, po):
            v = p
            for k in keys:
                v = v.get(k, {}) if isinstance(v, dict) else {}
            out.append(None if v == {} else v)
        return out

    def curve(*keys):
        return [np.array([np.nan if x is None else x for x in (c or [])], float) for c in both(*keys)]

    lab = _labels(g)
    rows = []
    errors = {"surface_J_m2": {}, "gsf_rmse_J_m2": {}}
    for n in opts["surfaces"]:
        r = row("planar", f"surface energy ({n})", "J/m²", *both("surface_J_m2", n))
        rows += [r, row("planar", f"unrelaxed surface energy ({n})", "J/m²", *both("surface_unrelaxed_J_m2", n))]
        errors["surface_J_m2"][n] = r["error"]
    for d in opts["gsf_directions"]:
        pl, dl = OWN_PLANE.get(d, (lab["plane"], d))
        rows.append(row("planar", f"{pl} GSF unstable fault along [{dl}]", "J/m²",
                        *both("gsf", d, "usf_J_m2")))
        if d == lab["sf_direction"]:
            r = row("planar", lab["sf"], "J/m²", *both("gsf", d, "sf_J_m2"))
            rows.append(r)
            if g != "hcp":
                errors["sf_J_m2"] = r["error"]
        cm, co = curve("gsf", d, "gamma_J_m2")
        e = rmse(cm, co) if len(cm) == len(co) and len(cm) else None
        errors["gsf_rmse_J_m2"][d] = e
        rows.append(error_row("planar", f"{pl} GSF RMSE along [{dl}]", "J/m²", e))
    if opts["decohesion_points"] >= 2:
        cm, co = curve("decohesion", "energy_J_m2")
        e = rmse(cm, co) if len(cm) == len(co) and len(cm) else None
        errors["decohesion_rmse_J_m2"] = e
        rows.append(error_row("planar", f"{lab['plane']} decohesion curve RMSE", "J/m²", e))
        rows.append(row("planar", f"{lab['plane']} ideal cleavage stress (rigid)", "GPa",
                        *both("decohesion", "max_stress_GPa")))
    if opts["gb"]:
        r = row("planar", f"{lab['gb']} energy", "J/m²", *both("gb", "gamma_J_m2"))
        rows.append(r)
        errors["gb_J_m2"] = r["error"]
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()}
    metrics = {"potential": pm, "oracle": po, "error": errors, "options": options, "ground_state": g,
               "relaxations": {"potential": got["potential"][1], "oracle": got["oracle"][1]}}
    figs = _figures(outdir, pm, po, opts, g) if figures else []
    metrics["time_s"] = time.perf_counter() - t0
    return {"metrics": metrics, "figures": [str(f) for f in figs], "rows": rows, "failures": failures}
