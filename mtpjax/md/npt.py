"""NPT with a fully flexible cell (or only its three lengths): the Martyna–Tobias–Klein (MTK) barostat, in JAX.

jax-md's own NPT scales the box isotropically; hcp needs a and c to relax apart, and a sheared cell needs its
off-diagonal stresses to relax. This is the MTK integrator (G. J. Martyna, D. J. Tobias, M. L. Klein, J. Chem. Phys.
101, 4177 (1994)) in the splitting of ASE's ``ase.md.nose_hoover_chain.MTKNPT`` (ASE >= 3.26), step for step:
Nosé–Hoover chains on the particles (``tchain`` links, time scale ``tdamp``) and on the cell momenta (``pchain``
links, ``pdamp``), each integrated with fourth-order Suzuki–Yoshida weights; the cell momentum p_g (3x3, symmetric:
the driving stress is symmetric, so the cell does not rotate) evolves with

    dp_g/dt = V (P_int - P_ext I) + (1 / 3N) sum_i p_i^2 / m_i I,   P_int = (virial + sum_i p_i p_i^T / m_i) / V,

positions and cell by exact exponentials of p_g / W (W = (N + 1) kT pdamp²). The extended energy

    H = E_pot + K + K_cell + P_ext V + thermostat and barostat chain energies

is conserved (:func:`conserved`), which the tests check.

``couple="aniso"`` (LAMMPS's ``fix npt ... aniso``, ASE's ``MaskedMTKNPT(mask=(True, True, True))`` for a cell whose
rows lie along x, y, z): the cell momentum is kept diagonal, so only the Cartesian x, y and z stretches of the cell
move, each driven by its own diagonal stress component (the off-diagonal stresses do no work); an orthogonal cell
stays exactly orthogonal (its off-diagonal elements stay exactly zero) and a crystal cannot shear into another
supercell. The barostat chain then thermostats 3 degrees of freedom. A non-orthogonal cell is stretched the same way
(its tilt components scale with the lengths along x, y, z).

Units (ASE's, as everywhere in :mod:`mtpjax.md`): Å, eV, amu, time in ASE units (1 fs = ``ase.units.fs``), kT in eV,
pressure in eV/Å³. ``cell_dof``: the degrees of freedom the barostat's chain thermostats with ``couple="full"``, 6 for
the symmetric cell momentum (equipartition of K_cell); ASE's ``MTKNPT`` counts 9 (pass ``cell_dof=9`` to reproduce its
trajectories exactly). With ``couple="aniso"`` it is always 3, the free components (as ASE's ``MaskedMTKNPT``).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..errors import MtpjaxError
from .energy import det3

#: The barostat's cell couplings: the whole (symmetric) cell momentum, or its diagonal only.
COUPLINGS = ("full", "aniso")

#: Fourth-order Suzuki–Yoshida weights (ASE's FOURTH_ORDER_COEFFS).
FOURTH_ORDER = (1 / (2 - 2 ** (1 / 3)), -(2 ** (1 / 3)) / (2 - 2 ** (1 / 3)), 1 / (2 - 2 ** (1 / 3)))


class MTKState(NamedTuple):
    """Positions (N, 3) Å, momenta (N, 3) amu·Å/t, forces (N, 3) eV/Å, energy eV, virial (3, 3) eV (-dE/dε), masses
    (N, 1) amu, cell (3, 3) Å (rows), cell momentum (3, 3), particle chain (eta, p_eta), cell chain (xi, p_xi)."""

    position: jax.Array
    momentum: jax.Array
    force: jax.Array
    energy: jax.Array
    virial: jax.Array
    mass: jax.Array
    cell: jax.Array
    cell_momentum: jax.Array
    eta: jax.Array
    p_eta: jax.Array
    xi: jax.Array
    p_xi: jax.Array

    @property
    def velocity(self):
        return self.momentum / self.mass


def eigh3(a, sweeps: int = 6):
    """(eigenvalues (3,), eigenvectors (3, 3) in columns) of a symmetric 3x3 matrix by cyclic Jacobi rotations, in plain
    jnp (a LAPACK ``eigh`` inside a jitted loop costs milliseconds per call on a CPU); 6 sweeps reach machine
    precision (Jacobi converges quadratically)."""
    v = jnp.eye(3, dtype=a.dtype)
    for _ in range(sweeps):
        for p, q in ((0, 1), (0, 2), (1, 2)):
            theta = 0.5 * jnp.arctan2(2.0 * a[p, q], a[q, q] - a[p, p])  # zeroes a[p, q]
            c, s = jnp.cos(theta), jnp.sin(theta)
            j = jnp.eye(3, dtype=a.dtype).at[p, p].set(c).at[q, q].set(c).at[p, q].set(s).at[q, p].set(-s)
            a = j.T @ a @ j
            v = v @ j
    return jnp.diagonal(a), v


def _exprel(x):
    """(e^x - 1) / x, 1 at 0."""
    small = jnp.abs(x) < 1e-8
    return jnp.where(small, 1.0 + 0.5 * x, jnp.expm1(x) / jnp.where(small, 1.0, x))


def _chain_loop(p, eta, p_eta, q, delta, g0):
    """One Nosé–Hoover chain sweep of length ``delta`` on momenta ``p`` (any shape); ``g0(p)`` drives the first link."""
    n = len(q)
    d2, d4 = delta / 2, delta / 4

    def link(p_eta, j):
        if j < n - 1:
            p_eta = p_eta.at[j].multiply(jnp.exp(-d4 * p_eta[j + 1] / q[j + 1]))
        g = g0(p) if j == 0 else p_eta[j - 1] ** 2 / q[j - 1] - g0.kT
        p_eta = p_eta.at[j].add(d2 * g)
        if j < n - 1:
            p_eta = p_eta.at[j].multiply(jnp.exp(-d4 * p_eta[j + 1] / q[j + 1]))
        return p_eta

    for j in reversed(range(n)):
        p_eta = link(p_eta, j)
    eta = eta + delta * p_eta / q
    p = p * jnp.exp(-delta * p_eta[0] / q[0])
    for j in range(n):
        p_eta = link(p_eta, j)
    return p, eta, p_eta


class _Drive:
    """The first link's force: sum p²/m - dof kT (a callable with the chain's kT)."""

    def __init__(self, fn, kT):
        self.fn, self.kT = fn, kT

    def __call__(self, p):
        return self.fn(p)


def _chain(p, eta, p_eta, q, delta, loops: int, drive):
    for _ in range(loops):
        for w in FOURTH_ORDER:
            p, eta, p_eta = _chain_loop(p, eta, p_eta, q, w * delta / loops, drive)
    return p, eta, p_eta


def npt_mtk(efs_fn, dt: float, kT: float, pressure: float, tdamp: float, pdamp: float, *, tchain: int = 3, pchain: int = 3,
            tloop: int = 1, ploop: int = 1, cell_dof: int = 6, couple: str = "full"):
    """``(init_fn, step_fn, conserved_fn)`` of the MTK integrator (see the module docstring): ``couple="full"`` moves
    the whole cell, ``"aniso"`` only its x, y, z lengths (``cell_dof`` is then 3 whatever is passed).

    ``efs_fn(R, neighbor, cell)`` -> (energy eV, forces eV/Å, virial eV) (:func:`mtpjax.md.energy.efs_fn`); ``dt``,
    ``tdamp``, ``pdamp`` in ASE time units; ``kT`` eV; ``pressure`` eV/Å³.

    - ``init_fn(key, R, cell, mass, neighbor, momenta=None)``: Maxwell–Boltzmann momenta at kT (zero total momentum)
      unless given; cell momentum and chains at rest;
    - ``step_fn(state, neighbor)``: one step (one force and virial evaluation);
    - ``conserved_fn(state)``: the extended energy in eV.
    """
    if couple not in COUPLINGS:
        raise MtpjaxError(f"unknown barostat coupling {couple!r}; choose one of {', '.join(COUPLINGS)}")
    aniso = couple == "aniso"
    if aniso:
        cell_dof = 3

    def eig(pg):
        """Eigenvalues and eigenvectors of the cell momentum; exactly diag(pg) and I when it is diagonal (aniso)."""
        return (jnp.diagonal(pg), jnp.eye(3, dtype=pg.dtype)) if aniso else eigh3(pg)

    def constants(n):
        q = jnp.full(tchain, kT * tdamp**2).at[0].set(3 * n * kT * tdamp**2)
        r = jnp.full(pchain, kT * pdamp**2).at[0].set(cell_dof * kT * pdamp**2)
        w = (n + 1) * kT * pdamp**2
        return q, r, w

    def init_fn(key, R, cell, mass, neighbor, momenta=None):
        R = jnp.asarray(R)
        mass = jnp.reshape(jnp.asarray(mass, R.dtype), (-1, 1))
        if momenta is None:
            p = jnp.sqrt(mass * kT) * jax.random.normal(key, R.shape, R.dtype)
            momenta = p - jnp.mean(p, axis=0, keepdims=True) * (R.shape[0] > 1)
        e, f, v = efs_fn(R, neighbor, cell)
        z3 = jnp.zeros((3, 3), R.dtype)
        return MTKState(R, jnp.asarray(momenta, R.dtype), f, e, v, mass, jnp.asarray(cell, R.dtype), z3,
                        jnp.zeros(tchain, R.dtype), jnp.zeros(tchain, R.dtype), jnp.zeros(pchain, R.dtype),
                        jnp.zeros(pchain, R.dtype))

    def p_cell_kick(s: MTKState, delta, w):
        n = s.position.shape[0]
        vol = jnp.abs(det3(s.cell))
        kin = (s.momentum / s.mass).T @ s.momentum
        g = s.virial + kin - pressure * vol * jnp.eye(3) + jnp.sum(s.momentum**2 / s.mass) / (3 * n) * jnp.eye(3)
        g = jnp.diag(jnp.diagonal(g)) if aniso else 0.5 * (g + g.T)
        return s._replace(cell_momentum=s.cell_momentum + delta * g)

    def p_kick(s: MTKState, delta, w):
        n = s.position.shape[0]
        lam, u = eig(s.cell_momentum)
        kappa = lam + jnp.trace(s.cell_momentum) / (3 * n)
        y = s.momentum @ u
        sol = y * jnp.exp(-kappa * delta / w)[None, :] + delta * (s.force @ u) * _exprel(-kappa * delta / w)[None, :]
        return s._replace(momentum=sol @ u.T)

    def drift(s: MTKState, delta, w):
        lam, u = eig(s.cell_momentum)
        x = s.position @ u
        y = s.momentum @ u
        sol = x * jnp.exp(lam * delta / w)[None, :] + delta * y / s.mass * _exprel(lam * delta / w)[None, :]
        cell = (s.cell @ u) * jnp.exp(lam * delta / w)[None, :]
        return s._replace(position=sol @ u.T, cell=cell @ u.T)

    def thermostats(s: MTKState, delta, q, r, w):
        n = s.position.shape[0]
        mass = s.mass
        drive_p = _Drive(lambda p: jnp.sum(p**2 / mass) - 3 * n * kT, kT)
        p, eta, p_eta = _chain(s.momentum, s.eta, s.p_eta, q, delta, tloop, drive_p)
        return s._replace(momentum=p, eta=eta, p_eta=p_eta)

    def barostat(s: MTKState, delta, q, r, w):
        drive_g = _Drive(lambda pg: jnp.sum(pg**2) / w - cell_dof * kT, kT)
        pg, xi, p_xi = _chain(s.cell_momentum, s.xi, s.p_xi, r, delta, ploop, drive_g)
        return s._replace(cell_momentum=pg, xi=xi, p_xi=p_xi)

    def step_fn(s: MTKState, neighbor, **unused):
        q, r, w = constants(s.position.shape[0])
        h = dt / 2
        s = barostat(s, h, q, r, w)
        s = thermostats(s, h, q, r, w)
        s = p_cell_kick(s, h, w)
        s = p_kick(s, h, w)
        s = drift(s, dt, w)
        e, f, v = efs_fn(s.position, neighbor, s.cell)
        s = s._replace(force=f, energy=e, virial=v)
        s = p_kick(s, h, w)
        s = p_cell_kick(s, h, w)
        s = thermostats(s, h, q, r, w)
        return barostat(s, h, q, r, w)

    def conserved_fn(s: MTKState, *unused, **kw):
        n = s.position.shape[0]
        q, r, w = constants(n)
        kin = 0.5 * jnp.sum(s.momentum**2 / s.mass)
        thermo = 3 * n * kT * s.eta[0] + kT * jnp.sum(s.eta[1:]) + jnp.sum(0.5 * s.p_eta**2 / q)
        baro = jnp.sum(0.5 * s.p_xi**2 / r) + cell_dof * kT * s.xi[0] + kT * jnp.sum(s.xi[1:])
        cell_kin = jnp.sum(s.cell_momentum**2) / (2 * w)
        return s.energy + kin + thermo + baro + cell_kin + pressure * jnp.abs(det3(s.cell))

    return init_fn, step_fn, conserved_fn
