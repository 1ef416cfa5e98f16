"""The Zhou–Johnson–Wadley analytic EAM (X. W. Zhou, R. A. Johnson, H. N. G. Wadley, PRB 69, 144113 (2004)).

Implemented exactly as LAMMPS's ``tools/eam_database/create.f`` tabulates it (what ``*.eam.alloy`` files made
with that tool, e.g. ``Mg_Zhou2004.eam.alloy``, contain). Units: Å, eV. For element a (parameters of
:data:`ZHOU2004`, create.f's names) and x = r / re:

- density  f_a(r) = fe exp(-beta1 (x - 1)) / (1 + (x - ramda1)^20)
- pair     psi_a(r) = A exp(-alpha (x - 1)) / (1 + (x - cai)^20) - B exp(-beta (x - 1)) / (1 + (x - ramda)^20)
- alloy    phi_ab(r) = 1/2 [ f_b(r)/f_a(r) psi_a(r) + f_a(r)/f_b(r) psi_b(r) ]   (= psi_a for a = b)
- embedding, with rho_in = rhol rhoe (0.85 rhoe) and rho_out = rhoh rhoe (1.15 rhoe):
    rho <  rho_in:            F = sum_i Fi_i (rho/rho_in - 1)^i
    rho_in <= rho < rho_out:  F = sum_i Fm_i (rho/rhoe - 1)^i,  with Fm4 instead of Fm3 for rho >= rhoe
    rho >= rho_out:           F = Fn (1 - fnn ln(rho/rhos)) (rho/rhos)^fnn
- like create.f, distances below 0.5 Å are clamped: f(r) = f(0.5), r phi(r) = 0.5 phi(0.5).

Cutoff: create.f truncates the (otherwise infinite-ranged) functions at rc = sqrt(10)/2 * sqrt(2) * max(re)
= sqrt(5) max(re) (7.1471 Å for Mg); that is the default here, a hard cutoff like LAMMPS's. The functions
are tiny there (Mg: f(rc) = 9e-6, phi(rc) = -4e-6 eV), so the energy step as a pair crosses rc is a few µeV.
``smooth_width`` > 0 instead multiplies f and phi by the C2 switch 1 - 10x^3 + 15x^4 - 6x^5 over the last
``smooth_width`` Å before the cutoff (continuous energy and forces, e.g. for MD); with 1 Å it changes Mg's
energies by up to 0.4 meV/atom.
"""
from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import MtpjaxError
from .base import UNITS
from .eam import eam_dimer_energy, eam_site_energies

#: Parameter names in the order of LAMMPS's create.f / EAM_code (paper symbols in brackets): re [r_e], fe [f_e],
#: rhoe [rho_e], rhos [rho_s], alpha, beta, A, B, cai [kappa], ramda [lambda], Fi0..Fi3 [F_n0..F_n3],
#: Fm0..Fm3 [F_0..F_3], fnn [eta], Fn [F_e], ielement (Z), amass (u), Fm4 (F_3 for rho >= rho_e), beta1, ramda1
#: (density decay and its lambda), rhol, rhoh (rho_n = rhol rhoe, rho_0 = rhoh rhoe).
FIELDS = ("re", "fe", "rhoe", "rhos", "alpha", "beta", "A", "B", "cai", "ramda", "Fi0", "Fi1", "Fi2", "Fi3",
          "Fm0", "Fm1", "Fm2", "Fm3", "fnn", "Fn", "ielement", "amass", "Fm4", "beta1", "ramda1", "rhol", "rhoh")

