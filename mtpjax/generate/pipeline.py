"""The training-set recipe of Poul, Huber, Bitzek & Neugebauer (2023), end to end.

    RANDSPG ─► VOLMIN ─► CELLMIN ─► INTMIN ─► TRIAX, SHEAR, RATTLE        (each a subset; EVERYTHING = union)

1. the oracle's ground state (the lowest of hcp, fcc, bcc that keeps its symmetry) gives Ω0 (Å³/atom) and the
   nearest-neighbour distance (:mod:`.reference`);
2. RANDSPG: random crystals for every compatible (space group, atoms) pair (:mod:`.randspg`);
3. VOLMIN, CELLMIN, INTMIN: successive low-precision relaxations, each of the previous stage's output, by
   :func:`mtpjax.relax.relax` (:func:`relax_structures`: VOLMIN hydrostatic and CELLMIN the full cell, both with
   fractional coordinates fixed, INTMIN the positions in a fixed cell);
4. TRIAX, SHEAR, RATTLE: deformed copies of every INTMIN structure (:mod:`.deform`);
5. every selected subset is labelled with the oracle (energy, forces, stress) and written as ``OUT/<SUBSET>.extxyz``;
   their union as ``OUT/EVERYTHING.extxyz``; ``manifest.json``, ``summary.md`` and ``rejected.jsonl`` record the run.

Alloys (``elements = ["Al", "Mg"]``, :mod:`.config`): step 1 finds each element's own ground state (the same
reference, cached per element); RANDSPG draws every composition of the grid at the Vegard volume Σ x_i Ω0_i of the
elements' ground-state volumes; the minimum distance is ``randspg.min_distance`` × the smallest elemental
nearest-neighbour distance; the plausibility screen of the labels uses the highest elemental ground-state energy and
the largest B0·Ω0 (the loosest of the elements' bounds); the output files carry ``mlip_type`` (the index in
``elements``) per atom. The rest of the chain is the same. A one-element recipe runs exactly as before (same checkpoint keys).

Work is cut into chunks; each chunk's result is a content-addressed checkpoint (:mod:`.checkpoint`) under
``OUT/checkpoints``, so a killed run resumes (``resume=True``) without recomputing anything it finished. Results
do not depend on the executor, the number of workers or interruptions: every random draw is seeded by the
structure's key, and chunks are fixed by the input order.

Recipe versions (:data:`RECIPE_VERSION`, part of every checkpoint key, so a changed recipe recomputes the stages it
changes and reuses the rest):

- 1: the first recipe.
- 2: relaxations by the one relaxation module :mod:`mtpjax.relax` (issue 12) instead of the generator's own FIRE:
  the reference hcp is relaxed by FIRE (after a coarse volume scan) instead of L-BFGS-B; VOLMIN/CELLMIN/INTMIN use
  jax-md's FIRE with a log-strain cell coordinate (F = exp(X/N), as ASE's ``FrechetCellFilter``) instead of
  F = I + e with V^(1/3)·e, steps capped per atom (``maxstep``) and per strain component (0.01) instead of one
  norm over all degrees of freedom, FIRE's first step starting from the forces of the input, and positions returned
  unwrapped. The relaxed structures (and so every later subset) differ in their last digits or, for structures with
  several minima nearby, by which minimum FIRE reaches; the convergence criteria and failure reasons are unchanged.

The reference is the element's ground state (lowest of hcp, fcc, bcc keeping its space group) rather than always hcp
since version 2 as well: its checkpoint key carries "ground-state" so references stored before are recomputed; an
hcp element gets the same reference values (Ω0 to the last digit), so all its other stage keys are unchanged; an fcc
or bcc element gets its own Ω0 and nearest-neighbour distance, hence new keys for every stage.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

from ..errors import ConfigError, MtpjaxError
from ..io.extxyz import write_structures
from ..io.files import atomic_write, read_json, versions, write_json
from ..relax import relax
from . import oracle as _oracle
from .checkpoint import Store, content_hash
from .config import ALL_SUBSETS, SUBSETS, GenerateConfig, RelaxConfig, check_volume_range, compositions_of, \
    composition_label, vegard_volume
from .deform import DEFORMATIONS, deform
from .executors import DaskExecutor, InProcess, ProcessPool
from ..oracles import label
from ..oracles.label import energy_limit, screen
from .manifest import file_sha256, summary_markdown
from .randspg import generate_one, tasks as randspg_tasks
from .reference import ground_state_reference
from .structures import Failure, is_failure, strip_labels, tag

RELAXATIONS = (("VOLMIN", "volume"), ("CELLMIN", "cell"), ("INTMIN", "positions"))
#: The relaxation stages' modes as :func:`mtpjax.relax.relax` cell degrees of freedom: VOLMIN hydrostatic and
#: CELLMIN the full (symmetric) strain, both with fractional coordinates fixed; INTMIN the positions, cell fixed.
RELAX_MODES = {"volume": dict(cell="volume", positions=False), "cell": dict(cell="full", positions=False),
               "positions": dict(cell="fixed", positions=True)}
#: Bumped when a stage's results would change for the same inputs (part of every checkpoint key; see above).
RECIPE_VERSION = 2
#: pyxtal tasks per chunk (small: load balance over workers, since some space groups are slow).
RANDSPG_CHUNK = 16


# --------------------------------------------------------------------------------------- tasks (run in workers)
def randspg_task(p, progress=None):
    out = []
    for k, t in enumerate(p["tasks"]):
        out.append(generate_one(t, p["element"], p["omega0"], p["dmin"], p["cfg"], p["seed"], k))
        if progress:
            progress(1)
    return out


def relax_structures(oracle, structures, mode: str, cfg: RelaxConfig, min_distance: float = 0.0, progress=None) -> list:
    """Relaxed copies of ``structures`` (ase.Atoms) or :class:`Failure` items (named by ``info['id']``), in input
    order, by :func:`mtpjax.relax.relax` with the oracle (batched FIRE for a JAX oracle; ASE's FIRE and
    ``FrechetCellFilter`` with the oracle's calculator otherwise).

    ``mode``: volume (VOLMIN: converged when |p| ≤ smax), cell (CELLMIN: every |σ_ij| ≤ smax) or positions (INTMIN:
    every |f_i| ≤ fmax); ``cfg``: the [relax] table; ``min_distance`` (Å): atoms closer than this count as
    collapsed. Failure reasons: non_finite, collapsed, volume (V/V_start outside [1/f, f]), not_converged,
    oracle_error (ASE oracles), unknown_element. ``progress(n)`` is called as structures finish.
    """
    if mode not in RELAX_MODES:
        raise ValueError(f"mode must be one of {tuple(RELAX_MODES)}, got {mode!r}")
    pot = oracle if _oracle.is_jax(oracle) else _oracle.calculator(oracle)
    names = [str(a.info.get("id", f"structure {k}")) for k, a in enumerate(structures)]
    res = relax(pot, structures, **RELAX_MODES[mode], fmax=cfg.fmax, smax=cfg.smax, max_steps=cfg.max_steps,
                maxstep=cfg.maxstep, skin=cfg.skin, steps_per_round=cfg.steps_per_round,
                max_volume_factor=cfg.max_volume_factor, max_batch_atoms=cfg.batch_atoms, min_distance=min_distance,
                names=names, progress=progress)
    return [r.atoms if r.ok else Failure(k, r.name, r.reason, f"{mode} relaxation: {r.message}") for k, r in enumerate(res)]


def relax_task(p, progress=None):
    oracle = _oracle.single_process(_oracle.resolve(p["oracle"]))
    return relax_structures(oracle, p["structures"], p["mode"], p["cfg"], p["dmin"], progress=progress)


def label_task(p, progress=None):
    oracle = _oracle.single_process(_oracle.resolve(p["oracle"]))
    return label(oracle, p["structures"], progress=progress)


# --------------------------------------------------------------------------------------- the run
class _Run:
    def __init__(self, cfg: GenerateConfig, out: Path, oracle, hook, progress: bool):
        self.cfg, self.out, self.oracle, self.hook, self.progress = cfg, out, oracle, hook or (lambda *a, **k: None), progress
        self.store = Store(out / "checkpoints")
        self.oracle_id = _oracle.describe(oracle)
        self.stats: dict = {}
        self.timings: dict = {}
        self.rejected: list = []
        self.reference_energy = None  # eV/atom, the oracle's ground state (set by reference())
        self.energy_scale = None  # eV/atom, its B0·Ω0 (set by reference())
        self.references: dict = {}  # element -> its ground-state reference (set by reference())
        self.chunks = Counter()  # computed / cached chunks
        ex = cfg.executor
        if ex.kind == "dask":
            self.pyx = self.work = DaskExecutor(ex.address, ex.workers, ex.processes)
        else:
            self.pyx = ProcessPool(cfg.randspg.workers) if cfg.randspg.workers > 1 else InProcess()
            jax_here = ex.kind == "jax" or (ex.kind == "auto" and _oracle.is_jax(oracle))
            self.work = InProcess() if jax_here else ProcessPool(ex.workers)
        self.ref_oracle = self.oracle if isinstance(self.work, InProcess) else _oracle.portable(oracle)

    def close(self):
        for e in {id(self.pyx): self.pyx, id(self.work): self.work}.values():
            e.close()

    def bar(self, total, desc):
        from tqdm import tqdm

        return tqdm(total=total, desc=f"{desc:8s}", unit="str", disable=not self.progress, leave=True, file=sys.stderr)

    def chunked(self, stage, fn, payloads, keys, executor, desc):
        """Results of ``fn`` over payloads (lists), each a checkpoint ``stage/key``; only missing ones are computed."""
        results = [self.store.load(stage, k) for k in keys]
        todo = [i for i, r in enumerate(results) if r is None]
        self.chunks[f"{stage}:cached"] += len(keys) - len(todo)
        self.chunks[f"{stage}:computed"] += len(todo)
        n_total = sum(len(p["tasks"] if "tasks" in p else p["structures"]) for p in payloads)
        with self.bar(n_total, desc) as bar:
            bar.update(sum(len(r) for r in results if r is not None))
            for j, res in executor.imap(fn, [payloads[i] for i in todo], progress=bar.update):
                i = todo[j]
                self.store.save(stage, keys[i], res)
                results[i] = res
                self.hook("chunk_done", stage=stage, chunk=i)
        return [x for r in results for x in r]

    def split(self, items, size):
        return [items[i:i + size] for i in range(0, len(items), size)]

    def keep(self, subset, results, attempted, extra=None):
        """Structures of ``results`` (failures counted in the subset's row and listed in rejected.jsonl)."""
        ok = [r for r in results if not is_failure(r)]
        bad = [r for r in results if is_failure(r)]
        self.rejected += [{"stage": subset, "id": f.name, "reason": f.reason, "message": f.message} for f in bad]
        self.stats[subset] = {"selected": subset in self.cfg.subsets, "attempted": attempted, "structures": len(ok),
                              "atoms": sum(len(a) for a in ok), "rejected": dict(Counter(f.reason for f in bad)), **(extra or {})}
        return ok

    def timed(self, name, t0):
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 3)

    # ------------------------------------------------------------------------------- stages
    def reference(self):
        t0 = time.perf_counter()
        refs = {}
        for el in self.cfg.species:  # one element: the recipe's own; an alloy: each element's own ground state
            # "ground-state": references stored when the reference was always hcp are recomputed, not misread (only
            # this key changes: an hcp element gets the same Ω0, so every later stage keeps its keys)
            key = content_hash("reference", RECIPE_VERSION, "ground-state", self.oracle_id, el)
            ref = self.store.load("reference", key)
            if ref is None:
                ref = ground_state_reference(self.oracle, el)
                self.store.save("reference", key, ref)
            refs[el] = ref
        self.references = refs
        ref = refs[self.cfg.species[0]]
        if self.cfg.is_alloy:  # the loosest of the elements' plausibility bounds
            self.reference_energy = max(r.get("energy") for r in refs.values())
            scales = [r.get("energy_scale") for r in refs.values()]
            self.energy_scale = None if None in scales else max(scales)
        else:
            self.reference_energy = ref.get("energy")
            self.energy_scale = ref.get("energy_scale")  # B0·Ω0 (eV/atom); absent from references stored before it
        self.timed("reference", t0)
        return ref

    def randspg(self, omega0, dmin):
        t0 = time.perf_counter()
        c = self.cfg.randspg
        if self.cfg.is_alloy:  # (space group, counts, copy) tasks; the elemental volumes, Vegard-averaged per task
            todo, n_bad = randspg_tasks(c, compositions_of(self.cfg))
            species = tuple(self.cfg.species)
            omegas = tuple(float(self.references[el]["omega0"]) for el in species)
            chunks = self.split(todo, RANDSPG_CHUNK)
            payloads = [dict(tasks=ch, element=species, omega0=omegas, dmin=dmin, cfg=c, seed=self.cfg.seed) for ch in chunks]
            keys = [content_hash("RANDSPG", RECIPE_VERSION, self.cfg.seed, list(species), list(omegas), dmin, repr(c), ch)
                    for ch in chunks]
        else:
            todo, n_bad = randspg_tasks(c)
            chunks = self.split(todo, RANDSPG_CHUNK)
            payloads = [dict(tasks=ch, element=self.cfg.element, omega0=omega0, dmin=dmin, cfg=c, seed=self.cfg.seed) for ch in chunks]
            keys = [content_hash("RANDSPG", RECIPE_VERSION, self.cfg.seed, self.cfg.element, omega0, dmin, repr(c), ch) for ch in chunks]
        res = self.chunked("RANDSPG", randspg_task, payloads, keys, self.pyx, "RANDSPG")
        if self.pyx is not self.work:
            self.pyx.close()  # free the pyxtal processes for the relaxations
        ok = self.keep("RANDSPG", res, len(todo), {"compatible_pairs": len(todo) // c.copies, "incompatible_pairs": n_bad,
                                                   "copies": c.copies})
        self.timed("RANDSPG", t0)
        self.stats["RANDSPG"]["time_s"] = self.timings["RANDSPG"]
        return ok

    def relax_stage(self, stage, mode, parents, dmin):
        t0 = time.perf_counter()
        inputs = [strip_labels(a) for a in parents]
        chunks = self.split(inputs, self.cfg.executor.chunk_size)
        payloads = [dict(oracle=self.ref_oracle, structures=ch, mode=mode, cfg=self.cfg.relax, dmin=dmin) for ch in chunks]
        keys = [content_hash(stage, RECIPE_VERSION, mode, repr(self.cfg.relax), dmin, self.oracle_id, ch) for ch in chunks]
        res = self.chunked(stage, relax_task, payloads, keys, self.work, stage)
        for a, p in zip(res, inputs):
            if not is_failure(a):
                tag(a, stage, p.info["id"].split("/", 1)[1], p.info["id"], self.cfg.randspg.symprec)
        res = [dataclasses.replace(a, name=f"{stage}/{p.info['id'].split('/', 1)[1]}") if is_failure(a) else a
               for a, p in zip(res, inputs)]
        ok = self.keep(stage, res, len(inputs))
        self.timed(stage, t0)
        self.stats[stage]["time_s"] = self.timings[stage]
        return ok

    def deformations(self, subset, parents, dmin):
        t0 = time.perf_counter()
        res = []
        for k, p in enumerate(parents):
            res += deform(p, subset, self.cfg.deform, self.cfg.seed, dmin, self.cfg.randspg.symprec, k * self.cfg.deform.copies)
        ok = self.keep(subset, res, len(res))
        self.timed(subset, t0)
        self.stats[subset]["time_s"] = self.timings[subset]
        return ok

    def entropy(self, ref, dmin):
        """ENTROPY (:mod:`.entropy`, off by default): batches optimised in order, one checkpoint each."""
        from .entropy import run_stage

        t0 = time.perf_counter()
        res, extra = run_stage(self.cfg, self.oracle, self.oracle_id, ref, dmin, self.store, self.chunks, self.hook,
                               RECIPE_VERSION)
        ok = self.keep("ENTROPY", res, len(res), extra)
        self.timed("ENTROPY", t0)
        self.stats["ENTROPY"]["time_s"] = self.timings["ENTROPY"]
        return ok

    def hessian(self, ref, dmin):
        """HESSIAN (:mod:`.hessian`, off by default): rattled bulk cells with the oracle's force constants."""
        from .hessian import bulk_cells, hessian_task, stage_summary

        t0 = time.perf_counter()
        h = self.cfg.hessian
        cells = bulk_cells(self.cfg.element, ref, h, self.cfg.seed, self.cfg.randspg.symprec)
        chunks = self.split(cells, self.cfg.executor.chunk_size)
        payloads = [dict(oracle=self.ref_oracle, structures=ch, dmin=dmin, delta=h.delta) for ch in chunks]
        keys = [content_hash("HESSIAN", RECIPE_VERSION, repr(h), dmin, self.oracle_id, ch) for ch in chunks]
        res = self.chunked("HESSIAN", hessian_task, payloads, keys, self.work, "HESSIAN")
        ok = self.keep("HESSIAN", res, len(cells))
        self.stats["HESSIAN"].update(stage_summary(ok, self.oracle))
        self.timed("HESSIAN", t0)
        self.stats["HESSIAN"]["time_s"] = self.timings["HESSIAN"]
        return ok

    def label(self, subset, structures):
        t0 = time.perf_counter()
        chunks = self.split(structures, self.cfg.executor.chunk_size)
        payloads = [dict(oracle=self.ref_oracle, structures=ch) for ch in chunks]
        keys = [content_hash("label", RECIPE_VERSION, self.oracle_id, ch) for ch in chunks]
        res = self.chunked(f"label-{subset}", label_task, payloads, keys, self.work, f"label {subset}")
        res = screen(res, self.reference_energy, self.energy_scale)  # implausible labels: discarded and counted like failures
        ok = [r for r in res if not is_failure(r)]
        bad = [r for r in res if is_failure(r)]
        self.rejected += [{"stage": f"label {subset}", "id": f.name, "reason": f.reason, "message": f.message} for f in bad]
        odd = [f for f in bad if f.reason == "implausible"]
        if odd:
            warnings.warn(f"label {subset}: {len(odd)} of {len(res)} structures discarded as implausible "
                          f"(labels no real material gives; first: {odd[0].name}: {odd[0].message}); "
                          "all are listed in rejected.jsonl and summary.md", stacklevel=2)
        s = self.stats[subset]
        s.update(structures=len(ok), atoms=sum(len(a) for a in ok), label_failures=dict(Counter(f.reason for f in bad)))
        self.timed(f"label {subset}", t0)
        return ok


def _check_resume(out: Path, cfg: GenerateConfig, resume: bool, oracle_id: dict):
    state = out / "run.json"
    config = json.loads(json.dumps(cfg.to_dict(), default=list))
    config.pop("executor")  # where the work runs does not change the results: resume anywhere
    if "ENTROPY" not in cfg.subsets:
        config.pop("entropy")  # unused: runs stored before the ENTROPY stage existed resume as before
    if "HESSIAN" not in cfg.subsets:
        config.pop("hessian")  # likewise for the HESSIAN stage
    want = {"config": config, "oracle": oracle_id}
    if state.exists():
        if not resume:
            raise MtpjaxError(f"{out} already holds a generation run ({state}); pass --resume to continue it, "
                              "or choose another output folder")
        have = read_json(state, "run state")
        if not isinstance(have, dict) or "config" not in have:
            raise MtpjaxError(f"{state}: corrupted run state (no config); delete it to start afresh")
        diff = sorted(k for k in set(have["config"]) | set(want["config"]) if have["config"].get(k) != want["config"].get(k))
        if diff or have.get("oracle") != oracle_id:
            raise MtpjaxError(f"{state}: the interrupted run used a different config (fields {diff or ['oracle']}); "
                              "resume with the same config or choose another output folder")
    write_json(state, want)


def run(cfg: GenerateConfig, out_dir, resume: bool = False, oracle=None, hook=None, progress: bool | None = None) -> dict:
    """Run the whole pipeline into ``out_dir``; returns the manifest (also written as ``manifest.json``).

    ``oracle`` overrides the config's [oracle] table (any JAX potential or :class:`mtpjax.oracles.ASEOracle`).
    ``hook(event, **info)`` is called after every chunk (``"chunk_done"``, stage, chunk) and stage
    (``"stage_done"``, stage). ``progress``: tqdm bars on stderr (default: when stderr is a terminal).
    """
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    oracle = _oracle.make(cfg.oracle_spec()) if oracle is None else oracle
    if cfg.is_alloy:
        known = getattr(oracle, "species", None)
        unknown = [el for el in cfg.elements if known is not None and el not in tuple(known)]
        if unknown:
            raise ConfigError("elements", f"{unknown[0]!r} is unknown to the oracle {getattr(oracle, 'name', '')} "
                                          f"(it knows {list(known)}; elements = {list(cfg.elements)})")
    else:
        _oracle.check_element(oracle, cfg.element)
    progress = sys.stderr.isatty() if progress is None else progress
    r = _Run(cfg, out, oracle, hook, progress)
    _check_resume(out, cfg, resume, r.oracle_id)
    written: dict = {}
    try:
        ref = r.reference()
        omega_min = min(x["omega0"] for x in r.references.values())
        nn_min = min(x["nn_distance"] for x in r.references.values())
        check_volume_range(cfg, omega_min, nn_min)
        dmin = cfg.randspg.min_distance * nn_min
        order = [s for s in ALL_SUBSETS if s in cfg.subsets]
        labelled = {}

        def finish(stage, structures):
            if stage in cfg.subsets:
                labelled[stage] = r.label(stage, structures)
            r.hook("stage_done", stage=stage)

        if any(s in SUBSETS for s in order):  # the recipe of Poul et al. (skipped when only ENTROPY is selected)
            depth = max(SUBSETS.index(s) for s in order if s in SUBSETS)
            current = r.randspg(ref["omega0"], dmin)
            finish("RANDSPG", current)
            for stage, mode in RELAXATIONS[: min(depth, 3)]:
                current = r.relax_stage(stage, mode, current, dmin)
                finish(stage, current)
            for subset in DEFORMATIONS:
                if subset in cfg.subsets:
                    finish(subset, r.deformations(subset, current, dmin))
        if "ENTROPY" in cfg.subsets:
            finish("ENTROPY", r.entropy(ref, dmin))
        if "HESSIAN" in cfg.subsets:
            finish("HESSIAN", r.hessian(ref, dmin))
        t0 = time.perf_counter()
        written = _write(out, order, labelled, cfg.species if cfg.is_alloy else None)
        r.timed("write", t0)
    finally:
        r.close()
    everything = [a for s in order for a in labelled[s]]
    stats = {s: r.stats[s] for s in ALL_SUBSETS if s in r.stats}
    stats["EVERYTHING"] = {"selected": True, "structures": len(everything), "atoms": sum(len(a) for a in everything),
                           "subsets": order}
    r.timings["total"] = round(time.perf_counter() - t_start, 3)
    manifest = {
        "recipe": "Poul et al. 2023: RANDSPG -> VOLMIN -> CELLMIN -> INTMIN -> TRIAX/SHEAR/RATTLE", "recipe_version": RECIPE_VERSION,
        "element": cfg.element, "seed": cfg.seed, "seeding": "numpy SeedSequence([seed, stream, space group, atoms, copy(, k)])",
        "oracle": r.oracle_id, "reference": ref, "omega0": ref["omega0"], "min_distance": dmin,
        "executor": {"relax_label": r.work.name, "randspg": r.pyx.name}, "config": json.loads(json.dumps(cfg.to_dict(), default=list)),
        "versions": versions(), "subsets": stats, "timings": r.timings, "files": written,
        "checkpoints": {"chunks": dict(r.chunks), "corrupted_and_recomputed": r.store.corrupt},
    }
    if cfg.is_alloy:
        manifest["element"] = "-".join(cfg.elements)
        manifest["elements"] = list(cfg.elements)
        manifest["references"] = r.references
        manifest["compositions"] = [
            {"counts": list(c), "label": composition_label(cfg.elements, c),
             "omega0": vegard_volume([r.references[e]["omega0"] for e in cfg.elements], c)} for c in compositions_of(cfg)]
    manifest["implausible"] = [x for x in r.rejected if x["reason"] == "implausible"]
    manifest["warnings"] = generation_warnings(manifest)
    atomic_write(out / "rejected.jsonl", "".join(json.dumps(x) + "\n" for x in r.rejected))
    write_json(out / "manifest.json", manifest)
    atomic_write(out / "summary.md", summary_markdown(manifest))
    return manifest


def generation_warnings(manifest: dict) -> list[str]:
    """Loud warnings of a generation manifest: structures discarded as implausible (see
    :func:`mtpjax.oracles.label.implausibility`), and an empty EVERYTHING set."""
    out = []
    odd = manifest.get("implausible", [])
    if odd:
        per = Counter(x["stage"].split()[-1] for x in odd)
        limit = energy_limit(manifest.get("reference", {}).get("energy_scale"))
        out.append(f"{len(odd)} structures discarded as implausible labels (no real material gives them: e.g. more than "
                   f"{limit:.4g} eV/atom above the oracle's ground state; the oracle extrapolates "
                   f"outside its range): {', '.join(f'{k} {v}' for k, v in sorted(per.items()))}")
    if not manifest["subsets"].get("EVERYTHING", {}).get("structures", 1):
        out.append("the training set (EVERYTHING) is empty")
    return out


def _write(out: Path, order, labelled, species=None) -> dict:
    """One extxyz per subset plus EVERYTHING.extxyz (written atomically); {file: {sha256, structures}}. With
    ``species`` (an alloy) every atom gets ``mlip_type``, its element's index in ``species``."""
    import numpy as np

    if species is not None:
        index = {el: k for k, el in enumerate(species)}
        for s in order:
            for a in labelled[s]:
                a.arrays["mlip_type"] = np.array([index[x] for x in a.get_chemical_symbols()], dtype=np.int64)
    files = {}
    for name, structures in [*((s, labelled[s]) for s in order), ("EVERYTHING", [a for s in order for a in labelled[s]])]:
        path = out / f"{name}.extxyz"
        if structures:  # ASE's writer, the force constants (HESSIAN's 'hessian' array) at full precision
            write_structures(structures, path, format="extxyz")
        else:
            atomic_write(path, "")
        files[path.name] = {"sha256": file_sha256(path), "structures": len(structures)}
    return files
