"""The run's record: ``manifest.json`` (seeds, config, oracle, versions, Ω0, counts, rejections, timings, file
hashes) and ``summary.md`` (Ω0 and the ground-state phase that set it; the counts per subset as a table, like Fig. 2
of Poul et al.)."""
from __future__ import annotations

import hashlib


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _reasons(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "-"


def summary_markdown(manifest: dict) -> str:
    """The subsets table of a manifest as markdown."""
    ref = manifest["reference"]
    lines = [f"# Training set: {manifest['element']} ({manifest['oracle'].get('name', manifest['oracle'].get('type', ''))})", ""]
    if manifest.get("warnings"):
        lines += ["**WARNINGS**", ""] + [f"- **{w}**" for w in manifest["warnings"]] + [""]
    lines += [
             f"seed {manifest['seed']}; Ω0 = {ref['omega0']:.4f} Å³/atom of the oracle's ground state "
             f"{ref.get('phase', 'hcp')} (oracle's hcp: a = {ref['a']:.4f} Å, c/a = {ref['c_over_a']:.4f}); "
             f"minimum distance {manifest['min_distance']:.3f} Å", "",
             "| subset | in dataset | structures | atoms | attempted | rejected (by reason) | label failures | time (s) |",
             "|---|---|---:|---:|---:|---|---|---:|"]
    for name, s in manifest["subsets"].items():
        lines.append(f"| {name} | {'yes' if s.get('selected', True) else 'no'} | {s['structures']} | {s['atoms']} | "
                     f"{s.get('attempted', '')} | {_reasons(s.get('rejected', {}))} | {_reasons(s.get('label_failures', {}))} | "
                     f"{s.get('time_s', 0):.1f} |")
    sp = manifest["subsets"].get("RANDSPG", {})
    if "incompatible_pairs" in sp:
        lines += ["", f"RANDSPG: {sp['compatible_pairs']} compatible (space group, atoms) pairs × {sp['copies']} copies; "
                      f"{sp['incompatible_pairs']} incompatible pairs skipped."]
    en = manifest["subsets"].get("ENTROPY", {})
    if "batches" in en:
        d = en["descriptor"]
        lines += ["", f"ENTROPY: nearest-neighbour entropy S of the per-atom descriptors ({d['dimension']} basis functions of a "
                      f"level-{d['level']} MTP, cutoff {d['cutoff']:.3f} Å), per batch before -> after: "
                      + ", ".join(f"{b['S_initial']:.3f} -> {b['S_final']:.3f}" for b in en["batches"])
                      + (f"; S of the whole subset {en['S_set']:.3f}." if en.get("S_set") is not None else ".")]
    hs = manifest["subsets"].get("HESSIAN", {})
    if "force_constants" in hs:
        asr = hs.get("max_acoustic_sum_violation")
        lines += ["", f"HESSIAN: force constants (3N x 3N, eV/Å², extxyz array `hessian`) by {hs['force_constants']}"
                      + (f"; largest acoustic-sum-rule violation {asr:.2e} eV/Å²." if asr is not None else ".")]
    odd = manifest.get("implausible", [])
    if odd:
        lines += ["", f"Discarded as implausible ({len(odd)}; rule: `mtpjax.oracles.label.implausibility`, docs/generate.md):", "",
                  "| stage | structure | why |", "|---|---|---|"] + [f"| {x['stage']} | {x['id']} | {x['message']} |" for x in odd[:200]]
        if len(odd) > 200:
            lines.append(f"| … | {len(odd) - 200} more in rejected.jsonl | |")
    lines += ["", "| stage | time (s) |", "|---|---:|"] + [f"| {k} | {v:.1f} |" for k, v in manifest["timings"].items()]
    return "\n".join(lines) + "\n"