_ROWS = {
    "Cu": (2.556162, 1.554485, 21.175871, 21.175395, 8.127620, 4.334731, 0.396620, 0.548085, 0.308782, 0.756515, -2.170269, -0.263788, 1.088878, -0.817603, -2.19, 0.00, 0.561830, -2.100595, 0.310490, -2.186568, 29, 63.546, -2.100595, 4.334731, 0.756515, 0.85, 1.15),
    "Ag": (2.891814, 1.106232, 14.604100, 14.604144, 9.132010, 4.870405, 0.277758, 0.419611, 0.339710, 0.750758, -1.729364, -0.255882, 0.912050, -0.561432, -1.75, 0.00, 0.744561, -1.150650, 0.783924, -1.748423, 47, 107.8682, -1.150650, 4.870405, 0.750758, 0.85, 1.15),
    "Au": (2.885034, 1.529021, 19.991632, 19.991509, 9.516052, 5.075228, 0.229762, 0.356666, 0.356570, 0.748798, -2.937772, -0.500288, 1.601954, -0.835530, -2.98, 0.00, 1.706587, -1.134778, 1.021095, -2.978815, 79, 196.96654, -1.134778, 5.075228, 0.748798, 0.85, 1.15),
    "Ni": (2.488746, 2.007018, 27.562015, 27.562031, 8.383453, 4.471175, 0.429046, 0.633531, 0.443599, 0.820658, -2.693513, -0.076445, 0.241442, -2.375626, -2.70, 0.00, 0.265390, -0.152856, 0.445470, -2.7, 28, 58.6934, -0.152856, 4.471175, 0.820658, 0.85, 1.15),
    "Pd": (2.750897, 1.595417, 21.335246, 21.940073, 8.697397, 4.638612, 0.406763, 0.598880, 0.397263, 0.754799, -2.321006, -0.473983, 1.615343, -0.231681, -2.36, 0.00, 1.481742, -1.675615, 1.130000, -2.352753, 46, 106.42, -1.675615, 4.638612, 0.754799, 0.85, 1.15),
    "Pt": (2.771916, 2.336509, 33.367564, 35.205357, 7.105782, 3.789750, 0.556398, 0.696037, 0.385255, 0.770510, -1.455568, -2.149952, 0.528491, 1.222875, -4.17, 0.00, 3.010561, -2.420128, 1.450000, -4.145597, 78, 195.08, -2.420128, 3.789750, 0.770510, 0.25, 1.15),
    "Al": (2.863924, 1.403115, 20.418205, 23.195740, 6.613165, 3.527021, 0.314873, 0.365551, 0.379846, 0.759692, -2.807602, -0.301435, 1.258562, -1.247604, -2.83, 0.00, 0.622245, -2.488244, 0.785902, -2.824528, 13, 26.981539, -2.488244, 3.527021, 0.759692, 0.85, 1.15),
    "Pb": (3.499723, 0.647872, 8.450154, 8.450063, 9.121799, 5.212457, 0.161219, 0.236884, 0.250805, 0.764955, -1.422370, -0.210107, 0.682886, -0.529378, -1.44, 0.00, 0.702726, -0.538766, 0.935380, -1.439436, 82, 207.2, -0.538766, 5.212457, 0.764955, 0.85, 1.15),
    "Fe": (2.481987, 1.885957, 20.041463, 20.041463, 9.818270, 5.236411, 0.392811, 0.646243, 0.170306, 0.340613, -2.534992, -0.059605, 0.193065, -2.282322, -2.54, 0.00, 0.200269, -0.148770, 0.391750, -2.539945, 26, 55.847, -0.148770, 5.236411, 0.340613, 0.85, 1.15),
    "Mo": (2.728100, 2.723710, 29.354065, 29.354065, 8.393531, 4.476550, 0.708787, 1.120373, 0.137640, 0.275280, -3.692913, -0.178812, 0.380450, -3.133650, -3.71, 0.00, 0.875874, 0.776222, 0.790879, -3.712093, 42, 95.94, 0.776222, 4.476550, 0.275280, 0.85, 1.15),
    "Ta": (2.860082, 3.086341, 33.787168, 33.787168, 8.489528, 4.527748, 0.611679, 1.032101, 0.176977, 0.353954, -5.103845, -0.405524, 1.112997, -3.585325, -5.14, 0.00, 1.640098, 0.221375, 0.848843, -5.141526, 73, 180.9479, 0.221375, 4.527748, 0.353954, 0.85, 1.15),
    "W": (2.740840, 3.487340, 37.234847, 37.234847, 8.900114, 4.746728, 0.882435, 1.394592, 0.139209, 0.278417, -4.946281, -0.148818, 0.365057, -4.432406, -4.96, 0.00, 0.661935, 0.348147, 0.582714, -4.961306, 74, 183.84, 0.348147, 4.746728, 0.278417, 0.85, 1.15),
    "Mg": (3.196291, 0.544323, 7.132600, 7.132600, 10.228708, 5.455311, 0.137518, 0.225930, 0.5, 1.0, -0.896473, -0.044291, 0.162232, -0.689950, -0.90, 0.00, 0.122838, -0.226010, 0.431425, -0.899702, 12, 24.305, -0.226010, 5.455311, 1.0, 0.85, 1.15),
    "Co": (2.505979, 1.975299, 27.206789, 27.206789, 8.679625, 4.629134, 0.421378, 0.640107, 0.5, 1.0, -2.541799, -0.219415, 0.733381, -1.589003, -2.56, 0.00, 0.705845, -0.687140, 0.694608, -2.559307, 27, 58.9332, -0.687140, 4.629134, 1.0, 0.85, 1.15),
    "Ti": (2.933872, 1.863200, 25.565138, 25.565138, 8.775431, 4.680230, 0.373601, 0.570968, 0.5, 1.0, -3.203773, -0.198262, 0.683779, -2.321732, -3.22, 0.00, 0.608587, -0.750710, 0.558572, -3.219176, 22, 47.88, -0.750710, 4.680230, 1.0, 0.85, 1.15),
    "Zr": (3.199978, 2.230909, 30.879991, 30.879991, 8.559190, 4.564902, 0.424667, 0.640054, 0.5, 1.0, -4.485793, -0.293129, 0.990148, -3.202516, -4.51, 0.00, 0.928602, -0.981870, 0.597133, -4.509025, 40, 91.224, -0.981870, 4.564902, 1.0, 0.85, 1.15),
}

