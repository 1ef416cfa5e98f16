"""Phonon DOS at finite temperature from MD (the mass-weighted velocity autocorrelation, mtpjax.md.vdos) against
the 0 K harmonic DOS (phonopy), for an oracle and, if given, an MTP, through the same code: hcp Mg (the Sun 2006 EAM,
Mg_mm.eam.fs) or fcc argon (Lennard-Jones, eps 10.32 meV, sigma 3.40 Å, cutoff 2.5 sigma with a smooth onset
from 2.2 sigma: the related study's learned-force-field benchmark). Each potential at its own relaxed lattice
(mtpjax.relax.equilibrium), a fixed cell (no thermal expansion: the changes are the intrinsic anharmonicity),
Langevin NVT equilibration and NVE sampling per temperature.

Writes OUT/vdos.png (OUT/vdos_ar.png for argon: 0 K and each temperature side by side, MTP over oracle) and
OUT/vdos.md (vdos_ar.md: command, settings, mean frequencies in THz).

    python scripts/phonon_dos_temperature.py --mtp ../shared/bench/fit/mlip3_l16_rc6p5.almtp
    python scripts/phonon_dos_temperature.py --system ar
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mtpjax  # noqa: F401  (float64 before jax)

import numpy as np
from ase.build import bulk

from mtpjax.io.files import atomic_write, machine, versions
from mtpjax.md.vdos import finite_temperature_dos
from mtpjax.oracles import describe, make_potential

ROOT = Path(__file__).resolve().parents[1]
ORACLE = ROOT.parent / "shared" / "data" / "potentials" / "Mg_mm.eam.fs"
#: Per system: element, crystal, the oracle, and the defaults of the options that differ (argon is ~40 times softer
#: and heavier than Mg: frequencies below 2.2 THz, melting near 84 K, so longer steps and correlation times).
SYSTEMS = {
    "mg": dict(element="Mg", crystal="hcp", oracle=str(ORACLE), temperatures=[100.0, 300.0, 600.0], repeat=[4, 4, 3],
               cubic=False, timestep=2.0, steps=6000, max_lag_fs=1500.0, mesh=[16, 16, 12], sigma=0.1, fmax=12.0,
               title="hcp Mg", cells="hcp primitive cells"),
    "ar": dict(element="Ar", crystal="fcc", oracle='{"type": "lj", "cutoff": 8.5, "onset": 7.48}',
               temperatures=[10.0, 30.0, 60.0], repeat=[3, 3, 3], cubic=True, timestep=4.0, steps=10000,
               max_lag_fs=6000.0, mesh=[16, 16, 16], sigma=0.03, fmax=3.0, title="fcc Ar (Lennard-Jones)",
               cells="fcc cubic cells"),
}


def relaxed_lattice(potential, element: str = "Mg", crystal: str = "hcp") -> tuple[float, float | None]:
    """(a, c) Å of the potential's relaxed ``crystal`` (mtpjax.relax.equilibrium, zero stress); c None if cubic."""
    from mtpjax.relax import equilibrium, hex_parameters

    r = equilibrium(potential, [crystal], element)[crystal]
    if crystal == "hcp":
        hp = hex_parameters(r.atoms)
        return float(hp["a"]), float(hp["a"] * hp["c_over_a"])
    return float((4.0 * r.atoms.get_volume() / len(r.atoms)) ** (1.0 / 3.0)), None  # fcc: 4 atoms per cube


