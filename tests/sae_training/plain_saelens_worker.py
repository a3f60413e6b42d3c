"""Run as a script (never imported by the test suite): load dictionaries with plain sae-lens, in a process
that never imports sae_training, and write each one's encode / decode of fixed inputs (or the error).

Usage: python plain_saelens_worker.py OUT_DIR DICT_DIR [DICT_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from sae_lens import SAE
from safetensors.torch import save_file


def main(out: Path, folders: list[str]) -> None:
    report: dict[str, dict[str, str]] = {}
    for i, folder in enumerate(folders):
        try:
            sae = SAE.load_from_disk(folder)
        except Exception as exc:  # the test inspects exactly which error sae-lens raised
            report[folder] = {"error_type": type(exc).__name__, "error": str(exc)}
            continue
        if sae.cfg.reshape_activations == "hook_z":
            sae.turn_off_forward_pass_hook_z_reshaping()  # rows arrive with the heads already concatenated
        gen = torch.Generator().manual_seed(i)
        x = torch.randn(96, sae.cfg.d_in, generator=gen) * 2.0
        with torch.no_grad():
            acts = sae.encode(x)
            recon = sae.decode(acts)
        save_file({"x": x, "acts": acts, "recon": recon}, str(out / f"{i}.safetensors"))
        report[folder] = {"class": type(sae).__name__, "file": f"{i}.safetensors"}
    report["_sae_training_imported"] = {"value": str(any(m.startswith("sae_training") for m in sys.modules))}
    (out / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