#: The published parameters (PRB 69, 144113; as in LAMMPS's tools/eam_database/EAM_code) of the 16 elements:
#: element -> {parameter name: value}.
ZHOU2004: dict[str, dict[str, float]] = {el: dict(zip(FIELDS, row)) for el, row in _ROWS.items()}

REFERENCE = ("X. W. Zhou, R. A. Johnson, H. N. G. Wadley, Phys. Rev. B 69, 144113 (2004); functions as tabulated by "
             "LAMMPS tools/eam_database/create.f")

_I = {k: n for n, k in enumerate(FIELDS)}


def _get(p, name):
    return p[..., _I[name]]


def _switch(r, cutoff: float, width: float):
    """1 below cutoff - width, C2 smoothstep down to 0 at the cutoff (1 everywhere for width 0)."""
    if width <= 0:
        return 1.0
    x = jnp.clip((r - (cutoff - width)) / width, 0.0, 1.0)
    return 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x**2)


def zhou_density(r, p):
    """f(r), the density of one atom with parameters p (..., n_fields) at distance r (Å), unclamped."""
    x = r / _get(p, "re")
    return _get(p, "fe") * jnp.exp(-_get(p, "beta1") * (x - 1.0)) / (1.0 + (x - _get(p, "ramda1")) ** 20)


def zhou_psi(r, p):
    """psi(r) in eV, the pure-element pair function, unclamped."""
    x = r / _get(p, "re")
    rep = _get(p, "A") * jnp.exp(-_get(p, "alpha") * (x - 1.0)) / (1.0 + (x - _get(p, "cai")) ** 20)
    att = _get(p, "B") * jnp.exp(-_get(p, "beta") * (x - 1.0)) / (1.0 + (x - _get(p, "ramda")) ** 20)
    return rep - att


def zhou_embedding(rho, p):
    """F(rho) in eV (three branches; see the module docstring). NaN-free values and gradients at any rho >= 0."""
    rhoe, rhos = _get(p, "rhoe"), _get(p, "rhos")
    rho_in, rho_out = _get(p, "rhol") * rhoe, _get(p, "rhoh") * rhoe
    u = rho / rho_in - 1.0
    low = _get(p, "Fi0") + u * (_get(p, "Fi1") + u * (_get(p, "Fi2") + u * _get(p, "Fi3")))
    v = rho / rhoe - 1.0
    fm3 = jnp.where(rho < rhoe, _get(p, "Fm3"), _get(p, "Fm4"))
    mid = _get(p, "Fm0") + v * (_get(p, "Fm1") + v * (_get(p, "Fm2") + v * fm3))
    high_rho = jnp.where(rho >= rho_out, rho, rho_out)  # double where: no log(0) in the unused branch
    s, eta = high_rho / rhos, _get(p, "fnn")
    high = _get(p, "Fn") * (1.0 - eta * jnp.log(s)) * s**eta
    return jnp.where(rho < rho_in, low, jnp.where(rho < rho_out, mid, high))