def figure(results: dict, temperatures, path: Path, fmax: float = 10.0) -> Path:
    """One panel per temperature (0 K harmonic first): DOS (states/THz per atom) of each potential."""
    from mtpjax.plotting import subplots

    cols = ["0K"] + list(temperatures)
    fig, axes = subplots(1, len(cols), figsize=(3.2 * len(cols), 3.4), sharey=True, squeeze=False)
    styles = {"oracle": dict(color="k", lw=1.2), "MTP": dict(color="C3", lw=1.0, ls="--")}
    for ax, col in zip(axes[0], cols):
        for name, (r, _) in results.items():
            g = r.harmonic if col == "0K" else r.dos[col]
            mean = r.mean_frequency[col]
            ax.plot(r.frequencies, g / r.n_atoms, label=f"{name}: ⟨ν⟩ {mean:.2f} THz", **styles[name])
        ax.set_title("0 K harmonic (phonopy)" if col == "0K" else f"MD {col:g} K (VACF)", fontsize=10)
        ax.set_xlabel("frequency (THz)")
        ax.set_xlim(0, fmax)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("DOS (states / THz / atom)")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", choices=sorted(SYSTEMS), default="mg",
                    help="mg: hcp Mg, Sun EAM (default); ar: fcc argon, Lennard-Jones 2.5 sigma (smooth from 2.2 sigma)")
    ap.add_argument("--potential", default=None, help="the oracle (default: the system's: Mg_mm.eam.fs, or LJ argon)")
    ap.add_argument("--mtp", default=None, help="an MTP file (one species: the system's element)")
    ap.add_argument("--temperatures", type=float, nargs="+", default=None, help="K (Mg: 100 300 600; Ar: 10 30 60)")
    ap.add_argument("--repeat", type=int, nargs=3, default=None,
                    help="supercell (Mg: 4 4 3 hcp primitive cells, 96 atoms; Ar: 3 3 3 cubic cells, 108 atoms)")
    ap.add_argument("--timestep", type=float, default=None, help="fs (Mg 2, Ar 4)")
    ap.add_argument("--equilibration", type=int, default=2000, help="Langevin steps per temperature")
    ap.add_argument("--steps", type=int, default=None, help="NVE steps per segment (Mg 6000, Ar 10000)")
    ap.add_argument("--segments", type=int, default=1, help="NVE segments per temperature")
    ap.add_argument("--every", type=int, default=5, help="steps between recorded velocities")
    ap.add_argument("--max-lag-fs", type=float, default=None,
                    help="longest VACF lag (fs; resolution ~ 1/lag; Mg 1500, Ar 6000)")
    ap.add_argument("--mesh", type=int, nargs=3, default=None, help="phonopy mesh of the 0 K DOS")
    ap.add_argument("--sigma", type=float, default=None, help="phonopy smearing (THz; Mg 0.1, Ar 0.03)")
    ap.add_argument("-o", "--out", default=str(ROOT / "docs" / "benchmarks"))
    a = ap.parse_args(argv)
    system = SYSTEMS[a.system]
    for key in ("temperatures", "repeat", "timestep", "steps", "max_lag_fs", "mesh", "sigma"):
        if getattr(a, key) is None:
            setattr(a, key, system[key])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "vdos" if a.system == "mg" else f"vdos_{a.system}"
    pots = {"oracle": make_potential(a.potential or system["oracle"])}
    if a.mtp:
        pots["MTP"] = make_potential(a.mtp, species=[system["element"]])
    grid = np.arange(0.0, system["fmax"] + 1e-9, 0.02 * system["fmax"] / 12.0)
    results = {}
    for name, pot in pots.items():
        t0 = time.perf_counter()
        lat_a, lat_c = relaxed_lattice(pot, system["element"], system["crystal"])
        atoms = bulk(system["element"], system["crystal"], a=lat_a, c=lat_c, cubic=system["cubic"]).repeat(tuple(a.repeat))
        r = finite_temperature_dos(pot, atoms, a.temperatures, timestep=a.timestep, equilibration=a.equilibration,
                                   steps=a.steps, segments=a.segments, every=a.every, max_lag_fs=a.max_lag_fs,
                                   frequencies=grid, mesh=tuple(a.mesh), sigma=a.sigma)
        results[name] = (r, {"a": lat_a, "c": lat_c, "wall_s": time.perf_counter() - t0})
        print(name, {k: round(v, 3) for k, v in r.mean_frequency.items()}, flush=True)
    png = figure(results, a.temperatures, out / f"{stem}.png", fmax=system["fmax"])
    cmd = "python scripts/phonon_dos_temperature.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"# Phonon DOS of {system['title']} at finite temperature (`mtpjax.md.vdos`)", "",
             f"Command: `{cmd}`", "",
             f"Machine: {machine()}; versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()), "",
             f"Oracle: {describe(pots['oracle'])['name']}.", "",
             f"Settings: {len(atoms)} atoms ({'×'.join(map(str, a.repeat))} {system['cells']}) at each potential's "
             f"relaxed 0 K lattice, fixed cell; per temperature {a.equilibration} steps of Langevin NVT (τ 100 fs), then "
             f"{a.segments} × {a.steps} NVE steps of {a.timestep:g} fs, velocities every {a.every} steps; VDOS from the "
             f"mass-weighted VACF up to {a.max_lag_fs:g} fs (Hann window), normalised to 3N. 0 K: phonopy, force "
             f"constants of the same {len(atoms)}-atom cell by finite displacements, mesh {'×'.join(map(str, a.mesh))}, "
             f"smearing {a.sigma:g} THz; 'cell modes': the plain mean of the 3N − 3 non-zero normal modes of the MD cell itself "
             f"(the q-points the MD samples; the harmonic limit of the MD value). ⟨ν⟩ = ∫ν g dν / ∫g dν over "
             f"0–{system['fmax']:g} THz.", "",
             f"Figure: [{png.name}]({png.name})", "",
             "| potential | a (Å) | c (Å) | " + " | ".join(["⟨ν⟩ 0 K mesh (THz)", "⟨ν⟩ 0 K cell modes (THz)"] + [f"⟨ν⟩ {t:g} K (THz)" for t in a.temperatures])
             + " | measured T (K) | NVE drift (eV/atom) | wall (s) |",
             "|---|---:|---:|" + "---:|" * (len(a.temperatures) + 5)]
    for name, (r, info) in results.items():
        lines.append(f"| {name} | {info['a']:.4f} | {'' if info['c'] is None else format(info['c'], '.4f')} | "
                     + " | ".join(f"{r.mean_frequency[k]:.3f}" for k in ["0K", "cell"] + list(a.temperatures))
                     + " | " + ", ".join(f"{r.temperature[t]:.0f}" for t in a.temperatures)
                     + f" | {max(r.energy_drift.values()):.1e} | {info['wall_s']:.0f} |")
    lines.append("")
    atomic_write(out / f"{stem}.md", "\n".join(lines) + "\n")
    print(out / f"{stem}.md", png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