class ZhouEAM(eqx.Module):
    """The Zhou 2004 EAM for one element or an alloy (create.f's mixing rule), a JAX potential.

    ``ZhouEAM("Mg")`` or ``ZhouEAM(["Cu", "Ag"])``. ``cutoff`` (Å): default sqrt(5) max(re), as create.f;
    ``smooth_width`` (Å): default 0, LAMMPS's hard truncation (see the module docstring); ``parameters``:
    optional {element: {name: value}} adding or overriding elements of :data:`ZHOU2004` (a new element needs all
    of :data:`FIELDS`). Leaf: ``params`` (S, len(FIELDS)); static: ``species``, ``cutoff``, ``smooth_width``.
    """

    params: jax.Array
    species: tuple = eqx.field(static=True)
    cutoff: float = eqx.field(static=True)
    smooth_width: float = eqx.field(static=True)
    custom: tuple = eqx.field(static=True)  # elements whose parameters the user gave

    def __init__(self, elements="Mg", cutoff: float | None = None, smooth_width: float = 0.0,
                 parameters: dict | None = None):
        elements = (elements,) if isinstance(elements, str) else tuple(elements)
        table = {el: dict(v) for el, v in ZHOU2004.items()}
        for el, v in (parameters or {}).items():
            unknown = sorted(set(v) - set(FIELDS))
            if unknown:
                raise MtpjaxError(f"Zhou EAM parameters for {el}: unknown name(s) {unknown}; known: {list(FIELDS)}")
            if el not in table and set(v) != set(FIELDS):
                raise MtpjaxError(f"Zhou EAM parameters for new element {el}: missing {sorted(set(FIELDS) - set(v))}")
            table[el] = {**table.get(el, {}), **{k: float(x) for k, x in v.items()}}
        if not elements:
            raise MtpjaxError("the Zhou EAM needs at least one element")
        missing = [el for el in elements if el not in table]
        if missing:
            raise MtpjaxError(f"the Zhou 2004 EAM has no parameters for element(s) {missing}; it knows {sorted(table)}")
        if len(set(elements)) != len(elements):
            raise MtpjaxError(f"repeated element in {list(elements)}")
        if cutoff is None:  # create.f: rc = sqrt(10)/2 * blat, blat = sqrt(2) re (the largest over the elements)
            cutoff = math.sqrt(10.0) / 2.0 * max(math.sqrt(2.0) * table[el]["re"] for el in elements)
        if not (cutoff > 0 and 0 <= smooth_width < cutoff):
            raise MtpjaxError(f"Zhou EAM: need cutoff > 0 and 0 <= smooth_width < cutoff, got {cutoff}, {smooth_width}")
        self.params = jnp.asarray(np.array([[table[el][k] for k in FIELDS] for el in elements], dtype=np.float64))
        self.species = elements
        self.cutoff = float(cutoff)
        self.smooth_width = float(smooth_width)
        self.custom = tuple(el for el in elements if el in (parameters or {}))

    @property
    def n_species(self) -> int:
        return len(self.species)

    @property
    def name(self) -> str:
        return f"Zhou2004 EAM ({'-'.join(self.species)})"

    def _p(self, t):
        return self.params[t]

    def density(self, r, a, b):
        """rho_{b->a}(r) = f_b(max(r, 0.5)), switched if smooth_width > 0."""
        return zhou_density(jnp.maximum(r, 0.5), self._p(b)) * _switch(r, self.cutoff, self.smooth_width)

    def pair(self, r, a, b):
        """phi_ab(r) in eV (create.f's mixing rule; r phi held constant below 0.5 Å), switched if smooth_width > 0."""
        rr = jnp.maximum(r, 0.5)
        pa, pb = self._p(a), self._p(b)
        fa, fb = zhou_density(rr, pa), zhou_density(rr, pb)
        mixed = 0.5 * (fb / fa * zhou_psi(rr, pa) + fa / fb * zhou_psi(rr, pb))
        return rr * mixed / r * _switch(r, self.cutoff, self.smooth_width)

    def embed(self, rho, a):
        return zhou_embedding(rho, self._p(a))

    def site_energies_from_pairs(self, R, types, nbrs, **kw):
        """Site energies (N,) in eV (the :class:`mtpjax.potential.Potential` protocol; extra keywords ignored)."""
        return eam_site_energies(R, types, nbrs, self.cutoff, self.pair, self.density, self.embed)

    def dimer_energy(self, r, a, b):
        """Binding (eV) of an isolated a-b pair at r (Å) below the cutoff (:func:`mtpjax.oracles.interaction_range`)."""
        return eam_dimer_energy(r, a, b, self.pair, self.density, self.embed)

    @property
    def spec(self) -> dict:
        """JSON recipe for :func:`mtpjax.oracles.make_oracle`."""
        s = {"type": "zhou", "elements": list(self.species), "cutoff": self.cutoff, "smooth_width": self.smooth_width}
        if self.custom:
            p = np.asarray(self.params)
            s["parameters"] = {el: dict(zip(FIELDS, map(float, p[self.species.index(el)]))) for el in self.custom}
        return s

    def describe(self) -> dict:
        """Manifest entry: spec, name, species, cutoff, units, every parameter, reference."""
        p = np.asarray(self.params)
        return {**self.spec, "name": self.name, "species": list(self.species), "units": UNITS,
                "cutoff_treatment": ("hard truncation at the cutoff (as LAMMPS's create.f tabulation)" if self.smooth_width == 0
                                     else f"C2 switch of density and pair function over [{self.cutoff - self.smooth_width:g}, {self.cutoff:g}] Å"),
                "parameters": {el: dict(zip(FIELDS, map(float, p[k]))) for k, el in enumerate(self.species)},
                "reference": REFERENCE}

    def tabulate(self, nr: int = 2000, nrho: int = 2000):
        """create.f's setfl tabulation (:class:`mtpjax.oracles.eam_tabulated.EAMTables`, float64): r_k = k dr up to
        the cutoff, rho_k = k drho up to max(f(0.5 Å), 2 max(rhoe), 100)."""
        from .eam_tabulated import EAMTables

        S = self.n_species
        dr = self.cutoff / (nr - 1)
        r = np.arange(nr) * dr
        rr = np.maximum(r, 0.5)  # create.f writes z2r = r psi(r) with r itself clamped
        t = np.arange(S)
        dens = np.stack([np.asarray(self.density(jnp.asarray(rr), 0, k)) for k in t])
        z2r = np.stack([np.stack([rr * np.asarray(self.pair(jnp.asarray(rr), a, b)) for b in t]) for a in t])
        p = np.asarray(self.params)
        rhom = max(float(dens.max()), 2.0 * float(p[:, _I["rhoe"]].max()), 100.0)
        drho = rhom / (nrho - 1)
        rho = np.arange(nrho) * drho
        F = np.stack([np.asarray(self.embed(jnp.asarray(rho), k)) for k in t])
        return EAMTables(form="alloy", elements=list(self.species), numbers=[int(v) for v in p[:, _I["ielement"]]],
                         masses=[float(v) for v in p[:, _I["amass"]]],
                         lattice_constants=[math.sqrt(2.0) * float(v) for v in p[:, _I["re"]]],
                         lattices=["fcc"] * S, nrho=nrho, drho=drho, nr=nr, dr=dr, cutoff=self.cutoff,
                         embedding=F, density=np.broadcast_to(dens[:, None, :], (S, S, nr)).copy(), rphi=z2r,
                         comments=[f"Zhou04 EAM for {' '.join(self.species)} tabulated by mtpjax (create.f conventions)", "", ""])

